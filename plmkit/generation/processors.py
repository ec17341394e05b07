"""The rules that reshape next-token scores before a token is chosen, applied by the engine in this order
(the order of Hugging Face's `generate`, so the two agree): repetition penalty, no-repeat n-grams, the
minimum length; then, when sampling, temperature, top-k and top-p.

Shape legend: R = rows being decoded, V = vocabulary.
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def penalize_repetition(scores: torch.Tensor, present: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019, arXiv:1909.05858, §4.1): the score of a token already
    in the row (prompt or continuation) is divided by `penalty` if positive, multiplied if negative, so
    either way it drops. scores: (R, V); present: (R, V) bool."""
    penalized = torch.where(scores > 0, scores / penalty, scores * penalty)
    return torch.where(present, penalized, scores)


def repeated_ngram_tokens(seq: list[int], n: int) -> list[int]:
    """The tokens that would complete, after `seq`, an n-gram already in it (Paulus et al. 2018,
    arXiv:1705.04304, §2.5: no trigram twice in a summary). Recomputed from the sequence at each step,
    so beams that swap histories need no bookkeeping; O(len(seq))."""
    if n == 1:
        return list(set(seq))
    if len(seq) < n:
        return []
    prefix = seq[len(seq) - n + 1:]
    return [seq[i + n - 1] for i in range(len(seq) - n + 1) if seq[i:i + n - 1] == prefix]


def block_repeated_ngrams(scores: torch.Tensor, seqs: list[list[int]], n: int) -> torch.Tensor:
    """−inf at every row's `repeated_ngram_tokens`. scores: (R, V), one sequence per row."""
    for r, seq in enumerate(seqs):
        banned = repeated_ngram_tokens(seq, n)
        if banned:
            scores[r, banned] = NEG_INF
    return scores


def top_k_filter(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k best scores of each row ((R, V)); −inf elsewhere (Fan et al. 2018, arXiv:1805.04833)."""
    if k >= scores.shape[-1]:
        return scores
    kth = scores.topk(k, dim=-1).values[:, -1:]  # (R, 1)
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p_filter(scores: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2020, arXiv:1904.09751): keep the smallest set of best tokens
    whose probability reaches p (at least one); −inf elsewhere. scores: (R, V)."""
    if p >= 1.0:
        return scores
    ordered, order = scores.sort(dim=-1, descending=True)  # (R, V)
    probs = ordered.softmax(-1)
    drop = probs.cumsum(-1) - probs >= p  # the mass before a token already reaches p
    return scores.masked_fill(drop.scatter(-1, order, drop), NEG_INF)
