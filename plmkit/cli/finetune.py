"""Commands for downstream use: `finetune`, `evaluate`, `predict`, and `quickstart`, which shows what
pre-training buys on a downstream task."""

from __future__ import annotations

import json
import sys

from ..data.tasks import TASKS

_FORMATS = ("Data: JSONL {\"text\", \"label\"} (pairs: text_a/text_b; choice: question or context, choices, "
            "label = index; seq2seq: {\"source\", \"target\"}), CSV/TSV with a header naming those columns, CoNLL "
            "token<TAB>tag (tag), SQuAD-style JSON (qa).")


def add_commands(sub) -> None:
    q = sub.add_parser("quickstart", help="does pre-training pay? the main job, offline, in a few minutes on a CPU",
                       description="On the King James Bible that ships with plmkit: hold out a few hundred verses "
                                   "labelled with their section of the canon (Law, History, Poetry/Wisdom, Prophets, "
                                   "Gospels/Acts, Epistles/Revelation), train a tokenizer and pre-train a tiny GPT on "
                                   "the rest, then fine-tune it on the verses and compare with the same model "
                                   "fine-tuned from random weights. Prints the table; writes report.json, "
                                   "comparison.png and the models to --out.")
    q.add_argument("--out", default="plmkit-quickstart", metavar="DIR")
    q.add_argument("--steps", type=int, help="pre-training steps (default 1500, about 5 minutes of one CPU core)")
    q.add_argument("--member", choices=("gpt", "bert"), help="the member to pre-train (default gpt)")
    q.set_defaults(func=_cmd_quickstart)

    t = sub.add_parser("tasks", help="the labelled tasks that ship with plmkit: list them, or write one",
                       description="Without NAME, list the tasks that ship with plmkit (built from its resources, "
                                   "nothing downloaded); with NAME and --out, write that task as train/dev/test.jsonl, "
                                   "for `plmkit finetune` or `plmkit bakeoff --tasks` (which also takes the bare name).")
    t.add_argument("name", nargs="?", metavar="NAME", help="the task to write")
    t.add_argument("--out", metavar="DIR", help="where to write it (default: ./NAME)")
    t.set_defaults(func=_cmd_tasks)

    p = sub.add_parser("finetune", help="fine-tune a pre-trained model on a labelled task",
                       description="Put a task head on a pre-trained model and train it on --train, evaluating on "
                                   "--dev after each epoch; keeps the best dev checkpoint and stops after "
                                   "--patience evaluations without improvement. Writes the model (loadable by "
                                   "`plmkit evaluate/predict` and plmkit.heads.load_finetuned), eval.json with "
                                   "metrics per split, metrics.png and the training log to --out. " + _FORMATS)
    p.add_argument("--model", metavar="DIR", help="pre-trained model directory (plmkit or Hugging Face), or a "
                   "fine-tuned one for the same task to train further")
    p.add_argument("--multitask", metavar="F.toml", help="MT-DNN: fine-tune one body on several tasks at once, a head "
                   "per task, batches drawn across tasks in proportion to their size (or by temperature), then "
                   "optionally per task; the file names the tasks and settings (README, plmkit/workflows/"
                   "multitask.py); with compare = true also single-task runs at the same total steps, and the table")
    p.add_argument("--task", choices=TASKS,
                   help="classify: one text → label; pair: text_a + text_b → label; regress: text(s) → number; "
                        "tag: a label per token; qa: answer span in a context; choice: pick one of the choices; "
                        "seq2seq: source → target text (an encoder–decoder: transformer, t5, bart, mass)")
    p.add_argument("--train", metavar="F")
    p.add_argument("--dev", metavar="F", help="for early stopping and model selection")
    p.add_argument("--test", metavar="F", help="evaluated once, with the selected model")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out from its newest "
                   "checkpoint (the same result as an uninterrupted run), or print the result of a finished one")
    p.add_argument("--epochs", type=int, default=3, help="at most this many passes over --train (default 3)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 5e-5; 1e-3 with --features scalar-mix)")
    p.add_argument("--batch-size", type=int, default=16, help="examples per step (default 16)")
    p.add_argument("--max-length", type=int, default=128, help="tokens per input, specials included (default 128)")
    p.add_argument("--seed", type=int, default=0, help="seed for the head's init, data order and dropout")
    p.add_argument("--features", choices=("finetune", "scalar-mix"), default="finetune",
                   help="finetune: train the whole model (default); scalar-mix: freeze it and learn an ELMo-style "
                        "weighted mix of its layers for the head")
    p.add_argument("--ulmfit", action="store_true", help="ULMFiT: discriminative learning rates (÷2.6 per layer "
                   "down), slanted triangular schedule, gradual unfreezing (one more layer group each epoch)")
    p.add_argument("--from-scratch", action="store_true", help="re-initialise the model's weights first: the same "
                   "architecture and tokenizer without pre-training, as a baseline")
    p.add_argument("--crf", action="store_true", help="tag: a CRF over the tag sequence instead of per-token softmax")
    p.add_argument("--init-embeddings", metavar="W2V_DIR", help="initialise the model's input token embedding from "
                   "word2vec vectors (a `plmkit pretrain --model word2vec` directory, its embedding_size equal to "
                   "the model's); tokens that are word2vec words once lower-cased are copied, the rest keep their "
                   "initialisation; eval.json records how many rows were copied")
    p.add_argument("--freeze-embeddings", action="store_true",
                   help="with --init-embeddings: keep the input token embedding fixed while the rest trains")
    p.add_argument("--patience", type=int, default=2,
                   help="evaluations without dev improvement before stopping (default 2)")
    p.add_argument("--eval-every", type=int, help="evaluate on --dev every N steps (default: each epoch)")
    p.add_argument("--labels", metavar="A,B,…|@F", help="the label set in this order, comma-separated or one per "
                   "line of file F (default: the sorted labels of --train); lets dev/test hold labels that --train "
                   "lacks")
    p.add_argument("--doc-stride", type=int, default=64,
                   help="qa: tokens from one window of a long context to the next (default 64)")
    p.add_argument("--text-to-text", action="store_true", help="classify/pair with an encoder–decoder as T5 does: "
                   "'classify sentence: TEXT' (pair: 'pair sentence1: A sentence2: B') → the label's words, scored "
                   "by exact match")
    p.add_argument("--num-beams", type=int, default=4, help="seq2seq and --text-to-text: beams when generating for "
                   "evaluation (default 4; 1 = greedy)")
    p.add_argument("--max-target-length", type=int, default=64, help="seq2seq and --text-to-text: target tokens, "
                   "in training and generation (default 64)")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="seq2seq and --text-to-text: label "
                   "smoothing of the training loss (default 0.1)")
    p.set_defaults(func=_cmd_finetune)

    e = sub.add_parser("evaluate", help="score a fine-tuned model on labelled data",
                       description="Print the metrics of a model written by `plmkit finetune` on --data (same "
                                   "format as its training data); --out also writes them to a JSON file. " + _FORMATS)
    e.add_argument("--model", required=True, metavar="DIR", help="a directory written by `plmkit finetune`, or "
                   "with --task lm any language model directory")
    e.add_argument("--data", required=True, metavar="F")
    e.add_argument("--task", choices=("lm",), help="lm: perplexity per word and bits per byte of a language model "
                   "(n-gram included) on the text --data, as `plmkit evaluate-lm` (default: the fine-tuned task)")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--int8", action="store_true", help=_INT8_HELP)
    e.add_argument("--out", metavar="F.json", help="also write the metrics to this file")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(func=_cmd_evaluate)

    r = sub.add_parser("predict", help="predictions of a fine-tuned model, as JSONL",
                       description="One JSON object per example of --data (labels not needed; - reads stdin as "
                                   "JSONL, or CoNLL for a tagging model): classify/pair {label, probability}, "
                                   "regress {score}, tag {tokens, tags}, qa {id, answer}, choice {label, choice}, "
                                   "seq2seq and --text-to-text {prediction}.")
    r.add_argument("--model", required=True, metavar="DIR")
    r.add_argument("--data", required=True, metavar="F", help="input file, or - for stdin")
    r.add_argument("--out", metavar="F.jsonl", help="write here instead of stdout")
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--int8", action="store_true", help=_INT8_HELP)
    r.set_defaults(func=_cmd_predict)


def _cmd_tasks(a) -> int:
    from ..data.shipped import SPLITS, TASKS, write_task

    if a.name is None:
        width = max(map(len, TASKS))
        for name, t in TASKS.items():
            print(f"{name:<{width}}  {t.kind:<8}  {t.about}")
        return 0
    out = write_task(a.name, a.out or a.name)
    counts = ", ".join(f"{sum(1 for _ in open(out / f'{s}.jsonl', encoding='utf-8'))} {s}" for s in SPLITS)
    print(f"wrote {out}/{{train,dev,test}}.jsonl ({counts}); fine-tune with `plmkit finetune --task "
          f"{TASKS[a.name].kind} --train {out}/train.jsonl --dev {out}/dev.jsonl --test {out}/test.jsonl ...`")
    return 0


def _cmd_quickstart(a) -> int:
    from ..workflows.quickstart import quickstart

    quickstart(a.out, a.steps, a.member)
    return 0


def _cmd_finetune(a) -> int:
    from ..errors import PlmkitError
    from ..workflows.finetune import finetune

    if a.multitask:
        given = [f"--{k}" for k in ("task", "train", "dev", "test") if getattr(a, k)]
        if given:
            raise PlmkitError(f"--multitask takes the tasks from its file; drop {', '.join(given)}", path=a.multitask)
        return _multitask(a)
    missing = [f"--{k}" for k in ("model", "task", "train", "dev") if not getattr(a, k)]
    if missing:
        raise PlmkitError(f"finetune needs {', '.join(missing)} (or --multitask F.toml)")

    result = finetune(a.model, a.task, a.train, a.dev, a.out, test=a.test, epochs=a.epochs, lr=a.lr,
                      batch_size=a.batch_size, max_length=a.max_length, seed=a.seed, features=a.features,
                      ulmfit=a.ulmfit, crf=a.crf, patience=a.patience, eval_every=a.eval_every,
                      doc_stride=a.doc_stride, scratch=a.from_scratch, init_embeddings=a.init_embeddings,
                      freeze_embeddings=a.freeze_embeddings, text_to_text=a.text_to_text,
                      num_beams=a.num_beams, max_target_length=a.max_target_length,
                      label_smoothing=a.label_smoothing, labels=_labels(a.labels), resume=a.resume)
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=2))
    return 0


def _multitask(a) -> int:
    from ..workflows.multitask import run_multitask

    r = run_multitask(a.multitask, a.out, model=a.model)
    names = list(r["tasks"])
    print(f"{'':<22}" + "".join(f"{n:>14}" for n in names) + f"{'mean':>10}  (test; dev where there is no test)")
    for row, results in r["rows"].items():
        scores = [_main_score(results[n], r["tasks"][n]["task"]) for n in names]
        print(f"{row:<22}" + "".join(f"{s:>14.4f}" for s in scores) + f"{sum(scores) / len(scores):>10.4f}")
    return 0


def _main_score(result: dict, task: str) -> float:
    from ..evaluation.metrics import MAIN

    return result.get("test", result["dev"])[MAIN[task]]


def _labels(spec: str | None) -> list[str] | None:
    """--labels a,b,c or --labels @file (one label per line, for labels that hold a comma)."""
    if not spec:
        return None
    if spec.startswith("@"):
        from pathlib import Path

        from ..errors import PlmkitError

        path = Path(spec[1:])
        if not path.is_file():
            raise PlmkitError("labels file not found", path=path)
        return [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [x.strip() for x in spec.split(",") if x.strip()]


def _cmd_evaluate(a) -> int:
    from ..heads import evaluate
    from ..data.tasks import read_task

    if a.task == "lm":
        from .lineage import _cmd_evaluate_lm

        return _cmd_evaluate_lm(a)

    model = _load_for_inference(a)
    examples = read_task(a.data, model.config.task)
    metrics, _ = evaluate(model, model.tokenizer, examples, batch_size=a.batch_size, path=a.data, progress=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(metrics, f, indent=2)
    if a.json:
        print(json.dumps(metrics, indent=2))
    else:
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    return 0


def _cmd_predict(a) -> int:
    from ..heads import evaluate
    from ..data.tasks import read_task

    model = _load_for_inference(a)
    examples = read_task(a.data, model.config.task, labelled=False)
    _, preds = evaluate(model, model.tokenizer, examples, labelled=False, batch_size=a.batch_size, path=a.data)
    lines = "".join(json.dumps(p) + "\n" for p in preds)
    if a.out:
        with open(a.out, "w") as f:
            f.write(lines)
    else:
        sys.stdout.write(lines)
    return 0


_INT8_HELP = ("int8 dynamic quantization of every linear layer (CPU): about 2x faster, within a point of "
              "accuracy on the benchmarks of bench/README.md")


def _load_for_inference(a):
    from ..heads import load_finetuned

    model = load_finetuned(a.model)
    if a.int8:
        from ..compress import quantize_int8

        quantize_int8(model)
    return model

