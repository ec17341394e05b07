"""The family registry: every member registers its code parent, the members its paper builds on
(influences), its paper, year, kind and its diff as data.

`plmkit family` (drawn by `plmkit.family.graph`) and `plmkit diff` are made from here; nothing about the
graph is written by hand anywhere else.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ..errors import PlmkitError

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
    from .. import models  # noqa: F401  (members register on import)

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


def path(a: str, b: str) -> list[tuple[str, str, str]]:
    """The shortest way from member `a` to member `b` through the family graph, as steps (from, to, how):
    how is "child" (to's code parent is from), "parent" (the reverse), or "influenced" / "influence" for a
    dashed edge in either direction. Code-parent steps are preferred: an influence costs 1.5 steps."""
    import heapq

    start, goal = get(a).name, get(b).name
    edges: dict[str, list[tuple[str, str, float]]] = {m.name: [] for m in members()}
    for m in members():
        if m.parent:
            edges[m.parent].append((m.name, "child", 1.0))
            edges[m.name].append((m.parent, "parent", 1.0))
        for i in m.influences:
            edges[i].append((m.name, "influenced", 1.5))
            edges[m.name].append((i, "influence", 1.5))
    best: dict[str, float] = {start: 0.0}
    back: dict[str, tuple[str, str]] = {}
    queue = [(0.0, start)]
    while queue:
        cost, node = heapq.heappop(queue)
        if node == goal:
            break
        if cost > best[node]:
            continue
        for nxt, how, w in sorted(edges[node]):
            if cost + w < best.get(nxt, float("inf")):
                best[nxt], back[nxt] = cost + w, (node, how)
                heapq.heappush(queue, (cost + w, nxt))
    if goal not in best:
        raise PlmkitError(f"no path between {a!r} and {b!r} in the family graph")
    steps, node = [], goal
    while node != start:
        prev, how = back[node]
        steps.append((prev, node, how))
        node = prev
    return steps[::-1]


def describe_path(a: str, b: str) -> str:
    """`plmkit diff A B`: the chain of diffs along the path from A to B. Going down to a child applies its
    diff; going up to a parent undoes the diff of the member left; an influence has no diff in code."""
    steps = path(a, b)
    if not steps:
        return f"{get(a).name} and {get(b).name} are the same member"
    lines = [" → ".join([steps[0][0]] + [t for _, t, _ in steps])]
    for frm, to, how in steps:
        if how == "child":
            lines.append(f"{frm} → {to}: apply {to}'s diff ({get(to).paper})")
            lines += _diff_lines(get(to), "+")
        elif how == "parent":
            lines.append(f"{frm} → {to}: undo {frm}'s diff")
            lines += _diff_lines(get(frm), "−")
        elif how == "influenced":
            lines.append(f"{frm} ⇢ {to}: an influence, not a code parent ({to}'s paper builds on {frm})")
        else:
            lines.append(f"{frm} ⇢ {to}: an influence, not a code parent ({frm}'s paper builds on {to})")
    return "\n".join(lines)


def path_json(a: str, b: str) -> list[dict[str, Any]]:
    """The steps of `path` with the diff each applies (child) or undoes (parent)."""
    out = []
    for frm, to, how in path(a, b):
        step: dict[str, Any] = {"from": frm, "to": to, "step": how}
        if how in ("child", "parent"):
            step["apply" if how == "child" else "undo"] = get(to if how == "child" else frm).diff
        out.append(step)
    return out


def _diff_lines(m: Member, sign: str) -> list[str]:
    return [f"  {sign} {axis:<10} {change}" for axis in AXES for change in m.diff.get(axis, [])]


def relatives(name: str) -> set[str]:
    """A member, every member it descends from (code parents and influences, transitively) and every
    member descending from it: what `plmkit family --highlight NAME` keeps in colour."""
    by_name = {m.name: m for m in members()}
    root = get(name).name
    up, todo = {root}, [root]
    while todo:
        m = by_name[todo.pop()]
        for p in ([m.parent] if m.parent else []) + list(m.influences):
            if p not in up:
                up.add(p)
                todo.append(p)
    down, todo = {root}, [root]
    while todo:
        n = todo.pop()
        for m in by_name.values():
            if (m.parent == n or n in m.influences) and m.name not in down:
                down.add(m.name)
                todo.append(m.name)
    return up | down
