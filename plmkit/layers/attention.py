"""Multi-head self-attention: one core on `F.scaled_dot_product_attention`, plus an explicit eager
path that returns the attention weights for analysis.

Asking for weights from the fast path is an error, never a silent switch to the slow one.

The mask is either a key mask (B, S), which the layer combines with its causal rule, or a full mask
(B, T, S) naming the keys each query sees, which replaces the rule (UniLM's masks; a cached decoding step,
whose T queries come after S − T cached keys). With a `cache` (plmkit.generation.cache.LayerCache) the
layer attends over the cached keys and values plus its own new ones.

Shape legend: B = batch, T = sequence length (queries), S = keys, H = hidden size, N = heads, D = H / N (the
head size; after head pruning (plmkit.compress.structure) a layer keeps D and has fewer heads, so N · D < H).
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
                need_weights: bool = False, rows: torch.Tensor | None = None, cache=None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, H); key_mask: (B, S) or (B, T, S) bool, True = attend. Returns (B, T, H) and
        (B, N, T, S) or None. rows: optional (B,) long, one position per sequence: only its query attends
        (keys and values come from every position), and the output is (B, 1, H), weights (B, N, 1, S).
        cache: optional LayerCache; x holds only the new tokens, S counts the cached ones too."""
        B, T, H = x.shape
        N, D = self.num_heads, self.head_dim
        causal = self.causal
        q, k, v = self.qkv(x).view(B, T, 3, N, D).permute(2, 0, 3, 1, 4)  # 3 × (B, N, T, D)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, N, S, D)
            causal = causal and k.shape[2] == T  # past the first step the mask (or a lone query) says it all
        full = key_mask is not None and key_mask.dim() == 3
        if rows is not None:
            b = torch.arange(B, device=x.device)
            q = q[b, :, rows].unsqueeze(2)  # (B, N, 1, D)
            if full:
                key_mask = key_mask[b, rows]  # (B, S): the mask's row for that query
            elif causal:  # the query at row r sees keys 0…r
                seen = torch.arange(T, device=x.device) <= rows[:, None]  # (B, T)
                key_mask = seen if key_mask is None else key_mask & seen
            full, causal = False, False
        if full:
            mask, causal = key_mask[:, None], False  # (B, 1, T, S)
        else:
            mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S)
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
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, N, T, S)
            if causal:
                scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=x.device).tril(), float("-inf"))
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(-1)
            y = F.dropout(weights, p, self.training) @ v  # (B, N, T, D)
        else:
            raise ValueError(f"unknown attention impl {impl!r}; choose from {IMPLEMENTATIONS}")
        y = y.transpose(1, 2).reshape(B, -1, N * D)  # N · D = H unless heads were pruned away
        return self.out(y), (weights if need_weights else None)
