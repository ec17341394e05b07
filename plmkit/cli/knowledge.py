"""`plmkit knowledge`: a WordNet knowledge base with TransE vectors for ERNIE-THU, and ERNIE-THU against BERT on
a cloze probe over WordNet relations."""

from __future__ import annotations

import json


def add_commands(sub) -> None:
    p = sub.add_parser("knowledge", help="knowledge-fused pre-training (ERNIE-THU): a WordNet KB with TransE "
                                         "vectors, and ERNIE-THU vs BERT on WordNet cloze facts",
                       description="`prepare` links a corpus's words to WordNet synsets (string match, most "
                                   "frequent sense), trains TransE on the relations among them and writes the "
                                   "KB directory `plmkit pretrain --model ernie-thu --kb DIR` reads, with cloze "
                                   "facts. `compare` pre-trains bert and ernie-thu with equal settings and probes "
                                   "both.")
    k = p.add_subparsers(dest="knowledge_command", required=True, metavar="ACTION")
    prep = k.add_parser("prepare", help="build the KB directory: entities, mentions, triples, TransE, facts")
    prep.add_argument("--corpus", nargs="+", required=True, metavar="F", help="plain-text files to link")
    prep.add_argument("--out", required=True, metavar="DIR")
    prep.add_argument("--wordnet", default="/usr/share/wordnet", metavar="DIR",
                      help="WordNet 3.0 database files (Debian: apt-get install wordnet-base)")
    prep.add_argument("--max-mentions", type=int, default=20000, help="most frequent linked words kept")
    prep.add_argument("--transe-steps", type=int, help="TransE optimizer steps (default 3000)")
    prep.add_argument("--dim", type=int, help="TransE (entity) dimension (default 100)")
    prep.add_argument("--json", action="store_true")
    prep.set_defaults(func=_cmd_prepare)
    cmp = k.add_parser("compare", help="pre-train bert and ernie-thu with equal settings; cloze on the KB's facts")
    cmp.add_argument("--corpus", nargs="+", required=True, metavar="F")
    cmp.add_argument("--kb", required=True, metavar="DIR", help="what `plmkit knowledge prepare` wrote")
    cmp.add_argument("--out", required=True, metavar="DIR")
    cmp.add_argument("--steps", type=int, help="pre-training steps per member (default 600)")
    cmp.add_argument("--json", action="store_true")
    cmp.set_defaults(func=_cmd_compare)


def _cmd_prepare(a) -> int:
    from ..workflows.knowledge import prepare

    transe = {k: v for k, v in (("steps", a.transe_steps), ("dim", a.dim)) if v is not None}
    info = prepare(a.corpus, a.out, a.wordnet, a.max_mentions, transe=transe)
    if a.json:
        print(json.dumps(info, indent=2))
    else:
        t = info["transe"]
        print(f"{info['entities']} entities ({info['mentions']} mention strings), {info['triples']} triples over "
              f"{len(t['relations'])} relations; TransE {t['steps']} steps, final loss {t['final_loss']:.4f}; "
              f"cloze facts: " + ", ".join(f"{r} {n}" for r, n in info["facts"].items()) + f"\nwrote {a.out}")
    return 0


def table(report: dict) -> str:
    """Per relation P@10 and MRR, and the means over relations (P@1, P@10, MRR)."""
    rows = report["rows"]
    relations = sorted({r for row in rows for r in row["relations"]})
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"{'model':<10} {'params':>7} {'train s':>7} {'loss':>5} " + " ".join(f"{r[:15]:>15}" for r in relations)
             + f" {'P@1':>6} {'P@10':>6} {'MRR':>6}",
             f"{'':<33}" + " ".join(f"{'P@10 / MRR':>15}" for _ in relations) + f" {'mean over relations':>20}"]
    for row in rows:
        cells = [f"{fmt(row['relations'][r]['p@10'])} / {fmt(row['relations'][r]['mrr'])}" for r in relations]
        lines.append(f"{row['member']:<10} {row['parameters'] / 1e6:>6.2f}M {row['train_s']:>7.0f} "
                     f"{row['final_loss']:>5.2f} " + " ".join(f"{c:>15}" for c in cells)
                     + "".join(f" {fmt(row['mean'][k]):>6}" for k in ("p@1", "p@10", "mrr")))
    s = report["settings"]
    lines.append("facts scored: " + ", ".join(f"{r} {rows[0]['relations'][r]['n']}" for r in relations)
                 + f"; each model {s['steps']} steps of {s['batch_size']} × {s['seq_len']} tokens")
    return "\n".join(lines)


def _cmd_compare(a) -> int:
    from ..workflows.knowledge import compare

    report = compare(a.corpus, a.kb, a.out, steps=a.steps)
    print(json.dumps(report, indent=2) if a.json else table(report))
    return 0
