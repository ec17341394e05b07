"""prune-heads = attention heads removed from the least important up, by Michel et al.'s gradient proxy
recomputed after each step, until --ratio of them are gone; they are cut out of the matrices, so the model
is smaller and faster. Michel, Levy & Neubig 2019, "Are Sixteen Heads Really Better than One?",
arXiv:1905.10650.

Recipe (§4): a gate ξ_h on each head's output; importance I_h = E_x |∂L(x)/∂ξ_h|, normalised per layer
(plmkit.analysis.heads computes it); heads are pruned from the least important, in steps of 10 % of them,
with the importance computed again on the model pruned so far before each step (§4.2: iterative pruning;
§5 shows up to 40-50 % of BERT's heads going at little cost). The pruned model is used as it is.

Here: the importance is computed on `--importance-examples` training examples; after pruning, the heads are
removed for real (plmkit.compress.structure: the q/k/v rows and output columns of each pruned head), and
`--epochs` of fine-tuning on the task (default 1, 0 for none) let the rest of the model adjust, with the
dev set choosing the epoch kept.

Where plmkit departs: the recovery fine-tuning, which the paper does not do; every layer keeps at least one
head (a layer with none would still add its output bias, which a removed attention cannot).
"""

from __future__ import annotations

import copy
import random

import torch.nn.functional as F

from . import storage, structure
from .kd import train_student
from .registry import BATCH_SIZE, LR, MAX_LENGTH, PATIENCE, SEED, Job, Option, Result, register

PRUNING = (
    Option("ratio", float, 0.5, "share of the heads to remove (default 0.5)"),
    Option("step", float, 0.1, "share of the heads removed per step, the importance recomputed in between "
           "(default 0.1)"),
    Option("importance_examples", int, 512, "training examples (drawn with --seed) the importance is computed "
           "on (default 512)"),
    Option("epochs", int, 1, "passes over --train fine-tuning the pruned model (default 1; 0: none)"),
    LR, BATCH_SIZE, MAX_LENGTH, SEED, PATIENCE,
)


def importance_batches(job: Job, model) -> list[dict]:
    o = job.options
    examples = random.Random(o["seed"]).sample(job.train, min(o["importance_examples"], len(job.train)))
    return structure.task_batches(model, examples, 2 * o["batch_size"], job.train_path)


def recover(job: Job, student) -> tuple[list, int | None]:
    """`--epochs` of fine-tuning on the task labels (dev selection); the dev curve and the best step."""
    if not job.options["epochs"]:
        return [], None

    def step(m, batch):
        return {"loss": F.cross_entropy(m.student(batch)["logits"].float(), batch["labels"]),
                "tokens": int(batch["attention_mask"].sum())}

    selection = train_student(job, student, step, out=job.out)
    return selection.curve, selection.best_step


def pruned_result(job: Job, student, teacher_params: int, info: dict) -> Result:
    """Fine-tune the pruned `student` (--epochs) and return it, saved with its structure."""
    curve, best = recover(job, student)
    body = student.body
    info = {"init": "teacher", "layers": len(body.stack()), "hidden": body.config.hidden_size,
            **structure.shape(body), "teacher_parameters": teacher_params, **info}
    return Result(student, info, curve, best, save=storage.saver({"structure": structure.shape(body)}))


@register("prune-heads", paper="Michel et al. 2019, arXiv:1905.10650", options=PRUNING)
def run(job: Job) -> Result:
    from ..analysis.heads import head_importance, head_mask, task_losses

    o = job.options
    student = copy.deepcopy(job.teacher)
    student.tokenizer = job.teacher.tokenizer
    stack = structure.blocks(student.body)
    L, N = len(stack), stack[0].attn.num_heads
    batches = importance_batches(job, student)

    def score(masks):
        import torch

        with head_mask(student, torch.stack(masks)):
            return list(head_importance(student, batches, task_losses))

    masks = structure.prune_iteratively([N] * L, score, o["ratio"], o["step"], job.progress)
    keep = structure.kept(masks)
    structure.keep_heads(student.body, keep)
    removed = [[layer, h] for layer in range(L) for h in range(N) if h not in keep[layer]]
    return pruned_result(job, student, sum(p.numel() for p in job.teacher.parameters()),
                         {"removed_heads": removed, "heads_before": L * N})
