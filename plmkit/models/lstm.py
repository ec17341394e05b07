"""LSTM LM = RNN LM with LSTM cells (gated memory) in place of Elman cells. Sundermeyer, Schlüter & Ney
2012, Interspeech, "LSTM Neural Networks for Language Modeling"."""

from __future__ import annotations

import dataclasses

from ..family import register
from .rnn import Rnn, RnnConfig


@dataclasses.dataclass(frozen=True)
class LstmConfig(RnnConfig):
    pass  # same sizes as the RNN LM, so the comparison isolates the cell


@register("lstm", parent="rnn", year=2012,
          paper="Sundermeyer et al. 2012, LSTM Neural Networks for Language Modeling, Interspeech",
          diff={"layers": ["tanh cells → LSTM cells (gates + memory cell)"]},
          config=LstmConfig, objective="clm", tokenizer="bpe")
class Lstm(Rnn):
    config_class = LstmConfig
    cell = "lstm"
