"""MASS = Transformer with XLM's embeddings (learned positions, LayerNorm) and GELU − embedding scaling +
masked sequence-to-sequence pre-training: a contiguous span of about half the sentence masked in the
encoder, the decoder predicting the span from its own tokens shifted. Song et al. 2019, "MASS: Masked
Sequence to Sequence Pre-training for Language Generation", arXiv:1905.02450.

§2.2: for a sentence x, the fragment x^{u:v} (k = v − u + 1 ≈ 50 % of its tokens, §4.1) is replaced by
[M] in the encoder's input; the decoder predicts x^{u:v}, reading the fragment shifted by one with the
tokens outside it masked (Fig. 1). Those masked decoder inputs carry nothing but their positions, so here
the decoder runs on the fragment alone, at the fragment's positions in the sentence (plmkit/objectives/
denoising.py): the same predictions for half the decoder's work. §4.1: the model is XLM's transformer
(learned positions, embedding LayerNorm, GELU), with BPE. transformers has no MASS; a saved directory
keeps plmkit's parameter names.
"""

from __future__ import annotations

import dataclasses

from ..family import register
from .seq2seq import Seq2seq, Seq2seqConfig


@dataclasses.dataclass(frozen=True)
class MassConfig(Seq2seqConfig):
    position: str = "learned"
    activation: str = "gelu"  # XLM's
    embedding_norm: bool = True
    scale_embeddings: bool = False


@register("mass", parent="transformer", year=2019, paper="Song et al. 2019, arXiv:1905.02450",
          diff={"layers": ["sinusoidal → learned positions + LayerNorm on the embeddings (XLM's)", "ReLU → GELU",
                           "− embedding scaling"],
                "objective": ["translation → masked sequence to sequence: a contiguous span of ~50 % of the "
                              "sentence masked in the encoder (80/10/10), the decoder predicts it from the span "
                              "shifted, at its positions"]},
          config=MassConfig, objective="masked-span", tokenizer="bpe", influences=("bert", "gpt", "xlm"))
class Mass(Seq2seq):
    config_class = MassConfig

    def source_frame(self, tokenizer) -> tuple[list[int], list[int]]:
        """A source ends with </s>, as the pre-training sentences do."""
        return [], [self.config.eos_token_id]
