"""A linear-chain conditional random field over tag sequences (Lafferty et al. 2001), as put on top of
BiLSTM / BERT encoders for tagging (Lample et al. 2016, arXiv:1603.01360, §2.2).

score(x, y) = start[y_1] + Σ_t emit[t, y_t] + Σ_t trans[y_{t-1}, y_t] + end[y_T];
the loss is −log p(y | x) = log Z(x) − score(x, y), with log Z from the forward algorithm.
Both the forward algorithm and Viterbi are vectorised over the batch and the tags; only time loops.

Shape legend: B = batch, T = sequence length, C = number of tags.
"""

from __future__ import annotations

import torch
from torch import nn


class CRF(nn.Module):
    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.zeros(num_tags))  # score of starting in a tag
        self.end = nn.Parameter(torch.zeros(num_tags))  # score of ending in a tag
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [i, j]: tag i followed by tag j
        nn.init.uniform_(self.transitions, -0.1, 0.1)

    def score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised score of `tags`: emissions (B, T, C), tags (B, T), mask (B, T) → (B,).
        The mask must be left-aligned: position 0 real, the real positions contiguous."""
        mask = mask.to(emissions.dtype)
        emit = emissions.gather(-1, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
        trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T - 1)
        last = tags.gather(1, (mask.sum(1).long() - 1).unsqueeze(1)).squeeze(1)  # (B,)
        return (self.start[tags[:, 0]] + (emit * mask).sum(1) + (trans * mask[:, 1:]).sum(1) + self.end[last])

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z: emissions (B, T, C), mask (B, T) → (B,), by the forward algorithm."""
        alpha = self.start + emissions[:, 0]  # (B, C): log-sum of all paths ending in each tag
        for t in range(1, emissions.shape[1]):
            # (B, C, 1) + (C, C) + (B, 1, C) → logsumexp over the previous tag → (B, C)
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t].unsqueeze(1).bool(), nxt, alpha)  # padding carries alpha over
        return torch.logsumexp(alpha + self.end, dim=1)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of `tags` over the batch."""
        emissions = emissions.float()
        return (self.log_partition(emissions, mask) - self.score(emissions, tags, mask)).mean()

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Viterbi: the highest-scoring tags (B, T); positions outside the mask hold 0."""
        emissions = emissions.float()
        B, T, C = emissions.shape
        best = self.start + emissions[:, 0]  # (B, C)
        back = []
        for t in range(1, T):
            cand = best.unsqueeze(2) + self.transitions  # (B, C_prev, C)
            score, arg = cand.max(dim=1)  # (B, C)
            on = mask[:, t].unsqueeze(1).bool()
            best = torch.where(on, score + emissions[:, t], best)
            # At padding, each tag points to itself, so following pointers walks through unchanged.
            back.append(torch.where(on, arg, torch.arange(C, device=arg.device).expand(B, C)))
        tag = (best + self.end).argmax(dim=1)  # (B,)
        path = [tag]
        for arg in reversed(back):
            tag = arg.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        return torch.stack(path[::-1], dim=1) * mask.long()
