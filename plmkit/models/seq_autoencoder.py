"""SA-LSTM = LSTM whose pre-training objective is next-token prediction → sequence autoencoding: the LSTM
reads a window (the encoder), then, from its final state, reconstructs the window token by token with
teacher forcing (the decoder). Dai & Le 2015, NeurIPS, "Semi-supervised Sequence Learning", §2, Fig. 1.

Encoder and decoder are one network: "the weights for the decoder network and the encoder network are
the same" (§2), and the token embedding and softmax are shared too. So the decoder is the same LSTM
stack carrying on from the encoder's final (h, c) of every layer: it reads the document separator (the
paper's <eos>), then the window shifted right by one, predicting each token of the window. The
parameters are exactly an LSTM LM's (same state-dict names), and the embeddings + LSTM are what a
downstream classifier starts from (the paper's SA-LSTM), e.g. `plmkit finetune --model SA_DIR --task classify`.

Shape legend: B = batch, T = window length, V = vocabulary, H = hidden size.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from ..data.pretrain import Windows
from ..family import register
from ..objectives import OBJECTIVES, Objective
from .lstm import Lstm, LstmConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class SaLstmConfig(LstmConfig):
    pass  # the LSTM LM's sizes (SIZES included): the difference is the objective, not the network


class SequenceAutoencoding(Objective):
    """Read each window, then reconstruct it from the final state: −mean log p(x_t | encoder(x), x_<t)."""

    name = "seq-autoencode"

    def dataset(self, corpus):
        return Windows(corpus, self.seq_len)

    def collate(self, examples: list[np.ndarray], generator: torch.Generator) -> dict[str, torch.Tensor]:
        x = torch.from_numpy(np.stack(examples))  # (B, T)
        start = torch.full((x.shape[0], 1), self.tokenizer.doc_sep_id, dtype=x.dtype)  # the paper's <eos>
        return {"input_ids": x, "decoder_input_ids": torch.cat([start, x[:, :-1]], 1), "labels": x}

    def step(self, model, batch):
        out = model(batch["input_ids"], decoder_input_ids=batch["decoder_input_ids"])
        logits = out.logits  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch["labels"].reshape(-1))
        return {"loss": loss, "tokens": batch["labels"].numel()}


OBJECTIVES.setdefault(SequenceAutoencoding.name, SequenceAutoencoding)


@register("sa-lstm", parent="lstm", year=2015,
          paper="Dai & Le 2015, Semi-supervised Sequence Learning, NeurIPS, arXiv:1511.01432",
          diff={"objective": ["next-token LM → sequence autoencoder: read the window, then reconstruct it "
                              "from the final state (teacher forcing)"],
                "body": ["+ decoder = the same LSTM (shared weights) continuing from the encoder's final state"],
                "heads": ["a classifier starts from the pre-trained embeddings + LSTM (SA-LSTM)"]},
          config=SaLstmConfig, objective="seq-autoencode", tokenizer="bpe")
class SaLstm(Lstm):
    config_class = SaLstmConfig

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, *,
                decoder_input_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                **_) -> ModelOutput:
        """Without decoder_input_ids: the LSTM LM's forward. With them, (B, T) each: the encoder reads
        input_ids, the decoder reads decoder_input_ids from the encoder's final state; logits (B, T, V) and
        last_hidden_state (B, T, H) are the decoder's. The shared weights make this one pass of the stack
        over [input_ids; decoder_input_ids], whose state at the boundary is the encoder's final state."""
        if decoder_input_ids is None:
            return super().forward(input_ids, attention_mask, token_type_ids, output_hidden_states=output_hidden_states)
        T = input_ids.shape[1]
        out = self.encode(torch.cat([input_ids, decoder_input_ids], 1), None, None, output_hidden_states)
        h = out.last_hidden_state[:, T:]  # (B, T, H): the decoder's states
        hidden = tuple(s[:, T:] for s in out.hidden_states) if output_hidden_states else None
        return ModelOutput(last_hidden_state=h, logits=self.output(self.dropout(h)), hidden_states=hidden)
