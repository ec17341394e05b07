"""`plmkit analyze METHOD`: look inside any member plmkit loads (its own directories, transformers ones,
fine-tuned ones), one sub-command per method of plmkit.analysis, and `all` for the report page."""

from __future__ import annotations

import json

_WHAT = {
    "attention": "attention maps of a sentence, head statistics over a corpus sample (entropy, attention to "
                 "[CLS]/[SEP]/punctuation/previous/next token), dependency accuracy with --parse "
                 "(Clark et al. 2019). Transformers only.",
    "heads": "head importance, Michel et al. 2019's gradient proxy through head gates, and the metric as the "
             "least important heads are pruned: the task loss and metric of a fine-tuned directory on --data, "
             "else the LM loss and token accuracy on --corpus. Transformers with a loss only.",
    "probe": "linear probes on every layer (word labels from CoNLL, sentence labels from JSONL), the control-task "
             "selectivity of Hewitt & Liang 2019, scalar-mix weights, centre of gravity and expected layer "
             "(Tenney et al. 2019). Every neural member.",
    "cloze": "LAMA-style factual probes (Petroni et al. 2019): P@1/P@10 per relation from templates, and negated "
             "templates (Kassner & Schütze 2020). Masked LMs with their MLM head, and causal LMs.",
    "numeracy": "Wallace et al. 2019's numeracy probes (list maximum, decoding, addition) on the token embedding "
                "and every layer, against random vectors. Every neural member.",
    "geometry": "anisotropy, self-similarity, intra-sentence similarity and first-PC variance per layer "
                "(Ethayarajh 2019); CKA and RSA between layers, of this model or against --compare. Every neural "
                "member.",
    "perturbed-masking": "Wu et al. 2020's impact matrix and the tree Eisner's algorithm induces from it; UAS "
                         "against gold trees (--parse) and the right-branching baseline. Bidirectional "
                         "transformers with a mask token.",
    "syntax": "subject–verb agreement and negative-polarity-item minimal pairs: templates (Marvin & Linzen 2018; "
              "Warstadt et al. 2019) and agreement pairs mined from --corpus by flipping an auxiliary's number; a "
              "masked LM compares the forms at [MASK] (Goldberg 2019), a causal LM the whole sentences; accuracy "
              "per construction against the random and majority-form baselines. Masked LMs with their MLM head, "
              "and causal LMs.",
    "robustness": "TextFooler word-substitution attacks (Jin et al. 2020: importance by deletion, word2vec "
                  "neighbours, a sentence-similarity constraint, greedy until the label flips) and universal "
                  "adversarial triggers found by HotFlip (Wallace et al. 2019): success rate, perturbed-word ratio, "
                  "queries per example, accuracy under attack and with triggers. Fine-tuned classifiers.",
    "all": "every method that applies to the model, into DIR/report/index.html: a static page (works from a "
           "file:// URL) with the figures, tables, the model's card and an interactive attention view; methods "
           "that do not apply, or lack their input, are listed with the reason.",
}


def _corpus(p, default_help: str = "sentences for the corpus statistics") -> None:
    p.add_argument("--corpus", metavar="F", help=f"{default_help}: a text file (one sentence per line) or a CoNLL "
                   "file (default: verses of the King James Bible that ships with plmkit)")
    p.add_argument("--sample", type=int, default=200, metavar="N", help="sentences drawn from --corpus (default 200)")


def add_commands(sub) -> None:
    a = sub.add_parser("analyze", help="look inside a model: attention, heads, probes, cloze, numeracy, geometry, "
                       "perturbed masking, syntax, robustness, or all into a report page",
                       description="Analysis methods from the literature on any model directory plmkit loads. "
                                   "Each writes JSON and PNG files into --out.")
    methods = a.add_subparsers(dest="method", required=True, metavar="METHOD")
    parsers = {name: methods.add_parser(name, help=what.split(":")[0].split(" (")[0], description=what)
               for name, what in _WHAT.items()}
    for p in parsers.values():
        p.add_argument("--model", required=True, metavar="DIR", help="model directory (plmkit, transformers or "
                       "fine-tuned)")
        p.add_argument("--out", required=True, metavar="DIR", help="where the JSON and figures go")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
    for name in ("attention", "all"):
        parsers[name].add_argument("--sentence", help="the sentence whose attention is drawn (default: the first of "
                                   "the corpus sample)")
    for name in ("attention", "heads", "geometry", "perturbed-masking", "all"):
        _corpus(parsers[name])
    _corpus(parsers["syntax"], "sentences to mine agreement pairs from")
    parsers["syntax"].add_argument("--per-construction", type=int, default=200, metavar="N",
                                   help="template pairs drawn per construction (default 200)")
    r = parsers["robustness"]
    r.add_argument("--data", metavar="F", help="labelled test examples (default: the --test file the fine-tuning "
                   "run recorded)")
    r.add_argument("--train", metavar="F", help="labelled training examples: the trigger search, and the gensim "
                   "vectors without --vectors (default: the fine-tuning run's --train)")
    r.add_argument("--vectors", metavar="DIR", help="word2vec directory (plmkit pretrain --model word2vec) for the "
                   "substitutes; default: skip-gram vectors trained with gensim on --train")
    r.add_argument("--encoder", metavar="DIR", help="model whose mean-pooled last layer measures sentence "
                   "similarity (default: the classifier's own body)")
    r.add_argument("--max-examples", type=int, default=100, metavar="N", help="test examples attacked (default 100)")
    r.add_argument("--candidates", type=int, default=30, metavar="K",
                   help="word2vec neighbours tried per word (default 30)")
    r.add_argument("--min-cosine", type=float, default=0.5, help="least word-vector cosine of a substitute "
                   "(default 0.5)")
    r.add_argument("--min-similarity", type=float, default=0.7,
                   help="least sentence-vector cosine of the perturbed window to the original (default 0.7)")
    r.add_argument("--max-queries", type=int, default=2000, help="classifier queries per example (default 2000)")
    r.add_argument("--trigger-length", type=int, default=3, help="tokens in each universal trigger (default 3)")
    r.add_argument("--trigger-rounds", type=int, default=4, help="passes of HotFlip over the trigger (default 4)")
    for name in ("attention", "perturbed-masking", "all"):
        parsers[name].add_argument("--parse", metavar="F.conllu", help="gold dependency trees (CoNLL-U)")
    parsers["heads"].add_argument("--data", metavar="F", help="a fine-tuned model's labelled task data")
    parsers["all"].add_argument("--task-data", metavar="F", help="heads of a fine-tuned model: labelled task data")
    for name in ("probe", "all"):
        parsers[name].add_argument("--data", nargs="+", metavar="F", required=name == "probe",
                                   help="probe task: a folder with train/dev/test files, or one to three files "
                                        "(train, dev, test); CoNLL token<TAB>tag for word labels, JSONL "
                                        "{\"text\", \"label\"} for sentence labels")
        parsers[name].add_argument("--max-train", type=int, default=1000, metavar="N",
                                   help="training examples drawn (default 1000)")
        parsers[name].add_argument("--max-eval", type=int, default=500, metavar="N",
                                   help="evaluation examples drawn (default 500)")
    for name in ("cloze", "all"):
        parsers[name].add_argument("--facts", metavar="F", required=name == "cloze",
                                   help="JSONL {\"relation\", \"subject\", \"object\"} per line, e.g. "
                                        "shared/data/probes/analogies/facts.jsonl")
        parsers[name].add_argument("--templates", metavar="F.json", help="{relation: {\"template\": \"[X] … [Y].\", "
                                   "\"negated\": …}}; built-in templates cover the analogy relations")
    parsers["numeracy"].add_argument("--range", default="0:99", metavar="LOW:HIGH",
                                     help="the integers probed (default 0:99)")
    parsers["numeracy"].add_argument("--steps", type=int, default=300, help="training steps per probe (default 300)")
    for name in ("geometry", "all"):
        parsers[name].add_argument("--compare", metavar="DIR", help="a second model: CKA/RSA between its layers and "
                                   "this model's, on the same words")
    parsers["geometry"].add_argument("--min-count", type=int, default=5,
                                     help="occurrences a word type needs for self-similarity (default 5)")
    parsers["perturbed-masking"].add_argument("--max-words", type=int, default=30,
                                              help="longer sentences are skipped (W² passes each; default 30)")
    a.set_defaults(func=_cmd)


def _sentences(a):
    from ..analysis import inputs

    if getattr(a, "corpus", None):
        return inputs.read_sentences(a.corpus, a.sample)
    return inputs.shipped_sentences(a.sample)


def _cmd(a) -> int:
    import contextlib
    from pathlib import Path

    from tqdm import tqdm

    from ..analysis import METHODS, inputs, report
    from ..errors import PlmkitError

    loaded = inputs.load(a.model)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.method != "all":
        reason = METHODS[a.method].requires(loaded)
        if reason:
            raise PlmkitError(f"{a.method} does not apply to this model: {reason}", path=a.model)
    parsed = inputs.read_conllu(a.parse) if getattr(a, "parse", None) else None
    m = a.method
    if m == "cloze":
        from ..analysis import cloze

        res = cloze.run(loaded, out, cloze.read_facts(a.facts, a.templates))
        text = cloze.table(res)
    elif m == "numeracy":
        from ..analysis import numeracy

        try:
            low, high = (int(v) for v in a.range.split(":"))
        except ValueError:
            raise PlmkitError(f"--range must be LOW:HIGH integers, got {a.range!r}") from None
        if high - low < 10:
            raise PlmkitError("--range needs at least 10 integers")
        res = numeracy.run(loaded, out, low, high, a.steps)
        text = "\n".join(f"{k:<16} list max {v['list_max_accuracy']:.3f}  decoding RMSE {v['decoding_rmse']:.2f}  "
                         f"addition RMSE {v['addition_rmse']:.2f}" for k, v in res["representations"].items())
    elif m == "syntax":
        from ..analysis import syntax

        if a.per_construction < 1:
            raise PlmkitError("--per-construction must be at least 1")
        corpus = _sentences(a)
        with tqdm(desc="syntax", unit="pair") as bar:
            res = syntax.run(loaded, out, corpus, a.per_construction, mined=None, progress=bar)
        text = syntax.table(res)
    elif m == "robustness":
        from ..analysis import robustness

        if a.max_examples < 1 or a.candidates < 1 or a.max_queries < 1 or a.trigger_length < 1:
            raise PlmkitError("--max-examples, --candidates, --max-queries and --trigger-length must be positive")
        with tqdm(desc="robustness", unit="example") as bar:
            res = robustness.run(loaded, out, a.data, a.train, a.vectors, a.encoder, a.max_examples, a.candidates,
                                 a.min_cosine, a.min_similarity, a.max_queries, a.trigger_length,
                                 a.trigger_rounds, progress=bar)
        text = robustness.table(res)
    elif m == "probe":
        from ..analysis import probe

        with tqdm(desc="representations", unit="example") as bar:
            res = probe.run(loaded, out, a.data, a.max_train, a.max_eval, progress=bar)
        text = "\n".join(f"layer {r['layer']}: accuracy {r['accuracy']:.3f}" + (
            f"  control {r['control']:.3f}  selectivity {r['selectivity']:.3f}" if "control" in r else "")
            for r in res["layers"]) + (f"\nscalar mix {res['mix']['accuracy']:.3f}, centre of gravity "
                                       f"{res['mix']['center_of_gravity']:.2f}, expected layer "
                                       f"{res['cumulative']['expected_layer']:.2f}")
    else:
        sentences = _sentences(a) if hasattr(a, "corpus") else []
        sentence = a.sentence.split() if getattr(a, "sentence", None) else (sentences[0] if sentences else [])
        if m == "all":
            from ..analysis import cloze

            x = report.Inputs(sentence, sentences, a.data, cloze.read_facts(a.facts, a.templates) if a.facts else None,
                              parsed, a.task_data, inputs.load(a.compare) if a.compare else None,
                              a.max_train, a.max_eval)
            with tqdm(total=len(METHODS), desc="analysis", unit="method") as bar:
                res = report.run_all(loaded, out, x, progress=bar)
            text = "\n".join(f"{k:<18} {v['status']}" + (f" in {v['seconds']:.1f} s" if "seconds" in v else
                                                          f": {v['reason']}") for k, v in res["methods"].items())
            text += f"\nreport: {res['report']}"
        else:
            x = report.Inputs(sentence, sentences, parsed=parsed, task_data=getattr(a, "data", None),
                              compare=inputs.load(a.compare) if getattr(a, "compare", None) else None)
            if m == "perturbed-masking":
                x.pm_sentences = a.sample
            # heads shows its own bars (batches scored, pruning steps); the others count sentences here
            with (contextlib.nullcontext() if m == "heads" else tqdm(desc=m, unit="sentence")) as bar:
                if m == "geometry":
                    from ..analysis import geometry

                    res = geometry.run(loaded, out, sentences, x.compare, a.min_count, progress=bar)
                elif m == "perturbed-masking":
                    from ..analysis import perturbed_masking

                    res = perturbed_masking.run(loaded, out, None if parsed else sentences[:a.sample],
                                                parsed[:a.sample] if parsed else None, a.max_words, progress=bar)
                else:
                    res = report.run_method(m, loaded, out, x, progress=bar)
            text = _brief(m, res)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(text)
        print(f"wrote {out}/")
    return 0


def _brief(m: str, res: dict) -> str:
    if m == "attention":
        s = res["statistics"]
        mean = lambda k: sum(map(sum, s[k])) / sum(map(len, s[k]))  # noqa: E731
        return (f"{s['queries']} query tokens: mean entropy {mean('entropy'):.2f} nats (uniform "
                f"{mean('uniform_entropy'):.2f}); attention to [CLS] {mean('cls'):.3f}, [SEP] {mean('sep'):.3f}, "
                f"punctuation {mean('punct'):.3f}, previous {mean('prev'):.3f}, next {mean('next'):.3f}")
    if m == "heads":
        return "\n".join(f"{100 * c['fraction']:5.1f} % pruned: {res['metric']} {c['metric']:.4f}"
                         for c in res["curve"])
    if m == "geometry":
        return "\n".join(f"layer {i}: anisotropy {r['anisotropy']:.3f}  self-similarity {r['self_similarity']:.3f}  "
                         f"intra-sentence {r['intra_sentence']:.3f}  PC1 variance {r['mev']:.3f}"
                         for i, r in enumerate(res["layers"]))
    if "uas" in res:
        return f"UAS {res['uas']:.3f} (right-branching {res['right_branching_uas']:.3f}) on {res['words']} words"
    return f"{res['sentences']} sentences: impact matrices and induced trees"
