"""XLM = BERT − NSP + language embeddings + shared BPE + translation LM (TLM). Lample & Conneau 2019, arXiv:1901.07291.

"Cross-lingual Language Model Pretraining". Besides: − the pooler, − segment embeddings (their table holds
the languages). §3.1: one BPE vocabulary learned on the concatenated languages, so sub-words shared by the
languages share embeddings. Figure 1: every token's input is token + position + language embedding. §3.3: TLM
(plmkit.objectives.tlm) masks words in a sentence and its translation concatenated, positions reset at
the translation, so the model can attend to either language to predict a word.

The language embedding sits in the token-type table (one row per language; plmkit passes language ids as
`token_type_ids`); without ids every token reads the first language's row (transformers' XLM then adds
none). The table means languages, not sentence A/B, so task heads give no second segment an id of its own.
The MLM head is XLM's: the tied embedding and a bias, without BERT's dense + LayerNorm transform.

Parameter layout matches Hugging Face `XLMWithLMHeadModel` (post-LN, exact GELU, FFN 4H, LM bias in
`pred_layer.proj`).
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import PlmkitError
from ..family import register
from ..interop.layout import HFLayout
from .bert import Bert, BertConfig


@dataclasses.dataclass(frozen=True)
class XlmConfig(BertConfig):
    n_langs: int = 2  # rows of the language embedding: one per --corpus file of a parallel corpus
    type_vocab_size: int = 2  # follows n_langs: the token-type table is the language table (none for one language)

    def __post_init__(self) -> None:
        object.__setattr__(self, "type_vocab_size", self.n_langs if self.n_langs > 1 else 0)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if self.n_langs < 1:
            raise PlmkitError(f"n_langs must be at least 1, got {self.n_langs}")


def _to_hf_config(c: XlmConfig) -> dict:
    if c.norm_first or c.position != "learned" or c.causal or c.intermediate_size != 4 * c.hidden_size \
            or c.activation not in ("gelu", "relu"):
        raise PlmkitError("this XLM config has no `xlm` equivalent in transformers (needs post-LN, learned "
                          "positions, bidirectional attention, intermediate_size = 4 × hidden_size, gelu or relu)")
    return dict(vocab_size=c.vocab_size, emb_dim=c.hidden_size, n_layers=c.num_layers, n_heads=c.num_heads,
                dropout=c.dropout, attention_dropout=c.attention_dropout, gelu_activation=c.activation == "gelu",
                sinusoidal_embeddings=False, causal=False, asm=False, n_langs=c.n_langs, use_lang_emb=c.n_langs > 1,
                max_position_embeddings=c.max_positions, embed_init_std=c.hidden_size ** -0.5,
                layer_norm_eps=c.layer_norm_eps, init_std=c.initializer_range, pad_token_id=c.pad_token_id or 0,
                is_encoder=True, tie_word_embeddings=True)


def _from_hf_config(d: dict) -> XlmConfig:
    if d.get("sinusoidal_embeddings") or d.get("asm") or d.get("causal") or not d.get("is_encoder", True):
        raise PlmkitError("plmkit reads XLM encoders with learned positions and a full softmax only")
    return XlmConfig(vocab_size=d.get("vocab_size", d.get("n_words")), hidden_size=d["emb_dim"], num_layers=d["n_layers"],
                     num_heads=d["n_heads"], intermediate_size=4 * d["emb_dim"],
                     activation="gelu" if d.get("gelu_activation", True) else "relu",
                     dropout=d.get("dropout", 0.1), attention_dropout=d.get("attention_dropout", 0.0),
                     max_positions=d.get("max_position_embeddings", 512), n_langs=d.get("n_langs", 1) if d.get("use_lang_emb", True) else 1,
                     initializer_range=d.get("init_std", 0.02), layer_norm_eps=d.get("layer_norm_eps", 1e-12),
                     pad_token_id=d.get("pad_token_id", d.get("pad_index", 2)))


@register("xlm", parent="bert", year=2019, paper="Lample & Conneau 2019, arXiv:1901.07291",
          diff={"objective": ["− next-sentence prediction",
                              "+ translation LM: MLM over a sentence and its translation, positions reset"],
                "layers": ["segment embeddings → language embeddings (one row per language)"],
                "tokenizer": ["WordPiece → one BPE shared by all languages"],
                "heads": ["− pooler; MLM head = tied embedding + bias (no dense/LayerNorm transform)"]},
          config=XlmConfig, objective="mlm+tlm", tokenizer="bpe")
class Xlm(Bert):
    config_class = XlmConfig
    segment_embeddings = False  # the token-type table holds languages, not sentence A/B
    hf = HFLayout(
        model_type="xlm", architectures=("XLMWithLMHeadModel",), prefix="transformer.",
        modules={"embeddings.tokens": "embeddings", "embeddings.positions": "position_embeddings",
                 "embeddings.token_types": "lang_embeddings", "embeddings.norm": "layer_norm_emb",
                 "layers.{i}.attn.qkv": ("attentions.{i}.q_lin", "attentions.{i}.k_lin", "attentions.{i}.v_lin"),
                 "layers.{i}.attn.out": "attentions.{i}.out_lin", "layers.{i}.attn_norm": "layer_norm1.{i}",
                 "layers.{i}.ffn.up": "ffns.{i}.lin1", "layers.{i}.ffn.down": "ffns.{i}.lin2",
                 "layers.{i}.ffn_norm": "layer_norm2.{i}", "mlm_bias": "/pred_layer.proj.bias"},
        to_config=_to_hf_config, from_config=_from_hf_config)

    def build_heads(self) -> None:
        super().build_heads()
        self.pooler = self.nsp = self.mlm_transform = self.mlm_norm = None

    def lm_features(self, h: torch.Tensor) -> torch.Tensor:
        """XLM's prediction layer reads the last hidden state itself."""
        return h
