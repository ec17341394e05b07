"""`plmkit bakeoff`: every member pre-trained at equal compute, fine-tuned on the same tasks, one table."""

from __future__ import annotations

import json
from pathlib import Path


def add_commands(sub) -> None:
    p = sub.add_parser("bakeoff", help="every member at equal training FLOPs: one table, one plot, the published "
                                       "orderings checked",
                       description="Pre-train each member on the same corpus at the same budget of training FLOPs "
                                   "(counted with torch's FlopCounterMode on one real step of each; the n-gram's "
                                   "counting pass is reported as its cost), fine-tune each on every task with the "
                                   "same recipe and seeds from checkpoints along the way and from scratch, score "
                                   "the left-to-right LMs on held-out text, and write bakeoff.json, table.md "
                                   "(member × task, mean ± sd), bakeoff.png (score against FLOPs) and report.md "
                                   "(the claims of the papers, held or not). A rerun skips finished cells; "
                                   "--members may grow between runs.")
    p.add_argument("--members", metavar="A,B,…", help="registry names, NAME@OBJECTIVE for another objective "
                                                       "(bert@mlm: BERT without NSP); default every member")
    p.add_argument("--corpus", nargs="+", required=True, metavar="F", help="pre-training text")
    compute = p.add_mutually_exclusive_group(required=True)
    compute.add_argument("--budget", type=float, metavar="FLOPS", help="training FLOPs per member, e.g. 2e13")
    compute.add_argument("--minutes", type=float, help="wall-clock minutes of pre-training per member instead")
    p.add_argument("--tasks", nargs="+", required=True, metavar="TASK",
                   help="[NAME=]KIND:TRAIN,DEV[,TEST] (KIND: classify, pair, regress, tag) or a task directory "
                        "with train/dev/test .jsonl or CoNLL .txt files, or the name of a task that ships with "
                        "plmkit (`plmkit tasks`: bible-paraphrase)")
    p.add_argument("--heldout", metavar="F", help="held-out text for the LMs' perplexity per word and bits per byte")
    p.add_argument("--same-tokenizer", metavar="KIND", help="one tokenizer of this kind for every member (default: "
                                                            "one per member's kind, each trained once)")
    p.add_argument("--examples", default="0,0,0", metavar="TRAIN,DEV,TEST",
                   help="cut each task's splits to this many examples, a fixed sample (0: all; default all)")
    p.add_argument("--out", required=True, metavar="DIR", help="the bake-off directory (reruns continue it)")
    s = p.add_argument_group("recipe (the same for every member)")
    s.add_argument("--size", default="tiny", help="size preset (default tiny)")
    s.add_argument("--seq-len", type=int, default=64, help="pre-training tokens per sequence (default 64)")
    s.add_argument("--batch-size", type=int, default=16, help="pre-training sequences per step (default 16)")
    s.add_argument("--lr", type=float, default=1e-3, help="pre-training peak learning rate (default 1e-3)")
    s.add_argument("--vocab-size", type=int, default=4000, help="tokenizer vocabulary (default 4000)")
    s.add_argument("--points", default="0.25,0.5,1", metavar="F,…",
                   help="fractions of the budget whose checkpoints are fine-tuned (default 0.25,0.5,1)")
    s.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds per cell (default 3)")
    s.add_argument("--ft-steps", type=int, default=100, help="fine-tuning steps (default 100)")
    s.add_argument("--ft-lr", type=float, default=1e-4, help="fine-tuning learning rate (default 1e-4)")
    s.add_argument("--ft-batch-size", type=int, default=16, help="fine-tuning batch (default 16)")
    s.add_argument("--max-length", type=int, default=64, help="fine-tuning tokens per example (default 64)")
    s.add_argument("--eval-every", type=int, default=25, help="fine-tuning steps between dev evaluations; the "
                                                              "best is kept (default 25)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="members run at once, each in its own process with its share of the cores (default 1; "
                        "wall-clock is then measured beside the other jobs)")
    p.add_argument("--json", action="store_true", help="print bakeoff.json instead of the table and claims")
    p.set_defaults(func=_cmd_bakeoff)


def _numbers(text: str, kind, name: str) -> tuple:
    from ..errors import PlmkitError

    try:
        return tuple(kind(x) for x in text.split(","))
    except ValueError:
        raise PlmkitError(f"{name} takes numbers separated by commas, got {text!r}") from None


def _cmd_bakeoff(a) -> int:
    from ..errors import PlmkitError
    from ..workflows.bakeoff import Settings, bakeoff, markdown_table, parse_task

    examples = _numbers(a.examples, int, "--examples")
    if len(examples) != 3 or min(examples) < 0:
        raise PlmkitError(f"--examples takes three counts TRAIN,DEV,TEST (0: all), got {a.examples!r}")
    settings = Settings(size=a.size, seq_len=a.seq_len, batch_size=a.batch_size, lr=a.lr, vocab_size=a.vocab_size,
                        points=_numbers(a.points, float, "--points"), seeds=a.seeds, ft_steps=a.ft_steps,
                        ft_lr=a.ft_lr, ft_batch_size=a.ft_batch_size, max_length=a.max_length,
                        eval_every=a.eval_every, lm_window=a.seq_len)
    r = bakeoff(a.out, a.corpus, [parse_task(t, Path(a.out) / "shipped") for t in a.tasks],
                members=a.members.split(",") if a.members else None, budget=a.budget, minutes=a.minutes,
                heldout=a.heldout, same_tokenizer=a.same_tokenizer, examples=examples, settings=settings,
                progress=not a.quiet, jobs=a.jobs)
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(markdown_table(r))
    print()
    for c in r["claims"]:
        print(f"{c['verdict']:>20}  {c['claim']}")
    print(f"\nwrote {a.out}/bakeoff.json, table.md, bakeoff.png, report.md")
    return 0
