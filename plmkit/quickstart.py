"""`plmkit quickstart`: the main job, offline, on data that ships with the package.

Pre-trains the two roots of the transformer family on the King James Bible — a tiny BERT (masked LM +
next-sentence prediction, WordPiece) and a tiny GPT (left-to-right LM, BPE) — each with a tokenizer
trained on the same text, then shows what each learned: BERT fills in masked words, GPT continues a
prompt. Writes `report.json` and one run directory per model under --out.
"""

from __future__ import annotations

import gzip
import json
import shutil
import time
from importlib import resources
from pathlib import Path

MASK_PROBES = ["In the beginning God created the heaven and the [MASK].",
               "And the LORD spake unto [MASK], saying,"]
PROMPTS = ["And the LORD said unto", "In the beginning"]


def shipped_corpus(out: Path) -> Path:
    """Decompress the shipped KJV text into `out` (once)."""
    path = out / "kjv.txt"
    if not path.exists():
        with resources.files("plmkit").joinpath("resources/kjv.txt.gz").open("rb") as src, \
                gzip.open(src, "rt", encoding="utf-8") as text, open(path, "w", encoding="utf-8") as dst:
            shutil.copyfileobj(text, dst)
    return path


def _pretrain(member: str, corpus: Path, run: Path, steps: int) -> dict:
    from .pretrain import pretrain

    t0 = time.perf_counter()
    summary = pretrain(member, [str(corpus)], run, size="tiny",
                       train_overrides={"steps": steps, "batch_size": 32, "lr": 2e-3, "warmup_steps": steps // 10,
                                        "log_every": 1},
                       data_overrides={"seq_len": 64, "vocab_size": 4000}, resume=(run / "train_log.jsonl").exists())
    return {"model": f"{member}-tiny", "steps": summary["steps"], "seconds": round(time.perf_counter() - t0, 1),
            "first20_loss": summary["first20_loss"], "last20_loss": summary["last20_loss"],
            "tokens_per_s": summary["tokens_per_s"], "model_dir": str(run)}


def quickstart(out: str, steps: int = 400) -> dict:
    from . import load, load_tokenizer
    from .inference import fill_mask, generate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = shipped_corpus(out)
    report = {"corpus": "King James Bible (public domain, shipped with plmkit)"}
    for member in ("bert", "gpt"):
        report[member] = _pretrain(member, corpus, out / f"{member}-tiny", steps)
    bert, bert_tok = load(out / "bert-tiny"), load_tokenizer(out / "bert-tiny")
    report["bert"]["fill_mask"] = {p: [f["token"] for f in fill_mask(bert, bert_tok, p, top_k=5)[0]]
                                   for p in MASK_PROBES}
    gpt, gpt_tok = load(out / "gpt-tiny"), load_tokenizer(out / "gpt-tiny")
    report["gpt"]["generate"] = {p: generate(gpt, gpt_tok, p, max_new_tokens=16, top_p=0.9, seed=0)["text"]
                                 for p in PROMPTS}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nPre-trained on the {report['corpus']}:")
    print(f"{'model':<10} {'steps':>6} {'seconds':>8} {'tokens/s':>9}  loss (first 20 → last 20 steps)")
    for member in ("bert", "gpt"):
        r = report[member]
        print(f"{r['model']:<10} {r['steps']:>6} {r['seconds']:>8.1f} {r['tokens_per_s']:>9.0f}  "
              f"{r['first20_loss']:.2f} → {r['last20_loss']:.2f}")
    print("\nBERT fills in the blank (top 5):")
    for probe, words in report["bert"]["fill_mask"].items():
        print(f"  {probe}\n    → {', '.join(words)}")
    print("GPT continues (nucleus sampling, top-p 0.9, seed 0):")
    for text in report["gpt"]["generate"].values():
        print(f"  {text}")
    print(f"\nmodels: {out / 'bert-tiny'}, {out / 'gpt-tiny'}   report: {out / 'report.json'}   "
          f"loss curves: */loss.png")
    return report
