"""The labelled tasks that ship with plmkit: bible-paraphrase's pairs, splits and labels, and `plmkit tasks`."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from plmkit.cli import main
from plmkit.data.parallel import english_bibles
from plmkit.data.shipped import paraphrase_task, write_task
from plmkit.errors import PlmkitError


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_two_english_bibles_are_verse_for_verse():
    kjv, web, books = english_bibles()
    assert len(kjv) == len(web) == len(books) == 31102 and books[0] == 0 and books[-1] == 65
    assert kjv[0] == "In the beginning God created the heaven and the earth."
    assert web[0] == "In the beginning, God created the heavens and the earth."
    assert web[-1] == "The grace of the Lord Jesus Christ be with all the saints. Amen."  # Revelation 22:21
    assert sum(not v for v in web) == 7  # verses the WEB leaves out keep their line, empty
    assert not any("<" in v or ">" in v for v in web)  # no markup left


def test_bible_paraphrase_pairs_a_verse_with_itself_or_a_neighbour_and_splits_by_book(tmp_path):
    kjv, web, books = english_bibles()
    where_kjv, where_web = {}, {}  # a text → every verse that reads so (some verses repeat word for word)
    for i, (a, b) in enumerate(zip(kjv, web)):
        where_kjv.setdefault(a, []).append(i)
        where_web.setdefault(b, []).append(i)
    counts = paraphrase_task(tmp_path, sizes=(200, 60, 80))
    assert counts == {"train": 200, "dev": 60, "test": 80}
    split_books = {}
    for split in ("train", "dev", "test"):
        rows = _rows(tmp_path / f"{split}.jsonl")
        assert Counter(r["label"] for r in rows) == {"same": len(rows) // 2, "different": len(rows) // 2}
        split_books[split] = set()
        for r in rows:
            anchors = where_kjv[r["text_a"]]
            split_books[split].update(books[i] for i in anchors)
            if r["label"] == "same":
                assert any(web[i] == r["text_b"] for i in anchors)
            else:  # a neighbour in the same book, never the verse itself
                assert not any(web[i] == r["text_b"] for i in anchors)
                assert any(books[j] == books[i] and 1 <= abs(j - i) <= 3 for i in anchors for j in where_web[r["text_b"]])
            assert len(r["text_a"].split()) >= 6 and len(r["text_b"].split()) >= 6
    assert not split_books["train"] & split_books["dev"] and not split_books["train"] & split_books["test"]
    assert not split_books["dev"] & split_books["test"]
    # Deterministic: the same files again.
    again = tmp_path / "again"
    paraphrase_task(again, sizes=(200, 60, 80))
    assert (again / "test.jsonl").read_text() == (tmp_path / "test.jsonl").read_text()
    with pytest.raises(PlmkitError, match="usable verses"):
        paraphrase_task(tmp_path / "big", sizes=(10, 10, 10 ** 6))


def test_plmkit_tasks_lists_and_writes_one(tmp_path, capsys):
    assert main(["tasks"]) == 0
    assert "bible-paraphrase" in capsys.readouterr().out
    assert main(["tasks", "bible-paraphrase", "--out", str(tmp_path / "bp")]) == 0
    assert "4000 train, 500 dev, 1000 test" in capsys.readouterr().out
    assert main(["tasks", "no-such-task", "--out", str(tmp_path / "x")]) == 2
    assert "bible-paraphrase" in capsys.readouterr().err

    assert write_task("bible-paraphrase", tmp_path / "bp") == tmp_path / "bp"  # already there: kept
