"""The objective interface shared by every pre-training objective."""

from __future__ import annotations

import torch

from ..data.pretrain import StepSampler


class Objective:
    name: str = ""
    special_tokens: tuple[str, ...] = ()  # tokens it needs in the vocabulary (T5's sentinels); pretrain adds them
    # Whether the tokenizer trained for it lowercases: None = the tokenizer kind's convention; False where the
    # objective reads case from the tokens (ERNIE 2.0's capitalization prediction).
    lowercase: bool | None = None

    def __init__(self, tokenizer, seq_len: int, seed: int = 0):
        self.tokenizer, self.seq_len, self.seed = tokenizer, seq_len, seed
        self.vocab_size = tokenizer.vocab_size

    def dataset(self, corpus):
        """Examples drawn from a `plmkit.data.TokenCorpus`."""
        raise NotImplementedError

    def sampler(self, n_examples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        """Which examples each step reads: shuffled epochs. A recurrent objective reads streams instead."""
        return StepSampler(n_examples, batch_size, seed, rank=rank, world_size=world_size)

    def collate(self, examples: list, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def step(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict:
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What the objective carries from one step to the next, saved with each checkpoint: nothing, unless
        it is recurrent (Transformer-XL's memory)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Take back what `state_dict` gave, on resume."""

    def _require(self, *roles: str) -> None:
        missing = [r for r in roles if getattr(self.tokenizer, f"{r}_id") is None]
        if missing:
            from ..errors import PlmkitError

            raise PlmkitError(f"the {self.name} objective needs a tokenizer with {', '.join(missing)} token(s)")
