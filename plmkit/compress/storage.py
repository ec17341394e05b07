"""How a compressed model is stored: `compressed.safetensors`, in which each tensor has an encoding of its
own, and `compressed.json`, which says how to rebuild the model around those tensors. The rest of the
directory is a fine-tuned one (config.json, plmkit.json, head.json, tokenizer), so `plmkit.heads.
load_finetuned` — and with it `plmkit evaluate`, `predict`, `bench infer` and the frontier — reads it; the
weights are not what `transformers` reads, and there is no model.safetensors.

Encodings (the file's metadata names the encoding of each tensor; the default stores it as it is, e.g. an
int8 layer's int8 weights and fp32 scales):
    int8      a float tensor as int8 values and one fp32 scale per row, w ≈ scale · q (embeddings of the
              quantized models); decoded to float at load
    2bit      an int8 tensor of values in {−1, 0, +1} (ternary weights), four to a byte
    ternary   a float tensor whose rows are α_r · {−1, 0, +1} (a ternary embedding): the 2-bit codes and
              one fp32 α per row
    sparse    a float tensor with zeros (unstructured pruning): a bitmap of the nonzero entries (1 bit
              each) and the nonzero values in fp32; decoded to the dense tensor, since dense kernels are
              what runs it
So the size on disk is the size of the compressed form, and a reloaded model holds exactly the tensors it
was saved with: nothing is quantized again at load.

compressed.json: {"structure": per-layer heads and FFN neurons left after pruning (plmkit.compress.
structure), "exits": the early-exit head and its policy (plmkit.compress.exits), "linear": the class and
settings of each quantized linear layer by module name (plmkit.compress.quantize)}. Loading builds the
body from its config, applies them in that order, and loads the tensors strictly (every one must fit).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..durable import atomic_file, atomic_write
from ..errors import PlmkitError

FILE, SPEC = "compressed.safetensors", "compressed.json"
ENCODINGS = ("int8", "2bit", "ternary", "sparse")


def holds(directory: str | os.PathLike) -> bool:
    """Whether `directory` stores a compressed model."""
    return (Path(directory) / SPEC).is_file()


# ---- encodings -----------------------------------------------------------------------------------------

def int8_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, C) float → int8 values (R, C) and fp32 scales (R,), symmetric per row: w ≈ scale[:, None] · q."""
    scale = (w.detach().float().abs().amax(1) / 127).clamp_min(1e-12)
    q = torch.round(w.detach().float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def pack_2bit(t: torch.Tensor) -> torch.Tensor:
    """Values in {−1, 0, +1} (any shape) → uint8, four codes per byte (code = value + 1), row-major."""
    codes = (t.flatten().to(torch.int16) + 1).to(torch.uint8)
    if codes.numel() and int(codes.max()) > 2:
        raise ValueError("2-bit packing holds the values −1, 0 and +1 only")
    codes = torch.nn.functional.pad(codes, (0, -codes.numel() % 4)).view(-1, 4)
    return codes[:, 0] | codes[:, 1] << 2 | codes[:, 2] << 4 | codes[:, 3] << 6


def unpack_2bit(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The inverse of pack_2bit: int8 values in {−1, 0, +1} of `shape`."""
    codes = torch.stack([(packed >> s) & 3 for s in (0, 2, 4, 6)], 1).flatten()
    n = int(torch.tensor(shape).prod()) if shape else 1
    return (codes[:n].to(torch.int8) - 1).view(shape)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor → uint8, eight entries per byte, row-major."""
    bits = torch.nn.functional.pad(mask.flatten().to(torch.uint8), (0, -mask.numel() % 8)).view(-1, 8)
    return (bits << torch.arange(8, dtype=torch.uint8)).sum(1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    n = int(torch.tensor(shape).prod())
    return ((packed[:, None] >> torch.arange(8, dtype=torch.uint8)) & 1).flatten()[:n].bool().view(shape)


def _encode(name: str, t: torch.Tensor, encoding: str) -> dict[str, torch.Tensor]:
    if encoding == "int8":
        q, scale = int8_rows(t)
        return {f"{name}#int8": q, f"{name}#scale": scale}
    if encoding == "2bit":
        return {f"{name}#2bit": pack_2bit(t)}
    if encoding == "ternary":
        alpha = t.detach().float().abs().amax(1)
        codes = torch.sign(t.detach())
        if not torch.equal(codes * alpha[:, None], t.detach().float()):
            raise ValueError(f"{name} is not ternary (rows of α · {{−1, 0, +1}})")
        return {f"{name}#2bit": pack_2bit(codes), f"{name}#scale": alpha}
    if encoding == "sparse":
        keep = t != 0
        return {f"{name}#bitmap": pack_bits(keep), f"{name}#values": t.detach().float()[keep]}
    raise ValueError(f"unknown encoding {encoding!r}; choose from {ENCODINGS}")


def _decode(name: str, parts: dict[str, torch.Tensor], encoding: str, shape: list[int]) -> torch.Tensor:
    if encoding == "int8":
        return parts[f"{name}#int8"].float() * parts[f"{name}#scale"][:, None]
    if encoding == "2bit":
        return unpack_2bit(parts[f"{name}#2bit"], tuple(shape))
    if encoding == "ternary":
        return unpack_2bit(parts[f"{name}#2bit"], tuple(shape)).float() * parts[f"{name}#scale"][:, None]
    if encoding == "sparse":
        keep = unpack_bits(parts[f"{name}#bitmap"], tuple(shape))
        out = torch.zeros(shape)
        out[keep] = parts[f"{name}#values"]
        return out
    raise ValueError(f"unknown encoding {encoding!r}")


def round_trip(t: torch.Tensor, encoding: str) -> torch.Tensor:
    """`t` as it reads back after storing it in `encoding`."""
    return _decode("t", _encode("t", t, encoding), encoding, list(t.shape)).to(t.dtype)


# ---- save and load -------------------------------------------------------------------------------------

def save(model, directory: str | os.PathLike, spec: dict, encodings: dict[str, str] | None = None,
         info: dict | None = None) -> Path:
    """Write the TaskModel `model` (its body's config, head.json, tokenizer; `info` into plmkit.json) with its
    state in compressed.safetensors, tensor `name` in `encodings[name]` (default: as it is), and `spec`
    (structure, exits, linear) as compressed.json."""
    from ..heads import save_finetuned

    encodings = encodings or {}
    d = save_finetuned(model, directory, info, weights=False)
    state = model.state_dict()
    unknown = sorted(set(encodings) - set(state))
    if unknown:
        raise ValueError(f"encodings name tensors the model does not have: {unknown[:3]}")
    tensors, meta = {}, {}
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        if name in encodings:
            tensors.update(_encode(name, t, encodings[name]))
            meta[name] = {"encoding": encodings[name], "shape": list(t.shape)}
        else:
            tensors[name] = t
    with atomic_file(d / FILE) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"format": "pt", "encodings": json.dumps(meta)})
    atomic_write(d / SPEC, json.dumps(spec, indent=2) + "\n")
    return d


def saver(spec: dict, encodings: dict[str, str] | None = None, info: dict | None = None):
    """A Result.save for plmkit.workflows.compress: `save` with these settings (the workflow's own record of
    the run goes into plmkit.json beside `info`)."""
    return lambda model, directory, run_info=None: save(model, directory, spec, encodings,
                                                         {**(run_info or {}), **(info or {})})


def load(directory: str | os.PathLike, head_config):
    """The TaskModel stored in `directory` by `save`, in eval mode, with `.tokenizer`."""
    from ..heads import TaskModel
    from ..interop.hf import read_model_config
    from ..tokenizers import load_tokenizer
    from . import quantize

    d = Path(directory)
    try:
        spec = json.loads((d / SPEC).read_text())
    except json.JSONDecodeError as e:
        raise PlmkitError(f"not valid JSON: {e.msg}", path=d / SPEC, line=e.lineno) from None
    if not (d / FILE).is_file():
        raise PlmkitError(f"{FILE} not found", path=d)
    member, config, _ = read_model_config(d)
    body = member.model_cls(config)
    if "structure" in spec:
        from .structure import restore

        restore(body, spec["structure"])
    if "exits" in spec:
        from .exits import ExitModel

        model = ExitModel(body, head_config, **spec["exits"])
    else:
        model = TaskModel(body, head_config)
    for name, settings in spec.get("linear", {}).items():
        quantize.replace_linear(model, name, settings)
    state = read(d / FILE)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise PlmkitError(f"weights do not fit {SPEC}: {str(e).splitlines()[-1].strip()}", path=d / FILE) from None
    model.tokenizer = load_tokenizer(d)
    return model.eval()


def read(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """compressed.safetensors → the state dict it encodes, every tensor decoded."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("encodings", "{}"))
        raw = {k: f.get_tensor(k) for k in f.keys()}
    state = {k: v for k, v in raw.items() if "#" not in k}
    for name, m in meta.items():
        state[name] = _decode(name, raw, m["encoding"], m["shape"])
    return state
