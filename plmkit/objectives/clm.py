"""Causal (left-to-right) language modelling: predict token t+1 from tokens ≤ t over packed windows.
Radford et al. 2018 (GPT), §3.1. Documents are packed back to back with a separator token between
them, so no position is padding."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.pretrain import Windows
from .base import Objective


class CausalLM(Objective):
    name = "clm"

    def dataset(self, corpus):
        return Windows(corpus, self.seq_len + 1)  # one extra token: the last target

    def collate(self, examples: list[np.ndarray], generator: torch.Generator) -> dict[str, torch.Tensor]:
        w = torch.from_numpy(np.stack(examples))  # (B, T + 1)
        return {"input_ids": w[:, :-1], "labels": w[:, 1:]}

    def step(self, model, batch):
        # A member whose forward takes labels computes the loss itself, without the (B, T, V) logits.
        out = model(batch["input_ids"], labels=batch["labels"])
        loss = out.loss
        if loss is None:
            logits = out.logits  # (B, T, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch["labels"].reshape(-1))
        return {"loss": loss, "tokens": batch["input_ids"].numel()}
