"""Self-attention with functional relative positions (NEZHA): keys and values each get a fixed sinusoidal
encoding of the clipped relative distance j − i. Wei et al. 2019, arXiv:1909.00204, §3.2.

    e_ij = q_i · (k_j + a_ij) / √D,   z_i = Σ_j α_ij (v_j + a_ij),   a_ij = A[clip(j − i, −K, K) + K]

A is a (2K + 1, D) sin/cos table, shared by all heads and layers and never learned. As in the released
implementation (and Hugging Face's former `NezhaModel`), the sinusoid's argument is the shifted index
clip(j − i) + K, not the signed distance.

The SDPA path adds the key term q_i · a_ij as a float attention mask; the value term needs the weights α,
which SDPA does not return, so they come out of the same kernel as T extra value channels (one-hot key
positions) and meet A in one more matmul. The eager path computes α explicitly and returns it.

Shape legend: B = batch, T = sequence length, H = hidden size, N = heads, D = H / N, K = max distance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .attention import IMPLEMENTATIONS, SelfAttention
from .embeddings import sinusoidal_table


class RelativeSelfAttention(SelfAttention):
    def __init__(self, hidden_size: int, num_heads: int, dropout: float, causal: bool, max_distance: int):
        super().__init__(hidden_size, num_heads, dropout, causal)
        self.max_distance = max_distance
        self.register_buffer("table", sinusoidal_table(2 * max_distance + 1, self.head_dim), persistent=False)

    def relative(self, T: int) -> torch.Tensor:
        """(T, T, D): a_ij for query i and key j."""
        pos = torch.arange(T, device=self.table.device)
        K = self.max_distance
        return self.table[(pos[None, :] - pos[:, None]).clamp(-K, K) + K]

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None, impl: str = "sdpa",
                need_weights: bool = False, rows: torch.Tensor | None = None, cache=None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, H); key_mask: (B, T) bool, True = attend. Returns (B, T, H) and (B, N, T, T) or None.
        rows: as in SelfAttention; here every query is still computed and the rows are picked after.
        An encoder (NEZHA) never decodes incrementally, so there is no cache to take."""
        if cache is not None or (key_mask is not None and key_mask.dim() == 3):
            raise ValueError("relative attention takes a (B, T) key mask and no cache")
        if rows is not None:
            y, weights = self.forward(x, key_mask, impl, need_weights)
            b = torch.arange(x.shape[0], device=x.device)
            return y[b, rows].unsqueeze(1), (weights[b, :, rows].unsqueeze(2) if need_weights else None)
        B, T, H = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 × (B, N, T, D)
        a = self.relative(T).to(q.dtype)  # (T, T, D)
        bias = torch.einsum("bnid,ijd->bnij", q, a) / math.sqrt(self.head_dim)  # (B, N, T, T): the key term
        hidden = torch.zeros(T, T, dtype=torch.bool, device=x.device)
        if self.causal:
            hidden |= ~torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        if key_mask is not None:
            hidden = hidden | ~key_mask[:, None, None, :]  # (B, 1, T, T)
        bias = bias.masked_fill(hidden, float("-inf"))
        p = self.dropout if self.training else 0.0
        if impl == "sdpa":
            if need_weights:
                raise ValueError("attention weights need impl='eager'; the SDPA path does not return them")
            onehot = torch.eye(T, dtype=v.dtype, device=x.device).expand(B, self.num_heads, T, T)
            out = F.scaled_dot_product_attention(q, k, torch.cat([v, onehot], -1), attn_mask=bias, dropout_p=p)
            y, weights = out[..., :self.head_dim], out[..., self.head_dim:]  # (B, N, T, D), (B, N, T, T)
        elif impl == "eager":
            weights = F.dropout((q @ k.transpose(-2, -1) / math.sqrt(self.head_dim) + bias).softmax(-1), p,
                                self.training)  # (B, N, T, T)
            y = weights @ v
        else:
            raise ValueError(f"unknown attention impl {impl!r}; choose from {IMPLEMENTATIONS}")
        y = y + torch.einsum("bnij,ijd->bnid", weights, a)  # the value term Σ_j α_ij a_ij
        return self.out(y.transpose(1, 2).reshape(B, T, -1)), (weights if need_weights else None)
