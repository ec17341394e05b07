"""Permutation language modelling with partial prediction and span targets (XLNet, Yang et al. 2019,
arXiv:1906.08237, §2.2–2.4 and Appendix A.2), over streams with the memory carried (`Recurrent`).

For each segment of T tokens, P = round(T / K) targets are chosen (K = 6: partial prediction keeps the last
1/K of the factorization order, whose tokens have the most context). Targets come as spans: a span of n whole
words, p(n) ∝ 1/n for n ≤ 5, is placed at a random offset within a stretch of K·n tokens, as the released
data pipeline's `_sample_mask` does (mask_alpha = 6, mask_beta = 1), and single tokens fill up to exactly P.
The order z puts every non-target first, then the targets in a random order, so

    perm_mask[i, j] = j is a target and z(j) ≥ z(i)   (i may not see j; a non-target's z counts as 0)

— the released `_local_perm`: non-targets see each other and no target; target i's content sees the targets
before it in z and itself, its query stream the same minus itself. The loss is the cross-entropy of each
target given its query stream.

Shape legend: B = batch, T = segment length, P = targets per segment.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.pretrain import Segments
from .recurrent import Recurrent
from .wwm import WordBoundaries


class PermutationLM(Recurrent):
    name = "plm"
    K = 6  # predict the last 1/K of each order (§2.3; K = 6 in the paper's pre-training)
    max_span = 5  # span lengths 1…5 words

    def __init__(self, tokenizer, seq_len: int, seed: int = 0):
        super().__init__(tokenizer, seq_len, seed)
        try:
            self.words = WordBoundaries(tokenizer)
        except ValueError:  # a tokenizer of unknown kind: every token is a word
            self.words = None
        self.n_targets = max(1, round(seq_len / self.K))

    def dataset(self, corpus):
        return Segments(corpus, self.seq_len, self.seq_len)

    def choose_targets(self, starts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(T,) bool where a word begins → (T,) bool, exactly n_targets True, in spans of whole words."""
        T, goal = len(starts), self.n_targets
        begins = np.flatnonzero(starts)
        p_n = 1.0 / np.arange(1, self.max_span + 1)
        chosen = np.zeros(T, dtype=bool)
        at = taken = 0
        while at < T and taken < goal:
            n = int(rng.choice(self.max_span, p=p_n / p_n.sum())) + 1
            stretch = self.K * n
            left = int(rng.integers(stretch))
            first = np.searchsorted(begins, at + left)  # the first word starting in the stretch at `left`
            if first >= len(begins):
                break
            begin = begins[first]
            end = begins[first + n] if first + n < len(begins) else T
            end = min(end, begin + goal - taken)  # never past the budget
            chosen[begin:end] = True
            taken += end - begin
            at = end + stretch - left
        free = np.flatnonzero(~chosen)
        chosen[rng.choice(free, goal - taken, replace=False)] = True  # single tokens up to exactly P
        return chosen

    def collate(self, examples: list[tuple[int, np.ndarray]], generator: torch.Generator) -> dict[str, torch.Tensor]:
        windows, segments = self.with_index(examples)
        ids = torch.from_numpy(windows)  # (B, T)
        B, T = ids.shape
        starts = (self.words.starts(ids) if self.words is not None else torch.ones_like(ids, dtype=torch.bool)).numpy()
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
        target = np.stack([self.choose_targets(s, rng) for s in starts])  # (B, T)
        z = np.full((B, T), -1)  # the order: non-targets first (all at −1), then the targets at random
        for r in range(B):
            z[r, target[r]] = rng.permutation(self.n_targets)
        own = np.maximum(z, 0)  # a non-target sees no target: its own place counts as before them all
        perm_mask = target[:, None, :] & (own[:, :, None] <= z[:, None, :])  # (B, T, T): True = i may not see j
        positions = torch.from_numpy(np.stack([np.flatnonzero(t) for t in target]))  # (B, P)
        return {"input_ids": ids, "perm_mask": torch.from_numpy(perm_mask), "target_positions": positions,
                "labels": ids.gather(1, positions), "segments": segments}

    def step(self, model, batch):
        out = self.run(model, batch, perm_mask=batch["perm_mask"], target_positions=batch["target_positions"],
                       labels=batch["labels"])
        return {"loss": out.loss, "tokens": batch["input_ids"].numel()}
