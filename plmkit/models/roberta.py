"""RoBERTa = BERT − NSP + dynamic masking + byte-level BPE + full-sentence packing. Liu et al. 2019, arXiv:1907.11692.

Dynamic masking (§4.1) is what plmkit's MLM collate does for every member: the mask of a batch is drawn
from that step's generator, so each visit of a window is masked afresh (BERT's static masks, duplicated
10 times, are never materialised). Full-sentence packing (§4.2, FULL-SENTENCES) is the `mlm` objective's
`Windows`: documents packed back to back, a separator token between them, no sentence pairs, no padding.

Parameter layout matches Hugging Face `RobertaForMaskedLM`. Its positions start at padding_idx + 1
(fairseq's convention), so the HF table has max_positions + padding_idx + 1 rows (514 for 512 tokens).
"""

from __future__ import annotations

import dataclasses

from ..errors import PlmkitError
from ..family import register
from ..interop.layout import HFLayout
from .bert import _HF_ACT, Bert, BertConfig


@dataclasses.dataclass(frozen=True)
class RobertaConfig(BertConfig):
    vocab_size: int = 50265  # GPT-2's byte-level BPE vocabulary, 50K merges (§4.4)
    type_vocab_size: int = 1  # no sentence pairs in pre-training: one all-zero segment embedding
    layer_norm_eps: float = 1e-5
    pad_token_id: int | None = 1  # <s>=0, <pad>=1, </s>=2: fairseq's dictionary order

    def validate(self) -> None:
        super().validate()
        if self.pad_token_id is None:
            raise PlmkitError("RoBERTa needs a pad_token_id: its positions are counted from padding_idx + 1")


def _to_hf_config(c: RobertaConfig) -> dict:
    if c.norm_first or c.position != "learned" or c.causal:
        raise PlmkitError("this RoBERTa config has no `roberta` equivalent in transformers "
                          "(needs post-LN, learned positions, bidirectional attention)")
    return dict(vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
                num_attention_heads=c.num_heads, intermediate_size=c.intermediate_size,
                hidden_act=_HF_ACT[c.activation], hidden_dropout_prob=c.dropout,
                attention_probs_dropout_prob=c.attention_dropout,
                max_position_embeddings=c.max_positions + c.pad_token_id + 1, type_vocab_size=c.type_vocab_size,
                initializer_range=c.initializer_range, layer_norm_eps=c.layer_norm_eps, pad_token_id=c.pad_token_id,
                bos_token_id=0, eos_token_id=2, tie_word_embeddings=True)


def _from_hf_config(d: dict) -> RobertaConfig:
    pad = d.get("pad_token_id", 1)
    return RobertaConfig(vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], num_layers=d["num_hidden_layers"],
                         num_heads=d["num_attention_heads"], intermediate_size=d["intermediate_size"],
                         activation=d.get("hidden_act", "gelu"), dropout=d.get("hidden_dropout_prob", 0.1),
                         attention_dropout=d.get("attention_probs_dropout_prob", 0.1),
                         max_positions=d.get("max_position_embeddings", 514) - pad - 1,
                         type_vocab_size=d.get("type_vocab_size", 1),
                         initializer_range=d.get("initializer_range", 0.02),
                         layer_norm_eps=d.get("layer_norm_eps", 1e-5), pad_token_id=pad)


@register("roberta", parent="bert", year=2019, paper="Liu et al. 2019, arXiv:1907.11692",
          diff={"objective": ["− next-sentence prediction",
                              "static → dynamic masking: a fresh mask at every visit of a sequence"],
                "tokenizer": ["WordPiece → byte-level BPE (50K)"],
                "training": ["full-sentence packing: documents back to back up to 512 tokens, no pairs",
                             "larger batches (8K), more data (160 GB), longer training"],
                "layers": ["positions counted from padding_idx + 1 (fairseq)"]},
          config=RobertaConfig, objective="mlm", tokenizer="bytebpe")
class Roberta(Bert):
    config_class = RobertaConfig
    hf = HFLayout(
        model_type="roberta", architectures=("RobertaForMaskedLM",), prefix="roberta.",
        modules={**{k: v for k, v in Bert.hf.modules.items() if not k.startswith(("mlm_", "nsp"))},
                 "mlm_transform": "/lm_head.dense", "mlm_norm": "/lm_head.layer_norm", "mlm_bias": "/lm_head.bias"},
        to_config=_to_hf_config, from_config=_from_hf_config)

    def build_embeddings(self, size=None, position_offset=0):
        return super().build_embeddings(size, position_offset=self.config.pad_token_id + 1)

    def build_heads(self) -> None:
        super().build_heads()
        self.nsp = None  # − NSP (§4.2); the pooler stays, as in `RobertaModel`, for sentence-level fine-tuning
