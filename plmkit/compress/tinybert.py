"""tinybert = TinyBERT's layer-to-layer distillation: embedding, attention-matrix, hidden-state and prediction
losses under a uniform layer map, intermediate layers first, then predictions. Jiao et al. 2020,
arXiv:1909.10351.

Recipe (§3): student layer m learns from teacher layer g(m) = m · N / M (g(0) = 0, the embeddings), with
    L_embd = MSE(E_s W_e, E_t)            embeddings, W_e a learned projection to the teacher's width
    L_attn = 1/h Σ_i MSE(A_s,i, A_t,i)    attention matrices of each head i *before* the softmax
    L_hidn = MSE(H_s W_h, H_t)            each layer's output, W_h learned
    L_pred = −softmax(z_t / t) · log softmax(z_s / t)   the logits, t = 1
summed over layers with weight 1. Two stages, each done twice: general distillation (intermediate layers
only, on a corpus, from a pre-trained teacher, the student random) gives a general TinyBERT; task-specific
distillation then runs the intermediate layers, then the prediction layer, from the fine-tuned teacher
(20 + 3 epochs on augmented data in the paper). The augmentation (Algorithm 1) replaces each word with
probability 0.4 by one of its K = 15 nearest words — a masked LM's predictions for single-piece words, GloVe
neighbours for the others — 20 new examples per example.

Here: `--corpus` runs the general stage (student random, `--layers/--hidden`; saved as a pre-trained model);
with `--train` the task stage runs `--intermediate-epochs` of intermediate-layer distillation and then
`--epochs` of prediction-layer distillation, starting from `--init` (default: the teacher's layers
g(1) … g(M); a general-stage directory reproduces the paper's two stages). `--augment N` adds N augmented
copies of each training example, words replaced by the `--augment-model` masked LM's top-K predictions
(default: the teacher's body, which needs its MLM head).

Where plmkit departs: W_e and W_h are the identity when the widths match (one learned W_h is shared by the
layers, without a bias, as the equations write it); the MSEs average over real tokens (attention: real
query–key pairs), not padding; augmentation replaces multi-piece words by the masked LM's prediction for a
single [MASK] in their place (no GloVe here); its defaults are far below the paper's (20 copies) for a CPU.
"""

from __future__ import annotations

import logging
import math
import random

import torch
from torch import nn

from ..errors import PlmkitError
from .kd import check_task, forward, soft_cross_entropy, teacher_inputs, train_student
from .registry import GENERAL, TRAINING, TRANSFORMER_STUDENT, Job, Option, Result, register
from .students import build_student, uniform_map

log = logging.getLogger("plmkit")

OPTIONS = TRAINING + TRANSFORMER_STUDENT + (
    Option("intermediate_epochs", int, 1, "epochs of embedding/attention/hidden-state distillation before the "
           "prediction stage (default 1; the paper: 20)"),
    Option("temperature", float, 1.0, "temperature t of the prediction loss (default 1, the paper's)"),
    Option("augment", int, 0, "augmented copies of each training example (default 0; the paper: 20)"),
    Option("augment_model", str, None, "masked LM directory proposing word replacements (default: the teacher's "
           "body; its tokenizer must be the teacher's)"),
) + GENERAL

P_REPLACE, TOP_K = 0.4, 15  # Algorithm 1: replacement probability and candidates per word


def attention_scores(layer, x: torch.Tensor) -> torch.Tensor:
    """The attention matrices of `layer` before the softmax, q·kᵀ / √d: x (B, T, H) → (B, N, T, T)."""
    attn = layer.attn
    if layer.norm_first:
        x = layer.attn_norm(x)
    B, T, H = x.shape
    q, k, _ = attn.qkv(x).view(B, T, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)  # 3 × (B, N, T, D)
    return q @ k.transpose(-2, -1) / math.sqrt(attn.head_dim)


def masked_mse(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over the entries where `keep` (broadcast to a's shape) is True."""
    keep = keep.expand_as(a)
    return (a.float() - b.float()).pow(2)[keep].mean()


def intermediate_loss(s_states, t_states, s_layers, t_layers, mask, layer_map, w_e=None, w_h=None
                      ) -> dict[str, torch.Tensor]:
    """L_embd + Σ_m (L_attn + L_hidn) for student layers m = 1 … M against teacher layers layer_map[m − 1].
    s_states / t_states: hidden states (embeddings, then each layer; (B, T, H) each); s_layers / t_layers:
    the blocks (for their attention scores); mask (B, T); w_e, w_h: projections to the teacher's width or None."""
    project_e = w_e if w_e is not None else nn.Identity()
    project_h = w_h if w_h is not None else nn.Identity()
    tokens = mask.bool()[:, :, None]  # (B, T, 1)
    pairs = (mask.bool()[:, None, :, None] & mask.bool()[:, None, None, :])  # (B, 1, T, T) real query-key pairs
    embd = masked_mse(project_e(s_states[0]), t_states[0], tokens)
    attn = hidn = 0
    for m, g in enumerate(layer_map, start=1):
        a_s = attention_scores(s_layers[m - 1], s_states[m - 1])
        with torch.no_grad():
            a_t = attention_scores(t_layers[g - 1], t_states[g - 1])
        # MSE per head averaged over heads = MSE over all heads' entries (every head has the same pairs)
        attn = attn + masked_mse(a_s, a_t, pairs)
        hidn = hidn + masked_mse(project_h(s_states[m]), t_states[g], tokens)
    return {"loss": embd + attn + hidn, "embd": embd.detach(), "attn": attn.detach(), "hidn": hidn.detach()}


def projections(student_width: int, teacher_width: int) -> dict[str, nn.Module]:
    """W_e and W_h when the widths differ (nothing to learn when they match)."""
    if student_width == teacher_width:
        return {}
    return {"w_e": nn.Linear(student_width, teacher_width, bias=False),
            "w_h": nn.Linear(student_width, teacher_width, bias=False)}


@register("tinybert", paper="Jiao et al. 2020, arXiv:1909.10351", options=OPTIONS, general=True)
def run(job: Job) -> Result:
    o = job.options
    if job.corpus is not None:
        from .general import tinybert_general

        return tinybert_general(job)
    check_task(job, "tinybert")
    teacher = job.teacher
    N = teacher.body.config.num_layers
    student, info = build_student(teacher, o, lambda n, m: [g - 1 for g in uniform_map(n, m)])
    M = student.body.config.num_layers
    if student.body.config.num_heads != teacher.body.config.num_heads:
        raise PlmkitError("the attention loss compares head by head: the student needs the teacher's "
                          f"{teacher.body.config.num_heads} heads")
    layer_map = uniform_map(N, M)
    extra = projections(student.body.config.hidden_size, teacher.body.config.hidden_size)
    examples = job.train
    if o["augment"]:
        examples = examples + augment(job, o["augment"])
    info.update(layer_map=layer_map, projections=sorted(extra), train_examples=len(examples))

    def intermediate(m, batch):
        with torch.no_grad():
            _, t_states = forward(m.teacher, teacher_inputs(batch), every_position=True)
        _, s_states = forward(m.student, batch, every_position=True)
        out = intermediate_loss(s_states, t_states, list(m.student.body.layers), list(m.teacher.body.layers),
                                batch["attention_mask"], layer_map, m.extra["w_e"] if extra else None,
                                m.extra["w_h"] if extra else None)
        return {**out, "tokens": int(batch["attention_mask"].sum())}

    def prediction(m, batch):
        with torch.no_grad():
            t_logits = m.teacher(teacher_inputs(batch))["logits"]
        s_logits = m.student(batch)["logits"]
        pred = soft_cross_entropy(s_logits, t_logits, o["temperature"])
        return {"loss": pred, "tokens": int(batch["attention_mask"].sum())}

    if o["intermediate_epochs"]:
        train_student(job, student, intermediate, out=job.out / "intermediate", extra=extra, examples=examples,
                      epochs=o["intermediate_epochs"], select=False)
    selection = train_student(job, student, prediction, out=job.out, examples=examples)
    return Result(student, info, selection.curve, selection.best_step)


def augment(job: Job, copies: int) -> list:
    """Algorithm 1 of the paper: `copies` new versions of each training example; each word is replaced with
    probability 0.4 by one of its candidates, the masked LM's top 15 predictions for a [MASK] in its place
    (computed once per word). Words past the model's input length are kept as they are."""
    import dataclasses

    from .. import load, load_tokenizer

    o, tokenizer = job.options, job.teacher.tokenizer
    mlm = job.teacher.body if o["augment_model"] is None else load(o["augment_model"])
    if o["augment_model"] is not None and (load_tokenizer(o["augment_model"]).backend.get_vocab(True)
                                           != tokenizer.backend.get_vocab(True)):
        raise PlmkitError("--augment-model needs the teacher's tokenizer", path=o["augment_model"])
    if not hasattr(mlm, "lm_logits") or tokenizer.mask_id is None:
        raise PlmkitError("augmentation needs a masked LM with a [MASK] token (--augment-model DIR)")
    rng = random.Random(o["seed"])
    mlm.eval()
    out = []
    for e in job.train:
        fields = {f: getattr(e, f).split() for f in ("text", "text_b") if getattr(e, f)}
        candidates = {f: _candidates(words, mlm, tokenizer, job.teacher.config.max_length)
                      for f, words in fields.items()}
        for _ in range(copies):
            new = {f: " ".join(rng.choice(c) if c and rng.random() < P_REPLACE else w
                               for w, c in zip(words, candidates[f])) for f, words in fields.items()}
            out.append(dataclasses.replace(e, **new))
    log.info("tinybert: %d augmented examples", len(out))
    return out


@torch.no_grad()
def _candidates(words: list[str], mlm, tokenizer, max_length: int) -> list[list[str]]:
    """For each word, the masked LM's top-K whole-word predictions for one [MASK] standing in its place in
    the sentence (an empty list for words past `max_length` tokens); one batched forward per text."""
    pieces = [tokenizer.encode(w) for w in words]
    starts, n = [], 1
    for p in pieces:
        starts.append(n)
        n += len(p)
    reach = [i for i, s in enumerate(starts) if s < max_length - 1]
    flat = [t for p in pieces for t in p]
    rows = []
    for i in reach:
        ids = [tokenizer.cls_id, *flat[:starts[i] - 1], tokenizer.mask_id, *flat[starts[i] - 1 + len(pieces[i]):]]
        rows.append(ids[:max_length - 1] + [tokenizer.sep_id])
    if not rows:
        return [[] for _ in words]
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), tokenizer.pad_id or 0)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, :len(row)], mask[r, :len(row)] = torch.tensor(row), 1
    h = mlm.encode(ids, mask).last_hidden_state  # (W, T, H)
    logits = mlm.lm_logits(h[torch.arange(len(rows)), torch.tensor([starts[i] for i in reach])])  # (W, V)
    logits[:, sorted(tokenizer.special_ids)] = -math.inf
    out = [[] for _ in words]
    for i, top in zip(reach, logits.topk(TOP_K * 2).indices.tolist()):
        whole = [tokenizer.id_to_token(t) for t in top]
        out[i] = [w for w in whole if w and not w.startswith("##")][:TOP_K]
    return out
