"""`plmkit family` and `plmkit diff`: the family graph and the diffs, drawn from the registry."""

from __future__ import annotations

import json
import sys


def _add_family(sub) -> None:
    p = sub.add_parser("family", help="list the family members or draw their graph",
                       description="The graph is drawn from the registry each member fills in its own file.")
    p.add_argument("--out", metavar="FILE", help="draw the graph to FILE (.png, .svg or .pdf)")
    p.add_argument("--json", action="store_true", help="print the registry as JSON")
    p.set_defaults(func=_cmd_family)
    d = sub.add_parser("diff", help="print a member's difference from its parent")
    d.add_argument("name")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_diff)


def _cmd_family(a) -> int:
    from .. import family

    ms = family.members()
    if a.out:
        family.draw(a.out)
        print(f"wrote {a.out}", file=sys.stderr)
    if a.json:
        print(json.dumps([m.to_json() for m in ms], indent=2))
    elif not a.out:
        for m in ms:
            print(f"{m.name:<12} {m.year}  parent: {m.parent or '-':<10} {m.paper}")
    return 0


def _cmd_diff(a) -> int:
    from .. import family

    print(json.dumps(family.get(a.name).to_json(), indent=2) if a.json else family.describe(a.name))
    return 0


def add_commands(sub) -> None:
    _add_family(sub)
