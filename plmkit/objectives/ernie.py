"""Knowledge masking (ERNIE 1.0): besides single words, whole phrases and named entities are masked as one
unit, so the model must recover them from the wider context. Sun et al. 2019, arXiv:1904.09223, §3.2.

Phrases and entities come from a lexicon file, one per line. Without one, phrases are derived from the
corpus once, before training: 2- and 3-word n-grams scored like Mikolov et al. 2013's phrases
(arXiv:1310.4546, §4): (c(ab) − δ) · N / (c(a) c(b)), on the first `sample_tokens` tokens (memory bounded
whatever the corpus size); for Chinese the words are jieba's (`plmkit.objectives.wwm`).
The staged schedule of the paper (basic, then phrase, then entity masking) is collapsed into one stage
in which words, phrases and entities are all units.

Shape legend: B = batch, T = sequence length.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import torch

from ..data.ngrams import lexicon_lines
from .wwm import WholeWordMaskedLM

log = logging.getLogger("plmkit")


class KnowledgeMaskedLM(WholeWordMaskedLM):
    name = "knowledge+nsp"
    sample_tokens = 2_000_000  # corpus tokens read to derive phrases when there is no lexicon
    min_count, delta, threshold = 5, 5, 100.0  # Mikolov et al.'s discount δ and word2phrase's threshold
    max_phrases = 20_000

    def __init__(self, tokenizer, seq_len: int, seed: int = 0, lexicon: str | None = None):
        super().__init__(tokenizer, seq_len, seed)
        self.phrases: dict[int, set[tuple[int, ...]]] = {}  # first token → token sequences of the phrases
        self.longest, self.lexicon = 0, lexicon
        if lexicon is not None:
            self._add(self._read_lexicon(Path(lexicon)))

    def _read_lexicon(self, path: Path) -> list[tuple[int, ...]]:
        # In running text a phrase usually follows a space: byte-level BPE encodes that into its first token.
        return [tuple(self.tokenizer.encode(p + line)) for line in lexicon_lines(path) for p in ("", " ")]

    def _add(self, phrases) -> None:
        for p in phrases:
            if len(p) > 1:  # a one-token entry is a word, a unit already
                self.phrases.setdefault(p[0], set()).add(p)
                self.longest = max(self.longest, len(p))

    def prepare(self, corpus) -> None:
        """Derive the phrases from `corpus` when no lexicon was given (once)."""
        if self.lexicon is None and not self.phrases:
            self._add(self._derive(corpus))

    def dataset(self, corpus):
        self.prepare(corpus)
        return super().dataset(corpus)

    def _derive(self, corpus) -> list[tuple[int, ...]]:
        """Frequent, cohesive 2- and 3-word n-grams of the corpus's first `sample_tokens` tokens."""
        ids = torch.from_numpy(corpus.tokens(0, min(corpus.n_tokens, self.sample_tokens)).astype("int64"))
        bounds = [*self.words.starts(ids[None])[0].nonzero()[:, 0].tolist(), len(ids)]
        special, ids = torch.isin(ids, self.specials).tolist(), ids.tolist()
        words = [None if special[a] else tuple(ids[a:b]) for a, b in zip(bounds, bounds[1:])]
        c1 = Counter(words)
        # Punctuation and specials end a phrase: n-grams holding them are never counted.
        content = {w: w is not None and any(ch.isalnum() for ch in self.tokenizer.decode(w)) for w in c1}
        words = [w if content[w] else None for w in words]
        c2, c3 = Counter(zip(words, words[1:])), Counter(zip(words, words[1:], words[2:]))
        n = len(words)

        def score(gram, count):
            parts = [c1[w] for w in gram]
            return (count - self.delta) * n ** (len(gram) - 1) / math.prod(parts)

        found = [(score(g, c), g) for grams in (c2, c3) for g, c in grams.items()
                 if None not in g and c >= self.min_count and score(g, c) > self.threshold]
        found = [sum(g, ()) for _, g in sorted(found, reverse=True)[: self.max_phrases]]
        log.info("no lexicon given: derived %d phrases from the first %d corpus tokens (2–3-word n-grams, "
                 "e.g. %s)", len(found), len(ids), ", ".join(repr(self.tokenizer.decode(p)) for p in found[:5]))
        return found

    def unit_starts(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word starts, with the words inside a lexicon phrase or entity joined into one unit (longest match)."""
        starts = super().unit_starts(input_ids)
        for r in range(input_ids.shape[0]):
            row, at = input_ids[r].tolist(), starts[r].tolist()
            p = 0
            while p < len(row):
                q = self._match(row, at, p) if at[p] and row[p] in self.phrases else p + 1
                starts[r, p + 1:q] = False
                p = q
        return starts

    def _match(self, row: list[int], at: list[bool], p: int) -> int:
        """End of the longest phrase that starts at word start p and ends at a word boundary, else p + 1."""
        for q in range(min(len(row), p + self.longest), p + 1, -1):
            if (q == len(row) or at[q]) and tuple(row[p:q]) in self.phrases[row[p]]:
                return q
        return p + 1
