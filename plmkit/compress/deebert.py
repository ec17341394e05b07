"""deebert = an off-ramp classifier after every layer, trained on the frozen fine-tuned model; at inference a
row leaves at the first ramp whose prediction's entropy is below a threshold S. Xin et al. 2020,
arXiv:2004.12993.

Recipe (§3): stage 1 fine-tunes the backbone and its final classifier (the teacher here is that model);
stage 2 freezes them and trains the off-ramps — each a pooler, dropout and a linear classifier on layer l's
[CLS] state — on the sum of their cross-entropies. At inference, after each layer the ramp's entropy
−Σ p log p is compared with S; below it the example exits with the ramp's prediction. Sweeping S trades
accuracy for layers run (their Fig. 2).

Here: `--threshold S`, or by default the sweep over `--thresholds` on the dev set picks the S that runs the
fewest layers while its dev score stays within `--max-drop` of the model's with every layer; the sweep
(metric, mean exit layer, layers saved, examples/s at batch 32 for each S) goes into compression.json and
exit_curve.png.

Where plmkit departs: batches larger than 1 — rows that exit leave the batch and the others run on
(plmkit.compress.exits), where the released code runs one example at a time; the ramps' poolers start
from the model's pooler rather than at random, and train at 1e-3 by default (only they train, on frozen
features; at a body's 5e-5 a few hundred examples leave them near chance); the default thresholds are
shares of ln C (the largest entropy with C labels) so that they mean the same for any number of labels.
"""

from __future__ import annotations

import torch.nn.functional as F

from . import storage
from .exits import choose, entropy_grid, exit_model, plot_curve, sweep
from .kd import check_task, train_student
from .registry import BATCH_SIZE, MAX_LENGTH, SEED, Job, Option, Result, register
from ..evaluation.metrics import MAIN

MAX_DROP = Option("max_drop", float, 0.01, "the chosen setting's dev score may fall this far below the full "
                  "model's (default 0.01, one point of accuracy)")
OPTIONS = (
    Option("epochs", int, 2, "passes over --train training the off-ramps (default 2)"),
    Option("lr", float, 1e-3, "peak learning rate of the off-ramps, linear warm-up (10 %%) and decay (default 1e-3)"),
    BATCH_SIZE, MAX_LENGTH, SEED,
    Option("threshold", float, None, "entropy threshold S (default: chosen on the dev set by the sweep)"),
    Option("thresholds", str, None, "comma-separated thresholds to sweep (default: 0, 2, 5, 10, 20 … 90 %% of ln C)"),
    MAX_DROP,
)


def settle(job: Job, model, key: str, grid: list, given, out_name: str = "exit_curve.png") -> dict:
    """Sweep `key` over `grid` on the dev set, plot the curve, and set the model's `key` to `given` or to the
    setting `choose` picks; returns what compression.json records."""
    metric = MAIN[job.task]
    curve = sweep(model, job.dev, [{key: v} for v in grid], metric, progress=job.progress)
    full = curve[0][metric]
    picked = {key: given} if given is not None else {key: choose(curve, metric, full, job.options["max_drop"])[key]}
    setattr(model, key, picked[key])
    plot_curve(curve, key, metric, full, job.out / out_name)
    return {"exit_policy": model.policy, **picked, "chosen_on": "dev" if given is None else "given",
            "dev_curve": curve, "layers": len(model.body.stack()), "hidden": model.body.config.hidden_size,
            "init": "teacher"}


@register("deebert", paper="Xin et al. 2020, arXiv:2004.12993", options=OPTIONS)
def run(job: Job) -> Result:
    check_task(job, "deebert")
    o = job.options
    model = exit_model(job.teacher, "entropy", own_pooler=True)
    trained = [p for p in model.parameters() if id(p) not in {id(q) for q in model.ramps.parameters()}]
    for p in trained:  # stage 2: backbone and final classifier frozen
        p.requires_grad_(False)

    def step(m, batch):
        logits = m.student.all_logits(batch)[:-1]  # the ramps'
        loss = sum(F.cross_entropy(z.float(), batch["labels"]) for z in logits)
        return {"loss": loss, "tokens": int(batch["attention_mask"].sum())}

    train_student(job, model, step, out=job.out, params=list(model.ramps.parameters()), select=False)
    for p in trained:
        p.requires_grad_(True)
    grid = ([float(x) for x in o["thresholds"].split(",")] if o["thresholds"]
            else entropy_grid(len(job.teacher.config.labels)))
    info = settle(job, model, "threshold", sorted(set([0.0] + grid)), o["threshold"])
    return Result(model, info, save=storage.saver({"exits": model.spec()}),
                  parameters=sum(p.numel() for p in model.parameters()))
