"""lottery = lottery tickets of the fine-tuned model, found by pruning and trained again from the rewound
weights: by weight magnitude (Chen et al. 2020) or as structured tickets of heads and feed-forward blocks
(Prasanna et al. 2020). Chen et al. 2020, arXiv:2007.12223; Prasanna et al. 2020, arXiv:2005.00561.

Recipe, `--kind magnitude` (Chen et al. §3): iterative magnitude pruning. Fine-tune θ₀ (the pre-trained
weights) on the task; remove the smallest-magnitude share of the remaining weights, globally over the
Transformer's matrices (not the embeddings or the task head); rewind the survivors to θ₀ and fine-tune again;
repeat until the target sparsity (10 % a round in the paper). The ticket is m ⊙ θ₀ fine-tuned; at 40-90 %
sparsity it matches the full model on most GLUE tasks.
Recipe, `--kind structured` (Prasanna et al. §3-4): the importance of each head (Michel et al.'s gradient
proxy) and of each whole feed-forward block (the same proxy on a gate over the block's output) is computed
again before each step, which prunes 10 % of the heads and one block, as long as the dev score stays at or
above 90 % of the full model's; the surviving structure is then fine-tuned from the rewound weights.

Here: the teacher is the first round's fine-tuned model; `--rewind pretrained` rewinds to the pre-trained
model the teacher was fine-tuned from (as plmkit.json records it; the task head starts anew, seeded),
`--rewind teacher` to the fine-tuned weights themselves; `--rounds` of pruning reach `--sparsity` at the
same rate each round; every fine-tuning is `--epochs` long with the dev set choosing the epoch.
A magnitude ticket is stored sparse (a bitmap of the surviving weights and their values: plmkit.compress.
storage) and compression.json reports that size — but it runs on dense kernels, where zeros cost as much as
any weight, so it is no faster (and says so). A structured ticket has its heads and blocks cut out of the
matrices (plmkit.compress.structure), so it is smaller and faster.

Where plmkit departs: fewer rounds at a larger rate than the paper's 10 % (3 rounds for 50 % by default, on a
CPU); a structured step stops at `--sparsity` of the heads as well as at the dev floor (`--floor`, default
the paper's 0.9); removing a feed-forward block keeps its output bias (what masking its neurons leaves).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from . import storage, structure
from .prune_heads import importance_batches
from .registry import BATCH_SIZE, LR, MAX_LENGTH, PATIENCE, SEED, Job, Option, Result, register
from ..errors import PlmkitError

log = logging.getLogger("plmkit")

OPTIONS = (
    Option("kind", str, "magnitude", "magnitude (unstructured, Chen et al.; default) or structured (heads and "
           "feed-forward blocks, Prasanna et al.)", choices=("magnitude", "structured")),
    Option("sparsity", float, 0.5, "magnitude: share of the Transformer's matrix weights removed; structured: "
           "largest share of the heads removed (default 0.5)"),
    Option("rounds", int, 3, "magnitude: pruning rounds, each followed by rewinding and fine-tuning (default 3)"),
    Option("floor", float, 0.9, "structured: stop before the dev score falls below this share of the teacher's "
           "(default 0.9)"),
    Option("rewind", str, "pretrained", "weights the survivors are rewound to: pretrained (the model the teacher "
           "was fine-tuned from; default) or teacher", choices=("pretrained", "teacher")),
    Option("importance_examples", int, 512, "structured: training examples (drawn with --seed) the importance is "
           "computed on (default 512)"),
    Option("epochs", int, 1, "passes over --train of each fine-tuning (default 1)"), LR, BATCH_SIZE, MAX_LENGTH, SEED,
    PATIENCE,
)


def rewound(job: Job) -> nn.Module:
    """θ₀: a TaskModel with the rewind point's body and a head seeded anew (pretrained), or the teacher."""
    import json

    from .. import load
    from ..heads import TaskModel

    if job.options["rewind"] == "teacher":
        model = copy.deepcopy(job.teacher).requires_grad_(True)  # the teacher is frozen once a round has run
    else:
        meta = json.loads((job.teacher_dir / "plmkit.json").read_text()) if job.teacher_dir else {}
        source = meta.get("finetuned", {}).get("model")
        if not source or not Path(source).is_dir():
            raise PlmkitError("the teacher's plmkit.json names no pre-trained model directory that exists "
                              f"({source}); use --rewind teacher", path=job.teacher_dir)
        torch.manual_seed(job.options["seed"])
        model = TaskModel(load(source), job.teacher.config)
    model.tokenizer = job.teacher.tokenizer
    return model


def matrices(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """The weights magnitude pruning ranks: every linear layer's inside the Transformer blocks."""
    return [(m, "weight") for block in structure.blocks(model.body) for m in block.modules()
            if isinstance(m, nn.Linear)]


def fine_tune(job: Job, model, out: Path):
    from .kd import train_student

    def step(m, batch):
        return {"loss": F.cross_entropy(m.student(batch)["logits"].float(), batch["labels"]),
                "tokens": int(batch["attention_mask"].sum())}

    return train_student(job, model, step, out=out)


def magnitude(job: Job) -> Result:
    o = job.options
    if not 0 < o["sparsity"] < 1 or o["rounds"] < 1:
        raise PlmkitError("lottery: --sparsity must be in (0, 1) and --rounds at least 1")
    rate = 1 - (1 - o["sparsity"]) ** (1 / o["rounds"])
    trained = copy.deepcopy(job.teacher)
    masks, rounds, selection = None, [], None
    for r in range(1, o["rounds"] + 1):
        # prune the trained model's smallest weights (torch's global magnitude pruning keeps earlier masks)
        prune.global_unstructured(matrices(trained), pruning_method=prune.L1Unstructured, amount=rate)
        masks = [m.weight_mask.detach().clone() for m, _ in matrices(trained)]
        ticket = rewound(job)
        for (m, _), mask in zip(matrices(ticket), masks):
            prune.custom_from_mask(m, "weight", mask)
        selection = fine_tune(job, ticket, job.out / f"round-{r}" if r < o["rounds"] else job.out)
        kept = float(sum(m.sum() for m in masks) / sum(m.numel() for m in masks))
        rounds.append({"round": r, "sparsity": round(1 - kept, 4), "dev": selection.best_metrics})
        log.info("lottery round %d: sparsity %.3f", r, 1 - kept)
        trained = ticket
    for m, name in matrices(trained):
        prune.remove(m, name)
    trained.eval()
    names = {id(m): n for n, m in trained.named_modules()}
    encodings = {f"{names[id(m)]}.weight": "sparse" for m, _ in matrices(trained)}
    dense = sum(p.numel() for p in trained.parameters())
    zeros = sum(int((m.weight == 0).sum()) for m, _ in matrices(trained))
    info = {"init": f"rewound to {o['rewind']}", "layers": len(structure.blocks(trained.body)),
            "hidden": trained.body.config.hidden_size, "kind": "magnitude", "rounds": rounds,
            "sparsity": rounds[-1]["sparsity"], "dense_parameters": dense,
            "speed": "unstructured zeros run on dense kernels: no faster than the dense model"}
    return Result(trained, info, selection.curve, selection.best_step,
                  save=storage.saver({}, encodings), parameters=dense - zeros)


def block_importance(model, batches: list[dict]) -> torch.Tensor:
    """(L,) E_x |∂L(x)/∂ξ_l| for a gate ξ_l on each feed-forward block's activations (all its neurons at once)."""
    from ..analysis.heads import task_losses

    stack = structure.blocks(model.body)
    total = torch.zeros(len(stack), dtype=torch.float64)
    count = 0
    for batch in batches:
        B = batch["input_ids"].shape[0]
        gates = torch.ones(B, len(stack), requires_grad=True)
        masks = [gates[:, i:i + 1].expand(B, b.ffn.up.out_features) for i, b in enumerate(stack)]
        with structure.neuron_mask(model, masks):
            losses = task_losses(model, batch)
        (grad,) = torch.autograd.grad(losses.sum(), gates)
        total += grad.abs().sum(0).double()
        count += B
    return (total / max(count, 1)).float()


def structured(job: Job) -> Result:
    from ..analysis.heads import head_importance, head_mask, task_losses
    from ..evaluation.metrics import MAIN
    from ..heads import evaluate

    o = job.options
    metric = MAIN[job.task]
    model = copy.deepcopy(job.teacher).eval()
    model.tokenizer = job.teacher.tokenizer
    stack = structure.blocks(model.body)
    L, N = len(stack), stack[0].attn.num_heads
    batches = importance_batches(job, model)
    heads, blocks = torch.ones(L, N), torch.ones(L)
    per_step, limit = max(1, round(0.1 * L * N)), round(o["sparsity"] * L * N)

    def masked():
        neurons = [torch.full((b.ffn.up.out_features,), float(blocks[i])) for i, b in enumerate(stack)]
        return head_mask(model, heads), structure.neuron_mask(model, neurons)

    def dev_score() -> float:
        h, n = masked()
        with h, n:
            return evaluate(model, model.tokenizer, job.dev, batch_size=2 * o["batch_size"])[0][metric]

    full = dev_score()
    steps = [{"heads_removed": 0, "blocks_removed": 0, f"dev_{metric}": full}]
    while int((heads == 0).sum()) < limit:
        h, n = masked()
        with h, n:
            head_scores = head_importance(model, batches, task_losses)
            block_scores = block_importance(model, batches)
        new_heads, new_blocks = heads.clone(), blocks.clone()
        ranked = head_scores.masked_fill(heads == 0, float("inf")).flatten().argsort().tolist()
        order = [(i // N, i % N) for i in ranked]
        for layer, head in order[:min(per_step, limit - int((heads == 0).sum()))]:
            if new_heads[layer].sum() > 1:
                new_heads[layer, head] = 0
        alive = blocks.nonzero().flatten()
        if len(alive) > 1:
            new_blocks[alive[block_scores[alive].argmin()]] = 0
        old = heads, blocks
        heads, blocks = new_heads, new_blocks
        score = dev_score()
        if score < o["floor"] * full or torch.equal(old[0], heads):
            heads, blocks = old
            break
        steps.append({"heads_removed": int((heads == 0).sum()), "blocks_removed": int((blocks == 0).sum()),
                      f"dev_{metric}": score})
    ticket = rewound(job)
    structure.keep_heads(ticket.body, structure.kept(list(heads)))
    structure.keep_neurons(ticket.body, [list(range(b.ffn.up.out_features)) if blocks[i] else []
                                         for i, b in enumerate(structure.blocks(ticket.body))])
    selection = fine_tune(job, ticket, job.out)
    info = {"init": f"rewound to {o['rewind']}", "layers": L, "hidden": ticket.body.config.hidden_size,
            "kind": "structured", "steps": steps, **structure.shape(ticket.body),
            "removed_blocks": [i for i in range(L) if not blocks[i]]}
    return Result(ticket, info, selection.curve, selection.best_step,
                  save=storage.saver({"structure": structure.shape(ticket.body)}))


@register("lottery", paper="Chen et al. 2020, arXiv:2007.12223; Prasanna et al. 2020, arXiv:2005.00561",
          options=OPTIONS)
def run(job: Job) -> Result:
    from .kd import check_task

    check_task(job, "lottery")
    return magnitude(job) if job.options["kind"] == "magnitude" else structured(job)
