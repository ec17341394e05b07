"""Model selection on a dev set, as the Trainer's `eval_fn`: early stopping with patience, keeping the best
weights in memory (fine-tuning and the distillation methods of plmkit.compress both select this way). It is
also Trainer `state`: saved in every checkpoint, so a resumed run selects the same model."""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch

log = logging.getLogger("plmkit")


class DevSelection:
    """Call it after each evaluation interval: it scores `model` with `score()` (a metrics dict), records the
    metrics in `curve`, keeps a copy of `model`'s weights when `metrics[metric]` is the best so far, and returns
    True (stop) after `patience` evaluations without a better score. `unfreezing` (ULMFiT's gradual unfreezing:
    `next()`, `frozen`, `set_frozen`) advances after each evaluation. `restore()` loads the best weights back."""

    def __init__(self, model: torch.nn.Module, score: Callable[[], dict], metric: str, patience: int,
                 steps_per_epoch: int, unfreezing=None):
        self.model, self.score, self.metric, self.patience = model, score, metric, patience
        self.steps_per_epoch, self.unfreezing = steps_per_epoch, unfreezing
        self.curve: list[dict] = []
        self.best, self.best_step, self.bad = -math.inf, None, 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def __call__(self, step: int) -> bool:
        metrics = self.score()
        value = metrics[self.metric]
        self.curve.append({"step": step, "epoch": round(step / self.steps_per_epoch, 3), **metrics})
        log.info("step %d: dev %s %.4f", step, self.metric, value)
        if self.unfreezing is not None:
            self.unfreezing.next()
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

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        meta = {"best": None if self.best_step is None else self.best, "best_step": self.best_step, "bad": self.bad,
                "curve": self.curve, "frozen": None if self.unfreezing is None else self.unfreezing.frozen}
        return {f"best.{k}": v for k, v in (self.best_state or {}).items()}, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.best_step, self.bad, self.curve = meta["best_step"], meta["bad"], meta["curve"]
        self.best = -math.inf if meta["best"] is None else meta["best"]
        self.best_state = {k[len("best."):]: v for k, v in tensors.items()} if self.best_step is not None else None
        if self.unfreezing is not None:
            self.unfreezing.set_frozen(meta["frozen"])
