"""TrainConfig: every knob of the training loop, validated and JSON-serialisable."""

from __future__ import annotations

import dataclasses

from ..config import Config
from ..errors import PlmkitError

SCHEDULES = ("linear", "cosine", "constant", "slanted_triangular")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    steps: int = 1000  # optimizer steps in the whole run
    batch_size: int = 32  # examples per rank per micro-step
    grad_accum: int = 1  # micro-steps per optimizer step (effective batch = batch_size * grad_accum * world)
    lr: float = 1e-3  # peak learning rate; suits tiny models, BERT-base wants ~1e-4
    weight_decay: float = 0.01  # AdamW decoupled decay, on weights with dim >= 2 only
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW momentum coefficients
    eps: float = 1e-6  # AdamW epsilon, as in BERT
    warmup_steps: int = 0  # linear warmup steps; 0 falls back to warmup_ratio
    warmup_ratio: float = 0.0  # warmup as a fraction of steps when warmup_steps == 0
    schedule: str = "linear"  # linear | cosine | constant | slanted_triangular (ULMFiT)
    min_lr_ratio: float = 0.0  # floor of the decay, as a fraction of the peak lr
    clip_norm: float = 1.0  # max global gradient norm; 0 disables clipping
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (CUDA only, with GradScaler)
    log_every: int = 10  # optimizer steps per train_log.jsonl entry
    save_every: int = 0  # optimizer steps per checkpoint; 0 = only at the end
    keep_checkpoints: int = 2  # newest checkpoints kept on disk; 0 keeps all
    seed: int = 0  # seeds dropout RNGs and every batch's collate generator
    device: str = "auto"  # auto (cuda if available, else cpu) | cpu | cuda | cuda:N | ...

    def __post_init__(self) -> None:
        # JSON and TOML give lists; keep the tuple so configs compare equal after a round trip.
        if isinstance(self.betas, list):
            object.__setattr__(self, "betas", tuple(self.betas))
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        for name in ("steps", "batch_size", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise PlmkitError(f"train config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "save_every", "keep_checkpoints", "weight_decay", "clip_norm", "seed"):
            if getattr(self, name) < 0:
                raise PlmkitError(f"train config: {name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0 or self.eps <= 0:
            raise PlmkitError(f"train config: lr and eps must be > 0, got lr={self.lr} eps={self.eps}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise PlmkitError(f"train config: betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 <= self.warmup_ratio < 1:
            raise PlmkitError(f"train config: warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise PlmkitError(f"train config: min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.schedule not in SCHEDULES:
            raise PlmkitError(f"train config: schedule {self.schedule!r} not one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise PlmkitError(f"train config: precision {self.precision!r} not one of {', '.join(PRECISIONS)}")

    @property
    def warmup(self) -> int:
        """Warmup length in optimizer steps (warmup_steps, else warmup_ratio * steps)."""
        return self.warmup_steps or int(self.warmup_ratio * self.steps)
