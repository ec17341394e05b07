"""Compression wraps a trained model; it is never a flag inside one.

`quantize_int8`: dynamic int8 quantization of every linear layer, for CPU inference
(`plmkit evaluate --int8`, `plmkit predict --int8`, and the int8 side of `plmkit bench infer`).
"""

from .quantize import quantize_int8

__all__ = ["quantize_int8"]
