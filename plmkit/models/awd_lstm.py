"""AWD-LSTM = LSTM LM + DropConnect on the hidden-to-hidden weights + variational (locked) dropout +
embedding dropout + tied input/output embeddings + activation regularisation (AR/TAR), 3 layers.
Merity, Keskar & Socher 2018, ICLR, "Regularizing and Optimizing LSTM Language Models", arXiv:1708.02182.
The LSTM that ULMFiT (Howard & Ruder 2018) pre-trains and fine-tunes.

- weight drop (§2): one DropConnect mask on each layer's W_hh per forward pass (`layers.rnn.WeightDropLSTM`);
- variational dropout (§4.2): one mask per sequence on the word vectors (`input_dropout`), between layers
  (`hidden_dropout`) and on the last layer's output (`dropout`);
- embedding dropout (§4.3): whole rows of the embedding (word types) dropped for the pass, the rest scaled;
- weight tying (§4.4, Inan et al. 2017; Press & Wolf 2017): the softmax weight is the embedding, so the
  last LSTM layer is as wide as the embedding (E), the others H;
- AR and TAR (§4.6): α · mean((m ⊙ h_t)²) on the dropped last-layer output and β · mean((h_t − h_{t+1})²)
  on the undropped one, added to the loss by the `clm-ar` objective.
Left out: NT-ASGD and variable-length BPTT (§3, §4.1): plmkit's one trainer runs AdamW over fixed windows.

Shape legend: B = batch, T = sequence length, V = vocabulary, E = embedding size, H = hidden size.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..layers.rnn import LockedDropout, RecurrentStack
from ..objectives import OBJECTIVES, CausalLM
from .lstm import Lstm, LstmConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class AwdLstmConfig(LstmConfig):
    num_layers: int = 3  # §5: a 3-layer LSTM
    # Dropout probabilities of §5 (Penn Treebank; for WikiText-2 the paper raises input_dropout to 0.65).
    dropout: float = 0.4  # variational, on the last layer's output (before the softmax)
    input_dropout: float = 0.4  # variational, on the word vectors
    hidden_dropout: float = 0.3  # variational, between LSTM layers
    embedding_dropout: float = 0.1  # word types: whole rows of the embedding
    weight_drop: float = 0.5  # DropConnect on each layer's hidden-to-hidden weights
    ar_alpha: float = 2.0  # α of activation regularisation (0: off)
    tar_beta: float = 1.0  # β of temporal activation regularisation (0: off)

    # §5: E = 400, H = 1150 (base); tiny and mini keep the LSTM LM's sizes, for comparison on a CPU.
    SIZES: ClassVar[dict[str, dict]] = {"tiny": dict(embedding_size=128, hidden_size=256),
                                        "mini": dict(embedding_size=256, hidden_size=512),
                                        "base": dict(embedding_size=400, hidden_size=1150)}

    def validate(self) -> None:
        super().validate()
        for name in ("input_dropout", "hidden_dropout", "embedding_dropout", "weight_drop"):
            if not 0 <= getattr(self, name) < 1:
                raise PlmkitError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.ar_alpha < 0 or self.tar_beta < 0:
            raise PlmkitError(f"ar_alpha and tar_beta must be ≥ 0, got {self.ar_alpha} and {self.tar_beta}")


@dataclasses.dataclass
class AwdLstmOutput(ModelOutput):
    dropped_output: torch.Tensor | None = None  # (B, T, E): the last layer's output as the softmax reads it


class ActivationRegularizedLM(CausalLM):
    """CLM + AR + TAR (Merity et al. 2018, §4.6) with the member's ar_alpha and tar_beta; the logged
    `loss` is the objective with the penalties, `lm_loss` the cross-entropy alone."""

    name = "clm-ar"

    def step(self, model, batch):
        out = model(batch["input_ids"])
        config = getattr(model, "module", model).config  # under DDP the trainer hands over the wrapper
        logits = out.logits  # (B, T, V)
        lm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch["labels"].reshape(-1))
        h = out.last_hidden_state.float()  # (B, T, E), before the output dropout
        ar = out.dropped_output.float().pow(2).mean()
        tar = (h[:, 1:] - h[:, :-1]).pow(2).mean()
        return {"loss": lm + config.ar_alpha * ar + config.tar_beta * tar, "lm_loss": lm.detach(),
                "ar": ar.detach(), "tar": tar.detach(), "tokens": batch["input_ids"].numel()}


OBJECTIVES.setdefault(ActivationRegularizedLM.name, ActivationRegularizedLM)


def embedding_dropout(weight: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """(V, E) → (V, E) with whole rows zeroed with probability p and the rest scaled by 1 / (1 − p): every
    occurrence of a dropped word in the batch loses its vector (Gal & Ghahramani 2016)."""
    if not training or p == 0:
        return weight
    keep = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - p) / (1 - p)  # (V, 1)
    return weight * keep


@register("awd-lstm", parent="lstm", year=2018,
          paper="Merity, Keskar & Socher 2018, Regularizing and Optimizing LSTM Language Models, ICLR, "
                "arXiv:1708.02182",
          diff={"layers": ["+ DropConnect on the hidden-to-hidden weights (weight drop)",
                           "dropout → variational (locked) dropout on inputs, between layers and on the output",
                           "+ embedding dropout (whole word rows)"],
                "body": ["softmax tied to the input embedding; last layer as wide as the embedding",
                         "3 layers"],
                "objective": ["+ activation regularisation (AR) and temporal AR (TAR)"],
                "training": ["NT-ASGD and variable-length BPTT not reproduced (AdamW, fixed windows)"]},
          config=AwdLstmConfig, objective="clm-ar", tokenizer="bpe")
class AwdLstm(Lstm):
    """`embeddings` (V, E) is also the softmax weight; `output_bias` (V,) is the softmax's own parameter."""

    config_class = AwdLstmConfig

    def __init__(self, config: AwdLstmConfig):
        super().__init__(config)
        c = self.config
        self.input_dropout = LockedDropout(c.input_dropout)
        self.dropout = LockedDropout(c.dropout)
        self.output = None  # the softmax weight is the embedding (tied)
        self.output_bias = nn.Parameter(torch.zeros(c.vocab_size))
        self._init_embedding()

    def _init_embedding(self) -> None:
        # uniform ±0.1, as the released code draws the tied embedding: N(0, 1) rows make a poor softmax
        nn.init.uniform_(self.embeddings.weight, -0.1, 0.1)

    def build_body(self) -> None:
        c = self.config
        self.rnn = RecurrentStack(self.cell, c.embedding_size, c.hidden_size, c.num_layers, c.hidden_dropout,
                                  locked=True, weight_drop=c.weight_drop, output_size=c.embedding_size)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False, **_) -> ModelOutput:
        """(B, T) → the last layer's states (B, T, E); hidden_states: the word vectors (B, T, E), then each
        layer (H wide, the last E). As the LSTM's, with embedding and locked dropout on the word vectors."""
        words = embedding_dropout(self.embeddings.weight, self.config.embedding_dropout, self.training)  # (V, E)
        e = self.input_dropout(F.embedding(input_ids, words))  # (B, T, E)
        layers = self.rnn(e)  # L × (B, T, H), the last (B, T, E)
        return ModelOutput(last_hidden_state=layers[-1], hidden_states=(e, *layers) if output_hidden_states else None)

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, *,
                output_hidden_states: bool = False, **_) -> AwdLstmOutput:
        """(B, T) → logits (B, T, V) for the token after each position, through the tied embedding; plus the
        dropped output AR reads."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_hidden_states)
        dropped = self.dropout(out.last_hidden_state)  # (B, T, E)
        return AwdLstmOutput(last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states,
                             logits=F.linear(dropped, self.embeddings.weight, self.output_bias),
                             dropped_output=dropped)

    def init_weights(self) -> None:
        super().init_weights()
        self._init_embedding()
        nn.init.zeros_(self.output_bias)

    def resize_token_embeddings(self, vocab_size: int) -> None:
        """The LSTM's resize (the tied softmax follows the embedding), then the output bias: new tokens get
        the lowest bias of the old ones, so the LM still rarely predicts them."""
        old = self.output_bias.detach()
        super().resize_token_embeddings(vocab_size)
        bias = torch.full((vocab_size,), float(old.min()), dtype=old.dtype, device=old.device)
        n = min(vocab_size, len(old))
        bias[:n] = old[:n]
        self.output_bias = nn.Parameter(bias)
