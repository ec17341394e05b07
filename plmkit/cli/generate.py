"""Inference with a pre-trained model: `fill-mask` and `gibbs` for masked LMs, `generate` for the models that
continue text."""

from __future__ import annotations

import json
import sys


def _add_inference(sub) -> None:
    f = sub.add_parser("fill-mask", help="predict the tokens at [MASK] with a masked LM")
    f.add_argument("--model", required=True, metavar="DIR")
    f.add_argument("--text", required=True, help='text with one or more [MASK], e.g. "the [MASK] of the king"')
    f.add_argument("--top-k", type=int, default=5)
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=_cmd_fill_mask)
    b = sub.add_parser("gibbs", help="sample text from a masked LM by Gibbs sampling (BERT generates)", description=(
        "Wang & Cho 2019: the [MASK]s of --text and --length more after it start as [MASK] and are drawn again and "
        "again from the masked LM's distribution given all the other tokens. parallel-sequential (default) "
        "re-draws one random position per iteration, parallel all of them at once, sequential each once from "
        "left to right. During --burnin iterations tokens come from the whole distribution, then from the top-k."))
    b.add_argument("--model", required=True, metavar="DIR", help="a masked LM (BERT, RoBERTa, ALBERT, UniLM, …)")
    b.add_argument("--text", default="", help='fixed text; each [MASK] in it is sampled, e.g. "the [MASK] of the king"')
    b.add_argument("--length", type=int, default=0, help="free positions after the text (default 0)")
    b.add_argument("--mode", default="parallel-sequential", choices=["parallel-sequential", "sequential", "parallel"])
    b.add_argument("--iterations", type=int, default=500, help="of the parallel modes (default 500)")
    b.add_argument("--burnin", type=int, default=250, help="iterations drawing from the whole distribution "
                   "(default 250)")
    b.add_argument("--top-k", type=int, default=100, help="then draw from the k most likely tokens (default 100)")
    b.add_argument("--temperature", type=float, default=1.0)
    b.add_argument("--samples", type=int, default=1, help="independent chains, run as one batch")
    b.add_argument("--seed", type=int)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_gibbs)
    g = sub.add_parser("generate", help="continue prompts with a model that generates (GPT, GPT-2, UniLM, "
                                        "the recurrent and n-gram LMs), or write the target of a source with an "
                                        "encoder–decoder (T5, BART, MASS)", description=(
        "Continues a prompt (--prompt) or every line of a file (--prompts) by greedy search, sampling or beam "
        "search, with a key/value cache. One prompt is printed as text, streamed token by token when the "
        "output is a terminal; --prompts writes JSONL, one object per continuation. An encoder–decoder reads "
        "the prompt as its source (--source and --sources say so) and prints the target alone."))
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", "--source", dest="prompt", help="the text to continue, or an encoder–decoder's "
                     "source")
    src.add_argument("--prompts", "--sources", dest="prompts", metavar="FILE", help="one prompt per line, or JSONL "
                     "({\"prompt\"|\"text\"|\"source\": …} per line, file name ending .jsonl); - reads stdin")
    g.add_argument("--model", required=True, metavar="DIR")
    g.add_argument("--max-new-tokens", type=int, default=40)
    g.add_argument("--min-new-tokens", type=int, default=0, help="no end of text before this many tokens")
    g.add_argument("--temperature", type=float, help="0 = the most likely token (greedy, or beam search); "
                   "default 1 (sampling), or 0 with --num-beams")
    g.add_argument("--top-k", type=int, help="sample from the k most likely tokens only")
    g.add_argument("--top-p", type=float, help="sample from the smallest set of tokens holding probability p")
    g.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams (default 1: none)")
    g.add_argument("--length-penalty", type=float, default=1.0, help="beam score = log-probability ÷ "
                   "length ** this (default 1; > 0 favours longer continuations)")
    g.add_argument("--early-stopping", action="store_true", help="beam search: stop a prompt once --num-beams "
                   "beams have finished")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages tokens already in the "
                   "text (CTRL; default 1: off)")
    g.add_argument("--no-repeat-ngram-size", type=int, default=0, metavar="N", help="never repeat an n-gram")
    g.add_argument("--stop", action="append", default=[], metavar="S", help="end a continuation at this string "
                   "(repeatable); the string is not included")
    g.add_argument("--num-return-sequences", type=int, default=1, metavar="N", help="continuations per prompt")
    g.add_argument("--seed", type=int, help="makes sampling reproducible")
    g.add_argument("--batch-size", type=int, default=8, help="prompts decoded together from --prompts (default 8)")
    g.add_argument("--json", action="store_true", help="print --prompt's result as JSON")
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


def _cmd_gibbs(a) -> int:
    from ..generation import gibbs

    model, tok = _load(a.model)
    res = gibbs(model, tok, a.text, a.length, mode=a.mode, iterations=a.iterations, burnin=a.burnin,
                top_k=a.top_k, temperature=a.temperature, num_samples=a.samples, seed=a.seed, show_progress=True)
    print(json.dumps(res, ensure_ascii=False) if a.json else "\n".join(r["text"] for r in res))
    return 0


def _cmd_generate(a) -> int:
    from ..data.tasks import read_prompts
    from ..generation import generate

    model, tok = _load(a.model)
    settings = dict(max_new_tokens=a.max_new_tokens, min_new_tokens=a.min_new_tokens, temperature=a.temperature,
                    top_k=a.top_k, top_p=a.top_p, num_beams=a.num_beams, length_penalty=a.length_penalty,
                    early_stopping=a.early_stopping, repetition_penalty=a.repetition_penalty,
                    no_repeat_ngram_size=a.no_repeat_ngram_size, stop=a.stop,
                    num_return_sequences=a.num_return_sequences, seed=a.seed)
    if a.prompts is not None:
        prompts = read_prompts(a.prompts)
        results = generate(model, tok, prompts, batch_size=a.batch_size, show_progress=True, **settings)
        for i, res in enumerate(results):
            for r in (res if isinstance(res, list) else [res]):
                print(json.dumps({"index": i, **r}, ensure_ascii=False), flush=True)
        return 0
    stream = sys.stdout.isatty() and not a.json and a.num_beams == 1 and a.num_return_sequences == 1
    if stream:
        if not getattr(model, "encoder_decoder", False):  # a target continues nothing: it is printed alone
            print(a.prompt, end="", flush=True)
        generate(model, tok, a.prompt, on_text=lambda _, text: print(text, end="", flush=True), **settings)
        print()
        return 0
    res = generate(model, tok, a.prompt, **settings)
    if a.json:
        print(json.dumps(res, ensure_ascii=False))
    else:
        print("\n\n".join(r["text"] for r in (res if isinstance(res, list) else [res])))
    return 0


def add_commands(sub) -> None:
    _add_inference(sub)
