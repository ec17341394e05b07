"""Commands that build models from raw text: `tokenizer train`, `pretrain` and the four-stage `recipe`."""

from __future__ import annotations

import json
import os

from ..errors import PlmkitError
from ..tokenizers.train import KINDS


def _add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="pre-train a family member on a raw text corpus",
                       description="Train a tokenizer on the corpus (or use --tokenizer), write token shards, and "
                                   "pre-train the member with its paper's objective. Settings: size preset < "
                                   "--config TOML ([model], [train], [data] tables) < flags.")
    p.add_argument("--model", help="family member, e.g. bert or gpt (see `plmkit family`); optional with --init")
    p.add_argument("--init", metavar="DIR", help="continue pre-training this saved model (plmkit or Hugging Face "
                   "directory) on --corpus: domain- or task-adaptive pre-training; its member, config and "
                   "tokenizer are kept")
    p.add_argument("--objective", help="train with this objective instead of the member's own, e.g. simcse "
                   "(unsupervised SimCSE: a saved encoder learns sentence vectors from one sentence per line)")
    p.add_argument("--size", default="tiny", help="size preset: tiny, mini, small, medium, base (default tiny)")
    p.add_argument("--corpus", nargs="+", required=True, metavar="F",
                   help="plain-text files: one paragraph per line, a blank line between documents")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory (model, logs, checkpoints)")
    p.add_argument("--config", metavar="F.toml", help="TOML with [model], [train] and [data] tables")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in --out")
    p.add_argument("--tokenizer", metavar="DIR", help="use this tokenizer instead of training one")
    p.add_argument("--vocab-size", type=int, help="vocabulary of the tokenizer trained on the corpus (default 8000)")
    p.add_argument("--seq-len", type=int, help="tokens per training sequence (default 128)")
    p.add_argument("--workers", type=int, help="processes for tokenizing the corpus (default: up to 2)")
    p.add_argument("--kb", metavar="DIR", help="knowledge base for members that fuse entities (ernie-thu), "
                   "written by `plmkit knowledge prepare`")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="model_set",
                   help="set a model config field, e.g. --set order=4 (repeatable; JSON values; like [model] in TOML)")
    for flag, typ, what in [("--steps", int, "optimizer steps (default 1000)"),
                            ("--batch-size", int, "sequences per step per process (default 32)"),
                            ("--grad-accum", int, "micro-batches per optimizer step (default 1)"),
                            ("--lr", float, "peak learning rate (default 1e-3)"),
                            ("--warmup-steps", int, "linear warm-up steps (default 0)"),
                            ("--schedule", str, "linear, cosine, constant or slanted_triangular"),
                            ("--precision", str, "fp32 or bf16 (autocast); fp16 on CUDA"),
                            ("--save-every", int, "checkpoint every N steps (default: at the end only)"),
                            ("--log-every", int, "log every N steps (default 10)"),
                            ("--seed", int, "seed for data order, masking and dropout (default 0)"),
                            ("--device", str, "auto, cpu or cuda (default auto)")]:
        p.add_argument(flag, type=typ, help=what)
    p.set_defaults(func=_cmd_pretrain)


def _add_recipe(sub) -> None:
    p = sub.add_parser("recipe", help="the four-stage recipe: general → domain → task pre-training → fine-tuning",
                       description="Run a recipe file: pre-train (or start from a saved model), continue "
                                   "pre-training on domain text, then on the task's own text, then fine-tune; with "
                                   "compare = true in [finetune], also fine-tune from scratch and after each "
                                   "earlier stage and print the table. A rerun skips finished stages. The file "
                                   "format is in plmkit/workflows/recipe.py's docstring and the README.")
    p.add_argument("recipe", metavar="F.toml")
    p.add_argument("--out", required=True, metavar="DIR", help="one run directory per stage, and recipe.json")
    p.add_argument("--json", action="store_true", help="print recipe.json instead of the table")
    p.set_defaults(func=_cmd_recipe)


def _cmd_recipe(a) -> int:
    from ..workflows.recipe import run_recipe

    r = run_recipe(a.recipe, a.out)
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    for s in r["stages"]:
        print(f"{s['stage']:<8} {s['steps']:>6} steps  {s['tokens']:>10,} tokens  {s['seconds']:>7.0f} s  "
              f"final loss {s['final_loss']:.3f}")
    for label, f in r["finetune"].items():
        test = f"  test {f['test']:.4f}" if "test" in f else ""
        print(f"fine-tuned {label:<16} dev {f['metric']} {f['dev']:.4f}{test}")
    return 0


def _cmd_pretrain(a) -> int:
    from ..workflows.pretrain import pretrain

    train = {k: getattr(a, k) for k in ("steps", "batch_size", "grad_accum", "lr", "warmup_steps", "schedule",
                                        "precision", "save_every", "log_every", "seed", "device")
             if getattr(a, k) is not None}
    data = {k: getattr(a, k) for k in ("vocab_size", "seq_len", "tokenizer", "workers", "kb") if getattr(a, k) is not None}
    if not (a.model or a.init):
        raise PlmkitError("pretrain needs --model NAME, or --init DIR to continue a saved model")
    summary = pretrain(a.model, a.corpus, a.out, size=a.size, model_overrides=_key_values(a.model_set),
                       train_overrides=train, data_overrides=data, config_file=a.config, resume=a.resume,
                       init=a.init, objective=a.objective)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary rather than one per process
        print(json.dumps(summary, indent=2))
    return 0


def _key_values(pairs: list[str]) -> dict:
    """["order=4", "direct=false", "cell=lstm"] → {"order": 4, "direct": False, "cell": "lstm"}."""
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise PlmkitError(f"--set wants KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare string
    return out


def _add_tokenizer(sub) -> None:
    p = sub.add_parser("tokenizer", help="train a tokenizer")
    tsub = p.add_subparsers(dest="action", required=True)
    t = tsub.add_parser("train", help="train a tokenizer on text files and save tokenizer.json",
                        description="Train with the Hugging Face `tokenizers` library, streaming the corpus.")
    t.add_argument("--kind", required=True, choices=KINDS)
    t.add_argument("--corpus", nargs="+", required=True, metavar="F")
    t.add_argument("--vocab-size", type=int, default=8000)
    t.add_argument("--out", required=True, metavar="DIR")
    t.set_defaults(func=_cmd_tokenizer_train)


def _cmd_tokenizer_train(a) -> int:
    from ..tokenizers import train_tokenizer

    tok = train_tokenizer(a.kind, a.corpus, a.vocab_size, out_dir=a.out)
    print(json.dumps({"out": a.out, "kind": a.kind, "vocab_size": tok.vocab_size}))
    return 0


def add_commands(sub) -> None:
    _add_tokenizer(sub)
    _add_pretrain(sub)
    _add_recipe(sub)
