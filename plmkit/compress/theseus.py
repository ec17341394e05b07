"""theseus = BERT-of-Theseus: progressive module replacing with a linear replacement-rate curriculum, the
task loss alone. Xu et al. 2020, arXiv:2002.02925.

Recipe (§3): the fine-tuned teacher (predecessor) is cut into M modules of N / M consecutive layers, each
with a one-layer successor. At every training step each module is independently replaced by its
successor with probability p, and the hybrid model is trained on the task's cross-entropy alone; only the
successors learn (embeddings, pooler and classifier are the predecessor's, frozen). The rate follows the
curriculum p(t) = min(1, k · t + b), b = 0.3; once p reaches 1 only successors run, which is the paper's
"successor fine-tuning" phase. The successors start as copies of the predecessor's first M layers (the
released code). The student is the successors on the predecessor's embeddings and classifier.

Where plmkit departs: the paper tunes k per task; here k is set so that p reaches 1 at `--until` (a fraction
of the training steps, default 0.5), leaving the rest for successor fine-tuning; the predecessor's layers
run without dropout (they are the frozen teacher).
"""

from __future__ import annotations

import torch

from ..errors import PlmkitError
from .kd import check_task, train_student
from .registry import INIT, LAYERS, TRAINING, Job, Option, Result, register
from .students import build_student, first

OPTIONS = TRAINING + (LAYERS, INIT) + (
    Option("base_rate", float, 0.3, "replacement rate b at the first step (default 0.3, the paper's)"),
    Option("until", float, 0.5, "fraction of the training steps after which every module is replaced "
           "(p = 1); sets the slope k (default 0.5)"),
)


def replacement_rate(step: int, steps: int, base_rate: float, until: float) -> float:
    """p(t) = min(1, k · t + b), with k = (1 − b) / (until · steps), so that p reaches 1 at until · steps."""
    return min(1.0, base_rate + (1 - base_rate) * step / max(1.0, until * steps))


def mixed_stack(successors, predecessors, replace: list[bool]) -> list:
    """The layers one training step runs: module i is successors[i] where replace[i], else its N / M
    predecessor layers."""
    r = len(predecessors) // len(successors)
    stack = []
    for i, swap in enumerate(replace):
        stack.extend([successors[i]] if swap else predecessors[i * r:(i + 1) * r])
    return stack


@register("theseus", paper="Xu et al. 2020, arXiv:2002.02925", options=OPTIONS)
def run(job: Job) -> Result:
    o = job.options
    check_task(job, "theseus")
    if not 0 <= o["base_rate"] <= 1 or not 0 < o["until"] <= 1:
        raise PlmkitError("theseus wants --base-rate in [0, 1] and --until in (0, 1]")
    student, info = build_student(job.teacher, {**o, "hidden": None, "student": None}, first)
    body, teacher_body = student.body, job.teacher.body
    M, N = body.config.num_layers, teacher_body.config.num_layers
    if N % M or body.config.hidden_size != teacher_body.config.hidden_size:
        raise PlmkitError(f"theseus replaces modules of N / M layers in place: the student needs the teacher's "
                          f"width and a number of layers dividing its {N}")
    successors = list(body.layers)
    params = [p for layer in successors for p in layer.parameters()]
    steps = o["epochs"] * -(-len(job.train) // o["batch_size"])
    done = [0]
    rates = []

    def step(m, batch):
        p = replacement_rate(done[0], steps, o["base_rate"], o["until"])
        replace = (torch.rand(M) < p).tolist()
        layers = mixed_stack(successors, list(m.teacher.body.layers), replace)
        body.stack = lambda: layers  # this step's hybrid; the student alone runs when the attribute is gone
        try:
            out = m.student(batch)
        finally:
            del body.stack
        done[0] += 1
        rates.append(p)
        return {"loss": out["loss"], "replace_rate": p, "replaced": sum(replace) / M,
                "tokens": int(batch["attention_mask"].sum())}

    # Only the successors are optimised. The frozen embedding table's (V × H) gradient is not even computed;
    # the classifier's is (it is small), so a step that happens to replace no module still has a graph.
    frozen = list(body.embeddings.parameters())
    for p in frozen:
        p.requires_grad_(False)
    try:
        selection = train_student(job, student, step, out=job.out, params=params)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    info.update(modules=M, layers_per_module=N // M,
                steps_to_full_replacement=next((i for i, r in enumerate(rates) if r >= 1.0), None))
    return Result(student, info, selection.curve, selection.best_step)
