"""Objectives over contiguous streams with the model's memory carried from step to step (Transformer-XL,
Dai et al. 2019, arXiv:1901.02860, §3.2), and the causal LM on them (`recurrent-clm`).

Each batch row reads one stream, segment after segment (plmkit.data.StreamSampler), so the memory the
model returned for a row's last segment is the text just before its next one. The memory is used only
when every row's segment is the successor of the one it came from (at the start of each pass over the
streams it is not, and the memory starts empty), and it is part of the checkpoint (`state_dict`), so a
resumed run continues with the memory an uninterrupted one would have had.

Shape legend: B = batch, T = segment length, M = memory, H = hidden size, L = layers.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.pretrain import Segments, StreamSampler
from .base import Objective
from .clm import CausalLM


class Recurrent(Objective):
    """Streams of consecutive segments and the memory between steps; subclasses make the batch and the loss.
    Their collate adds `segments`, (B,) long, each row's segment index."""

    def __init__(self, tokenizer, seq_len: int, seed: int = 0):
        super().__init__(tokenizer, seq_len, seed)
        self.mems: tuple[torch.Tensor, ...] | None = None  # L × (B, M, H), from the last step
        self.segments: torch.Tensor | None = None  # (B,): the segments that memory follows

    def sampler(self, n_examples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        return StreamSampler(n_examples, batch_size, rank=rank, world_size=world_size)

    def with_index(self, examples: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, torch.Tensor]:
        """Segments' (index, tokens) pairs → (B, length) tokens and the (B,) indices."""
        return np.stack([w for _, w in examples]), torch.tensor([i for i, _ in examples])

    def run(self, model, batch: dict[str, torch.Tensor], **inputs):
        """model(input_ids, mems=…, **inputs), keeping the memory it returns for the next step."""
        follows = self.mems is not None and torch.equal(batch["segments"], self.segments + 1)
        out = model(batch["input_ids"], mems=self.mems if follows else None, **inputs)
        self.mems, self.segments = out.mems, batch["segments"]
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.mems is None:
            return {}
        return {"segments": self.segments, **{f"mems.{i}": m for i, m in enumerate(self.mems)}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        layers = sum(k.startswith("mems.") for k in state)
        self.segments = state.get("segments")
        self.mems = tuple(state[f"mems.{i}"] for i in range(layers)) if layers else None


class RecurrentCausalLM(Recurrent, CausalLM):
    """Causal LM over streams: segment i predicts tokens [iT + 1, (i + 1)T] from [iT, (i + 1)T) and the memory."""

    name = "recurrent-clm"

    def dataset(self, corpus):
        return Segments(corpus, self.seq_len + 1, self.seq_len)  # the inputs of consecutive segments meet

    def collate(self, examples: list[tuple[int, np.ndarray]], generator: torch.Generator) -> dict[str, torch.Tensor]:
        windows, segments = self.with_index(examples)
        return {**super().collate(list(windows), generator), "segments": segments}

    def step(self, model, batch):
        out = self.run(model, batch, labels=batch["labels"])
        return {"loss": out.loss, "tokens": batch["input_ids"].numel()}
