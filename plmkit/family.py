"""The family registry: every member registers its parent, paper, year and its diff as data.

`plmkit family` and `plmkit diff NAME` are drawn from here; nothing about the graph is written
by hand anywhere else.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from .errors import PlmkitError

# The axes along which PLMs differ (DESIGN.md); a diff names only these.
AXES = ("tokenizer", "objective", "layers", "body", "heads", "training")


@dataclasses.dataclass(frozen=True)
class Member:
    name: str
    parent: str | None
    paper: str
    year: int
    diff: dict[str, list[str]]  # axis -> changes from the parent, in words
    model_cls: type
    config_cls: type
    objective: str  # name of the pre-training objective (plmkit.objectives)
    tokenizer: str  # default tokenizer kind for `plmkit pretrain`

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "parent": self.parent, "paper": self.paper, "year": self.year,
            "diff": self.diff, "objective": self.objective, "tokenizer": self.tokenizer,
            "model": f"{self.model_cls.__module__}.{self.model_cls.__qualname__}",
            "config": f"{self.config_cls.__module__}.{self.config_cls.__qualname__}",
        }


_REGISTRY: dict[str, Member] = {}


def register(name: str, *, parent: str | None, paper: str, year: int, diff: dict[str, list[str]],
             config: type, objective: str, tokenizer: str) -> Callable[[type], type]:
    """Class decorator for a member's model class."""
    bad = sorted(set(diff) - set(AXES))
    if bad:
        raise ValueError(f"{name}: diff axes {bad} not in {AXES}")
    if parent is not None and parent not in _REGISTRY:
        raise ValueError(f"{name}: parent {parent!r} must be registered first")

    def deco(cls: type) -> type:
        _REGISTRY[name] = Member(name, parent, paper, year, {k: list(v) for k, v in diff.items()},
                                 cls, config, objective, tokenizer)
        cls.family_name = name
        return cls

    return deco


def _load_members() -> None:
    from . import models  # noqa: F401  (members register on import)


def get(name: str) -> Member:
    _load_members()
    key = name.lower()
    if key not in _REGISTRY:
        raise PlmkitError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def members() -> list[Member]:
    _load_members()
    return sorted(_REGISTRY.values(), key=lambda m: (m.year, m.name))


def lineage(name: str) -> list[Member]:
    """The member and its ancestors, root first."""
    chain = [get(name)]
    while chain[-1].parent is not None:
        chain.append(get(chain[-1].parent))
    return chain[::-1]
