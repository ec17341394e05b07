"""Cross-entropy of a vocabulary projection, fused and chunked: loss = mean CE(h Wᵀ + b, labels) without
ever holding the (N, V) logits of all N positions.

A language model's head multiplies every position's state by the (V, H) output matrix; with a large
vocabulary the logits and their gradient dominate memory traffic (N × V floats written, re-read by the
log-softmax, its backward and the loss). Here the positions go through in chunks: each chunk's logits are
made, turned in place into the softmax, and the gradients with respect to h, W and b are taken right away
(∂loss/∂logits = softmax − one-hot, divided by the number of counted positions). Backward only scales the
stored gradients by the incoming one. The result equals F.cross_entropy(h @ W.T + b, labels) and its
gradients up to float rounding; the matmul FLOPs are the same (one forward, two backward products).

Two layout choices make the products run near the matmul peak on CPU (measured with MKL on 2 cores, V =
30,522, H = 256): a chunk's logits are made vocabulary-major, (V, n) = W hᵀ, which runs at ~190 GFLOP/s
where the position-major h Wᵀ runs at ~115 (its inner dimension H is short); and n is a multiple of 16,
since an odd n (614 masked positions, say) drops the product back to ~115. Positions are padded up to
that multiple with uncounted rows, and one buffer serves every chunk (a fresh 100 MiB tensor per chunk
costs more in page faults than its exp does).

With label smoothing ε (Szegedy et al. 2016; Vaswani et al. 2017, §5.4) the target is (1 − ε) on the label
plus ε spread evenly over the vocabulary: loss = (1 − ε)·CE + ε·mean_v(−log p_v), as F.cross_entropy's
`label_smoothing`; its gradient is softmax − (1 − ε)·one-hot − ε/V.

Shape legend: N = positions, H = hidden size, V = vocabulary, n = positions in a chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # labels to leave out of the loss, as in F.cross_entropy
ALIGN = 16  # positions per chunk are a multiple of this (see the module docstring)


def lm_cross_entropy(h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                     bias: torch.Tensor | None = None, chunk_bytes: int = 1 << 27,
                     label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the positions whose label is not -100. h (…, H), labels (…), weight (V, H),
    bias (V,) or None, label_smoothing ε in [0, 1). `chunk_bytes` bounds the float32 logits held at once
    (default 128 MiB: fewer, larger chunks keep the products efficient and add the (V, H) gradient fewer
    times)."""
    h2, y = h.reshape(-1, h.shape[-1]), labels.reshape(-1)
    if torch.is_autocast_enabled(h.device.type):  # run the products in the autocast dtype, as nn.Linear would
        dtype = torch.get_autocast_dtype(h.device.type)
        h2, weight = h2.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    pad = -h2.shape[0] % ALIGN
    if pad:  # uncounted rows: their logits' gradient is zero, and their grad_h is cut off again by autograd
        h2, y = F.pad(h2, (0, 0, 0, pad)), F.pad(y, (0, pad), value=IGNORE)
    rows = max(ALIGN, chunk_bytes // (4 * weight.shape[0]) // ALIGN * ALIGN)
    with torch.autocast(h.device.type, enabled=False):
        return _LMCrossEntropy.apply(h2, weight, bias, y, rows, label_smoothing)


class _LMCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, labels, rows, smoothing):
        need_grad = any(ctx.needs_input_grad[:3])
        valid = labels != IGNORE
        count = valid.sum().clamp(min=1)
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device) if ctx.needs_input_grad[1] else None
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=h.device) \
            if bias is not None and ctx.needs_input_grad[2] else None
        V, size = weight.shape[0], weight.shape[0] * min(rows, h.shape[0])
        buf = torch.empty(size, dtype=torch.float32, device=h.device)
        # Products in a lower precision (bf16 autocast) go through a buffer of that dtype.
        low = torch.empty(size, dtype=h.dtype, device=h.device) if h.dtype != torch.float32 else None
        for start in range(0, h.shape[0], rows):
            hc, yc, vc = h[start:start + rows], labels[start:start + rows], valid[start:start + rows]
            logits = buf[:V * hc.shape[0]].view(V, -1)  # (V, n), vocabulary-major, contiguous
            out = logits if low is None else low[:logits.numel()].view_as(logits)
            if bias is None:
                torch.mm(weight, hc.T, out=out)
            else:
                torch.addmm(bias.unsqueeze(1), weight, hc.T, out=out)
            if low is not None:
                logits.copy_(out)
            target = yc.clamp(min=0).unsqueeze(0)  # (1, n)
            picked = logits.gather(0, target)  # (1, n): the label's logit
            if smoothing:  # the label's share goes to 1 − ε, the mean logit takes ε
                picked = (1 - smoothing) * picked + smoothing * logits.mean(0, keepdim=True)
            top = logits.amax(0, keepdim=True)  # (1, n): shifts exp into range
            p = logits.sub_(top).exp_()  # exp(z − max), in place of the logits
            total = p.sum(0, keepdim=True)  # (1, n)
            loss += ((top + total.log() - picked) * vc).sum()  # log-sum-exp − z_label, counted rows
            if not need_grad:
                continue
            scale = (vc / count).unsqueeze(0)  # (1, n); uncounted rows become 0
            p.mul_(scale / total)  # ∂ mean loss / ∂ logits = (softmax − one-hot) / count
            p.scatter_add_(0, target, -scale * (1 - smoothing))
            if smoothing:
                p.sub_(scale * (smoothing / V))
            pc = p if low is None else out.copy_(p)
            if grad_h is not None:
                torch.mm(pc.T, weight, out=grad_h[start:start + rows])
            if grad_w is not None and h.dtype == torch.float32:
                grad_w.addmm_(pc, hc)
            elif grad_w is not None:  # a bf16 product, summed over chunks in float32
                grad_w += pc @ hc
            if grad_b is not None:
                grad_b += p.sum(1)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return loss / count

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        return (grad_h * grad_out if grad_h is not None else None,
                (grad_w * grad_out).to(w_dtype) if grad_w is not None else None,
                (grad_b * grad_out).to(b_dtype) if grad_b is not None else None, None, None, None)
