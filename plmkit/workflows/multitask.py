"""`plmkit finetune --multitask F.toml`: multi-task fine-tuning, MT-DNN (Liu, He, Chen & Gao 2019, ACL,
"Multi-Task Deep Neural Networks for Natural Language Understanding", arXiv:1901.11504, §3–4): one shared
body, a head per task; each step trains one task's batch, the task drawn in proportion to its size
(Algorithm 1 visits every task's batches once per epoch in random order, which is that proportion), or
∝ size^(1/T) with temperature sampling (T = 1: proportional; large T: uniform — gives small tasks more
steps, as later multi-task work does); then, optionally, each task fine-tuned on its own from the
multi-task model (§4.3). Every stage runs through the one Trainer and the heads of `plmkit finetune`.

    model = "runs/bert"           # the pre-trained body (or --model)
    steps = 1000                  # multi-task steps
    batch_size = 16
    lr = 5e-5
    max_length = 128
    sampling = "proportional"     # or "temperature", with temperature = T
    eval_every = 200              # dev evaluation; the multi-task model kept is the best mean dev score
    finetune_steps = 0            # then per-task fine-tuning, this many steps per task
    compare = false               # also single-task fine-tuning, at the same total steps (the table)

    [tasks.spam]                  # one table per task: task classify | pair | regress | tag
    task = "classify"
    train = "spam/train.jsonl"
    dev = "spam/dev.jsonl"
    test = "spam/test.jsonl"      # labels = [...] and crf = true as in `plmkit finetune`

With `compare`, every row spends `steps` optimizer steps in all: single-task runs task t for steps · p_t
(p_t its sampling probability, so each task gets the steps it gets in the multi-task run); multi-task
runs `steps`; multi-task + per-task runs steps − (number of tasks) · finetune_steps multi-task steps, then
finetune_steps per task. Every run keeps its best dev checkpoint; none stops early, so the budgets hold.
Relative paths are read from the file's directory. One process only: under DDP the heads a step does not
use would leave gradients the all-reduce waits for.

Run directory: multitask.json (settings, sampling probabilities, each row's dev and test metrics),
multi-task/ (the Trainer's log and loss.png, and a fine-tuned directory per task, `plmkit evaluate` and
`predict` read it), multi-task+per-task/TASK/ (and its own multi-task stage multi-task+per-task/multi-task/
under `compare`), single-task/TASK/.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from ..config import Config, beside, read_toml_file
from ..errors import PlmkitError
from ..evaluation.metrics import MAIN

log = logging.getLogger("plmkit")

MULTITASK_TASKS = ("classify", "pair", "regress", "tag")  # the tasks MT-DNN trains together
NO_EARLY_STOP = 1 << 30  # patience for runs that must spend their whole budget


@dataclasses.dataclass(frozen=True)
class TaskSpec(Config):
    task: str = ""
    train: str = ""
    dev: str = ""
    test: str | None = None
    labels: tuple[str, ...] = ()  # declared label set (classify, pair, tag), as --labels
    crf: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.labels, list):
            object.__setattr__(self, "labels", tuple(self.labels))
        super().__post_init__()

    def validate(self) -> None:
        if self.task not in MULTITASK_TASKS:
            raise PlmkitError(f"task must be one of {', '.join(MULTITASK_TASKS)}, got {self.task!r}")
        if not self.train or not self.dev:
            raise PlmkitError("each task needs train and dev files")


@dataclasses.dataclass(frozen=True)
class MultitaskSpec(Config):
    model: str | None = None
    steps: int = 1000
    batch_size: int = 16
    lr: float = 5e-5
    max_length: int = 128
    dropout: float = 0.1
    sampling: str = "proportional"  # proportional | temperature
    temperature: float = 1.0  # T of p_t ∝ n_t^(1/T), with sampling = "temperature"
    eval_every: int | None = None  # default: 5 evaluations per run
    finetune_steps: int = 0
    compare: bool = False
    seed: int = 0

    def validate(self) -> None:
        for name in ("steps", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise PlmkitError(f"{name} must be at least 1")
        if self.sampling not in ("proportional", "temperature"):
            raise PlmkitError(f"sampling must be proportional or temperature, got {self.sampling!r}")
        if self.temperature <= 0:
            raise PlmkitError(f"temperature must be positive, got {self.temperature}")
        if self.finetune_steps < 0 or (self.eval_every is not None and self.eval_every < 1):
            raise PlmkitError("finetune_steps must be ≥ 0 and eval_every ≥ 1")


def read_spec(path: str | os.PathLike) -> tuple[MultitaskSpec, dict[str, TaskSpec]]:
    """The multi-task file, checked: known keys (the line of an unknown one named), paths from its directory."""
    p = Path(path)
    d = read_toml_file(p, "multi-task file")
    tables = d.pop("tasks", None)
    if not isinstance(tables, dict) or len(tables) < 2:
        raise PlmkitError("a multi-task file names at least two tasks, one [tasks.NAME] table each", path=p)
    spec = MultitaskSpec.from_dict(d, source=p)
    tasks = {}
    for name, table in tables.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise PlmkitError(f"task name {name!r}: letters, digits, '_', '-' and '.' only (it names a folder)",
                              path=p)
        if not isinstance(table, dict):
            raise PlmkitError(f"tasks.{name} must be a table", path=p)
        try:
            t = TaskSpec.from_dict(table, source=p)
        except PlmkitError as e:
            raise PlmkitError(f"[tasks.{name}]: {e.message}", path=p, line=e.line) from None
        tasks[name] = t.replace(**{k: beside(p, getattr(t, k)) for k in ("train", "dev", "test")})
    if spec.model:
        spec = spec.replace(model=beside(p, spec.model))
    budget = spec.steps - len(tasks) * spec.finetune_steps
    if spec.compare and spec.finetune_steps and budget < 1:
        raise PlmkitError(f"compare keeps every row at {spec.steps} steps: {len(tasks)} tasks × finetune_steps "
                          f"{spec.finetune_steps} leave no multi-task steps", path=p)
    return spec, tasks


class MultiTaskModel(nn.Module):
    """A TaskModel per task, all holding the same body object; `forward(batch)` runs batch["task"]'s."""

    def __init__(self, nets: dict[str, nn.Module]):
        super().__init__()
        self.tasks = nn.ModuleDict(nets)

    def forward(self, batch: dict) -> dict:
        return self.tasks[batch["task"]](batch)


def probabilities(sizes: list[int], sampling: str, temperature: float) -> list[float]:
    """p_t ∝ n_t (proportional), or ∝ n_t^(1/T) (temperature)."""
    w = [n ** (1 / temperature if sampling == "temperature" else 1.0) for n in sizes]
    return [x / sum(w) for x in w]


def run_multitask(path: str | os.PathLike, out: str | os.PathLike, model: str | None = None,
                  progress: bool = True) -> dict:
    """Run the multi-task file at `path` into `out`; returns (and writes) multitask.json's content."""
    from ..data.tasks import read_task

    spec, tasks = read_spec(path)
    model = model or spec.model
    if not model:
        raise PlmkitError("no model: give --model DIR or model = \"DIR\" in the file", path=path)
    out = Path(out)
    if (out / "multitask.json").exists():
        raise PlmkitError("already holds a multi-task run; choose another --out", path=out)
    t0 = time.perf_counter()
    examples = {name: {s: read_task(getattr(t, s), t.task) for s in ("train", "dev", "test") if getattr(t, s)}
                for name, t in tasks.items()}
    sizes = {name: len(ex["train"]) for name, ex in examples.items()}
    p = dict(zip(tasks, probabilities(list(sizes.values()), spec.sampling, spec.temperature)))
    summary: dict = {"file": str(Path(path).resolve()), "model": str(model), "settings": spec.to_dict(),
                     "tasks": {n: {"task": t.task, "train_examples": sizes[n], "probability": p[n]}
                               for n, t in tasks.items()}, "rows": {}}
    out.mkdir(parents=True, exist_ok=True)
    if spec.compare:
        summary["rows"]["single-task"] = {
            n: _finetune(model, t, spec, out / "single-task" / n, max(1, round(spec.steps * p[n])), progress)
            for n, t in tasks.items()}
    summary["rows"]["multi-task"] = _train_multitask(model, tasks, examples, spec, spec.steps, p,
                                                     out / "multi-task", progress)
    if spec.finetune_steps:
        start = out / "multi-task"
        if spec.compare:  # the multi-task stage gives up the steps the per-task runs spend
            start = out / "multi-task+per-task" / "multi-task"
            _train_multitask(model, tasks, examples, spec, spec.steps - len(tasks) * spec.finetune_steps, p, start,
                             progress)
        summary["rows"]["multi-task+per-task"] = {
            n: _finetune(start / n, t, spec, out / "multi-task+per-task" / n, spec.finetune_steps, progress)
            for n, t in tasks.items()}
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "multitask.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _finetune(model, t: TaskSpec, spec: MultitaskSpec, out: Path, steps: int, progress: bool) -> dict:
    """One task alone through `plmkit finetune`, for exactly `steps` steps; its dev and test metrics."""
    from ..heads import HEAD_CONFIG
    from .finetune import finetune

    fresh = not (Path(model) / HEAD_CONFIG).is_file()  # else a multi-task model's task: its head and labels go on
    r = finetune(model, t.task, t.train, t.dev, out, test=t.test, lr=spec.lr, batch_size=spec.batch_size,
                 max_length=spec.max_length, seed=spec.seed, crf=t.crf and fresh, patience=NO_EARLY_STOP,
                 eval_every=spec.eval_every or max(1, steps // 5), dropout=spec.dropout, progress=progress,
                 labels=(list(t.labels) or None) if fresh else None, steps=steps)
    return {"steps": steps, "dev": r["dev"], **({"test": r["test"]} if "test" in r else {})}


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the state dict with each shared tensor (the body, under every task) copied once."""
    copies: dict[int, torch.Tensor] = {}
    state = {}
    for k, v in module.state_dict().items():
        if v.data_ptr() not in copies:
            copies[v.data_ptr()] = v.detach().clone()
        state[k] = copies[v.data_ptr()]
    return state


def _train_multitask(model_dir, tasks: dict[str, TaskSpec], examples: dict, spec: MultitaskSpec, steps: int,
                     p: dict[str, float], out: Path, progress: bool) -> dict:
    """The multi-task stage: train `steps` steps, keep the best mean dev score, save a directory per task."""
    from .. import load, load_tokenizer
    from ..data.pretrain import TaskMixSampler
    from ..data.tasks import LabelSet
    from ..heads import HeadConfig, build, collate, encode, evaluate, save_finetuned
    from ..train import TrainConfig, Trainer
    from ..train.distributed import rank_and_world

    if rank_and_world()[1] > 1:  # DDP all-reduces every parameter, but a step leaves all heads but one unused
        raise PlmkitError("multi-task fine-tuning runs in one process, not under torchrun")
    body, tokenizer = load(model_dir), load_tokenizer(model_dir)
    torch.manual_seed(spec.seed)  # the heads' initial weights
    nets, features = {}, {}
    for name, t in tasks.items():
        labels = LabelSet.discover(examples[name]["train"], t.task, declared=list(t.labels) or None,
                                   path=t.train).labels
        nets[name] = build(body, tokenizer, HeadConfig(task=t.task, labels=tuple(labels), crf=t.crf,
                                                       max_length=spec.max_length, dropout=spec.dropout))
        features[name] = {s: encode(ex, nets[name], tokenizer, path=getattr(t, s))
                          for s, ex in examples[name].items()}
    net = MultiTaskModel(nets)
    names = list(tasks)
    dataset = [(n, f) for n in names for f in features[n]["train"]]
    sampler = TaskMixSampler([len(features[n]["train"]) for n in names], spec.batch_size, steps, [p[n] for n in names],
                             spec.seed)
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0

    def batch_of(items: list, generator) -> dict:
        return {**collate([f for _, f in items], pad), "task": items[0][0]}

    state: dict = {"best": -math.inf, "curve": []}

    def eval_fn(m, step: int) -> bool:
        dev = {n: evaluate(m.tasks[n], tokenizer, examples[n]["dev"], features[n]["dev"],
                           batch_size=spec.batch_size * 2, progress=progress)[0] for n in names}
        score = sum(dev[n][MAIN[tasks[n].task]] for n in names) / len(names)
        state["curve"].append({"step": step, "mean": score, **{n: dev[n][MAIN[tasks[n].task]] for n in names}})
        log.info("step %d: mean dev score %.4f", step, score)
        if score > state["best"]:
            state.update(best=score, best_step=step, dev=dev, best_state=_snapshot(m))
        return False

    cfg = TrainConfig(steps=steps, batch_size=spec.batch_size, lr=spec.lr, weight_decay=0.01, seed=spec.seed,
                      warmup_ratio=0.1, schedule="linear", log_every=max(1, min(10, steps // 20)))
    run_info = {"multitask": {n: {"task": t.task, "train": t.train, "probability": p[n]} for n, t in tasks.items()},
                "model": str(model_dir), "steps": steps}

    def save_all(m, d: Path) -> None:
        for n in names:
            save_finetuned(m.tasks[n], Path(d) / n, {**run_info, "task_name": n})

    Trainer(net, dataset, sampler, batch_of, _step, cfg, out, save_fn=save_all, run_info=run_info,
            eval_fn=eval_fn, eval_every=spec.eval_every or max(1, steps // 5)).train()
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # no resume: the last checkpoint is not kept
    net.load_state_dict(state["best_state"])
    net.eval()
    save_all(net, out)
    result = {}
    for n in names:
        r = {"steps_drawn": int((sampler.task == names.index(n)).sum()), "dev": state["dev"][n]}
        if "test" in examples[n]:
            r["test"] = evaluate(net.tasks[n], tokenizer, examples[n]["test"], features[n]["test"],
                                 batch_size=spec.batch_size * 2, progress=progress)[0]
        (out / n / "eval.json").write_text(json.dumps({"task": tasks[n].task, "metric": MAIN[tasks[n].task],
                                                       "best_step": state["best_step"], **r}, indent=2) + "\n")
        result[n] = r
    (out / "curve.json").write_text(json.dumps(state["curve"], indent=2) + "\n")
    return result


def _step(model, batch) -> dict:
    out = model(batch)
    return {"loss": out["loss"], "tokens": int(batch["attention_mask"].sum())}
