"""ternary = TernaryBERT: weights in {−α, 0, +α} and 8-bit activations, learned by distillation from the
full-precision model, with approximation-aware or loss-aware ternarization; stored as 2-bit codes. Zhang et al.
2020, "TernaryBERT: Distillation-aware Ultra-low Bit BERT", arXiv:2009.12812.

Recipe (§3): the student starts as the fine-tuned full-precision model (the teacher) and keeps full-precision
latent weights w; every forward pass uses their ternary form ŵ = α · b, b ∈ {−1, 0, +1}, and the inputs of
the linear layers quantized to 8 bits (symmetric, min-max), the gradients passing both by the straight-
through estimator. Ternarization (§3.1):
    twn  approximation-aware (Li et al. 2016): Δ = 0.7 · mean |w|, b = sign(w) where |w| > Δ, α = mean |w|
         over those
    lat  loss-aware (Hou & Kwok 2018): minimises the loss's second-order expansion with the diagonal
         Hessian approximated by Adam's second moment v, D = diag(√v + ε): alternately
         α = ‖b ⊙ D ⊙ w‖₁ / ‖b ⊙ D‖₁ and b = I_{α/2}(w), started from twn's solution
one α per matrix for the Transformer weights, one per row for the word embedding (§3.1.3). Ternarized: every
linear layer of the Transformer and the word embedding; position and segment embeddings, LayerNorm and
biases stay in full precision. The loss is distillation (§3.2): L = L_trm + L_pred, with L_trm the MSE of the
embeddings, of every layer's output and of every attention matrix (before softmax) between student and
teacher, and L_pred the soft cross-entropy of the logits.

Here: `--method twn|lat`, `--epochs` of that distillation with the dev set choosing the epoch (scored with
the ternary weights and 8-bit activations); then every ternarized linear layer becomes an int8 layer whose
values are the codes b and whose per-row scales are α (plmkit.compress.quantize: fbgemm's kernel, the
input quantized to 8 bits per batch — full range, since ternary weights cannot saturate its int16 sums),
so the model runs as fast as int8. Saved: the codes four to a byte, α and the other tensors in fp32, the
position embeddings in int8 (plmkit.compress.storage); compression.json's sizes are those files'.

Where plmkit departs: the pooler is ternarized too (the task head stays fp32); v for lat is an exponential
average of squared gradients (β₂ = 0.999) kept beside each weight, the second moment Adam keeps, without its
bias correction (α does not depend on D's scale); at inference the 8-bit activations are asymmetric per batch
(the kernel's) rather than the symmetric min-max of training; the position embeddings are stored in int8; no
data augmentation (the paper uses TinyBERT's for the small GLUE tasks).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import storage
from .kd import check_task, forward, soft_cross_entropy, teacher_inputs, train_student
from .quantize import Int8Linear, _check_kernels, int8_parameters, linear_settings
from .registry import TRAINING, Job, Option, Result, register
from .tinybert import intermediate_loss

OPTIONS = TRAINING + (
    Option("method", str, "lat", "ternarization: twn (approximation-aware) or lat (loss-aware; default)",
           choices=("twn", "lat")),
)
BETA2, EPS = 0.999, 1e-8


def twn(w: torch.Tensor, rows: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, α): TWN's ternary approximation of w (R, C), α (R, 1) per row or (1, 1) per matrix."""
    a = w.abs()
    dims = 1 if rows else (0, 1)
    delta = 0.7 * a.mean(dims, keepdim=True)
    b = (a > delta).to(w.dtype) * torch.sign(w)
    alpha = (a * b.abs()).sum(dims, keepdim=True) / b.abs().sum(dims, keepdim=True).clamp_min(1)
    return b, alpha


def lat(w: torch.Tensor, d: torch.Tensor, rows: bool, steps: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, α): the loss-aware ternarization of w under the diagonal weights d (same shape), from twn's start."""
    b, alpha = twn(w, rows)
    a = w.abs()
    dims = 1 if rows else (0, 1)
    for _ in range(steps):
        alpha = (d * a * b.abs()).sum(dims, keepdim=True) / (d * b.abs()).sum(dims, keepdim=True).clamp_min(1e-20)
        b = (a > alpha / 2).to(w.dtype) * torch.sign(w)
    return b, alpha


class Ternarize(nn.Module):
    """A parametrization: the weight the layer uses is α · b of its latent weight, the gradient passing
    straight through to the latent weight. With `loss_aware` it keeps v, the running mean of the squared
    gradient (registered as a hook by `attach`)."""

    def __init__(self, shape: torch.Size, rows: bool, loss_aware: bool):
        super().__init__()
        self.rows, self.loss_aware = rows, loss_aware
        self.register_buffer("v", torch.zeros(shape), persistent=False)

    def ternary(self, w: torch.Tensor) -> torch.Tensor:
        if self.loss_aware and bool(self.v.any()):
            b, alpha = lat(w, self.v.sqrt() + EPS, self.rows)
        else:
            b, alpha = twn(w, self.rows)
        return alpha * b

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.ternary(w.detach()) + (w - w.detach())  # exactly α · b, the gradient straight through

    def observe(self, grad: torch.Tensor) -> None:
        self.v.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)


def fake_quant_8bit(_module, args):
    """Forward pre-hook: the layer's input quantized to 8 bits, symmetric min-max per tensor, with the
    straight-through estimator."""
    x = args[0]
    scale = x.detach().abs().amax().clamp_min(1e-8) / 127
    return (torch.round(x.detach() / scale) * scale + (x - x.detach()),) + tuple(args[1:])


def attach(body: nn.Module, loss_aware: bool) -> list:
    """Ternarize, in place, every nn.Linear of `body` (per matrix, 8-bit inputs) and its word embedding (per
    row); returns the hook handles to remove at the end."""
    handles = []
    targets = [(m, False) for m in body.modules() if isinstance(m, nn.Linear)] + [(body.embeddings.tokens, True)]
    for m, rows in targets:
        p = Ternarize(m.weight.shape, rows, loss_aware)
        parametrize.register_parametrization(m, "weight", p)
        if loss_aware:
            handles.append(m.parametrizations.weight.original.register_hook(lambda g, p=p: p.observe(g)))
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_pre_hook(fake_quant_8bit))
    return handles


def freeze(body: nn.Module, handles: list) -> nn.Module:
    """The trained `body` for inference: each ternary linear layer an int8 layer of codes b and per-row scales
    α, the word embedding its ternary values; parametrizations and hooks gone."""
    for h in handles:
        h.remove()
    for name, m in list(body.named_modules()):
        if not parametrize.is_parametrized(m, "weight"):
            continue
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        if isinstance(m, nn.Linear):
            w = m.weight.detach()
            alpha = w.abs().amax(1)
            codes = torch.sign(w).to(torch.int8)
            parent, _, attr = name.rpartition(".")
            setattr(body.get_submodule(parent) if parent else body, attr,
                    Int8Linear.from_float(m, values=codes, scale=alpha.clamp_min(1e-12), reduce_range=False))
    return body


def encodings(model: nn.Module) -> dict[str, str]:
    """How the ternary model's tensors are stored: codes in 2 bits, the word embedding ternary, the position
    embeddings int8, the rest as they are."""
    enc = {}
    for name, m in model.named_modules():
        if isinstance(m, Int8Linear):
            enc[f"{name}.weight_int8"] = "2bit"
    emb = model.body.embeddings
    enc[next(n for n, m in model.named_modules() if m is emb.tokens) + ".weight"] = "ternary"
    positions = getattr(emb, "positions", None)
    if isinstance(positions, nn.Embedding):
        name = next(n for n, m in model.named_modules() if m is positions) + ".weight"
        with torch.no_grad():
            positions.weight.copy_(storage.round_trip(positions.weight, "int8"))
        enc[name] = "int8"
    return enc


@register("ternary", paper="Zhang et al. 2020, arXiv:2009.12812", options=OPTIONS)
def run(job: Job) -> Result:
    check_task(job, "ternary")
    _check_kernels()
    o = job.options
    student = copy.deepcopy(job.teacher)
    student.tokenizer = job.teacher.tokenizer
    handles = attach(student.body, o["method"] == "lat")
    L = len(student.body.stack())

    def step(m, batch):
        with torch.no_grad():
            t_logits, t_states = forward(m.teacher, teacher_inputs(batch), every_position=True)
        s_logits, s_states = forward(m.student, batch, every_position=True)
        trm = intermediate_loss(s_states, t_states, list(m.student.body.stack()), list(m.teacher.body.stack()),
                                batch["attention_mask"], list(range(1, L + 1)))
        pred = soft_cross_entropy(s_logits, t_logits)
        return {"loss": trm["loss"] + pred, "trm": trm["loss"].detach(), "pred": pred.detach(),
                "tokens": int(batch["attention_mask"].sum())}

    selection = train_student(job, student, step, out=job.out)
    freeze(student.body, handles)
    student.eval()
    info = {"init": "teacher", "layers": L, "hidden": student.body.config.hidden_size, "ternarization": o["method"],
            "activations": "8-bit"}
    return Result(student, info, selection.curve, selection.best_step,
                  save=storage.saver({"linear": linear_settings(student)}, encodings(student)),
                  parameters=int8_parameters(student))
