"""T5's relative position bias: a learned scalar per head for each bucket of the distance j − i from query i
to key j, added to the attention scores. Raffel et al. 2020, arXiv:1910.10683, §2.1.

Buckets: half of them for exact small distances, the other half for logarithmically wider ranges up to
`max_distance`, beyond which all distances share the last bucket. Bidirectional (the encoder) splits the
buckets between keys before and after the query; causal (the decoder) sees only keys before, so all buckets
go to those. One table per stack, computed once and shared by all its layers.

Shape legend: T = queries, S = keys, N = heads.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def relative_buckets(distance: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> torch.Tensor:
    """distance j − i (any shape, long) → bucket ids in [0, num_buckets)."""
    base = torch.zeros_like(distance)
    if bidirectional:
        num_buckets //= 2
        base = (distance > 0).long() * num_buckets  # keys after the query use the upper half
        distance = distance.abs()
    else:
        distance = (-distance).clamp(min=0)  # keys after the query are masked anyway
    exact = num_buckets // 2
    # log-spaced beyond `exact`: bucket = exact + log(d / exact) / log(max_distance / exact) · (num_buckets − exact)
    far = exact + (torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                   * (num_buckets - exact)).long()
    far = far.clamp(max=num_buckets - 1)
    return base + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    def __init__(self, num_buckets: int, max_distance: int, num_heads: int, bidirectional: bool):
        super().__init__()
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
        self.bias = nn.Embedding(num_buckets, num_heads)

    def forward(self, queries: int, keys: int, first: int = 0) -> torch.Tensor:
        """The bias of `queries` queries at positions first … first + T − 1 over keys 0 … S − 1: (1, N, T, S)."""
        device = self.bias.weight.device
        i = torch.arange(first, first + queries, device=device)[:, None]
        j = torch.arange(keys, device=device)[None, :]
        buckets = relative_buckets(j - i, self.bidirectional, self.num_buckets, self.max_distance)  # (T, S)
        return self.bias(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, N, T, S)
