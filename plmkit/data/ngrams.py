"""ZEN's n-gram lexicon: extraction from a corpus by frequency, reading one from a file, and matching it
against token ids. Diao et al. 2020, arXiv:1911.00720, §3.1.

Extraction (the paper: n-grams of the pre-training corpus above a frequency threshold): the first
`sample_chars` characters of the corpus are cut into runs of letters, digits and CJK characters (spaces,
punctuation and symbols end a run, so no n-gram spans them); every run's character n-grams of length
2 … `max_n` are counted, and those seen at least `min_count` times are kept, most frequent first, at most
`max_size`. Counting is level by level: an n-gram is counted only when both of its (n − 1)-grams were
kept (a rarer n-gram can never reach the threshold), which keeps memory to the frequent ones.

Matching works on token ids, so any caller — pre-training batches, fine-tuning heads, `embed` — gets the
same n-grams from the same ids: every window of 2 … n tokens is hashed, looked up in the sorted hashes of
the lexicon and checked token by token (a hash collision never makes a false match). A sequence keeps its
first `max_ngrams` matches in reading order (by start, then length); the authors' release keeps a random
`max_ngram_in_seq` of them, which would make a model's output depend on a draw at inference.

Shape legend: B = batch, T = sequence length, L = lexicon n-grams, n = the longest n-gram, N = n-grams
kept per sequence.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import torch

from ..errors import PlmkitError

_MIX = 0x9E3779B97F4A7C15 - (1 << 64)  # an odd 64-bit multiplier (golden ratio), as a signed int64


def _runs(line: str) -> list[str]:
    """The maximal runs of letters, digits and CJK characters of a line."""
    runs, start = [], None
    for i, ch in enumerate(line):
        if ch.isalnum():
            if start is None:
                start = i
        elif start is not None:
            runs.append(line[start:i])
            start = None
    if start is not None:
        runs.append(line[start:])
    return runs


def extract_lexicon(paths: list[str], max_n: int = 5, min_count: int = 5, max_size: int = 20_000,
                    sample_chars: int = 4_000_000) -> list[tuple[str, int]]:
    """(n-gram, count) of the frequent character n-grams (2 ≤ n ≤ max_n) of the corpus files' first
    `sample_chars` characters, most frequent first (ties in string order), at most `max_size`."""
    runs, read = [], 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if read >= sample_chars:
                    break
                line = line[: sample_chars - read]
                read += len(line)
                runs.extend(r for r in _runs(line) if len(r) >= 2)
    kept: dict[str, int] = {}
    previous: set[str] | None = None  # the (n − 1)-grams kept at the last level
    for n in range(2, max_n + 1):
        counts: Counter[str] = Counter()
        for r in runs:
            for i in range(len(r) - n + 1):
                gram = r[i:i + n]
                if previous is None or (gram[:-1] in previous and gram[1:] in previous):
                    counts[gram] += 1
        level = {g: c for g, c in counts.items() if c >= min_count}
        if not level:
            break
        kept.update(level)
        previous = set(level)
    return sorted(kept.items(), key=lambda gc: (-gc[1], gc[0]))[:max_size]


def lexicon_lines(path: str | Path) -> list[str]:
    """The non-empty lines of a lexicon file, stripped (ZEN's n-grams, ERNIE's phrases and entities)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise PlmkitError(f"cannot read lexicon: {e.strerror}", path=path) from None
    except UnicodeDecodeError as e:
        raise PlmkitError("lexicon is not UTF-8 text", path=path,
                          line=path.read_bytes()[:e.start].count(b"\n") + 1) from None
    return [line.strip() for line in lines if line.strip()]


def read_lexicon(path: str | Path) -> list[str]:
    """N-grams from a file, one per line; a line's first field counts (`n-gram<TAB>count` works too)."""
    return [line.split()[0] for line in lexicon_lines(path)]


def lexicon_ids(ngrams: list[str], tokenizer) -> torch.Tensor:
    """(L, n) token ids of the n-grams, −1 after a shorter one's end. An n-gram is kept only when each of
    its characters is one known token (n-grams of characters the vocabulary lacks cannot be matched)."""
    unk = tokenizer.unk_id
    rows, seen = [], set()
    for gram in ngrams:
        ids = tuple(tokenizer.encode(gram))
        if len(ids) == len(gram) >= 2 and unk not in ids and ids not in seen:
            seen.add(ids)
            rows.append(ids)
    if not rows:
        raise PlmkitError("no n-gram of the lexicon is a sequence of known characters of the tokenizer")
    out = torch.full((len(rows), max(map(len, rows))), -1, dtype=torch.long)
    for i, ids in enumerate(rows):
        out[i, :len(ids)] = torch.tensor(ids)
    return out


def _hash(windows: torch.Tensor) -> torch.Tensor:
    """(…, n) ids → (…,) int64: a polynomial hash (wrapping int64 arithmetic)."""
    h = torch.zeros(windows.shape[:-1], dtype=torch.long, device=windows.device)
    for k in range(windows.shape[-1]):
        h = h * _MIX + windows[..., k] + 1
    return h


@dataclasses.dataclass
class Matches:
    """The n-grams found in a batch: `ids` (B, N), 0 = none (row k of the lexicon is n-gram id k + 1);
    `starts`, `lengths` (B, N) their first token and length."""

    ids: torch.Tensor
    starts: torch.Tensor
    lengths: torch.Tensor

    def matrix(self, T: int, dtype=torch.float32) -> torch.Tensor:
        """(B, T, N) ZEN's matching matrix: 1 where token t lies inside n-gram j."""
        t = torch.arange(T, device=self.ids.device)[None, :, None]  # (1, T, 1)
        s, e = self.starts[:, None, :], (self.starts + self.lengths)[:, None, :]  # (B, 1, N)
        return ((t >= s) & (t < e) & (self.ids[:, None, :] > 0)).to(dtype)


class NgramMatcher:
    """Finds the lexicon's n-grams in (B, T) token ids (see the module docstring)."""

    def __init__(self, lexicon: torch.Tensor):
        """lexicon: (L, n) token ids, −1 padded; n-gram id = row + 1."""
        lengths = (lexicon >= 0).sum(1)
        self.longest = int(lexicon.shape[1]) if len(lexicon) else 0
        self.levels: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for n in sorted(set(lengths.tolist()) - {0, 1}):
            rows = (lengths == n).nonzero()[:, 0]  # (L_n,)
            grams = lexicon[rows, :n]  # (L_n, n)
            keys, order = _hash(grams).sort()
            self.levels[n] = (keys, rows[order] + 1, grams[order])
        self._on: dict[torch.device, dict] = {}  # the levels copied to each device asked for

    def _levels(self, device: torch.device) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if device not in self._on:
            self._on[device] = {n: tuple(t.to(device) for t in level) for n, level in self.levels.items()}
        return self._on[device]

    def __call__(self, input_ids: torch.Tensor, max_ngrams: int) -> Matches:
        B, T = input_ids.shape
        width = max(1, self.longest - 1)  # one slot per length 2 … longest at each start
        found = torch.zeros(B, T, width, dtype=torch.long, device=input_ids.device)  # (B, T, n − 1)
        for n, (keys, ids, grams) in self._levels(input_ids.device).items():
            if n > T:
                continue
            windows = input_ids.unfold(1, n, 1)  # (B, T − n + 1, n)
            h = _hash(windows)
            at = torch.searchsorted(keys, h).clamp(max=len(keys) - 1)
            hit = (keys[at] == h) & (grams[at] == windows).all(-1)  # (B, T − n + 1)
            found[:, :T - n + 1, n - 2] = torch.where(hit, ids[at], 0)
        flat = found.reshape(B, -1)  # reading order: by start, then length
        present = flat > 0
        rank = present.cumsum(1) - 1
        keep = present & (rank < max_ngrams)
        N = max(1, min(max_ngrams, int(present.sum(1).max()) if present.numel() else 0))
        ids = torch.zeros(B, N, dtype=torch.long, device=input_ids.device)
        starts, lengths = torch.zeros_like(ids), torch.zeros_like(ids)
        b, f = keep.nonzero(as_tuple=True)
        j = rank[b, f]
        ids[b, j] = flat[b, f]
        starts[b, j] = f // width
        lengths[b, j] = f % width + 2
        return Matches(ids, starts, lengths)
