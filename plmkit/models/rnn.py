"""RNN LM = FFNN LM with the fixed n − 1-token window replaced by a recurrent hidden state that carries
the whole history (Elman tanh cells), no direct connection. Mikolov et al. 2010, Interspeech, "Recurrent
neural network based language model".

As a fine-tuning body: `encode` runs the stack from a zero state left to right, so right padding leaves
every real token's states unchanged; `layer_groups` are the embeddings, then each recurrent layer (of every
`RecurrentStack` the member holds, layer j of each together). A member that changes how the stack reads
its input overrides `encode`; `forward` only adds the softmax on top.

Shape legend: B = batch, T = sequence length, V = vocabulary, E = embedding size, H = hidden size.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

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

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False, **_) -> ModelOutput:
        """(B, T) → the top layer's states (B, T, H), the state starting at zero; hidden_states: the embeddings
        (B, T, E), then each layer (B, T, H). Left to right only, so the mask is not needed."""
        e = self.dropout(self.embeddings(input_ids))  # (B, T, E)
        layers = self.rnn(e)  # L × (B, T, H)
        return ModelOutput(last_hidden_state=layers[-1], hidden_states=(e, *layers) if output_hidden_states else None)

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, *,
                output_hidden_states: bool = False, **_) -> ModelOutput:
        """(B, T) → logits (B, T, V) for the token after each position: `encode`, then the softmax layer."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_hidden_states)
        out.logits = self.output(self.dropout(out.last_hidden_state))
        return out

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The embeddings, then layer j of every recurrent stack (ELMo: forward and backward) per group."""
        stacks = [m for m in self.children() if isinstance(m, RecurrentStack)]
        depth = max(len(s.layers) for s in stacks)
        return [list(self.embeddings.parameters()),
                *([p for s in stacks if j < len(s.layers) for p in s.layers[j].parameters()] for j in range(depth))]
