"""Greedy search and sampling, and what every search shares: the settings, the rows being decoded, their
text, and the rules applied to the scores.

A batch of prompts is left-padded to one length, so every row appends its tokens at the same column and
one cache serves them all; each row stops on its own (end of text, a stop string, its length), and a
finished row leaves the batch (its cache rows are dropped), so the work per step shrinks as rows finish.

Shape legend: R = rows being decoded (prompts × return sequences, or prompts × beams), P = padded prompt
length, V = vocabulary.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import PlmkitError
from .processors import block_repeated_ngrams, penalize_repetition, top_k_filter, top_p_filter


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to decode; see `generate` for each field."""

    max_new_tokens: int = 40
    min_new_tokens: int = 0
    temperature: float = 1.0  # 0: the most likely token (greedy or beam search)
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = False
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    stop: tuple[str, ...] = ()
    num_return_sequences: int = 1

    def __post_init__(self):
        if self.max_new_tokens < 1 or not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise PlmkitError(f"need max_new_tokens >= 1 and 0 <= min_new_tokens <= max_new_tokens, got "
                              f"{self.max_new_tokens} and {self.min_new_tokens}")
        if self.temperature < 0 or (self.top_p is not None and not 0 < self.top_p <= 1) or \
                (self.top_k is not None and self.top_k < 1):
            raise PlmkitError("need temperature >= 0, 0 < top_p <= 1 and top_k >= 1")
        if self.repetition_penalty <= 0 or self.no_repeat_ngram_size < 0:
            raise PlmkitError("need repetition_penalty > 0 and no_repeat_ngram_size >= 0")
        if self.num_beams < 1 or self.num_return_sequences < 1:
            raise PlmkitError("need num_beams >= 1 and num_return_sequences >= 1")
        if any(not s for s in self.stop):
            raise PlmkitError("a stop string may not be empty")
        if self.num_beams > 1:
            if self.sampling or self.top_k is not None or self.top_p is not None:
                raise PlmkitError("beam search is deterministic: use temperature 0 and no top_k or top_p "
                                  "with num_beams > 1")
            if self.num_return_sequences > self.num_beams:
                raise PlmkitError(f"num_return_sequences {self.num_return_sequences} is more than the "
                                  f"{self.num_beams} beams")
        elif self.num_return_sequences > 1 and not self.sampling:
            raise PlmkitError("greedy search returns one sequence per prompt: sample (temperature > 0) or "
                              "search with num_beams >= num_return_sequences")

    @property
    def sampling(self) -> bool:
        return self.temperature > 0


@dataclasses.dataclass
class Row:
    """One sequence being decoded: where it came from and what it has produced."""

    source: int  # index of its prompt
    prompt: list[int]  # the framed prompt's ids
    tokens: list[int] = dataclasses.field(default_factory=list)  # the continuation so far
    finish: str | None = None  # "eos" | "stop" | "length" once done
    score: float | None = None  # beam search: the length-penalised log-probability
    emitted: str = ""  # text already handed to the stream callback
    history: list[int] | None = None  # what the decoder read before the continuation, if not the prompt

    @property
    def seen(self) -> list[int]:
        """The ids the repetition rules look at: the decoder's input so far. A decoder-only LM's is the prompt
        and the continuation; an encoder–decoder's is its start token and the target, as in transformers
        (the source is the encoder's)."""
        return (self.prompt if self.history is None else self.history) + self.tokens


class Recompute:
    """The decoding protocol for a model without one (the n-gram, FFNN and recurrent LMs): each step runs
    the model's forward on every row's whole sequence (its last max_positions tokens), right-padded, and
    reads the logits at each row's last real token, which is exact for any left-to-right LM."""

    def __init__(self, model):
        self.model = model
        self.generates = bool(getattr(model.config, "causal", False))

    def new_cache(self, batch_size: int, max_length: int) -> "_Sequences":
        return _Sequences([[] for _ in range(batch_size)])

    def decode_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, cache: "_Sequences"):
        keep = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        for seq, ids, real in zip(cache.rows, input_ids.tolist(), keep.tolist()):
            seq.extend(t for t, r in zip(ids, real) if r)
        window = self.model.config.max_positions
        rows = [seq[-window:] for seq in cache.rows]
        lengths = torch.tensor([len(r) for r in rows])
        x = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, :len(r)] = torch.tensor(r)
        mask = (torch.arange(x.shape[1]) < lengths[:, None]).long()
        logits = self.model(x, mask).logits  # (R, T, V)
        return logits[torch.arange(len(rows)), lengths - 1]


@dataclasses.dataclass
class _Sequences:
    rows: list[list[int]]

    @property
    def length(self) -> int:
        return max((len(r) for r in self.rows), default=0)

    def reorder(self, index: torch.Tensor) -> None:
        self.rows = [list(self.rows[i]) for i in index.tolist()]


class Texts:
    """Decoded text of rows: the completion, where a stop string cuts it, what a stream may show yet."""

    def __init__(self, tokenizer, stop: tuple[str, ...], before: int, after: int, continues: bool = True):
        self.tokenizer, self.stop = tokenizer, stop
        self.before, self.after = before, after  # how many framing ids surround a prompt
        self.continues = continues  # False: the new text is a target of its own (an encoder–decoder's)

    def completion(self, row: Row) -> str:
        if not self.continues:
            return self.tokenizer.decode(row.tokens)
        # Decode prompt and continuation together: some tokenizers mark word boundaries on the left token.
        prompt = row.prompt[self.before:]
        full, head = self.tokenizer.decode(prompt + row.tokens), self.tokenizer.decode(prompt)
        return full[len(head):] if full.startswith(head) else self.tokenizer.decode(row.tokens)

    def stopped(self, text: str) -> int | None:
        """Where the first stop string begins in `text`, or None."""
        found = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        return min(found) if found else None

    def shown(self, text: str) -> str:
        """The part of an unfinished completion a stream may show: without an unfinished UTF-8 character
        (byte-level tokens decode it as U+FFFD) or a tail that could still grow into a stop string."""
        text = text.rstrip("\ufffd")
        hold = max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        return text[:len(text) - hold]

    def result(self, prompt: str, row: Row) -> dict:
        completion = self.completion(row)
        cut = self.stopped(completion) if self.stop else None
        if cut is not None:
            completion = completion[:cut]
        text = prompt + completion if self.continues else completion
        out = {"prompt": prompt, "text": text, "completion": completion, "tokens": row.tokens,
               "prompt_tokens": len(row.prompt) - self.before - self.after, "finish": row.finish or "length"}
        if row.score is not None:
            out["score"] = row.score
        return out


def left_pad(framed: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(R, P) ids and attention mask (None when no row is padded)."""
    P = max(len(f) for f in framed)
    ids = torch.zeros(len(framed), P, dtype=torch.long)
    mask = torch.zeros(len(framed), P, dtype=torch.long)
    for r, f in enumerate(framed):
        ids[r, P - len(f):] = torch.tensor(f)
        mask[r, P - len(f):] = 1
    return ids, (None if bool(mask.all()) else mask)


def process(scores: torch.Tensor, rows: list[Row], present: torch.Tensor | None, eos: int | None, step: int,
            s: Settings) -> torch.Tensor:
    """The rules every search applies to the next-token scores (R, V) of `rows` at `step` (0-based)."""
    if present is not None:
        scores = penalize_repetition(scores, present, s.repetition_penalty)
    if s.no_repeat_ngram_size:
        scores = block_repeated_ngrams(scores, [r.seen for r in rows], s.no_repeat_ngram_size)
    if step < s.min_new_tokens and eos is not None:
        scores[:, eos] = float("-inf")
    return scores


def presence(rows: list[Row], vocab: int, s: Settings) -> torch.Tensor | None:
    """(R, V) bool: the tokens in each row so far, for the repetition penalty (None when it is off)."""
    if s.repetition_penalty == 1.0:
        return None
    present = torch.zeros(len(rows), vocab, dtype=torch.bool)
    for i, r in enumerate(rows):
        present[i, r.seen] = True
    return present


def sample(decoder, rows: list[Row], eos: int | None, s: Settings, generator, texts: Texts | None,
           on_text) -> None:
    """Greedy search or sampling for `rows`, in place. `texts` is needed only for stop strings and `on_text`."""
    ids, mask = left_pad([r.prompt for r in rows])
    cache = decoder.new_cache(len(rows), ids.shape[1] + s.max_new_tokens)
    active = list(rows)  # the rows still decoding, in cache order
    logits = decoder.decode_step(ids, mask, cache)  # (R, V)
    present = presence(rows, logits.shape[-1], s)
    for step in range(s.max_new_tokens):
        scores = process(logits.float(), active, present, eos, step, s)
        if s.sampling:
            scores = scores / s.temperature
            if s.top_k is not None:
                scores = top_k_filter(scores, s.top_k)
            if s.top_p is not None:
                scores = top_p_filter(scores, s.top_p)
            nxt = torch.multinomial(scores.softmax(-1), 1, generator=generator)  # (R, 1)
        else:
            nxt = scores.argmax(-1, keepdim=True)  # (R, 1)
        keep = []
        for i, (row, t) in enumerate(zip(active, nxt[:, 0].tolist())):
            if t == eos:
                row.finish = "eos"
            else:
                row.tokens.append(t)
                if s.stop or on_text is not None:
                    _check_text(row, texts, on_text)
                if row.finish is None and len(row.tokens) == s.max_new_tokens:
                    row.finish = "length"
            if row.finish is None:
                keep.append(i)
        if on_text is not None:
            for row in active:
                if row.finish is not None:
                    _flush(row, texts, on_text)
        if not keep:
            return
        if len(keep) < len(active):  # finished rows leave the batch
            index = torch.tensor(keep)
            cache.reorder(index)
            nxt = nxt[index]
            present = present[index] if present is not None else None
            active = [active[i] for i in keep]
        if present is not None:
            present[torch.arange(len(active)), nxt[:, 0]] = True
        logits = decoder.decode_step(nxt, None, cache)


def _check_text(row: Row, texts: Texts, on_text) -> None:
    """After a new token: finish the row at a stop string; stream what can be shown."""
    text = texts.completion(row)
    cut = texts.stopped(text) if texts.stop else None
    if cut is not None:
        row.finish = "stop"
        text = text[:cut]
    elif on_text is None:
        return
    else:
        text = texts.shown(text)
    if on_text is not None and text.startswith(row.emitted) and len(text) > len(row.emitted):
        on_text(row.source, text[len(row.emitted):])
        row.emitted = text


def _flush(row: Row, texts: Texts, on_text) -> None:
    """The rest of a finished row's text to the stream."""
    text = texts.result("", row)["completion"]
    if text.startswith(row.emitted) and len(text) > len(row.emitted):
        on_text(row.source, text[len(row.emitted):])
    row.emitted = text
