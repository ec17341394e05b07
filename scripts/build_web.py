"""Build plmkit/resources/web.txt.gz: the World English Bible (2020 stable text), line for line parallel to
plmkit/resources/kjv.txt.gz (verse i of book b on the same line in both files).

Source: Debian's `sword-text-web` 426.0-1 (the SWORD module `engWEB2015eb`, "World English Bible with
Deuterocanon", OSIS markup, NRSVA versification), read with the PyPI package `pysword` 0.2.8. Only the 66
books of the KJV are kept. The NRSVA and KJV versifications have the same number of verses in every chapter of
those books but two (pysword's canon tables):

* 3 John 1:14–15: the KJV's 1:14 holds both verses; they are joined.
* Revelation 12:17–18: the NRSVA's 12:18 ("Then he stood on the sand of the sea.") is the first clause of the
  KJV's 13:1; it is joined to 12:17 (as in cuv.txt.gz).

Seven verses are empty in the WEB (Luke 17:36, Acts 8:37, 15:34, 24:7 and
Romans 16:25–27, whose doxology the WEB prints after Romans 14:23, where it stays): their lines hold "-".

Markup removed: footnotes (<note>) and psalm titles (<title>, which the KJV text has no verse for), every other
tag; whitespace collapsed. The script checks that every book has as many verses as in kjv.txt.gz, and writes the
file with `gzip -9 -n` semantics (no name, no time stamp), so a rebuild is byte-identical.

Run (build-time tools only; plmkit itself needs none of them):

    apt-get download sword-text-web && dpkg -x sword-text-web_426.0-1_all.deb /tmp/web
    python3 -m venv /tmp/webenv && /tmp/webenv/bin/pip install pysword==0.2.8
    /tmp/webenv/bin/python scripts/build_web.py /tmp/web/usr/share/sword
"""

from __future__ import annotations

import gzip
import hashlib
import html
import re
import sys
from pathlib import Path

from pysword.canons import canons
from pysword.modules import SwordModules

RESOURCES = Path(__file__).resolve().parent.parent / "plmkit" / "resources"
MODULE = "engWEB2015eb"


def kjv_books() -> list[list[str]]:
    with gzip.open(RESOURCES / "kjv.txt.gz", "rt", encoding="utf-8") as f:
        return [b.splitlines() for b in f.read().split("\n\n") if b.strip()]


def clean(raw: str) -> str:
    raw = raw.split("<chapter eID=")[0]  # a chapter's end: what follows is the book's (the glossary, at the end)
    raw = re.sub(r"<(note|title)\b.*?</\1>", " ", raw, flags=re.S)
    raw = re.sub(r"<(l|lb|lg|p|div)\b[^>]*>", " ", raw)  # line and paragraph marks separate words
    text = html.unescape(re.sub(r"<[^>]+>", "", raw))
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r" ([,.;:!?’”)])", r"\1", text)  # a footnote removed before punctuation


def web_books(sword_dir: str) -> list[list[str]]:
    modules = SwordModules(sword_dir)
    modules.parse_modules()
    bible = modules.get_bible_from_module(MODULE)
    nrsva = {b[0]: b for part in ("ot", "nt") for b in canons["nrsva"][part]}
    books = []
    for name, osis, _, chapters in (b for part in ("ot", "nt") for b in canons["kjv"][part]):
        verses = {}
        for c, n in enumerate(nrsva[name][3], 1):
            for v, raw in enumerate(bible.get_iter(books=[osis], chapters=[c], clean=False), 1):
                verses[(c, v)] = clean(raw)
            assert v == n, (name, c, v, n)
        if name == "III John":
            verses[(1, 14)] += " " + verses.pop((1, 15))
        if name == "Revelation of John":
            verses[(12, 17)] += " " + verses.pop((12, 18))
        keys = [(c, v) for c, n in enumerate(chapters, 1) for v in range(1, n + 1)]
        assert sorted(keys) == sorted(verses), name
        books.append([verses[k] for k in keys])
    return books


def main(sword_dir: str) -> None:
    kjv, web = kjv_books(), web_books(sword_dir)
    assert [len(b) for b in kjv] == [len(b) for b in web], "verse counts per book differ"
    empty = [(i, j) for i, b in enumerate(web) for j, v in enumerate(b) if not v]
    # A verse the WEB leaves out (a few the oldest manuscripts lack) keeps its line, marked, so that the files
    # stay line-parallel; a reader skips the mark.
    for i, j in empty:
        web[i][j] = "-"
    text = "\n\n".join("\n".join(b) for b in web) + "\n"
    out = RESOURCES / "web.txt.gz"
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
        f.write(text.encode("utf-8"))
    print(f"{out}: {sum(map(len, web))} verses, {len(empty)} left out by the WEB (written as '-'), "
          f"{len(text.encode())} bytes, md5 {hashlib.md5(text.encode()).hexdigest()}")


if __name__ == "__main__":
    main(sys.argv[1])
