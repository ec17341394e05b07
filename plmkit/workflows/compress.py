"""`plmkit compress METHOD`: a teacher + a registered compression method → a compressed model directory,
measured against its teacher the same way for every method (plmkit/compress/ says how a method plugs in).

Task mode (`--train/--dev [--test]`, the teacher a `plmkit finetune` directory): the output is a fine-tuned
directory (`plmkit evaluate`, `predict`, `bench infer` and plmkit.heads.load_finetuned read it) with
    eval.json         {"task", "metric", "best_step", "dev", "test", "curve", "seconds"} as finetune writes it
    compression.json  method, paper, options (defaults filled in); teacher and student: parameters,
                      weight-file bytes, test (else dev) metrics, examples/s at batch 1 and 32 measured
                      on the same examples in alternating rounds; the student's initialisation and whatever
                      else the method records; the ratios (score retained, speed-up, size), the share of
                      examples on which the student gives the teacher's label (classify, pair), the seconds.
    metrics.png, train_log.jsonl, loss.png   the training, as finetune writes them
The student is scored after a save → load round trip, so the numbers are those of the directory.

General mode (`--corpus F`, the teacher a pre-trained directory, methods that support it): the output is a
pre-trained model directory and a compression.json with the sizes and the training summary.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from ..errors import PlmkitError
from ..evaluation.metrics import MAIN, agreement

log = logging.getLogger("plmkit")


def weight_bytes(directory: str | os.PathLike) -> int:
    """Bytes of a saved model's weight files: every *.safetensors under `directory` (a companion model in a
    subdirectory included, training checkpoints not)."""
    d = Path(directory)
    return sum(p.stat().st_size for p in d.rglob("*.safetensors") if "checkpoints" not in p.relative_to(d).parts)


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def compress(method: str, model: str | os.PathLike, out: str | os.PathLike, train: str | None = None,
             dev: str | None = None, test: str | None = None, corpus: str | None = None,
             options: dict | None = None, progress: bool = True) -> dict:
    """Compress the teacher in directory `model` with registered method `method` into `out`; `options`
    are the method's (names as in its Option list; values as strings or numbers). Returns compression.json's
    content."""
    from ..compress import get

    t0 = time.perf_counter()
    m = get(method)
    opts = m.resolve(options or {})
    out = Path(out)
    if (out / "compression.json").exists() or (out / "train_log.jsonl").exists():
        raise PlmkitError("already holds a compression run; choose another --out", path=out)
    if not Path(model).is_dir():
        raise PlmkitError("teacher directory not found", path=model)
    if corpus is not None:
        if not m.general:
            raise PlmkitError(f"{method} distils a fine-tuned teacher on a task (--train/--dev); it has no general "
                              "(--corpus) mode")
        if train or dev or test:
            raise PlmkitError("--corpus (general distillation) takes no --train/--dev/--test")
        if not Path(corpus).is_file():
            raise PlmkitError("corpus file not found", path=corpus)
        return _general(m, model, out, Path(corpus), opts, progress, t0)
    if not (train and dev):
        raise PlmkitError(f"{method} needs --train and --dev (or --corpus for general distillation)")
    return _task(m, model, out, train, dev, test, opts, progress, t0)


def _task(m, model, out: Path, train, dev, test, opts: dict, progress: bool, t0: float) -> dict:
    from ..bench.latency import throughput
    from ..compress import Job
    from ..data.tasks import read_task
    from ..heads import evaluate, load_finetuned, save_finetuned
    from .finetune import plot_curve

    teacher = load_finetuned(model)
    task = teacher.config.task
    if task not in m.tasks:
        raise PlmkitError(f"{m.name} compresses {', '.join(m.tasks)} models; this teacher was fine-tuned for "
                          f"{task!r}", path=model)
    train_ex, dev_ex = read_task(train, task), read_task(dev, task)
    test_ex = read_task(test, task) if test else None
    own = teacher.config
    if opts.get("max_length") is not None:
        if opts["max_length"] > teacher.body.config.max_positions or opts["max_length"] < 8:
            raise PlmkitError(f"--max-length must be in [8, {teacher.body.config.max_positions}]")
        teacher.config = own.replace(max_length=opts["max_length"])  # the inputs both models read in training
    elif "max_length" in opts:
        opts["max_length"] = own.max_length
    job = Job(m.name, teacher, teacher.tokenizer, opts, out, task=task, train=train_ex, dev=dev_ex,
              train_path=Path(train), dev_path=Path(dev), test=test_ex, teacher_dir=Path(model), progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    result = m.run(job)
    teacher.config = own
    run_info = {"task": task, "model": str(model), "train": str(train), "dev": str(dev), "test": test,
                "compression": {"method": m.name, "options": opts}}
    (result.save or save_finetuned)(result.model, out, run_info)
    seconds = time.perf_counter() - t0
    student = load_finetuned(out)  # what the directory holds, measured as users will load it
    metric = MAIN[task]
    split, examples, path = ("test", test_ex, test) if test_ex else ("dev", dev_ex, dev)
    batch = 2 * opts.get("batch_size", 16)
    scored = {name: evaluate(x, x.tokenizer, examples, batch_size=batch, path=path, progress=progress)
              for name, x in (("teacher", teacher), ("student", student))}
    scores = {name: metrics for name, (metrics, _) in scored.items()}
    dev_scores = evaluate(student, student.tokenizer, dev_ex, batch_size=batch, path=dev, progress=progress)[0]
    speed = throughput({"teacher": teacher, "student": student}, examples)
    eval_json = {"task": task, "metric": metric, "best_step": result.best_step, "dev": dev_scores,
                 **({"test": scores["student"]} if test_ex else {}), "curve": result.curve,
                 "seconds": round(seconds, 1)}
    (out / "eval.json").write_text(json.dumps(eval_json, indent=2) + "\n")
    if result.curve and (out / "train_log.jsonl").exists():
        plot_curve(result.curve, metric, out / "train_log.jsonl", out / "metrics.png")
    sides = {
        "teacher": {"directory": str(model), "member": teacher.body.family_name,
                    "layers": getattr(teacher.body.config, "num_layers", None),
                    "hidden": getattr(teacher.body.config, "hidden_size", None), "parameters": parameters(teacher),
                    "weight_bytes": weight_bytes(model)},
        "student": {**result.info, "parameters": result.parameters or parameters(student),
                    "weight_bytes": weight_bytes(out)},
    }
    for name, side in sides.items():
        side[split] = scores[name]
        side["examples_per_s"] = speed["examples_per_s"][name]
    record = {
        "method": m.name, "paper": m.paper, "summary": m.summary, "options": opts, "task": task, "metric": metric,
        "split": split, **sides,
        "retained": _ratio(scores["student"][metric], scores["teacher"][metric]),
        **({"agreement": agreement(*([p["label"] for p in scored[x][1]] for x in ("teacher", "student")))}
           if task in ("classify", "pair") else {}),
        "speedup": {b: _ratio(sides["student"]["examples_per_s"][b], sides["teacher"]["examples_per_s"][b])
                    for b in speed["examples"]},
        "size_ratio": _ratio(sides["teacher"]["weight_bytes"], sides["student"]["weight_bytes"]),
        "latency": {"data": str(path), "examples": speed["examples"], "rounds": speed["rounds"],
                    "threads": speed["threads"]},
        "seconds": round(seconds, 1),
    }
    (out / "compression.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info("%s: %s %s %.4f → %.4f (%.1f%% kept), %.2fx at batch 32, %.1fx smaller", m.name, split, metric,
             scores["teacher"][metric], scores["student"][metric], 100 * record["retained"],
             record["speedup"].get("32", float("nan")), record["size_ratio"])
    return record


def _general(m, model, out: Path, corpus: Path, opts: dict, progress: bool, t0: float) -> dict:
    from .. import load, load_tokenizer
    from ..compress import Job
    from ..interop.hf import save_model

    teacher, tokenizer = load(model), load_tokenizer(model)
    job = Job(m.name, teacher, tokenizer, opts, out, corpus=corpus, teacher_dir=Path(model), progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    result = m.run(job)
    save_model(result.model, out, result.model.tokenizer,
               {"compression": {"method": m.name, "options": opts, "teacher": str(model), "corpus": str(corpus)}})
    record = {"method": m.name, "paper": m.paper, "summary": m.summary, "options": opts, "corpus": str(corpus),
              "teacher": {"directory": str(model), "member": teacher.family_name, "parameters": parameters(teacher),
                          "weight_bytes": weight_bytes(model)},
              "student": {**result.info, "parameters": result.parameters or parameters(result.model),
                          "weight_bytes": weight_bytes(out)},
              "seconds": round(time.perf_counter() - t0, 1)}
    record["size_ratio"] = _ratio(record["teacher"]["weight_bytes"], record["student"]["weight_bytes"])
    (out / "compression.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None
