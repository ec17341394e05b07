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


def describe(name: str) -> str:
    """`plmkit diff NAME`: the member's difference from its parent, axis by axis."""
    m = get(name)
    head = f"{m.name} ({m.year}) — {m.paper}"
    head += f"\nparent: {m.parent}" if m.parent else "\nparent: none (a root of the family graph)"
    lines = [head]
    for axis in AXES:
        for change in m.diff.get(axis, []):
            lines.append(f"  {axis:<10} {change}")
    lines.append(f"pre-training objective: {m.objective}; default tokenizer: {m.tokenizer}")
    return "\n".join(lines)


def draw(path: str) -> None:
    """Draw the family graph (PNG, SVG or PDF by the file's extension): members placed by year,
    an arrow from each parent to its child, the diff's first line beside the node."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = members()
    by_year: dict[int, list[Member]] = {}
    for m in ms:
        by_year.setdefault(m.year, []).append(m)
    years = sorted(by_year)
    pos = {m.name: (years.index(y), -k) for y in years for k, m in enumerate(by_year[y])}
    height = max(len(v) for v in by_year.values())
    fig, ax = plt.subplots(figsize=(max(4.0, 2.6 * len(years)), max(2.5, 1.3 * height)))
    for m in ms:
        if m.parent:
            (x0, y0), (x1, y1) = pos[m.parent], pos[m.name]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", color="0.45", shrinkA=18, shrinkB=18,
                                        connectionstyle="arc3,rad=0.15" if x0 == x1 else "arc3"))
    for m in ms:
        x, y = pos[m.name]
        ax.text(x, y, m.name, ha="center", va="center", fontsize=11, weight="bold",
                bbox=dict(boxstyle="round,pad=0.4", fc="#e8f0fe", ec="#3b6fd8"))
        first = next((c for axis in AXES for c in m.diff.get(axis, [])), "")
        ax.text(x, y - 0.32, first, ha="center", va="top", fontsize=7, color="0.3", wrap=True)
    ax.set_xticks(range(len(years)), [str(y) for y in years])
    ax.set_yticks([])
    ax.set_xlim(-0.7, len(years) - 0.3)
    ax.set_ylim(-height + 0.2, 0.6)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title("plmkit family: each member is its parent plus the diff it registers")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
