"""Commands of the lineage before the Transformer: `plmkit evaluate-lm` (every left-to-right LM, GPT
included) and `plmkit probe-words` (analogies and word similarity of static word vectors)."""

from __future__ import annotations

import json
from pathlib import Path


def add_commands(sub) -> None:
    e = sub.add_parser("evaluate-lm", help="perplexity per word and bits per byte of a causal LM on a text",
                       description="Score a plain-text file (one paragraph per line, blank lines between "
                                   "documents) with any left-to-right LM: n-gram, FFNN, RNN, LSTM, GPT. "
                                   "Perplexity is per whitespace word and bits are per UTF-8 byte, so models "
                                   "with different tokenizers compare on the same text.")
    e.add_argument("--model", required=True, metavar="DIR", help="a saved model directory")
    e.add_argument("--data", required=True, metavar="F", help="the held-out text")
    e.add_argument("--window", type=int, default=512, help="tokens per forward pass (default 512, at most "
                                                           "the model's max_positions)")
    e.add_argument("--stride", type=int, help="new tokens scored per window (default window / 2)")
    e.add_argument("--mem-len", type=int, metavar="N",
                   help="a model with a memory (transformer-xl): score consecutive segments of --window tokens, "
                        "each attending also to the states of the N tokens before it (0: no memory)")
    e.add_argument("--out", metavar="FILE", help="also write the metrics JSON here")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.set_defaults(func=_cmd_evaluate_lm)
    w = sub.add_parser("probe-words", help="analogy accuracy and word-similarity Spearman of word vectors",
                       description="Probe a model's input word vectors (word2vec, or any member whose tokens are "
                                   "words): analogies by vector offset, SimLex-999 and WordSim-353 Spearman.")
    w.add_argument("--model", required=True, metavar="DIR", help="a saved model directory, e.g. a word2vec run")
    w.add_argument("--probes", required=True, metavar="DIR", help="folder with analogies/facts.jsonl and "
                                                                 "word-similarity/{simlex999,wordsim353}.tsv")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=_cmd_probe_words)


def _cmd_evaluate_lm(a) -> int:
    from .. import load, load_tokenizer
    from ..evaluation.lm import evaluate_lm

    # `plmkit evaluate --task lm` has no --window/--stride/--mem-len: evaluate_lm's defaults then apply.
    options = {k: getattr(a, k) for k in ("window", "stride", "mem_len") if getattr(a, k, None) is not None}
    metrics = evaluate_lm(load(a.model), load_tokenizer(a.model), a.data, **options)
    metrics = {"model_dir": a.model, "data": a.data, **metrics}
    if a.out:
        Path(a.out).write_text(json.dumps(metrics, indent=2) + "\n")
    if a.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{metrics['model']}: perplexity {metrics['perplexity']:.2f} per word, "
              f"{metrics['bits_per_byte']:.3f} bits per byte ({metrics['tokens']} tokens, {metrics['words']} words)")
    return 0


def _cmd_probe_words(a) -> int:
    from .. import load, load_tokenizer
    from ..evaluation.word_probes import probe

    model, tok = load(a.model), load_tokenizer(a.model)
    emb = model.embeddings.tokens if hasattr(model.embeddings, "tokens") else model.embeddings
    res = probe(emb.weight.detach().float().numpy(), tok.backend.get_vocab(), a.probes)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        an = res["analogies"]
        print(f"analogies: {an['accuracy']:.3f} accuracy on {an['questions']} questions "
              f"({an['coverage']:.0%} in vocabulary)")
        for name in ("simlex999", "wordsim353"):
            r = res[name]
            rho = "n/a" if r["spearman"] is None else f"{r['spearman']:.3f}"
            print(f"{name}: Spearman {rho} on {r['pairs']} pairs ({r['coverage']:.0%} in vocabulary)")
    return 0
