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


def _decoder(model, prompts: list[list[int]], s: Settings):
    """The object the searches call the protocol on: the model, or the recomputing adapter."""
    decoder = model if hasattr(model, "decode_step") else Recompute(model)
    if not getattr(decoder, "generates", False):
        raise PlmkitError(f"generate needs a model that continues text left to right; {model.family_name} is "
                          "a masked LM (try fill-mask or gibbs)", path=getattr(model, "directory", None))
    if any(not p for p in prompts):
        raise PlmkitError("an empty prompt needs a tokenizer with a token to start from (eos or sep)")
    longest = max(len(p) for p in prompts) + s.max_new_tokens
    limit = getattr(model.config, "max_positions", None)
    if decoder is model and limit is not None and longest > limit:
        raise PlmkitError(f"a prompt of {longest - s.max_new_tokens} tokens plus {s.max_new_tokens} new ones "
                          f"is more than the model's {limit} positions")
    return decoder


def history(model) -> list[int] | None:
    """What the decoder has read before the first new token where that is not the prompt: an encoder–decoder
    reads the prompt (its source) in the encoder and starts the target from its start token."""
    return [model.config.decoder_start_token_id] if getattr(model, "encoder_decoder", False) else None


def _run(decoder, prompts: list[list[int]], eos: int | None, s: Settings, generator, texts: Texts | None,
         on_text=None) -> list[list[Row]]:
    """One batch through the search the settings ask for: each prompt's rows, best first for beams."""
    start = history(decoder)
    if s.num_beams > 1:
        rows = beam_search(decoder, prompts, eos, s, texts, start)
    else:
        rows = [Row(i, p, history=start) for i, p in enumerate(prompts) for _ in range(s.num_return_sequences)]
        sample(decoder, rows, eos, s, generator, texts, on_text)
    out = [[] for _ in prompts]
    for row in rows:
        out[row.source].append(row)
    return out


def _settings(temperature, num_beams, stop, **rest) -> Settings:
    if temperature is None:
        temperature = 1.0 if num_beams == 1 else 0.0
    return Settings(temperature=temperature, num_beams=num_beams,
                    stop=(stop,) if isinstance(stop, str) else tuple(stop), **rest)


@torch.no_grad()
def generate_ids(model, prompts: list[list[int]], *, eos: int | None = None, seed: int | None = None,
                 **settings) -> list[list[list[int]]]:
    """The engine at the token level: prompt ids as the model reads them (framing included) → for each
    prompt, the ids of its continuations (`num_return_sequences` of them), without the end-of-text id `eos`
    (None: none, every continuation runs to max_new_tokens). The settings are `generate`'s, stop strings
    aside (they need a tokenizer)."""
    if settings.pop("stop", None):
        raise PlmkitError("stop strings need a tokenizer: use generate")
    s = _settings(settings.pop("temperature", None), settings.pop("num_beams", 1), (), **settings)
    model.eval()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    rows = _run(_decoder(model, prompts, s), [list(p) for p in prompts], eos, s, generator, None)
    return [[r.tokens for r in prompt_rows] for prompt_rows in rows]


@torch.no_grad()
def generate(model, tokenizer, prompts: str | list[str], *, max_new_tokens: int = 40, min_new_tokens: int = 0,
             temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
             num_beams: int = 1, length_penalty: float = 1.0, early_stopping: bool = False,
             repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0, stop: str | list[str] = (),
             num_return_sequences: int = 1, seed: int | None = None, batch_size: int | None = None,
             on_text: Callable[[int, str], None] | None = None, show_progress: bool = False) -> dict | list:
    """Continue each prompt.

    Args:
        model, tokenizer: a model that generates (GPT, GPT-2, UniLM, the recurrent and n-gram LMs; an
            encoder–decoder — T5, BART, MASS — whose prompts are sources) and its tokenizer (`plmkit.load`,
            `plmkit.load_tokenizer`).
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
        For one prompt, {"prompt", "text": prompt and continuation (an encoder–decoder's: the target, since it
        continues nothing), "completion", "tokens": the new ids
        (end-of-text excluded), "prompt_tokens", "finish": "eos" | "stop" | "length"} (+ "score" from beam
        search), or a list of num_return_sequences of them; for a list of prompts, a list with that for each.
    """
    single = isinstance(prompts, str)
    prompts = [prompts] if single else list(prompts)
    if not prompts:
        raise PlmkitError("no prompts to continue")
    if batch_size is not None and batch_size < 1:
        raise PlmkitError(f"need batch_size >= 1, got {batch_size}")
    s = _settings(temperature, num_beams, stop, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                  top_k=top_k, top_p=top_p, length_penalty=length_penalty, early_stopping=early_stopping,
                  repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                  num_return_sequences=num_return_sequences)
    before, after, eos = frame(model, tokenizer)
    framed = [before + ids + after for ids in tokenizer.encode_batch(prompts)]
    decoder = _decoder(model, framed, s)
    model.eval()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    texts = Texts(tokenizer, s.stop, len(before), len(after), continues=history(model) is None)
    size = batch_size or len(prompts)
    results = []
    with tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not show_progress) as bar:
        for first in range(0, len(prompts), size):
            stream = None if on_text is None else (lambda i, text, first=first: on_text(first + i, text))
            batch = _run(decoder, framed[first:first + size], eos, s, generator, texts, stream)
            for i, rows in enumerate(batch):
                out = [texts.result(prompts[first + i], row) for row in rows]
                results.append(out[0] if s.num_return_sequences == 1 else out)
            bar.update(len(batch))
    return results[0] if single else results
