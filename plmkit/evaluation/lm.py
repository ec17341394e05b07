"""Language-model evaluation shared by every LM member (n-gram, FFNN, RNN, LSTM, GPT, …): the total
negative log-likelihood of a text, reported per whitespace word (perplexity) and per UTF-8 byte (bits),
so members with different tokenizers compare on the same text.

The text is scored as the models were trained on it: each document (a run of non-blank lines) is its
lines' tokens followed by the document separator, the stream opening with a separator, which is given
and not scored. Models with a bounded context read sliding windows of `window` tokens moved by
`stride`, each scoring only its last `stride` tokens (the first scores all), so every token is predicted
once, with at least `window − stride` tokens of context after the first window. The file is streamed.

A model with a memory (Transformer-XL) can instead read the text as it was trained to: consecutive segments
of `window` tokens, every token scored once, each segment attending also to the memory of the last
`mem_len` tokens before it (Dai et al. 2019, §3.2 and §4.3: at a fixed segment length, more memory, more context).
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Iterator

import numpy as np
import torch
from tqdm import tqdm

from ..data.shards import iter_lines
from ..errors import PlmkitError


def next_token_logprobs(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """(B, T) → (B, T − 1): log P(ids[:, t] | ids[:, :t]) for t ≥ 1. Members that do not produce logits
    (the n-gram) provide `next_token_logprobs` themselves."""
    if hasattr(model, "next_token_logprobs"):
        return model.next_token_logprobs(ids)
    logits = model(ids[:, :-1]).logits.float()  # (B, T − 1, V)
    return logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]


def _documents(path: str | os.PathLike, tokenizer, stats: dict) -> Iterator[list[int]]:
    """Token ids of each document + the separator; counts words into `stats`."""
    lines: list[str] = []
    for line in iter_lines(path):
        if line.strip():
            lines.append(line)
            stats["words"] += len(line.split())
            continue
        if lines:
            yield [t for ids in tokenizer.encode_batch(lines) for t in ids] + [tokenizer.doc_sep_id]
            lines = []
    if lines:
        yield [t for ids in tokenizer.encode_batch(lines) for t in ids] + [tokenizer.doc_sep_id]


def _windows(docs: Iterator[list[int]], first: int, window: int, stride: int) -> Iterator[tuple[np.ndarray, int]]:
    """(window ids, index of its first scored token) over the stream `first` + docs."""
    buf, start = np.array([first], dtype=np.int64), 1
    for doc in docs:
        buf = np.concatenate([buf, doc])
        while len(buf) >= window:
            yield buf[:window], start
            buf, start = buf[stride:], window - stride
    if len(buf) > start:
        yield buf, start


def _segments(docs: Iterator[list[int]], first: int, length: int) -> Iterator[np.ndarray]:
    """Pieces of length + 1 tokens over the stream `first` + docs, each overlapping the next by one token, so
    their inputs (all but the last token) follow each other without gap; the last piece may be shorter."""
    buf = np.array([first], dtype=np.int64)
    for doc in docs:
        buf = np.concatenate([buf, doc])
        while len(buf) > length:
            yield buf[:length + 1]
            buf = buf[length:]
    if len(buf) > 1:
        yield buf


def evaluate_lm(model: torch.nn.Module, tokenizer, path: str | os.PathLike, window: int = 512,
                stride: int | None = None, batch_size: int = 8, show_progress: bool = True,
                mem_len: int | None = None) -> dict:
    """Perplexity per word, bits per byte and per-token NLL of `model` on the text file `path`.

    Args:
        model, tokenizer: a causal LM and its tokenizer (`plmkit.load`, `plmkit.load_tokenizer`).
        path: UTF-8 text, one paragraph per line, a blank line between documents.
        window: tokens per forward pass, at most the model's max_positions.
        stride: tokens scored per window after the first; default window // 2.
        mem_len: for a model with a memory: score consecutive segments of `window` tokens, one at a time,
            each with the memory of the `mem_len` tokens before it (0: none); `stride` does not apply.
    """
    if not os.path.isfile(path):
        raise PlmkitError("text file not found", path=path)
    if getattr(model, "encoder_decoder", False):
        raise PlmkitError(f"evaluate-lm scores a language model on plain text, and {model.family_name} is an "
                          "encoder–decoder: it models a target given a source, not text on its own. Score it on "
                          "source/target pairs: plmkit finetune --task seq2seq, then plmkit evaluate")
    if not getattr(model.config, "causal", False):
        raise PlmkitError(f"evaluate-lm needs a left-to-right LM; {model.family_name} is not one",
                          path=getattr(model, "directory", None))
    window = min(window, model.config.max_positions)
    if mem_len is not None:
        return _evaluate_with_memory(model, tokenizer, path, window, stride, mem_len, show_progress)
    stride = stride or window // 2
    if not 0 < stride < window:
        raise PlmkitError(f"need 0 < stride < window, got stride {stride} and window {window}")
    model.eval()
    stats = {"words": 0}
    nll, n_tokens, batch = 0.0, 0, []

    def run(group: list[tuple[np.ndarray, int]]) -> None:
        nonlocal nll, n_tokens
        with torch.inference_mode():
            lp = next_token_logprobs(model, torch.from_numpy(np.stack([w for w, _ in group])))  # (B, T − 1)
        for row, (_, s) in zip(lp, group):
            nll -= float(row[s - 1:].double().sum())
            n_tokens += len(row) - (s - 1)

    with tqdm(desc="evaluate-lm", unit="tok", disable=not show_progress) as bar:  # closed before an error prints
        for w, s in _windows(_documents(path, tokenizer, stats), tokenizer.doc_sep_id, window, stride):
            if batch and len(w) != len(batch[0][0]):  # only the last window is shorter
                run(batch)
                batch = []
            batch.append((w, s))
            if len(batch) == batch_size:
                run(batch)
                bar.update(sum(len(w) - s for w, s in batch))
                batch = []
        if batch:
            run(batch)
    return _report(model, path, nll, n_tokens, stats["words"], window=window, stride=stride)


def _evaluate_with_memory(model, tokenizer, path, window: int, stride: int | None, mem_len: int,
                          show_progress: bool) -> dict:
    if "mems" not in inspect.signature(model.encode).parameters:
        raise PlmkitError(f"--mem-len needs a model with a memory (transformer-xl); {model.family_name} has none")
    if stride is not None:
        raise PlmkitError("--stride does not apply with --mem-len: segments follow each other, and the memory "
                          "gives the context")
    if mem_len < 0:
        raise PlmkitError(f"mem_len must be >= 0, got {mem_len}")
    model.eval()
    stats = {"words": 0}
    nll, n_tokens, mems = 0.0, 0, None
    with tqdm(desc="evaluate-lm", unit="tok", disable=not show_progress) as bar:  # closed before an error prints
        for piece in _segments(_documents(path, tokenizer, stats), tokenizer.doc_sep_id, window):
            ids = torch.from_numpy(piece)[None]  # (1, S + 1)
            with torch.inference_mode():
                out = model(ids[:, :-1], mems=mems, mem_len=mem_len)
            lp = out.logits.float().log_softmax(-1).gather(-1, ids[:, 1:, None])  # (1, S, 1)
            nll -= float(lp.double().sum())
            n_tokens += lp.numel()
            mems = out.mems
            bar.update(lp.numel())
    return _report(model, path, nll, n_tokens, stats["words"], window=window, mem_len=mem_len)


def _report(model, path, nll: float, n_tokens: int, words: int, **settings) -> dict:
    if n_tokens == 0 or words == 0:
        raise PlmkitError("the file holds no text to evaluate", path=path)
    n_bytes = os.path.getsize(path)
    return {"perplexity": math.exp(nll / words), "bits_per_byte": nll / math.log(2) / n_bytes,
            "token_perplexity": math.exp(nll / n_tokens), "nll": nll, "tokens": n_tokens, "words": words,
            "bytes": n_bytes, **settings, "model": model.family_name, "parameters": model.num_parameters()}
