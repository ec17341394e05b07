"""BERT generates: Gibbs sampling from any masked LM, read as a Markov random field over the tokens.
Wang & Cho 2019, "BERT has a Mouth, and It Must Speak: BERT as a Markov Random Field Language Model",
arXiv:1902.04094, §3 and its released notebook (bert-babble).

The free positions (the [MASK]s of the text, and `length` more after it) start as [MASK] and are drawn
from the model's conditional at a position given every other token:

    sequential           one left-to-right pass: each free position in turn, those to its right still [MASK]
    parallel             every free position at once from one forward pass, `iterations` times
    parallel-sequential  (the paper's default) each iteration re-masks one free position per sample, chosen
                         at random, and draws it again — a Gibbs sweep in random order

During the first `burnin` iterations of the parallel modes a token is drawn from the whole distribution;
afterwards (and throughout the sequential pass) from the `top_k` most likely tokens, which trades
diversity for quality as in the paper's Table 2. `temperature` divides the logits first. Special tokens
([MASK], [CLS], [SEP], [PAD], …) are never drawn: text has no place for them.

Shape legend: S = samples, T = sequence length, F = free positions, V = vocabulary.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from ..errors import PlmkitError
from .masked import MASK_PLACEHOLDER

MODES = ("parallel-sequential", "sequential", "parallel")


def _draw(logits: torch.Tensor, temperature: float, top_k: int | None, banned: list[int], generator) -> torch.Tensor:
    """One token per row of logits (N, V), from the top_k (None: all) after the temperature, never a
    `banned` one."""
    logits = logits.float() / temperature
    logits[:, banned] = float("-inf")
    if top_k is not None and top_k < logits.shape[-1]:
        values, ids = logits.topk(top_k, dim=-1)  # (N, k)
        pick = torch.multinomial(values.softmax(-1), 1, generator=generator)  # (N, 1)
        return ids.gather(1, pick)[:, 0]
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


@torch.no_grad()
def gibbs(model, tokenizer, text: str = "", length: int = 0, *, mode: str = "parallel-sequential",
          iterations: int = 500, burnin: int = 250, top_k: int | None = 100, temperature: float = 1.0,
          num_samples: int = 1, seed: int | None = None, show_progress: bool = False) -> list[dict]:
    """Sample text from a masked LM by Gibbs sampling.

    Args:
        model, tokenizer: a masked LM (BERT and its family) and its tokenizer.
        text: fixed text; each [MASK] in it is a free position. length: free positions appended after it.
        mode: "parallel-sequential", "sequential" or "parallel" (see the module docstring).
        iterations, burnin: of the parallel modes; the sequential pass visits each free position once.
        top_k: draw from the k most likely tokens (None: from all) after the burn-in.
        temperature: > 0; divides the logits.
        num_samples: independent chains, run as one batch. seed: makes them reproducible.

    Returns:
        One {"text", "tokens": the free positions' ids, "sequence": every id between [CLS] and [SEP]}
        per sample.
    """
    if getattr(model.config, "causal", True):
        raise PlmkitError(f"Gibbs sampling needs a masked LM; {model.family_name} is not one (try generate)")
    if tokenizer.mask_id is None or tokenizer.cls_id is None or tokenizer.sep_id is None:
        raise PlmkitError("the tokenizer needs [MASK], [CLS] and [SEP] tokens")
    if mode not in MODES:
        raise PlmkitError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if iterations < 1 or not 0 <= burnin <= iterations or temperature <= 0 or num_samples < 1 or length < 0 or \
            (top_k is not None and top_k < 1):
        raise PlmkitError("need iterations >= 1, 0 <= burnin <= iterations, temperature > 0, num_samples >= 1, "
                          "length >= 0 and top_k >= 1")
    mask_token = tokenizer.id_to_token(tokenizer.mask_id)
    ids = tokenizer.encode(text.replace(MASK_PLACEHOLDER, mask_token)) if text else []
    ids = [tokenizer.cls_id, *ids, *[tokenizer.mask_id] * length, tokenizer.sep_id]
    if len(ids) > model.config.max_positions:
        raise PlmkitError(f"{len(ids)} tokens is more than the model's {model.config.max_positions} positions")
    free = torch.tensor([i for i, t in enumerate(ids) if t == tokenizer.mask_id])  # (F,)
    if not len(free):
        raise PlmkitError(f"nothing to sample: put {MASK_PLACEHOLDER} in the text or ask for a length")
    banned = sorted(tokenizer.special_ids)
    model.eval()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    x = torch.tensor([ids]).repeat(num_samples, 1)  # (S, T)
    rows = torch.arange(num_samples)
    steps = len(free) if mode == "sequential" else iterations
    for it in tqdm(range(steps), desc=f"gibbs ({mode})", disable=not show_progress):
        k = top_k if mode == "sequential" or it >= burnin else None
        if mode == "parallel":
            at = torch.zeros_like(x, dtype=torch.bool)
            at[:, free] = True
            x[at] = _draw(model(x, logits_at=at).logits, temperature, k, banned, generator)  # (S·F,) in row order
            continue
        if mode == "sequential":
            pos = free[it].expand(num_samples)  # (S,)
        else:
            pos = free[torch.randint(len(free), (num_samples,), generator=generator)]  # (S,)
        x[rows, pos] = tokenizer.mask_id
        at = torch.zeros_like(x, dtype=torch.bool)
        at[rows, pos] = True
        x[rows, pos] = _draw(model(x, logits_at=at).logits, temperature, k, banned, generator)  # (S, V) → (S,)
    return [{"text": tokenizer.decode(row[1:-1]), "tokens": row[free].tolist(), "sequence": row[1:-1].tolist()}
            for row in x]
