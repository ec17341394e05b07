"""`plmkit grover` (metadata-conditioned generation and the detection experiment) and `plmkit detect`."""

from __future__ import annotations

import json


def add_commands(sub) -> None:
    p = sub.add_parser("grover", help="Grover: articles as metadata fields, generation of any field from the "
                                      "others, and detectors of generated text",
                       description="Articles from the shipped King James Bible (domain = section of the canon, "
                                   "headline = book, body = verses). `prepare` writes them; `generate` asks a "
                                   "Grover model (plmkit pretrain --model grover --corpus train.txt) for one "
                                   "field given others; `compare` pre-trains the generator, generates bodies at "
                                   "several nucleus p and fine-tunes detectors on human vs generated bodies.")
    g = p.add_subparsers(dest="grover_command", required=True, metavar="ACTION")
    prep = g.add_parser("prepare", help="write train.txt (the generator's corpus), train.jsonl and heldout.jsonl")
    prep.add_argument("--out", required=True, metavar="DIR")
    prep.add_argument("--verses", type=int, default=3, help="verses per article body (default 3)")
    prep.add_argument("--heldout", type=int, default=240, help="articles kept out of training (default 240)")
    prep.set_defaults(func=_cmd_prepare)
    gen = g.add_parser("generate", help="write one field of an article given its other fields")
    gen.add_argument("--model", required=True, metavar="DIR", help="a Grover model directory")
    gen.add_argument("--field", action="append", default=[], metavar="NAME=TEXT",
                     help="a context field: domain, date, authors, headline or body (repeatable)")
    gen.add_argument("--target", default="body", help="the field to write (default body)")
    gen.add_argument("--max-new-tokens", type=int, default=120)
    gen.add_argument("--top-p", type=float, help="nucleus sampling: the smallest set of tokens holding p")
    gen.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    gen.add_argument("--seed", type=int)
    gen.add_argument("--json", action="store_true")
    gen.set_defaults(func=_cmd_generate)
    cmp = g.add_parser("compare", help="detection accuracy against nucleus p for each detector")
    cmp.add_argument("--out", required=True, metavar="DIR")
    cmp.add_argument("--steps", type=int, help="pre-training steps of the generator and of BERT (default 500)")
    cmp.add_argument("--top-p", type=float, nargs="+", metavar="P", help="default 0.8 0.9 0.95 1.0")
    cmp.add_argument("--detectors", nargs="+", metavar="NAME", help="grover, bert, scratch (default all)")
    cmp.add_argument("--json", action="store_true")
    cmp.set_defaults(func=_cmd_compare)

    d = sub.add_parser("detect", help="the probability that a text is machine-written, by a fine-tuned detector",
                       description="A detector is a classifier fine-tuned on the labels human and machine, e.g. "
                                   "one of the detector-* directories `plmkit grover compare` writes.")
    d.add_argument("--model", required=True, metavar="DIR", help="a fine-tuned detector directory")
    d.add_argument("--text", required=True, nargs="+", help="one or more texts")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_detect)


def _cmd_prepare(a) -> int:
    from ..workflows.grover import prepare

    print(f"wrote {prepare(a.out, a.verses, a.heldout)}")
    return 0


def _cmd_generate(a) -> int:
    from .. import load, load_tokenizer
    from ..errors import PlmkitError
    from ..workflows.grover import generate_field

    article = {}
    for pair in a.field:
        name, eq, text = pair.partition("=")
        if not eq:
            raise PlmkitError(f"--field wants NAME=TEXT, got {pair!r}")
        article[name] = text
    text = generate_field(load(a.model), load_tokenizer(a.model), article, a.target, a.max_new_tokens, a.top_p,
                          a.temperature, a.seed)
    print(json.dumps({**article, a.target: text}) if a.json else text)
    return 0


def table(report: dict) -> str:
    ps = report["top_p"]
    lines = [f"{'detector':<10}" + "".join(f"{'p=' + str(p):>9}" for p in ps)]
    for d, acc in report["accuracy"].items():
        lines.append(f"{d:<10}" + "".join(f"{acc[str(p)]:>9.3f}" for p in ps))
    s = report["settings"]
    lines.append(f"test accuracy on {report['test_examples']} bodies (half human, half generated); generator and "
                 f"BERT {s['steps']} steps of {s['batch_size']} × {s['seq_len']} tokens; chance 0.5")
    return "\n".join(lines)


def _cmd_compare(a) -> int:
    from ..workflows.grover import DETECTORS, TOP_P, compare

    report = compare(a.out, a.steps, tuple(a.top_p or TOP_P), tuple(a.detectors or DETECTORS))
    print(json.dumps(report, indent=2) if a.json else table(report))
    return 0


def _cmd_detect(a) -> int:
    from ..workflows.grover import detect

    probs = detect(a.model, a.text)
    if a.json:
        print(json.dumps([{"text": t, "machine": p} for t, p in zip(a.text, probs)], indent=2))
    else:
        for t, p in zip(a.text, probs):
            print(f"{p:.3f}  {t[:70]}")
    return 0
