"""`plmkit frontier`: every compression method on one teacher, as one size / speed / accuracy picture.

Each method runs with its defaults (`plmkit compress METHOD`, into `out/METHOD/`; a method whose
directory already holds compression.json is not run again, and one left unfinished is started again, so an
interrupted frontier resumes). Then the
teacher and every student are timed together on the same test examples, in alternating rounds (batch 32
and batch 1), so the speeds compare across methods even on a machine whose speed drifts. Writes
    frontier.json  one row per model: test score, parameters, weight bytes, examples/s, speed-up, size ratio,
                   compression seconds, and whether it is on the Pareto front of score vs speed (batch 32)
                   and of score vs size
    frontier.md    the table
    frontier.png   score against examples/s at batch 32 and against weight MB, the fronts drawn
A method registered in plmkit/compress/ appears here without any change to this file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..errors import PlmkitError

log = logging.getLogger("plmkit")


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """For points (x, y) where larger is better on both axes: whether each is on the Pareto front, i.e. no
    other point is at least as good on both and better on one."""
    def dominated(p, q) -> bool:
        return q[0] >= p[0] and q[1] >= p[1] and (q[0] > p[0] or q[1] > p[1])

    return [not any(dominated(p, q) for q in points) for p in points]


def method_options(methods: list, settings: dict[str, str]) -> dict[str, dict[str, str]]:
    """Split `--set` pairs over the methods: KEY=VALUE goes to every method with option KEY,
    METHOD.KEY=VALUE to that method alone; a key no chosen method takes is an error."""
    per = {m.name: {} for m in methods}
    for key, value in settings.items():
        target, _, name = key.rpartition(".")
        name = name.replace("-", "_")
        chosen = [m for m in methods if (not target or m.name == target) and m.option(name) is not None]
        if not chosen:
            raise PlmkitError(f"--set {key}: no chosen method has option {name!r}"
                              + (f" (or {target!r} is not among --methods)" if target else ""))
        for m in chosen:
            per[m.name][name] = value
    return per


def frontier(model: str | os.PathLike, methods: list[str], train: str, dev: str, test: str,
             out: str | os.PathLike, settings: dict[str, str] | None = None, progress: bool = True) -> dict:
    """Run `methods` on the teacher in `model` and write frontier.json, frontier.md and frontier.png to `out`;
    returns frontier.json's content."""
    from ..bench.latency import throughput
    from ..compress import get
    from ..data.tasks import read_task
    from ..heads import load_finetuned
    from .compress import compress, weight_bytes

    chosen = [get(name) for name in methods]
    if not chosen or len(set(methods)) != len(methods):
        raise PlmkitError("--methods names each method once")
    options = method_options(chosen, settings or {})
    out = Path(out)
    records = {}
    for m in chosen:
        d = out / m.name
        if (d / "compression.json").exists():
            log.info("frontier: %s already done in %s", m.name, d)
        else:
            if d.exists():  # an interrupted run: the frontier owns out/METHOD, so it starts that method again
                log.info("frontier: removing the unfinished %s run in %s", m.name, d)
                shutil.rmtree(d)
            log.info("frontier: %s → %s", m.name, d)
            compress(m.name, model, d, train=train, dev=dev, test=test, options=options[m.name], progress=progress)
        records[m.name] = json.loads((d / "compression.json").read_text())

    teacher = load_finetuned(model)
    examples = read_task(test, teacher.config.task)
    models = {"teacher": teacher, **{name: load_finetuned(out / name) for name in records}}
    speed = throughput(models, examples)
    metric = next(iter(records.values()))["metric"]
    first = next(iter(records.values()))
    rows = [{"name": "teacher", "method": None, "score": first["teacher"]["test"][metric],
             "parameters": first["teacher"]["parameters"], "weight_bytes": weight_bytes(model), "seconds": None,
             "layers": first["teacher"].get("layers"), "hidden": first["teacher"].get("hidden")}]
    for name, r in records.items():
        rows.append({"name": name, "method": r["summary"], "score": r["student"]["test"][metric],
                     "parameters": r["student"]["parameters"], "weight_bytes": r["student"]["weight_bytes"],
                     "seconds": r["seconds"], "layers": r["student"].get("layers"),
                     "hidden": r["student"].get("hidden"), "init": r["student"].get("init")})
    base = rows[0]
    for row in rows:
        row["examples_per_s"] = speed["examples_per_s"][row["name"]]
        row["speedup_32"] = row["examples_per_s"]["32"] / speed["examples_per_s"]["teacher"]["32"]
        row["retained"] = row["score"] / base["score"] if base["score"] else None
        row["size_ratio"] = base["weight_bytes"] / row["weight_bytes"]
    for key, points in (("pareto_speed", [(r["examples_per_s"]["32"], r["score"]) for r in rows]),
                        ("pareto_size", [(-r["weight_bytes"], r["score"]) for r in rows])):
        for row, on in zip(rows, pareto(points)):
            row[key] = on
    result = {"teacher": str(model), "task": teacher.config.task, "metric": metric, "test": str(test),
              "methods": methods, "settings": settings or {}, "latency": {k: v for k, v in speed.items()
                                                                          if k != "examples_per_s"},
              "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "frontier.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "frontier.md").write_text(table(result) + "\n")
    plot(result, out / "frontier.png")
    return result


def table(result: dict) -> str:
    """The frontier as a Markdown table; * marks the Pareto fronts (speed, size)."""
    metric = result["metric"]
    lines = [f"| model | layers × hidden | parameters | weights MB | test {metric} | kept | ex/s b32 | speed-up b32 "
             "| ex/s b1 | front: speed / size | compress s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in result["rows"]:
        shape = f"{r['layers']} × {r['hidden']}" if r.get("layers") else ""
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
        lines.append(f"| {r['name']} | {shape} | {r['parameters'] / 1e6:.2f}M | {r['weight_bytes'] / 1e6:.2f} "
                     f"| {r['score']:.4f} | {r['retained']:.1%} | {r['examples_per_s']['32']:.1f} "
                     f"| {r['speedup_32']:.2f}x | {r['examples_per_s']['1']:.1f} "
                     f"| {'*' if r['pareto_speed'] else ''} / {'*' if r['pareto_size'] else ''} "
                     f"| {seconds} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Score against examples/s at batch 32 and against weight MB; front points filled and joined."""
    from matplotlib.figure import Figure

    rows, metric = result["rows"], result["metric"]
    fig = Figure(figsize=(11, 4.5))
    panels = ((fig.add_subplot(1, 2, 1), lambda r: r["examples_per_s"]["32"], "examples/s at batch 32 (→ faster)",
               "pareto_speed", False),
              (fig.add_subplot(1, 2, 2), lambda r: r["weight_bytes"] / 1e6, "weight files, MB (← smaller)",
               "pareto_size", True))
    for ax, x_of, xlabel, front, smaller_better in panels:
        for r in rows:
            on = r[front]
            ax.scatter(x_of(r), r["score"], s=50, marker="*" if r["name"] == "teacher" else "o",
                       facecolors="C3" if on else "none", edgecolors="C3" if on else "C0", zorder=3)
            ax.annotate(r["name"], (x_of(r), r["score"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        line = sorted((x_of(r), r["score"]) for r in rows if r[front])
        ax.plot([p[0] for p in line], [p[1] for p in line], "-", color="C3", alpha=0.5, label="Pareto front")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"test {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left" if not smaller_better else "lower right")
    fig.suptitle(f"{result['task']}: the teacher and its compressed students", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
