"""Labelled tasks that ship with plmkit: written from its resources on demand, nothing to download.

`plmkit tasks` lists them and `plmkit tasks NAME --out DIR` writes one as train/dev/test.jsonl, the files
`plmkit finetune` and `plmkit bakeoff --tasks` read (the bake-off also takes the bare name).

bible-paraphrase — a sentence-pair task: is text_b the verse text_a says, in another translation? text_a is a
King James verse, text_b a World English Bible verse (plmkit/resources/README.md): the same verse ("same") or
one of its neighbours up to three verses away in the same book ("different"), half and half. The negatives share
the passage's names and subject, so the topic does not tell the two apart; the translations are four centuries
apart in wording ("thou shalt" / "you shall"), so neither does copying. The words the two verses share do: a
threshold on their overlap (Jaccard > 0.27, set on dev) scores 0.975 on test, so the task asks whether a model
learns to compare two segments, in the manner of MRPC, not for deep meaning. Splits are by book (the books' canonical positions 4, 14, 24, … are dev, 9, 19, 29, … test), so no
passage is in two splits. Verses under six words, and verses that recur word for word elsewhere, are left out.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from pathlib import Path
from typing import Callable

from ..durable import atomic_write
from ..errors import PlmkitError
from .parallel import english_bibles

SPLITS = ("train", "dev", "test")


def _split_of_book(book: int) -> str:
    return "dev" if book % 10 == 4 else "test" if book % 10 == 9 else "train"


def paraphrase_task(out: Path, sizes: tuple[int, int, int] = (4000, 500, 1000), seed: int = 0,
                    max_offset: int = 3, min_words: int = 6) -> dict[str, int]:
    """Write bible-paraphrase's splits (`sizes` examples each, half "same") into `out`; returns the counts."""
    kjv, web, books = english_bibles()
    rng = random.Random(seed)
    seen = Counter(kjv) + Counter(web)  # a verse that recurs word for word (Kings and Chronicles) could cross splits
    usable = [i for i in range(len(kjv)) if len(kjv[i].split()) >= min_words and len(web[i].split()) >= min_words
              and seen[kjv[i]] == seen[web[i]] == 1]
    ok = set(usable)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, size in zip(SPLITS, sizes):
        anchors = [i for i in usable if _split_of_book(books[i]) == split]
        if size > len(anchors):
            raise PlmkitError(f"bible-paraphrase has {len(anchors)} usable verses for {split}, {size} asked")
        rows = []
        for k, i in enumerate(rng.sample(anchors, size)):
            if k % 2 == 0:
                j = i
            else:
                near = [j for d in range(1, max_offset + 1) for j in (i - d, i + d) if j in ok and books[j] == books[i]]
                j = rng.choice(near) if near else i
            rows.append({"text_a": kjv[i], "text_b": web[j], "label": "same" if j == i else "different"})
        rng.shuffle(rows)
        atomic_write(out / f"{split}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        counts[split] = len(rows)
    return counts


@dataclasses.dataclass(frozen=True)
class Shipped:
    kind: str  # a `plmkit finetune` task
    about: str
    write: Callable[[Path], dict[str, int]]


TASKS = {
    "bible-paraphrase": Shipped("pair", "is text_b the King James verse text_a in the World English Bible, or a "
                                        "neighbour of it? (4,000 / 500 / 1,000 pairs, split by book)",
                                paraphrase_task),
}


def write_task(name: str, out: str | Path) -> Path:
    """Write the shipped task `name` into `out` (train/dev/test.jsonl) unless it is there; returns `out`."""
    if name not in TASKS:
        raise PlmkitError(f"no task {name!r} ships with plmkit; the shipped tasks: {', '.join(TASKS)}")
    out = Path(out)
    if not all((out / f"{s}.jsonl").is_file() for s in SPLITS):
        TASKS[name].write(out)
    return out
