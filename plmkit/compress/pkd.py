"""pkd = patient knowledge distillation: soft targets + hard labels + the distance between normalised [CLS]
states of intermediate layers, PKD-skip or PKD-last. Sun et al. 2019, arXiv:1908.09355.

Recipe (§3): L = (1 − α) · L_CE + α · L_DS + β · L_PT, where L_CE is the cross-entropy with the labels,
L_DS the cross-entropy of the student's softmax at temperature T against the teacher's, and
L_PT = Σ_j ‖ h_s,j / ‖h_s,j‖₂ − h_t,I(j) / ‖h_t,I(j)‖₂ ‖²₂ over the [CLS] states of the student's intermediate
layers j = 1 … M − 1 (the last one is taught by L_DS). PKD-skip learns from every (N / M)-th teacher layer,
I(j) = j · N / M (12 → 6: layers 2, 4, 6, 8, 10); PKD-last from the last ones, I(j) = N − M + j (7 … 11).
The student starts from the first M layers of BERT. The paper searches T ∈ {5, 10, 20}, α ∈ {0.2, 0.5, 0.7},
β ∈ {10, 100, 500, 1000} per task; the defaults here are one point of that grid.

Where plmkit departs: the first M layers come from the fine-tuned teacher (the paper takes them from
pre-trained BERT before fine-tuning); L_DS is multiplied by T², as the released code does, so its gradient
keeps its scale whatever T; L_PT is averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import PlmkitError
from .kd import check_task, forward, soft_cross_entropy, teacher_inputs, train_student
from .registry import TRAINING, TRANSFORMER_STUDENT, Job, Option, Result, register
from .students import build_student, first

OPTIONS = TRAINING + TRANSFORMER_STUDENT + (
    Option("strategy", str, "skip", "skip: learn from every (N/M)-th teacher layer; last: from the last M − 1 "
           "before the top (default skip)", choices=("skip", "last")),
    Option("temperature", float, 10.0, "softmax temperature T (default 10)"),
    Option("alpha", float, 0.7, "weight α of the soft targets; the labels get 1 − α (default 0.7)"),
    Option("beta", float, 100.0, "weight β of the patient loss on [CLS] states (default 100)"),
)


def teacher_layers(strategy: str, teacher_layers: int, student_layers: int) -> list[int]:
    """I(j) for j = 1 … M − 1: the teacher layer (1-based, an index into hidden_states) each intermediate
    student layer learns from."""
    N, M = teacher_layers, student_layers
    if strategy == "skip":
        if N % M:
            raise PlmkitError(f"PKD-skip needs the teacher's {N} layers to be a multiple of the student's {M}")
        return [j * N // M for j in range(1, M)]
    return [N - M + j for j in range(1, M)]


def patient_loss(student_cls: list[torch.Tensor], teacher_cls: list[torch.Tensor]) -> torch.Tensor:
    """Σ_j ‖ s_j / ‖s_j‖ − t_j / ‖t_j‖ ‖²₂ over the layer pairs, averaged over the batch: lists of (B, H)."""
    total = 0
    for s, t in zip(student_cls, teacher_cls):
        total = total + (F.normalize(s.float(), dim=-1) - F.normalize(t.float(), dim=-1)).pow(2).sum(-1)
    return total.mean()


def pkd_loss(s_logits, t_logits, labels, student_cls, teacher_cls, o: dict) -> dict[str, torch.Tensor]:
    """(1 − α) · L_CE + α · T² · L_DS(T) + β · L_PT, and its parts for the log."""
    T = o["temperature"]
    hard = F.cross_entropy(s_logits.float(), labels)
    soft = soft_cross_entropy(s_logits, t_logits, T) * T ** 2
    pt = patient_loss(student_cls, teacher_cls) if student_cls else soft.new_zeros(())
    loss = (1 - o["alpha"]) * hard + o["alpha"] * soft + o["beta"] * pt
    return {"loss": loss, "hard": hard.detach(), "soft": soft.detach(), "patient": pt.detach()}


@register("pkd", paper="Sun et al. 2019, arXiv:1908.09355", options=OPTIONS)
def run(job: Job) -> Result:
    o = job.options
    check_task(job, "pkd")
    student, info = build_student(job.teacher, o, first)
    M, N = student.body.config.num_layers, job.teacher.body.config.num_layers
    pairs = teacher_layers(o["strategy"], N, M)
    if student.body.config.hidden_size != job.teacher.body.config.hidden_size:
        raise PlmkitError("the patient loss compares [CLS] states of the teacher's width: give the student that width")
    info["patient_layers"] = {"student": list(range(1, M)), "teacher": pairs}

    def step(m, batch):
        with torch.no_grad():
            t_logits, t_states = forward(m.teacher, teacher_inputs(batch))
        s_logits, s_states = forward(m.student, batch)
        out = pkd_loss(s_logits, t_logits, batch["labels"], [s_states[j][:, 0] for j in range(1, M)],
                       [t_states[i][:, 0] for i in pairs], o)
        return {**out, "tokens": int(batch["attention_mask"].sum())}

    selection = train_student(job, student, step, out=job.out)
    return Result(student, info, selection.curve, selection.best_step)
