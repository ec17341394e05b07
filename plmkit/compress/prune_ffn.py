"""prune-ffn = feed-forward neurons removed from the least important up, by the gradient proxy of Michel et
al. applied to a gate on each neuron, recomputed after each step, until --ratio of them are gone; cut out of
the matrices, so the model is smaller and faster. After Michel et al. 2019 (arXiv:1905.10650) and Molchanov
et al. 2017 (arXiv:1611.06440), whose Taylor criterion it is.

Recipe: as prune-heads with a neuron for a head — a gate ξ_f on each neuron's activation (between the
feed-forward's two matrices), importance I_f = E_x |∂L(x)/∂ξ_f| normalised per layer, neurons pruned in steps
of 10 % of them with the importance recomputed on the model pruned so far; a pruned neuron takes a row of
`up` and a column of `down` with it (plmkit.compress.structure). Then `--epochs` of fine-tuning (default 1).

Where plmkit departs: Michel et al. score heads only; the same proxy on neurons is Molchanov et al.'s
first-order Taylor criterion, used here with their per-example absolute value; every layer keeps at least one
neuron; the recovery fine-tuning is plmkit's.
"""

from __future__ import annotations

import copy

from . import structure
from .prune_heads import PRUNING, importance_batches, pruned_result
from .registry import Job, Result, register


@register("prune-ffn", paper="Michel et al. 2019, arXiv:1905.10650; Molchanov et al. 2017, arXiv:1611.06440",
          options=PRUNING)
def run(job: Job) -> Result:
    from ..analysis.heads import task_losses

    o = job.options
    student = copy.deepcopy(job.teacher)
    student.tokenizer = job.teacher.tokenizer
    widths = [b.ffn.up.out_features for b in structure.blocks(student.body)]
    batches = importance_batches(job, student)

    def score(masks):
        scores = structure.neuron_importance(student, batches, task_losses, mask=masks)
        return [s / s.norm().clamp_min(1e-20) for s in scores]

    masks = structure.prune_iteratively(widths, score, o["ratio"], o["step"], job.progress)
    structure.keep_neurons(student.body, structure.kept(masks))
    return pruned_result(job, student, sum(p.numel() for p in job.teacher.parameters()),
                         {"neurons_before": sum(widths)})
