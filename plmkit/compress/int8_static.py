"""int8-static = int8 weights as in int8, and each linear layer's input quantized with a scale and zero point
fixed beforehand from calibration data (static quantization). Jacob et al. 2018, arXiv:1712.05877; the
percentile calibration of Wu et al. 2020, arXiv:2004.09602.

Recipe: run the fp32 model on calibration examples, record the range of each linear layer's input, and fix
its uint8 quantization (scale, zero point) from that range (Jacob et al. §3); at run time the kernel then
quantizes the input as it reads it, without the min/max pass over every batch that dynamic quantization
makes. The range is the input's p-th and (100 − p)-th percentiles rather than its min and max (Wu et al.
§4.2), since a few outlying activations — BERT's LayerNorm outputs have some — would otherwise stretch the
scale for all the others; the fine-tuned weights are not trained further (post-training quantization; the
alternative, training with fake quantization, is what Q8BERT does).

Where plmkit departs: only the inputs of the linear layers are quantized — LayerNorm, GELU, softmax and the
attention products stay fp32 and the outputs come back as fp32, as in int8 — so the saving over dynamic
quantization is the per-batch range pass, not a graph that stays in int8; each layer's range is the mean
over calibration batches of the batch's percentiles (of up to 2^20 values sampled from it), not a histogram
over all of them; inputs use 7 bits (fbgemm's reduce_range, see plmkit.compress.quantize).
"""

from __future__ import annotations

import copy
import random

import torch
from torch import nn

from ..data.tasks import TASKS
from .int8 import EMBEDDINGS, saved_as_int8
from .quantize import StaticInt8Linear, _check_kernels
from .registry import Job, Option, Result, register

OPTIONS = (
    EMBEDDINGS,
    Option("calibration", int, 256, "training examples (drawn with --seed) run to fix the activation ranges "
           "(default 256)"),
    Option("percentile", float, 99.99, "each input's range is its p-th and (100 − p)-th percentiles; 100 = min "
           "and max (default 99.99)"),
    Option("seed", int, 0, "seed for drawing the calibration examples (default 0)"),
)
SAMPLE = 1 << 20  # values per batch and layer the percentiles are computed on


@torch.no_grad()
def calibrate(model: nn.Module, examples: list, percentile: float, batch_size: int = 32,
              seed: int = 0) -> dict[str, tuple[float, float]]:
    """(low, high) of the input of every nn.Linear of the TaskModel `model` on `examples`, by module name:
    the mean over batches of each batch's (100 − p)-th and p-th percentiles."""
    from ..heads import evaluate

    g = torch.Generator().manual_seed(seed)
    seen: dict[str, list[tuple[float, float]]] = {}

    def record(name):
        def hook(_module, args):
            x = args[0].detach().flatten().float()
            if percentile >= 100:
                seen.setdefault(name, []).append((float(x.min()), float(x.max())))
                return
            if x.numel() > SAMPLE:
                x = x[torch.randint(x.numel(), (SAMPLE,), generator=g)]
            q = torch.quantile(x, torch.tensor([1 - percentile / 100, percentile / 100]))
            seen.setdefault(name, []).append((float(q[0]), float(q[1])))
        return hook

    handles = [m.register_forward_pre_hook(record(name)) for name, m in model.named_modules()
               if isinstance(m, nn.Linear)]
    try:
        evaluate(model, model.tokenizer, examples, labelled=False, batch_size=batch_size)
    finally:
        for h in handles:
            h.remove()
    return {name: (sum(lo for lo, _ in r) / len(r), sum(hi for _, hi in r) / len(r)) for name, r in seen.items()}


def quantize_static(model: nn.Module, ranges: dict[str, tuple[float, float]]) -> nn.Module:
    """`model` with every calibrated nn.Linear replaced, in place, by a StaticInt8Linear."""
    _check_kernels()
    for name, (low, high) in ranges.items():
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, attr, StaticInt8Linear.calibrated(getattr(owner, attr), low, high))
    return model


@register("int8-static", paper="Jacob et al. 2018, arXiv:1712.05877; Wu et al. 2020, arXiv:2004.09602",
          options=OPTIONS, tasks=TASKS)
def run(job: Job) -> Result:
    o = job.options
    examples = random.Random(o["seed"]).sample(job.train, min(o["calibration"], len(job.train)))
    student = copy.deepcopy(job.teacher).cpu().eval()
    ranges = calibrate(student, examples, o["percentile"], seed=o["seed"])
    quantize_static(student, ranges)
    return saved_as_int8(job, student, {"activations": f"static, {o['percentile']} percentile of "
                                                       f"{len(examples)} calibration examples"})
