"""ELMo = LSTM LM + a second, right-to-left LSTM LM trained jointly (biLM, shared token embedding and
softmax); features = a learned scalar mix of its L + 1 layers. Peters et al. 2018, NAACL, "Deep
contextualized word representations", arXiv:1802.05365.

The layers are the token layer and each biLSTM layer with forward and backward states concatenated (eq. 1;
the paper's 2L + 1 representations). Token input: the char-CNN is left out.

Shape legend: B = batch, T = sequence length, V = vocabulary, H = hidden size (= embedding size), L = layers.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..data.pretrain import Windows
from ..errors import PlmkitError
from ..family import register
from ..layers.rnn import RecurrentStack
from ..layers.scalar_mix import ScalarMix
from ..objectives import OBJECTIVES, Objective
from .lstm import Lstm, LstmConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class ElmoConfig(LstmConfig):
    num_layers: int = 2  # L = 2 biLSTM layers, as in the paper
    hidden_size: int = 128  # = embedding_size, so layer 0 ([x; x]) and the LSTM layers ([→h; ←h]) stack

    SIZES: ClassVar[dict[str, dict]] = {"tiny": dict(embedding_size=128, hidden_size=128),
                                        "mini": dict(embedding_size=256, hidden_size=256),
                                        "small": dict(embedding_size=512, hidden_size=512)}

    def validate(self) -> None:
        super().validate()
        if self.embedding_size != self.hidden_size:
            raise PlmkitError("ELMo mixes the token layer with the LSTM layers: embedding_size must equal hidden_size")


@dataclasses.dataclass
class BiLMOutput(ModelOutput):
    backward_logits: torch.Tensor | None = None  # (B, T, V): the token before each position, from the right


class BiLM(Objective):
    """Forward and backward LM over packed windows: −½ (Σ log p(t_k | t_<k) + Σ log p(t_k | t_>k)) per token."""

    name = "bilm"

    def dataset(self, corpus):
        return Windows(corpus, self.seq_len + 1)

    def collate(self, examples: list[np.ndarray], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.from_numpy(np.stack(examples))}  # (B, T + 1)

    def step(self, model, batch):
        w = batch["input_ids"]
        out = model(w)
        V = out.logits.shape[-1]
        fwd = F.cross_entropy(out.logits[:, :-1].reshape(-1, V).float(), w[:, 1:].reshape(-1))
        bwd = F.cross_entropy(out.backward_logits[:, 1:].reshape(-1, V).float(), w[:, :-1].reshape(-1))
        return {"loss": (fwd + bwd) / 2, "forward_loss": fwd.detach(), "backward_loss": bwd.detach(),
                "tokens": w[:, 1:].numel()}


OBJECTIVES.setdefault(BiLM.name, BiLM)


@register("elmo", parent="lstm", year=2018,
          paper="Peters et al. 2018, Deep contextualized word representations, NAACL, arXiv:1802.05365",
          diff={"objective": ["left-to-right LM → biLM: + a right-to-left LM, losses summed"],
                "body": ["+ backward LSTM stack (separate weights; token embedding and softmax shared)",
                         "2 layers"],
                "heads": ["features: learned scalar mix γ Σ s_j h_j of the L + 1 layers"]},
          config=ElmoConfig, objective="bilm", tokenizer="bpe")
class Elmo(Lstm):
    config_class = ElmoConfig

    def build_body(self) -> None:
        super().build_body()
        c = self.config
        self.rnn_backward = RecurrentStack(self.cell, c.embedding_size, c.hidden_size, c.num_layers, c.dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, *,
                output_hidden_states: bool = False, **_) -> BiLMOutput:
        """(B, T) → forward logits (B, T, V) for the next token, backward logits for the previous one;
        hidden_states: L + 1 × (B, T, 2H): [x; x], then [→h_j; ←h_j] for each layer j."""
        e = self.dropout(self.embeddings(input_ids))  # (B, T, H)
        fwd, bwd = self.rnn(e), self.rnn_backward(e, reverse=True)  # L × (B, T, H) each
        layers = (torch.cat([e, e], -1), *(torch.cat([f, b], -1) for f, b in zip(fwd, bwd)))
        return BiLMOutput(last_hidden_state=layers[-1], logits=self.output(self.dropout(fwd[-1])),
                          backward_logits=self.output(self.dropout(bwd[-1])),
                          hidden_states=layers if output_hidden_states else None)


def elmo_features(model: Elmo, tokenizer, texts: list[str], mix: ScalarMix | None = None) -> list[torch.Tensor]:
    """ELMo representations of each text's tokens: with `mix` (a ScalarMix over the L + 1 layers, trained with
    the task), (T_i, 2H) each; without, all layers, (L + 1, T_i, 2H) each. Each text is read on its own,
    opened and closed by the document separator as in pre-training."""
    out = []
    for text in texts:
        ids = [tokenizer.doc_sep_id, *tokenizer.encode(text), tokenizer.doc_sep_id]
        with torch.no_grad():  # the biLM stays frozen; only the mix learns (§3.2)
            layers = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        layers = [h[0, 1:-1] for h in layers]  # (T_i, 2H) each, separators dropped
        out.append(mix([h[None] for h in layers])[0] if mix is not None else torch.stack(layers))
    return out
