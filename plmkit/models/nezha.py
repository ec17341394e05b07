"""NEZHA = BERT + functional relative positions (sinusoidal, clipped at 64, in keys and values) − absolute positions + whole-word masking. Wei et al. 2019, arXiv:1909.00204.

Every layer's attention is `plmkit.layers.relative_attention.RelativeSelfAttention`; the embeddings carry
no position at all. Pre-training masks whole words (§3.3; jieba words for Chinese, `plmkit.objectives.wwm`).
The paper's mixed precision and LAMB optimizer are training choices, not parts of the model.

transformers 5.x no longer ships NEZHA (`NezhaModel` was removed), so a saved NEZHA keeps plmkit's own
parameter names and config (config.json model_type "plmkit-nezha"); there is no HF parity to test.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..layers.relative_attention import RelativeSelfAttention
from .bert import Bert, BertConfig


@dataclasses.dataclass(frozen=True)
class NezhaConfig(BertConfig):
    vocab_size: int = 21128  # Google's Chinese BERT vocabulary, which NEZHA reuses
    position: str = "none"  # positions enter only through the attention's relative terms
    max_relative_distance: int = 64  # K: distances beyond ±K share one encoding (the released models' 64)

    def validate(self) -> None:
        super().validate()
        if self.max_relative_distance < 1:
            raise PlmkitError(f"max_relative_distance must be positive, got {self.max_relative_distance}")


@register("nezha", parent="bert", year=2019, paper="Wei et al. 2019, arXiv:1909.00204",
          diff={"layers": ["− absolute position embeddings",
                           "+ functional relative positions in keys and values: sinusoids of clip(j − i, ±64)"],
                "objective": ["token masking → whole-word masking"],
                "training": ["mixed precision, LAMB optimizer"]},
          config=NezhaConfig, objective="wwm+nsp", tokenizer="wordpiece",
          influences=("bert-wwm",))
class Nezha(Bert):
    config_class = NezhaConfig
    hf = None  # no transformers counterpart: saved under plmkit's names

    def build_layers(self) -> nn.ModuleList:
        c = self.config
        layers = super().build_layers()
        for block in layers:  # same parameters (qkv, out) as BERT's attention, plus the relative terms
            block.attn = RelativeSelfAttention(c.hidden_size, c.num_heads, c.attention_dropout, c.causal,
                                               c.max_relative_distance)
        return layers
