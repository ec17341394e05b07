"""`plmkit family` and `plmkit diff`: the family graph and the diffs, drawn from the registry."""

from __future__ import annotations

import json
import sys

FORMATS = ("text", "json", "dot", "mermaid")


def add_commands(sub) -> None:
    p = sub.add_parser("family", help="list the family members or draw their graph",
                       description="The family graph, made from the registry each member fills in its own file: "
                                   "columns by year, a solid arrow from each member's code parent (the class it "
                                   "subclasses), a dashed one from each influence (another member its paper "
                                   "builds on), colours by kind. Without --out it lists the members (--format "
                                   "text), or prints the registry (json) or the graph as text to paste into "
                                   "docs (dot for Graphviz, mermaid).")
    p.add_argument("--out", metavar="FILE", help="draw the graph to FILE (.png, .svg or .pdf)")
    p.add_argument("--format", choices=FORMATS, default="text", help="what to print (default text)")
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument("--highlight", metavar="NAME", help="keep only NAME's lineage in colour: what it comes from, "
                                                       "through parents and influences, and what comes from it")
    p.set_defaults(func=_cmd_family)
    d = sub.add_parser("diff", help="print a member's difference from its parent, or the path between two",
                       description="With one NAME: its diff from its code parent, axis by axis. With two: the "
                                   "chain of diffs along the shortest path between them in the family graph "
                                   "(down to a child applies its diff, up to a parent undoes one; an influence "
                                   "step has no diff in code).")
    d.add_argument("name")
    d.add_argument("other", nargs="?", help="a second member: the path of diffs from NAME to it")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_diff)


def _cmd_family(a) -> int:
    from .. import family
    from ..family import graph

    fmt = "json" if a.json else a.format
    if a.highlight:
        family.get(a.highlight)  # an unknown name is an error before anything is drawn
    if a.out:
        graph.draw(a.out, highlight=a.highlight)
        print(f"wrote {a.out}", file=sys.stderr)
    if fmt == "json":
        print(json.dumps([m.to_json() for m in family.members()], indent=2))
    elif fmt == "dot":
        print(graph.to_dot(a.highlight), end="")
    elif fmt == "mermaid":
        print(graph.to_mermaid(a.highlight), end="")
    elif not a.out:
        for m in family.members():
            inf = f"  (+ {', '.join(m.influences)})" if m.influences else ""
            print(f"{m.name:<14} {m.year}  {m.kind:<16} parent: {m.parent or '-':<10} {m.paper}{inf}")
    return 0


def _cmd_diff(a) -> int:
    from .. import family

    if a.other:
        print(json.dumps(family.path_json(a.name, a.other), indent=2) if a.json
              else family.describe_path(a.name, a.other))
    else:
        print(json.dumps(family.get(a.name).to_json(), indent=2) if a.json else family.describe(a.name))
    return 0
