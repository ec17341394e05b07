"""n-gram LM = a token predicted from counts of the n − 1 tokens before it, interpolated Kneser–Ney
smoothing. Shannon 1948; Kneser & Ney 1995; Chen & Goodman 1998, TR-10-98 §3.5–3.6 (interpolated KN).

    P_k(w | h) = (max(c_k(h w) − D_k, 0) + D_k · N1+(h •) · P_{k−1}(w | h')) / c_k(h),   P_0(w) = 1 / V

where h' is h without its first token, c_N are raw counts, c_k (k < N) continuation counts N1+(• h w)
(in how many contexts the lower-order n-gram was seen), and D_k = n1 / (n1 + 2 n2) per order. An unseen
context (c_k(h) = 0) backs off to P_{k−1}. The base case is uniform, so every one of the V tokens has
probability > 0 and the distribution sums to 1 over the vocabulary.

Closed vocabulary: the model counts the same sub-word tokens as the neural members, from a tokenizer
trained on its corpus, so no text is out of vocabulary; a tokenizer's <unk> is just another token here.

Counts are stored compactly as sorted int64 keys per order, key = (index of the (k−1)-gram prefix in
order k−1) × V + w, so an n-gram of any order is found by binary search; saved as safetensors buffers.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..errors import PlmkitError
from ..family import register
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class NgramConfig(Config):
    vocab_size: int = 8000
    order: int | None = 3  # n: a token is predicted from the n − 1 tokens before it

    # Size presets of the lineage members; an n-gram model's size is its counts, so it has only one.
    SIZES: ClassVar[dict[str, dict]] = {"tiny": {}}

    def validate(self) -> None:
        if self.vocab_size <= 0:
            raise PlmkitError(f"vocab_size must be positive, got {self.vocab_size}")
        self.check_order()

    def check_order(self) -> None:
        """Members that read context differently override this."""
        if self.order is None or self.order < 1:
            raise PlmkitError(f"order must be at least 1, got {self.order}")

    @classmethod
    def preset(cls, size: str, source=None, **overrides):
        """The size preset with `overrides` on top; `source` names the file the overrides came from."""
        if size not in cls.SIZES:
            raise PlmkitError(f"unknown size {size!r} for {cls.__name__}; choose from {', '.join(cls.SIZES)}")
        return cls.from_dict({**cls.SIZES[size], **overrides}, source=source)

    causal = property(lambda self: True)  # a left-to-right LM, for `plmkit generate`
    max_positions = property(lambda self: 1 << 20)  # any length: only the last n − 1 tokens are read


def _find(keys: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Index of each query in the sorted `keys`, −1 where absent."""
    if len(keys) == 0:
        return np.full(q.shape, -1, dtype=np.int64)
    i = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return np.where(keys[i] == q, i, -1)


@register("ngram", parent=None, year=1998,
          paper="Chen & Goodman 1998, An Empirical Study of Smoothing Techniques for Language Modeling "
                "(interpolated Kneser–Ney; n-gram LM after Shannon 1948)",
          diff={"body": ["counts of n-grams, no learned weights"],
                "objective": ["counts, interpolated Kneser–Ney smoothing"],
                "tokenizer": ["sub-word BPE trained on the corpus (closed vocabulary)"]},
          config=NgramConfig, objective="counts", tokenizer="bpe",
          kind="count LM")
class Ngram(nn.Module):
    """Interpolated Kneser–Ney n-gram LM; buffers `keys_k`, `counts_k` (k = 1…n) and `discounts`."""

    config_class = NgramConfig

    def __init__(self, config: NgramConfig):
        super().__init__()
        self.config = config
        n = config.order
        for k in range(1, n + 1):
            self.register_buffer(f"keys_{k}", torch.zeros(0, dtype=torch.int64))
            self.register_buffer(f"counts_{k}", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("discounts", torch.full((n,), 0.5, dtype=torch.float64))
        self._tables = None

    @classmethod
    def fit(cls, config: NgramConfig, corpus_files, tokens, tokenizer):
        """`plmkit pretrain`: count the n-grams of the token stream (a `TokenCorpus`) in one pass."""
        return cls.from_ids(config, tokens.tokens(0, tokens.n_tokens)), tokenizer

    @classmethod
    def from_ids(cls, config: NgramConfig, ids) -> "Ngram":
        """Count the n-grams of one token stream, (N,) ints."""
        x = np.asarray(ids, dtype=np.int64)
        if len(x) and (x.min() < 0 or x.max() >= config.vocab_size):
            raise PlmkitError(f"token ids must lie in [0, {config.vocab_size})")
        model, V, n = cls(config), config.vocab_size, config.order
        idx = [None] * (n + 1)  # idx[k][t]: index of the k-gram ending at position t, −1 if none
        raw = [None] * (n + 1)
        for k in range(1, n + 1):
            prev = np.zeros(len(x), dtype=np.int64) if k == 1 else np.concatenate([[-1], idx[k - 1][:-1]])
            ok = prev >= 0
            keys, inverse, raw[k] = np.unique(prev[ok] * V + x[ok], return_inverse=True, return_counts=True)
            idx[k] = np.full(len(x), -1, dtype=np.int64)
            idx[k][ok] = inverse
            getattr(model, f"keys_{k}").data = torch.from_numpy(keys)
        for k in range(1, n + 1):
            if k == n:
                counts = raw[k]
            else:  # continuation count: distinct (k+1)-grams whose last k tokens are this k-gram
                suffix = np.zeros(len(raw[k + 1]), dtype=np.int64)
                longer = idx[k + 1] >= 0
                suffix[idx[k + 1][longer]] = idx[k][longer]
                counts = np.bincount(suffix, minlength=len(raw[k]))
            n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
            model.discounts[k - 1] = n1 / (n1 + 2 * n2) if n1 else 0.5
            getattr(model, f"counts_{k}").data = torch.from_numpy(counts.astype(np.int64))
        return model

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The tables' sizes are known only from the checkpoint: take them before the copy.
        for name, buf in self.named_buffers():
            if prefix + name in state_dict:
                buf.data = torch.empty_like(state_dict[prefix + name])
        self._tables = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def tables(self) -> list[tuple]:
        """Per order k = 1…n: (keys, counts, D_k, c_k(h), N1+(h •)), the last two indexed by the context."""
        if self._tables is None:
            V, self._tables = self.config.vocab_size, []
            for k in range(1, self.config.order + 1):
                keys, counts = getattr(self, f"keys_{k}").numpy(), getattr(self, f"counts_{k}").numpy()
                n_ctx = 1 if k == 1 else len(getattr(self, f"keys_{k - 1}"))
                ctx = keys // V
                total = np.bincount(ctx, weights=counts, minlength=n_ctx)
                types = np.bincount(ctx, weights=counts > 0, minlength=n_ctx)
                self._tables.append((keys, counts, float(self.discounts[k - 1]), total, types))
        return self._tables

    def num_parameters(self) -> int:
        """Stored n-grams: the free parameters of a count model."""
        return sum(len(getattr(self, f"keys_{k}")) for k in range(1, self.config.order + 1))

    def _gram_indices(self, x: np.ndarray) -> list[np.ndarray]:
        """x: (T,) → for k = 0…n, (T,) index of the k-gram ending at each position (−1: unseen); k = 0 is 0."""
        V, out = self.config.vocab_size, [np.zeros(len(x), dtype=np.int64)]
        for k, (keys, *_) in enumerate(self.tables(), 1):
            prev = np.zeros(len(x), dtype=np.int64) if k == 1 else np.concatenate([[-1], out[k - 1][:-1]])
            out.append(np.where(prev >= 0, _find(keys, np.maximum(prev, 0) * V + x), -1))
        return out

    def _interpolate(self, ctx: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        """P(w | context) where ctx[k − 1] is the index of the (k−1)-token context for order k (−1: unseen);
        arrays broadcast, so w can be one token per context or the whole vocabulary."""
        V = self.config.vocab_size
        p = np.full(np.broadcast_shapes(ctx[0].shape, w.shape), 1.0 / V)
        for (keys, counts, d, total, types), c in zip(self.tables(), ctx):
            seen = c >= 0
            c0 = np.maximum(c, 0)
            tot, typ = np.where(seen, total[c0], 0), np.where(seen, types[c0], 0)
            i = np.where(seen, _find(keys, c0 * V + w), -1)
            cnt = np.where(i >= 0, counts[np.maximum(i, 0)], 0)
            p = np.where(tot > 0, (np.maximum(cnt - d, 0) + d * typ * p) / np.maximum(tot, 1), p)
        return p

    def next_token_logprobs(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) → (B, T − 1): log P(token t | tokens < t) for t ≥ 1."""
        rows = []
        for x in input_ids.cpu().numpy().astype(np.int64):
            g = self._gram_indices(x)
            ctx = [g[k][:-1] for k in range(self.config.order)]  # the (k−1)-gram ending before each target
            rows.append(np.log(self._interpolate(ctx, x[1:])))
        return torch.from_numpy(np.stack(rows)).float()

    def distribution(self, context) -> np.ndarray:
        """P(· | context) over the vocabulary, (V,) float64; only the last n − 1 tokens are read."""
        x = np.asarray(list(context)[-(self.config.order - 1):] if self.config.order > 1 else [], dtype=np.int64)
        g = self._gram_indices(x) if len(x) else []
        ctx = [np.array([0])] + [np.array([g[k][-1] if len(x) >= k else -1]) for k in range(1, self.config.order)]
        return self._interpolate(ctx, np.arange(self.config.vocab_size))

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, **_) -> ModelOutput:
        """(B, T) → logits (B, T, V) = log P(next token | tokens ≤ t), for `plmkit generate`; O(T·V)."""
        logp = [[np.log(self.distribution(row[:t + 1])) for t in range(len(row))] for row in input_ids.tolist()]
        logits = torch.from_numpy(np.array(logp)).float()
        return ModelOutput(last_hidden_state=logits, logits=logits)  # no hidden state: the log-probabilities

    def sample(self, context, max_new_tokens: int, seed: int | None = None, stop: int | None = None) -> list[int]:
        """Draw up to `max_new_tokens` tokens after `context`, stopping after `stop`; same seed, same tokens."""
        rng, ids, new = np.random.default_rng(seed), list(context), []
        for _ in range(max_new_tokens):
            p = self.distribution(ids)
            nxt = int(rng.choice(len(p), p=p / p.sum()))
            ids.append(nxt)
            new.append(nxt)
            if nxt == stop:
                break
        return new
