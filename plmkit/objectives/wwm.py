"""Whole-word masking: a word's sub-tokens are masked together or not at all, so the model cannot
recover a masked piece from its unmasked siblings. Google's BERT-wwm release (2019-05-31, README of
google-research/bert); for Chinese, words from a segmenter, Cui et al. 2019, arXiv:1906.08101.

Word boundaries are computed at collate time from the token ids alone, with memory O(V), never O(corpus):
a table says of each vocabulary entry whether it begins a word (WordPiece: no "##"; byte-level BPE: "Ġ";
unigram: "▁"; char: every token) or ends one (GPT-1 BPE: "</w>"). Chinese has no such marks: runs of CJK
characters are decoded and segmented into words by jieba (`pip install plmkit[zh]`).

Shape legend: B = batch, T = sequence length, V = vocabulary.
"""

from __future__ import annotations

import logging

import torch

from .mlm import MaskedLMWithNSP
from .spans import mask_spans

log = logging.getLogger("plmkit")

# kind → (begins a word?, ends a word?) for a token's string
_MARKS = {
    "wordpiece": lambda t: (not t.startswith("##"), False),
    "bpe": lambda t: (False, t.endswith("</w>")),
    "bytebpe": lambda t: (t.startswith("Ġ"), False),
    "unigram": lambda t: (t.startswith("▁"), False),
    "char": lambda t: (True, False),
    "word": lambda t: (True, False),
}


def _is_cjk(token: str) -> bool:
    return len(token) == 1 and ("\u4e00" <= token <= "\u9fff" or "\u3400" <= token <= "\u4dbf")


class WordBoundaries:
    """`starts(input_ids)`: which tokens begin a word, for any plmkit tokenizer kind."""

    def __init__(self, tokenizer):
        if tokenizer.kind not in _MARKS:
            raise ValueError(f"whole-word masking needs a tokenizer of kind {', '.join(_MARKS)}, "
                             f"not {tokenizer.kind!r}")
        V = tokenizer.vocab_size
        self.begins, self.ends, self.cjk = (torch.zeros(V, dtype=torch.bool) for _ in range(3))
        self.chars: dict[int, str] = {}
        for token, i in tokenizer.backend.get_vocab().items():
            self.begins[i], self.ends[i] = _MARKS[tokenizer.kind](token)
            if _is_cjk(token):
                self.cjk[i], self.chars[i] = True, token
        for i in tokenizer.special_ids:
            self.begins[i] = self.ends[i] = True
        self.segment = None
        if self.cjk.any():
            try:
                import jieba
            except ImportError:
                log.warning("no jieba (pip install plmkit[zh]): Chinese characters are masked one by one")
            else:
                jieba.setLogLevel(logging.WARNING)
                self.segment = jieba.lcut

    def starts(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids → (B, T) bool, True where a word begins."""
        starts = self.begins[input_ids]
        starts[:, 1:] |= self.ends[input_ids[:, :-1]]  # the token after a word's end begins the next
        starts[:, 0] = True
        if self.segment is not None:
            self._segment(input_ids, starts)
        return starts

    def _segment(self, input_ids: torch.Tensor, starts: torch.Tensor) -> None:
        """Within each run of CJK characters, only the first character of each segmented word begins one."""
        cjk = self.cjk[input_ids]
        for r, c in zip(*torch.nonzero(cjk & ~torch.nn.functional.pad(cjk, (1, 0))[:, :-1], as_tuple=True)):
            end = int(c)
            while end < cjk.shape[1] and cjk[r, end]:
                end += 1
            text = "".join(self.chars[int(i)] for i in input_ids[r, c:end])
            starts[r, c:end] = False
            at = int(c)
            for word in self.segment(text):
                starts[r, at] = True
                at += len(word)


class WholeWordMaskedLM(MaskedLMWithNSP):
    """BERT's MLM + NSP with whole words as the masking unit (15 % of tokens, whole words only)."""

    name = "wwm+nsp"

    def __init__(self, tokenizer, seq_len: int, seed: int = 0):
        super().__init__(tokenizer, seq_len, seed)
        self.words = WordBoundaries(tokenizer)

    def unit_starts(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) bool: where a masking unit begins; ERNIE widens units to phrases and entities."""
        return self.words.starts(input_ids)

    def choose_and_corrupt(self, batch, maskable, generator):
        ids = batch["input_ids"]
        return mask_spans(ids, maskable, self.tokenizer.mask_id, self.vocab_size, generator, self.mask_prob,
                          starts=self.unit_starts(ids))
