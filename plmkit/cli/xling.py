"""`plmkit xling`: cross-lingual pre-training compared on the shipped English–Chinese Bible (prepare the
split, evaluate one model, or pre-train and evaluate several)."""

from __future__ import annotations

import json

COLUMNS = (("retrieval_en_zh", "retrieval en→zh"), ("retrieval_zh_en", "retrieval zh→en"),
           ("centred_en_zh", "centred en→zh"), ("centred_zh_en", "centred zh→en"),
           ("zero_shot_en_zh", "zero-shot en→zh"), ("zero_shot_zh_en", "zero-shot zh→en"),
           ("in_language_en", "en→en"))


def add_commands(sub) -> None:
    p = sub.add_parser("xling", help="cross-lingual members on the shipped English–Chinese Bible: bitext "
                                     "retrieval and zero-shot transfer",
                       description="Bitext retrieval (each verse's translation among all held-out verses, by "
                                   "cosine of sentence vectors) and zero-shot transfer (a classifier of the "
                                   "verse's section of the canon trained on one language's vectors, tested on "
                                   "the other's).")
    x = p.add_subparsers(dest="xling_command", required=True, metavar="ACTION")
    prep = x.add_parser("prepare", help="write the bitext, the held-out pairs, the two-language task and an "
                                        "English → Chinese translation task")
    prep.add_argument("--out", required=True, metavar="DIR", help="where to write the prepared files")
    prep.add_argument("--heldout", type=int, default=1000, help="verse pairs held out for retrieval")
    prep.add_argument("--per-section", type=int, default=50, help="train and test verses per section")
    prep.add_argument("--translate-train", type=int, default=5000, help="translation training pairs, from the "
                      "verses not held out (default 5000; dev and test come from the held-out ones)")
    prep.set_defaults(func=_cmd_prepare)
    ev = x.add_parser("evaluate", help="score one model directory on a prepared split")
    ev.add_argument("--model", required=True, metavar="DIR")
    ev.add_argument("--data", required=True, metavar="DIR", help="what `plmkit xling prepare` wrote")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_cmd_evaluate)
    cmp = x.add_parser("compare", help="pre-train members on the bitext with equal settings and score each")
    cmp.add_argument("--out", required=True, metavar="DIR", help="run directory: a model per member and "
                     "the comparison table")
    cmp.add_argument("--models", nargs="+", default=None, metavar="NAME", help="default: xlm laser bert")
    cmp.add_argument("--steps", type=int, help="pre-training steps per member (default 600)")
    cmp.add_argument("--json", action="store_true")
    cmp.set_defaults(func=_cmd_compare)


def _cmd_prepare(a) -> int:
    from ..workflows.xling import prepare

    print(prepare(a.out, a.heldout, a.per_section, translate_train=a.translate_train))
    return 0


def _table(rows: list[dict]) -> str:
    lines = [f"{'model':<10}" + "".join(f"{title:>17}" for _, title in COLUMNS)]
    lines += [f"{r['member']:<10}" + "".join(f"{r[key]:>17.3f}" for key, _ in COLUMNS) for r in rows]
    return "\n".join(lines)


def _cmd_evaluate(a) -> int:
    from ..workflows.xling import evaluate

    row = evaluate(a.model, a.data)
    print(json.dumps(row, indent=2) if a.json else _table([row]))
    return 0


def _cmd_compare(a) -> int:
    from ..workflows.xling import MEMBERS, compare

    rows = compare(a.out, tuple(a.models or MEMBERS), a.steps)
    print(json.dumps(rows, indent=2) if a.json else _table(rows))
    return 0
