"""pabee = an internal classifier after every layer, trained with the backbone; at inference a row leaves
once the classifiers of `patience` layers in a row agree with the one before them. Zhou et al. 2020,
"BERT Loses Patience", arXiv:2006.04152.

Recipe (§3): each layer l gets a classifier on its [CLS] state through the model's (shared) pooler; the
backbone and all classifiers are trained together on the weighted average of their cross-entropies,
L = Σ_l l · L_l / Σ_l l, so deeper classifiers weigh more. At inference a counter goes up by one when a
layer's prediction equals the previous layer's and back to zero when it does not; the example exits with
the current prediction when the counter reaches the patience t. Small t exits early; t = L − 1 never does.

Here: the teacher (a fine-tuned model) is the starting point for that joint training; `--patience t`, or by
default a sweep over t = 1 … L − 1 on the dev set picks the t that runs the fewest layers within
`--max-drop` of the full model's dev score; the sweep goes into compression.json and exit_curve.png.

Where plmkit departs: batches larger than 1 — rows that exit leave the batch and the others run on
(plmkit.compress.exits), where the released code stops a batch only when all its rows agree and is run
at batch size 1; training starts from the fine-tuned model rather than from the pre-trained one, so the
classifiers are new beside a trained body: they train at their own `--ramp-lr` (default 1e-3; at the
body's 5e-5 a few hundred examples leave them near chance, and every row runs to the end).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import storage
from .deebert import MAX_DROP, settle
from .exits import exit_model
from .kd import check_task, train_student
from .registry import BATCH_SIZE, LR, MAX_LENGTH, SEED, Job, Option, Result, register

OPTIONS = (
    Option("epochs", int, 3, "passes over --train of joint training (default 3)"), LR,
    Option("ramp_lr", float, 1e-3, "peak learning rate of the new internal classifiers (default 1e-3)"),
    BATCH_SIZE, MAX_LENGTH, SEED,
    Option("patience", int, None, "internal classifiers in a row that must agree (default: chosen on the dev "
           "set by the sweep over 1 … L − 1)"),
    MAX_DROP,
)


def weighted_loss(logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Σ_l l · CE(logits_l, labels) / Σ_l l over the L classifiers (l = 1 … L, the head last)."""
    total = sum(range(1, len(logits) + 1))
    return sum(i * F.cross_entropy(z.float(), labels) for i, z in enumerate(logits, start=1)) / total


@register("pabee", paper="Zhou et al. 2020, arXiv:2006.04152", options=OPTIONS)
def run(job: Job) -> Result:
    check_task(job, "pabee")
    o = job.options
    model = exit_model(job.teacher, "patience", own_pooler=False)

    def step(m, batch):
        return {"loss": weighted_loss(m.student.all_logits(batch), batch["labels"]),
                "tokens": int(batch["attention_mask"].sum())}

    train_student(job, model, step, out=job.out, select=False, fast=(list(model.ramps.parameters()), o["ramp_lr"]))
    L = len(model.body.stack())
    info = settle(job, model, "patience", list(range(L - 1, 0, -1)), o["patience"])
    return Result(model, info, save=storage.saver({"exits": model.spec()}),
                  parameters=sum(p.numel() for p in model.parameters()))
