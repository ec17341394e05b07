"""ERNIE-THU's aggregator: a transformer block over two streams, tokens and the entities aligned to them,
fused in one feed-forward layer. Zhang et al. 2019, arXiv:1905.07129, §3.3 (the K-Encoder), Eq. 2–4.

Each stream has its own multi-head self-attention (the entity stream attends among the positions that
hold an entity). Then, at every token j aligned to an entity k,
    h_j = σ(W̃_t w̃_j + W̃_e ẽ_k + b̃),   w_j = σ(W_t h_j + b_t),   e_k = σ(W_e h_j + b_e),
and at a token with no entity the entity term is absent (Eq. 4). As in the authors' release, σ of the
outputs is the usual residual + LayerNorm of a post-LN block: h is the block's FFN hidden layer, fed
by both streams, and read back into both.

Shape legend: B = batch, T = sequence length, H = hidden size, K = entity size, I = FFN hidden size.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import SelfAttention
from .transformer import Block


class Aggregator(Block):
    """A post-LN block (the token stream) plus the entity stream's attention and its share of the FFN."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, activation: str,
                 dropout: float, attention_dropout: float, eps: float, entity_size: int, entity_heads: int):
        super().__init__(hidden_size, num_heads, intermediate_size, activation, dropout, attention_dropout,
                         causal=False, norm_first=False, eps=eps)
        self.entity_attn = SelfAttention(entity_size, entity_heads, attention_dropout, causal=False)
        self.entity_attn_norm = nn.LayerNorm(entity_size, eps=eps)
        self.entity_up = nn.Linear(entity_size, intermediate_size, bias=False)  # W̃_e (b̃ is ffn.up's bias)
        self.entity_down = nn.Linear(intermediate_size, entity_size)  # W_e, b_e
        self.entity_norm = nn.LayerNorm(entity_size, eps=eps)

    def forward(self, x: torch.Tensor, e: torch.Tensor, aligned: torch.Tensor, key_mask: torch.Tensor | None = None,
                impl: str = "sdpa", need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x: (B, T, H) tokens; e: (B, T, K) the entity aligned to each token (zeros where none); aligned: (B, T)
        bool. Returns the two streams (B, T, H), (B, T, K) and the token attention weights or None."""
        a, w = self.attn(x, key_mask, impl, need_weights)
        x = self.attn_norm(x + self.drop(a))  # w̃
        # A row without any entity lets its entity queries see every key: their output is zeroed below, and
        # an all-masked softmax would be NaN.
        seen = aligned | ~aligned.any(1, keepdim=True)  # (B, T)
        if key_mask is not None:
            seen = seen & key_mask
        ea, _ = self.entity_attn(e, seen, impl)
        e = self.entity_attn_norm(e + self.drop(ea))  # ẽ
        e = e * aligned.unsqueeze(-1).to(e.dtype)  # Eq. 4: no entity term where no entity is aligned
        h = self.ffn.act(self.ffn.up(x) + self.entity_up(e))  # (B, T, I)
        x = self.ffn_norm(x + self.drop(self.ffn.down(h)))
        e = self.entity_norm(e + self.drop(self.entity_down(h)))
        return x, e, w

