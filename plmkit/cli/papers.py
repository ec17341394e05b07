"""`plmkit papers`: the reading list, each paper with the member or command that runs it (plmkit.reading)."""

from __future__ import annotations

import json
import shutil
import textwrap

from ..errors import PlmkitError
from ..reading.papers import CATEGORIES, IN_PLMKIT, MISSING, NOTHING_TO_RUN, PARTLY


def add_commands(sub) -> None:
    p = sub.add_parser(
        "papers", help="the reading list: the field's papers and what in plmkit runs each",
        description="The must-read papers on pre-trained language models — models, compression, analysis, "
                    "fine-tuning and the surveys — each with a short highlight and the family member or command "
                    "that runs it, read from the family registry and this command line as they are now. Papers "
                    "plmkit does not run yet say so: `--missing` is the project's to-do list.")
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="open one entry with the command that runs it: a paper's key (albert, tinybert), a member, "
                        "or a method (distil opens the papers `plmkit compress distil` runs)")
    p.add_argument("--category", choices=CATEGORIES, help="only this part of the list")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--implemented", action="store_true",
                       help="only papers plmkit runs, wholly or in part")
    which.add_argument("--missing", action="store_true",
                       help="only papers with something still to build, and what (the to-do list)")
    p.add_argument("--search", metavar="TEXT", help="only papers whose title, authors, venue, highlight or "
                                                    "runner contain TEXT (case-insensitive)")
    p.add_argument("--json", action="store_true", help="print the entries and their links as JSON")
    p.set_defaults(func=_cmd_papers)


def _present(link) -> str:
    if not link.target.startswith("member "):
        return link.target
    return f"{link.target.removeprefix('member ')} ({f'parent {link.parent}' if link.parent else 'a root'})"


def _runs(s) -> str:
    """One cell: what runs the paper now, and what is still to build."""
    if s.state == NOTHING_TO_RUN:
        return "a survey: nothing to run"
    have = [_present(link) for link in s.links if link.exists]
    todo = s.missing
    if not s.links:
        return "not in plmkit yet"
    if not todo:
        return ", ".join(have)
    return (", ".join(have) + "; " if have else "") + "not yet: " + ", ".join(todo)


def _describe(s) -> str:
    p, width = s.paper, min(100, shutil.get_terminal_size((100, 20)).columns)
    wrap = textwrap.TextWrapper(width, break_on_hyphens=False).fill
    lines = [p.title, wrap(p.authors), f"{p.venue} · {p.link}", f"category: {p.category} · key: {p.key}", "",
             wrap(p.highlight), ""]
    if s.state == NOTHING_TO_RUN:
        lines.append("a survey: nothing to run")
    elif not s.links:
        lines.append("not in plmkit yet (the entry names no member or method to build)")
    for link in s.links:
        if not link.exists:
            lines.append(f"not in plmkit yet: {link.target}")
        elif link.target.startswith("member "):
            name = link.target.removeprefix("member ")
            lines.append(f"in plmkit: member {name}, parent {link.parent or 'none (a root)'} (`plmkit diff {name}`)")
            lines.append(f"  {link.command}")
        else:
            lines.append(f"in plmkit: {link.target}")
            lines.append(f"  {link.command}")
    return "\n".join(lines)


def _cmd_papers(a) -> int:
    from ..reading import papers as reading

    if a.name:
        if a.category or a.implemented or a.missing or a.search:
            raise PlmkitError("NAME opens entries; --category, --implemented, --missing and --search filter the list")
        found = [reading.status(p) for p in reading.find(a.name)]
        if a.json:
            print(json.dumps([s.to_json() for s in found], indent=2, ensure_ascii=False))
        else:
            print("\n\n".join(_describe(s) for s in found))
        return 0
    entries = reading.select(a.category, implemented=a.implemented, missing=a.missing, search=a.search)
    if a.json:
        print(json.dumps([s.to_json() for s in entries], indent=2, ensure_ascii=False))
        return 0
    if not entries:
        print("no paper matches")
        return 0
    key_width = max(len(s.paper.key) for s in entries)
    for category in CATEGORIES:
        group = [s for s in entries if s.paper.category == category]
        if not group:
            continue
        print(f"{category} ({len(group)})")
        for s in group:
            title = s.paper.title if len(s.paper.title) <= 52 else s.paper.title[:51] + "…"
            print(f"  {s.paper.key:<{key_width}}  {s.paper.year}  {title:<52}  {_runs(s)}")
        print()
    counts = {state: sum(s.state == state for s in entries) for state in (IN_PLMKIT, PARTLY, MISSING)}
    print(f"{len(entries)} papers: {counts[IN_PLMKIT]} in plmkit, {counts[PARTLY]} partly, {counts[MISSING]} not yet. "
          "`plmkit papers NAME` opens one with the command that runs it.")
    return 0
