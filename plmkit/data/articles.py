"""Articles as metadata fields plus a body, for Grover's field-ordered language model (Zellers et al. 2019,
arXiv:1905.12616, §3): the fields, their begin/end tokens, the text layout a corpus file holds them in, and
the articles plmkit builds from the King James Bible it ships.

Fields in Grover's canonical order: domain, date, authors, headline, body. In a corpus file an article is
one document (a blank line between articles) with one line per field present, in canonical order, each
line wrapped in its field's tokens, `<|begin_headline|>Genesis<|end_headline|>`; the tokens are special
tokens of the model's tokenizer, so each is one id.

The shipped articles (`bible_articles`): a passage of `verses` consecutive verses of one book is the body;
domain = the book's section of the canon (the quickstart's six sections), headline = the book's name.
The Bible has no dates or authors: those fields stay empty, and the format and generation take any subset.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import PlmkitError

FIELDS = ("domain", "date", "authors", "headline", "body")
BOOKS = tuple("Genesis|Exodus|Leviticus|Numbers|Deuteronomy|Joshua|Judges|Ruth|1 Samuel|2 Samuel|1 Kings|2 Kings|"
              "1 Chronicles|2 Chronicles|Ezra|Nehemiah|Esther|Job|Psalms|Proverbs|Ecclesiastes|Song of Solomon|Isaiah|"
              "Jeremiah|Lamentations|Ezekiel|Daniel|Hosea|Joel|Amos|Obadiah|Jonah|Micah|Nahum|Habakkuk|Zephaniah|"
              "Haggai|Zechariah|Malachi|Matthew|Mark|Luke|John|Acts|Romans|1 Corinthians|2 Corinthians|Galatians|"
              "Ephesians|Philippians|Colossians|1 Thessalonians|2 Thessalonians|1 Timothy|2 Timothy|Titus|Philemon|"
              "Hebrews|James|1 Peter|2 Peter|1 John|2 John|3 John|Jude|Revelation".split("|"))  # canonical order


def begin(field: str) -> str:
    return f"<|begin_{field}|>"


def end(field: str) -> str:
    return f"<|end_{field}|>"


FIELD_TOKENS = tuple(t for f in FIELDS for t in (begin(f), end(f)))


def format_article(article: dict) -> str:
    """The article's fields present, one line each in canonical order, wrapped in their tokens."""
    return "\n".join(f"{begin(f)}{article[f].strip()}{end(f)}" for f in FIELDS if article.get(f, "").strip())


def read_articles(path: str | Path) -> list[dict]:
    """JSONL articles: each line an object with a non-empty "body" and any of the other fields."""
    from .tasks import jsonl_records

    p = Path(path)
    if not p.is_file():
        raise PlmkitError("articles file not found", path=p)
    articles = []
    for n, r in jsonl_records(p.read_text(encoding="utf-8"), p):
        unknown = sorted(set(r) - set(FIELDS) - {"split", "id"})
        if unknown:
            raise PlmkitError(f"unknown field(s) {', '.join(unknown)}; articles have {', '.join(FIELDS)}", path=p, line=n)
        if not str(r.get("body", "")).strip():
            raise PlmkitError("an article needs a non-empty \"body\"", path=p, line=n)
        articles.append(r)
    if not articles:
        raise PlmkitError("no articles in the file", path=p)
    return articles


def bible_articles(verses: int = 5) -> list[dict]:
    """The shipped KJV cut into passages of `verses` consecutive verses within a book (a book's last, shorter
    passage included): {"id", "domain": section, "headline": book, "body"}."""
    from ..workflows.quickstart import SECTIONS
    from .parallel import bible

    text, _, books = bible()
    section = [name for name, n in SECTIONS for _ in range(n)]
    articles, start = [], 0
    while start < len(text):
        stop = start + 1
        while stop < len(text) and stop - start < verses and books[stop] == books[start]:
            stop += 1
        b = books[start]
        articles.append({"id": len(articles), "domain": section[b], "headline": BOOKS[b],
                         "body": " ".join(text[start:stop])})
        start = stop
    return articles


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
