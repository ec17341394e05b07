"""layerdrop = fine-tune with LayerDrop — every layer skipped with probability p in each training step — and
keep any sub-depth at inference without retraining, every other layer at half depth. Fan, Grave & Joulin
2020, "Reducing Transformer Depth on Demand with Structured Dropout", arXiv:1909.11556.

Recipe (§3-4): structured dropout of whole layers: in each forward pass during training each layer is
dropped independently with rate p (0.2 in most of their experiments), so the network learns to work
without any one of them; at inference a shallower network is chosen without further training, by the
"every other" rule (§4: drop the layers at depths d ≡ 0 (mod ⌊1/r⌋) for a pruning rate r), which their
experiments find as good as learned choices.

Here: the teacher (a fine-tuned model) is fine-tuned further with LayerDrop rate `--rate` for `--epochs`,
the dev set choosing the epoch (at full depth); then `--layers` of its layers are kept (default half), evenly
spaced with the top one kept (6 → 3 keeps 2, 4, 6), and saved as a plain, shallower model of the same
member. compression.json records the dev score of every sub-depth 1 … L of the same weights, which is the
point of the method: one training, any depth.

Where plmkit departs: LayerDrop is used in fine-tuning only — the paper uses it in pre-training as well,
which is where it matters most, but a fine-tuned teacher's pre-training cannot be redone here; at least one
layer runs in every training step.
"""

from __future__ import annotations

import copy
import random

import torch.nn.functional as F

from . import structure
from .kd import train_student
from .registry import TRAINING, Job, Option, Result, register

OPTIONS = TRAINING + (
    Option("rate", float, 0.2, "LayerDrop rate p: each layer's chance of being skipped in a training step "
           "(default 0.2, the paper's)"),
    Option("layers", int, None, "layers kept at inference (default: half the teacher's)"),
)


@register("layerdrop", paper="Fan et al. 2020, arXiv:1909.11556", options=OPTIONS)
def run(job: Job) -> Result:
    from ..evaluation.metrics import MAIN
    from ..heads import evaluate

    o = job.options
    student = copy.deepcopy(job.teacher)
    student.tokenizer = job.teacher.tokenizer
    L = len(structure.blocks(student.body))
    keep = o["layers"] or max(1, L // 2)
    layers = structure.evenly_spaced(L, keep)
    rng = random.Random(o["seed"])

    def step(m, batch):
        run = [i for i in range(L) if rng.random() >= o["rate"]] or [rng.randrange(L)]
        with structure.layer_subset(m.student.body, run):
            logits = m.student(batch)["logits"]
        return {"loss": F.cross_entropy(logits.float(), batch["labels"]), "layers": len(run),
                "tokens": int(batch["attention_mask"].sum())}

    selection = train_student(job, student, step, out=job.out)
    metric = MAIN[job.task]
    depths = []
    for k in range(1, L + 1):
        with structure.layer_subset(student.body, structure.evenly_spaced(L, k)):
            score = evaluate(student, student.tokenizer, job.dev, batch_size=2 * o["batch_size"])[0][metric]
        depths.append({"layers": k, "kept": structure.evenly_spaced(L, k), f"dev_{metric}": score})
    structure.keep_layers(student.body, layers)
    info = {"init": "teacher", "layers": keep, "hidden": student.body.config.hidden_size,
            "teacher_layers": layers, "rate": o["rate"], "dev_by_depth": depths}
    return Result(student, info, selection.curve, selection.best_step)
