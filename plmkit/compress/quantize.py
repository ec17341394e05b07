"""int8 linear layers for CPU inference (Jacob et al. 2018, arXiv:1712.05877), on the fbgemm kernels torch
ships (`torch.ops.quantized`), and `quantize_int8`, the dynamic quantization behind `plmkit evaluate --int8`,
`predict --int8` and `plmkit compress int8`.

A layer stores its weight as int8 values with one fp32 scale per output channel (symmetric: w ≈ s · q),
as buffers, so a saved model holds int8 weights and a loaded one runs them as they are. Two ways to feed it:
    Int8Linear        dynamic: the input is quantized per batch on the fly (uint8, its own min and max),
                      the product accumulates in int32 and comes back as fp32
    StaticInt8Linear  static: the input's scale and zero point were fixed beforehand from calibration data
                      (plmkit compress int8-static), so the kernel quantizes as it reads, without a
                      min/max pass over the input; the output is fp32 as well
Embeddings, LayerNorm, softmax and the attention products stay fp32.

Per-channel scales: one scale per weight tensor is as fast but cost 1.9 points of accuracy on the spam
dev set (all-MiniLM-L6-v2 fine-tuned), against 0.3 per channel (`plmkit bench infer`, bench/README.md).
`reduce_range` uses 7 of the input's 8 bits: fbgemm's AVX2 kernel sums pairs of uint8 × int8 products in
int16, which can saturate at full range; ternary weights ({−1, 0, +1} · α) cannot reach it, so
plmkit compress ternary turns it off.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import PlmkitError
from .storage import int8_rows


def _check_kernels() -> None:
    if not hasattr(torch.ops.quantized, "linear_dynamic"):
        raise PlmkitError(f"torch {torch.__version__} has no fbgemm int8 kernels (torch.ops.quantized)")


class Int8Linear(nn.Module):
    """y = x Wᵀ + b with W = scale · int8 (per output channel) and the input quantized per call."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, reduce_range: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.reduce_range = in_features, out_features, reduce_range
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._pack()

    @classmethod
    def from_float(cls, linear: nn.Linear, values: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                   **settings) -> "Int8Linear":
        """The int8 layer for `linear`: its weight rounded per output channel, or the given int8 `values`
        and per-channel `scale` (e.g. ternary codes and α)."""
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, **settings)
        if values is None:
            values, scale = int8_rows(linear.weight)
        m.weight_int8.copy_(values)
        m.weight_scale.copy_(scale)
        if linear.bias is not None:
            m.bias.copy_(linear.bias.detach())
        m._pack()
        return m

    def settings(self) -> dict:
        """What compressed.json records to rebuild the layer (its shape comes from the float layer it replaces)."""
        return {"class": type(self).__name__, "reduce_range": self.reduce_range}

    def _pack(self) -> None:
        """fbgemm's prepacked weight, made from the buffers (again after load_state_dict fills them)."""
        with warnings.catch_warnings():  # torch >= 2.10 marks quantized tensors deprecated; the kernels stay
            warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated")
            q = torch._make_per_channel_quantized_tensor(self.weight_int8, self.weight_scale.double(),
                                                         torch.zeros(self.out_features, dtype=torch.long), 0)
            self._packed = torch.ops.quantized.linear_prepack(q, self.bias)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._pack()

    def dequantized(self) -> torch.Tensor:
        """(out, in) fp32: the weight the layer multiplies by."""
        return self.weight_int8.float() * self.weight_scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self._packed, self.reduce_range)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, reduce_range={self.reduce_range}"


class StaticInt8Linear(Int8Linear):
    """Int8Linear with the input's quantization fixed by calibration: input (…, in) fp32 → uint8 at
    (input_scale, input_zero), fused into the kernel → int8 product → fp32. No min/max pass per call."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, reduce_range: bool = True):
        super().__init__(in_features, out_features, bias, reduce_range)
        self.input_qparams = (1.0, 0)

    @classmethod
    def calibrated(cls, linear: nn.Linear, low: float, high: float, reduce_range: bool = True) -> "StaticInt8Linear":
        """The int8 layer for `linear` whose inputs were seen in [low, high] during calibration."""
        m = cls.from_float(linear, reduce_range=reduce_range)
        m.input_qparams = qparams(low, high, reduce_range)
        return m

    def settings(self) -> dict:
        return {**super().settings(), "input": list(self.input_qparams)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(x, *self.input_qparams, self._packed)


def qparams(low: float, high: float, reduce_range: bool) -> tuple[float, int]:
    """(scale, zero point) of asymmetric uint8 quantization covering [low, high] (and 0, so that zero and
    padding are exact): 0 … 255, or 0 … 127 with reduce_range."""
    top = 127 if reduce_range else 255
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max((high - low) / top, 1e-8)
    return float(scale), int(min(top, max(0, round(-low / scale))))


LINEAR = {"Int8Linear": Int8Linear, "StaticInt8Linear": StaticInt8Linear}


def replace_linear(model: nn.Module, name: str, settings: dict) -> None:
    """Put an untrained int8 layer of class settings["class"] in place of the nn.Linear at `name`, with
    its shape (compressed.json's "linear" entries; the weights come with load_state_dict)."""
    parent, _, attr = name.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    linear = getattr(owner, attr, None)
    if not isinstance(linear, nn.Linear):
        raise PlmkitError(f"compressed.json quantizes {name}, which is not a linear layer of this model")
    settings = dict(settings)
    cls = LINEAR[settings.pop("class")]
    m = cls(linear.in_features, linear.out_features, linear.bias is not None, settings.pop("reduce_range"))
    if "input" in settings:
        m.input_qparams = (float(settings["input"][0]), int(settings["input"][1]))
    setattr(owner, attr, m)


def linear_settings(model: nn.Module) -> dict[str, dict]:
    """compressed.json's "linear": every int8 layer of `model` by module name."""
    return {name: m.settings() for name, m in model.named_modules() if isinstance(m, Int8Linear)}


def quantize_int8(model: nn.Module) -> nn.Module:
    """`model` with every nn.Linear replaced, in place, by a dynamically quantized Int8Linear (CPU only);
    for inference: the int8 layers have no gradient."""
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise PlmkitError("int8 quantization runs on the CPU; move the model there first")
    _check_kernels()
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.Linear):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, Int8Linear.from_float(m))
    return model


def int8_parameters(model: nn.Module) -> int:
    """Parameters as the float model counted them: the float ones plus the int8 layers' weights and biases."""
    n = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, Int8Linear):
            n += m.weight_int8.numel() + (m.bias.numel() if m.bias is not None else 0)
    return n


def embedding_encodings(model: nn.Module, encoding: str) -> dict[str, str]:
    """storage encodings that store every embedding table of `model` as `encoding` ("fp32": as they are),
    applied to the tables in memory too (rounded and decoded), so the model in hand is the model saved."""
    from .storage import round_trip

    if encoding == "fp32":
        return {}
    names = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Embedding):
            with torch.no_grad():
                m.weight.copy_(round_trip(m.weight, encoding))
            names[f"{name}.weight"] = encoding
    return names
