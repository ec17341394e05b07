"""The one training loop every family member uses (DESIGN.md, "Training engine").

Run directory (`out_dir`), all written by rank 0:
    train_config.json        TrainConfig + run_info + world_size, written at start
    train_log.jsonl          one JSON object per logged step: step (optimizer steps done), loss and grad_norm
                             (means over the interval and ranks), lr (largest group's, last step), tokens
                             (cumulative, all ranks), tokens_per_s, epoch, elapsed_s, step_fn's extra metrics
    tb/                      TensorBoard events
    checkpoints/step-N/      see checkpoint.py
    loss.png, the final model (save_fn(model, out_dir)) and, last, train_summary.json at the end.

Nothing is lost to a kill at any moment (tests/test_robust.py kills runs at every named point of
plmkit.durable): checkpoints and every file a run reads back are written to a temporary name and renamed;
a resume drops the log lines past its checkpoint (a half-written last line included) and purges the
TensorBoard events past it; a run killed after its last checkpoint resumes into the final save. Ctrl-C
stops at the next step boundary with a checkpoint there (`plmkit.errors.Interrupted`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..durable import atomic_file, atomic_write, fault, remove_stale
from ..errors import Interrupted, PlmkitError
from . import checkpoint as ckpt
from .config import TrainConfig
from .distributed import all_gather_object, all_reduce_sum, barrier, rank_and_world, resolve_device
from .schedules import lr_lambda

log = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "train_summary.json"


def batch_seed(seed: int, step: int, rank: int, micro: int) -> int:
    """Seed of one micro-batch's collate generator: a pure function of its position, so a resumed run
    masks identically without saving generator state."""
    return int(np.random.SeedSequence([seed, step, rank, micro]).generate_state(1, np.uint64)[0])


def default_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings only: biases and LayerNorm gains are not weights to shrink."""
    params = [p for p in model.parameters()]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


class Trainer:
    """Trains `model` for `config.steps` optimizer steps, logging, checkpointing and resuming exactly.

    Rank and world size come from the process group (see `init_distributed`) and are exposed as
    `.rank` / `.world_size`; build `sampler` with the same values. `step_fn` must run the model by calling
    it (`model(...)`), since under DDP it receives the DistributedDataParallel wrapper.
    `param_groups` (e.g. discriminative_param_groups) replace the default decay / no-decay split; groups
    without their own "lr" or "weight_decay" take the config's.
    `eval_fn(model, step)`, when given, runs every `eval_every` optimizer steps and after the last one, with
    the unwrapped model in eval mode and no gradients (e.g. dev-set evaluation, early stopping, gradual
    unfreezing); it runs on every rank, and returning True on all of them ends training after that step.
    `state`, when given, is what eval_fn keeps between evaluations (best score, best weights, …): an object
    with `state_dict() -> (tensors, json_dict)` and `load_state_dict(tensors, json_dict)`, saved in every
    checkpoint so that a resumed run evaluates and stops exactly as an uninterrupted one.
    `carry`, when given, holds state the step function carries from one step to the next (Transformer-XL's
    memory): its `state_dict()` ({name: tensor}) is saved per rank with each checkpoint and handed back to
    its `load_state_dict(state)` on resume, so the resumed run continues with the same state.
    `checkpoints=False` writes none, not even the last one: for runs that are never resumed (compression),
    which keep their own copy of the weights they want; Ctrl-C then stops them as any KeyboardInterrupt.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        dataset,
        sampler,
        collate: Callable[[list, torch.Generator], dict[str, torch.Tensor]],
        step_fn: Callable[[torch.nn.Module, dict], dict],
        config: TrainConfig,
        out_dir: str | os.PathLike,
        save_fn: Callable[[torch.nn.Module, Path], None] | None = None,
        param_groups: list[dict] | None = None,
        run_info: dict | None = None,
        eval_fn: Callable[[torch.nn.Module, int], bool | None] | None = None,
        eval_every: int = 0,
        state=None,
        carry=None,
        checkpoints: bool = True,
    ):
        self.config = config
        self.dataset, self.sampler, self.collate, self.step_fn = dataset, sampler, collate, step_fn
        self.out_dir = Path(out_dir)
        self.save_fn = save_fn or ckpt.save_state_dict
        self.run_info = run_info or {}
        self.eval_fn, self.eval_every, self.state, self.carry = eval_fn, eval_every, state, carry
        self.checkpoints = checkpoints
        self.rank, self.world_size = rank_and_world()
        self.device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", 0)))
        if config.precision == "fp16" and self.device.type != "cuda":
            raise PlmkitError(f"precision fp16 needs a CUDA device, got {self.device}; use bf16 or fp32")

        self.module = model.to(self.device)
        self.model = model
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # A model whose steps each train only part of it (one task's head of a multi-task model: GenSen,
            # USE, ERNIE 2.0) has DDP look for the parameters a step left unused, rather than wait for them.
            self.model = DistributedDataParallel(model, device_ids=ids,
                                                 find_unused_parameters=getattr(model, "partial_steps", False))
        groups = param_groups if param_groups is not None else default_param_groups(model, config.weight_decay)
        # The fused kernel updates each tensor in one pass (CPU and CUDA): the same AdamW, less memory traffic.
        self.optimizer = torch.optim.AdamW(
            groups, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(config))
        self.scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
        self._params = [p for g in self.optimizer.param_groups for p in g["params"]]

    # --- public ----------------------------------------------------------------------------------------

    def train(self, resume: bool = False) -> dict[str, Any]:
        """Run to `config.steps` (from the newest complete checkpoint when `resume`); returns the summary."""
        cfg = self.config
        start = self._start(resume)
        self._pending: list[dict] = self._restored_pending or []  # per-step metrics since the last log line
        self._t_begin = self._t_last = time.perf_counter()
        is_main = self.rank == 0
        writer = logf = None
        if is_main:
            from torch.utils.tensorboard import SummaryWriter  # slow import, only where used

            writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=start + 1)
            logf = open(self.out_dir / LOG_FILE, "a")
        bar = tqdm(total=cfg.steps, initial=start, desc="train", unit="step", disable=None if is_main else True)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self._sigint = 0
        previous_handler = None
        if self.checkpoints and threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            # A run whose eval_fn stopped it at its checkpoint has no steps left: straight to the final save.
            for step in range(start, start if self._stopped else cfg.steps):
                self._step(step)
                done = step + 1
                fault("step", done)
                bar.update(1)
                if done % cfg.log_every == 0 or done == cfg.steps:
                    record = self._log(done)
                    if is_main:
                        logf.write(json.dumps(record) + "\n")
                        logf.flush()
                        for k, v in record.items():
                            if k != "step":
                                writer.add_scalar(f"train/{k}", v, done)
                        bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
                    fault("log", done)
                stop = self.eval_fn is not None and ((self.eval_every and done % self.eval_every == 0)
                                                     or done == cfg.steps) and self._evaluate(done)
                fault("eval", done)
                interrupted = self._interrupt_requested()
                if self.checkpoints and ((cfg.save_every and done % cfg.save_every == 0) or done == cfg.steps
                                         or stop or interrupted):
                    self._checkpoint(done, stopped=stop)
                    fault("checkpoint", done)
                if interrupted:
                    raise Interrupted(done, self.out_dir / "checkpoints" / f"step-{done}")
                if stop:
                    break
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            bar.close()
            if is_main:
                writer.close()
                logf.close()
        summary = self._finish(start)
        barrier()
        return summary

    def _on_sigint(self, signum, frame) -> None:
        """First Ctrl-C: finish the step, checkpoint, stop. A second one stops at once."""
        self._sigint += 1
        if self._sigint > 1:
            raise KeyboardInterrupt
        print("\nplmkit: stopping after this step with a checkpoint (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    def _interrupt_requested(self) -> bool:
        """Whether any rank got Ctrl-C; all ranks agree, so they stop at the same step."""
        if self.world_size == 1:
            return self._sigint > 0
        return all_reduce_sum([float(self._sigint > 0)], self.device)[0] > 0

    # --- the loop --------------------------------------------------------------------------------------

    def _step(self, step: int) -> None:
        cfg, ga = self.config, self.config.grad_accum
        lr = max(g["lr"] for g in self.optimizer.param_groups)
        loss_sum, tokens, extras = 0.0, 0, {}
        for micro in range(ga):
            examples = [self.dataset[i] for i in self.sampler.indices(step * ga + micro)]
            gen = torch.Generator().manual_seed(batch_seed(cfg.seed, step, self.rank, micro))
            batch = {
                k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in self.collate(examples, gen).items()
            }
            # Gradients are all-reduced only on the last micro-step.
            sync = self.world_size == 1 or micro == ga - 1
            with contextlib.nullcontext() if sync else self.model.no_sync():
                with self._autocast():
                    out = self.step_fn(self.model, batch)
                loss = out["loss"] / ga
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            loss_sum = loss_sum + loss.detach()
            tokens = tokens + out["tokens"]
            for k, v in out.items():
                if k not in ("loss", "tokens"):
                    extras[k] = extras.get(k, 0.0) + (v.detach() if isinstance(v, torch.Tensor) else v) / ga
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        # max_norm=inf still returns the norm (for the log) and scales by exactly 1.
        norm = torch.nn.utils.clip_grad_norm_(self._params, cfg.clip_norm or math.inf)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        # Kept as tensors until the log line, so the loop never waits on the device.
        self._pending.append({"loss": loss_sum, "grad_norm": norm, "tokens": tokens, "lr": lr, **extras})

    def _evaluate(self, done: int) -> bool:
        """Run eval_fn; True when it asks to stop."""
        self.model.eval()
        with torch.no_grad(), self._autocast():
            stop = bool(self.eval_fn(self.module, done))
        self.model.train()
        return stop

    def _autocast(self):
        if self.config.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _pending_floats(self) -> list[dict]:
        self._pending = [{k: float(v) for k, v in p.items()} for p in self._pending]
        return self._pending

    def _log(self, done: int) -> dict[str, Any]:
        """Reduce the interval's metrics over steps and ranks into one log record."""
        pending = self._pending_floats()
        # A metric is the mean over the steps that report it: a multi-task run (GenSen, USE, ERNIE 2.0)
        # reports each task's loss on its own steps. Every rank runs the same task at a step: the keys agree.
        keys = sorted({k for p in pending for k in p} - {"tokens", "lr"})
        local = ([len(pending), sum(p["tokens"] for p in pending)] + [sum(p.get(k, 0.0) for p in pending) for k in keys]
                 + [sum(k in p for p in pending) for k in keys])
        n, tokens, *reduced = all_reduce_sum(local, self.device)
        sums, counts = reduced[:len(keys)], reduced[len(keys):]
        now = time.perf_counter()
        self._tokens += int(tokens)
        record = {
            "step": done,
            "loss": sums[keys.index("loss")] / n,
            "lr": pending[-1]["lr"],
            "tokens": self._tokens,
            "tokens_per_s": tokens / max(now - self._t_last, 1e-9),
            "epoch": float(self.sampler.epoch(done * self.config.grad_accum)),
            "elapsed_s": self._elapsed_before + now - self._t_begin,
            **{k: s / c for k, s, c in zip(keys, sums, counts) if k != "loss"},
        }
        self._t_last = now
        self._pending = []
        return record

    # --- start, checkpoints, end -----------------------------------------------------------------------

    def _start(self, resume: bool) -> int:
        """Check the run dir, restore the newest checkpoint when resuming; returns the first step to run."""
        root = self.out_dir / "checkpoints"
        log_path = self.out_dir / LOG_FILE
        self._tokens, self._elapsed_before, self._restored_pending, self._stopped = 0, 0.0, None, False
        if not resume and (log_path.exists() or ckpt.complete_checkpoints(root)):
            raise PlmkitError(
                "already holds a training run; resume it (resume=True, --resume) or choose another output dir",
                path=self.out_dir,
            )
        barrier()  # every rank has looked before rank 0 changes anything
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale(root)
            remove_stale(self.out_dir)
            meta = {"config": self.config.to_dict(), "run_info": self.run_info, "world_size": self.world_size}
            atomic_write(self.out_dir / "train_config.json", json.dumps(meta, indent=2))
        barrier()
        found = ckpt.complete_checkpoints(root) if resume else []
        if resume and not found:
            log.warning("no complete checkpoint in %s; starting from scratch", root)
        start = found[-1][0] if found else 0
        if found:
            self._restore(found[-1][1])
            log.warning("resumed from %s (step %d)", found[-1][1], start)
        else:
            # Different dropout masks per rank; model init is the caller's and DDP syncs it.
            torch.manual_seed(self.config.seed + self.rank)
            np.random.seed(self.config.seed + self.rank)
            random.seed(self.config.seed + self.rank)
        if self.rank == 0 and resume:
            _truncate_log(log_path, start)
        barrier()
        return start

    def _checkpoint(self, done: int, stopped: bool = False) -> None:
        rank_state = {"rng": ckpt.capture_rng(), "pending": self._pending_floats(),
                      "carry": {k: v.detach().cpu() for k, v in self.carry.state_dict().items()}
                      if self.carry is not None else {}}
        ranks = all_gather_object(rank_state)
        if self.rank == 0:
            opt_tensors, opt_meta = ckpt.optimizer_state(self.optimizer)
            rng_tensors, rank_meta = ckpt.split_rank_states(ranks)
            model_tensors = {f"model.{k}": v for k, v in self.module.state_dict().items()}
            extra_tensors, extra_meta = self.state.state_dict() if self.state is not None else ({}, None)
            extra_tensors = {f"extra.{k}": v for k, v in extra_tensors.items()}
            tensors = ckpt.plain_state_dict({**model_tensors, **opt_tensors, **rng_tensors, **extra_tensors})
            meta = {
                "step": done,
                "tokens": self._tokens,
                "elapsed_s": self._elapsed_before + time.perf_counter() - self._t_begin,
                "world_size": self.world_size,
                "config": self.config.to_dict(),
                "run_info": self.run_info,
                "optimizer": opt_meta,
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "ranks": rank_meta,
                "extra": extra_meta,
                "stopped": stopped,  # eval_fn ended the run here: a resume goes straight to the final save
            }
            ckpt.write_checkpoint(self.out_dir / "checkpoints", done, self.module, self.save_fn, tensors, meta)
            ckpt.prune(self.out_dir / "checkpoints", self.config.keep_checkpoints)
        barrier()

    def _restore(self, path: Path) -> None:
        tensors, meta = ckpt.read_checkpoint(path)
        now = json.loads(json.dumps(self.config.to_dict()))  # as read back from JSON: tuples are lists
        changed = {k for k, v in now.items() if meta["config"].get(k) != v} - {"steps"}
        if changed or meta["world_size"] != self.world_size:
            log.warning("resuming %s with changed %s; the run will not match an uninterrupted one",
                        path, sorted(changed) or "world size")
        self.module.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        ckpt.load_optimizer_state(self.optimizer, tensors, meta["optimizer"])
        self.scheduler.load_state_dict(meta["scheduler"])
        if self.scaler and meta["scaler"]:
            self.scaler.load_state_dict(meta["scaler"])
        self._tokens, self._elapsed_before = meta["tokens"], meta["elapsed_s"]
        self._stopped = meta.get("stopped", False)
        if self.state is not None:
            self.state.load_state_dict({k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")},
                                       meta.get("extra"))
        if meta["world_size"] == self.world_size:
            state = ckpt.join_rank_state(tensors, meta["ranks"], self.rank)
            ckpt.restore_rng(state["rng"])
            self._restored_pending = state["pending"]
            if self.carry is not None:
                self.carry.load_state_dict({k: v.to(self.device) for k, v in state["carry"].items()})
        else:
            seed = self.config.seed + self.rank + meta["step"]
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)

    def _finish(self, start: int) -> dict[str, Any]:
        records = _read_log(self.out_dir / LOG_FILE)
        losses = [r["loss"] for r in records]
        seconds = records[-1]["elapsed_s"] if records else 0.0
        summary = {
            "steps": self.config.steps,
            "final_loss": losses[-1] if losses else None,
            # Means over the first / last 20 log records (log_every steps each).
            "first20_loss": sum(losses[:20]) / len(losses[:20]) if losses else None,
            "last20_loss": sum(losses[-20:]) / len(losses[-20:]) if losses else None,
            "tokens": self._tokens,
            "seconds": seconds,
            "tokens_per_s": self._tokens / seconds if seconds else None,
            "world_size": self.world_size,
            "resumed_from": start or None,
            "run_info": self.run_info,
        }
        if self.rank == 0:
            self.save_fn(self.module, self.out_dir)
            _plot_loss(records, self.out_dir / "loss.png")
            fault("final")
            atomic_write(self.out_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
        return summary


def _read_log(path: Path) -> list[dict]:
    """Records of train_log.jsonl; a last line cut short by a kill is dropped."""
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _truncate_log(path: Path, step: int) -> None:
    """Drop records past the checkpoint being resumed, so no step is logged twice."""
    keep = [r for r in _read_log(path) if r["step"] <= step]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in keep))


def _plot_loss(records: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend, no display needed

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot([r["step"] for r in records], [r["loss"] for r in records])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100)
