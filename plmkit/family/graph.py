"""The family graph, laid out from the registry: columns by year from left to right, a solid arrow from each
code parent, a dashed one from each influence, nodes coloured by kind.

Layout. Each year gets one or more adjacent columns: a member sits one column right of any parent or
influence from the same year (ELMo → GPT → BERT in 2018), so every arrow points right. Within a column,
members are ordered by the mean height of what they come from (fewer crossings) and then packed top to
bottom with their measured label heights plus a gap, so no two labels can overlap, however many members
there are. Sizes are measured in inches with the renderer the figure is saved with, and one data unit is
one inch, so what is measured is what is drawn. `draw` returns the overlapping label pairs it finds in the
finished drawing (measured again, legend and year captions included): the tests assert there are none.

Text formats: `to_dot` (Graphviz) and `to_mermaid` print the same graph for docs.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from . import KINDS, Member, members, relatives

KIND_COLOURS = {"count LM": "#d9d9d9", "neural LM": "#fde4b8", "word vectors": "#d6ecc9",
                "sentence vectors": "#c8e6e0", "encoder": "#cfe0fb", "decoder": "#f7cdd2",
                "encoder-decoder": "#e0d4f5"}
KIND_EDGES = {"count LM": "#7f7f7f", "neural LM": "#d08c1f", "word vectors": "#4e9a35",
              "sentence vectors": "#2f8f80", "encoder": "#3b6fd8", "decoder": "#c8394b",
              "encoder-decoder": "#7b52c7"}
assert set(KIND_COLOURS) == set(KINDS) == set(KIND_EDGES)

NAME_PT, CAPTION_PT = 10, 7  # font sizes
CAPTION_CHARS = 30  # the first change of the diff, wrapped to this width under the name
GAP_Y, GAP_X, MARGIN = 0.18, 0.55, 0.3  # inches between labels, between columns, around the drawing


def _first_change(m: Member) -> str:
    from . import AXES

    return next((c for axis in AXES for c in m.diff.get(axis, [])), "")


def columns(ms: list[Member]) -> dict[str, int]:
    """Column of each member: years left to right, and within a year one column right of any same-year
    member it comes from."""
    by_name = {m.name: m for m in ms}
    col: dict[str, int] = {}
    start = 0
    for year in sorted({m.year for m in ms}):
        same = [m for m in ms if m.year == year]
        depth: dict[str, int] = {}

        def d(m: Member, seen: tuple[str, ...] = ()) -> int:
            if m.name not in depth:
                sources = [by_name[p] for p in ([m.parent] if m.parent else []) + list(m.influences)
                           if p in by_name and by_name[p].year == year and p not in seen]
                depth[m.name] = max((d(p, (*seen, m.name)) + 1 for p in sources), default=0)
            return depth[m.name]

        for m in same:
            col[m.name] = start + d(m)
        start = max(col[m.name] for m in same) + 1
    return col


def _measure(texts: list[tuple[str, float, str]]) -> list[tuple[float, float]]:
    """(width, height) in inches of each (text, points, weight), as the saved figure will render it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(dpi=100)
    renderer = FigureCanvasAgg(fig).get_renderer()
    out = []
    for text, size, weight in texts:
        t = fig.text(0, 0, text, fontsize=size, weight=weight)
        box = t.get_window_extent(renderer)
        out.append((box.width / fig.dpi, box.height / fig.dpi))
    return out


def layout(ms: list[Member]) -> dict[str, dict]:
    """Position (centre x, top y, in inches, y growing downward) and size of every member's label."""
    col = columns(ms)
    labels = {m.name: (f"{m.name}  {m.year}", textwrap.fill(_first_change(m), CAPTION_CHARS)) for m in ms}
    sizes = _measure([t for m in ms for t in ((labels[m.name][0], NAME_PT, "bold"),
                                              (labels[m.name][1] or " ", CAPTION_PT, "normal"))])
    pad = 0.08  # inside the name's box
    box: dict[str, dict] = {}
    for i, m in enumerate(ms):
        (nw, nh), (cw, ch) = sizes[2 * i], sizes[2 * i + 1]
        box[m.name] = {"name": labels[m.name][0], "caption": labels[m.name][1], "name_h": nh + 2 * pad,
                       "w": max(nw + 2 * pad, cw), "h": nh + 2 * pad + (0.04 + ch if labels[m.name][1] else 0)}
    n_cols = max(col.values()) + 1
    widths = [max((box[m]["w"] for m in col if col[m] == c), default=0.0) for c in range(n_cols)]
    x = MARGIN
    for c in range(n_cols):
        for name in (n for n in col if col[n] == c):
            box[name]["x"] = x + widths[c] / 2
        x += widths[c] + GAP_X

    def want(m: Member) -> float:  # the mean centre height of what the member comes from (columns to its left)
        ys = [box[p]["y"] + box[p]["name_h"] / 2 for p in ([m.parent] if m.parent else []) + list(m.influences)
              if p in box and "y" in box[p]]
        return sum(ys) / len(ys) if ys else 0.0

    for c in range(n_cols):
        y = 0.0
        for m in sorted((m for m in ms if col[m.name] == c), key=lambda m: (want(m), m.name)):
            b = box[m.name]  # packed top to bottom, never above the height it wants
            b["y"] = max(y, want(m) - b["name_h"] / 2)
            y = b["y"] + b["h"] + GAP_Y
    return box


def draw(path: str | Path, highlight: str | None = None, ms: list[Member] | None = None) -> list[tuple[str, str]]:
    """Draw the graph of `ms` (default: the registry) to `path` (.png, .svg or .pdf, by extension); with
    `highlight`, only that member's relatives (ancestors through parents and influences, and descendants)
    keep their colour. Returns the pairs of text boxes that overlap in the finished drawing (none, by
    construction)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ms = members() if ms is None else ms
    kind = {m.name: m.kind for m in ms}
    keep = relatives(highlight) if highlight else set(kind)
    box = layout(ms)
    width = max(b["x"] + b["w"] / 2 for b in box.values()) + MARGIN
    height = max(b["y"] + b["h"] for b in box.values())
    header = 1.15  # title, legend and year captions above the graph
    fig = Figure(figsize=(max(width, 9.0), height + header + MARGIN))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, max(width, 9.0))
    ax.set_ylim(height + MARGIN, -header)  # inches, y downward
    ax.axis("off")

    def alpha(*names: str) -> float:
        return 1.0 if all(n in keep for n in names) else 0.15

    for m in ms:  # arrows first, under the labels
        b = box[m.name]
        for src, style in ([(m.parent, "-")] if m.parent else []) + [(i, "--") for i in m.influences]:
            s = box[src]
            ax.annotate("", xy=(b["x"] - b["w"] / 2, b["y"] + b["name_h"] / 2),
                        xytext=(s["x"] + s["w"] / 2, s["y"] + s["name_h"] / 2),
                        arrowprops=dict(arrowstyle="-|>", color=KIND_EDGES[kind[src]], lw=1.1, linestyle=style,
                                        alpha=alpha(src, m.name), shrinkA=2, shrinkB=2, mutation_scale=9),
                        zorder=1)
    texts = []
    for m in ms:
        b = box[m.name]
        a = alpha(m.name)
        texts.append(ax.text(b["x"], b["y"] + b["name_h"] / 2, b["name"], ha="center", va="center",
                             fontsize=NAME_PT, weight="bold", alpha=a, zorder=3,
                             bbox=dict(boxstyle="round,pad=0.3", fc=KIND_COLOURS[m.kind], ec=KIND_EDGES[m.kind],
                                       lw=2.0 if m.name == highlight else 1.0, alpha=a)))
        if b["caption"]:
            texts.append(ax.text(b["x"], b["y"] + b["name_h"] + 0.02, b["caption"], ha="center", va="top",
                                 fontsize=CAPTION_PT, color="0.3", alpha=a, zorder=3, linespacing=1.1,
                                 bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.85)))
    col = columns(ms)
    for year in sorted({m.year for m in ms}):  # the year over the first of its columns
        first = min((m.name for m in ms if m.year == year), key=lambda n: col[n])
        texts.append(ax.text(box[first]["x"], -0.2, str(year), ha="center", va="bottom", fontsize=9, color="0.35"))
    title = "plmkit family, drawn from the registry" + (f": {highlight}'s relatives" if highlight else "")
    texts.append(ax.text(MARGIN, -header + 0.1, title, ha="left", va="top", fontsize=12, weight="bold"))
    kinds = [k for k in KINDS if any(m.kind == k for m in ms)]
    handles = [Patch(fc=KIND_COLOURS[k], ec=KIND_EDGES[k], label=k) for k in kinds]
    handles += [Line2D([], [], color="0.3", ls="-", label="code parent"),
                Line2D([], [], color="0.3", ls="--", label="influence")]
    legend = ax.legend(handles=handles, loc="upper right", ncol=min(len(handles), 5), fontsize=7.5, frameon=False,
                       bbox_to_anchor=(1.0, 1.0), borderaxespad=0.3)
    fig.savefig(path, dpi=110)
    return overlaps(fig, texts + [legend])


def overlaps(fig, artists) -> list[tuple[str, str]]:
    """Pairs of artists whose boxes (a label's rounded box where it has one) intersect, as rendered."""
    fig.canvas.draw()  # boxes are placed at draw time, and saving to a vector format placed them for 72 dpi
    renderer = fig.canvas.get_renderer()
    boxes = []
    for a in artists:
        patch = a.get_bbox_patch() if hasattr(a, "get_bbox_patch") else None
        extent = (patch or a).get_window_extent(renderer)
        label = a.get_text() if hasattr(a, "get_text") else type(a).__name__
        boxes.append((label.split("\n")[0], extent))
    out = []
    for i, (la, ba) in enumerate(boxes):
        for lb, bb in boxes[i + 1:]:
            if ba.x0 < bb.x1 and bb.x0 < ba.x1 and ba.y0 < bb.y1 and bb.y0 < ba.y1:
                out.append((la, lb))
    return out


def to_dot(highlight: str | None = None) -> str:
    """The graph in Graphviz's language: `plmkit family --format dot | dot -Tsvg > family.svg`."""
    ms = members()
    keep = relatives(highlight) if highlight else None
    lines = ["digraph plmkit {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    for year in sorted({m.year for m in ms}):
        names = " ".join(f'"{m.name}";' for m in ms if m.year == year)
        lines.append(f"  subgraph cluster_{year} {{ label=\"{year}\"; style=invis; {names} }}")
    for m in ms:
        faded = keep is not None and m.name not in keep
        lines.append(f'  "{m.name}" [label="{m.name}\\n{m.year}", fillcolor="{KIND_COLOURS[m.kind]}", '
                     f'color="{KIND_EDGES[m.kind]}"{", fontcolor=gray70, style=dashed" if faded else ""}];')
    for m in ms:
        if m.parent:
            lines.append(f'  "{m.parent}" -> "{m.name}";')
        lines += [f'  "{i}" -> "{m.name}" [style=dashed];' for i in m.influences]
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(highlight: str | None = None) -> str:
    """The graph as a Mermaid flowchart, for Markdown docs that render Mermaid."""
    ms = members()
    keep = relatives(highlight) if highlight else None

    def node_id(name: str) -> str:
        return "m_" + "".join(c if c.isalnum() else "_" for c in name)

    lines = ["flowchart LR"]
    for m in ms:
        lines.append(f'  {node_id(m.name)}["{m.name} ({m.year})"]:::{_class(m.kind)}')
    for m in ms:
        if m.parent:
            lines.append(f"  {node_id(m.parent)} --> {node_id(m.name)}")
        lines += [f"  {node_id(i)} -.-> {node_id(m.name)}" for i in m.influences]
    for kind in KINDS:
        lines.append(f"  classDef {_class(kind)} fill:{KIND_COLOURS[kind]},stroke:{KIND_EDGES[kind]}")
    if keep is not None:
        faded = [node_id(m.name) for m in ms if m.name not in keep]
        if faded:
            lines.append("  classDef faded opacity:0.3")
            lines.append(f"  class {','.join(faded)} faded")
    return "\n".join(lines) + "\n"


def _class(kind: str) -> str:
    return kind.replace(" ", "_").replace("-", "_")
