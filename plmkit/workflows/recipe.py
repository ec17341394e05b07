"""`plmkit recipe F.toml`: the four-stage recipe of continued pre-training, as one file — general
pre-training → domain-adaptive pre-training → task-adaptive pre-training → fine-tuning (Gururangan et al.
2020, ACL, "Don't Stop Pretraining"; ULMFiT's general-domain LM → target-task LM → classifier, Howard &
Ruder 2018, §3).

    [general]             # pre-train from scratch: model, size, corpus (+ [set] config fields) …
    model = "bert"
    corpus = ["wiki.txt"]
    steps = 2000
    # init = "DIR"        # … or start from a saved model (plmkit or Hugging Face directory)

    [domain]              # continue on text of the task's domain
    corpus = ["reviews.txt"]
    steps = 500

    [task]                # continue on the task's own text, labels dropped (default: [finetune].train)
    steps = 200

    [finetune]
    task = "classify"
    train = "train.jsonl"
    dev = "dev.jsonl"
    test = "test.jsonl"
    compare = true        # also fine-tune from scratch and after each earlier stage, for the table

A corpus file ending in .jsonl, .csv or .tsv is read as task data of [finetune]'s task and only its text is
kept, one example per document (e.g. unlabelled in-domain reviews for [domain]). Any stage but the last may
be left out. Stages also take the training and data settings of `plmkit
pretrain` (steps, lr, batch_size, seq_len, warmup_steps, …); [finetune] takes those of `plmkit finetune`
(epochs, lr, batch_size, max_length, seed, features, ulmfit, crf, patience, …). Relative paths are read from
the recipe's directory. Each stage writes its own run directory under --out (general/, domain/, task/,
finetune/after-STAGE/); a rerun skips finished stages and resumes an interrupted one. recipe.json holds the
summary.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
from pathlib import Path

from ..config import beside, read_toml_file
from ..durable import atomic_write, check_out_dir, fault
from ..errors import PlmkitError

log = logging.getLogger("plmkit")

STAGES = ("general", "domain", "task")
TASK_FILES = (".jsonl", ".csv", ".tsv")  # a corpus file of a task's format is read for its text, labels dropped


def read_recipe(path: str | os.PathLike) -> dict:
    """The recipe file, checked: known tables and keys, paths resolved against its directory."""
    from .finetune import finetune
    from ..config import _line_of_key
    from .pretrain import DataOptions
    from ..train import TrainConfig

    p = Path(path)
    recipe = read_toml_file(p, "recipe file")
    unknown = sorted(set(recipe) - {*STAGES, "finetune"})
    if unknown:
        raise PlmkitError(f"unknown table(s) {', '.join(unknown)}; use {', '.join(STAGES)}, finetune", path=p)
    if "finetune" not in recipe:
        raise PlmkitError("a recipe ends with a [finetune] table", path=p)
    settings = {f.name for cls in (TrainConfig, DataOptions) for f in dataclasses.fields(cls)}
    allowed = {"general": settings | {"model", "size", "init", "corpus", "set"},
               "domain": settings | {"corpus", "init"}, "task": settings | {"corpus", "init"},
               "finetune": set(inspect.signature(finetune).parameters) - {"model", "out", "progress"} | {"compare"}}
    for name, table in recipe.items():
        bad = sorted(set(table) - allowed[name])
        if bad:
            raise PlmkitError(f"unknown key(s) {', '.join(bad)} in [{name}]", path=p, line=_line_of_key(p, bad[0]))
    g = recipe.get("general", {})
    if g and not (g.get("model") or g.get("init")):
        raise PlmkitError("[general] needs model = NAME (pre-train from scratch) or init = DIR", path=p)
    first = next((s for s in STAGES if s in recipe), None)
    if first in ("domain", "task") and not recipe[first].get("init"):
        raise PlmkitError(f"without [general], [{first}] continues a saved model: add init = DIR to [{first}]"
                          " or add a [general] table", path=p)
    for key in ("task", "train", "dev"):
        if key not in recipe["finetune"]:
            raise PlmkitError(f"[finetune] needs {key}", path=p)
    for table in recipe.values():
        for key in ("init", "train", "dev", "test", "tokenizer", "lexicon"):
            if key in table:
                table[key] = beside(p, table[key])
        if "corpus" in table:
            table["corpus"] = [beside(p, c) for c in ([table["corpus"]] if isinstance(table["corpus"], str)
                                                      else table["corpus"])]
    return recipe


def run_recipe(path: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Run every stage of the recipe at `path` into `out`; returns (and writes) recipe.json's content."""
    from .finetune import finetune
    from .pretrain import DataOptions, pretrain
    from ..train import TrainConfig

    recipe = read_recipe(path)
    out = Path(out)
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    ft = dict(recipe["finetune"])
    compare = ft.pop("compare", False)
    data_keys = {f.name for f in dataclasses.fields(DataOptions)}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    summary: dict = {"recipe": str(Path(path).resolve()), "stages": [], "finetune": {}}
    previous = None  # the model directory the next stage continues
    for name in STAGES:
        if name not in recipe:
            continue
        stage = dict(recipe[name])
        if name == "task" and "corpus" not in stage:
            stage["corpus"] = [ft["train"]]
        if "corpus" not in stage:
            raise PlmkitError(f"[{name}] needs corpus = [files]", path=path)
        stage["corpus"] = [str(task_text(c, ft["task"], out / f"{name}-text-{i}.txt")) if c.endswith(TASK_FILES)
                           else c for i, c in enumerate(stage["corpus"])]
        run_dir = out / name
        done = (run_dir / "train_summary.json").exists()
        if not done:
            log.info("recipe: %s pre-training → %s", name, run_dir)
            pretrain(stage.get("model") if previous is None else None, stage["corpus"], run_dir,
                     size=stage.get("size", "tiny"), model_overrides=stage.get("set"),
                     train_overrides={k: v for k, v in stage.items() if k in train_keys},
                     data_overrides={k: v for k, v in stage.items() if k in data_keys},
                     resume=run_dir.exists(), init=previous or stage.get("init"))
            fault("stage", name)
        s = json.loads((run_dir / "train_summary.json").read_text())
        summary["stages"].append({"stage": name, "dir": str(run_dir), "steps": s["steps"], "tokens": s["tokens"],
                                  "seconds": round(s["seconds"], 1), "final_loss": s["final_loss"]})
        previous = str(run_dir)
    if previous is None:
        raise PlmkitError("the recipe has no pre-training stage (general, domain or task)", path=path)

    starts = [("scratch", previous)] + [(f"after-{s['stage']}", s["dir"]) for s in summary["stages"]]
    for label, model_dir in (starts if compare else starts[-1:]):
        run_dir = out / "finetune" / label
        if not (run_dir / "eval.json").exists():
            log.info("recipe: fine-tuning %s → %s", label, run_dir)
            finetune(model_dir, out=run_dir, scratch=label == "scratch",
                     resume=(run_dir / "train_log.jsonl").exists(), **ft)
            fault("stage", f"finetune-{label}")
        result = json.loads((run_dir / "eval.json").read_text())
        summary["finetune"][label] = {"metric": result["metric"], "dev": result["dev"][result["metric"]],
                                      **({"test": result["test"][result["metric"]]} if "test" in result else {}),
                                      "seconds": result.get("seconds")}
    atomic_write(out / "recipe.json", json.dumps(summary, indent=2) + "\n")
    return summary


def task_text(train: str, task: str, dest: Path) -> Path:
    """The unlabelled text of a task's training file, one example per document (a blank line between),
    for task-adaptive pre-training."""
    from ..data.tasks import read_task

    lines = []
    for e in read_task(train, task):
        parts = [" ".join(e.tokens)] if e.tokens else [e.text, e.text_b, e.context, *(e.choices or [])]
        lines.append("\n".join(" ".join(p.split()) for p in parts if p and p.strip()))  # no blank line inside
    atomic_write(dest, "\n\n".join(lines) + "\n")
    return dest
