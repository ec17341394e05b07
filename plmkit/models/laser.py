"""LASER = CoVe − attention + a max-pooled sentence vector that alone feeds the decoder + a target-language
embedding, one encoder for all languages. Artetxe & Schwenk 2019, "Massively Multilingual Sentence Embeddings
for Zero-Shot Cross-Lingual Transfer and Beyond", TACL 7, arXiv:1812.10464.

§3, Figure 1: a BiLSTM encoder (5 layers in the paper) over a BPE shared by all languages; the sentence
embedding is the max over time of its top layer; the decoder never sees the encoder's states, only that
vector: it initialises the decoder LSTM through a linear map and is concatenated to the decoder's input
at every step with the target language's embedding. No language id reaches the encoder, so it must
write the same vector for a sentence in any language. The paper decodes into two target languages
(English, Spanish); with a bilingual corpus each pair is translated from one of its languages into the
other (objective `translate-any`). Sentence vectors: `plmkit embed --model DIR` (the max-pooled top layer).

Shape legend: B = batch, S = source length, U = target length, E = embedding size, H = hidden size per
direction, L = layers.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..family import register
from .cove import Cove, CoveConfig


@dataclasses.dataclass(frozen=True)
class LaserConfig(CoveConfig):
    num_layers: int = 5  # encoder depth (§3); the decoder is one layer
    language_size: int = 32  # the target-language embedding (§3)


@register("laser", parent="cove", year=2019,
          paper="Artetxe & Schwenk 2019, Massively Multilingual Sentence Embeddings, TACL 7, arXiv:1812.10464",
          diff={"body": ["− attention: the decoder reads only the max-pooled sentence vector (its initial state "
                         "and, with the target-language embedding, its input at every step)",
                         "one encoder for every language, 5 BiLSTM layers"],
                "objective": ["translation into the other language of each pair, the decoder told which"],
                "heads": ["sentence vectors: max-pooled top layer"]},
          config=LaserConfig, objective="translate-any", tokenizer="bpe", kind="sentence vectors",
          influences=("xlm",))
class Laser(Cove):
    config_class = LaserConfig

    def build_decoder(self) -> None:
        c = self.config
        self.languages = nn.Embedding(c.n_langs, c.language_size)
        self.init_state = nn.Linear(2 * c.hidden_size, c.hidden_size)  # sentence vector → decoder h_0
        self.decoder = nn.LSTM(c.embedding_size + 2 * c.hidden_size + c.language_size, c.hidden_size,
                               batch_first=True)

    def decode(self, memory: torch.Tensor, attention_mask: torch.Tensor | None, decoder_input_ids: torch.Tensor,
               target_lang: torch.Tensor | None) -> torch.Tensor:
        """Encoder states (B, S, 2H) → their max-pooled sentence vector (B, 2H) → decoder states (B, U, H)."""
        mask = torch.ones(memory.shape[:2], device=memory.device) if attention_mask is None else attention_mask
        s = self.pool_features(memory, mask)  # (B, 2H)
        B, U = decoder_input_ids.shape
        if target_lang is None:
            target_lang = torch.zeros(B, dtype=torch.long, device=memory.device)
        x = torch.cat([self.dropout(self.embeddings(decoder_input_ids)), s[:, None].expand(B, U, -1),
                       self.languages(target_lang)[:, None].expand(B, U, -1)], -1)  # (B, U, E + 2H + lang)
        h0 = self.init_state(s)[None]  # (1, B, H)
        h, _ = self.decoder(x, (h0, torch.zeros_like(h0)))
        return h
