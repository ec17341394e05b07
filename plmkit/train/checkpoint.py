"""Checkpoints without pickle, written atomically.

A checkpoint `checkpoints/step-N/` holds `model/` (the caller's save_fn), `trainer.safetensors` (model
state_dict, optimizer tensors, torch RNG states, what each rank's step function carries), `trainer.json`
(everything else) and `COMPLETE`, written last. It is built in `checkpoints/.tmp-step-N-<pid>/`, fsynced,
then renamed into place, so a kill at any moment leaves either no `step-N` or a complete one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..durable import fault, fsync_dir

COMPLETE = "COMPLETE"
TENSORS = "trainer.safetensors"
META = "trainer.json"
_STEP_DIR = re.compile(r"step-(\d+)")


# --- tensors -------------------------------------------------------------------------------------------


def plain_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state_dict safetensors accepts: contiguous CPU tensors, each tensor sharing storage with an earlier
    one (tied embeddings, views of a fused weight) cloned, since safetensors refuses shared storage."""
    out, seen = {}, set()
    for k, v in state.items():
        v = v.detach().cpu()
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen or not v.is_contiguous():
            v = v.clone(memory_format=torch.contiguous_format)
        seen.add(v.untyped_storage().data_ptr())
        out[k] = v
    return out


def save_state_dict(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Default save_fn: `model.safetensors` holding the model's state_dict."""
    save_file(plain_state_dict(model.state_dict()), os.path.join(directory, "model.safetensors"))


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split `optimizer.state_dict()` into tensors (keys `optim.<param>.<name>`) and a JSON part."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for name, v in state.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = v
            else:
                scalars.setdefault(str(idx), {})[name] = v
    return plain_state_dict(tensors), {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of `optimizer_state`: rebuild the exact state_dict structure (int keys, tuples) and load it."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, d in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(d)
    groups = []
    for live, saved in zip(optimizer.param_groups, meta["param_groups"]):
        # JSON turns tuples (betas) into lists; restore the type the live optimizer uses.
        groups.append({k: tuple(v) if isinstance(live.get(k), tuple) else v for k, v in saved.items()})
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# --- RNG -----------------------------------------------------------------------------------------------


def capture_rng() -> dict:
    """This process's RNG states: torch (CPU and CUDA) as uint8 tensors, numpy and `random` as JSON."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), *(x.item() if hasattr(x, "item") else x for x in np_state[2:])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))


def split_rank_states(ranks: list[dict]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Per-rank dicts {"rng": capture_rng(), "carry": {name: tensor}, ...} → safetensors tensors + JSON-able
    dicts; "carry" is what the step function carries between steps (Transformer-XL's memory)."""
    tensors, meta = {}, []
    for r, s in enumerate(ranks):
        rng = s["rng"]
        tensors[f"rank{r}.rng.torch"] = rng["torch"]
        for i, t in enumerate(rng["cuda"]):
            tensors[f"rank{r}.rng.cuda.{i}"] = t
        carry = s.get("carry", {})
        tensors.update({f"rank{r}.carry.{k}": v.contiguous() for k, v in carry.items()})
        meta.append({**s, "rng": {"numpy": rng["numpy"], "python": rng["python"], "n_cuda": len(rng["cuda"])},
                     "carry": sorted(carry)})
    return tensors, meta


def join_rank_state(tensors: dict[str, torch.Tensor], meta: list[dict], rank: int) -> dict:
    s = meta[rank]
    rng = {**s["rng"], "torch": tensors[f"rank{rank}.rng.torch"]}
    rng["cuda"] = [tensors[f"rank{rank}.rng.cuda.{i}"] for i in range(rng.pop("n_cuda"))]
    return {**s, "rng": rng, "carry": {k: tensors[f"rank{rank}.carry.{k}"] for k in s.get("carry", [])}}


# --- files ---------------------------------------------------------------------------------------------


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root, topdown=False):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))


def _remove(path: Path) -> None:
    """Delete a checkpoint dir; renamed to .tmp-* first so a kill mid-delete never leaves a half step-N."""
    doomed = path.with_name(f".tmp-delete-{path.name}-{os.getpid()}")
    os.rename(path, doomed)
    shutil.rmtree(doomed)


def write_checkpoint(root: Path, step: int, model: torch.nn.Module, save_fn, tensors: dict, meta: dict) -> Path:
    """Atomically write `root/step-<step>/`; returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    tmp = root / f".tmp-step-{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "model").mkdir(parents=True)
    save_fn(model, tmp / "model")
    save_file(tensors, tmp / TENSORS)
    (tmp / META).write_text(json.dumps(meta, indent=1))
    _fsync_tree(tmp)
    # The marker goes last: a step dir is trusted only if everything before it reached the disk.
    with open(tmp / COMPLETE, "w") as f:
        f.write(f"{step}\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(tmp)
    fault("write", final.name)
    if final.exists():  # an incomplete leftover from a damaged run
        _remove(final)
    os.rename(tmp, final)
    fsync_dir(root)
    return final


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint under `root`, oldest first."""
    found = []
    if root.is_dir():
        for p in root.iterdir():
            m = _STEP_DIR.fullmatch(p.name)
            if m and p.is_dir() and (p / COMPLETE).is_file():
                found.append((int(m.group(1)), p))
    return sorted(found)


def remove_stale(root: Path) -> None:
    """Delete temp dirs left by killed runs (call only when no other process is writing here)."""
    if root.is_dir():
        for p in root.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)


def prune(root: Path, keep: int) -> None:
    """Keep only the newest `keep` complete checkpoints (0 keeps all)."""
    if keep:
        for _, p in complete_checkpoints(root)[:-keep]:
            _remove(p)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    return load_file(path / TENSORS), json.loads((path / META).read_text())
