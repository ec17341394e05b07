"""BERT-wwm = BERT + whole-word masking. Google's BERT-wwm release, 2019 (google-research/bert README); Cui et al. 2019, arXiv:1906.08101.

The architecture and parameter layout are BERT's (a saved directory is a Hugging Face `bert` model);
only the data transform differs: the sub-tokens of a word are masked together (`plmkit.objectives.wwm`),
with word boundaries from the tokenizer's marks, or from jieba for Chinese characters.
"""

from __future__ import annotations

import dataclasses

from ..family import register
from .bert import Bert, BertConfig


@dataclasses.dataclass(frozen=True)
class BertWwmConfig(BertConfig):
    """BERT's config unchanged: whole-word masking lives in the objective."""


@register("bert-wwm", parent="bert", year=2019,
          paper="Google's BERT-wwm release, 2019 (google-research/bert README); Cui et al. 2019, arXiv:1906.08101",
          diff={"objective": ["token masking → whole-word masking: all sub-tokens of a word or none",
                              "Chinese: words from a segmenter (jieba here; LTP in Cui et al.)"]},
          config=BertWwmConfig, objective="wwm+nsp", tokenizer="wordpiece")
class BertWwm(Bert):
    config_class = BertWwmConfig
