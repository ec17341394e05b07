"""The reading list and its links into plmkit.

`papers.toml` (beside this file) holds one `[[paper]]` table per paper: title, authors, venue, year, one link
(`arxiv`, `acl` or `url`), the category, a highlight in our own words — and what runs it, by registry name
only: `member = "albert"` (a family member, `plmkit.family`) and/or `methods = ["compress distil",
"finetune --ulmfit"]` (a command of plmkit, as the words one types). Nothing else about plmkit is written
there: whether the member is registered, its parent in the family graph and the command line that runs it
are read from the family registry and from the command-line parser each time, so an entry naming a member
or method that does not exist yet reads "not in plmkit yet" until the day it lands, and then links itself.

A method counts as present when `plmkit --help`'s parser knows its words: a subcommand
(`plmkit compress distil`), a value of a positional with choices (`plmkit analyze METHOD`), or an option of
a command (`plmkit finetune --ulmfit`). The command shown is those words plus the arguments that parser
requires, so it stays true when a command changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import PlmkitError

CATEGORIES = ("models", "compression", "analysis", "finetuning", "survey")
# An entry's state, from what its links resolve to now (Status.state).
IN_PLMKIT, PARTLY, MISSING, NOTHING_TO_RUN = "in plmkit", "partly in plmkit", "not in plmkit yet", "nothing to run"

_REQUIRED = ("key", "title", "authors", "venue", "year", "category", "highlight")
_LINKS = ("arxiv", "acl", "url")
_OPTIONAL = ("member", "methods")
_KEY = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_ARXIV = re.compile(r"^(\d\d)(\d\d)\.(\d{4,5})$")
# Old-style (P19-1452) and new-style (2020.acl-main.383) ACL Anthology ids.
_ACL = re.compile(r"^([A-Z]\d{2}-\d{4}|\d{4}\.[a-z]+(-[a-z]+)*\.\d+)$")


@dataclasses.dataclass(frozen=True)
class Paper:
    key: str  # `plmkit papers KEY`
    title: str
    authors: str
    venue: str
    year: int
    category: str  # one of CATEGORIES
    highlight: str
    arxiv: str | None
    acl: str | None
    url: str | None
    member: str | None  # a family member's registry name
    methods: tuple[str, ...]  # commands of plmkit by their words: "compress distil", "finetune --ulmfit"

    @property
    def link(self) -> str:
        if self.arxiv:
            return f"https://arxiv.org/abs/{self.arxiv}"
        if self.acl:
            return f"https://aclanthology.org/{self.acl}/"
        return self.url

    @property
    def targets(self) -> tuple[str, ...]:
        """What the entry names, in words: "member albert", "compress distil"."""
        return ((f"member {self.member}",) if self.member else ()) + self.methods


@dataclasses.dataclass(frozen=True)
class Link:
    target: str  # "member albert" or the method's words, as the entry names it
    exists: bool
    command: str | None  # the command line that runs it (None while it does not exist)
    argv: tuple[str, ...] | None  # the same command with placeholder values the parser accepts
    parent: str | None = None  # a member's code parent in the family graph

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "exists": self.exists, "command": self.command, "parent": self.parent}


@dataclasses.dataclass(frozen=True)
class Status:
    paper: Paper
    links: tuple[Link, ...]

    @property
    def state(self) -> str:
        if not self.links:
            return NOTHING_TO_RUN if self.paper.category == "survey" else MISSING
        present = sum(link.exists for link in self.links)
        return IN_PLMKIT if present == len(self.links) else PARTLY if present else MISSING

    @property
    def missing(self) -> list[str]:
        """What is still to build for this paper: the targets that do not exist (empty when all do, or when the
        entry names none)."""
        return [link.target for link in self.links if not link.exists]

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.paper), "link": self.paper.link, "state": self.state,
                "links": [link.to_json() for link in self.links]}


# ---------------------------------------------------------------------------------------------------- the file


def _default_path() -> Path:
    return Path(str(resources.files("plmkit.reading").joinpath("papers.toml")))


def load(path: str | Path | None = None) -> list[Paper]:
    """Every entry of the reading list (`papers.toml` by default), in file order, validated."""
    return list(_load_cached(str(path or _default_path())))


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> tuple[Paper, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise PlmkitError("no such file", path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PlmkitError(f"not a valid UTF-8 TOML file: {e}", path) from None
    extra = sorted(set(data) - {"paper"})
    if extra:
        raise PlmkitError(f"unknown top-level keys {extra}; the file holds [[paper]] tables only", path)
    papers, seen = [], set()
    for i, entry in enumerate(data.get("paper", [])):
        paper = _entry(entry, i, text, path)
        if paper.key in seen:
            raise PlmkitError(f"key {paper.key!r} appears twice", path, _line_of(text, paper.key))
        seen.add(paper.key)
        papers.append(paper)
    return tuple(papers)


def _line_of(text: str, key: Any) -> int | None:
    """The line of the `key = "..."` that opens an entry, so an error can point at it."""
    m = re.search(rf'^key\s*=\s*"{re.escape(str(key))}"', text, re.M)
    return text.count("\n", 0, m.start()) + 1 if m else None


def _entry(d: dict[str, Any], i: int, text: str, path: str) -> Paper:
    line = _line_of(text, d.get("key"))

    def bad(msg: str) -> PlmkitError:
        return PlmkitError(f"paper {d.get('key', f'#{i + 1}')!r}: {msg}", path, line)

    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise bad(f"missing {missing}")
    unknown = sorted(set(d) - set(_REQUIRED) - set(_LINKS) - set(_OPTIONAL))
    if unknown:
        raise bad(f"unknown keys {unknown}")
    for k in ("key", "title", "authors", "venue", "category", "highlight"):
        if not isinstance(d[k], str) or not d[k].strip():
            raise bad(f"{k} must be a non-empty string")
    if not _KEY.match(d["key"]):
        raise bad("key must be lower-case letters, digits, '-' or '.'")
    if not isinstance(d["year"], int) or not 1940 <= d["year"] <= 2100:
        raise bad(f"year must be a year, not {d['year']!r}")
    if d["category"] not in CATEGORIES:
        raise bad(f"category {d['category']!r} not in {CATEGORIES}")
    links = [k for k in _LINKS if k in d]
    if len(links) != 1:
        raise bad(f"needs exactly one of {_LINKS}, has {links}")
    link = d[links[0]]
    pattern = {"arxiv": _ARXIV, "acl": _ACL, "url": re.compile(r"^https?://\S+$")}[links[0]]
    m = pattern.match(link) if isinstance(link, str) else None
    # arXiv ids are YYMM.NNNN until 2014 and YYMM.NNNNN from 2015: a digit too few or too many is a typo.
    if not m or links[0] == "arxiv" and not (1 <= int(m[2]) <= 12 and len(m[3]) == (5 if int(m[1]) >= 15 else 4)):
        raise bad(f"{links[0]} {link!r} is not well formed")
    member = d.get("member")
    if member is not None and (not isinstance(member, str) or not _KEY.match(member)):
        raise bad(f"member must be a registry name, not {member!r}")
    methods = d.get("methods", [])
    if not isinstance(methods, list) or not all(isinstance(m, str) and m.strip() and not m.startswith("-")
                                                for m in methods):
        raise bad("methods must be a list of commands by their words, e.g. [\"compress distil\"]")
    return Paper(key=d["key"], title=d["title"].strip(), authors=d["authors"].strip(), venue=d["venue"].strip(),
                 year=d["year"], category=d["category"], highlight=" ".join(d["highlight"].split()),
                 arxiv=d.get("arxiv"), acl=d.get("acl"), url=d.get("url"), member=member,
                 methods=tuple(" ".join(m.split()) for m in methods))


# --------------------------------------------------------------------------------- links into the registries


@functools.lru_cache(maxsize=1)
def _parser() -> argparse.ArgumentParser:
    from ..cli import build_parser

    return build_parser()


def _subcommands(p: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)


def _placeholder(a: argparse.Action) -> tuple[str, str]:
    """(shown, parsed): how a required argument is written in the command shown, and a value the parser
    accepts in its place."""
    choices = list(a.choices) if a.choices else []
    if choices:
        return "|".join(map(str, choices)), str(choices[0])
    shown = a.metavar if isinstance(a.metavar, str) else a.dest.upper()
    return shown, "1" if a.type in (int, float) else shown


def command(words: str) -> tuple[str, tuple[str, ...]] | None:
    """The command line for plmkit's command named by `words` ("compress distil", "pretrain --model bert",
    "finetune --ulmfit") with the arguments the parser requires added, and the same as an argv with
    placeholders the parser accepts — or None when the parser has no such command, option or choice."""
    p = _parser()
    path: list[str] = []  # subcommands and positional choices, in order
    options: list[str] = []  # the words' own options, shown before the required arguments
    parsed_options: list[str] = []  # the same with placeholders the parser accepts
    given: set[int] = set()  # id() of the actions the words fill
    tokens = words.split()
    i = 0
    while i < len(tokens):
        w = tokens[i]
        if w.startswith("-"):
            a = p._option_string_actions.get(w)
            if a is None:
                return None
            given.add(id(a))
            options.append(w)
            parsed_options.append(w)
            if a.nargs != 0 and i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
                if a.choices and tokens[i + 1] not in a.choices:
                    return None
                options.append(tokens[i + 1])
                parsed_options.append(tokens[i + 1])
                i += 1
            elif a.nargs != 0:  # the words name the option only ("pretrain --init"): its value is a placeholder
                show, value = _placeholder(a)
                options.append(show)
                parsed_options.append(value)
        else:
            sub = _subcommands(p)
            if sub is not None and id(sub) not in given and w in sub.choices:
                p, given = sub.choices[w], set()
            else:
                # a positional's values: its choices, or what it declares it knows (compress METHOD)
                a = next((a for a in p._actions if not a.option_strings and id(a) not in given
                          and not isinstance(a, argparse._SubParsersAction)
                          and w in (a.choices or getattr(a, "known", ()))), None)
                if a is None:
                    return None
                given.add(id(a))
            path.append(w)
        i += 1
    shown, parsed = path + options, path + parsed_options
    # a required group of alternatives (generate's --prompt | --prompts) is filled by its first one
    first_of_groups = [g._group_actions[0] for g in p._mutually_exclusive_groups
                       if g.required and not any(id(a) in given for a in g._group_actions)]
    for a in p._actions:
        if not (a.required or a in first_of_groups) or id(a) in given:
            continue
        flag = [max(a.option_strings, key=len)] if a.option_strings else []
        show, value = _placeholder(a)
        shown += [*flag, show]
        parsed += [*flag, value]
    return "plmkit " + " ".join(shown), tuple(parsed)


def _member_link(name: str) -> Link:
    from .. import family

    registered = {m.name: m for m in family.members()}
    if name not in registered:
        return Link(f"member {name}", False, None, None)
    # Every member pre-trains through the one command; the tests check it resolves.
    shown, argv = command(f"pretrain --model {name}") or (None, None)
    return Link(f"member {name}", True, shown, argv, registered[name].parent)


def _method_link(words: str) -> Link:
    resolved = command(words)
    return Link(words, resolved is not None, *(resolved or (None, None)))


def status(paper: Paper) -> Status:
    """The paper with its links resolved against the family registry and the command line as they are now."""
    links = ([_member_link(paper.member)] if paper.member else []) + [_method_link(m) for m in paper.methods]
    return Status(paper, tuple(links))


# ----------------------------------------------------------------------------------------------- queries


def select(category: str | None = None, *, implemented: bool = False, missing: bool = False,
           search: str | None = None, path: str | Path | None = None) -> list[Status]:
    """The entries `plmkit papers` lists: of one category; only those plmkit runs (wholly or in part), or
    only those with something still to build (the project's to-do list); only those whose text contains
    `search` (case-insensitive: key, title, authors, venue, year, highlight, what runs it)."""
    if category is not None and category not in CATEGORIES:
        raise PlmkitError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    needle = search.casefold() if search else None
    out = []
    for paper in load(path):
        if category and paper.category != category:
            continue
        if needle:
            hay = " ".join([paper.key, paper.title, paper.authors, paper.venue, str(paper.year), paper.highlight,
                            *paper.targets]).casefold()
            if needle not in hay:
                continue
        s = status(paper)
        if implemented and s.state not in (IN_PLMKIT, PARTLY):
            continue
        if missing and s.state not in (PARTLY, MISSING):
            continue
        out.append(s)
    return out


def find(name: str, path: str | Path | None = None) -> list[Paper]:
    """`plmkit papers NAME`: the entry whose key is NAME, else every entry that names NAME as its member or
    as a method (`distil` finds the entries run by `plmkit compress distil`)."""
    papers = load(path)
    key = name.strip().lower()
    exact = [p for p in papers if p.key == key]
    if exact:
        return exact
    hits = [p for p in papers if p.member == key or any(m == key or m.split()[-1] == key for m in p.methods)]
    if hits:
        return hits
    close = difflib.get_close_matches(key, [p.key for p in papers], n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `plmkit papers --search TEXT` searches them"
    raise PlmkitError(f"no paper, member or method {name!r} in the reading list{hint}")
