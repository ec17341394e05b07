"""Model selection on a dev set, as the Trainer's `eval_fn`: early stopping with patience, keeping the best
weights in memory (fine-tuning and the distillation methods of plmkit.compress both select this way)."""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch

log = logging.getLogger("plmkit")


class DevSelection:
    """Call it after each evaluation interval: it scores `model` with `score()` (a metrics dict), records the
    metrics in `curve`, keeps a copy of `model`'s weights when `metrics[metric]` is the best so far, and returns
    True (stop) after `patience` evaluations without a better score. `after` runs after each evaluation
    (ULMFiT's gradual unfreezing). `restore()` loads the best weights back."""

    def __init__(self, model: torch.nn.Module, score: Callable[[], dict], metric: str, patience: int,
                 steps_per_epoch: int, after: Callable[[], None] | None = None):
        self.model, self.score, self.metric, self.patience = model, score, metric, patience
        self.steps_per_epoch, self.after = steps_per_epoch, after
        self.curve: list[dict] = []
        self.best, self.best_step, self.best_state, self.bad = -math.inf, None, None, 0

    def __call__(self, step: int) -> bool:
        metrics = self.score()
        value = metrics[self.metric]
        self.curve.append({"step": step, "epoch": round(step / self.steps_per_epoch, 3), **metrics})
        log.info("step %d: dev %s %.4f", step, self.metric, value)
        if self.after is not None:
            self.after()
        if value > self.best:
            self.best, self.best_step, self.bad = value, step, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return False
        self.bad += 1
        return self.bad >= self.patience

    @property
    def best_metrics(self) -> dict:
        """The dev metrics of the kept model, measured when it was the best."""
        best = next(c for c in self.curve if c["step"] == self.best_step)
        return {k: v for k, v in best.items() if k not in ("step", "epoch")}

    def restore(self) -> None:
        self.model.load_state_dict(self.best_state)
