"""ELMo's scalar mix: a task-specific, learned weighting of all layers of a frozen model.
Peters et al. 2018, arXiv:1802.05365, eq. 1: ELMo_k = γ Σ_j s_j h_{k,j}, with s = softmax(w).

Shape legend: B = batch, T = sequence length, H = hidden size, L = layers mixed.
"""

from __future__ import annotations

import torch
from torch import nn


class ScalarMix(nn.Module):
    def __init__(self, num_layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))  # w; s = softmax(w) starts uniform
        self.gamma = nn.Parameter(torch.ones(()))  # γ scales the whole vector to the task

    def forward(self, layers: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
        """L × (B, T, H) → (B, T, H)."""
        if len(layers) != self.weights.numel():
            raise ValueError(f"expected {self.weights.numel()} layers to mix, got {len(layers)}")
        s = self.weights.softmax(0)  # (L,)
        return self.gamma * torch.einsum("l,lbth->bth", s, torch.stack(list(layers)))
