"""Dynamic int8 quantization for CPU inference (Jacob et al. 2018, arXiv:1712.05877; torch's
`quantize_dynamic`): every nn.Linear gets int8 weights with one scale per output channel, and its input
is quantized per batch on the fly; embeddings, LayerNorm and attention stay fp32.

Per-channel scales: one scale per weight tensor is as fast but cost 1.9 points of accuracy on the spam
dev set (all-MiniLM-L6-v2 fine-tuned), against 0.3 per channel (`plmkit bench infer`, bench/README.md).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import PlmkitError


def quantize_int8(model: nn.Module) -> nn.Module:
    """`model` with every nn.Linear replaced, in place, by a dynamically quantized int8 one (CPU only);
    for inference: the quantized layers have no gradient."""
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise PlmkitError("int8 dynamic quantization runs on the CPU; move the model there first")
    try:
        with warnings.catch_warnings():
            # torch >= 2.10 marks torch.ao.quantization deprecated in favour of torchao; it still works.
            warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
            warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    except ImportError:
        raise PlmkitError(f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic "
                          "for int8 inference") from None
