"""Transformer blocks: attention + feed-forward, each in a residual branch, post-LN or pre-LN; the decoder
block of a sequence-to-sequence model adds attention to the encoder's output between the two.

`norm_first=False` is the original post-LN layout (Vaswani et al. 2017; BERT, GPT-1, BART);
`norm_first=True` is pre-LN (GPT-2, T5; Xiong et al. 2020, arXiv:2002.04745, Fig. 1).
`norm="rms"`: RMS norm, a scale without a bias or the mean subtracted (Zhang & Sennrich 2019; T5).
`gated=True`: the feed-forward's activation multiplies a second, linear projection (GLU variants, Shazeer
2020, arXiv:2002.05202; T5 v1.1's gated-GELU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import CrossAttention, SelfAttention

ACTIVATIONS = {
    "gelu": F.gelu,  # exact erf form: BERT
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # tanh approximation: GPT-1, GPT-2
    "relu": F.relu,
}
NORMS = ("layer", "rms")


def make_norm(kind: str, size: int, eps: float) -> nn.Module:
    if kind == "rms":
        return nn.RMSNorm(size, eps=eps)
    if kind == "layer":
        return nn.LayerNorm(size, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; choose from {NORMS}")


class FeedForward(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, activation: str, bias: bool = True,
                 gated: bool = False):
        super().__init__()
        self.up = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.gate = nn.Linear(hidden_size, intermediate_size, bias=bias) if gated else None  # activated branch
        self.down = nn.Linear(intermediate_size, hidden_size, bias=bias)
        self.act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            return self.down(self.act(self.gate(x)) * self.up(x))
        return self.down(self.act(self.up(x)))


class Block(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, activation: str,
                 dropout: float, attention_dropout: float, causal: bool, norm_first: bool, eps: float,
                 bias: bool = True, norm: str = "layer", gated: bool = False, scale: float | None = None):
        super().__init__()
        self.norm_first = norm_first
        self.attn = SelfAttention(hidden_size, num_heads, attention_dropout, causal, bias, scale)
        self.attn_norm = make_norm(norm, hidden_size, eps)
        self.ffn = FeedForward(hidden_size, intermediate_size, activation, bias, gated)
        self.ffn_norm = make_norm(norm, hidden_size, eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None, impl: str = "sdpa",
                need_weights: bool = False, rows: torch.Tensor | None = None, cache=None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, H) → (B, T, H), attention weights (B, N, T, S) or None. With `rows` ((B,) long) the
        block's output is computed at one position per sequence only: (B, 1, H). key_mask and cache: as in
        SelfAttention."""
        res = x if rows is None else x[torch.arange(x.shape[0], device=x.device), rows].unsqueeze(1)
        if self.norm_first:
            a, w = self.attn(self.attn_norm(x), key_mask, impl, need_weights, rows, cache)
            x = res + self.drop(a)
            return x + self.drop(self.ffn(self.ffn_norm(x))), w
        a, w = self.attn(x, key_mask, impl, need_weights, rows, cache)
        x = self.attn_norm(res + self.drop(a))
        return self.ffn_norm(x + self.drop(self.ffn(x))), w


class DecoderBlock(Block):
    """A causal block plus attention to the encoder's output, between self-attention and feed-forward
    (Vaswani et al. 2017, §3.1), with its own norm in the same layout."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, activation: str,
                 dropout: float, attention_dropout: float, norm_first: bool, eps: float, bias: bool = True,
                 norm: str = "layer", gated: bool = False, scale: float | None = None):
        super().__init__(hidden_size, num_heads, intermediate_size, activation, dropout, attention_dropout, True,
                         norm_first, eps, bias, norm, gated, scale)
        self.cross = CrossAttention(hidden_size, num_heads, attention_dropout, bias, scale)
        self.cross_norm = make_norm(norm, hidden_size, eps)

    def forward(self, x: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor],
                memory_mask: torch.Tensor | None, key_mask: torch.Tensor | None = None, impl: str = "sdpa",
                need_weights: bool = False, cache=None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """x: (R, T, H) decoder states; memory: this block's keys and values of the source (B', N, S, D),
        memory_mask (B', S) its real tokens; key_mask and cache: the causal self-attention's, as in
        SelfAttention. Returns (R, T, H) and the self- and cross-attention weights (or None)."""
        if self.norm_first:
            a, w = self.attn(self.attn_norm(x), key_mask, impl, need_weights, None, cache)
            x = x + self.drop(a)
            c, wc = self.cross(self.cross_norm(x), memory, memory_mask, impl, need_weights)
            x = x + self.drop(c)
            return x + self.drop(self.ffn(self.ffn_norm(x))), w, wc
        a, w = self.attn(x, key_mask, impl, need_weights, None, cache)
        x = self.attn_norm(x + self.drop(a))
        c, wc = self.cross(x, memory, memory_mask, impl, need_weights)
        x = self.cross_norm(x + self.drop(c))
        return self.ffn_norm(x + self.drop(self.ffn(x))), w, wc
