"""Multi-head self-attention: one core on `F.scaled_dot_product_attention`, plus an explicit eager
path that returns the attention weights for analysis.

Asking for weights from the fast path is an error, never a silent switch to the slow one.

The mask is either a key mask (B, S), which the layer combines with its causal rule, or a full mask
(B, T, S) naming the keys each query sees, which replaces the rule (UniLM's masks; a cached decoding step,
whose T queries come after S − T cached keys), or a float (B or 1, N, T, S) added to the scores, which
replaces the rule too (T5's relative position bias, with −inf where a key is not seen). With a `cache`
(plmkit.generation.cache.LayerCache) the layer attends over the cached keys and values plus its own new ones.

`CrossAttention` is the encoder–decoder attention of a sequence-to-sequence decoder (Vaswani et al. 2017,
§3.2.3): queries from the decoder, keys and values from the encoder's output, computed once per source.

Shape legend: B = batch, T = sequence length (queries), S = keys, H = hidden size, N = heads, D = H / N (the
head size; after head pruning (plmkit.compress.structure) a layer keeps D and has fewer heads, so N · D < H).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IMPLEMENTATIONS = ("sdpa", "eager")


def attend_with_bias(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, dropout: float,
                     impl: str, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """q (B, N, T, D), k and v (B, N, S, D), bias (B, N, T, S) added to the scores q·k/√D → (B, N, T, D) and the
    weights (B, N, T, S) or None. dropout: the probability in force (0 when evaluating). The relative
    attentions' (Transformer-XL's, Funnel's) common tail: SDPA with the bias as its float mask, or the
    softmax written out when the weights are wanted."""
    if impl == "sdpa":
        if need_weights:
            raise ValueError("attention weights need impl='eager'; the SDPA path does not return them")
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout), None
    if impl == "eager":
        weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + bias).softmax(-1)
        return F.dropout(weights, dropout) @ v, weights
    raise ValueError(f"unknown attention impl {impl!r}; choose from {IMPLEMENTATIONS}")


class SelfAttention(nn.Module):
    """bias: the projections have biases (False: T5). scale: the factor on q·k, default 1/√D (Vaswani et al.
    2017, §3.2.1); T5 folds it into the initialisation of q and uses 1."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, causal: bool, bias: bool = True,
                 scale: float | None = None):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        self.num_heads, self.head_dim, self.causal, self.dropout = num_heads, hidden_size // num_heads, causal, dropout
        self.scale = scale
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)  # fused: one matmul for q, k, v
        self.out = nn.Linear(hidden_size, hidden_size, bias=bias)

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
        additive = key_mask is not None and key_mask.dim() == 4
        if additive:
            causal = False  # the bias holds the rule
        full = key_mask is not None and key_mask.dim() == 3
        if rows is not None:
            b = torch.arange(B, device=x.device)
            q = q[b, :, rows].unsqueeze(2)  # (B, N, 1, D)
            if additive:
                key_mask = key_mask.expand(B, -1, -1, -1)[b, :, rows].unsqueeze(2)  # (B, N, 1, S)
            elif full:
                key_mask = key_mask[b, rows]  # (B, S): the mask's row for that query
            elif causal:  # the query at row r sees keys 0…r
                seen = torch.arange(T, device=x.device) <= rows[:, None]  # (B, T)
                key_mask = seen if key_mask is None else key_mask & seen
            full, causal = False, False
        return self.attend(q, k, v, key_mask, full, additive, causal, impl, need_weights)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
               full: bool, additive: bool, causal: bool, impl: str, need_weights: bool
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """q (B, N, T, D), k and v (B, N, S, D), the mask as `forward` reads it → (B, T, H), weights or None."""
        B, N, T, D = q.shape
        if additive:
            mask = key_mask.to(q.dtype)  # SDPA adds a float mask of the queries' dtype (bf16 under autocast)
        elif full:
            mask, causal = key_mask[:, None], False  # (B, 1, T, S)
        else:
            mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S)
        p = self.dropout if self.training else 0.0
        if impl == "sdpa":
            if need_weights:
                raise ValueError("attention weights need impl='eager'; the SDPA path does not return them")
            if causal and mask is not None:
                mask = mask & torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal and mask is None,
                                               scale=self.scale)  # (B, N, T, D)
            weights = None
        elif impl == "eager":
            scale = self.scale if self.scale is not None else 1 / math.sqrt(D)
            scores = q @ k.transpose(-2, -1) * scale  # (B, N, T, S)
            if causal:
                scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=q.device).tril(), float("-inf"))
            if additive:
                scores = scores + mask
            elif mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(-1)
            y = F.dropout(weights, p, self.training) @ v  # (B, N, T, D)
        else:
            raise ValueError(f"unknown attention impl {impl!r}; choose from {IMPLEMENTATIONS}")
        y = y.transpose(1, 2).reshape(B, -1, N * D)  # N · D = H unless heads were pruned away
        return self.out(y), (weights if need_weights else None)


class CrossAttention(SelfAttention):
    """Attention from the decoder's positions to the encoder's: the query projection reads the decoder, one
    fused projection makes keys and values of the encoder's output (`memory`, once per source).

    Several decoder rows may share one source (the beams of beam search): with R = G × B' rows and memory
    keys for B' sources, row r reads source r // G. The G rows of a source then attend as G × T queries of
    one attention, so the source's keys and values are neither copied per beam nor reordered with them."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, bias: bool = True,
                 scale: float | None = None):
        super().__init__(hidden_size, num_heads, dropout, False, bias, scale)
        del self.qkv  # queries and keys/values read different inputs: two projections instead
        self.q = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.kv = nn.Linear(hidden_size, 2 * hidden_size, bias=bias)  # fused: one matmul for k, v

    def memory(self, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's output (B', S, H) → keys and values (B', N, S, D) each."""
        Bm, S, _ = m.shape
        k, v = self.kv(m).view(Bm, S, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor],
                key_mask: torch.Tensor | None = None, impl: str = "sdpa", need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (R, T, H); memory: keys and values (B', N, S, D); key_mask: (B', S) bool, the source's real
        tokens, or None. Returns (R, T, H) and (R, N, T, S) or None."""
        R, T, H = x.shape
        k, v = memory
        Bm, G = k.shape[0], R // k.shape[0]  # sources, decoder rows per source
        q = self.q(x).view(Bm, G * T, self.num_heads, self.head_dim).transpose(1, 2)  # (B', N, G·T, D)
        if key_mask is not None and bool(key_mask.all()):
            key_mask = None
        y, w = self.attend(q, k, v, key_mask, False, False, False, impl, need_weights)  # (B', G·T, H)
        if w is not None:
            w = w.view(Bm, self.num_heads, G, T, -1).transpose(1, 2).reshape(R, self.num_heads, T, -1)
        return y.view(R, T, H), w
