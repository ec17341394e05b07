"""The reading list: every member has its paper, every command an entry names parses with plmkit's own parser,
links follow the registries (including commands that do not exist yet), and the file is well formed."""

import argparse
import json
import re

import pytest

from plmkit import family
from plmkit.cli import build_parser, main
from plmkit.errors import PlmkitError
from plmkit.reading import papers as reading


def test_every_registered_member_has_its_paper():
    by_member: dict[str, list] = {}
    for p in reading.load():
        if p.member:
            by_member.setdefault(p.member, []).append(p)
    for m in family.members():
        assert m.name in by_member, f"member {m.name} has no entry in plmkit/reading/papers.toml"
        # Where the registry cites an arXiv id, the entry links that very paper.
        cited = re.findall(r"arXiv:(\d{4}\.\d{4,5})", m.paper)
        if cited:
            assert any(p.arxiv in cited for p in by_member[m.name]), (m.name, cited)


def test_every_command_an_entry_names_parses():
    parser = build_parser()
    checked = 0
    for p in reading.load():
        for link in reading.status(p).links:
            if not link.exists:
                assert link.command is None
                continue
            args = parser.parse_args(list(link.argv))  # argparse exits (a test failure) on a bad command
            assert callable(args.func), link.command
            if link.target.startswith("member "):
                name = link.target.removeprefix("member ")
                assert args.model == name and link.parent == family.get(name).parent
            checked += 1
    assert checked >= 25


def test_names_not_in_plmkit_yet_are_not_misspelt_members():
    squash = {re.sub(r"[^a-z0-9]", "", m.name): m.name for m in family.members()}
    for p in reading.load():
        if p.member and p.member not in squash.values():
            assert re.sub(r"[^a-z0-9]", "", p.member) not in squash, (p.key, p.member)


def test_the_list_covers_the_reading_lists():
    papers = reading.load()
    count = {c: sum(p.category == c for p in papers) for c in reading.CATEGORIES}
    assert count["models"] >= 30 and count["compression"] >= 20 and count["analysis"] >= 30
    assert any(p.key == "qiu-survey" and p.arxiv == "2003.08271" for p in papers)
    assert len({p.key for p in papers}) == len(papers)
    assert all(p.link.startswith("https://") for p in papers)
    for p in papers:  # an id's year and the paper's year agree: a transposed digit shows up here
        if p.arxiv:
            assert 2000 + int(p.arxiv[:2]) <= p.year <= 2002 + int(p.arxiv[:2]), p.key
        if p.acl:
            assert p.year == (int(p.acl[:4]) if p.acl[0].isdigit() else 2000 + int(p.acl[1:3])), p.key


def _fake_parser() -> argparse.ArgumentParser:
    """A command line with both shapes a method group may take: methods as subcommands, or as the choices
    of a positional."""
    parser = argparse.ArgumentParser(prog="plmkit")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compress")
    c.add_argument("method", choices=["distil", "pkd"])
    c.add_argument("--model", required=True, metavar="DIR")
    c.add_argument("--layers", type=int, required=True)
    a = sub.add_parser("analyze")
    asub = a.add_subparsers(dest="method", required=True)
    asub.add_parser("probe").add_argument("--data", required=True, metavar="F")
    f = sub.add_parser("finetune")
    f.add_argument("--features", choices=["finetune", "scalar-mix"])
    f.add_argument("--init", metavar="DIR")
    for p in (c, a, f):
        p.set_defaults(func=print)
    return parser


def test_links_follow_the_command_line_whatever_shape_a_group_takes(monkeypatch):
    monkeypatch.setattr(reading, "_parser", _fake_parser)
    shown, argv = reading.command("compress distil")
    assert shown == "plmkit compress distil --model DIR --layers LAYERS"
    assert argv == ("compress", "distil", "--model", "DIR", "--layers", "1")
    assert _fake_parser().parse_args(list(argv)).method == "distil"
    assert reading.command("analyze probe")[0] == "plmkit analyze probe --data F"
    assert reading.command("finetune --features scalar-mix")[0] == "plmkit finetune --features scalar-mix"
    assert reading.command("finetune --init")[1] == ("finetune", "--init", "DIR")
    for absent in ("compress tinybert", "analyze heads", "prune", "finetune --ulmfit", "finetune --features x"):
        assert reading.command(absent) is None, absent
    paper = reading.Paper("kd", "t", "a", "v", 2019, "compression", "h", "1503.02531", None, None, None,
                          ("compress distil", "compress tinybert"))
    s = reading.status(paper)
    assert s.state == reading.PARTLY and s.missing == ["compress tinybert"]
    survey = reading.Paper("s", "t", "a", "v", 2020, "survey", "h", "2003.08271", None, None, None, ())
    assert reading.status(survey).state == reading.NOTHING_TO_RUN


def test_papers_command(capsys):
    assert main(["papers", "albert"]) == 0
    out = capsys.readouterr().out
    assert "plmkit pretrain --model albert --corpus F --out DIR" in out and "parent bert" in out
    assert main(["papers", "--missing", "--json"]) == 0
    missing = json.loads(capsys.readouterr().out)
    assert missing and all(e["state"] in (reading.PARTLY, reading.MISSING) for e in missing)
    assert main(["papers", "--implemented", "--json"]) == 0
    implemented = json.loads(capsys.readouterr().out)
    assert implemented and all(any(link["exists"] for link in e["links"]) for e in implemented)
    everything = {p.key for p in reading.load() if p.category != "survey"}
    assert {e["key"] for e in missing} | {e["key"] for e in implemented} == everything
    assert main(["papers", "--category", "compression", "--search", "DISTIL", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert {"distilbert", "tinybert"} <= {e["key"] for e in found}
    assert all(e["category"] == "compression" for e in found)
    assert main(["papers", "--category", "analysis"]) == 0
    assert "sixteen-heads" in capsys.readouterr().out
    for bad, says in ((["papers", "no-such-paper"], "no paper"), (["papers", "albert", "--missing"], "NAME")):
        assert main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err


@pytest.mark.parametrize("entry, says", [
    ('key = "x"\ntitle = "T"\nauthors = "A"\nvenue = "V"\nyear = 2019\ncategory = "models"\nhighlight = "H"\n'
     'arxiv = "1810.04805"\nurl = "https://example.org"', "exactly one"),
    ('key = "x"\ntitle = "T"\nauthors = "A"\nvenue = "V"\nyear = 2019\ncategory = "models"\nhighlight = "H"\n'
     'arxiv = "1810.0480"', "not well formed"),
    ('key = "x"\ntitle = "T"\nauthors = "A"\nvenue = "V"\nyear = 2019\ncategory = "models"\nhighlight = "H"\n'
     'acl = "P19-1452"\nparent = "bert"', "unknown keys"),
    ('key = "x"\ntitle = "T"\nauthors = "A"\nvenue = "V"\nyear = 2019\ncategory = "model"\nhighlight = "H"\n'
     'acl = "P19-1452"', "category"),
])
def test_a_bad_entry_names_the_file_and_line(tmp_path, entry, says):
    path = tmp_path / "papers.toml"
    path.write_text("# a comment\n\n[[paper]]\n" + entry + "\n")
    with pytest.raises(PlmkitError) as e:
        reading.load(path)
    assert str(e.value).startswith(f"{path}:4: ") and says in str(e.value)


def test_a_key_used_twice_is_an_error(tmp_path):
    entry = ('[[paper]]\nkey = "x"\ntitle = "T"\nauthors = "A"\nvenue = "V"\nyear = 2019\ncategory = "models"\n'
             'highlight = "H"\nacl = "P19-1452"\n')
    path = tmp_path / "papers.toml"
    path.write_text(entry + entry)
    with pytest.raises(PlmkitError, match="twice"):
        reading.load(path)
