"""Sentence-order prediction (SOP): segment B is A's real continuation from the same document, and half
the time the two are swapped; the model says which. ALBERT's inter-sentence loss, which unlike NSP cannot
be solved by topic alone. Lan et al. 2020, arXiv:1909.11942, §3.1 "Inter-sentence coherence loss".
Its MLM side masks n-grams of up to 3 tokens, p(n) ∝ 1/n (§4.1; `plmkit.objectives.spans`).
"""

from __future__ import annotations

import numpy as np

from ..data.pretrain import SegmentPairs
from .mlm import MaskedLMWithNSP
from .spans import mask_spans


class SentenceOrderPairs(SegmentPairs):
    """(A, B, in_order): consecutive segments of one document, swapped when in_order = 0.

    BERT's pair sampler with no random-document B; the swap is drawn from its own stream of (seed, i)."""

    def __init__(self, corpus, max_tokens: int, seed: int = 0, short_seq_prob: float = 0.1):
        super().__init__(corpus, max_tokens, seed, short_seq_prob, random_next_prob=0.0)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        a, b, _ = super().__getitem__(i)  # a one-token, one-line chunk has no continuation: its B is random
        if np.random.default_rng([self.seed, i, 1]).random() < 0.5:
            return b, a, 0
        return a, b, 1


class MaskedLMWithSOP(MaskedLMWithNSP):
    """ALBERT's objective: n-gram MLM + SOP from the pooled [CLS]. The label follows Hugging Face's
    `sentence_order_label`: 0 = A then B as written, 1 = swapped."""

    name = "mlm+sop"
    pair_task = "sop"
    max_ngram = 3  # 1 = BERT's single-token masking

    def dataset(self, corpus):
        return SentenceOrderPairs(corpus, self.seq_len - 3, self.seed)

    def choose_and_corrupt(self, batch, maskable, generator):
        return mask_spans(batch["input_ids"], maskable, self.tokenizer.mask_id, self.vocab_size, generator,
                          self.mask_prob, max_n=self.max_ngram)
