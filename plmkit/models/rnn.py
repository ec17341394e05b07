"""RNN LM = FFNN LM with the fixed n − 1-token window replaced by a recurrent hidden state that carries
the whole history (Elman tanh cells), no direct connection. Mikolov et al. 2010, Interspeech, "Recurrent
neural network based language model".

Shape legend: B = batch, T = sequence length, V = vocabulary, E = embedding size, H = hidden size.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import PlmkitError
from ..family import register
from ..layers.rnn import RecurrentStack
from .ffnn import Ffnn, FfnnConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class RnnConfig(FfnnConfig):
    order: int | None = None  # no fixed order: the state sees every earlier token of the window
    direct: bool = False
    num_layers: int = 1  # Mikolov et al. used one recurrent layer

    def check_order(self) -> None:
        if self.order is not None:
            raise PlmkitError("a recurrent LM has no fixed order (its state carries the history); leave order unset")

    def validate(self) -> None:
        super().validate()
        if self.direct:
            raise PlmkitError("the recurrent LMs have no direct embeddings → output connection")
        if self.num_layers < 1:
            raise PlmkitError(f"num_layers must be at least 1, got {self.num_layers}")


@register("rnn", parent="ffnn", year=2010,
          paper="Mikolov et al. 2010, Recurrent neural network based language model, Interspeech",
          diff={"body": ["n − 1-token window → recurrent state (all history)",
                         "− direct connection"],
                "layers": ["+ Elman recurrent layer (tanh)"],
                "training": ["backpropagation through time over the training window"]},
          config=RnnConfig, objective="clm", tokenizer="bpe")
class Rnn(Ffnn):
    config_class = RnnConfig
    cell = "tanh"

    def build_body(self) -> None:
        c = self.config
        self.rnn = RecurrentStack(self.cell, c.embedding_size, c.hidden_size, c.num_layers, c.dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, *,
                output_hidden_states: bool = False, **_) -> ModelOutput:
        """(B, T) → logits (B, T, V) for the token after each position, the state starting at zero."""
        e = self.dropout(self.embeddings(input_ids))  # (B, T, E)
        layers = self.rnn(e)  # L × (B, T, H)
        return ModelOutput(last_hidden_state=layers[-1], logits=self.output(self.dropout(layers[-1])),
                           hidden_states=(e, *layers) if output_hidden_states else None)
