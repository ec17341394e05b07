"""Multi-head self-attention: one core on `F.scaled_dot_product_attention`, plus an explicit eager
path that returns the attention weights for analysis.

Asking for weights from the fast path is an error, never a silent switch to the slow one.

Shape legend: B = batch, T = sequence length, H = hidden size, N = heads, D = H / N.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IMPLEMENTATIONS = ("sdpa", "eager")


class SelfAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, dropout: float, causal: bool):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        self.num_heads, self.head_dim, self.causal, self.dropout = num_heads, hidden_size // num_heads, causal, dropout
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)  # fused: one matmul for q, k, v
        self.out = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None, impl: str = "sdpa",
                need_weights: bool = False, rows: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, H); key_mask: (B, T) bool, True = attend. Returns (B, T, H) and (B, N, T, T) or None.
        rows: optional (B,) long, one position per sequence: only its query attends (keys and values come
        from every position), and the output is (B, 1, H), weights (B, N, 1, T)."""
        B, T, H = x.shape
        N, D = self.num_heads, self.head_dim
        causal = self.causal
        q, k, v = self.qkv(x).view(B, T, 3, N, D).permute(2, 0, 3, 1, 4)  # 3 × (B, N, T, D)
        if rows is not None:
            q = q[torch.arange(B, device=x.device), :, rows].unsqueeze(2)  # (B, N, 1, D)
            if causal:  # the query at row r sees keys 0…r
                seen = torch.arange(T, device=x.device) <= rows[:, None]  # (B, T)
                key_mask, causal = (seen if key_mask is None else key_mask & seen), False
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T)
        p = self.dropout if self.training else 0.0
        if impl == "sdpa":
            if need_weights:
                raise ValueError("attention weights need impl='eager'; the SDPA path does not return them")
            if causal and mask is not None:
                mask = mask & torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                               is_causal=causal and mask is None)  # (B, N, T, D)
            weights = None
        elif impl == "eager":
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, N, T, T)
            if causal:
                scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=x.device).tril(), float("-inf"))
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(-1)
            y = F.dropout(weights, p, self.training) @ v  # (B, N, T, D)
        else:
            raise ValueError(f"unknown attention impl {impl!r}; choose from {IMPLEMENTATIONS}")
        y = y.transpose(1, 2).reshape(B, -1, H)
        return self.out(y), (weights if need_weights else None)
