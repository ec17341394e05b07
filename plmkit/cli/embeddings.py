"""Commands for sentence vectors: `embed` (one vector per text, from any model directory),
`evaluate-embeddings` (SentEval-style probes of those vectors) and `expand-vocab` (skip-thought's
vocabulary expansion from word2vec)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import PlmkitError
from ..heads.pooling import METHODS

_METHOD_HELP = ("auto: the model's own sentence vector (doc2vec's inferred paragraph vector, a recurrent "
                "encoder's final state, ELMo's two ends, [CLS]; a sentence-transformers directory's recorded "
                "pooling); cls: [CLS], or the last token of a causal model; mean / max: over the real tokens of "
                "the last layer; first-last: mean of the first and last layers' average (default auto)")


def add_commands(sub) -> None:
    m = sub.add_parser("embed", help="sentence vectors from a model, for texts or a whole file",
                       description="Encode each --text, or every text of --data, with a pre-trained or fine-tuned "
                                   "model directory (plmkit's or Hugging Face's). With --out F.npy the vectors "
                                   "are one float32 matrix in input order; with --out F.jsonl one {text, vector} "
                                   "per line; else they go to stdout.")
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", nargs="+", help="the texts")
    src.add_argument("--data", metavar="F", help="a file of texts: JSONL with a \"text\" field (or CSV/TSV with a "
                                                 "text column), else one text per non-blank line")
    m.add_argument("--model", required=True, metavar="DIR")
    m.add_argument("--method", "--pool", dest="method", choices=METHODS, default="auto", help=_METHOD_HELP)
    m.add_argument("--out", metavar="F.npy|F.jsonl", help="write the vectors here")
    m.add_argument("--max-length", type=int, default=512, help="tokens per text, specials included (default 512)")
    m.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default 64)")
    m.add_argument("--json", action="store_true", help="print [{text, vector}] as JSON (default: one line per text)")
    m.set_defaults(func=_cmd_embed)

    e = sub.add_parser("evaluate-embeddings", help="probe a model's sentence vectors on classification tasks",
                       description="SentEval-style: the model stays frozen; each text becomes one vector; a "
                                   "logistic regression (L2 chosen on dev) is trained on the training vectors and "
                                   "scored on test, beside 1-nearest-neighbour accuracy. A task folder of text_a/"
                                   "text_b pairs without labels is a retrieval set: recall@1/@10 and MRR. Default "
                                   "tasks: the shared classification tasks (../shared/data/tasks beside the "
                                   "repository, or $PLMKIT_DATA/tasks).")
    e.add_argument("--model", required=True, metavar="DIR")
    e.add_argument("--tasks", nargs="+", metavar="DIR", help="task folders with train/dev/test.jsonl (dev optional)")
    e.add_argument("--method", choices=METHODS, default="auto", help=_METHOD_HELP)
    e.add_argument("--max-length", type=int, default=128, help="tokens per text, specials included (default 128)")
    e.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default 64)")
    e.add_argument("--max-train", type=int, help="at most this many training texts per task (a seeded sample)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", metavar="F.json", help="also write the results here")
    e.add_argument("--json", action="store_true", help="print the results as JSON")
    e.set_defaults(func=_cmd_evaluate_embeddings)

    x = sub.add_parser("expand-vocab", help="skip-thought: give the encoder every word of a word2vec model",
                       description="Kiros et al. 2015, §2.2: fit a linear map from word2vec's space to the "
                                   "encoder's word embeddings on the words both know (least squares), then add "
                                   "every other word2vec word to the vocabulary with its mapped vector. Writes "
                                   "the expanded model to --out.")
    x.add_argument("--model", required=True, metavar="DIR", help="a skip-thought (or quick-thought) directory")
    x.add_argument("--word2vec", required=True, metavar="DIR", help="a `plmkit pretrain --model word2vec` directory")
    x.add_argument("--out", required=True, metavar="DIR")
    x.set_defaults(func=_cmd_expand_vocab)


def _texts(path: str) -> list[str]:
    p = Path(path)
    if p.suffix.lower() in (".jsonl", ".csv", ".tsv"):
        from ..data.tasks import read_task

        return [e.text for e in read_task(p, "classify", labelled=False)]
    if not p.is_file():
        raise PlmkitError("data file not found", path=p)
    from ..data.shards import iter_lines

    texts = [line for line in iter_lines(p) if line.strip()]
    if not texts:
        raise PlmkitError("no texts in the file", path=p)
    return texts


def _cmd_embed(a) -> int:
    from .. import load, load_tokenizer
    from ..heads.pooling import embed, resolve_method

    if a.out and not a.out.endswith((".npy", ".jsonl")):
        raise PlmkitError("--out must end in .npy or .jsonl", path=a.out)
    texts = a.text or _texts(a.data)
    model = load(a.model)
    vectors = embed(model, load_tokenizer(a.model), texts, resolve_method(model, a.model, a.method), a.max_length,
                    a.batch_size, progress=a.data is not None)
    if a.out and a.out.endswith(".npy"):
        import numpy as np

        np.save(a.out, vectors.numpy().astype(np.float32))
    elif a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            for t, v in zip(texts, vectors.tolist()):
                f.write(json.dumps({"text": t, "vector": v}) + "\n")
    elif a.json:
        print(json.dumps([{"text": t, "vector": v} for t, v in zip(texts, vectors.tolist())]))
    else:
        for v in vectors.tolist():
            sys.stdout.write(" ".join(f"{x:.6f}" for x in v) + "\n")
    return 0


def _cmd_evaluate_embeddings(a) -> int:
    from ..evaluation.sentence_probes import evaluate_embeddings

    r = evaluate_embeddings(a.model, a.tasks, a.method, a.max_length, a.batch_size, a.max_train, a.seed)
    if a.out:
        Path(a.out).write_text(json.dumps(r, indent=2) + "\n")
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['member']} ({r['method']} pooling, {r['dimensions']} dimensions), {r['seconds']:.0f} s")
    for name, t in r["tasks"].items():
        if t["kind"] == "retrieval":
            x = t["retrieval"]
            print(f"  {name:<16} retrieval  R@1 {x['recall@1']:.4f}  R@10 {x['recall@10']:.4f}  MRR {x['mrr']:.4f}"
                  f"  ({x['n']} pairs)")
            continue
        knn = f"  1-NN {t['nearest_neighbour']['accuracy']:.4f}" if "nearest_neighbour" in t else ""
        print(f"  {name:<16} probe accuracy {t['probe']['accuracy']:.4f}  macro-F1 {t['probe']['macro_f1']:.4f}"
              f"{knn}  ({t['train']} train, {t['test']} test, {t['labels']} labels)")
    return 0


def _cmd_expand_vocab(a) -> int:
    from .. import load, load_tokenizer
    from ..interop.hf import save_model
    from ..models.skip_thought import SkipThought, expand_vocabulary
    from ..models.word2vec import Word2vec

    model, w2v = load(a.model), load(a.word2vec)
    if not isinstance(model, SkipThought):
        raise PlmkitError(f"vocabulary expansion is skip-thought's; this directory holds {model.family_name}",
                          path=a.model)
    if not isinstance(w2v, Word2vec):
        raise PlmkitError(f"--word2vec needs a word2vec directory, this holds {w2v.family_name}", path=a.word2vec)
    tokenizer = load_tokenizer(a.model)
    info = expand_vocabulary(model, tokenizer, w2v, load_tokenizer(a.word2vec))
    save_model(model, a.out, tokenizer, {"vocabulary_expansion": {"from": str(a.model), "word2vec": str(a.word2vec),
                                                                  **info}})
    print(json.dumps(info, indent=2))
    return 0
