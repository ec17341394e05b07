"""What the knowledge-distillation methods share: Hinton et al.'s soft-target loss, a forward pass that
also returns hidden states, and the training loop — the teacher and the student read the same examples
(each in its own input format), the teacher without gradients and without dropout, through the one Trainer,
with the student selected on the dev set as `plmkit finetune` selects.

Shape legend: B = batch, C = labels, T = sequence length, H = hidden size.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PlmkitError
from ..evaluation.metrics import MAIN
from .registry import Job

TEACHER = "teacher_"  # prefix of the teacher's inputs in a training batch


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float = 1.0) -> torch.Tensor:
    """−Σ_c softmax(z_t / T)_c · log softmax(z_s / T)_c, averaged over rows: the cross-entropy of the student's
    tempered distribution against the teacher's (Hinton et al. 2015, arXiv:1503.02531, §2). (…, C) → ()."""
    p_teacher = F.softmax(teacher_logits.float() / temperature, -1)
    return -(p_teacher * F.log_softmax(student_logits.float() / temperature, -1)).sum(-1).mean()


def forward(model, batch: dict[str, torch.Tensor], every_position: bool = False
            ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """A sequence-level TaskModel's logits (B, C) and its body's hidden states (embeddings, then each layer,
    (B, T, H) each) in one pass. The last layer is computed at the pooled position only, as at inference,
    unless `every_position` (for losses on every token's last state)."""
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
    if every_position or not model.rows_only:
        out = model.body.encode(ids, mask, types, output_hidden_states=True)
        v = model.pooled(out.last_hidden_state, mask)
    else:
        rows = (mask.sum(1).long() - 1 if model.causal
                else torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device))  # (B,) the pooled position
        out = model.body.encode(ids, mask, types, output_hidden_states=True, rows=rows)
        v = model.pooled(out.last_hidden_state, mask[:, :1])
    return model.head(model.drop(v)), out.hidden_states  # (B, C), L + 1 × (B, T, H)


class Distillation(nn.Module):
    """The module the Trainer trains: the student, the frozen teacher (always in eval mode: no dropout) and
    the method's own trainable pieces (`extra`, e.g. TinyBERT's projections)."""

    def __init__(self, student: nn.Module, teacher: nn.Module | None, extra: dict[str, nn.Module] | None = None):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.extra = nn.ModuleDict(extra or {})
        if teacher is not None:
            teacher.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self


def teacher_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The teacher's half of a training batch."""
    return {k[len(TEACHER):]: v for k, v in batch.items() if k.startswith(TEACHER)}


def check_task(job: Job, method: str) -> None:
    if job.task not in ("classify", "pair"):
        raise PlmkitError(f"{method} distils classify and pair models (soft targets over labels), not {job.task!r}")


def train_student(job: Job, student, step: Callable[[Distillation, dict], dict], *, out: Path,
                  extra: dict[str, nn.Module] | None = None, params: list[nn.Parameter] | None = None,
                  examples: list | None = None, targets: torch.Tensor | None = None, labels: list[int] | None = None,
                  epochs: int | None = None, select: bool = True, fast: tuple[list, float] | None = None):
    """Train `student` (a TaskModel) with the method's `step(module, batch) -> {"loss", …}` for `epochs`
    (default: the option) passes over `examples` (default: the job's training examples), AdamW with linear
    warm-up (10 %) and decay at the `lr` option, logging to `out`. `params`: what trains (default every
    parameter of the student and `extra`). The batch holds the student's inputs, the teacher's under the
    `teacher_` prefix (see `teacher_inputs`), and "labels" (from the examples, or the given label ids: −100 for
    none); with `targets` (the teacher's logits, one row per example, computed beforehand) it holds them as
    "targets" instead of the teacher's inputs. With `select`, the student is evaluated on the dev set after
    each epoch, training stops after `patience` epochs without improvement, and the best weights are
    restored; returns the DevSelection (its curve and best step), else None. `fast` = (parameters, lr): these
    train at their own peak learning rate (new classifiers beside a trained body)."""
    from ..data.pretrain import StepSampler
    from ..heads import collate, encode, evaluate
    from ..train import DevSelection, TrainConfig, Trainer
    from ..train.trainer import default_param_groups

    o = job.options
    examples = job.train if examples is None else examples
    epochs = o["epochs"] if epochs is None else epochs
    features = encode(examples, student, student.tokenizer, labelled=labels is None, path=job.train_path)
    if labels is not None:
        for f in features:
            f["labels"] = labels[f["example"]]
    if targets is not None:
        for f in features:
            f["targets"] = targets[f["example"]]
    else:
        for f, t in zip(features, encode(examples, job.teacher, job.teacher.tokenizer, path=job.train_path)):
            f.update({TEACHER + k: v for k, v in t.items()})
    pad_s = student.tokenizer.pad_id or 0
    pad_t = None if targets is not None else job.teacher.tokenizer.pad_id or 0  # with targets the teacher is not run

    def collate_pair(chunk: list[dict], _generator) -> dict[str, torch.Tensor]:
        batch = collate(chunk, pad_s)
        if targets is not None:
            batch["targets"] = torch.stack([f["targets"] for f in chunk])
        else:
            strip = [{k[len(TEACHER):]: v for k, v in f.items() if k.startswith(TEACHER)} for f in chunk]
            batch.update({TEACHER + k: v for k, v in collate(strip, pad_t).items() if k != "labels"})
        return batch

    module = Distillation(student, job.teacher if targets is None else None, extra)
    trainable = nn.ModuleList([student, module.extra])
    groups = default_param_groups(trainable, 0.01)
    if params is not None:
        keep = {id(p) for p in params}
        groups = [{**g, "params": [p for p in g["params"] if id(p) in keep]} for g in groups]
    if fast is not None:
        quick = {id(p) for p in fast[0]}
        groups = [{**g, "params": [p for p in g["params"] if (id(p) in quick) == q], **({"lr": fast[1]} if q else {})}
                  for g in groups for q in (False, True)]
    per_epoch = math.ceil(len(features) / o["batch_size"])
    cfg = TrainConfig(steps=epochs * per_epoch, batch_size=o["batch_size"], lr=o["lr"],
                      weight_decay=0.01, seed=o["seed"], warmup_ratio=0.1, log_every=max(1, min(10, per_epoch)))
    selection = None
    if select:
        dev_f = encode(job.dev, student, student.tokenizer, path=job.dev_path)
        selection = DevSelection(student, lambda: evaluate(student, student.tokenizer, job.dev, dev_f,
                                                           batch_size=2 * o["batch_size"], progress=job.progress)[0],
                                 MAIN[job.task], o["patience"], per_epoch)
    run_info = {"method": job.method, "options": o, "examples": len(examples)}
    trainer = Trainer(module, features, StepSampler(len(features), o["batch_size"], o["seed"]), collate_pair, step,
                      cfg, out, save_fn=lambda m, d: None, param_groups=[g for g in groups if g["params"]],
                      run_info=run_info, eval_fn=(lambda m, s: selection(s)) if select else None,
                      eval_every=per_epoch, checkpoints=False)  # nothing resumes a compression run
    trainer.train()
    if selection is not None:
        selection.restore()
    student.eval()
    return selection


@torch.no_grad()
def teacher_logits(teacher, examples: list, batch_size: int, progress: bool = False) -> torch.Tensor:
    """The teacher's logits for each example, (N, C) in example order, computed in batches of similar
    lengths (as plmkit.heads.evaluate batches)."""
    from tqdm import tqdm

    from ..heads import collate, encode
    from ..heads.inputs import batches

    features = encode(examples, teacher, teacher.tokenizer, labelled=False)
    out = torch.zeros(len(examples), len(teacher.config.labels))
    pad = teacher.tokenizer.pad_id or 0
    device = next(teacher.parameters()).device
    teacher.eval()
    for chunk in tqdm(list(batches(features, batch_size)), desc="teacher logits", unit="batch",
                      disable=None if progress else True, leave=False):
        batch = {k: v.to(device) for k, v in collate(chunk, pad).items()}
        out[[f["example"] for f in chunk]] = teacher(batch)["logits"].float().cpu()
    return out
