"""FFNN LM = n-gram LM with counts replaced by learned word vectors: the n − 1 context embeddings,
concatenated, → tanh hidden layer → softmax, plus a direct connection from the embeddings to the output.
Bengio, Ducharme, Vincent & Jauvin 2003, JMLR 3:1137–1155, eq. 1: y = b + W·x + U·tanh(d + H·x).

As a fine-tuning body (`plmkit finetune`), every lineage member offers what the task heads read:
`encode` (the states below the LM's softmax, and with `output_hidden_states` the embeddings plus each
layer's states), `init_weights` (for --from-scratch), `resize_token_embeddings` (GPT's [start]/[delim]/
[extract] tokens, which the heads add to a causal body) and `layer_groups` (bottom to top, for ULMFiT).
Here the one hidden layer reads the n − 1 tokens ending at each position, so padding on the right never
reaches a real token.

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
          config=FfnnConfig, objective="clm", tokenizer="bpe",
          kind="neural LM")
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

    def _window(self, e: torch.Tensor) -> torch.Tensor:
        """(B, T, m) → (B, T, (n − 1)·m): the n − 1 embeddings ending at each position, oldest first (zero
        vectors stand in for context before the window's start)."""
        n = self.config.order
        x = F.pad(e, (0, 0, n - 2, 0)).unfold(1, n - 1, 1)  # (B, T, m, n − 1)
        return x.transpose(2, 3).flatten(2)

    def _states(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T) → the embeddings (B, T, m), their n − 1-token windows (B, T, (n − 1)·m) and the hidden
        layer (B, T, h)."""
        e = self.dropout(self.embeddings(input_ids))
        x = self._window(e)
        return e, x, torch.tanh(self.hidden(x))

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, **_) -> ModelOutput:
        """(B, T) → logits (B, T, V) for the token after each position, from the n − 1 tokens ending there."""
        _, x, h = self._states(input_ids)
        logits = self.output(self.dropout(h))
        if self.direct is not None:
            logits = logits + self.direct(x)
        return ModelOutput(last_hidden_state=h, logits=logits)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False, **_) -> ModelOutput:
        """(B, T) → the hidden layer (B, T, h) under the softmax; hidden_states: the embeddings (B, T, m), then
        the hidden layer. Every state reads only tokens to its left, so the mask is not needed."""
        e, _, h = self._states(input_ids)
        return ModelOutput(last_hidden_state=h, hidden_states=(e, h) if output_hidden_states else None)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters bottom to top for ULMFiT's discriminative rates and gradual unfreezing: the token
        embeddings, then each layer. The LM's own output layers are left out (a task head replaces them)."""
        return [list(self.embeddings.parameters()), list(self.hidden.parameters())]

    def init_weights(self) -> None:
        """Draw every weight afresh as at construction (PyTorch's initialisers: N(0, 1) embeddings, uniform
        ±1/√fan-in linear and recurrent weights): the untrained baseline of `finetune --from-scratch`."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def resize_token_embeddings(self, vocab_size: int) -> None:
        """Give the vocabulary `vocab_size` tokens, e.g. GPT's fine-tuning tokens added by the task heads:
        existing rows kept; new embedding rows drawn with the spread of the existing ones; new output rows
        score every context with the lowest bias of the old tokens, so the LM still rarely predicts them;
        config.vocab_size follows, so the model saves and loads at its new size."""
        old = self.embeddings
        if vocab_size == old.num_embeddings:
            return
        n = min(vocab_size, old.num_embeddings)
        emb = nn.Embedding(vocab_size, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            nn.init.normal_(emb.weight, std=float(old.weight.std()))
            emb.weight[:n] = old.weight[:n]
        self.embeddings = emb
        for name in ("output", "direct"):
            old_out = getattr(self, name, None)
            if old_out is None:
                continue
            new = nn.Linear(old_out.in_features, vocab_size, bias=old_out.bias is not None,
                            device=old_out.weight.device, dtype=old_out.weight.dtype)
            with torch.no_grad():
                new.weight.zero_()
                new.weight[:n] = old_out.weight[:n]
                if new.bias is not None:
                    new.bias.fill_(float(old_out.bias.min()))
                    new.bias[:n] = old_out.bias[:n]
            setattr(self, name, new)
        self.config = self.config.replace(vocab_size=vocab_size)
