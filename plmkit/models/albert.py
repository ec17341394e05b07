"""ALBERT = BERT + factorized embedding + cross-layer sharing + SOP − NSP + n-gram masking + unigram. Lan et al. 2020, arXiv:1909.11942.

Factorized embedding: tokens embed in E dims (E < H), projected to H; cross-layer sharing: one block
applied L times; sentence-order prediction replaces next-sentence prediction; n-grams of up to 3 tokens
are masked; the tokenizer is SentencePiece's unigram LM.

Parameter layout matches Hugging Face `AlbertForPreTraining`: the E → H projection is
`albert.encoder.embedding_hidden_mapping_in`, the shared block `albert_layer_groups.0.albert_layers.0`
(one group per layer when sharing is off), and the MLM head maps H → E before the tied E → V decoder.

Shape legend: B = batch, T = sequence length, E = embedding size, H = hidden size, V = vocabulary.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..interop.layout import HFLayout
from .bert import _HF_ACT, Bert, BertConfig


@dataclasses.dataclass(frozen=True)
class AlbertConfig(BertConfig):
    vocab_size: int = 30000  # SentencePiece vocabulary (§4.1)
    embedding_size: int = 128  # E: tokens embed in E dims, projected to H (§3.1; E = 128 at every size)
    share_layers: bool = True  # one block's parameters reused at every layer (§3.1, "all-shared")
    activation: str = "gelu_new"  # the released ALBERT configs' tanh-GELU
    dropout: float = 0.0  # dropout removed: it hurts a model that does not overfit (§4.8)
    attention_dropout: float = 0.0

    def validate(self) -> None:
        super().validate()
        if self.embedding_size <= 0:
            raise PlmkitError(f"embedding_size must be positive, got {self.embedding_size}")


_GROUP = "encoder.albert_layer_groups.{i}.albert_layers.0."  # one layer per group: the released layout


def _to_hf_config(c: AlbertConfig) -> dict:
    if c.norm_first or c.position != "learned" or c.causal:
        raise PlmkitError("this ALBERT config has no `albert` equivalent in transformers "
                          "(needs post-LN, learned positions, bidirectional attention)")
    return dict(vocab_size=c.vocab_size, embedding_size=c.embedding_size, hidden_size=c.hidden_size,
                num_hidden_layers=c.num_layers, num_hidden_groups=1 if c.share_layers else c.num_layers,
                inner_group_num=1, num_attention_heads=c.num_heads, intermediate_size=c.intermediate_size,
                hidden_act=_HF_ACT[c.activation], hidden_dropout_prob=c.dropout,
                attention_probs_dropout_prob=c.attention_dropout, max_position_embeddings=c.max_positions,
                type_vocab_size=c.type_vocab_size, initializer_range=c.initializer_range,
                layer_norm_eps=c.layer_norm_eps, pad_token_id=c.pad_token_id, tie_word_embeddings=True)


def _from_hf_config(d: dict) -> AlbertConfig:
    layers, groups = d["num_hidden_layers"], d.get("num_hidden_groups", 1)
    if d.get("inner_group_num", 1) != 1 or groups not in (1, layers):
        raise PlmkitError("plmkit's ALBERT shares one block across all layers or none "
                          f"(num_hidden_groups 1 or {layers}, inner_group_num 1)")
    return AlbertConfig(vocab_size=d["vocab_size"], embedding_size=d.get("embedding_size", 128),
                        hidden_size=d["hidden_size"], num_layers=layers, share_layers=groups == 1,
                        num_heads=d["num_attention_heads"], intermediate_size=d["intermediate_size"],
                        activation=d.get("hidden_act", "gelu_new"), dropout=d.get("hidden_dropout_prob", 0.0),
                        attention_dropout=d.get("attention_probs_dropout_prob", 0.0),
                        max_positions=d.get("max_position_embeddings", 512),
                        type_vocab_size=d.get("type_vocab_size", 2),
                        initializer_range=d.get("initializer_range", 0.02),
                        layer_norm_eps=d.get("layer_norm_eps", 1e-12), pad_token_id=d.get("pad_token_id", 0))


@register("albert", parent="bert", year=2019, paper="Lan et al. 2020, arXiv:1909.11942",
          diff={"layers": ["factorized embedding: V × E tokens + E → H projection (E = 128 ≪ H)",
                           "cross-layer parameter sharing: one block applied L times", "dropout removed"],
                "objective": ["NSP → sentence-order prediction (SOP): consecutive segments, swapped or not",
                              "n-gram masking, n ≤ 3, p(n) ∝ 1/n"],
                "tokenizer": ["WordPiece → SentencePiece unigram"]},
          config=AlbertConfig, objective="mlm+sop", tokenizer="unigram")
class Albert(Bert):
    config_class = AlbertConfig
    hf = HFLayout(
        model_type="albert", architectures=("AlbertForPreTraining",), prefix="albert.",
        modules={"embeddings.tokens": "embeddings.word_embeddings",
                 "embeddings.positions": "embeddings.position_embeddings",
                 "embeddings.token_types": "embeddings.token_type_embeddings",
                 "embeddings.norm": "embeddings.LayerNorm", "embedding_proj": "encoder.embedding_hidden_mapping_in",
                 "layers.{i}.attn.qkv": tuple(_GROUP + f"attention.{n}" for n in ("query", "key", "value")),
                 "layers.{i}.attn.out": _GROUP + "attention.dense",
                 "layers.{i}.attn_norm": _GROUP + "attention.LayerNorm",
                 "layers.{i}.ffn.up": _GROUP + "ffn", "layers.{i}.ffn.down": _GROUP + "ffn_output",
                 "layers.{i}.ffn_norm": _GROUP + "full_layer_layer_norm", "pooler": "pooler",
                 "mlm_transform": "/predictions.dense", "mlm_norm": "/predictions.LayerNorm",
                 "mlm_bias": "/predictions.bias", "nsp": "/sop_classifier.classifier"},
        to_config=_to_hf_config, from_config=_from_hf_config)

    def build_embeddings(self, size=None, position_offset=0):
        self.embedding_proj = nn.Linear(self.config.embedding_size, self.config.hidden_size)  # E → H
        return super().build_embeddings(self.config.embedding_size, position_offset)

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
              position_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.embedding_proj(super().embed(input_ids, token_type_ids, position_ids))  # (B, T, E) → (B, T, H)

    def build_layers(self) -> nn.ModuleList:
        layers = super().build_layers()
        return nn.ModuleList(layers[:1]) if self.config.share_layers else layers

    def stack(self) -> list[nn.Module]:
        return list(self.layers[:1]) * self.config.num_layers if self.config.share_layers else list(self.layers)

    def build_heads(self) -> None:
        super().build_heads()  # `nsp` is the SOP classifier: same shape, a pair-order label
        c = self.config
        self.mlm_transform = nn.Linear(c.hidden_size, c.embedding_size)  # H → E, then the tied E → V
        self.mlm_norm = nn.LayerNorm(c.embedding_size, eps=c.layer_norm_eps)
