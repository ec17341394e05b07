"""Cross-entropy of a vocabulary projection, fused and chunked: loss = mean CE(h Wᵀ + b, labels) without
ever holding the (N, V) logits of all N positions.

A language model's head multiplies every position's state by the (V, H) output matrix; with a large
vocabulary the logits and their gradient dominate memory traffic (N × V floats written, re-read by the
log-softmax, its backward and the loss). Here the positions go through in chunks: each chunk's logits are
made, turned in place into the softmax, and the gradients with respect to h, W and b are taken right away
(∂loss/∂logits = softmax − one-hot, divided by the number of counted positions). Backward only scales the
stored gradients by the incoming one. The result equals F.cross_entropy(h @ W.T + b, labels) and its
gradients up to float rounding; the matmul FLOPs are the same (one forward, two backward products).

Shape legend: N = positions, H = hidden size, V = vocabulary.
"""

from __future__ import annotations

import torch

IGNORE = -100  # labels to leave out of the loss, as in F.cross_entropy


def lm_cross_entropy(h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                     bias: torch.Tensor | None = None, chunk_bytes: int = 1 << 27) -> torch.Tensor:
    """Mean cross-entropy over the positions whose label is not -100. h (…, H), labels (…), weight (V, H),
    bias (V,) or None. `chunk_bytes` bounds the float32 logits held at once (default 128 MiB: fewer, larger chunks
    keep the products efficient and add the (V, H) gradient fewer times)."""
    h2, y = h.reshape(-1, h.shape[-1]), labels.reshape(-1)
    if torch.is_autocast_enabled(h.device.type):  # run the products in the autocast dtype, as nn.Linear would
        dtype = torch.get_autocast_dtype(h.device.type)
        h2, weight = h2.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    rows = max(1, chunk_bytes // (4 * weight.shape[0]))
    with torch.autocast(h.device.type, enabled=False):
        return _LMCrossEntropy.apply(h2, weight, bias, y, rows)


class _LMCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, labels, rows):
        need_grad = any(ctx.needs_input_grad[:3])
        valid = labels != IGNORE
        count = valid.sum().clamp(min=1)
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device) if ctx.needs_input_grad[1] else None
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=h.device) \
            if bias is not None and ctx.needs_input_grad[2] else None
        for start in range(0, h.shape[0], rows):
            hc, yc, vc = h[start:start + rows], labels[start:start + rows], valid[start:start + rows]
            logits = (hc @ weight.T if bias is None else torch.addmm(bias, hc, weight.T)).float()  # (n, V)
            target = yc.clamp(min=0).unsqueeze(1)
            lse = torch.logsumexp(logits, dim=1)
            loss += ((lse - logits.gather(1, target).squeeze(1)) * vc).sum()
            if not need_grad:
                continue
            p = logits.sub_(lse.unsqueeze(1)).exp_()  # the softmax, in place of the logits
            p.scatter_add_(1, target, -vc.to(p.dtype).unsqueeze(1))  # − one-hot at counted positions
            p.mul_((vc / count).unsqueeze(1))  # ∂ mean loss / ∂ logits; uncounted rows become 0
            pc = p.to(h.dtype)
            if grad_h is not None:
                torch.mm(pc, weight, out=grad_h[start:start + rows])
            if grad_w is not None and h.dtype == torch.float32:
                grad_w.addmm_(pc.T, hc)
            elif grad_w is not None:  # a bf16 product, summed over chunks in float32
                grad_w += pc.T @ hc
            if grad_b is not None:
                grad_b += p.sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return loss / count

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        return (grad_h * grad_out if grad_h is not None else None,
                (grad_w * grad_out).to(w_dtype) if grad_w is not None else None,
                (grad_b * grad_out).to(b_dtype) if grad_b is not None else None, None, None)
