"""Flair = ELMo over characters: a forward and a backward character LSTM LM over the raw text (spaces
included), separate weights, one layer each; a word's vector = forward state after its last character ⊕
backward state before its first. Akbik, Blythe & Vollgraf 2018, COLING, "Contextual String Embeddings for
Sequence Labeling", ACL C18-1139.

§2.1: the text is a sequence of characters, the space one of them, and each LM predicts the next (the
previous) character; the two are independent models, here trained side by side on the same windows with
the biLM objective (the mean of two losses whose gradients never meet). §2.2: with t_i the position
of word i's first character, w_i = [h^f_{t_{i+1} − 1}; h^b_{t_i − 1}], the forward state at the character
after the word (the space that closes it) and the backward state at the character before it (the space that
opens it): each has read the whole word and then learnt it ended. Without a space between words (Chinese)
t_{i+1} − 1 is the word's own last character, and t_i − 1 the previous word's last.

As a fine-tuning body `encode` gives per-character states [→h; ←h] (B, T, 2H); the tagging head asks
`word_vectors` for w_i at each word. The frame puts the document separator first (what precedes a text in
pre-training) and a space last (Flair's end marker), so the last word is closed by a space like the others.
The paper keeps the LMs frozen and trains a BiLSTM-CRF on the word vectors: `--features scalar-mix` freezes
them (one layer: the mix is a learned scale); the default fine-tunes them too.

Shape legend: B = batch, T = characters, V = character vocabulary, E = embedding size, H = hidden size,
W = words per sentence.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..layers.rnn import reverse_padded
from .elmo import BiLMOutput, Elmo, ElmoConfig
from .lstm import LstmConfig


@dataclasses.dataclass(frozen=True)
class FlairConfig(ElmoConfig):
    num_layers: int = 1  # one LSTM layer per direction, as the paper's LMs
    embedding_size: int = 100  # character embedding, as in the paper
    hidden_size: int = 2048  # the paper's state size; the presets below are scaled down

    SIZES: ClassVar[dict[str, dict]] = {"tiny": dict(embedding_size=32, hidden_size=256),
                                        "mini": dict(embedding_size=64, hidden_size=512),
                                        "small": dict(embedding_size=100, hidden_size=1024)}

    def validate(self) -> None:
        LstmConfig.validate(self)  # no token layer is mixed in, so E need not equal H (ELMo's check)


@register("flair", parent="elmo", year=2018,
          paper="Akbik et al. 2018, Contextual String Embeddings for Sequence Labeling, COLING, ACL C18-1139",
          diff={"tokenizer": ["sub-words → the characters of the raw text, the space included"],
                "body": ["backward LM with its own embedding and softmax (two independent LMs)",
                         "1 layer per direction"],
                "heads": ["features per word: →h after its last character ⊕ ←h before its first (§2.2), "
                          "no mix with a token layer"]},
          config=FlairConfig, objective="bilm", tokenizer="rawchar")
class Flair(Elmo):
    config_class = FlairConfig

    def build_body(self) -> None:
        super().build_body()
        c = self.config
        self.embeddings_backward = nn.Embedding(c.vocab_size, c.embedding_size)
        self.output_backward = nn.Linear(c.hidden_size, c.vocab_size)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False, **_) -> BiLMOutput:
        """(B, T) → [→h_L; ←h_L] at every character (B, T, 2H); hidden_states: [→h_j; ←h_j] for each layer j
        (a character's embedding is no word feature, so unlike ELMo no token layer). With right padding in
        attention_mask the backward LM starts at each row's last real character."""
        lengths = None if attention_mask is None else attention_mask.sum(1)  # (B,)
        fwd = self.rnn(self.dropout(self.embeddings(input_ids)))  # L × (B, T, H)
        e_bwd = self.dropout(self.embeddings_backward(input_ids))  # (B, T, E)
        bwd = [reverse_padded(h, lengths) for h in self.rnn_backward(reverse_padded(e_bwd, lengths))]
        layers = tuple(torch.cat([f, b], -1) for f, b in zip(fwd, bwd))  # L × (B, T, 2H)
        return BiLMOutput(last_hidden_state=layers[-1], hidden_states=layers if output_hidden_states else None)

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, *,
                output_hidden_states: bool = False, **_) -> BiLMOutput:
        """(B, T) → next-character logits (B, T, V) and previous-character logits, each LM its own softmax."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_hidden_states)
        fwd, bwd = out.last_hidden_state.chunk(2, -1)  # (B, T, H) each
        out.logits = self.output(self.dropout(fwd))
        out.backward_logits = self.output_backward(self.dropout(bwd))
        return out

    def input_frame(self, tokenizer) -> tuple[int, int, int]:
        """(begin, between a pair, end): the document separator before and between texts, a space after."""
        space = tokenizer.token_to_id(" ")
        if space is None:
            raise PlmkitError("flair reads raw text: its tokenizer needs the space as a token (--kind rawchar)")
        return tokenizer.doc_sep_id, tokenizer.doc_sep_id, space

    def word_vectors(self, h: torch.Tensor, starts: torch.Tensor, word_mask: torch.Tensor,
                     lengths: torch.Tensor) -> torch.Tensor:
        """w_i of §2.2. h (B, T, 2H) per character, starts (B, W) each word's first position (≥ 1: the frame's
        begin token comes first), word_mask (B, W), lengths (B,) real positions → (B, W, 2H): the forward half
        one before the next word's start (the sequence's end for the last word), the backward half one
        before the word's own start."""
        n = word_mask.sum(1, keepdim=True)  # (B, 1) words per row
        nxt = torch.cat([starts[:, 1:], starts[:, -1:]], 1)  # (B, W)
        k = torch.arange(starts.shape[1], device=h.device)
        nxt = torch.where(k >= n - 1, lengths[:, None].to(starts), nxt)  # the last word: up to the sequence end
        fwd, bwd = h.chunk(2, -1)  # (B, T, H) each

        def at(x, pos):  # (B, T, H) at (B, W) positions → (B, W, H)
            return x.gather(1, pos.clamp(min=0)[..., None].expand(-1, -1, x.shape[-1]))

        return torch.cat([at(fwd, nxt - 1), at(bwd, starts - 1)], -1)

    def resize_token_embeddings(self, vocab_size: int) -> None:
        """The parent's resize, once for each LM's embedding and softmax."""
        config, forward = self.config, (self.embeddings, self.output)
        self.embeddings, self.output = self.embeddings_backward, self.output_backward
        super().resize_token_embeddings(vocab_size)
        self.embeddings_backward, self.output_backward = self.embeddings, self.output
        (self.embeddings, self.output), self.config = forward, config
        super().resize_token_embeddings(vocab_size)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Both LMs' embeddings, then each layer of both stacks (ULMFiT's groups)."""
        groups = super().layer_groups()
        return [groups[0] + list(self.embeddings_backward.parameters()), *groups[1:]]
