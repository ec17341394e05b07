"""`plmkit quickstart`: the main job, offline, on data that ships with the package — does pre-training pay?

1. Builds a labelled task from the shipped King James Bible: which section of the canon a verse comes
   from (Law, History, Poetry/Wisdom, Prophets, Gospels/Acts, Epistles/Revelation), with a few labelled
   verses per section; every task verse (train, dev and test) is held out of pre-training.
2. Trains a tokenizer and pre-trains a tiny model on the rest of the text.
3. Fine-tunes the pre-trained model on the task, and the same architecture from random weights (same
   tokenizer, same settings) as the baseline, both with early stopping on the dev set.
Prints the comparison and writes `report.json`, `comparison.png` and one run directory per model under --out.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import time
from importlib import resources
from pathlib import Path

from ..data.parallel import SECTIONS  # the canon's six sections, the task's labels

# Measured on 2 CPU cores: see plmkit/resources/README.md for how these were chosen.
DEFAULTS = dict(member="gpt", steps=1500, seq_len=64, batch_size=32, vocab_size=4000, lr=2e-3,
                per_section=(30, 20, 100), ft_epochs=15, ft_lr=1e-3, ft_batch=16)


def shipped_corpus(out: Path) -> Path:
    """Decompress the shipped KJV text into `out` (once)."""
    path = out / "kjv.txt"
    if not path.exists():
        with resources.files("plmkit").joinpath("resources/kjv.txt.gz").open("rb") as src, \
                gzip.open(src, "rt", encoding="utf-8") as text, open(path, "w", encoding="utf-8") as dst:
            shutil.copyfileobj(text, dst)
    return path


def section_task(corpus: Path, out: Path, per_section: tuple[int, int, int], seed: int = 0) -> Path:
    """Write the verse → section task (train/dev/test.jsonl, `per_section` verses of each section in
    each split) and `pretrain.txt`, the corpus without any task verse; returns `pretrain.txt`."""
    books = [b.splitlines() for b in corpus.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    assert len(books) == sum(n for _, n in SECTIONS) == 66, "the shipped KJV has 66 books"
    rng = random.Random(seed)
    held, splits, b = set(), {"train": [], "dev": [], "test": []}, 0
    for name, n in SECTIONS:
        verses = [(i, j) for i in range(b, b + n) for j in range(len(books[i]))]
        b += n
        picked = rng.sample(verses, sum(per_section))
        held.update(picked)
        start = 0
        for split, k in zip(splits, per_section):
            splits[split] += [{"text": books[i][j], "label": name} for i, j in picked[start:start + k]]
            start += k
    for split, rows in splits.items():
        rng.shuffle(rows)
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pretrain_text = out / "pretrain.txt"
    pretrain_text.write_text("\n\n".join("\n".join(v for j, v in enumerate(book) if (i, j) not in held)
                                         for i, book in enumerate(books)) + "\n", encoding="utf-8")
    return pretrain_text


# A smoke-test scale: the whole pipeline in seconds, the numbers meaningless.
TINY = dict(steps=3, seq_len=32, batch_size=8, vocab_size=300, per_section=(4, 2, 3), ft_epochs=1, ft_batch=8)


def quickstart(out: str, steps: int | None = None, member: str | None = None, tiny: bool = False) -> dict:
    """Run the comparison into `out`; `steps` and `member` override the measured defaults, `tiny` runs
    everything at smoke-test scale (for tests)."""
    from .finetune import finetune
    from .pretrain import pretrain

    given = {k: v for k, v in dict(steps=steps, member=member).items() if v is not None}
    s = {**DEFAULTS, **(TINY if tiny else {}), **given}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task_dir = out / "task"
    task_dir.mkdir(exist_ok=True)
    corpus = section_task(shipped_corpus(out), task_dir, s["per_section"])
    report = {"corpus": "King James Bible (public domain, shipped with plmkit), task verses held out",
              "task": "verse → section of the canon (6 classes), "
                      f"{s['per_section'][0]}/{s['per_section'][1]}/{s['per_section'][2]} train/dev/test per class",
              "settings": s}

    t0 = time.perf_counter()
    run = out / f"{s['member']}-pretrained"
    pre = pretrain(s["member"], [str(corpus)], run, size="tiny",
                   train_overrides={"steps": s["steps"], "batch_size": s["batch_size"], "lr": s["lr"],
                                    "warmup_steps": s["steps"] // 10, "log_every": 10},
                   data_overrides={"seq_len": s["seq_len"], "vocab_size": s["vocab_size"]},
                   resume=(run / "train_log.jsonl").exists())
    report["pretraining"] = {"model": f"{s['member']}-tiny", "steps": pre["steps"], "final_loss": pre["final_loss"],
                             "seconds": round(time.perf_counter() - t0, 1)}

    split = {k: str(task_dir / f"{k}.jsonl") for k in ("train", "dev", "test")}
    # The baseline re-initialises the same architecture: same tokenizer, same settings, no pre-training.
    for name, scratch in (("pretrained", False), ("scratch", True)):
        ft_dir = out / f"finetuned-{name}"
        shutil.rmtree(ft_dir, ignore_errors=True)
        t = time.perf_counter()
        r = finetune(run, "classify", split["train"], split["dev"], ft_dir, test=split["test"],
                     epochs=s["ft_epochs"], lr=s["ft_lr"], batch_size=s["ft_batch"], max_length=s["seq_len"],
                     patience=4, scratch=scratch, progress=False)
        report[name] = {"metric": "accuracy", "score": r["test"]["accuracy"], "macro_f1": r["test"]["macro_f1"],
                        "dev_accuracy": r["dev"]["accuracy"], "seconds": round(time.perf_counter() - t, 1),
                        "model_dir": str(ft_dir), "curve": [(c["step"], c["accuracy"]) for c in r["curve"]]}
    report["seconds_total"] = round(time.perf_counter() - t0, 1)
    report["chance"] = 1 / len(SECTIONS)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(report, out / "comparison.png")
    _print(report, out)
    return report


def _print(report: dict, out: Path) -> None:
    p = report["pretraining"]
    print(f"\nPre-trained a {p['model']} on the King James Bible ({p['steps']} steps, {p['seconds']:.0f} s, "
          f"final loss {p['final_loss']:.2f}); task: {report['task']}.")
    print(f"\n{'model':<26} {'test accuracy':>13} {'macro-F1':>9} {'fine-tune s':>12}")
    for name, label in (("pretrained", "pre-trained + fine-tuned"), ("scratch", "from scratch")):
        r = report[name]
        print(f"{label:<26} {r['score']:>13.3f} {r['macro_f1']:>9.3f} {r['seconds']:>12.1f}")
    print(f"{'chance':<26} {report['chance']:>13.3f}")
    print(f"\nreport: {out / 'report.json'}   plot: {out / 'comparison.png'}   "
          f"models: {report['pretrained']['model_dir']}, {report['scratch']['model_dir']}")


def _plot(report: dict, path: Path) -> None:
    """Dev accuracy during fine-tuning, pre-trained vs from scratch."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name, label in (("pretrained", "pre-trained"), ("scratch", "from scratch")):
        steps, acc = zip(*report[name]["curve"])
        ax.plot(steps, acc, "o-", label=f"{label} (test {report[name]['score']:.2f})")
    ax.axhline(report["chance"], color="grey", ls="--", label="chance")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("dev accuracy")
    ax.set_title("KJV verse → section of the canon")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
