"""dynabert = train one network whose narrower and shallower sub-networks all work — heads and neurons
rewired by importance, then width- and depth-adaptive distillation — and keep the sub-network of
--width and --depth. Hou et al. 2020, "DynaBERT: Dynamic BERT with Adaptive Width and Depth",
arXiv:2004.04037.

Recipe (§3): (1) network rewiring: the heads of every layer, and the neurons of every feed-forward, are
sorted by importance (the gradient proxy of Michel et al., as prune-heads and prune-ffn compute it), so that
the first m_w · N heads and m_w · F neurons are the most important: a width-m_w sub-network keeps those.
(2) DynaBERT_W: for each batch, every width m_w in the list is trained by distillation from the fixed
fine-tuned teacher, L = SCE(z_s, z_t) + Σ_l MSE(h_s,l, h_t,l) over the embedding and every layer's output
(λ1 = λ2 = 1), gradients summed over widths. (3) DynaBERT: every (width, depth) pair is trained, distilled
from the width-adaptive model at the same width and full depth; a depth-m_d sub-network keeps m_d · L layers,
dropping every other of the rest, and its hidden states learn from the teacher layers they stand for.
Widths (1, 0.75, 0.5, 0.25) and depths (1, 0.75, 0.5) in the paper; data augmentation as TinyBERT's.

Here: `--widths`, `--depths` as lists, `--width-epochs` of stage 2 and `--epochs` of stage 3; at the end the
sub-network of `--width` and `--depth` is cut out for real (plmkit.compress.structure: its heads, neurons and
layers removed), and compression.json records the dev score of every trained (width, depth) pair of the
same weights.

Where plmkit departs: no data augmentation; the depth rule keeps evenly spaced layers with the top one
(plmkit.compress.structure.evenly_spaced; the paper drops layers d with (d + 1) mod (1 / (1 − m_d)) = 0), and
the default lists are shorter than the paper's for a CPU (1, 0.75, 0.5 each); the importance is computed
on `--importance-examples` training examples.
"""

from __future__ import annotations

import contextlib
import copy

import torch

from . import storage, structure
from .kd import forward, soft_cross_entropy, teacher_inputs, train_student
from .prune_heads import importance_batches
from .registry import BATCH_SIZE, LR, MAX_LENGTH, SEED, Job, Option, Result, register

OPTIONS = (
    Option("widths", str, "1.0,0.75,0.5", "width multipliers trained (default 1.0,0.75,0.5)"),
    Option("depths", str, "1.0,0.75,0.5", "depth multipliers trained (default 1.0,0.75,0.5)"),
    Option("width", float, 0.5, "width of the sub-network kept: that share of each layer's heads and neurons "
           "(default 0.5)"),
    Option("depth", float, 0.75, "depth of the sub-network kept: that share of the layers (default 0.75)"),
    Option("width_epochs", int, 1, "passes over --train of width-adaptive distillation (default 1)"),
    Option("epochs", int, 1, "passes over --train of width- and depth-adaptive distillation (default 1)"),
    Option("importance_examples", int, 512, "training examples (drawn with --seed) the rewiring's importance is "
           "computed on (default 512)"),
    LR, BATCH_SIZE, MAX_LENGTH, SEED,
)


def _fractions(text: str, name: str) -> list[float]:
    from ..errors import PlmkitError

    try:
        values = sorted({float(x) for x in text.split(",") if x.strip()}, reverse=True)
    except ValueError:
        raise PlmkitError(f"dynabert --{name}: expected comma-separated numbers, got {text!r}") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise PlmkitError(f"dynabert --{name}: multipliers must be in (0, 1], got {text!r}")
    return values


def rewire(model, batches: list[dict]) -> dict:
    """Sort each layer's heads and feed-forward neurons by importance, most important first (in place, the
    function unchanged); returns the orders."""
    from ..analysis.heads import head_importance, task_losses

    heads = head_importance(model, batches, task_losses)
    neurons = structure.neuron_importance(model, batches, task_losses)
    head_order = [h.argsort(descending=True, stable=True).tolist() for h in heads]
    neuron_order = [n.argsort(descending=True, stable=True).tolist() for n in neurons]
    structure.keep_heads(model.body, head_order)
    structure.keep_neurons(model.body, neuron_order)
    return {"heads": head_order, "neurons": neuron_order}


@contextlib.contextmanager
def sub_network(model, width: float, layers: list[int] | None = None):
    """Within the block the model runs as its width-`width` sub-network (the first heads and neurons of each
    layer, by rewiring the most important) over `layers` (default all)."""
    from ..analysis.heads import head_mask

    stack = structure.blocks(model.body)
    N, widths = stack[0].attn.num_heads, [b.ffn.up.out_features for b in stack]
    heads = torch.zeros(len(stack), N)
    heads[:, :max(1, round(width * N))] = 1
    neurons = [(torch.arange(F_) < max(1, round(width * F_))).float() for F_ in widths]
    with head_mask(model, heads), structure.neuron_mask(model, neurons):
        with (structure.layer_subset(model.body, layers) if layers is not None else contextlib.nullcontext()):
            yield


def distil_loss(s_logits, s_states, t_logits, t_states, mask, picked: list[int]) -> torch.Tensor:
    """SCE(z_s, z_t) + MSE of the embeddings + Σ_i MSE(student layer i, teacher layer picked[i]) over real tokens."""
    from .tinybert import masked_mse

    tokens = mask.bool()[:, :, None]
    hidden = masked_mse(s_states[0], t_states[0], tokens)
    for i, g in enumerate(picked, start=1):
        hidden = hidden + masked_mse(s_states[i], t_states[g + 1], tokens)
    return soft_cross_entropy(s_logits, t_logits) + hidden


@register("dynabert", paper="Hou et al. 2020, arXiv:2004.04037", options=OPTIONS)
def run(job: Job) -> Result:
    from ..evaluation.metrics import MAIN
    from ..heads import evaluate

    o = job.options
    widths, depths = _fractions(o["widths"], "widths"), _fractions(o["depths"], "depths")
    student = copy.deepcopy(job.teacher)
    student.tokenizer = job.teacher.tokenizer
    orders = rewire(student, importance_batches(job, student))
    L = len(structure.blocks(student.body))
    full = list(range(L))

    def depth_layers(d: float) -> list[int]:
        return structure.evenly_spaced(L, max(1, round(d * L)))

    def width_step(m, batch):
        with torch.no_grad():
            t_logits, t_states = forward(m.teacher, teacher_inputs(batch), every_position=True)
        loss = 0
        for w in widths:
            with sub_network(m.student, w):
                s_logits, s_states = forward(m.student, batch, every_position=True)
            loss = loss + distil_loss(s_logits, s_states, t_logits, t_states, batch["attention_mask"], full)
        return {"loss": loss, "tokens": int(batch["attention_mask"].sum())}

    if o["width_epochs"]:
        train_student(job, student, width_step, out=job.out / "width", epochs=o["width_epochs"], select=False)
    width_teacher = copy.deepcopy(student).eval().requires_grad_(False)

    def depth_step(m, batch):
        loss = 0
        for w in widths:
            with torch.no_grad(), sub_network(width_teacher, w):
                t_logits, t_states = forward(width_teacher, batch, every_position=True)
            for d in depths:
                picked = depth_layers(d)
                with sub_network(m.student, w, picked):
                    s_logits, s_states = forward(m.student, batch, every_position=True)
                loss = loss + distil_loss(s_logits, s_states, t_logits, t_states, batch["attention_mask"], picked)
        return {"loss": loss, "tokens": int(batch["attention_mask"].sum())}

    if o["epochs"]:
        train_student(job, student, depth_step, out=job.out, select=False)
    metric = MAIN[job.task]
    grid = []
    for w in widths:
        for d in depths:
            with sub_network(student, w, depth_layers(d)):
                score = evaluate(student, student.tokenizer, job.dev, batch_size=2 * o["batch_size"])[0][metric]
            grid.append({"width": w, "depth": d, f"dev_{metric}": score})
    stack = structure.blocks(student.body)
    n_heads = max(1, round(o["width"] * stack[0].attn.num_heads))
    structure.keep_heads(student.body, [list(range(n_heads))] * L)
    structure.keep_neurons(student.body, [list(range(max(1, round(o["width"] * b.ffn.up.out_features))))
                                          for b in stack])
    kept_layers = depth_layers(o["depth"])
    structure.keep_layers(student.body, kept_layers)
    info = {"init": "teacher", "layers": len(kept_layers), "hidden": student.body.config.hidden_size,
            "teacher_layers": kept_layers, "width": o["width"], "depth": o["depth"],
            **structure.shape(student.body), "rewiring": orders, "dev_by_width_depth": grid}
    return Result(student, info, save=storage.saver({"structure": structure.shape(student.body)}))
