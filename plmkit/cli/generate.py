"""Inference with a pre-trained model: `fill-mask` for masked LMs, `generate` for causal LMs."""

from __future__ import annotations

import json


def _add_inference(sub) -> None:
    f = sub.add_parser("fill-mask", help="predict the tokens at [MASK] with a masked LM")
    f.add_argument("--model", required=True, metavar="DIR")
    f.add_argument("--text", required=True, help='text with one or more [MASK], e.g. "the [MASK] of the king"')
    f.add_argument("--top-k", type=int, default=5)
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=_cmd_fill_mask)
    g = sub.add_parser("generate", help="continue a prompt with a causal LM")
    g.add_argument("--model", required=True, metavar="DIR")
    g.add_argument("--prompt", required=True)
    g.add_argument("--max-new-tokens", type=int, default=40)
    g.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    g.add_argument("--top-k", type=int)
    g.add_argument("--top-p", type=float)
    g.add_argument("--seed", type=int)
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=_cmd_generate)


def _load(path):
    from .. import load, load_tokenizer

    return load(path), load_tokenizer(path)


def _cmd_fill_mask(a) -> int:
    from ..generation import fill_mask

    model, tok = _load(a.model)
    res = fill_mask(model, tok, a.text, a.top_k)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        for j, fills in enumerate(res):
            print(f"[MASK] #{j + 1}:")
            for r in fills:
                print(f"  {r['score']:.3f}  {r['token']:<15} {r['sequence']}")
    return 0


def _cmd_generate(a) -> int:
    from ..generation import generate

    model, tok = _load(a.model)
    res = generate(model, tok, a.prompt, a.max_new_tokens, a.temperature, a.top_k, a.top_p, a.seed)
    print(json.dumps(res) if a.json else res["text"])
    return 0


def add_commands(sub) -> None:
    _add_inference(sub)
