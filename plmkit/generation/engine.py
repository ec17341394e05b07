"""The decoding engine: `generate(model, tokenizer, prompts, …)` continues a batch of prompts with greedy
search, sampling (temperature, top-k, top-p) or beam search, through the model's decoding protocol
(see plmkit/generation/__init__.py)."""

from __future__ import annotations

from typing import Callable

import torch
from tqdm import tqdm

from ..errors import PlmkitError
from .beam import beam_search
from .search import Recompute, Row, Settings, Texts, sample


def frame(model, tokenizer) -> tuple[list[int], list[int], int]:
    """(ids before the prompt, ids after it, the end-of-text id). A member with its own input format says
    so with `generation_frame(tokenizer)` (UniLM: [CLS] source [SEP], ending at [SEP]); the default is
    the packed pre-training stream's: a document starts after the separator and ends at the next one."""
    if hasattr(model, "generation_frame"):
        return model.generation_frame(tokenizer)
    sep = tokenizer.doc_sep_id
    return [sep], [], sep


def _prepare(model, tokenizer, prompts: list[str], s: Settings):
    decoder = model if hasattr(model, "decode_step") else Recompute(model)
    if not getattr(decoder, "generates", False):
        raise PlmkitError(f"generate needs a model that continues text left to right; {model.family_name} is "
                          "a masked LM (try fill-mask or gibbs)")
    before, after, eos = frame(model, tokenizer)
    framed = [before + ids + after for ids in tokenizer.encode_batch(prompts)]
    if any(not f for f in framed):
        raise PlmkitError("an empty prompt needs a tokenizer with a token to start from (eos or sep)")
    longest = max(len(f) for f in framed) + s.max_new_tokens
    limit = getattr(model.config, "max_positions", None)
    if decoder is model and limit is not None and longest > limit:
        raise PlmkitError(f"a prompt of {longest - s.max_new_tokens} tokens plus {s.max_new_tokens} new ones "
                          f"is more than the model's {limit} positions")
    return decoder, framed, eos


@torch.no_grad()
def generate(model, tokenizer, prompts: str | list[str], *, max_new_tokens: int = 40, min_new_tokens: int = 0,
             temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
             num_beams: int = 1, length_penalty: float = 1.0, early_stopping: bool = False,
             repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0, stop: str | list[str] = (),
             num_return_sequences: int = 1, seed: int | None = None, batch_size: int | None = None,
             on_text: Callable[[int, str], None] | None = None, show_progress: bool = False) -> dict | list:
    """Continue each prompt.

    Args:
        model, tokenizer: a model that generates (GPT, GPT-2, UniLM, the recurrent and n-gram LMs) and its
            tokenizer (`plmkit.load`, `plmkit.load_tokenizer`).
        prompts: one prompt or a list; a list is decoded in batches of `batch_size` (default: all at
            once), each left-padded to its longest prompt.
        max_new_tokens, min_new_tokens: bounds on each continuation's tokens; before the minimum the
            end-of-text token cannot be chosen.
        temperature: 0 chooses the most likely token (greedy search, or beam search with num_beams > 1);
            > 0 samples from the distribution sharpened (< 1) or flattened (> 1). Default: 1 (sampling),
            or 0 with num_beams > 1.
        top_k, top_p: sample only from the k most likely tokens / from the nucleus of probability p.
        num_beams: beam search's width. length_penalty: a finished beam scores its summed log-probability
            ÷ (its new tokens) ** length_penalty (> 0 favours longer ones). early_stopping: stop a prompt
            as soon as num_beams beams have finished; otherwise only when no running beam can still beat
            the worst finished one at its current length (Hugging Face's rule).
        repetition_penalty: CTRL's penalty (> 1 discourages repeating any earlier token).
        no_repeat_ngram_size: n > 0 forbids any n-gram twice in a row's text (prompt included).
        stop: strings that end a continuation; it is cut before the first one.
        num_return_sequences: continuations per prompt (samples, or the best beams).
        seed: makes sampling reproducible.
        on_text: called as on_text(prompt index, new text) while sampling or greedy decoding proceeds
            (text held back while it might still be the start of a stop string).
        show_progress: a progress bar over the prompts.

    Returns:
        For one prompt, {"prompt", "text": prompt and continuation, "completion", "tokens": the new ids
        (end-of-text excluded), "prompt_tokens", "finish": "eos" | "stop" | "length"} (+ "score" from beam
        search), or a list of num_return_sequences of them; for a list of prompts, a list with that for each.
    """
    single = isinstance(prompts, str)
    prompts = [prompts] if single else list(prompts)
    if not prompts:
        raise PlmkitError("no prompts to continue")
    if batch_size is not None and batch_size < 1:
        raise PlmkitError(f"need batch_size >= 1, got {batch_size}")
    if temperature is None:
        temperature = 1.0 if num_beams == 1 else 0.0
    s = Settings(max_new_tokens, min_new_tokens, temperature, top_k, top_p, num_beams, length_penalty,
                 early_stopping, repetition_penalty, no_repeat_ngram_size,
                 (stop,) if isinstance(stop, str) else tuple(stop), num_return_sequences)
    decoder, framed, eos = _prepare(model, tokenizer, prompts, s)
    model.eval()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    before, after, _ = frame(model, tokenizer)
    texts = Texts(tokenizer, s.stop, len(before), len(after))
    size = batch_size or len(prompts)
    results = []
    with tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not show_progress) as bar:
        for first in range(0, len(prompts), size):
            batch = framed[first:first + size]
            if s.num_beams > 1:
                rows = beam_search(decoder, batch, eos, s, texts)
            else:
                rows = [Row(i, f) for i, f in enumerate(batch) for _ in range(s.num_return_sequences)]
                stream = None if on_text is None else (lambda i, text, first=first: on_text(first + i, text))
                sample(decoder, rows, eos, s, generator, texts, stream)
            out = [[] for _ in batch]
            for row in rows:
                out[row.source].append(texts.result(prompts[first + row.source], row))
            results += [r[0] if s.num_return_sequences == 1 else r for r in out]
            bar.update(len(batch))
    return results[0] if single else results
