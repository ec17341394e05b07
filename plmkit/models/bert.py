"""BERT = GPT − causal mask (bidirectional encoder) − CLM + masked LM (15 %, 80/10/10) + next-sentence
prediction + segment embeddings + embedding LayerNorm + WordPiece. Devlin et al. 2019, arXiv:1810.04805.

Parameter layout matches Hugging Face `BertForPreTraining`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..interop.layout import HFLayout
from ..layers import ACTIVATIONS
from .gpt import Gpt, GptConfig
from .transformer import ModelOutput, resized


@dataclasses.dataclass(frozen=True)
class BertConfig(GptConfig):
    vocab_size: int = 30522
    causal: bool = False
    activation: str = "gelu"
    embedding_norm: bool = True
    layer_norm_eps: float = 1e-12
    type_vocab_size: int = 2  # sentence A / sentence B
    pad_token_id: int | None = 0


_HF_ACT = {"gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu"}


def _to_hf_config(c: BertConfig) -> dict:
    if c.norm_first or c.position != "learned" or c.causal:
        raise PlmkitError("this BERT config has no `bert` equivalent in transformers "
                          "(needs post-LN, learned positions, bidirectional attention)")
    return dict(vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
                num_attention_heads=c.num_heads, intermediate_size=c.intermediate_size,
                hidden_act=_HF_ACT[c.activation], hidden_dropout_prob=c.dropout,
                attention_probs_dropout_prob=c.attention_dropout, max_position_embeddings=c.max_positions,
                type_vocab_size=c.type_vocab_size, initializer_range=c.initializer_range,
                layer_norm_eps=c.layer_norm_eps, pad_token_id=c.pad_token_id, position_embedding_type="absolute",
                tie_word_embeddings=True)


def _from_hf_config(d: dict) -> BertConfig:
    if d.get("position_embedding_type", "absolute") != "absolute":
        raise PlmkitError(f"unsupported position_embedding_type {d['position_embedding_type']!r}")
    act = d.get("hidden_act", "gelu")
    if act not in _HF_ACT:
        raise PlmkitError(f"unsupported hidden_act {act!r}")
    return BertConfig(vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], num_layers=d["num_hidden_layers"],
                      num_heads=d["num_attention_heads"], intermediate_size=d["intermediate_size"], activation=act,
                      dropout=d.get("hidden_dropout_prob", 0.1),
                      attention_dropout=d.get("attention_probs_dropout_prob", 0.1),
                      max_positions=d.get("max_position_embeddings", 512), type_vocab_size=d.get("type_vocab_size", 2),
                      initializer_range=d.get("initializer_range", 0.02), layer_norm_eps=d.get("layer_norm_eps", 1e-12),
                      pad_token_id=d.get("pad_token_id", 0))


@register("bert", parent="gpt", year=2018, paper="Devlin et al. 2019, arXiv:1810.04805",
          diff={"body": ["bidirectional encoder: causal mask removed"],
                "objective": ["CLM → masked LM (15 %, 80/10/10)", "+ next-sentence prediction (NSP)"],
                "layers": ["+ segment (token type) embeddings", "+ LayerNorm on embeddings", "exact GELU"],
                "tokenizer": ["BPE → WordPiece"],
                "heads": ["[CLS] pooler for sentence-level tasks"]},
          config=BertConfig, objective="mlm+nsp", tokenizer="wordpiece",
          kind="encoder", influences=("elmo",))
class Bert(Gpt):
    config_class = BertConfig
    hf = HFLayout(
        model_type="bert", architectures=("BertForPreTraining",), prefix="bert.",
        modules={"embeddings.tokens": "embeddings.word_embeddings",
                 "embeddings.positions": "embeddings.position_embeddings",
                 "embeddings.token_types": "embeddings.token_type_embeddings", "embeddings.norm": "embeddings.LayerNorm",
                 "layers.{i}.attn.qkv": ("encoder.layer.{i}.attention.self.query", "encoder.layer.{i}.attention.self.key",
                                         "encoder.layer.{i}.attention.self.value"),
                 "layers.{i}.attn.out": "encoder.layer.{i}.attention.output.dense",
                 "layers.{i}.attn_norm": "encoder.layer.{i}.attention.output.LayerNorm",
                 "layers.{i}.ffn.up": "encoder.layer.{i}.intermediate.dense",
                 "layers.{i}.ffn.down": "encoder.layer.{i}.output.dense",
                 "layers.{i}.ffn_norm": "encoder.layer.{i}.output.LayerNorm", "pooler": "pooler.dense",
                 # heads live outside the `bert.` prefix in HF: a leading "/" means "no prefix"
                 "mlm_transform": "/cls.predictions.transform.dense", "mlm_norm": "/cls.predictions.transform.LayerNorm",
                 "mlm_bias": "/cls.predictions.bias", "nsp": "/cls.seq_relationship"},
        to_config=_to_hf_config, from_config=_from_hf_config)

    def build_heads(self) -> None:
        c = self.config
        self.pooler = nn.Linear(c.hidden_size, c.hidden_size)  # tanh(W h_[CLS]): sentence-level features
        self.mlm_transform = nn.Linear(c.hidden_size, c.hidden_size)
        self.mlm_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.nsp = nn.Linear(c.hidden_size, 2)  # IsNext / NotNext from the pooled [CLS]

    def check_encoder_inputs(self, name: str, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                             cache, block) -> None:
        """The guards of a child whose encode runs the blocks itself to add inputs of its own (ZEN's n-grams,
        ERNIE-THU's entities): no decoding cache, a (B, T) mask of real tokens, at most max_positions tokens."""
        if cache is not None or block is not None:
            raise PlmkitError(f"{name} is an encoder: it does not decode with a cache")
        if attention_mask is not None and attention_mask.dim() != 2:
            raise PlmkitError(f"{name} takes a (B, T) attention mask of real tokens")
        if input_ids.shape[1] > self.config.max_positions:
            raise ValueError(f"sequence of {input_ids.shape[1]} tokens is longer than "
                             f"max_positions={self.config.max_positions}")

    def resize_token_embeddings(self, vocab_size: int) -> None:
        """The MLM output bias grows (or shrinks) with the embedding; new tokens start at zero bias."""
        super().resize_token_embeddings(vocab_size)
        if self.mlm_bias is not None:
            self.mlm_bias = resized(self.mlm_bias, vocab_size)

    def lm_features(self, h: torch.Tensor) -> torch.Tensor:
        """(…, H) → (…, E): dense + GELU + LayerNorm before the tied decoder."""
        return self.mlm_norm(ACTIVATIONS[self.config.activation](self.mlm_transform(h)))

    def lm_decoder(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The tied embedding plus an output bias."""
        return self.embeddings.tokens.weight, self.mlm_bias

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **kwargs) -> ModelOutput:
        out = super().forward(input_ids, attention_mask, token_type_ids, **kwargs)
        if self.pooler is not None:  # members without a pooler or sentence-pair head set them to None
            out.pooler_output = torch.tanh(self.pooler(out.last_hidden_state[:, 0]))  # (B, H)
        if self.nsp is not None:
            out.seq_relationship_logits = self.nsp(out.pooler_output)  # (B, 2)
        return out
