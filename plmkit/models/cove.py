"""CoVe = LSTM − the LM + a 2-layer BiLSTM translation encoder with an attentional LSTM decoder; features =
the encoder's states. McCann et al. 2017, "Learned in Translation: Contextualized Word Vectors", arXiv:1708.00107.

§3: the MT-LSTM encoder reads the source sentence (GloVe vectors in the paper; here the model's own token
embedding, trained with it) through two bidirectional LSTM layers; the decoder is an LSTM whose state h_t
attends over the encoder states (α = softmax(H W h_t)), and h̃_t = tanh(W [h_t; α H]) predicts the next
target word. §4: CoVe(w) = MT-LSTM(w) are the features for other tasks; the paper concatenates
[GloVe(w); CoVe(w)]. Here they are used like ELMo's (`plmkit finetune --features scalar-mix`): a learned
mix of the token layer [x; x] and the two BiLSTM layers, with the body frozen. Left out: the decoder's
input feeding of h̃_{t−1} (the decoder reads the target tokens alone, in one pass); the encoder's use is
unchanged by it.

Trained by `plmkit pretrain --model cove --corpus src.txt tgt.txt`: line-aligned files, translating the
first into the second (objective `translate`).

Shape legend: B = batch, S = source length, U = target length, E = embedding size, H = hidden size,
V = vocabulary.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..layers.rnn import BiLstm
from .lstm import Lstm, LstmConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class CoveConfig(LstmConfig):
    num_layers: int = 2  # two BiLSTM layers in the encoder, two LSTM layers in the decoder (§3)
    hidden_size: int = 128  # per direction; = embedding_size so [x; x] and [→h; ←h] mix (scalar-mix features)
    n_langs: int = 2  # languages of the parallel corpus (the decoder of LASER is told which to write)

    SIZES: ClassVar[dict[str, dict]] = {"tiny": dict(embedding_size=128, hidden_size=128),
                                        "mini": dict(embedding_size=256, hidden_size=256),
                                        "small": dict(embedding_size=300, hidden_size=300)}  # §3: GloVe 300

    def validate(self) -> None:
        super().validate()
        if self.embedding_size != self.hidden_size:
            raise PlmkitError("the features mix the token layer with the BiLSTM layers: "
                              "embedding_size must equal hidden_size")
        if self.n_langs < 2:
            raise PlmkitError(f"a translation encoder needs n_langs ≥ 2, got {self.n_langs}")


@register("cove", parent="lstm", year=2017,
          paper="McCann et al. 2017, Learned in Translation: Contextualized Word Vectors, NeurIPS, arXiv:1708.00107",
          diff={"objective": ["next-token LM → machine translation (teacher-forced decoder)"],
                "body": ["LSTM LM → 2-layer BiLSTM encoder + attentional 2-layer LSTM decoder"],
                "heads": ["features: the encoder's states (frozen), mixed like ELMo's layers"]},
          config=CoveConfig, objective="translate", tokenizer="bpe", kind="encoder-decoder")
class Cove(Lstm):
    config_class = CoveConfig
    causal_features = False  # the encoder reads both ways

    def build_body(self) -> None:
        c = self.config
        self.encoder = BiLstm(c.embedding_size, c.hidden_size, c.num_layers, c.dropout)
        self.build_decoder()

    def build_decoder(self) -> None:
        c = self.config
        self.decoder = nn.LSTM(c.embedding_size, c.hidden_size, c.num_layers, batch_first=True,
                               dropout=c.dropout if c.num_layers > 1 else 0.0)  # between layers only
        self.attn_key = nn.Linear(2 * c.hidden_size, c.hidden_size, bias=False)  # W in α = softmax(H W h_t)
        self.attn_out = nn.Linear(3 * c.hidden_size, c.hidden_size)  # h̃_t = tanh(W [h_t; context])

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False, **_) -> ModelOutput:
        """(B, S) → the top BiLSTM layer (B, S, 2H); hidden_states: [x; x], then each layer's [→h; ←h]."""
        lengths = None if attention_mask is None else attention_mask.sum(1)
        e = self.dropout(self.embeddings(input_ids))  # (B, S, E)
        layers = (torch.cat([e, e], -1), *self.encoder(e, lengths))
        return ModelOutput(last_hidden_state=layers[-1], hidden_states=layers if output_hidden_states else None)

    def decode(self, memory: torch.Tensor, attention_mask: torch.Tensor | None, decoder_input_ids: torch.Tensor,
               target_lang: torch.Tensor | None) -> torch.Tensor:
        """Encoder states (B, S, 2H) + target tokens (B, U) → decoder features h̃ (B, U, H)."""
        h, _ = self.decoder(self.dropout(self.embeddings(decoder_input_ids)))  # (B, U, H)
        scores = h @ self.attn_key(memory).transpose(1, 2)  # (B, U, S)
        if attention_mask is not None:
            scores = scores.masked_fill(~attention_mask.bool()[:, None, :], float("-inf"))
        context = scores.softmax(-1) @ memory  # (B, U, 2H)
        return torch.tanh(self.attn_out(torch.cat([h, context], -1)))

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, *,
                decoder_input_ids: torch.Tensor | None = None, target_lang: torch.Tensor | None = None,
                output_hidden_states: bool = False, **_) -> ModelOutput:
        """Without decoder_input_ids: `encode`. With them (B, U): logits (B, U, V) for each next target token."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_hidden_states)
        if decoder_input_ids is not None:
            h = self.decode(out.last_hidden_state, attention_mask, decoder_input_ids, target_lang)
            out.logits = self.output(self.dropout(h))
        return out

    def input_frame(self, tokenizer) -> tuple[int, int, int]:
        """Task inputs as the encoder read its sentences: no [CLS]; the end-of-sentence token between texts."""
        return tokenizer.sep_id, tokenizer.sep_id, tokenizer.sep_id

    def pool_features(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(N, T, 2H) → (N, 2H): max over the real positions (the sentence vector LASER trains for)."""
        return h.masked_fill(~attention_mask.bool()[..., None], float("-inf")).max(1).values

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The embeddings, then each encoder layer (the decoder is not used downstream)."""
        return [list(self.embeddings.parameters()), *(list(layer.parameters()) for layer in self.encoder.layers)]
