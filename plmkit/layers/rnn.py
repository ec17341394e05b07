"""The recurrent stack shared by the RNN, LSTM and ELMo members: layers of Elman (tanh) or LSTM cells,
dropout between layers, every layer's output kept (ELMo mixes them).

Shape legend: B = batch, T = sequence length, E = input size, H = hidden size, L = layers.
"""

from __future__ import annotations

import torch
from torch import nn

CELLS = {"tanh": lambda i, h: nn.RNN(i, h, nonlinearity="tanh", batch_first=True),  # Elman 1990
         "lstm": lambda i, h: nn.LSTM(i, h, batch_first=True)}  # Hochreiter & Schmidhuber 1997


class RecurrentStack(nn.Module):
    """L single-layer recurrent layers (one module each, so each layer's states are returned)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose from {sorted(CELLS)}")
        self.layers = nn.ModuleList(CELLS[cell](input_size if i == 0 else hidden_size, hidden_size)
                                    for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, reverse: bool = False) -> list[torch.Tensor]:
        """(B, T, E) → L × (B, T, H), each layer's output; `reverse` reads right to left (ELMo's backward LM),
        outputs stay aligned with the input positions."""
        if reverse:
            x = x.flip(1)
        outs = []
        for i, layer in enumerate(self.layers):
            x, _ = layer(self.dropout(x) if i else x)
            outs.append(x)
        return [o.flip(1) for o in outs] if reverse else outs
