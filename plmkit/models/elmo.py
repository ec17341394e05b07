"""ELMo = LSTM LM + a second, right-to-left LSTM LM trained jointly (biLM, shared token embedding and
softmax); features = a learned scalar mix of its L + 1 layers. Peters et al. 2018, NAACL, "Deep
contextualized word representations", arXiv:1802.05365.

The layers are the token layer and each biLSTM layer with forward and backward states concatenated (eq. 1;
the paper's 2L + 1 representations). Token input: the char-CNN is left out.

As a fine-tuning body the LM is causal in each direction but the features read both ways, so the heads
treat ELMo as bidirectional (`causal_features = False`: no GPT tokens). Framing: each input is opened and
closed by the document separator, and a pair is split by it, exactly as documents met in pre-training (the
tokenizer's <s> never occurs in the pre-training stream, so its embedding was never trained). Pooling for
sequence tasks: the final state of each direction, i.e. the forward half at the closing separator (it has
read the whole input left to right) and the backward half at the opening one (read right to left), the
usual sentence vector of a biLSTM; with a scalar mix the same halves are taken from the mixed features.
`encode` flips each row within its length before the backward stack, so it starts at the row's last real
token and right padding changes no real token's state in either direction.

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
from ..layers.rnn import RecurrentStack, reverse_padded
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
          config=ElmoConfig, objective="bilm", tokenizer="bpe",
          influences=("context2vec", "cove"))
class Elmo(Lstm):
    config_class = ElmoConfig
    causal_features = False  # each LM reads one way, but the features [→h; ←h] see both sides

    def build_body(self) -> None:
        super().build_body()
        c = self.config
        self.rnn_backward = RecurrentStack(self.cell, c.embedding_size, c.hidden_size, c.num_layers, c.dropout)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False, **_) -> BiLMOutput:
        """(B, T) → the top layer [→h_L; ←h_L] (B, T, 2H); hidden_states: L + 1 × (B, T, 2H), [x; x], then
        [→h_j; ←h_j] for each layer j. With right padding in attention_mask the backward LM starts at each
        row's last real token."""
        lengths = None if attention_mask is None else attention_mask.sum(1)  # (B,)
        e = self.dropout(self.embeddings(input_ids))  # (B, T, H)
        fwd = self.rnn(e)  # L × (B, T, H)
        bwd = [reverse_padded(h, lengths) for h in self.rnn_backward(reverse_padded(e, lengths))]  # L × (B, T, H)
        layers = (torch.cat([e, e], -1), *(torch.cat([f, b], -1) for f, b in zip(fwd, bwd)))
        return BiLMOutput(last_hidden_state=layers[-1], hidden_states=layers if output_hidden_states else None)

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, *,
                output_hidden_states: bool = False, **_) -> BiLMOutput:
        """(B, T) → forward logits (B, T, V) for the next token, backward logits for the previous one; plus
        what `encode` returns."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_hidden_states)
        fwd, bwd = out.last_hidden_state.chunk(2, -1)  # (B, T, H) each
        out.logits, out.backward_logits = self.output(self.dropout(fwd)), self.output(self.dropout(bwd))
        return out

    def input_frame(self, tokenizer) -> tuple[int, int, int]:
        """(begin, between a pair, end) token ids around a task input: the document separator each time."""
        sep = tokenizer.doc_sep_id
        return sep, sep, sep

    def pool_features(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(N, T, 2H) → (N, 2H): the forward half at the last real position, the backward half at the first."""
        last = attention_mask.sum(1).long() - 1  # (N,)
        fwd, bwd = h.chunk(2, -1)
        return torch.cat([fwd[torch.arange(h.shape[0], device=h.device), last], bwd[:, 0]], -1)


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
