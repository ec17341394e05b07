"""`plmkit finetune`: a pre-trained model + labelled task data → a fine-tuned model, with early stopping on
the dev set, through the one Trainer.

Ways to use the pre-trained model:
    full fine-tuning (default; Radford et al. 2018, Devlin et al. 2019): body and head trained together,
        AdamW, linear warm-up (10 %) and decay.
    features="scalar-mix": the body is frozen and the head reads a learned mix of its layers (ELMo,
        Peters et al. 2018, eq. 1).
    ulmfit=True (Howard & Ruder 2018, §3.2): discriminative learning rates (each layer down gets the rate
        of the one above / 2.6), the slanted triangular schedule, and gradual unfreezing (the top layer
        group trains alone in the first epoch, one more group joins each epoch).
    init_embeddings: the input token embedding starts from word2vec vectors (optionally frozen), e.g. in an
        otherwise untrained body (with scratch=True).

Bodies: the Transformer members and the lineage before them (FFNN, RNN, LSTM, ELMo, and a word2vec
directory, whose one layer is the static word vector); see plmkit.heads.model for what a body offers.

Run directory (`out`): the fine-tuned model (body + head.safetensors + head.json, the best dev
checkpoint), eval.json ({"dev": {...}, "test": {...}, "curve": [...]}, plus "init_embeddings" with the
number of rows copied when used), metrics.png, and the Trainer's train_log.jsonl, loss.png, tb/. eval.json
is written last: a directory holding it is a finished run. Until then `checkpoints/` holds the Trainer's
checkpoints, with the model selection so far (dev curve, best score and weights, patience, unfreezing), so
`resume=True` continues an interrupted run exactly; they are deleted once eval.json is written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import torch

from ..durable import atomic_file, atomic_write, check_out_dir, fault
from ..errors import PlmkitError
from ..evaluation.metrics import MAIN
from ..data.tasks import LabelSet, read_task
from ..heads import HEAD_CONFIG

log = logging.getLogger("plmkit")

ULMFIT_FACTOR = 2.6  # Howard & Ruder 2018, §3.2: η^{l-1} = η^l / 2.6


def finetune(model: str | os.PathLike, task: str, train: str, dev: str, out: str | os.PathLike,
             test: str | None = None, epochs: int = 3, lr: float | None = None, batch_size: int = 16,
             max_length: int = 128, seed: int = 0, features: str = "finetune", ulmfit: bool = False,
             crf: bool = False, patience: int = 2, eval_every: int | None = None, doc_stride: int = 64,
             weight_decay: float = 0.01, dropout: float = 0.1, scratch: bool = False, progress: bool = True,
             labels: list[str] | None = None, init_embeddings: str | os.PathLike | None = None,
             freeze_embeddings: bool = False, resume: bool = False, steps: int | None = None,
             text_to_text: bool = False, num_beams: int = 4, max_target_length: int = 64,
             label_smoothing: float = 0.1) -> dict:
    """Fine-tune the model in directory `model` on `task`; returns eval.json's content plus "seconds".
    `resume` continues the interrupted run in `out` from its newest checkpoint (bit-identical on CPU), or
    returns the result of a finished one.

    `model` may itself be a fine-tuned directory for the same task (one written by `finetune` or by the
    multi-task job): training then continues its body and head, with its labels and input settings.
    `steps`, when given, is the exact number of optimizer steps (`epochs` is then not used).

    lr defaults to 5e-5 for full fine-tuning (BERT's range, §A.3) and 1e-3 when only a head is trained
    (scalar-mix). `eval_every` is in optimizer steps (default: once per epoch); training stops after
    `patience` evaluations without a better dev score, and the best one is what is saved.
    `labels` declares the label set (classify, pair, tag) instead of discovering it from `train`.
    `init_embeddings` (a `plmkit pretrain --model word2vec` directory) initialises the body's input token
    embedding from word2vec vectors (after --from-scratch, so the two combine: pre-trained word vectors in an
    otherwise untrained body); `freeze_embeddings` keeps that embedding fixed while the rest trains.
    `scratch` re-initialises the body's weights first: the same architecture and tokenizer without
    pre-training, the baseline that shows what pre-training buys.
    task="seq2seq" ({"source", "target"}) and `text_to_text` (classify/pair as T5's "task sentence: …" →
    label words) fine-tune an encoder–decoder's own output layer (plmkit.heads.text2text): teacher-forced
    with `label_smoothing`, evaluated by beam search (`num_beams`, targets up to `max_target_length`
    tokens); lr then defaults to 1e-4.
    """
    from .. import load, load_tokenizer
    from ..data.pretrain import StepSampler
    from ..heads import HeadConfig, build, collate, encode, evaluate, save_finetuned
    from ..train import DevSelection, TrainConfig, Trainer

    t0 = time.perf_counter()
    if epochs < 1 or batch_size < 1 or patience < 1:
        raise PlmkitError("epochs, batch size and patience must be at least 1")
    if ulmfit and features != "finetune":
        raise PlmkitError("--ulmfit fine-tunes the whole model; it does not combine with frozen features")
    if ulmfit and (task == "seq2seq" or text_to_text):
        raise PlmkitError("--ulmfit's layer groups are an encoder's; it does not apply to text-to-text fine-tuning")
    out = Path(out)
    check_out_dir(out)
    if (out / "eval.json").exists():
        if resume:
            log.info("%s: fine-tuning already finished", out)
            return json.loads((out / "eval.json").read_text())
        raise PlmkitError("already holds a fine-tuning run; choose another --out", path=out)
    if not resume and (out / "train_log.jsonl").exists():
        raise PlmkitError("holds an unfinished fine-tuning run; pass --resume to continue it or choose another --out",
                          path=out)
    if steps is not None and steps < 1:
        raise PlmkitError(f"steps must be at least 1, got {steps}")
    train_ex = read_task(train, task)
    dev_ex = read_task(dev, task)
    test_ex = read_task(test, task) if test else None
    torch.manual_seed(seed)  # the head's (and with `scratch` the body's) initial weights
    if (Path(model) / HEAD_CONFIG).is_file():
        net = _continue(model, task, scratch, init_embeddings, labels)
        body, tokenizer, labels = net.body, net.tokenizer, list(net.config.labels)
        features = net.config.features
    else:
        labels = LabelSet.discover(train_ex, task, declared=labels, path=train).labels
        body, tokenizer = load(model), load_tokenizer(model)
        if scratch:
            if not hasattr(body, "init_weights"):
                raise PlmkitError(f"{body.family_name} cannot re-initialise its weights (no init_weights)")
            body.init_weights()
        net = build(body, tokenizer, HeadConfig(task=task, labels=tuple(labels), features=features, crf=crf,
                                                max_length=max_length, doc_stride=doc_stride, dropout=dropout,
                                                text_to_text=text_to_text, num_beams=num_beams,
                                                max_target_length=max_target_length,
                                                label_smoothing=label_smoothing))
    embeddings_info = _init_embeddings(body, tokenizer, init_embeddings, freeze_embeddings)
    train_f = encode(train_ex, net, tokenizer, path=train)
    dev_f = encode(dev_ex, net, tokenizer, path=dev)
    test_f = encode(test_ex, net, tokenizer, path=test) if test_ex else None

    per_epoch = math.ceil(len(train_f) / batch_size)
    steps = steps or epochs * per_epoch
    # A text-to-text model learns its task's words with the whole body: T5 fine-tunes at 1e-3 (Adafactor),
    # BART at 3e-5; 1e-4 with AdamW sits between and suits the small models trained here.
    lr = lr if lr is not None else (1e-3 if features == "scalar-mix" else 1e-4 if net.config.generative else 5e-5)
    eval_every = eval_every or per_epoch
    # A checkpoint after each evaluation: what a resumed run continues from.
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                      warmup_ratio=0.1, schedule="slanted_triangular" if ulmfit else "linear",
                      log_every=max(1, min(10, per_epoch)), save_every=eval_every, keep_checkpoints=1)
    param_groups = unfreezing = None
    if ulmfit:
        groups = net.layer_groups()
        n = len(groups)
        param_groups = [{"params": g, "lr": lr / ULMFIT_FACTOR ** (n - 1 - i)} for i, g in enumerate(groups)]
        unfreezing = GradualUnfreezing(groups)
    elif features == "scalar-mix":
        param_groups = [{"params": [p for p in net.parameters() if p.requires_grad]}]

    main_metric = MAIN[task]
    selection = DevSelection(net, lambda: evaluate(net, tokenizer, dev_ex, dev_f, batch_size=batch_size * 2,
                                                   progress=progress)[0],
                             main_metric, patience, per_epoch, unfreezing=unfreezing)

    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    run_info = {"task": task, "model": str(model), "train": str(train), "dev": str(dev), "test": test,
                "labels": labels, "features": features, "ulmfit": ulmfit, "crf": crf, "epochs": epochs,
                "steps": steps, "text_to_text": text_to_text, "from_scratch": scratch,
                "train_examples": len(train_ex), "train_features": len(train_f)}
    if embeddings_info:
        run_info["init_embeddings"] = embeddings_info
    trainer = Trainer(net, train_f, StepSampler(len(train_f), batch_size, seed),
                      lambda examples, gen: collate(examples, pad), _step, cfg, out,
                      save_fn=lambda m, d: save_finetuned(m, d, run_info), param_groups=param_groups,
                      run_info=run_info, eval_fn=lambda m, step: selection(step), eval_every=eval_every,
                      state=selection)
    trainer.train(resume=resume)
    selection.restore()
    net.eval()
    save_finetuned(net, out, {**run_info, "best_step": selection.best_step})

    result = {"task": task, "metric": main_metric, "best_step": selection.best_step}
    if embeddings_info:
        result["init_embeddings"] = embeddings_info
    # The dev metrics of the kept model were measured when it was the best: no need to run them again.
    result["dev"] = selection.best_metrics
    if test_ex:
        result["test"], _ = evaluate(net, tokenizer, test_ex, test_f, batch_size=batch_size * 2, progress=progress)
    result["curve"] = selection.curve
    result["seconds"] = round(time.perf_counter() - t0, 1)
    plot_curve(selection.curve, main_metric, out / "train_log.jsonl", out / "metrics.png")
    fault("final-eval")
    atomic_write(out / "eval.json", json.dumps(result, indent=2) + "\n")
    # Finished: the checkpoints (each a copy of the model, its optimizer state and the best weights) go.
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return result


def _continue(model, task: str, scratch: bool, init_embeddings, labels):
    """A fine-tuned directory to train further (e.g. per task after multi-task training), in train mode."""
    from ..heads import load_finetuned

    if scratch or init_embeddings or labels:
        raise PlmkitError("a fine-tuned model continues with its own weights and labels: drop --from-scratch, "
                          "--init-embeddings and --labels", path=model)
    net = load_finetuned(model)
    if net.config.task != task:
        raise PlmkitError(f"this directory was fine-tuned for {net.config.task}, not {task}", path=model)
    return net.train()


def _init_embeddings(body, tokenizer, w2v_dir, freeze: bool) -> dict | None:
    """Copy word2vec vectors from `w2v_dir` into the body's token embedding (after GPT's tokens were added, so
    a frozen embedding stays frozen); returns what eval.json records."""
    if w2v_dir is None:
        if freeze:
            raise PlmkitError("--freeze-embeddings needs --init-embeddings W2V_DIR")
        return None
    from .. import load, load_tokenizer
    from ..models.word2vec import Word2vec, init_input_embeddings

    w2v = load(w2v_dir)
    if not isinstance(w2v, Word2vec):
        raise PlmkitError(f"--init-embeddings needs a word2vec model directory, this holds {w2v.family_name}",
                          path=w2v_dir)
    rows = init_input_embeddings(body, tokenizer, w2v, load_tokenizer(w2v_dir), freeze=freeze)
    log.info("initialised %d of %d embedding rows from the word2vec vectors in %s%s", rows,
             tokenizer.vocab_size, w2v_dir, " (frozen)" if freeze else "")
    return {"from": str(w2v_dir), "rows": rows, "vocab_size": tokenizer.vocab_size, "frozen": freeze}


class GradualUnfreezing:
    """ULMFiT's gradual unfreezing (Howard & Ruder 2018, §3.2): of parameter groups ordered bottom to top,
    only the top one trains at first; each `next()` unfreezes the next one down (finetune calls it after
    each evaluation: once per epoch unless --eval-every says otherwise). Parameters frozen before it
    starts (e.g. --freeze-embeddings) stay frozen."""

    def __init__(self, groups: list[list[torch.nn.Parameter]]):
        self.groups = [[p for p in g if p.requires_grad] for g in groups]
        self.frozen = len(groups) - 1
        for g in self.groups[:-1]:
            for p in g:
                p.requires_grad_(False)

    def next(self) -> None:
        if self.frozen > 0:
            self.set_frozen(self.frozen - 1)

    def set_frozen(self, frozen: int) -> None:
        """Train the groups from `frozen` up; the ones below stay frozen (for a resumed run)."""
        self.frozen = frozen
        for i, g in enumerate(self.groups):
            for p in g:
                p.requires_grad_(i >= frozen)


def _step(model, batch) -> dict:
    out = model(batch)
    return {"loss": out["loss"], "tokens": int(batch["attention_mask"].sum())}


def plot_curve(curve: list[dict], metric: str, log_path: Path, path: Path) -> None:
    """Dev metric per evaluation and training loss, against optimizer steps."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot([c["step"] for c in curve], [c[metric] for c in curve], "o-", color="C0", label=f"dev {metric}")
    ax.set_xlabel("step")
    ax.set_ylabel(f"dev {metric}")
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    loss_ax = ax.twinx()
    loss_ax.plot([r["step"] for r in records], [r["loss"] for r in records], color="C1", alpha=0.6,
                 label="training loss")
    loss_ax.set_ylabel("training loss")
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100)
