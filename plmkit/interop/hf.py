"""Saved models as Hugging Face directories: config.json + model.safetensors (HF parameter names)
+ tokenizer files, plus plmkit.json (family member, exact plmkit config, provenance).

Only safetensors are ever read: nothing is unpickled.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .. import __version__, family
from ..durable import atomic_file, atomic_write
from ..errors import PlmkitError

log = logging.getLogger("plmkit")


def save_model(model: torch.nn.Module, directory: str | os.PathLike, tokenizer=None,
               info: dict[str, Any] | None = None, weights: bool = True) -> Path:
    """Write `model` (and `tokenizer`) so that both plmkit and `transformers` can load the directory; each file
    goes through a temporary name, so a kill never leaves a half-written one. weights=False writes the configs
    and tokenizer only, for a caller that stores the weights in a form of its own (plmkit.compress.storage:
    int8, packed ternary, sparse)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    member = family.get(model.family_name)
    layout = getattr(model, "hf", None)  # None: a member with no transformers counterpart (n-gram, LSTM, …)
    hf_config = {"model_type": f"plmkit-{member.name}", **model.config.to_dict()}
    if layout is not None:
        try:
            hf_config = {"model_type": layout.model_type, "architectures": list(layout.architectures),
                         **layout.to_config(model.config)}
        except PlmkitError as e:
            log.warning("%s; config.json is written for plmkit only", e)
    atomic_write(d / "config.json", json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    if weights:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        with atomic_file(d / "model.safetensors") as tmp:
            save_file(layout.to_hf(state) if layout is not None else state, str(tmp), metadata={"format": "pt"})
        for name, companion in (layout.companions.items() if layout is not None else ()):
            _save_companion(model, name, companion, d / name)
    meta = {"member": member.name, "objective": member.objective, "config": model.config.to_dict(),
            "plmkit_version": __version__, "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            **(info or {})}
    atomic_write(d / "plmkit.json", json.dumps(meta, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save(d)
    return d


def _save_companion(model: torch.nn.Module, name: str, layout, d: Path) -> None:
    """A second HF model saved beside the first (ELECTRA's generator/), from the model's view of it."""
    d.mkdir(exist_ok=True)
    try:
        hf_config = {"model_type": layout.model_type, "architectures": list(layout.architectures),
                     **layout.to_config(model.config)}
    except PlmkitError:  # already warned about for the main model; plmkit.json holds the config
        hf_config = {"model_type": f"plmkit-{model.family_name}-{name}"}
    atomic_write(d / "config.json", json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in model.companion_state_dict(name).items()}
    with atomic_file(d / "model.safetensors") as tmp:
        save_file(layout.to_hf(state), str(tmp), metadata={"format": "pt"})


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise PlmkitError(f"not valid JSON: {e.msg}", path=path, line=e.lineno) from None
    except UnicodeDecodeError:
        raise PlmkitError("not UTF-8 text", path=path) from None
    if not isinstance(d, dict):
        raise PlmkitError("not a JSON object", path=path)
    return d


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a truncated or foreign file is the user's error, named."""
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError) on a damaged file
        raise PlmkitError(f"not a readable safetensors file (truncated or damaged?): {e}", path=path) from None


def _member_for_config(hf_config: dict, source: Path) -> family.Member:
    model_type = hf_config.get("model_type", "")
    for m in family.members():
        layout = getattr(m.model_cls, "hf", None)
        if layout is not None and layout.model_type == model_type and (layout.accepts is None
                                                                        or layout.accepts(hf_config)):
            return m
    raise PlmkitError(f"no plmkit member reads model_type {model_type!r}", path=source)


def read_model_config(path: str | os.PathLike) -> tuple[family.Member, Any, dict]:
    """A plmkit or Hugging Face model directory → (its member, its config, plmkit.json's content or {})."""
    d = Path(path)
    if not d.is_dir():
        raise PlmkitError("model directory not found", path=d)
    if (d / "plmkit.json").exists():
        meta = _read_json(d / "plmkit.json")
        if "member" not in meta or "config" not in meta:
            raise PlmkitError("plmkit.json lacks 'member' or 'config'", path=d / "plmkit.json")
        member = family.get(meta["member"])
        return member, member.config_cls.from_dict(meta["config"], source=d / "plmkit.json"), meta
    if (d / "config.json").exists():
        hf_config = _read_json(d / "config.json")
        member = _member_for_config(hf_config, d / "config.json")
        layout = member.model_cls.hf
        companions = {name: _read_json(d / name / "config.json") for name in layout.companions
                      if (d / name / "config.json").exists()}
        return member, layout.from_config(hf_config, **companions), {}
    raise PlmkitError("no config.json or plmkit.json: not a model directory", path=d)


def load_model(path: str | os.PathLike) -> torch.nn.Module:
    """A plmkit or Hugging Face model directory → the plmkit model, in eval mode."""
    d = Path(path)
    member, config, _ = read_model_config(d)
    weights = d / "model.safetensors"
    if not weights.exists():
        if (d / "pytorch_model.bin").exists():
            bin_path = d / "pytorch_model.bin"
            raise PlmkitError(
                "holds only pytorch_model.bin, a pickle, which plmkit never loads; convert it once to safetensors "
                "(torch's weights-only loader refuses code): python -c \"import torch, safetensors.torch as st; "
                f"st.save_file({{k: v.clone() for k, v in torch.load('{bin_path}', weights_only=True).items()}}, "
                f"'{d / 'model.safetensors'}', metadata={{'format': 'pt'}})\"", path=d)
        raise PlmkitError("model.safetensors not found", path=d)
    model = member.model_cls(config)
    layout = getattr(model, "hf", None)
    if layout is None:  # saved under plmkit's own parameter names: all must be there
        state = read_weights(weights)
    else:
        state, missing = layout.from_hf(read_weights(weights), model.state_dict())
        body_missing = [k for k in missing if k.startswith(("embeddings.", "layers.", "final_norm", "decoder."))]
        if body_missing:
            raise PlmkitError(f"weights missing from the checkpoint: {', '.join(body_missing[:5])}", path=weights)
        if missing:
            log.warning("%s: no weights for %s; they keep their random initialisation", d, ", ".join(missing))
    try:
        model.load_state_dict(state, strict=layout is None)
    except RuntimeError as e:
        raise PlmkitError(f"weights do not fit the config: {str(e).splitlines()[-1].strip()}", path=weights) from None
    for name, companion in (layout.companions.items() if layout is not None else ()):
        _load_companion(model, name, companion, d / name / "model.safetensors")
    model.directory = d  # so that an error about what the model cannot do names it
    return model.eval()


def _load_companion(model: torch.nn.Module, name: str, layout, weights: Path) -> None:
    if not weights.exists():
        log.warning("%s not found; %s keeps its random initialisation", weights, name)
        return
    state, missing = layout.from_hf(read_weights(weights), model.companion_state_dict(name))
    if missing:
        raise PlmkitError(f"weights missing from the checkpoint: {', '.join(missing[:5])}", path=weights)
    try:
        model.load_companion_state_dict(name, state)
    except RuntimeError as e:
        raise PlmkitError(f"weights do not fit the config: {str(e).splitlines()[-1].strip()}", path=weights) from None
