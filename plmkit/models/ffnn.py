"""FFNN LM = n-gram LM with counts replaced by learned word vectors: the n − 1 context embeddings,
concatenated, → tanh hidden layer → softmax, plus a direct connection from the embeddings to the output.
Bengio, Ducharme, Vincent & Jauvin 2003, JMLR 3:1137–1155, eq. 1: y = b + W·x + U·tanh(d + H·x).

Shape legend: B = batch, T = sequence length, V = vocabulary, m = embedding size, h = hidden size, n = order.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PlmkitError
from ..family import register
from .ngram import NgramConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class FfnnConfig(NgramConfig):
    order: int | None = 5  # n; Bengio et al.'s Brown-corpus MLPs used n = 5 (Table 1)
    embedding_size: int = 128  # m, the "feature vector" of each token
    hidden_size: int = 256  # h
    direct: bool = True  # W·x, the direct embeddings → output connection of eq. 1
    dropout: float = 0.1  # on embeddings and the hidden layer (not in the paper; small corpora overfit)

    # Sizes of the lineage's neural members; tiny matches GPT-tiny's hidden width order of magnitude.
    SIZES: ClassVar[dict[str, dict]] = {"tiny": dict(embedding_size=128, hidden_size=256),
                                        "mini": dict(embedding_size=256, hidden_size=512),
                                        "small": dict(embedding_size=512, hidden_size=1024)}

    def validate(self) -> None:
        super().validate()
        for name in ("embedding_size", "hidden_size"):
            if getattr(self, name) <= 0:
                raise PlmkitError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise PlmkitError("dropout must be in [0, 1)")

    def check_order(self) -> None:
        if self.order is None or self.order < 2:
            raise PlmkitError(f"a feed-forward LM needs order ≥ 2 (one context token), got {self.order}")


@register("ffnn", parent="ngram", year=2003,
          paper="Bengio et al. 2003, A Neural Probabilistic Language Model, JMLR 3",
          diff={"body": ["counts → concatenated context embeddings → tanh hidden layer → softmax",
                         "+ direct connection embeddings → output (W·x)"],
                "layers": ["+ learned token embeddings (distributed representations)"],
                "objective": ["counts → gradient-trained likelihood (CLM)"]},
          config=FfnnConfig, objective="clm", tokenizer="bpe")
class Ffnn(nn.Module):
    config_class = FfnnConfig

    def __init__(self, config: FfnnConfig):
        super().__init__()
        self.config = c = config
        self.embeddings = nn.Embedding(c.vocab_size, c.embedding_size)
        self.dropout = nn.Dropout(c.dropout)
        self.build_body()
        self.output = nn.Linear(c.hidden_size, c.vocab_size)  # U and b

    def build_body(self) -> None:
        c = self.config
        self.hidden = nn.Linear((c.order - 1) * c.embedding_size, c.hidden_size)  # H and d
        self.direct = nn.Linear((c.order - 1) * c.embedding_size, c.vocab_size, bias=False) if c.direct else None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, **_) -> ModelOutput:
        """(B, T) → logits (B, T, V) for the token after each position, from the n − 1 tokens ending there
        (zero vectors stand in for context before the window's start)."""
        n = self.config.order
        e = self.dropout(self.embeddings(input_ids))  # (B, T, m)
        x = F.pad(e, (0, 0, n - 2, 0)).unfold(1, n - 1, 1)  # (B, T, m, n − 1), oldest token first
        x = x.transpose(2, 3).flatten(2)  # (B, T, (n − 1)·m)
        h = torch.tanh(self.hidden(x))  # (B, T, h)
        logits = self.output(self.dropout(h))
        if self.direct is not None:
            logits = logits + self.direct(x)
        return ModelOutput(last_hidden_state=h, logits=logits)
