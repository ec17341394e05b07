"""Commands that make a trained model smaller or faster: `compress METHOD` (one method, any registered in
plmkit/compress/) and `frontier` (every chosen method on one teacher, the size/speed/accuracy picture)."""

from __future__ import annotations

import argparse
import json

_FRONT = ("teacher and student scored on --test (else --dev) and timed at batch 1 and 32 on the same examples; "
          "writes the student (a fine-tuned directory that `plmkit evaluate`, `predict` and `bench infer` read), "
          "eval.json and compression.json to --out.")


def add_commands(sub) -> None:
    c = sub.add_parser("compress", help="compress a fine-tuned (or pre-trained) model with one method",
                       usage="plmkit compress {list | METHOD --model DIR [options] --train F --dev F [--test F] "
                             "--out DIR}",
                       description="Run compression method METHOD (`plmkit compress list` names them; "
                                   "`plmkit compress METHOD --help` shows its options and recipe) on the teacher "
                                   "in --model: " + _FRONT + " Methods that support it also distil a "
                                   "pre-trained teacher on a --corpus instead (general distillation).")
    method = c.add_argument("method", metavar="METHOD", help="a registered method, or list")
    method.known = _Methods()  # the values it takes, for the reading list's links (an unknown one: see get())
    c.add_argument("args", nargs=argparse.REMAINDER, help="the method's arguments (see METHOD --help)")
    c.set_defaults(func=_cmd_compress)

    f = sub.add_parser("frontier", help="every compression method on one teacher: the size/speed/accuracy table "
                                        "and plot",
                       description="Run each of --methods with its defaults on the fine-tuned teacher in --model "
                                   "(into --out/METHOD; a method already done there is reused), time the teacher "
                                   "and all students together on the --test examples, and write frontier.json, "
                                   "frontier.md (the table) and frontier.png (test score against examples/s at "
                                   "batch 32 and against weight size, the Pareto fronts marked).")
    f.add_argument("--model", required=True, metavar="DIR", help="the teacher: a `plmkit finetune` directory")
    f.add_argument("--methods", metavar="A,B,…", help="methods to run, comma-separated (default: every registered "
                   "task method)")
    f.add_argument("--train", required=True, metavar="F")
    f.add_argument("--dev", required=True, metavar="F", help="for the students' model selection")
    f.add_argument("--test", required=True, metavar="F", help="scored and timed")
    f.add_argument("--out", required=True, metavar="DIR")
    f.add_argument("--set", action="append", default=[], metavar="[METHOD.]KEY=VALUE", dest="settings",
                   help="an option for every method that has it (epochs=2), or for one (pkd.strategy=last); "
                        "repeatable")
    f.add_argument("--json", action="store_true", help="print frontier.json instead of the table")
    f.set_defaults(func=_cmd_frontier)


class _Methods:
    """The registered method names and `list`, read when asked (importing the methods imports torch)."""

    def _names(self) -> list[str]:
        from ..compress import methods

        return ["list", *(m.name for m in methods())]

    def __contains__(self, name) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


def _method_parser(m) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"plmkit compress {m.name}", description=m.description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="DIR", help="the teacher: a `plmkit finetune` directory"
                   + (" (with --corpus: a pre-trained one)" if m.general else ""))
    p.add_argument("--train", metavar="F", help="training examples of the teacher's task")
    p.add_argument("--dev", metavar="F", help="dev examples, for the student's model selection")
    p.add_argument("--test", metavar="F", help="scored and timed for teacher and student (else --dev)")
    if m.general:
        p.add_argument("--corpus", metavar="F", help="general distillation on this plain-text corpus instead of "
                       "a task: writes a pre-trained student")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--json", action="store_true", help="print compression.json")
    group = p.add_argument_group(f"{m.name} options")
    for o in m.options:
        if o.type is bool:
            group.add_argument(o.flag, action="store_true", dest=f"opt_{o.name}", help=o.help)
        else:
            group.add_argument(o.flag, dest=f"opt_{o.name}", metavar=o.name.upper(), choices=o.choices, help=o.help,
                               type=o.type)
    return p


def _cmd_compress(a) -> int:
    from ..compress import get, methods
    from ..workflows.compress import compress

    if a.method == "list":
        width = max(len(m.name) for m in methods())
        for m in methods():
            print(f"{m.name:<{width}}  {m.summary}" + (" [also --corpus: general distillation]" if m.general else ""))
        return 0
    m = get(a.method)
    args = _method_parser(m).parse_args(a.args)
    given = {k[len("opt_"):]: v for k, v in vars(args).items() if k.startswith("opt_") and v not in (None, False)}
    r = compress(m.name, args.model, args.out, train=args.train, dev=args.dev, test=args.test,
                 corpus=getattr(args, "corpus", None), options=given, progress=not a.quiet)
    if args.json or "speedup" not in r:
        print(json.dumps(r, indent=2))
        return 0
    metric, split = r["metric"], r["split"]
    t, s = r["teacher"], r["student"]
    print(f"{m.name}: {split} {metric} {t[split][metric]:.4f} → {s[split][metric]:.4f} ({r['retained']:.1%} kept); "
          f"{t['parameters'] / 1e6:.2f}M → {s['parameters'] / 1e6:.2f}M parameters ({r['size_ratio']:.1f}x smaller "
          f"on disk); examples/s at batch 32 {t['examples_per_s']['32']:.1f} → {s['examples_per_s']['32']:.1f} "
          f"({r['speedup']['32']:.2f}x), batch 1 {r['speedup']['1']:.2f}x; {r['seconds']:.0f} s")
    return 0


def _cmd_frontier(a) -> int:
    from ..compress import methods
    from ..errors import PlmkitError
    from ..workflows.frontier import frontier, table

    names = [x.strip() for x in a.methods.split(",") if x.strip()] if a.methods else [m.name for m in methods()]
    settings = {}
    for pair in a.settings:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise PlmkitError(f"--set wants [METHOD.]KEY=VALUE, got {pair!r}")
        settings[key.strip()] = value.strip()
    r = frontier(a.model, names, a.train, a.dev, a.test, a.out, settings, progress=not a.quiet)
    print(json.dumps(r, indent=2) if a.json else table(r))
    return 0
