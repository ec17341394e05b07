"""The family registry and its graph: one connected picture, no overlapping text, text formats, paths of diffs."""

import json

import pytest

from plmkit import family
from plmkit.cli import main
from plmkit.family import graph


def _neighbours() -> dict[str, set[str]]:
    out = {m.name: set() for m in family.members()}
    for m in family.members():
        for other in ([m.parent] if m.parent else []) + list(m.influences):
            out[m.name].add(other)
            out[other].add(m.name)
    return out


def test_the_graph_is_one_connected_picture():
    nb, seen, todo = _neighbours(), {"ngram"}, ["ngram"]
    while todo:
        for n in nb[todo.pop()] - seen:
            seen.add(n)
            todo.append(n)
    assert seen == {m.name for m in family.members()}
    for m in family.members():
        assert m.kind in family.KINDS
        assert all(family.get(i).year <= m.year for i in m.influences), m.name  # a paper builds on earlier work


@pytest.mark.parametrize("ext,magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_drawing_has_no_overlapping_text(tmp_path, ext, magic):
    assert graph.draw(tmp_path / f"family.{ext}") == []
    assert (tmp_path / f"family.{ext}").read_bytes()[:len(magic)] == magic


def _fake(name, year, parent=None, influences=(), kind="encoder", caption="a long change " * 6):
    return family.Member(name, parent, "Someone 2099", year, {"body": [caption]}, object, object, "mlm", "bpe", kind,
                         tuple(influences))


def test_layout_stays_free_of_overlaps_at_any_size(tmp_path):
    """Sixty members, forty of them in one year and chained within it, long captions: still no overlap, and
    every arrow points right (a member's column is after its parent's and influences')."""
    ms = [_fake("root", 2000, kind="count LM")]
    ms += [_fake(f"a{i}", 2001, parent="root", kind="neural LM") for i in range(20)]
    ms += [_fake(f"b{i}", 2002, parent=f"a{i % 20}", influences=[f"b{i - 1}"] if i % 3 else []) for i in range(40)]
    assert graph.draw(tmp_path / "big.png", ms=ms) == []
    col = graph.columns(ms)
    for m in ms:
        for src in ([m.parent] if m.parent else []) + list(m.influences):
            assert col[src] < col[m.name]


def test_overlap_detection_sees_an_overlap():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    a, b, c = fig.text(0.5, 0.5, "first label"), fig.text(0.52, 0.5, "second label"), fig.text(0.1, 0.1, "apart")
    assert graph.overlaps(fig, [a, b, c]) == [("first label", "second label")]


def test_text_formats_carry_every_member_and_edge(capsys):
    ms = family.members()
    assert main(["family", "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph plmkit {") and dot.rstrip().endswith("}")
    assert main(["family", "--format", "mermaid"]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart LR")
    for m in ms:
        assert f'"{m.name}" [label=' in dot and f'["{m.name} ({m.year})"]' in mermaid
        if m.parent:
            assert f'"{m.parent}" -> "{m.name}";' in dot
        for i in m.influences:
            assert f'"{i}" -> "{m.name}" [style=dashed];' in dot
    assert '"elmo" -> "bert" [style=dashed];' in dot and "m_elmo -.-> m_bert" in mermaid


def test_highlight_keeps_a_lineage(tmp_path, capsys):
    rel = family.relatives("bert")
    assert {"gpt", "elmo", "lstm", "ngram", "roberta", "nezha"} <= rel and "gpt2" not in rel
    assert main(["family", "--highlight", "bert", "--out", str(tmp_path / "h.svg")]) == 0
    assert (tmp_path / "h.svg").stat().st_size > 0
    capsys.readouterr()
    assert main(["family", "--highlight", "bertt"]) == 2


def test_diff_between_any_two_members(capsys):
    assert family.path("roberta", "electra") == [("roberta", "bert", "parent"), ("bert", "electra", "child")]
    assert family.path("bert", "bert") == []
    text = family.describe_path("roberta", "electra")
    assert "undo roberta's diff" in text and "− objective  − next-sentence prediction" in text
    assert "apply electra's diff" in text and "replaced-token detection" in text
    # from the n-gram to BERT, code parents up to the LSTM, then ELMo's influence on BERT
    steps = family.path("ngram", "bert")
    assert steps[0] == ("ngram", "ffnn", "child") and steps[-1] == ("elmo", "bert", "influenced")
    assert main(["diff", "roberta", "electra", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["step"] for s in out] == ["parent", "child"] and "objective" in out[1]["apply"]
