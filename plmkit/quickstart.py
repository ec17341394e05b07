"""`plmkit quickstart`: the main job, offline, on data that ships with the package.

Trains a WordPiece tokenizer and pre-trains a tiny BERT (MLM + NSP) on the King James Bible, then
asks the model to fill in masked words. Writes `report.json` and the run directory under --out.
"""

from __future__ import annotations

import gzip
import json
import shutil
import time
from importlib import resources
from pathlib import Path

PROBES = ["In the beginning God created the heaven and the [MASK].",
          "And God said, Let there be [MASK]: and there was light.",
          "The LORD is my [MASK]; I shall not want."]


def shipped_corpus(out: Path) -> Path:
    """Decompress the shipped KJV text into `out` (once)."""
    path = out / "kjv.txt"
    if not path.exists():
        with resources.files("plmkit").joinpath("resources/kjv.txt.gz").open("rb") as src, \
                gzip.open(src, "rt", encoding="utf-8") as text, open(path, "w", encoding="utf-8") as dst:
            shutil.copyfileobj(text, dst)
    return path


def quickstart(out: str, steps: int = 300) -> dict:
    from . import load, load_tokenizer
    from .inference import fill_mask
    from .pretrain import pretrain

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = shipped_corpus(out)
    run = out / "bert-tiny"
    t0 = time.perf_counter()
    summary = pretrain("bert", [str(corpus)], run, size="tiny",
                       train_overrides={"steps": steps, "batch_size": 32, "lr": 1e-3, "warmup_steps": steps // 10,
                                        "log_every": 1},
                       data_overrides={"seq_len": 64, "vocab_size": 4000}, resume=(run / "train_log.jsonl").exists())
    seconds = time.perf_counter() - t0
    model, tok = load(run), load_tokenizer(run)
    fills = {p: [f["token"] for f in fill_mask(model, tok, p, top_k=5)[0]] for p in PROBES}
    report = {"pretrain": {"model": "bert-tiny", "corpus": "King James Bible (shipped with plmkit)",
                           "steps": summary.get("steps"), "seconds": round(seconds, 1),
                           "first_loss": summary.get("first20_loss"), "last_loss": summary.get("last20_loss"),
                           "tokens_per_s": summary.get("tokens_per_s"), "model_dir": str(run)},
              "fill_mask": fills}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    p = report["pretrain"]
    print(f"\npre-trained BERT-tiny on the King James Bible: {p['steps']} steps in {p['seconds']} s, "
          f"{p['tokens_per_s']:.0f} tokens/s")
    print(f"loss (mean of first → last 20 steps): {p['first_loss']:.3f} → {p['last_loss']:.3f}")
    for probe, words in fills.items():
        print(f"  {probe}\n    → {', '.join(words)}")
    print(f"\nmodel: {run}   report: {out / 'report.json'}   loss curve: {run / 'loss.png'}")
    return report
