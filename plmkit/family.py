"""The family registry: every member registers its parent, paper, year and its diff as data.

`plmkit family` and `plmkit diff NAME` are drawn from here; nothing about the graph is written
by hand anywhere else.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from .errors import PlmkitError

# The axes along which PLMs differ (DESIGN.md); a diff names only these.
AXES = ("objective", "body", "layers", "tokenizer", "heads", "training")
# What a member is, for the graph's colours: a child is its parent's kind unless it says otherwise.
KINDS = ("count LM", "neural LM", "word vectors", "sentence vectors", "encoder", "decoder", "encoder-decoder")


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
    kind: str  # one of KINDS
    # Other members the paper builds on besides the code parent (XLNet: Transformer-XL beside BERT);
    # drawn dashed in the graph, where the code parent is solid.
    influences: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "parent": self.parent, "influences": list(self.influences), "kind": self.kind,
            "paper": self.paper, "year": self.year, "diff": self.diff, "objective": self.objective,
            "tokenizer": self.tokenizer,
            "model": f"{self.model_cls.__module__}.{self.model_cls.__qualname__}",
            "config": f"{self.config_cls.__module__}.{self.config_cls.__qualname__}",
        }


_REGISTRY: dict[str, Member] = {}


def register(name: str, *, parent: str | None, paper: str, year: int, diff: dict[str, list[str]],
             config: type, objective: str, tokenizer: str, kind: str | None = None,
             influences: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Class decorator for a member's model class. `kind` defaults to the parent's; `influences` may name
    members registered later (they are checked when the registry is read)."""
    bad = sorted(set(diff) - set(AXES))
    if bad:
        raise ValueError(f"{name}: diff axes {bad} not in {AXES}")
    if parent is not None and parent not in _REGISTRY:
        raise ValueError(f"{name}: parent {parent!r} must be registered first")
    kind = kind or (_REGISTRY[parent].kind if parent else None)
    if kind not in KINDS:
        raise ValueError(f"{name}: kind {kind!r} not in {KINDS}")
    if parent in influences or name in influences:
        raise ValueError(f"{name}: influences name the member itself or its code parent")

    def deco(cls: type) -> type:
        _REGISTRY[name] = Member(name, parent, paper, year, {k: list(v) for k, v in diff.items()},
                                 cls, config, objective, tokenizer, kind, tuple(influences))
        cls.family_name = name
        return cls

    return deco


def _load_members() -> None:
    from . import models  # noqa: F401  (members register on import)

    for m in _REGISTRY.values():
        unknown = [i for i in m.influences if i not in _REGISTRY]
        if unknown:
            raise ValueError(f"{m.name}: influences {unknown} are not registered members")


def get(name: str) -> Member:
    _load_members()
    key = name.lower()
    if key not in _REGISTRY:
        raise PlmkitError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def members() -> list[Member]:
    _load_members()
    depth = {}
    for m in _REGISTRY.values():  # parents register first, so a parent's depth is always known
        depth[m.name] = 0 if m.parent is None else depth[m.parent] + 1
    return sorted(_REGISTRY.values(), key=lambda m: (m.year, depth[m.name], m.name))


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


def _tree() -> tuple[dict[str, list[str]], list[str]]:
    """Children of each member and the roots, each list in (year, name) order."""
    ms = members()
    children: dict[str, list[str]] = {m.name: [] for m in ms}
    for m in ms:
        if m.parent:
            children[m.parent].append(m.name)
    return children, [m.name for m in ms if m.parent is None]


def draw(path: str) -> None:
    """Draw the family graph (PNG, SVG or PDF by the file's extension) as a tree from the roots on the
    left: an arrow from each parent to its child, the first change of each diff under the node."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    children, roots = _tree()
    pos: dict[str, tuple[float, float]] = {}
    next_row = [0]

    def place(name: str, depth: int) -> float:  # leaves take rows in turn; a parent sits mid-way
        ys = [place(c, depth + 1) for c in children[name]]
        y = sum(ys) / len(ys) if ys else next_row[0]
        if not ys:
            next_row[0] += 1
        pos[name] = (depth, -y)
        return y

    for r in roots:
        place(r, 0)
    depth = max(x for x, _ in pos.values())
    fig, ax = plt.subplots(figsize=(2.0 + 3.0 * depth + 2.0, 1.0 + 1.1 * next_row[0]))
    for name, kids in children.items():
        for kid in kids:
            ax.annotate("", xy=pos[kid], xytext=pos[name],
                        arrowprops=dict(arrowstyle="->", color="0.45", shrinkA=22, shrinkB=22))
    for name, (x, y) in pos.items():
        m = get(name)
        ax.text(x, y, f"{m.name}\n{m.year}", ha="center", va="center", fontsize=10, weight="bold",
                bbox=dict(boxstyle="round,pad=0.35", fc="#e8f0fe", ec="#3b6fd8"))
        first = next((c for axis in AXES for c in m.diff.get(axis, [])), "")
        ax.text(x, y - 0.36, first, ha="center", va="top", fontsize=7, color="0.3")
    ax.set_xlim(-0.8, depth + 0.8)
    ax.set_ylim(-next_row[0] + 0.2, 0.7)
    ax.axis("off")
    ax.set_title("plmkit family, drawn from the registry", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
