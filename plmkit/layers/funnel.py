"""Funnel-Transformer's layers (Dai et al. 2020, arXiv:2006.03236, §2.2–2.3 and appendix A.2): the sequence
mean-pooled with [CLS] kept apart, relative attention whose queries may be the pooled sequence while its keys
and values are the unpooled one, and the up-sampling that brings the last block back to full length.

Pooling (stride 2, [CLS] apart, the last token cut as the released code's `truncate_seq` does, so that
[CLS] + 2^k − 1 tokens halve to [CLS] + 2^(k−1) − 1):

    [c, t1, t2, …, t_{T−1}]  →  [c, (t1 + t2)/2, (t3 + t4)/2, …]       (a lone last vector pools alone)

A pooled vector stands at the position of the first token it averages; its segment is that token's, and it
is padding if either of its tokens was. Between query i and key j the score is (scaled by 1/√D)

    A_ij = (q_i + u)·k_j  +  (q_i + v)·W_R R(p_i − p_j)  +  (q_i + b)·s_{same segment?}
           content           position (Transformer-XL)       segment (XLNet's relative term)

with R the sinusoids of the distance between the two positions in the original sequence, so one table of
distances serves every block; the position and segment terms are zero when i or j is [CLS] (`separate_cls`),
and a [CLS] of token type 2 counts as in every segment (the released tokenizer's convention). The first
layer of each pooled block reads pooled queries against the previous block's keys and values (`pool_q_only`);
its output is the pooled length. The content term goes through `F.scaled_dot_product_attention` with the
other two as an additive mask; the eager path writes the softmax out and returns the weights. The released
code's dropout on the sinusoids is left out (it changes training only).

Shape legend: B = batch, T = queries, S = keys, P = distinct distances, H = hidden size, N = heads, D = H / N.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attend_with_bias
from .transformer import Block
from .xl_attention import relative_sinusoids

CLS_TYPE = 2  # token type of a [CLS] that belongs to both segments (FunnelTokenizer's cls_token_type_id)


def pool(x: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """(B, T, …) → (B, 1 + ⌈(T − 2)/2⌉, …): [CLS] kept, the tokens between it and the last in pairs, each
    pair reduced by `reduce`: "mean" (hidden states), "first" (positions, token types), "all" (padding)."""
    cls, rest = x[:, :1], x[:, 1:-1]
    if rest.shape[1] % 2:  # a lone last vector pools with itself: its mean is itself
        rest = torch.cat([rest, rest[:, -1:]], 1)
    pairs = rest.unflatten(1, (-1, 2))  # (B, T', 2, …)
    rest = {"mean": lambda: pairs.mean(2), "first": lambda: pairs[:, :, 0], "all": lambda: pairs.all(2)}[reduce]()
    return torch.cat([cls, rest], 1)


def upsample(x: torch.Tensor, length: int, stride: int) -> torch.Tensor:
    """(B, T', H) → (B, length, H): [CLS] in place, each pooled vector repeated for the `stride` tokens it
    stands for; positions the pooling cut at the end get zeros (the decoder's residual fills them)."""
    rest = x[:, 1:].repeat_interleave(stride, 1)[:, :length - 1]
    rest = F.pad(rest, (0, 0, 0, length - 1 - rest.shape[1]))
    return torch.cat([x[:, :1], rest], 1)


@dataclasses.dataclass
class Stage:
    """What a sequence carries through the funnel besides its states; pooled with them."""

    positions: torch.Tensor  # (T,) long: each vector's position, that of the first token it averages
    token_types: torch.Tensor | None  # (B, T) long, or None: one segment
    mask: torch.Tensor | None  # (B, T) bool, True = real token, or None: no padding

    @classmethod
    def start(cls, T: int, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None,
              device: torch.device) -> "Stage":
        mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
        return cls(torch.arange(T, device=device), token_type_ids, mask)

    def pooled(self) -> "Stage":
        return Stage(pool(self.positions[None], "first")[0],
                     None if self.token_types is None else pool(self.token_types, "first"),
                     None if self.mask is None else pool(self.mask, "all"))


@dataclasses.dataclass
class Relations:
    """How queries at one stage stand to keys at another, shared by the layers that read both."""

    table: torch.Tensor  # (P, H): sinusoids of the distinct distances
    index: torch.Tensor  # (T, S) long: the row of `table` for query i and key j
    keep: torch.Tensor  # (T, S): 0 where i or j is [CLS] (no position or segment term), else 1
    same_segment: torch.Tensor | None  # (B, T, S) bool, or None: all in one segment
    key_mask: torch.Tensor | None  # (B, S) bool, True = attend, or None

    @classmethod
    def between(cls, queries: Stage, keys: Stage, dim: int, dtype: torch.dtype) -> "Relations":
        distances = queries.positions[:, None] - keys.positions[None, :]  # (T, S)
        unique, index = torch.unique(distances, return_inverse=True)
        keep = torch.ones(distances.shape, dtype=dtype, device=distances.device)
        keep[0, :] = keep[:, 0] = 0
        same = None
        if queries.token_types is not None:
            tq, tk = queries.token_types[:, :, None], keys.token_types[:, None, :]
            same = (tq == tk) | (tq == CLS_TYPE) | (tk == CLS_TYPE)
        return cls(relative_sinusoids(unique, dim).to(dtype), index, keep, same, keys.mask)


class FunnelAttention(nn.Module):
    """Relative attention from `x` (the queries: pooled or not) to `context` (keys and values). Parameters
    as the released code names them: no query bias (u, v and b stand in for it), W_R as (H, N, D)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        N, D = num_heads, hidden_size // num_heads
        self.num_heads, self.head_dim, self.dropout = N, D, dropout
        self.q = nn.Linear(hidden_size, hidden_size, bias=False)
        self.kv = nn.Linear(hidden_size, 2 * hidden_size)  # fused: one matmul for k, v
        self.out = nn.Linear(hidden_size, hidden_size)
        self.r = nn.Parameter(torch.empty(hidden_size, N, D))  # W_R, the projection of the distance sinusoids
        self.r_w_bias = nn.Parameter(torch.empty(N, D))  # u: the content bias
        self.r_r_bias = nn.Parameter(torch.empty(N, D))  # v: the position bias
        self.r_s_bias = nn.Parameter(torch.empty(N, D))  # b: the segment bias
        self.seg_embed = nn.Parameter(torch.empty(2, N, D))  # s: [another segment, the same segment]

    def forward(self, x: torch.Tensor, context: torch.Tensor, rel: Relations, impl: str = "sdpa",
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, H) queries; context: (B, S, H) keys and values → (B, T, H), weights (B, N, T, S) or None."""
        B, T, H = x.shape
        S, N, D = context.shape[1], self.num_heads, self.head_dim
        q = self.q(x).view(B, T, N, D).transpose(1, 2)  # (B, N, T, D)
        k, v = self.kv(context).view(B, S, 2, N, D).permute(2, 0, 3, 1, 4)  # 2 × (B, N, S, D)
        r = torch.einsum("ph,hnd->pnd", rel.table, self.r)  # (P, N, D)
        bias = torch.einsum("bnid,pnd->bnip", q + self.r_r_bias[:, None], r)  # (B, N, T, P)
        bias = bias.gather(-1, rel.index.expand(B, N, T, S))  # (B, N, T, S): position term
        seg = torch.einsum("bnid,snd->bnis", q + self.r_s_bias[:, None], self.seg_embed)  # (B, N, T, 2)
        if rel.same_segment is None:
            bias = bias + seg[..., 1:]
        else:
            bias = bias + torch.where(rel.same_segment[:, None], seg[..., 1:], seg[..., :1])
        bias = bias * (rel.keep / math.sqrt(D))
        if rel.key_mask is not None:  # a finite floor, as for Transformer-XL: never a row of NaN
            bias = bias.masked_fill(~rel.key_mask[:, None, None, :], torch.finfo(bias.dtype).min)
        y, weights = attend_with_bias(q + self.r_w_bias[:, None], k, v, bias, self.dropout if self.training else 0.0,
                                      impl, need_weights)  # (B, N, T, D), (B, N, T, S) or None
        return self.out(y.transpose(1, 2).reshape(B, T, H)), (weights if need_weights else None)


class FunnelBlock(Block):
    """A post-LN block whose attention reads queries and keys from two (possibly different) sequences; the
    residual is the queries', so a block that pools returns the pooled length."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, activation: str,
                 dropout: float, attention_dropout: float, eps: float):
        super().__init__(hidden_size, num_heads, intermediate_size, activation, dropout, attention_dropout,
                         causal=False, norm_first=False, eps=eps)
        self.attn = FunnelAttention(hidden_size, num_heads, attention_dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor, rel: Relations, impl: str = "sdpa",
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, H) queries, context: (B, S, H) → (B, T, H), weights (B, N, T, S) or None."""
        a, w = self.attn(x, context, rel, impl, need_weights)
        x = self.attn_norm(x + self.drop(a))
        return self.ffn_norm(x + self.drop(self.ffn(x))), w
