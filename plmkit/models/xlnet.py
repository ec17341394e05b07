"""XLNet = Transformer-XL + permutation LM with two-stream attention. Yang et al. 2019, arXiv:1906.08237.

Also: partial prediction (the last 1/K of each order, K = 6), span-based targets, relative segment encodings,
and no causal mask. §2.2: the model maximises log p(x) over random factorization orders z, the permutation
living in the attention mask alone (`perm_mask[b, i, j]` = True: i may not see j), never in the input order.
§2.3: to predict x_{z_t} the model must know the position z_t but not the token there, so each layer runs two
streams: the content stream h (as Transformer-XL, each token sees itself) and the query stream g, started from
one learned vector (`mask_emb`) at each target position, which sees only the content of what precedes z_t in
the order. Both share every weight. §2.4: the previous segment's content stream is the memory, visible to
every position. §2.5: pairs of segments are told apart by a relative term — whether two tokens share a
segment — instead of segment embeddings. The objective (`plm`, plmkit.objectives.plm) draws the targets and
the orders.

It generates in the left-to-right order (`decode_step`): each token's content sees the tokens before it,
and one query stream at the next position sees them all. For fine-tuning, the content stream reads both
ways, and sequences end with their [CLS] (`a <sep> <cls>`, `a <sep> b <sep> <cls>`; segment ids 0, 1, and 2
for [CLS]), which the sequence-level heads pool.

Parameter layout matches Hugging Face `XLNetLMHeadModel`.

Shape legend: B = batch, T = segment length, M = memory, K = M + T, P = predicted positions, H = hidden size.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..generation.cache import KVCache
from ..interop.layout import HFLayout
from ..layers.xl_attention import Relations
from .transformer import resized
from .transformer_xl import TransformerXL, TransformerXLConfig

_HF_ACT = ("gelu", "relu", "gelu_new")


@dataclasses.dataclass(frozen=True)
class XLNetConfig(TransformerXLConfig):
    vocab_size: int = 32000  # the released models' SentencePiece vocabulary
    causal: bool = False  # the content stream reads both ways; an order is a mask (perm_mask)
    activation: str = "gelu"
    layer_norm_eps: float = 1e-12


def _to_hf_config(c: XLNetConfig) -> dict:
    if c.attention_dropout != c.dropout or c.type_vocab_size or c.causal or c.activation not in _HF_ACT:
        raise PlmkitError("this XLNet config has no `xlnet` equivalent in transformers (needs attention_dropout "
                          "= dropout, no token-type embeddings, bidirectional attention)")
    return dict(vocab_size=c.vocab_size, d_model=c.hidden_size, n_layer=c.num_layers, n_head=c.num_heads,
                d_inner=c.intermediate_size, ff_activation=c.activation, untie_r=True, attn_type="bi",
                initializer_range=c.initializer_range, layer_norm_eps=c.layer_norm_eps, dropout=c.dropout,
                mem_len=c.mem_len or None, reuse_len=None, bi_data=False, clamp_len=-1, same_length=False,
                pad_token_id=c.pad_token_id, bos_token_id=None, eos_token_id=None, tie_word_embeddings=True)


def _from_hf_config(d: dict) -> XLNetConfig:
    unsupported = {"attn_type": "bi", "bi_data": False, "same_length": False, "untie_r": True}
    for key, value in unsupported.items():
        if d.get(key, value) != value:
            raise PlmkitError(f"unsupported XLNet setting {key} = {d[key]!r} (plmkit reads {key} = {value!r})")
    if d.get("clamp_len", -1) > 0 or d.get("reuse_len"):
        raise PlmkitError("unsupported XLNet setting: clamp_len or reuse_len")
    if d.get("ff_activation", "gelu") not in _HF_ACT:
        raise PlmkitError(f"unsupported XLNet ff_activation {d['ff_activation']!r}")
    return XLNetConfig(vocab_size=d["vocab_size"], hidden_size=d["d_model"], num_layers=d["n_layer"],
                       num_heads=d["n_head"], intermediate_size=d["d_inner"],
                       activation=d.get("ff_activation", "gelu"), dropout=d.get("dropout", 0.1),
                       attention_dropout=d.get("dropout", 0.1), initializer_range=d.get("initializer_range", 0.02),
                       layer_norm_eps=d.get("layer_norm_eps", 1e-12), mem_len=d.get("mem_len") or 0,
                       pad_token_id=d.get("pad_token_id"))


@register("xlnet", parent="transformer-xl", year=2019, paper="Yang et al. 2019, arXiv:1906.08237",
          diff={"objective": ["CLM → permutation LM: random factorization orders as attention masks",
                              "partial prediction: the last 1/6 of each order", "targets are spans of 1–5 words"],
                "body": ["+ two-stream attention: a query stream that knows the target's position, not its token",
                         "− causal mask: the content stream reads both ways"],
                "layers": ["+ relative segment encodings: same segment or not, in the attention",
                           "+ an output bias on the tied LM head"],
                "tokenizer": ["BPE → SentencePiece unigram"],
                "heads": ["[CLS] at the end: a <sep> b <sep> <cls>"]},
          config=XLNetConfig, objective="plm", tokenizer="unigram", influences=("bert",))
class XLNet(TransformerXL):
    config_class = XLNetConfig
    segments = True
    cls_at_end = True  # fine-tuning inputs end with [CLS] (plmkit.heads.inputs)
    hf = HFLayout(
        model_type="xlnet", architectures=("XLNetLMHeadModel",), prefix="transformer.",
        modules={"embeddings.tokens": "word_embedding", "mask_emb": "mask_emb",
                 "layers.{i}.attn": "layer.{i}.rel_attn", "layers.{i}.attn_norm": "layer.{i}.rel_attn.layer_norm",
                 "layers.{i}.ffn.up": "layer.{i}.ff.layer_1", "layers.{i}.ffn.down": "layer.{i}.ff.layer_2",
                 "layers.{i}.ffn_norm": "layer.{i}.ff.layer_norm", "lm_bias": "/lm_loss.bias"},
        to_config=_to_hf_config, from_config=_from_hf_config)

    def build_heads(self) -> None:
        H = self.config.hidden_size
        self.mask_emb = nn.Parameter(torch.empty(1, 1, H))  # where every query stream starts (§2.3)
        self.lm_bias = nn.Parameter(torch.zeros(self.config.vocab_size))

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.normal_(self.mask_emb, std=self.config.initializer_range)

    def lm_decoder(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The tied embedding plus an output bias."""
        return self.embeddings.tokens.weight, self.lm_bias

    def resize_token_embeddings(self, vocab_size: int) -> None:
        super().resize_token_embeddings(vocab_size)
        self.lm_bias = resized(self.lm_bias, vocab_size)

    @property
    def generates(self) -> bool:
        """XLNet generates in the left-to-right order: each token's content sees those before it, and the
        query stream predicts the next position from all of them."""
        return True

    def streams(self, x: torch.Tensor, M: int, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, perm_mask: torch.Tensor | None = None,
                target_positions: torch.Tensor | None = None, cache: KVCache | None = None,
                block: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, Relations, torch.Tensor | None, Relations | None]:
        """perm_mask: (B, T, T), True (or 1) = query i may not see token j; target_positions: (B, P) long,
        where the query stream runs (its output is then last_hidden_state, (B, P, H)). token_type_ids:
        (B, T); the memory counts as segment 0. A decoding step (cache) runs one query, at the position after
        the last token, which sees every token so far."""
        B, T, _ = x.shape
        if cache is not None:
            table, content, positions, columns = self.cached_relations(T, attention_mask, cache, block)
            S = cache.length
            index = (S - positions[:, -1:, None] - 1 + columns[:, None, :]).clamp(0, S)  # (B, 1, S)
            query = Relations(index, cache.key_mask[:, None, :S])
            return table, content, self.embeddings.drop(self.mask_emb.expand(B, 1, -1)), query
        table, rel, _, _ = super().streams(x, M, attention_mask)
        seen = rel.visible  # (B | 1, 1, K) from the attention mask, or None
        if perm_mask is not None:
            allowed = ~F.pad(perm_mask.bool(), (M, 0))  # (B, T, K): the memory is visible to every position
            seen = allowed if seen is None else seen & allowed
        other = None
        if token_type_ids is not None:
            other = token_type_ids[:, :, None] != F.pad(token_type_ids, (M, 0))[:, None, :]  # (B, T, K)
        itself = torch.arange(M, M + T, device=x.device)[:, None] == torch.arange(M + T, device=x.device)
        content = Relations(rel.index, None if seen is None else seen | itself, other)  # a token sees itself
        if target_positions is None:
            return table, content, None, None
        P = target_positions.shape[1]
        b = torch.arange(B, device=x.device)[:, None]

        def at_targets(t: torch.Tensor | None) -> torch.Tensor | None:  # (B | 1, T | 1, K) → (B, P, K)
            return None if t is None else t.expand(B, T, -1)[b, target_positions]

        query = Relations(at_targets(rel.index), at_targets(seen), at_targets(other))
        g = self.embeddings.drop(self.mask_emb.expand(B, P, -1))  # (B, P, H)
        return table, content, g, query
