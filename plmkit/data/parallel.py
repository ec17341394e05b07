"""Parallel text: line-aligned files that are translations of each other, one file per language.

`plmkit pretrain --corpus text.en text.zh` gives the cross-lingual members (XLM's TLM, CoVe's and LASER's
translation) one token corpus whose sources are the languages, in the order given; `Bitext` reads line i of
every source as one example. Blank lines (document breaks) must fall at the same places in every file.

`bible()` is the parallel corpus that ships with plmkit: the King James Bible and the Chinese Union Version
(plmkit/resources/README.md), verse i of one on line i of the other; `english_bibles()` pairs the King James
Bible with the World English Bible the same way (a paraphrase corpus: one language, two translations).
"""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np

from ..errors import PlmkitError
from .shards import TokenCorpus


class Bitext:
    """Example i = (line i of language 0, line i of language 1, …) of a corpus built from one line-aligned
    file per language. Each line is cut to `max_tokens` tokens (its doc-sep token, if it ends a document,
    is dropped first: a sentence pair is framed by the objective).

    Args:
        corpus: the token corpus of the files, in language order.
        max_tokens: the longest sentence kept, in tokens.
    """

    def __init__(self, corpus: TokenCorpus, max_tokens: int):
        sources = corpus.meta["sources"]
        if len(sources) < 2:
            raise PlmkitError("a parallel corpus needs one file per language (two or more --corpus files), "
                              "each line the translation of the same line in the others", path=corpus.directory)
        counts = [0] * len(sources)
        for s in corpus.meta["shards"]:
            counts[s["source"]] += s["n_lines"]
        if len(set(counts)) != 1:
            detail = ", ".join(f"{src['path']}: {n}" for src, n in zip(sources, counts))
            raise PlmkitError(f"parallel files must have the same number of lines ({detail})",
                              path=sources[counts.index(min(counts))]["path"])
        self.corpus, self.max_tokens, self.n_langs = corpus, max_tokens, len(sources)
        self.n_pairs = counts[0]
        self.doc_sep = corpus.meta["doc_sep_id"]

    def __len__(self) -> int:
        return self.n_pairs

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        """Example i: one (≤ max_tokens,) int64 array per language."""
        if not 0 <= i < self.n_pairs:
            raise IndexError(f"pair {i} outside [0, {self.n_pairs})")
        out = []
        for lang in range(self.n_langs):
            line = np.asarray(self.corpus.line(lang * self.n_pairs + i), dtype=np.int64)
            if len(line) and line[-1] == self.doc_sep:
                line = line[:-1]
            out.append(line[: self.max_tokens])
        return tuple(out)


def _resource_lines(name: str) -> list[str]:
    with resources.files("plmkit").joinpath(f"resources/{name}").open("rb") as f:
        return gzip.open(f, "rt", encoding="utf-8").read().splitlines()


# The 66 books in canonical order, grouped as in the usual division of the Protestant canon.
SECTIONS = [("Law", 5), ("History", 12), ("Poetry/Wisdom", 5), ("Prophets", 17), ("Gospels/Acts", 5),
            ("Epistles/Revelation", 22)]


def section_of_book(book: int) -> int:
    """The index into SECTIONS of book `book` (0–65, canonical order)."""
    end = 0
    for k, (_, n) in enumerate(SECTIONS):
        end += n
        if book < end:
            return k
    raise PlmkitError(f"book {book} is outside the 66 books of the canon")


def _aligned(first: str, second: str) -> tuple[list[str], list[str], list[int]]:
    a_lines, b_lines = _resource_lines(first), _resource_lines(second)
    if len(a_lines) != len(b_lines):
        raise PlmkitError(f"the shipped {first} and {second} are not line-aligned")
    out_a, out_b, books, book = [], [], [], 0
    for a, b in zip(a_lines, b_lines):
        if not a.strip():
            book += 1
            continue
        out_a.append(a)
        out_b.append(b)
        books.append(book)
    return out_a, out_b, books


def bible() -> tuple[list[str], list[str], list[int]]:
    """The shipped English–Chinese Bible: (English verses, Chinese verses, book index 0–65 of each verse)."""
    return _aligned("kjv.txt.gz", "cuv.txt.gz")


def english_bibles() -> tuple[list[str], list[str], list[int]]:
    """The shipped King James and World English Bibles: (KJV verses, WEB verses, book index 0–65 of each verse).
    The seven verses the WEB leaves out (the oldest manuscripts lack them) are empty strings."""
    kjv, web, books = _aligned("kjv.txt.gz", "web.txt.gz")
    return kjv, ["" if v == "-" else v for v in web], books
