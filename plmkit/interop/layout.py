"""How a member's parameters and config are named in its Hugging Face counterpart.

A member declares one `HFLayout` as data; the conversion code here is shared by every member.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import torch


@dataclasses.dataclass(frozen=True)
class HFLayout:
    model_type: str  # config.json "model_type"
    architectures: tuple[str, ...]  # config.json "architectures"
    prefix: str  # HF's base-model prefix ("bert.", "transformer."); checkpoints of the bare body omit it
    # plmkit module path → HF module path; "{i}" = layer index; a tuple = HF keeps apart what plmkit fuses
    # (q, k, v; a cross-attention's k, v), in that order; a leading "/" = the HF path sits outside `prefix`.
    modules: dict[str, str | tuple[str, ...]]
    to_config: Callable[[Any], dict]
    from_config: Callable[[dict], Any]
    transposed: tuple[str, ...] = ()  # module suffixes whose HF weight is stored (in, out)
    # Sub-directory → layout of a second HF model saved beside this one (ELECTRA's generator/). The model
    # gives its view in plmkit names with `companion_state_dict(name)` and takes it back with
    # `load_companion_state_dict(name, state)`; `from_config` then also receives each companion's config.json
    # dict as a keyword argument named like the sub-directory.
    companions: dict[str, "HFLayout"] = dataclasses.field(default_factory=dict)
    # plmkit module path → HF module path read when the first has no weights in a checkpoint (transformers 5
    # writes T5's output layer only where it differs from the token table).
    fallbacks: dict[str, str] = dataclasses.field(default_factory=dict)
    # Which configs of `model_type` this layout reads, where members share one (ERNIE 1.0 and 2.0 are both
    # `ernie`, told apart by `use_task_id`); None reads them all. A directory loads as the first member,
    # in registration order, whose layout accepts its config.
    accepts: Callable[[dict], bool] | None = None

    def _hf_names(self, ours: str) -> tuple[str, tuple[str, ...] | str] | None:
        """plmkit parameter name → (plmkit module path, HF parameter name(s)), or None if unmapped."""
        layer = re.search(r"(?:^|\.)layers\.(\d+)\.", ours)  # an encoder's or a decoder's layer
        i = layer.group(1) if layer else "{i}"
        for mod, theirs in self.modules.items():
            mod_i = mod.replace("{i}", i)
            if ours == mod_i:
                suffix = ""
            elif ours.startswith(mod_i + "."):
                suffix = ours[len(mod_i):]
            else:
                continue
            names = tuple(self._full(t.replace("{i}", i) + suffix) for t in
                          (theirs if isinstance(theirs, tuple) else (theirs,)))
            return mod_i, names if isinstance(theirs, tuple) else names[0]
        return None

    def _full(self, name: str) -> str:
        return name[1:] if name.startswith("/") else self.prefix + name

    def _is_transposed(self, mod: str, param: str) -> bool:
        return param.endswith(".weight") and any(mod.endswith(s) for s in self.transposed)

    def to_hf(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """plmkit state dict → HF state dict (tied copies left out, as HF's own save does)."""
        out = {}
        for ours, t in state.items():
            mapped = self._hf_names(ours)
            if mapped is None:
                continue
            mod, theirs = mapped
            if isinstance(theirs, tuple):
                for name, part in zip(theirs, t.chunk(len(theirs), dim=0)):
                    out[name] = part.contiguous()
            else:
                out[theirs] = (t.T if self._is_transposed(mod, ours) else t).contiguous()
        return out

    def from_hf(self, hf: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """HF state dict → (plmkit state dict, plmkit names not found). `expected` is the model's own
        state dict, which says what to look for. A bare-body checkpoint (no prefix) is accepted."""
        if not any(k.startswith(self.prefix) for k in hf):
            hf = {self.prefix + k: v for k, v in hf.items()}
        out, missing = {}, []
        for ours in expected:
            mapped = self._hf_names(ours)
            if mapped is None:
                continue
            mod, theirs = mapped
            names = theirs if isinstance(theirs, tuple) else (theirs,)
            if not all(n in hf for n in names) and mod in self.fallbacks:
                theirs = self._full(self.fallbacks[mod] + ours[len(mod):])
                names = (theirs,)
            if not all(n in hf for n in names):
                missing.append(ours)
                continue
            if isinstance(theirs, tuple):
                out[ours] = torch.cat([hf[n] for n in names], dim=0)
            else:
                out[ours] = hf[theirs].T if self._is_transposed(mod, ours) else hf[theirs]
        return out, missing
