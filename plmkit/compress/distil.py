"""distil = DistilBERT's triple loss: soft targets + hard labels (or MLM) + cosine between hidden states, the
student initialised from one of every two teacher layers. Sanh et al. 2019, arXiv:1910.01108.

Recipe (§2-3): the student is trained on L = α_ce · L_ce + α_mlm · L_mlm + α_cos · L_cos, where L_ce is the
cross-entropy of the student's softmax against the teacher's, both at temperature T; L_mlm the masked-LM
loss; L_cos = 1 − cos(h_s, h_t) between the last hidden states of student and teacher, token by token; the
student (half the layers, same width) starts from the teacher's layers taking one of every two. The released
code weights α_ce = 5, α_mlm = 2, α_cos = 1 at T = 2 and multiplies L_ce by T² (Hinton et al. 2015, §2: the
soft gradients then keep their scale whatever T).

Task mode (`--model` a fine-tuned teacher, `--train/--dev`): the teacher is fine-tuned on the task and the
hard-label cross-entropy takes MLM's place — the paper's "distillation during the adaptation phase" (done
for SQuAD there), with the triple loss. General mode (`--model` a pre-trained MLM teacher, `--corpus`): the paper's own
pre-training-time distillation, with MLM (15 %, 80/10/10) as the hard loss.

Where plmkit departs: the layers are evenly spaced from the first (12 → 6 copies 0, 2, 4, 6, 8, 10; the
released extraction script takes 0, 2, 4, 7, 9, 11); in general mode L_ce is taken at the masked positions
only (the released code's --restrict_ce_to_mask; not every position), since V-wide logits at every token
dominate the cost on a CPU; no dynamic batching by length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import PlmkitError
from .kd import check_task, forward, soft_cross_entropy, teacher_inputs, train_student
from .registry import GENERAL, TRAINING, TRANSFORMER_STUDENT, Job, Option, Result, register
from .students import build_student, every_other

OPTIONS = TRAINING + TRANSFORMER_STUDENT + (
    Option("temperature", float, 2.0, "softmax temperature T of the soft targets (default 2, the released code's)"),
    Option("alpha_ce", float, 5.0, "weight of the soft-target loss L_ce (default 5)"),
    Option("alpha_hard", float, 2.0, "weight of the hard loss: the labels' cross-entropy, or MLM with --corpus "
           "(default 2, the released code's α_mlm)"),
    Option("alpha_cos", float, 1.0, "weight of the cosine loss between last hidden states (default 1; needs the "
           "teacher's width)"),
) + GENERAL


def cosine_loss(student_states: torch.Tensor, teacher_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens of 1 − cos(h_s, h_t): (B, T, H) twice and the (B, T) mask → ()."""
    keep = mask.bool()
    return (1 - F.cosine_similarity(student_states[keep].float(), teacher_states[keep].float(), dim=-1)).mean()


def triple_loss(s_logits, t_logits, hard, s_states, t_states, mask, o: dict) -> dict[str, torch.Tensor]:
    """α_ce · T² · L_ce(T) + α_hard · hard + α_cos · L_cos, and its parts for the log."""
    T = o["temperature"]
    soft = soft_cross_entropy(s_logits, t_logits, T) * T ** 2
    cos = cosine_loss(s_states, t_states, mask) if o["alpha_cos"] else soft.new_zeros(())
    loss = o["alpha_ce"] * soft + o["alpha_hard"] * hard + o["alpha_cos"] * cos
    return {"loss": loss, "soft": soft.detach(), "hard": hard.detach(), "cos": cos.detach()}


@register("distil", paper="Sanh et al. 2019, arXiv:1910.01108", options=OPTIONS, general=True)
def run(job: Job) -> Result:
    o = job.options
    if job.corpus is not None:
        from .general import distil_general

        return distil_general(job, triple_loss)
    check_task(job, "distil")
    student, info = build_student(job.teacher, o, every_other)
    if o["alpha_cos"] and student.body.config.hidden_size != job.teacher.body.config.hidden_size:
        raise PlmkitError("the cosine loss compares hidden states of the teacher's width; give the student that "
                          "width or --alpha-cos 0")

    def step(m, batch):
        with torch.no_grad():
            t_logits, t_states = forward(m.teacher, teacher_inputs(batch), every_position=bool(o["alpha_cos"]))
        s_logits, s_states = forward(m.student, batch, every_position=bool(o["alpha_cos"]))
        hard = F.cross_entropy(s_logits.float(), batch["labels"])
        return {**triple_loss(s_logits, t_logits, hard, s_states[-1], t_states[-1], batch["attention_mask"], o),
                "tokens": int(batch["attention_mask"].sum())}

    selection = train_student(job, student, step, out=job.out)
    return Result(student, info, selection.curve, selection.best_step)
