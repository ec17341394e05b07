"""ERNIE (Baidu, 1.0) = BERT + knowledge masking: phrase- and entity-level masking from a lexicon. Sun et al. 2019, arXiv:1904.09223.

The architecture is BERT's; what changed is the masking unit (`plmkit.objectives.ernie`): whole phrases
and named entities, from a lexicon file (`[data] lexicon = "FILE"`, one per line) or, without one,
phrases derived from the corpus (frequent, cohesive multi-word n-grams; jieba words for Chinese).
The paper's dialogue language model (DLM) task on forum data is not part of this member.

Parameter layout matches Hugging Face `ErnieForPreTraining` (BERT's names under `ernie.`, no task-type
embeddings).
"""

from __future__ import annotations

import dataclasses

from ..family import register
from .bert import Bert, BertConfig
from .bert import _from_hf_config as _bert_from_hf
from .bert import _to_hf_config as _bert_to_hf


@dataclasses.dataclass(frozen=True)
class ErnieConfig(BertConfig):
    vocab_size: int = 18000  # Chinese characters and English word pieces of the released model


def _to_hf_config(c: ErnieConfig) -> dict:
    return {**_bert_to_hf(c), "use_task_id": False}


def _from_hf_config(d: dict) -> ErnieConfig:
    return ErnieConfig(**_bert_from_hf(d).to_dict())


@register("ernie", parent="bert", year=2019, paper="Sun et al. 2019, arXiv:1904.09223",
          diff={"objective": ["token masking → knowledge masking: whole phrases and named entities as units",
                              "phrases and entities from a lexicon, or derived from the corpus"],
                "training": ["heterogeneous Chinese corpora (encyclopedia, news, forum dialogues)"]},
          config=ErnieConfig, objective="knowledge+nsp", tokenizer="wordpiece")
class Ernie(Bert):
    config_class = ErnieConfig
    hf = dataclasses.replace(Bert.hf, model_type="ernie", architectures=("ErnieForPreTraining",), prefix="ernie.",
                             to_config=_to_hf_config, from_config=_from_hf_config,
                             accepts=lambda d: not d.get("use_task_id", False))  # with task ids: ernie2
