"""DistilBERT = BERT − token-type embeddings − pooler − NSP, half the layers. Sanh et al. 2019, arXiv:1910.01108.

This member is the architecture (§3: "the token-type embeddings and the pooler are removed while the
number of layers is reduced by a factor of 2"); it pre-trains with plain MLM here. The distillation
loss against a BERT teacher is another module's concern.

Parameter layout matches Hugging Face `DistilBertForMaskedLM`.
"""

from __future__ import annotations

import dataclasses

from ..errors import PlmkitError
from ..family import register
from ..interop.layout import HFLayout
from .bert import Bert, BertConfig
from .presets import SIZES


@dataclasses.dataclass(frozen=True)
class DistilBertConfig(BertConfig):
    num_layers: int = 6  # half of BERT-Base's 12
    type_vocab_size: int = 0  # no segment embeddings

    @classmethod
    def preset(cls, size: str, source=None, **overrides):
        """BERT's size preset with half its layers (at least one)."""
        half = {"num_layers": max(1, SIZES[size]["num_layers"] // 2)} if size in SIZES else {}
        return super().preset(size, source, **{**half, **overrides})


def _to_hf_config(c: DistilBertConfig) -> dict:
    if c.norm_first or c.position != "learned" or c.causal or c.type_vocab_size or c.layer_norm_eps != 1e-12:
        raise PlmkitError("this DistilBERT config has no `distilbert` equivalent in transformers (needs post-LN, "
                          "learned positions, bidirectional attention, no token types, layer_norm_eps 1e-12)")
    return dict(vocab_size=c.vocab_size, dim=c.hidden_size, n_layers=c.num_layers, n_heads=c.num_heads,
                hidden_dim=c.intermediate_size, activation=c.activation, dropout=c.dropout,
                attention_dropout=c.attention_dropout, max_position_embeddings=c.max_positions,
                sinusoidal_pos_embds=False, initializer_range=c.initializer_range, pad_token_id=c.pad_token_id,
                tie_word_embeddings=True)


def _from_hf_config(d: dict) -> DistilBertConfig:
    if d.get("sinusoidal_pos_embds"):
        raise PlmkitError("DistilBERT with sinusoidal_pos_embds is not supported; plmkit reads learned positions")
    return DistilBertConfig(vocab_size=d["vocab_size"], hidden_size=d["dim"], num_layers=d["n_layers"],
                            num_heads=d["n_heads"], intermediate_size=d["hidden_dim"],
                            activation=d.get("activation", "gelu"), dropout=d.get("dropout", 0.1),
                            attention_dropout=d.get("attention_dropout", 0.1),
                            max_positions=d.get("max_position_embeddings", 512),
                            initializer_range=d.get("initializer_range", 0.02), pad_token_id=d.get("pad_token_id", 0))


_LAYER = "transformer.layer.{i}."


@register("distilbert", parent="bert", year=2019, paper="Sanh et al. 2019, arXiv:1910.01108",
          diff={"layers": ["− token-type embeddings", "layers halved (6 at base)"],
                "heads": ["− pooler"],
                "objective": ["− next-sentence prediction",
                              "MLM here; the paper distils from a BERT teacher"]},
          config=DistilBertConfig, objective="mlm", tokenizer="wordpiece")
class DistilBert(Bert):
    config_class = DistilBertConfig
    hf = HFLayout(
        model_type="distilbert", architectures=("DistilBertForMaskedLM",), prefix="distilbert.",
        modules={"embeddings.tokens": "embeddings.word_embeddings",
                 "embeddings.positions": "embeddings.position_embeddings", "embeddings.norm": "embeddings.LayerNorm",
                 "layers.{i}.attn.qkv": tuple(_LAYER + f"attention.{n}_lin" for n in "qkv"),
                 "layers.{i}.attn.out": _LAYER + "attention.out_lin", "layers.{i}.attn_norm": _LAYER + "sa_layer_norm",
                 "layers.{i}.ffn.up": _LAYER + "ffn.lin1", "layers.{i}.ffn.down": _LAYER + "ffn.lin2",
                 "layers.{i}.ffn_norm": _LAYER + "output_layer_norm",
                 "mlm_transform": "/vocab_transform", "mlm_norm": "/vocab_layer_norm",
                 "mlm_bias": "/vocab_projector.bias"},
        to_config=_to_hf_config, from_config=_from_hf_config)

    def build_heads(self) -> None:
        super().build_heads()
        self.pooler = self.nsp = None
