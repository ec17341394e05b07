"""`plmkit bakeoff`: every member at equal compute — one corpus, one tokenizer per kind, one budget, one set
of tasks, one table, one plot, and the published orderings checked against the measured cells.

Equal compute means equal training FLOPs, counted the same way for every member: one real pre-training
step of each (the member's own objective, batch and sequence length; forward and backward; ELECTRA's
generator counts because it runs in the step) is run under `torch.utils.flop_counter.FlopCounterMode`, and
steps = budget ÷ FLOPs per step. The optimizer update is not counted (it is no matmul and the same few
FLOPs per parameter for every member). Members estimated in one pass (the n-gram's counts, gensim's fits)
take no steps: their cost is their counting pass, reported in seconds. With `minutes` every member gets the
same wall-clock instead (steps = minutes ÷ the seconds of a step timed on a few steps); wall-clock is
reported beside FLOPs either way.

Members come from the family registry (default: every registered member; one whose pre-training cannot
start on a plain corpus, e.g. translation objectives, is reported as skipped with the reason).
`NAME@OBJECTIVE` trains a member with another registered objective (BERT without NSP: `bert@mlm`).

Run directory (`out`), one cell per directory, each finished when its `done.json` exists:
    .lock                        held while a bake-off runs here: a second one in the same directory is refused
    shipped/NAME/                a task that ships with plmkit, written when --tasks names it (the CLI)
    tasks/NAME/                  the task files, cut to `examples` (train, dev, test) when asked
    tokenizers/KIND/             one tokenizer per kind, trained once on the corpus
    members/M/probe/             one step under the FLOP counter (and the timing probe with `minutes`)
    members/M/pretrain/          the pre-training run, checkpoints kept at the curve's points
    members/M/finetune/TASK/POINT/seed-S/   fine-tuning from a point: step-N, or scratch (no pre-training)
    members/M/lm/POINT/          held-out perplexity per word and bits per byte, for left-to-right LMs
    bakeoff.json, table.md, bakeoff.png, report.md
A rerun skips finished cells and resumes an unfinished pre-training or fine-tuning run; members may be
added between runs (only their cells run). With `jobs` > 1 the members run in that many processes at once;
a member's cells stay in order within its process. A cell that fails records why in its done.json and is not
retried: delete the directory to run it again.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import logging
import math
import multiprocessing
import os
import random
import shutil
import statistics
import threading
import time
import traceback
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from .. import family
from ..durable import atomic_write, building_dir, check_out_dir, exclusive
from ..errors import PlmkitError

log = logging.getLogger("plmkit")

DONE = "done.json"
SCRATCH = "scratch"  # the fine-tuning point without pre-training: the same architecture, random weights
TASK_KINDS = ("classify", "pair", "regress", "tag")


# --- counting FLOPs ---------------------------------------------------------------------------------------

def _register_cpu_attention_flops() -> None:
    """FlopCounterMode knows the CUDA attention kernels but not the CPU one that SDPA dispatches to on this
    machine, so attention would count as zero; give the CPU kernel the same formulas as the others."""
    import torch
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    fwd, bwd = aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_flash_attention_for_cpu_backward
    if fwd in fc.flop_registry or fwd.default in fc.flop_registry:
        return

    @fc.register_flop_formula(fwd)
    def _fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    @fc.register_flop_formula(bwd)
    def _bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def count_flops(fn: Callable[[], Any]) -> tuple[int, Any]:
    """(FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` while `fn()` runs, fn's result)."""
    from torch.utils.flop_counter import FlopCounterMode

    _register_cpu_attention_flops()
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return int(counter.get_total_flops()), result


def step_flops(model, batch: dict, step_fn: Callable) -> int:
    """FLOPs of one training step: `step_fn(model, batch)["loss"]` forward and its backward."""
    def step():
        model.zero_grad(set_to_none=True)
        step_fn(model, batch)["loss"].backward()

    return count_flops(step)[0]


# --- inputs -----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    kind: str  # a `plmkit finetune` task
    train: str
    dev: str
    test: str | None = None
    labels: list[str] | None = None  # every split's labels: a sample of the training split may lack some


def parse_task(spec: str, shipped_dir: Path | None = None) -> Task:
    """`[NAME=]KIND:TRAIN,DEV[,TEST]`, or a task directory holding train/dev[/test] .jsonl (classify, or pair
    when its records have text_b) or .txt (CoNLL: tag) files; NAME defaults to the files' directory name. With
    `shipped_dir`, the name of a task that ships with plmkit (`plmkit tasks`) is written there and read."""
    from ..data.shipped import TASKS as SHIPPED, write_task

    name, _, rest = spec.rpartition("=") if "=" in spec.split(":")[0] else ("", "", spec)
    if shipped_dir is not None and rest in SHIPPED and not Path(rest).exists():
        rest = str(write_task(rest, Path(shipped_dir) / rest))
    if Path(rest).is_dir():
        d = Path(rest)
        for ext, kind in ((".jsonl", None), (".txt", "tag")):
            if (d / f"train{ext}").is_file():
                files = [d / f"{s}{ext}" for s in ("train", "dev", "test")]
                if not files[1].is_file():
                    raise PlmkitError(f"a task directory needs dev{ext} beside train{ext}", path=d)
                if kind is None:
                    with open(files[0], encoding="utf-8") as f:
                        first = json.loads(f.readline() or "{}")
                    kind = "pair" if "text_b" in first else "classify"
                return Task(name or d.name, kind, str(files[0]), str(files[1]),
                            str(files[2]) if files[2].is_file() else None)
        raise PlmkitError("a task directory holds train.jsonl or train.txt (CoNLL)", path=d)
    kind, sep, paths = rest.partition(":")
    files = paths.split(",") if sep else []
    if kind not in TASK_KINDS or not 2 <= len(files) <= 3:
        raise PlmkitError(f"a task is KIND:TRAIN,DEV[,TEST] with KIND one of {', '.join(TASK_KINDS)}, a task "
                          f"directory, or a task that ships with plmkit ({', '.join(SHIPPED)}); got {spec!r}")
    for f in files:
        if not Path(f).is_file():
            raise PlmkitError("task file not found", path=f)
    return Task(name or Path(files[0]).resolve().parent.name, kind, files[0], files[1],
                files[2] if len(files) == 3 else None)


def _records(path: Path) -> tuple[str, list[str]]:
    """(header, records) of a task file: CoNLL sentences (blank-line separated), else lines (CSV/TSV: a
    header line first)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".txt", ".conll"):
        return "", [b.strip("\n") + "\n\n" for b in text.split("\n\n") if b.strip()]
    lines = [line + "\n" for line in text.splitlines() if line.strip()]
    if path.suffix in (".csv", ".tsv"):
        return lines[0], lines[1:]
    return "", lines


def cut_task(task: Task, limits: tuple[int, int, int], dest: Path) -> Task:
    """The task with each split cut to a random sample (seed 0) of at most its limit (0: all), in `dest`."""
    if not any(limits):
        return task
    files = {}
    for split, limit in zip(("train", "dev", "test"), limits):
        src = getattr(task, split)
        if src is None:
            continue
        out = dest / f"{split}{Path(src).suffix}"
        if not out.exists():
            header, records = _records(Path(src))
            if limit and limit < len(records):
                keep = sorted(random.Random(0).sample(range(len(records)), limit))
                records = [records[i] for i in keep]
            dest.mkdir(parents=True, exist_ok=True)
            atomic_write(out, header + "".join(records))
        files[split] = str(out)
    return dataclasses.replace(task, **files)


def _with_labels(task: Task) -> Task:
    """The task with its label set declared from all its splits, so that every seed and member sees the same."""
    from ..data.tasks import LabelSet, read_task

    if task.kind == "regress":
        return task
    examples = [e for f in (task.train, task.dev, task.test) if f for e in read_task(f, task.kind)]
    return dataclasses.replace(task, labels=list(LabelSet.discover(examples, task.kind, path=task.train).labels))


@dataclasses.dataclass(frozen=True)
class Entry:
    """A member of the bake-off: a registry member, trained with its own objective or another one."""

    label: str
    member: family.Member
    objective: str

    @property
    def counted(self) -> bool:  # estimated in one pass (counts, gensim), not trained by steps
        return hasattr(self.member.model_cls, "fit")


def entries(names: list[str] | None) -> list[Entry]:
    """The members asked for (`NAME` or `NAME@OBJECTIVE`), default every registered member, in registry order."""
    from ..objectives import get_objective

    if not names:
        return [Entry(m.name, m, m.objective) for m in family.members()]
    out = []
    for name in names:
        base, _, objective = name.partition("@")
        m = family.get(base)
        if objective:
            get_objective(objective)
            if hasattr(m.model_cls, "fit"):
                raise PlmkitError(f"{m.name} is estimated in one pass; it takes no @objective")
        label = f"{m.name}@{objective}" if objective and objective != m.objective else m.name
        if label not in {e.label for e in out}:
            out.append(Entry(label, m, objective or m.objective))
    return out


# --- cells ------------------------------------------------------------------------------------------------

def cell(directory: Path, fn: Callable[[Path], dict], what: str) -> dict:
    """Run `fn(directory)` unless the cell is done; record its result (or why it failed) in done.json."""
    marker = directory / DONE
    if marker.exists():
        return json.loads(marker.read_text())
    log.info("bakeoff: %s", what)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        result = fn(directory)
    except (PlmkitError, RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        # One member that cannot run a cell (no plain-text objective, no head for its body) must not end a
        # long run: the failure is a result, reported in the table and the JSON.
        log.warning("bakeoff: %s failed: %s", what, e)
        result = {"failed": f"{type(e).__name__}: {e}".splitlines()[0][:300],
                  "where": traceback.format_exc(limit=-1).strip().splitlines()[-3][:300]}
    atomic_write(marker, json.dumps(result, indent=2) + "\n")
    return result


@dataclasses.dataclass(frozen=True)
class Settings:
    size: str = "tiny"
    seq_len: int = 64
    batch_size: int = 16
    lr: float = 1e-3
    vocab_size: int = 4000
    points: tuple[float, ...] = (0.25, 0.5, 1.0)  # fractions of the budget at which fine-tuning is measured
    seeds: int = 3
    ft_steps: int = 100
    ft_lr: float = 1e-4
    ft_batch_size: int = 16
    max_length: int = 64
    eval_every: int = 25
    lm_window: int = 64


def bakeoff(out: str | os.PathLike, corpus: list[str], tasks: list[Task], members: list[str] | None = None,
            budget: float | None = None, minutes: float | None = None, heldout: str | None = None,
            same_tokenizer: str | None = None, examples: tuple[int, int, int] = (0, 0, 0),
            settings: Settings = Settings(), progress: bool = True, jobs: int = 1) -> dict:
    """Run the bake-off into `out` (resuming whatever is there); returns bakeoff.json's content. With `jobs` > 1,
    that many members run at once, each in its own process with its share of the cores."""
    from ..tokenizers import KINDS as TOKENIZER_KINDS

    if (budget is None) == (minutes is None):
        raise PlmkitError("give the compute as --budget FLOPS or as --minutes, one of the two")
    if (budget is not None and budget <= 0) or (minutes is not None and minutes <= 0):
        raise PlmkitError("the budget must be positive")
    if jobs < 1:
        raise PlmkitError(f"jobs must be at least 1, got {jobs}")
    if not 1 <= settings.seeds <= 20:
        raise PlmkitError(f"seeds must be between 1 and 20, got {settings.seeds}")
    if not settings.points or any(not 0 < p <= 1 for p in settings.points):
        raise PlmkitError(f"points are fractions of the budget in (0, 1], got {settings.points}")
    if same_tokenizer and same_tokenizer not in TOKENIZER_KINDS:
        raise PlmkitError(f"unknown tokenizer kind {same_tokenizer!r}; known: {', '.join(TOKENIZER_KINDS)}")
    for f in corpus + ([heldout] if heldout else []):
        if not Path(f).is_file():
            raise PlmkitError("text file not found", path=f)
    out = Path(out)
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = entries(members)
    with exclusive(out, "bake-off"):  # two runs in one directory would write the same cells
        return _bakeoff(out, corpus, tasks, chosen, budget, minutes, heldout, same_tokenizer, examples, settings,
                        progress, jobs)


def _bakeoff(out: Path, corpus: list[str], tasks: list[Task], chosen: list[Entry], budget, minutes, heldout,
             same_tokenizer, examples, settings: Settings, progress: bool, jobs: int) -> dict:
    from ..tokenizers import train_tokenizer

    tasks = [_with_labels(cut_task(t, examples, out / "tasks" / t.name)) for t in tasks]
    if len({t.name for t in tasks}) != len(tasks):
        raise PlmkitError("two tasks have the same name; name them NAME=KIND:TRAIN,DEV[,TEST]")
    _check_settings(out, budget, minutes, corpus, heldout, same_tokenizer, examples, settings)

    tokenizers = {}
    for kind in sorted({same_tokenizer or e.member.tokenizer for e in chosen}):
        tok_dir = out / "tokenizers" / kind
        if not (tok_dir / "tokenizer.json").exists():
            log.info("bakeoff: training the %s tokenizer", kind)
            tok = train_tokenizer(kind, corpus, settings.vocab_size, show_progress=progress)
            with building_dir(tok_dir) as tmp:
                tok.save(tmp)
        tokenizers[kind] = str(tok_dir)
    probe_corpus = _probe_corpus(corpus, out / "probe-corpus.txt")

    work = [(e.label, corpus, probe_corpus, tokenizers[same_tokenizer or e.member.tokenizer], tasks, heldout, budget,
             minutes, settings) for e in chosen]
    jobs = min(jobs, len(work))
    if jobs == 1:
        rows = [_run_member(out, *w, progress=progress) for w in work]
    else:  # spawn, not fork: a forked child cannot use the tokenizers thread pool of its parent
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with concurrent.futures.ProcessPoolExecutor(jobs, multiprocessing.get_context("spawn"), _worker,
                                                    (threads, log.getEffectiveLevel(), os.getpid())) as pool:
            rows = list(pool.map(functools.partial(_run_member, out, progress=False), *zip(*work)))
    result = {"settings": {"budget_flops": budget, "minutes": minutes, "corpus": [str(Path(c).resolve()) for c in corpus],
                           "heldout": heldout, "same_tokenizer": same_tokenizer, "examples": list(examples),
                           **dataclasses.asdict(settings)},
              "tasks": [dataclasses.asdict(t) for t in tasks], "members": rows}
    result["table"] = table_rows(rows, tasks)
    result["claims"] = claims(rows, tasks)
    atomic_write(out / "bakeoff.json", json.dumps(result, indent=2) + "\n")
    atomic_write(out / "table.md", markdown_table(result) + "\n")
    atomic_write(out / "report.md", report(result) + "\n")
    plot(result, out / "bakeoff.png")
    return result


def _check_settings(out: Path, budget, minutes, corpus, heldout, same_tokenizer, examples, settings: Settings) -> None:
    """A rerun must be the same bake-off: the cells it skips were measured with these settings."""
    current = {"budget": budget, "minutes": minutes, "corpus": [str(Path(c).resolve()) for c in corpus],
               "heldout": str(Path(heldout).resolve()) if heldout else None, "same_tokenizer": same_tokenizer, "examples": list(examples), **dataclasses.asdict(settings)}
    current["points"] = list(settings.points)
    path = out / "settings.json"
    if path.exists():
        old = json.loads(path.read_text())
        changed = sorted(k for k in current if old.get(k) != current[k])
        if changed:
            raise PlmkitError(f"this bake-off was run with other {', '.join(changed)}; rerun with the same "
                              "settings (members and tasks may grow) or choose another --out", path=path)
    else:
        atomic_write(path, json.dumps(current, indent=2) + "\n")


def _probe_corpus(corpus: list[str], dest: Path) -> str:
    """The corpus's first ~200 kB: enough for a step of any objective, quick to tokenize."""
    if not dest.exists():
        lines, size = [], 0
        for c in corpus:
            with open(c, encoding="utf-8-sig") as f:
                for line in f:
                    lines.append(line)
                    size += len(line)
                    if size > 200_000:
                        break
            if size > 200_000:
                break
        atomic_write(dest, "".join(lines))
    return str(dest)


def _pretrain_args(e: Entry, tokenizer: str, s: Settings, steps: int, save_every: int = 0) -> dict:
    return dict(model=e.member.name, size=s.size, objective=None if e.objective == e.member.objective else e.objective,
                data_overrides={"tokenizer": tokenizer, "seq_len": s.seq_len},
                train_overrides={"steps": steps, "batch_size": s.batch_size, "lr": s.lr,
                                 "warmup_steps": max(1, steps // 10) if steps > 1 else 0, "log_every": 1,
                                 "save_every": save_every, "keep_checkpoints": 0})


def schedule(steps: int, points: tuple[float, ...]) -> tuple[int, list[int], int]:
    """(steps, the steps of the points, steps between checkpoints). The run saves every gcd of the points'
    steps, so the steps are rounded down to a multiple of the points' common denominator (4 for quarters):
    otherwise the gcd could be 1, and every step would write a checkpoint."""
    q = math.lcm(*(Fraction(p).limit_denominator(100).denominator for p in points))
    if steps >= q:
        steps -= steps % q
    marks = sorted({max(1, round(f * steps)) for f in points})
    return steps, marks, math.gcd(*marks, steps)


def _worker(threads: int, level: int, parent: int) -> None:
    """A member's process: its share of the cores, only the bake-off's own lines on stderr (the steps of
    several runs at once would interleave), and an end when the bake-off's process ends."""
    import torch

    torch.set_num_threads(threads)

    def orphaned() -> None:  # the bake-off killed (not by Ctrl-C, which reaches the workers too): stop with it
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()
    logging.basicConfig(level=level, format="plmkit: %(message)s")
    for h in logging.getLogger().handlers:
        h.addFilter(lambda r: r.levelno >= logging.WARNING or r.getMessage().startswith("bakeoff:"))


def _run_member(out: Path, label: str, corpus, probe_corpus, tokenizer, tasks: list[Task], heldout, budget, minutes,
                s: Settings, progress: bool) -> dict:
    (e,) = entries([label])
    d = out / "members" / label
    row: dict[str, Any] = {"member": e.label, "name": e.member.name, "parent": e.member.parent,
                           "kind": e.member.kind, "objective": e.objective, "tokenizer": Path(tokenizer).name,
                           "counted": e.counted}
    if e.counted:  # the counting pass is the whole pre-training: no steps, no FLOP budget
        pre = cell(d / "pretrain", lambda p: _fit(e, corpus, tokenizer, s, p), f"{e.label}: counting pass")
        if "failed" in pre:
            return {**row, "failed": pre["failed"]}
        row.update(pretrain_flops=None, steps=None, seconds=pre["seconds"], parameters=pre["parameters"])
        points = {"final": {"step": None, "flops": None, "dir": str(d / "pretrain" / "run")}}
    else:
        probe = cell(d / "probe", lambda p: _probe(e, probe_corpus, tokenizer, s, p, minutes is not None),
                     f"{e.label}: one step under the FLOP counter")
        if "failed" in probe:
            return {**row, "failed": probe["failed"]}
        per_step = probe["flops_per_step"]
        steps = (budget / per_step) if budget is not None else minutes * 60 / probe["seconds_per_step"]
        steps, marks, save_every = schedule(max(1, int(steps)), s.points)
        pre = cell(d / "pretrain", lambda p: _pretrain(e, corpus, tokenizer, s, steps, save_every, marks, p),
                   f"{e.label}: pre-training {steps} steps")
        if "failed" in pre:
            return {**row, "flops_per_step": per_step, "failed": pre["failed"]}
        row.update(flops_per_step=per_step, steps=steps, pretrain_flops=per_step * steps, seconds=pre["seconds"],
                   parameters=pre["parameters"], final_loss=pre["final_loss"], epochs=pre.get("epochs"))
        points = {f"step-{m}": {"step": m, "flops": per_step * m, "dir": str(d / "pretrain" / pre["points"][str(m)])}
                  for m in marks}
        points[SCRATCH] = {"step": 0, "flops": 0, "dir": str(d / "pretrain" / "run")}
    row["points"] = {k: {"step": v["step"], "flops": v["flops"]} for k, v in points.items()}

    row["lm"] = {}
    if heldout:
        for name, p in points.items():
            if name == SCRATCH:
                continue
            r = cell(d / "lm" / name, lambda _: _evaluate_lm(p["dir"], heldout, s, progress),
                     f"{e.label}: held-out perplexity at {name}")
            if "bits_per_byte" not in r:  # not a left-to-right LM (or it failed): no other point will be one
                break
            row["lm"][name] = r
    row["finetune"] = {}
    for t in tasks:
        per_point = {}
        for name, p in points.items():
            runs = []
            for seed in range(s.seeds):
                r = cell(d / "finetune" / t.name / name / f"seed-{seed}",
                         lambda c: _finetune(p["dir"], t, s, seed, name == SCRATCH, c, progress),
                         f"{e.label}: fine-tuning on {t.name} from {name}, seed {seed}")
                runs.append(r)
            per_point[name] = _summarise(runs)
        row["finetune"][t.name] = per_point
    return row


def _probe(e: Entry, corpus: str, tokenizer: str, s: Settings, d: Path, timed: bool) -> dict:
    from .pretrain import pretrain

    shutil.rmtree(d / "run", ignore_errors=True)  # a probe killed half-way starts again
    flops, _ = count_flops(lambda: pretrain(corpus=[corpus], out=d / "run", **_pretrain_args(e, tokenizer, s, 1)))
    if flops == 0:
        raise PlmkitError(f"{e.label}: the FLOP counter saw no matmul in a training step")
    result = {"flops_per_step": flops, "tokens_per_step": s.batch_size * s.seq_len}
    if timed:  # a few steps outside the counter (its Python hooks slow every op); the first one warms up
        shutil.rmtree(d / "timed", ignore_errors=True)
        pretrain(corpus=[corpus], out=d / "timed", **_pretrain_args(e, tokenizer, s, 5))
        log_lines = [json.loads(x) for x in (d / "timed" / "train_log.jsonl").read_text().splitlines() if x.strip()]
        result["seconds_per_step"] = (log_lines[-1]["elapsed_s"] - log_lines[0]["elapsed_s"]) / (len(log_lines) - 1)
        shutil.rmtree(d / "timed")
    shutil.rmtree(d / "run")
    return result


def _pretrain(e: Entry, corpus, tokenizer: str, s: Settings, steps: int, save_every: int, marks: list[int],
              d: Path) -> dict:
    from .pretrain import pretrain

    run = d / "run"
    t0 = time.perf_counter()
    summary = pretrain(corpus=corpus, out=run, resume=run.exists(), **_pretrain_args(e, tokenizer, s, steps, save_every))
    points = {}  # relative to the cell, so that a bake-off directory may move
    for m in marks:  # the checkpoints the curve needs; the other ones (and their optimizer states) go
        points[str(m)] = "run" if m == steps else f"run/checkpoints/step-{m}/model"
    for c in (run / "checkpoints").glob("step-*"):
        if int(c.name.split("-")[1]) not in marks or int(c.name.split("-")[1]) == steps:
            shutil.rmtree(c)
    run_info = json.loads((run / "run.json").read_text())
    logged = [x for x in (run / "train_log.jsonl").read_text().splitlines() if x.strip()]
    return {"seconds": summary["seconds"], "wall_s": round(time.perf_counter() - t0, 1), "steps": steps,
            "final_loss": summary["final_loss"], "tokens": summary["tokens"], "parameters": run_info["parameters"],
            "epochs": json.loads(logged[-1]).get("epoch") if logged else None,  # of the objective's examples
            "points": points}


def _fit(e: Entry, corpus, tokenizer: str, s: Settings, d: Path) -> dict:
    from .pretrain import pretrain

    shutil.rmtree(d / "run", ignore_errors=True)  # a counting pass is not resumable: start it again
    args = _pretrain_args(e, tokenizer, s, 1)
    summary = pretrain(corpus=corpus, out=d / "run", model=args["model"], size=s.size,
                       data_overrides=args["data_overrides"])
    return {"seconds": summary["seconds"], "parameters": summary["parameters"], "tokens": summary["tokens"]}


def _evaluate_lm(model_dir: str, heldout: str, s: Settings, progress: bool) -> dict:
    from .. import load, load_tokenizer
    from ..evaluation.lm import evaluate_lm

    model = load(model_dir)
    if getattr(model, "encoder_decoder", False) or not getattr(model.config, "causal", False):
        return {"not_lm": True}
    r = evaluate_lm(model, load_tokenizer(model_dir), heldout, window=s.lm_window, show_progress=progress)
    return {k: r[k] for k in ("perplexity", "bits_per_byte", "token_perplexity", "tokens", "words", "bytes")}


def _finetune(model_dir: str, t: Task, s: Settings, seed: int, scratch: bool, d: Path, progress: bool) -> dict:
    from .finetune import finetune

    run = d / "run"
    r = finetune(model_dir, t.kind, t.train, t.dev, run, test=t.test, labels=t.labels, steps=s.ft_steps, lr=s.ft_lr,
                 batch_size=s.ft_batch_size, max_length=s.max_length, seed=seed, scratch=scratch,
                 eval_every=s.eval_every, patience=10 ** 6, progress=progress, resume=run.exists())
    split = "test" if "test" in r else "dev"
    result = {"metric": r["metric"], "split": split, "score": r[split][r["metric"]], "dev": r["dev"][r["metric"]],
              "best_step": r["best_step"], "seconds": r.get("seconds")}
    # The fine-tuned weights are not needed for the table: drop them, keep eval.json and the logs.
    for f in run.glob("*.safetensors"):
        f.unlink()
    return result


def _summarise(runs: list[dict]) -> dict:
    ok = [r for r in runs if "failed" not in r]
    if not ok:
        return {"failed": runs[0]["failed"], "scores": []}
    scores = [r["score"] for r in ok]
    return {"metric": ok[0]["metric"], "split": ok[0]["split"], "scores": scores, "mean": statistics.fmean(scores),
            "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "seconds": round(sum(r.get("seconds") or 0 for r in ok), 1)}


# --- the table, the claims, the report, the plot ----------------------------------------------------------

def final_point(row: dict) -> str | None:
    """The point with the most pre-training (the last checkpoint, or a counting pass's only model)."""
    pts = [k for k in row.get("points", {}) if k != SCRATCH]
    return max(pts, key=lambda k: row["points"][k]["step"] or 0) if pts else None


def table_rows(rows: list[dict], tasks: list[Task]) -> list[dict]:
    out = []
    for r in rows:
        final = final_point(r)
        item = {"member": r["member"], "pretrain_flops": r.get("pretrain_flops"), "steps": r.get("steps"),
                "seconds": r.get("seconds"), "failed": r.get("failed")}
        for t in tasks:
            item[t.name] = (r.get("finetune", {}).get(t.name, {}).get(final) if final else None)
            item[f"{t.name} scratch"] = r.get("finetune", {}).get(t.name, {}).get(SCRATCH)
        lm = r.get("lm", {}).get(final) if final else None
        item["lm"] = lm
        out.append(item)
    return out


def _fmt(cell_: dict | None) -> str:
    if not cell_:
        return "—"
    if "failed" in cell_:
        return "n/a"
    return f"{cell_['mean']:.3f} ± {cell_['sd']:.3f}"


def markdown_table(result: dict) -> str:
    tasks = [t["name"] for t in result["tasks"]]
    metric = {}
    for r in result["table"]:
        for t in tasks:
            if r.get(t) and "metric" in r[t]:
                metric.setdefault(t, r[t]["metric"])
    head = ["member", "pre-training FLOPs", "steps", "wall-clock s",
            *[f"{t} ({metric.get(t, 'score')})" for t in tasks], *[f"{t} from scratch" for t in tasks],
            "ppl/word", "bits/byte"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in result["table"]:
        if r.get("failed"):
            lines.append(f"| {r['member']} | " + " | ".join(["—"] * (len(head) - 2)) + f" | {r['failed'][:60]} |")
            continue
        flops = f"{r['pretrain_flops']:.2e}" if r["pretrain_flops"] else "counting pass"
        lm = r.get("lm")
        cells = [r["member"], flops, str(r["steps"] or "—"), f"{r['seconds']:.0f}",
                 *[_fmt(r.get(t)) for t in tasks], *[_fmt(r.get(f"{t} scratch")) for t in tasks],
                 f"{lm['perplexity']:.1f}" if lm else "—", f"{lm['bits_per_byte']:.3f}" if lm else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclasses.dataclass
class Claim:
    claim: str
    source: str
    verdict: str  # held | did not hold | not measurable here
    evidence: str


def _compare(a: dict | None, b: dict | None) -> tuple[float, float] | None:
    """(mean of a − mean of b, the larger of their seeds' sd), or None when either is missing."""
    if not a or not b or "mean" not in a or "mean" not in b:
        return None
    return a["mean"] - b["mean"], max(a["sd"], b["sd"])


def _verdict(diffs: list[tuple[str, float, float]], at_least: bool = False) -> tuple[str, str]:
    """Verdict over per-task differences (winner − loser): held when their mean is > 0 (≥ 0 for an
    at-least claim), with each task's difference and the seeds' spread as evidence."""
    mean = statistics.fmean(d for _, d, _ in diffs)
    held = mean >= 0 if at_least else mean > 0
    parts = [f"{t}: {d:+.3f} (sd {sd:.3f}{', within the spread' if abs(d) <= sd else ''})" for t, d, sd in diffs]
    return ("held" if held else "did not hold"), f"mean difference {mean:+.3f}; " + "; ".join(parts)


def claims(rows: list[dict], tasks: list[Task]) -> list[dict]:
    """The published orderings, each judged from the measured cells at the final point of pre-training."""
    ok = {r["member"]: r for r in rows if not r.get("failed")}

    def score(member: str, task: str, point: str | None = None) -> dict | None:
        r = ok.get(member)
        if r is None:
            return None
        return r.get("finetune", {}).get(task, {}).get(point or final_point(r))

    def pairwise(a: str, b: str, task_names: list[str], at_least=False) -> tuple[str, str] | None:
        diffs = [(t, *c) for t in task_names if (c := _compare(score(a, t), score(b, t))) is not None]
        return _verdict(diffs, at_least) if diffs else None

    names = [t.name for t in tasks]
    out: list[Claim] = []

    # ELECTRA (replaced-token detection) vs the member it was derived from, at equal compute.
    rtd = [m for m, r in ok.items() if r["objective"] == "rtd" and r["parent"] in ok]
    judged = [(m, pairwise(m, ok[m]["parent"], names)) for m in rtd]
    judged = [(m, j) for m, j in judged if j]
    out.append(_claim("ELECTRA beats BERT at equal compute", "Clark et al. 2020, Table 1 (+GLUE at small size)",
                      judged, "needs an RTD member and its parent, both fine-tuned"))

    # Dynamic vs static masking: the same member with objective X and X-static (masks fixed per copy of the
    # corpus). Until the static run passes over its copies more than once it never sees a mask twice, and the
    # two are the same recipe: the claim is not testable there, whatever the scores say.
    pairs = [(m, n) for m, r in ok.items() for n, q in ok.items()
             if r["name"] == q["name"] and q["objective"] == r["objective"] + "-static"]
    repeated = [(m, n) for m, n in pairs if (ok[n].get("epochs") or 0) > 1]
    judged = [(f"{m} vs {n}", j) for m, n in repeated if (j := pairwise(m, n, names, at_least=True))]
    once = ", ".join(f"{n} ({ok[n].get('epochs') or 0:.2f} epochs of its copies)" for m, n in pairs
                     if (m, n) not in repeated)
    out.append(_claim("dynamic masking ≥ static masking", "Liu et al. 2019 (RoBERTa), §4.1", judged,
                      f"no static mask was seen twice: {once}, so static equals dynamic masking at this budget"
                      if once else "needs a member trained as NAME@X and as NAME@X-static (e.g. bert@mlm, "
                      "bert@mlm-static)"))

    # NSP: the same member with objective X+nsp and with X alone.
    pairs = [(m, n) for m, r in ok.items() for n, q in ok.items()
             if r["name"] == q["name"] and r["objective"].endswith("+nsp") and q["objective"] == r["objective"][:-4]]
    judged = [(f"{n} vs {m}", j) for m, n in pairs if (j := pairwise(n, m, names, at_least=True))]
    out.append(_claim("NSP does not help (without NSP ≥ with NSP)", "Liu et al. 2019 (RoBERTa), §4.2, Table 2",
                      judged, "needs a member trained with X+nsp and as NAME@X"))

    # SOP vs NSP on pair tasks: the same member with X+sop and X+nsp.
    pair_tasks = [t.name for t in tasks if t.kind == "pair"]
    pairs = [(m, n) for m, r in ok.items() for n, q in ok.items()
             if r["name"] == q["name"] and r["objective"].endswith("+sop") and q["objective"] == r["objective"][:-4] + "+nsp"]
    judged = [(f"{m} vs {n}", j) for m, n in pairs if pair_tasks and (j := pairwise(m, n, pair_tasks))]
    out.append(_claim("SOP beats NSP on sentence-pair tasks", "Lan et al. 2020 (ALBERT), §4.6, Table 5", judged,
                      "needs a pair task and a member trained as NAME@X+sop and with X+nsp" if pair_tasks
                      else "no sentence-pair task in this run"))

    # Pre-training vs none: every member's final point against the same recipe from random weights.
    judged = []
    for m, r in ok.items():
        diffs = [(t, *c) for t in names if (c := _compare(score(m, t), score(m, t, SCRATCH))) is not None]
        if diffs:
            judged.append((m, _verdict(diffs)))
    out.append(_claim("pre-training beats none", "Radford et al. 2018; Devlin et al. 2019", judged,
                      "needs fine-tuning from a checkpoint and from scratch"))

    # Neural LMs vs the counted n-gram on held-out text, as the budget grows.
    counted = {m: r for m, r in ok.items() if r["counted"] and r.get("lm")}
    neural = {m: r for m, r in ok.items() if not r["counted"] and r.get("lm")}
    if counted and neural:
        ref_name, ref = next(iter(counted.items()))
        ref_bpb = next(iter(ref["lm"].values()))["bits_per_byte"]
        lines, beaten = [], 0
        for m, r in neural.items():
            curve = sorted(((r["points"][p]["flops"], v["bits_per_byte"]) for p, v in r["lm"].items()))
            below = [f for f, b in curve if b < ref_bpb]
            beaten += curve[-1][1] < ref_bpb
            lines.append(f"{m}: {' → '.join(f'{b:.3f}' for _, b in curve)} bits/byte"
                         + (f", below from {below[0]:.1e} FLOPs" if below else ", never below"))
        verdict = "held" if beaten * 2 > len(neural) else "did not hold"
        out.append(Claim("neural LMs overtake the KN n-gram as the budget grows", "Bengio et al. 2003; Mikolov et al. "
                         "2010; Jozefowicz et al. 2016", verdict,
                         f"{beaten} of {len(neural)} neural LMs end below {ref_name}'s {ref_bpb:.3f} bits/byte "
                         f"(its counting pass: {ref['seconds']:.0f} s); " + "; ".join(lines)))
    else:
        out.append(Claim("neural LMs overtake the KN n-gram as the budget grows", "Bengio et al. 2003; Mikolov et al. "
                         "2010; Jozefowicz et al. 2016", "not measurable here",
                         "needs --heldout, a counted n-gram and a left-to-right neural LM"))
    return [dataclasses.asdict(c) for c in out]


def _claim(text: str, source: str, judged: list[tuple[str, tuple[str, str]]], missing: str) -> Claim:
    if not judged:
        return Claim(text, source, "not measurable here", missing)
    held = sum(v == "held" for _, (v, _) in judged)
    verdict = "held" if held * 2 > len(judged) else "did not hold"
    prefix = f"{held} of {len(judged)} held. " if len(judged) > 1 else ""
    return Claim(text, source, verdict, prefix + " · ".join(f"{m} — {v}: {ev}" for m, (v, ev) in judged))


def report(result: dict) -> str:
    s = result["settings"]
    compute = (f"{s['budget_flops']:.2e} training FLOPs per member" if s["budget_flops"] is not None
               else f"{s['minutes']} minutes of pre-training per member")
    lines = ["# Bake-off", "",
             f"{compute}; {s['size']} size, {s['batch_size']} × {s['seq_len']} tokens per step, lr {s['lr']}; "
             f"corpus {', '.join(Path(c).name for c in s['corpus'])}; fine-tuning {s['ft_steps']} steps, batch "
             f"{s['ft_batch_size']}, lr {s['ft_lr']}, ≤ {s['max_length']} tokens, best dev of every "
             f"{s['eval_every']} steps kept, {s['seeds']} seeds; scores are test (dev where a task has no test), "
             f"mean ± sd over the seeds. FLOPs are counted on one real step with FlopCounterMode; wall-clock "
             "beside them (the machine may be shared).", "", markdown_table(result), "",
             "## Claims", "", "| claim | source | verdict | evidence |", "|---|---|---|---|"]
    for c in result["claims"]:
        lines.append(f"| {c['claim']} | {c['source']} | {c['verdict']} | {c['evidence']} |")
    failed = [r for r in result["members"] if r.get("failed")]
    if failed:
        lines += ["", "## Members that did not run", ""]
        lines += [f"- {r['member']}: {r['failed']}" for r in failed]
    return "\n".join(lines)


def flops_ticks(floor: float, top: float) -> list[float]:
    """The FLOPs axis's labelled ticks: 1, 2 and 5 × each power of ten above the floor (where "none" sits) up to
    a little past the largest point. The range is often under a decade, where a log axis labels nothing."""
    return [m * 10.0 ** k for k in range(math.floor(math.log10(floor)), math.ceil(math.log10(top)) + 1)
            for m in (1, 2, 5) if floor * 1.5 < m * 10.0 ** k < top * 1.5]


def plot(result: dict, path: Path) -> None:
    """Score against pre-training FLOPs per member, a panel per task (and one for bits per byte)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    from ..durable import atomic_file

    tasks = [t["name"] for t in result["tasks"]]
    rows = [r for r in result["members"] if not r.get("failed")]
    has_lm = any(r.get("lm") for r in rows)
    panels = tasks + (["lm"] if has_lm else [])
    if not panels:
        return
    fig = Figure(figsize=(5 * len(panels), 4.2))
    positive = [p["flops"] for r in rows for p in r.get("points", {}).values() if p["flops"]]
    floor = min(positive) / 4 if positive else 1.0  # where "no pre-training" sits on the log axis
    ticks = flops_ticks(floor, max(positive, default=floor))
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for j, r in enumerate(rows):
            color, marker = f"C{j % 10}", "osD^v<>p*h"[j // 10 % 10]
            if panel == "lm":
                if r["counted"] and r.get("lm"):
                    ax.axhline(next(iter(r["lm"].values()))["bits_per_byte"], color=color, ls="--", label=r["member"])
                elif r.get("lm"):
                    pts = sorted((r["points"][p]["flops"], v["bits_per_byte"]) for p, v in r["lm"].items())
                    ax.plot(*zip(*pts), marker=marker, color=color, label=r["member"])
                continue
            cells = r.get("finetune", {}).get(panel, {})
            pts = sorted(((r["points"][p]["flops"] or floor) if r["points"][p]["step"] is not None else floor,
                          c["mean"], c["sd"]) for p, c in cells.items() if "mean" in c)
            if r["counted"] and pts:
                ax.axhline(pts[0][1], color=color, ls=":", label=f"{r['member']} (counted)")
            elif pts:
                x, y, e = zip(*pts)
                ax.errorbar(x, y, yerr=e, marker=marker, color=color, capsize=2, label=r["member"])
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([floor, *ticks]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels(["none"] + [f"{t:.0e}".replace("e+", "e") for t in ticks])
        ax.set_xlabel("pre-training FLOPs")
        metric = next((c["metric"] for r in rows for c in r.get("finetune", {}).get(panel, {}).values()
                       if "metric" in c), "score")
        ax.set_ylabel("held-out bits per byte" if panel == "lm" else f"test {metric}")
        ax.set_title("language modelling" if panel == "lm" else panel)
        ax.grid(alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    for ax in fig.axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100)
