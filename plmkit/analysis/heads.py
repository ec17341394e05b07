"""Head importance and the accuracy-vs-heads-pruned curve. Michel, Levy & Neubig 2019, "Are Sixteen
Heads Really Better than One?", arXiv:1905.10650.

Recipe (§4.1–4.2). Every attention head h gets a gate ξ_h multiplying its output before the output
projection, Att(x) = Σ_h ξ_h Att_h(x), with ξ = 1 for the model as trained. A head's importance is
how much the loss moves when its gate does, to first order:

    I_h = E_x | ∂L(x) / ∂ξ_h |        (eq. 2, the Taylor proxy of Molchanov et al. 2017)

with the absolute value taken per example, then the scores normalised by their ℓ2 norm within each
layer (§4.2). Pruning drops heads in order of increasing importance, the importance computed once on
the unpruned model, and the curve is the task metric after each step (their Fig. 3–4).

The gates are forward pre-hooks on each attention's output projection (its input is the heads'
outputs side by side, (B, T, N·D)), so the model is wrapped, not changed, and every transformer member
works, NEZHA's relative attention and ALBERT's one shared block included. One backward pass gives
every example's gradient: the gates are (B, L, N), example b's loss reaches only its own row.

Public API, shared with compression (head pruning imports it; keep these signatures stable):

    head_mask(model, mask)                            context manager; mask (L, N) or (B, L, N)
    head_importance(model, batches, loss_fn, *, normalize=True, progress=False) -> (L, N) tensor
    prune_order(importance) -> [(layer, head), …]     least important first
    mask_without(shape, heads) -> (L, N) mask with those heads off
    lm_losses(model, batch) / task_losses(model, batch) -> (B,) per-example losses
    lm_batches(model, tokenizer, texts, …)            batches for lm_losses (MLM masking or CLM)

Shape legend: B = batch, T = sequence length, L = layers, N = heads, D = head size, H = N · D.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PlmkitError


def _body(model: nn.Module) -> nn.Module:
    """The transformer under a TaskModel, or the model itself."""
    body = getattr(model, "body", model)
    if not hasattr(body, "stack"):
        raise PlmkitError(f"{getattr(body, 'family_name', 'this model')} has no attention heads")
    return body


def head_shape(model: nn.Module) -> tuple[int, int]:
    """(L, N): layers as they run (ALBERT's shared block counts once per application) and heads per layer."""
    stack = _body(model).stack()
    return len(stack), stack[0].attn.num_heads


@contextlib.contextmanager
def head_mask(model: nn.Module, mask: torch.Tensor):
    """Within the block, head n of layer l contributes mask[l, n] × its output (mask (B, L, N): per
    example). 0 prunes the head; a mask that requires grad gives ∂loss/∂ξ."""
    body = _body(model)
    stack = body.stack()
    L, N = head_shape(body)
    if tuple(mask.shape[-2:]) != (L, N) or mask.dim() not in (2, 3):
        raise ValueError(f"head mask must be (L, N) = ({L}, {N}) or (B, L, N), got {tuple(mask.shape)}")
    state = {"calls": 0, "layer": 0}

    def enter_block(_module, _args):
        state["layer"] = state["calls"] % L  # blocks run in stack order, L calls per forward
        state["calls"] += 1

    def gate(_module, args):
        x = args[0]  # (B, T, H): the N heads' outputs side by side
        B, T, H = x.shape
        m = mask[state["layer"]] if mask.dim() == 2 else mask[:, state["layer"]]  # (N,) or (B, N)
        m = m.to(x.dtype).reshape(-1, 1, N, 1)  # (1 or B, 1, N, 1)
        return ((x.view(B, T, N, H // N) * m).view(B, T, H),) + tuple(args[1:])

    handles = []
    try:
        for block in dict.fromkeys(stack):  # a shared block is hooked once and fires at each of its layers
            handles.append(block.register_forward_pre_hook(enter_block))
            handles.append(block.attn.out.register_forward_pre_hook(gate))
        yield
    finally:
        for h in handles:
            h.remove()


def head_importance(model: nn.Module, batches: Iterable[dict], loss_fn: Callable[[nn.Module, dict], torch.Tensor],
                    *, normalize: bool = True, progress: bool = False) -> torch.Tensor:
    """Michel et al.'s I_h = E_x |∂L(x)/∂ξ_h| over the examples of `batches`, as an (L, N) tensor.

    Args:
        model: a transformer body or a TaskModel (its body's heads are gated); put in eval mode here.
        batches: dicts that `loss_fn` understands; each yields B examples.
        loss_fn: (model, batch) → (B,) per-example losses (`lm_losses`, `task_losses`, or your own).
        normalize: divide each layer's scores by their ℓ2 norm (§4.2).
    """
    from tqdm import tqdm

    L, N = head_shape(model)
    was_training = model.training
    model.eval()
    total, count = torch.zeros(L, N, dtype=torch.float64), 0
    try:
        for batch in tqdm(batches, desc="head importance", unit="batch", disable=not progress, leave=False):
            B = len(next(v for v in batch.values() if torch.is_tensor(v)))
            device = next(model.parameters()).device
            gates = torch.ones(B, L, N, device=device, requires_grad=True)
            with head_mask(model, gates):
                losses = loss_fn(model, batch)
            if losses.shape != (B,):
                raise ValueError(f"loss_fn must return one loss per example, ({B},), got {tuple(losses.shape)}")
            (grad,) = torch.autograd.grad(losses.sum(), gates)
            total += grad.abs().sum(0).double().cpu()
            count += B
    finally:
        model.train(was_training)
    if count == 0:
        raise PlmkitError("no examples to score head importance on")
    importance = (total / count).float()
    if normalize:
        importance = importance / importance.norm(dim=-1, keepdim=True).clamp_min(1e-20)
    return importance


def prune_order(importance: torch.Tensor) -> list[tuple[int, int]]:
    """(layer, head) pairs from the least to the most important."""
    N = importance.shape[1]
    return [divmod(int(i), N) for i in importance.flatten().argsort(stable=True)]


def mask_without(shape: tuple[int, int], heads: Iterable[tuple[int, int]]) -> torch.Tensor:
    """An (L, N) mask of ones with `heads` set to zero."""
    mask = torch.ones(shape)
    for layer, head in heads:
        mask[layer, head] = 0.0
    return mask


def pruning_curve(model: nn.Module, importance: torch.Tensor, evaluate: Callable[[], float],
                  fractions: Iterable[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                  progress: bool = False) -> list[dict]:
    """The metric `evaluate()` returns with the least important heads pruned, for each fraction of heads."""
    from tqdm import tqdm

    order = prune_order(importance)
    out = []
    for frac in tqdm(list(fractions), desc="pruning", disable=not progress, leave=False):
        k = round(frac * len(order))
        with head_mask(model, mask_without(tuple(importance.shape), order[:k])):
            out.append({"fraction": k / len(order), "pruned": k, "metric": evaluate()})
    return out


# ---- losses ------------------------------------------------------------------------------------------

def _per_example(values: torch.Tensor, rows: torch.Tensor, B: int) -> torch.Tensor:
    """Mean of `values` (M,) grouped by `rows` (M,) into (B,); rows without values give 0."""
    total = torch.zeros(B, dtype=values.dtype, device=values.device).index_add(0, rows, values)
    n = torch.zeros(B, dtype=values.dtype, device=values.device).index_add(0, rows, torch.ones_like(values))
    return total / n.clamp_min(1)


def lm_losses(model: nn.Module, batch: dict) -> torch.Tensor:
    """(B,) mean cross-entropy of each sequence's targets: batch["labels"] (B, T) holds the target id at
    each predicted position and -100 elsewhere (MLM: the masked tokens; CLM: the next token)."""
    labels = batch["labels"]
    at = labels != -100  # (B, T)
    out = model(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"), logits_at=at)
    logits = out.logits if out.logits.dtype == torch.float64 else out.logits.float()  # bf16 → fp32 for the loss
    ce = F.cross_entropy(logits, labels[at], reduction="none")  # (M,)
    return _per_example(ce, at.nonzero()[:, 0], labels.shape[0])


def lm_accuracy(model: nn.Module, batches: Iterable[dict]) -> float:
    """Top-1 accuracy of the LM's predictions at the target positions of `batches`."""
    right = total = 0
    with torch.no_grad():
        for batch in batches:
            at = batch["labels"] != -100
            out = model(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"), logits_at=at)
            right += int((out.logits.argmax(-1) == batch["labels"][at]).sum())
            total += int(at.sum())
    return right / max(total, 1)


def lm_batches(model: nn.Module, tokenizer, texts: list[str], batch_size: int = 16, max_length: int = 128,
               seed: int = 0) -> list[dict]:
    """Batches of `texts` for `lm_losses`: a masked LM sees [CLS] text [SEP] with 15 % of the tokens
    masked 80/10/10 (BERT's recipe, seeded so every call masks the same tokens); a causal LM predicts
    each next token."""
    from ..heads.model import causal_features
    from ..objectives.mlm import mask_tokens

    causal = causal_features(model)
    if not causal and tokenizer.mask_id is None:
        raise PlmkitError("the tokenizer has no mask token for masked-LM batches")
    g = torch.Generator().manual_seed(seed)
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    specials = torch.tensor(sorted(tokenizer.special_ids))
    ids_all = [x for x in tokenizer.encode_batch(texts) if len(x) >= 2]
    out = []
    for i in range(0, len(ids_all), batch_size):
        rows = ids_all[i:i + batch_size]
        rows = [r[:max_length] if causal else [tokenizer.cls_id, *r[:max_length - 2], tokenizer.sep_id] for r in rows]
        T = max(len(r) for r in rows)
        ids = torch.full((len(rows), T), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, r in enumerate(rows):
            ids[b, :len(r)], mask[b, :len(r)] = torch.tensor(r), 1
        if causal:
            labels = ids.roll(-1, 1).masked_fill(mask.roll(-1, 1) == 0, -100)
            labels[:, -1] = -100
            out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
        else:
            maskable = mask.bool() & ~torch.isin(ids, specials)
            corrupted, chosen = mask_tokens(ids, maskable, tokenizer.mask_id, model.config.vocab_size, g)
            out.append({"input_ids": corrupted, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
                        "labels": ids.masked_fill(~chosen, -100)})
    if not out:
        raise PlmkitError("no text of two or more tokens to score")
    return out


def task_losses(model: nn.Module, batch: dict) -> torch.Tensor:
    """(B,) per-example loss of a fine-tuned TaskModel (plmkit.heads) on a collated, labelled batch."""
    task = model.config.task
    out = model({k: v for k, v in batch.items() if k not in ("labels", "start_positions", "end_positions")})
    if task in ("classify", "pair", "choice"):
        return F.cross_entropy(out["logits"].float(), batch["labels"], reduction="none")
    if task == "regress":
        return (out["logits"].float() - batch["labels"].float()) ** 2
    if task == "qa":
        return (F.cross_entropy(out["start_logits"], batch["start_positions"], reduction="none") +
                F.cross_entropy(out["end_logits"], batch["end_positions"], reduction="none")) / 2
    # tag: the loss of each sentence's words, as the head computes it
    emissions, word_mask = out["logits"], out["word_mask"]  # (B, W, C), (B, W)
    first = batch["first"]
    pos = torch.argsort((~first).to(torch.int8), dim=1, stable=True)[:, :emissions.shape[1]]
    gold = batch["labels"].gather(1, pos).masked_fill(~word_mask, -100)  # (B, W)
    if model.crf is not None:
        g = gold.clamp(min=0)
        return model.crf.log_partition(emissions, word_mask) - model.crf.score(emissions, g, word_mask)
    ce = F.cross_entropy(emissions.flatten(0, 1).float(), gold.flatten(), ignore_index=-100, reduction="none")
    ce = ce.view(gold.shape)
    return ce.sum(1) / word_mask.sum(1).clamp_min(1)
