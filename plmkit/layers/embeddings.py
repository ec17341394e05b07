"""Input embeddings: tokens + positions (learned or sinusoidal) + optional token types, then an
optional LayerNorm (BERT has one, GPT-1 does not) and dropout.

`position_offset` starts the learned position table at that row: fairseq's RoBERTa reserves rows
0 … padding_idx, so its table has max_positions + padding_idx + 1 rows and position t reads row t + offset.

`vocab_size=0` builds no token table: a sequence-to-sequence decoder reads the encoder's (`add` then puts
positions, norm and dropout on the looked-up vectors)."""

from __future__ import annotations

import math

import torch
from torch import nn

POSITIONS = ("learned", "sinusoidal", "none")  # "none": positions enter inside attention (NEZHA)


def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """(P, dim) fixed table of Vaswani et al. 2017, §3.5: sin on even, cos on odd channels."""
    pos = torch.arange(n_positions, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(pos * inv)
    table[:, 1::2] = torch.cos(pos * inv[: dim // 2])
    return table


class Embeddings(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int, max_positions: int, position: str,
                 type_vocab_size: int, norm: bool, eps: float, dropout: float, pad_token_id: int | None,
                 position_offset: int = 0):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, hidden_size, padding_idx=pad_token_id) if vocab_size else None
        if position == "learned":
            self.positions = nn.Embedding(max_positions + position_offset, hidden_size)
        elif position == "sinusoidal":
            self.register_buffer("sinusoid", sinusoidal_table(max_positions, hidden_size), persistent=False)
        elif position != "none":
            raise ValueError(f"unknown position embedding {position!r}; choose from {POSITIONS}")
        self.position, self.position_offset = position, position_offset
        self.token_types = nn.Embedding(type_vocab_size, hidden_size) if type_vocab_size > 0 else None
        self.norm = nn.LayerNorm(hidden_size, eps=eps) if norm else None
        self.drop = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids: (B, T) → (B, T, H). position_ids: (B, T), default 0 … T − 1 in every row (a decoding
        step's tokens sit after the cached ones, and a left-padded row's count from its first real token)."""
        return self.add(self.tokens(input_ids), token_type_ids, position_ids)

    def add(self, x: torch.Tensor, token_type_ids: torch.Tensor | None = None,
            position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token vectors (B, T, H) → the embeddings: plus positions and token types, norm, dropout."""
        T = x.shape[1]
        if self.position == "learned":
            x = x + (self.positions.weight[self.position_offset:self.position_offset + T] if position_ids is None
                     else self.positions(position_ids + self.position_offset))
        elif self.position == "sinusoidal":
            x = x + (self.sinusoid[:T] if position_ids is None else self.sinusoid[position_ids])
        if self.token_types is not None:
            x = x + (self.token_types(token_type_ids) if token_type_ids is not None else self.token_types.weight[0])
        if self.norm is not None:
            x = self.norm(x)
        return self.drop(x)


class TaskEmbeddings(Embeddings):
    """Embeddings plus one learned vector per pre-training task, added before the LayerNorm (ERNIE 2.0's task
    embedding, Sun et al. 2020, §3.3). Without task ids every token reads task 0's row, as transformers'
    `ErnieModel(use_task_id=True)` does."""

    def __init__(self, *args, task_type_vocab_size: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.task_types = nn.Embedding(task_type_vocab_size, self.tokens.embedding_dim)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, task_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, task_type_ids: (B, T) → (B, T, H)."""
        tasks = self.task_types.weight[0] if task_type_ids is None else self.task_types(task_type_ids)
        return self.add(self.tokens(input_ids) + tasks, token_type_ids, position_ids)
