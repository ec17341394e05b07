"""Learning-rate multipliers for `torch.optim.lr_scheduler.LambdaLR`, and discriminative learning rates.

Each function returns `f(t) -> float`, the multiplier of every param group's base lr for optimizer step t
(0-based), so discriminative per-group learning rates keep their ratios through the schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .config import TrainConfig


def linear(total: int, warmup: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    """Linear warmup to the peak over `warmup` steps, then linear decay to `min_ratio` at step `total`."""

    def f(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        p = min(1.0, (t - warmup) / max(1, total - warmup))
        return 1.0 - p * (1.0 - min_ratio)

    return f


def cosine(total: int, warmup: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    """Linear warmup, then half a cosine from the peak down to `min_ratio` at step `total`."""

    def f(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        p = min(1.0, (t - warmup) / max(1, total - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))

    return f


def constant(total: int, warmup: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    """Linear warmup, then the peak lr for the rest of the run."""
    return lambda t: (t + 1) / warmup if t < warmup else 1.0


def slanted_triangular(total: int, cut_frac: float = 0.1, ratio: float = 32.0, cut: int | None = None):
    """ULMFiT's slanted triangular lr (Howard & Ruder 2018, eq. 3): a short linear rise to the peak at step
    `cut` (default floor(total * cut_frac)), then a long linear fall; the lowest lr is peak / ratio."""
    cut = max(1, int(total * cut_frac) if cut is None else cut)

    def f(t: int) -> float:
        p = t / cut if t < cut else max(0.0, 1.0 - (t - cut) / max(1, total - cut))
        return (1.0 + p * (ratio - 1.0)) / ratio

    return f


def lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    """The multiplier function a TrainConfig asks for."""
    if config.schedule == "slanted_triangular":
        # The warmup fields, when set, choose the peak; otherwise ULMFiT's cut_frac = 0.1.
        return slanted_triangular(config.steps, cut=config.warmup or None)
    fn = {"linear": linear, "cosine": cosine, "constant": constant}[config.schedule]
    return fn(config.steps, config.warmup, config.min_lr_ratio)


def discriminative_param_groups(layers: Sequence[torch.nn.Module], lr: float, factor: float = 2.6) -> list[dict]:
    """Param groups for discriminative fine-tuning (ULMFiT): `layers` ordered bottom to top, the top one gets
    `lr`, each one below gets its upper neighbour's lr / `factor` (2.6 in the paper)."""
    n = len(layers)
    return [{"params": list(m.parameters()), "lr": lr / factor ** (n - 1 - i)} for i, m in enumerate(layers)]
