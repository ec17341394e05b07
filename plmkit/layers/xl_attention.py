"""Relative multi-head attention over a memory of earlier segments (Transformer-XL, Dai et al. 2019,
arXiv:1901.02860, §3.3), with XLNet's relative segment term and its second (query) stream (Yang et al. 2019,
arXiv:1906.08237, §2.3 and §2.5).

The keys and values are read from [memory ∘ h]: the previous segment's states (gradient stopped by the
caller) before the current one's. Between query i and key j, with R the sinusoids of their distance i − j,

    A_ij = (q_i + u)·k_j  +  (q_i + v)·W_R R_{i−j}  [ + (q_i + b)·s_ij ]                      (scaled by 1/√D)
           content, (a)+(c)   position, (b)+(d)        segment: s_+ or s_− (XLNet)

u and v (`r_w_bias`, `r_r_bias`) are learned per head and layer, as in XLNet and the released Transformer-XL
models (untie_r). The position term is computed once per distance, (T, P) scores against the P distances,
then gathered to (T, K) by each pair's distance: the index plays the part of the paper's "relative shift".
The content term goes through `F.scaled_dot_product_attention` with the position and segment terms as an
additive mask; the eager path writes the softmax out and returns the weights.

A query stream g (XLNet's two-stream attention) attends to the same keys and values with the same weights:
it brings its own queries and its own `Relations` (where each query sits, what it may see), never keys.
A decoding step (plmkit.generation) takes its earlier keys and values from the cache instead of a memory:
keys carry no position here, so the cached ones stay valid as the queries move on.

Parameters are (H, N, D) tensors named as in XLNet (`q k v o r`), so its checkpoints map one to one; there
are no biases in the projections (neither paper's code has them).

Shape legend: B = batch, T = queries, M = memory, K = M + T keys, P = distances, H = hidden size, N = heads,
D = H / N.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .attention import attend_with_bias
from .transformer import Block


def relative_sinusoids(distances: torch.Tensor, dim: int) -> torch.Tensor:
    """(P,) distances → (P, dim): [sin(d·f), cos(d·f)] with f = 10000^(−2k/dim), the sines in the first half
    and the cosines in the second, as both papers' code lays them out (Vaswani et al. interleave them)."""
    inv = 1.0 / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float32, device=distances.device) / dim)
    angle = distances.float()[:, None] * inv  # (P, dim / 2)
    return torch.cat([angle.sin(), angle.cos()], -1)


@dataclasses.dataclass
class Relations:
    """How the queries of one stream stand to the keys, shared by every layer of one forward pass."""

    index: torch.Tensor  # (B | 1, T, K) long: the row of the distance table for query i and key j
    visible: torch.Tensor | None = None  # (B | 1, T, K) bool: True = query i may attend to key j; None = all
    other_segment: torch.Tensor | None = None  # (B | 1, T, K) bool: key j is in another segment than query i


class RelativeAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, dropout: float, segments: bool = False):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        N, D = num_heads, hidden_size // num_heads
        self.num_heads, self.head_dim, self.dropout = N, D, dropout
        for name in ("q", "k", "v", "o", "r"):  # r = W_R, the projection of the distance sinusoids
            setattr(self, name, nn.Parameter(torch.empty(hidden_size, N, D)))
        self.r_w_bias = nn.Parameter(torch.empty(N, D))  # u: the content bias
        self.r_r_bias = nn.Parameter(torch.empty(N, D))  # v: the position bias
        if segments:
            self.r_s_bias = nn.Parameter(torch.empty(N, D))  # b: the segment bias
            self.seg_embed = nn.Parameter(torch.empty(2, N, D))  # s_+ (same segment), s_− (another)
        self.segments = segments

    def forward(self, h: torch.Tensor, memory: torch.Tensor | None, table: torch.Tensor, rel: Relations,
                impl: str = "sdpa", need_weights: bool = False, g: torch.Tensor | None = None,
                rel_g: Relations | None = None, cache=None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """h: (B, T, H); memory: (B, M, H) or None; table: (P, H) distance sinusoids; g: (B, T_g, H) query
        stream or None, with rel_g; cache: a LayerCache (plmkit.generation.cache) holding the earlier keys
        and values, which takes h's. Returns the content output (B, T, H), the query stream's (B, T_g, H) or
        None, and the content stream's weights (B, N, T, K) or None."""
        context = h if memory is None else torch.cat([memory.to(h.dtype), h], 1)  # (B, K, H)
        k = torch.einsum("bkh,hnd->bnkd", context, self.k)  # (B, N, K, D)
        v = torch.einsum("bkh,hnd->bnkd", context, self.v)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, N, S, D): the cached columns, then these
        r = torch.einsum("ph,hnd->pnd", table.to(h.dtype), self.r)  # (P, N, D)
        y, weights = self._attend(h, k, v, r, rel, impl, need_weights)
        y_g = None if g is None else self._attend(g, k, v, r, rel_g, impl, False)[0]
        return y, y_g, weights

    def _attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, r: torch.Tensor, rel: Relations,
                impl: str, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, _ = x.shape
        N, K = self.num_heads, k.shape[2]
        q = torch.einsum("bth,hnd->bntd", x, self.q)  # (B, N, T, D)
        scale = 1.0 / math.sqrt(self.head_dim)
        bias = torch.einsum("bnid,pnd->bnip", q + self.r_r_bias[:, None], r)  # (B, N, T, P): (b) + (d)
        bias = bias.gather(-1, rel.index[:, None].expand(B, N, T, K))  # (B, N, T, K)
        if rel.other_segment is not None:
            seg = torch.einsum("bnid,snd->bnis", q + self.r_s_bias[:, None], self.seg_embed)  # (B, N, T, 2)
            bias = bias + torch.where(rel.other_segment[:, None], seg[..., 1:], seg[..., :1])
        bias = bias * scale
        if rel.visible is not None:  # a finite floor: a row that sees nothing averages instead of giving NaN
            bias = bias.masked_fill(~rel.visible[:, None], torch.finfo(bias.dtype).min)
        q = q + self.r_w_bias[:, None]  # (a) + (c)
        y, weights = attend_with_bias(q, k, v, bias, self.dropout if self.training else 0.0, impl,
                                      need_weights)  # (B, N, T, D), (B, N, T, K) or None
        return torch.einsum("bnid,hnd->bih", y, self.o), (weights if need_weights else None)


class MemoryBlock(Block):
    """A post-LN transformer block whose attention also reads the memory, for one or two streams; the
    streams share the attention's and the feed-forward's weights (XLNet §2.3)."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, activation: str,
                 dropout: float, attention_dropout: float, eps: float, segments: bool = False):
        super().__init__(hidden_size, num_heads, intermediate_size, activation, dropout, attention_dropout,
                         causal=False, norm_first=False, eps=eps)
        self.attn = RelativeAttention(hidden_size, num_heads, attention_dropout, segments)

    def forward(self, h: torch.Tensor, memory: torch.Tensor | None, table: torch.Tensor, rel: Relations,
                impl: str = "sdpa", need_weights: bool = False, g: torch.Tensor | None = None,
                rel_g: Relations | None = None, cache=None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """h: (B, T, H) → (B, T, H); g: (B, T_g, H) → (B, T_g, H) or None; weights (B, N, T, K) or None."""
        a, a_g, weights = self.attn(h, memory, table, rel, impl, need_weights, g, rel_g, cache)
        return self._after(h, a), (None if g is None else self._after(g, a_g)), weights

    def _after(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.drop(a))
        return self.ffn_norm(x + self.drop(self.ffn(x)))
