"""Masking whole units instead of single tokens: whole words (BERT-wwm), n-grams of 1…n units with
p(n) ∝ 1/n (ALBERT, Lan et al. 2020, arXiv:1909.11942, §4.1), phrases and entities (ERNIE).

A unit is a run of tokens that begins at a `starts` position (e.g. a word's first sub-token) and lasts
until the next one. Units are visited in a random order and taken whole until the sequence's budget of
round(prob × maskable tokens) is met (the first unit is always taken); a unit (or n-gram) that would
overshoot the budget or overlap one already taken is skipped, as in google-research/albert's create_pretraining_data.py. The 80/10/10
corruption is then decided per token, as in BERT.

Shape legend: B = batch, T = sequence length.
"""

from __future__ import annotations

import numpy as np
import torch

from .mlm import corrupt


def mask_spans(input_ids: torch.Tensor, maskable: torch.Tensor, mask_id: int, vocab_size: int,
               generator: torch.Generator, prob: float = 0.15, starts: torch.Tensor | None = None,
               max_n: int = 1, p_n: tuple[float, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids, maskable, starts (bool; None = every token is a unit): (B, T). p_n: the probability of
    an n-gram of 1 … max_n units (default ∝ 1/n, ALBERT's).
    Returns (corrupted input_ids, chosen positions as bool (B, T))."""
    B, T = input_ids.shape
    starts = maskable if starts is None else starts & maskable
    p_n = 1.0 / np.arange(1, max_n + 1) if p_n is None else np.asarray(p_n, dtype=float)
    seed = int(torch.randint(2**62, (1,), generator=generator))  # the row loops draw from numpy, seeded here
    rng = np.random.default_rng(seed)
    ok, first = maskable.numpy(), starts.numpy()
    chosen = np.zeros((B, T), dtype=bool)
    for r in range(B):
        begin = np.flatnonzero(first[r])  # (U,) where each unit begins
        if not len(begin):
            continue
        bounds = np.append(begin, T)
        budget = max(1, round(prob * int(ok[r].sum())))
        n_of = rng.choice(max_n, size=len(begin), p=p_n / p_n.sum()) + 1  # an n-gram length per start unit
        taken = 0
        for u in rng.permutation(len(begin)):
            lo, hi = bounds[u], bounds[min(u + n_of[u], len(begin))]
            span = np.flatnonzero(ok[r, lo:hi]) + lo
            if chosen[r, span].any() or (taken and taken + len(span) > budget):  # the first always fits
                continue
            chosen[r, span] = True
            taken += len(span)
            if taken >= budget:
                break
    chosen = torch.from_numpy(chosen)
    return corrupt(input_ids, chosen, mask_id, vocab_size, generator), chosen
