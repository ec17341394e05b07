"""A transformer block: attention + feed-forward, each in a residual branch, post-LN or pre-LN.

`norm_first=False` is the original post-LN layout (Vaswani et al. 2017; BERT, GPT-1);
`norm_first=True` is pre-LN (GPT-2; Xiong et al. 2020, arXiv:2002.04745, Fig. 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import SelfAttention

ACTIVATIONS = {
    "gelu": F.gelu,  # exact erf form: BERT
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # tanh approximation: GPT-1, GPT-2
    "relu": F.relu,
}


class FeedForward(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, activation: str):
        super().__init__()
        self.up = nn.Linear(hidden_size, intermediate_size)
        self.down = nn.Linear(intermediate_size, hidden_size)
        self.act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class Block(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, activation: str,
                 dropout: float, attention_dropout: float, causal: bool, norm_first: bool, eps: float):
        super().__init__()
        self.norm_first = norm_first
        self.attn = SelfAttention(hidden_size, num_heads, attention_dropout, causal)
        self.attn_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.ffn = FeedForward(hidden_size, intermediate_size, activation)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=eps)
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
