"""Structured pruning that removes what it prunes, shared by prune-heads, prune-ffn, lottery (structured),
dynabert and layerdrop: attention heads, feed-forward neurons and whole layers taken out of a transformer
body, so its matrices are smaller and it runs faster; and the masks that do the same thing without
removing anything (what training and the importance scores use).

A head of layer l is D rows of each of the fused q/k/v projection's three blocks and D columns of the output
projection; a feed-forward neuron is a row of `up` and a column of `down`. Removing them leaves every other
output unchanged: the pruned body computes exactly what the masked one does (the tests check it).

compressed.json's "structure" records what is left, {"heads": [N_l per layer], "intermediate": [d_l per
layer]}, and `restore` rebuilds those shapes on a freshly built body before the weights are loaded.

Shape legend: B = batch, T = sequence length, H = hidden size, L = layers, N = heads, D = head size,
F = feed-forward neurons of a layer.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..errors import PlmkitError
from ..layers.attention import SelfAttention
from ..layers.transformer import FeedForward


def blocks(body: nn.Module) -> list[nn.Module]:
    """The body's blocks, each run once, with a plain SelfAttention and FeedForward: what can be pruned."""
    stack = body.stack() if hasattr(body, "stack") else None
    if not stack or len(set(map(id, stack))) != len(stack):
        raise PlmkitError(f"{getattr(body, 'family_name', 'this model')} has no stack of separate transformer "
                          "blocks to prune (ALBERT's one shared block cannot lose a head in one layer only)")
    for b in stack:
        if type(b.attn) is not SelfAttention or not isinstance(getattr(b, "ffn", None), FeedForward):
            raise PlmkitError(f"structured pruning handles the plain self-attention and feed-forward blocks, not "
                              f"{type(b.attn).__name__} in {getattr(body, 'family_name', 'this model')}")
    return stack


def _linear(n_in: int, n_out: int, bias: bool) -> nn.Linear:
    with warnings.catch_warnings():  # a feed-forward block pruned away entirely has zero-size matrices
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        return nn.Linear(n_in, n_out, bias=bias)


def _rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = _linear(linear.in_features, len(index), linear.bias is not None)
    with torch.no_grad():
        new.weight.copy_(linear.weight[index])
        if linear.bias is not None:
            new.bias.copy_(linear.bias[index])
    return new


def _columns(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = _linear(len(index), linear.out_features, linear.bias is not None)
    with torch.no_grad():
        new.weight.copy_(linear.weight[:, index])
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new


def keep_heads(body: nn.Module, keep: list[list[int]]) -> None:
    """Remove, in place, every head of layer l not in keep[l] (the order given is the new order)."""
    for block, heads in zip(blocks(body), keep, strict=True):
        attn = block.attn
        N, D = attn.num_heads, attn.head_dim
        cols = torch.tensor([h * D + d for h in heads for d in range(D)], dtype=torch.long)  # (n · D,)
        attn.qkv = _rows(attn.qkv, torch.cat([cols, cols + N * D, cols + 2 * N * D]))  # q, k, v blocks
        attn.out = _columns(attn.out, cols)
        attn.num_heads = len(heads)


def keep_neurons(body: nn.Module, keep: list[list[int]]) -> None:
    """Remove, in place, every feed-forward neuron of layer l not in keep[l] (in the order given)."""
    for block, neurons in zip(blocks(body), keep, strict=True):
        index = torch.tensor(neurons, dtype=torch.long)
        block.ffn.up = _rows(block.ffn.up, index)
        block.ffn.down = _columns(block.ffn.down, index)


def keep_layers(body: nn.Module, layers: list[int]) -> None:
    """Keep only `layers` (0-based, in order) of the body's stack, and say so in its config."""
    stack = blocks(body)
    body.layers = nn.ModuleList(stack[i] for i in layers)
    body.config = body.config.replace(num_layers=len(layers))


def shape(body: nn.Module) -> dict[str, list[int]]:
    """compressed.json's "structure": heads and feed-forward neurons left in each layer."""
    stack = blocks(body)
    return {"heads": [b.attn.num_heads for b in stack], "intermediate": [b.ffn.up.out_features for b in stack]}


def restore(body: nn.Module, structure: dict[str, list[int]]) -> None:
    """Give a freshly built body the shapes `structure` records (weights to be loaded after)."""
    stack = blocks(body)
    if len(structure["heads"]) != len(stack) or len(structure["intermediate"]) != len(stack):
        raise PlmkitError(f"compressed.json's structure has {len(structure['heads'])} layers, the config "
                          f"{len(stack)}")
    keep_heads(body, [list(range(n)) for n in structure["heads"]])
    keep_neurons(body, [list(range(f)) for f in structure["intermediate"]])


def parameters_of(body: nn.Module) -> int:
    return sum(p.numel() for p in body.parameters())


# ---- masks: the same function, nothing removed -----------------------------------------------------------

@contextlib.contextmanager
def neuron_mask(model: nn.Module, mask: list[torch.Tensor]):
    """Within the block, neuron f of layer l's feed-forward contributes mask[l][..., f] × its activation
    (mask[l] of shape (F,) or (B, F)). 0 prunes the neuron; a mask that requires grad gives ∂loss/∂ξ."""
    stack = blocks(getattr(model, "body", model))
    if len(mask) != len(stack):
        raise ValueError(f"neuron mask needs one entry per layer ({len(stack)}), got {len(mask)}")

    def gate(m):
        def hook(_module, args):
            x = args[0]  # (B, T, F) activations
            return (x * (m if m.dim() == 1 else m[:, None, :]).to(x.dtype),) + tuple(args[1:])
        return hook

    handles = [block.ffn.down.register_forward_pre_hook(gate(m)) for block, m in zip(stack, mask)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def layer_subset(body: nn.Module, layers: list[int]):
    """Within the block, the body runs only `layers` (0-based, in order): LayerDrop's and DynaBERT's
    shallower networks, sharing the full network's weights."""
    full = body.layers
    body.layers = nn.ModuleList(full[i] for i in layers)
    try:
        yield
    finally:
        body.layers = full


def neuron_importance(model: nn.Module, batches: Iterable[dict], loss_fn: Callable[[nn.Module, dict], torch.Tensor],
                      mask: list[torch.Tensor] | None = None, progress: bool = False) -> list[torch.Tensor]:
    """Michel et al.'s gradient proxy for feed-forward neurons: I_f = E_x |∂L(x)/∂ξ_f| for a gate ξ_f on each
    neuron's activation, one (F_l,) tensor per layer; `mask` (the neurons already pruned) stays applied."""
    from tqdm import tqdm

    stack = blocks(getattr(model, "body", model))
    widths = [b.ffn.up.out_features for b in stack]
    totals, count = [torch.zeros(F, dtype=torch.float64) for F in widths], 0
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(batches, desc="neuron importance", unit="batch", disable=not progress, leave=False):
            B = batch["input_ids"].shape[0]
            gates = [torch.ones(B, F, requires_grad=True) for F in widths]
            gated = gates if mask is None else [g * m for g, m in zip(gates, mask)]
            with neuron_mask(model, gated):
                losses = loss_fn(model, batch)
            grads = torch.autograd.grad(losses.sum(), gates)
            for total, g in zip(totals, grads):
                total += g.abs().sum(0).double()
            count += B
    finally:
        model.train(was_training)
    return [(t / max(count, 1)).float() for t in totals]


def evenly_spaced(layers: int, keep: int) -> list[int]:
    """`keep` of `layers` layers spread evenly with the top one kept: every other layer at half depth
    (LayerDrop's "every other" pruning; DynaBERT's depth rule), e.g. 6 → 3 keeps 1, 3, 5."""
    if not 1 <= keep <= layers:
        raise PlmkitError(f"can keep 1 … {layers} layers, not {keep}")
    return [layers - 1 - (i * layers) // keep for i in range(keep)][::-1]


def prune_iteratively(sizes: list[int], score: Callable[[list[torch.Tensor]], list[torch.Tensor]], ratio: float,
                      step: float, progress: bool = False) -> list[torch.Tensor]:
    """Masks (one (size_l,) 0/1 tensor per layer) with `ratio` of all units pruned: `step` of them at a time,
    the least important first by `score(masks)` (per-layer scores with the masks so far applied), at least
    one unit left in every layer."""
    from tqdm import tqdm

    masks = [torch.ones(n) for n in sizes]
    total = sum(sizes)
    target = min(round(ratio * total), total - len(sizes))
    per_step = max(1, round(step * total))
    bar = tqdm(total=target, desc="pruning", unit="unit", disable=None if progress else True, leave=False)
    pruned = 0
    while pruned < target:
        scores = score(masks)
        flat = torch.cat([s.float().masked_fill(m == 0, float("inf")) for s, m in zip(scores, masks)])
        owner = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
        offset = torch.tensor([0] + sizes[:-1]).cumsum(0)
        k = min(per_step, target - pruned)
        for j in flat.argsort(stable=True).tolist():
            if k == 0 or flat[j] == float("inf"):
                break
            layer = int(owner[j])
            if masks[layer].sum() > 1:
                masks[layer][j - int(offset[layer])] = 0
                k -= 1
                pruned += 1
                bar.update(1)
    bar.close()
    return masks


def kept(masks: list[torch.Tensor]) -> list[list[int]]:
    """The indices each layer's mask keeps."""
    return [m.nonzero().flatten().tolist() for m in masks]


def task_batches(model, examples: list, batch_size: int = 32, path=None) -> list[dict]:
    """Labelled, collated batches of `examples` for importance scores (plmkit.analysis.heads.task_losses)."""
    from ..heads import collate, encode
    from ..heads.inputs import Format, batches

    pad = Format.of(model, model.tokenizer).pad
    return [collate(chunk, pad) for chunk in batches(encode(examples, model, model.tokenizer, path=path), batch_size)]
