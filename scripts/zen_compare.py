"""Character BERT against ZEN at equal pre-training FLOPs on People's Daily, then the same fine-tuning on
zh-ner and zh-sentiment, pre-trained and from scratch: the table of README's ZEN section.

    python scripts/zen_compare.py --data ../shared/data --out zen-cmp [--bert-steps 500]

Steps: (1) People's Daily without every line that holds a zh-ner dev or test sequence (the whole line, or
the sequence's first 12 characters inside it); (2) task subsets: the first 2,000 train, 500 dev and 1,000
test sequences of each task; (3) a char tokenizer; (4) one pre-training step of each model under the
bake-off's FLOP counter, ZEN's steps = BERT's ÷ the ratio; (5) pre-training; (6) fine-tuning, from the
pre-trained weights and from scratch. Every command is printed before it runs; results go to results.json.
Give a new --out for each run (a finished pre-training or fine-tuning directory is not overwritten).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

RECIPE = ["--epochs", "2", "--lr", "5e-4", "--batch-size", "16", "--max-length", "128"]


def sequences(path: Path) -> list[str]:
    out, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            cur.append(line.split("\t")[0])
        elif cur:
            out.append("".join(cur))
            cur = []
    return out + (["".join(cur)] if cur else [])


def prepare(data: Path, out: Path) -> None:
    ner, senti = data / "tasks" / "zh-ner", data / "tasks" / "zh-sentiment"
    held = sequences(ner / "dev.txt") + sequences(ner / "test.txt")
    exact, heads = set(held), {s[:12] for s in held if len(s) >= 12}
    lines = (data / "corpora" / "zh" / "peoples-daily-1998.txt").read_text(encoding="utf-8").split("\n")
    kept = [ln for ln in lines if not ln.strip() or not (
        ln.strip() in exact or any(ln[i:i + 12] in heads for i in range(max(0, len(ln) - 11))))]
    (out / "pd-train.txt").write_text("\n".join(kept), encoding="utf-8")
    print(f"corpus: {len(lines) - len(kept)} of {len(lines)} lines removed", flush=True)
    for split, n in (("train", 2000), ("dev", 500), ("test", 1000)):
        blocks = (ner / f"{split}.txt").read_text(encoding="utf-8").split("\n\n")[:n]
        (out / f"ner-{split}.txt").write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
        rows = (senti / f"{split}.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:n]
        (out / f"senti-{split}.jsonl").write_text("".join(rows), encoding="utf-8")


def plmkit(*args: str, cwd: Path) -> None:
    cmd = [sys.executable, "-m", "plmkit", "-q", *args]
    print("$ plmkit " + shlex.join(args[0:]), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def flops_per_step(out: Path) -> dict[str, int]:
    """FLOPs of one pre-training step (32 × 128 tokens, forward + backward) of each model, by the bake-off's
    counter, in a run directory removed afterwards."""
    from plmkit.workflows.bakeoff import count_flops
    from plmkit.workflows.pretrain import pretrain

    flops = {}
    for m in ("bert", "zen"):
        probe = out / f"probe-{m}"
        shutil.rmtree(probe, ignore_errors=True)
        flops[m], _ = count_flops(lambda: pretrain(m, [str(out / "pd-train.txt")], probe, size="tiny",
                                                   train_overrides={"steps": 1, "batch_size": 32},
                                                   data_overrides={"seq_len": 128, "tokenizer": str(out / "tok")}))
        shutil.rmtree(probe)
    return flops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="the shared data folder (corpora/, tasks/)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--bert-steps", type=int, default=500)
    a = p.parse_args()
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    prepare(a.data.resolve(), out)
    plmkit("tokenizer", "train", "--kind", "char", "--corpus", "pd-train.txt", "--vocab-size", "6000", "--out",
           "tok", cwd=out)

    flops = flops_per_step(out)
    steps = {"bert": a.bert_steps, "zen": round(a.bert_steps * flops["bert"] / flops["zen"])}
    print(f"FLOPs per step {flops}; steps {steps}", flush=True)
    results = {"flops_per_step": flops, "steps": steps}
    for m in ("bert", "zen"):
        plmkit("pretrain", "--model", m, "--size", "tiny", "--corpus", "pd-train.txt", "--tokenizer", "tok",
               "--seq-len", "128", "--batch-size", "32", "--steps", str(steps[m]), "--lr", "1e-3",
               "--warmup-steps", str(steps[m] // 10), "--out", f"pre-{m}", cwd=out)
        for start, extra in (("pretrained", []), ("scratch", ["--from-scratch"])):
            for task, kind, ext, metric in (("ner", "tag", "txt", "f1"), ("senti", "classify", "jsonl", "accuracy")):
                d = f"ft-{task}-{m}-{start}"
                plmkit("finetune", "--model", f"pre-{m}", *extra, "--task", kind, "--train", f"{task}-train.{ext}",
                       "--dev", f"{task}-dev.{ext}", "--test", f"{task}-test.{ext}", *RECIPE, "--out", d, cwd=out)
                results[f"{m} {task} {start}"] = json.loads((out / d / "eval.json").read_text())["test"][metric]
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
