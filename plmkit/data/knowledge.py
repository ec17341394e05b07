"""A knowledge base for knowledge-fused pre-training (ERNIE-THU): WordNet read from its own database files,
the entities a corpus mentions, their relations as triples, and entity linking by string match.

WordNet. The Princeton WordNet 3.0 database in its distributed format (WNDB: `index.{noun,verb,adj,adv}` and
`data.{…}`), as Debian's `wordnet-base` installs it in /usr/share/wordnet (`apt-get install wordnet-base`;
WordNet 3.0 licence: use, copy, modify and distribute without fee, with Princeton's notice). A synset is an
entity; the semantic pointers between synsets (hypernym, part holonym, antonym, …) are the relations.

Linking (the paper links with TAGME over Wikipedia anchors; here by string match, as the KB has no
anchors): a word or multi-word lemma of the corpus names the synset of its most frequent sense — the
first synset listed for it in the index of the part of speech whose senses SemCor tagged most often (a
tie: noun, verb, adjective, adverb). Function words are never linked. In token space a mention is the
tokenizer's ids of the lemma and matches only whole words: it starts at a word's first token and the
token after it starts a new word (longest match first).

A KB directory (written by `save`, read by `load`):
    entities.tsv   id, synset (offset-pos), its lemmas (id 0 is "no entity")
    mentions.tsv   a lemma string of the corpus → the entity it is linked to
    triples.tsv    head id, relation, tail id
    transe.safetensors, kb.json   the entity vectors (plmkit.objectives.transe) and provenance

Shape legend: B = batch, T = sequence length, V = vocabulary.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..durable import atomic_write
from ..errors import PlmkitError

POS = ("noun", "verb", "adj", "adv")
# WNDB pointer symbols → relation names (WordNet's wninput(5WN)); the lexical and domain pointers are left out.
RELATIONS = {"@": "hypernym", "@i": "instance_hypernym", "~": "hyponym", "~i": "instance_hyponym",
             "#m": "member_holonym", "#s": "substance_holonym", "#p": "part_holonym",
             "%m": "member_meronym", "%s": "substance_meronym", "%p": "part_meronym",
             "!": "antonym", "&": "similar_to", "*": "entailment", ">": "cause", "=": "attribute"}
_DOWNWARD = {"hyponym", "instance_hyponym", "member_meronym", "substance_meronym", "part_meronym"}
# Words that WordNet lists (as "a" ampere, "in" inch, "i" iodine, …) but that in running text are function words.
STOPWORDS = frozenset("""a an the and or but if then than that this these those there here of in on at by for with
from to into onto over under up down out off as is are was were be been being am do does did done have has had
having i me my we us our you your he him his she her it its they them their who whom whose which what when where
why how not no nor so too very can could will would shall should may might must all any both each few more most
other some such only own same just also now one two three first s t d ll m o re ve y again further once about
against between through during before after above below while until because let go get got say said
unto thee thou thy ye hath saith shalt""".split())


@dataclass
class WordNet:
    """The synsets ("offset-p" keys) with their lemmas, pointers, and the sense-ranked index of each lemma."""

    lemmas: dict[str, list[str]] = field(default_factory=dict)  # synset → its lemmas, spaces for underscores
    pointers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # synset → [(relation, synset)]
    senses: dict[str, list[str]] = field(default_factory=dict)  # lemma → synsets of its chosen POS, most frequent first

    @classmethod
    def read(cls, directory: str | Path) -> "WordNet":
        d = Path(directory)
        if not (d / "index.noun").is_file():
            raise PlmkitError("not a WordNet database (no index.noun); install Debian's wordnet-base or point "
                              "to its /usr/share/wordnet", path=d)
        wn, tagged = cls(), {}
        for pos in POS:
            for n, line in _records(d / f"index.{pos}"):
                f = line.split()
                try:
                    lemma, p_cnt = f[0].replace("_", " "), int(f[3])
                    count, tag_count = int(f[4 + p_cnt]), int(f[5 + p_cnt])
                    synsets = [f"{o}-{f[1]}" for o in f[6 + p_cnt: 6 + p_cnt + count]]
                except (IndexError, ValueError):
                    raise PlmkitError("not a WNDB index line", path=d / f"index.{pos}", line=n) from None
                if tag_count > tagged.get(lemma, -1):  # earlier POS wins a tie: noun, verb, adj, adv
                    tagged[lemma], wn.senses[lemma] = tag_count, synsets
            for n, line in _records(d / f"data.{pos}"):
                try:
                    key, lemmas, pointers = _synset(line.split("|", 1)[0].split())
                except (IndexError, ValueError):
                    raise PlmkitError("not a WNDB data line", path=d / f"data.{pos}", line=n) from None
                wn.lemmas[key], wn.pointers[key] = lemmas, pointers
        return wn


def _records(path: Path):
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise PlmkitError(f"cannot read WordNet file: {e.strerror}", path=path) from None
    for n, line in enumerate(text.splitlines(), 1):
        if line and not line.startswith("  "):  # two leading spaces: the licence header
            yield n, line


def _synset(f: list[str]) -> tuple[str, list[str], list[tuple[str, str]]]:
    """One data line's fields: offset lex_filenum ss_type w_cnt (word lex_id)… p_cnt (sym offset pos src/tgt)…"""
    pos = "a" if f[2] == "s" else f[2]  # satellite adjectives share the adjective files
    w_cnt = int(f[3], 16)
    lemmas = [re.sub(r"\(\w+\)$", "", f[4 + 2 * i]).replace("_", " ").lower() for i in range(w_cnt)]
    at = 4 + 2 * w_cnt
    pointers = []
    for i in range(int(f[at])):
        sym, offset, tpos = f[at + 1 + 4 * i: at + 4 + 4 * i]
        if sym in RELATIONS:
            pointers.append((RELATIONS[sym], f"{offset}-{'a' if tpos == 's' else tpos}"))
    return f"{f[0]}-{pos}", list(dict.fromkeys(lemmas)), pointers


@dataclass
class KnowledgeBase:
    entities: list[str]  # synset keys; entities[0] = "" is the "no entity" row
    names: list[list[str]]  # each entity's lemmas
    mentions: dict[str, int]  # lemma string → entity id
    triples: list[tuple[int, str, int]]  # (head id, relation, tail id)
    info: dict = field(default_factory=dict)

    @property
    def relations(self) -> list[str]:
        return sorted({r for _, r, _ in self.triples})

    @classmethod
    def build(cls, wordnet: WordNet, corpus: list[str], max_mentions: int = 20000) -> "KnowledgeBase":
        """The entities that `corpus` (text files) mentions — its `max_mentions` most frequent linkable words
        and two-/three-word lemmas — plus the synsets one relation up or across from them (hypernyms,
        holonyms, antonyms, …; not the hyponyms and meronyms, which would bring in most of WordNet), and
        every triple among them."""
        counts: Counter = Counter()
        for path in corpus:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise PlmkitError(f"cannot read corpus: {e}", path=path) from None
            for line in text.lower().splitlines():
                words = re.findall(r"[a-z][a-z'-]*", line)
                counts.update(words)
                counts.update(" ".join(g) for n in (2, 3) for g in zip(*(words[i:] for i in range(n))))
        linkable = [(c, m) for m, c in counts.items() if m in wordnet.senses and len(m) > 2 and c >= 2
                    and m.split()[0] not in STOPWORDS and m.split()[-1] not in STOPWORDS]
        mentions = {m: wordnet.senses[m][0] for _, m in sorted(linkable, key=lambda x: (-x[0], x[1]))[:max_mentions]}
        linked = sorted(set(mentions.values()))
        keys = set(linked) | {t for s in linked for r, t in wordnet.pointers.get(s, ())
                              if t in wordnet.lemmas and r not in _DOWNWARD}
        entities = [""] + sorted(keys)
        index = {k: i for i, k in enumerate(entities)}
        triples = sorted({(index[s], r, index[t]) for s in keys for r, t in wordnet.pointers.get(s, ()) if t in index})
        return cls(entities, [[]] + [wordnet.lemmas[k] for k in entities[1:]],
                   {m: index[s] for m, s in sorted(mentions.items())}, triples,
                   {"entities": len(entities) - 1, "mentions": len(mentions), "triples": len(triples),
                    "corpus": [str(Path(p).resolve()) for p in corpus]})

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        # Each file whole or absent: a save killed half-way leaves no truncated table behind.
        atomic_write(d / "entities.tsv", "".join(f"{i}\t{k}\t{'|'.join(n)}\n" for i, (k, n)
                                                 in enumerate(zip(self.entities, self.names)) if i))
        atomic_write(d / "mentions.tsv", "".join(f"{m}\t{e}\n" for m, e in self.mentions.items()))
        atomic_write(d / "triples.tsv", "".join(f"{h}\t{r}\t{t}\n" for h, r, t in self.triples))
        atomic_write(d / "kb.json", json.dumps(self.info, indent=2) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "KnowledgeBase":
        d = Path(directory)
        if not (d / "entities.tsv").is_file():
            raise PlmkitError("not a knowledge-base directory (no entities.tsv; write one with "
                              "`plmkit knowledge prepare`)", path=d)
        entities, names = [""], [[]]
        for n, cols in _tsv(d / "entities.tsv", 3):
            if int(cols[0]) != len(entities):
                raise PlmkitError(f"entity ids must run 1, 2, … in order; expected {len(entities)}",
                                  path=d / "entities.tsv", line=n)
            entities.append(cols[1])
            names.append(cols[2].split("|") if cols[2] else [])
        mentions = {cols[0]: _entity(cols[1], len(entities), d / "mentions.tsv", n)
                    for n, cols in _tsv(d / "mentions.tsv", 2)}
        triples = [(_entity(c[0], len(entities), d / "triples.tsv", n), c[1],
                    _entity(c[2], len(entities), d / "triples.tsv", n)) for n, c in _tsv(d / "triples.tsv", 3)]
        info = json.loads((d / "kb.json").read_text(encoding="utf-8")) if (d / "kb.json").is_file() else {}
        return cls(entities, names, mentions, triples, info)


def _tsv(path: Path, columns: int):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PlmkitError(f"cannot read: {e}", path=path) from None
    for n, line in enumerate(lines, 1):
        cols = line.split("\t")
        if len(cols) != columns:
            raise PlmkitError(f"expected {columns} tab-separated columns, got {len(cols)}", path=path, line=n)
        yield n, cols


def _entity(text: str, size: int, path: Path, line: int) -> int:
    if not text.isdigit() or not 0 < int(text) < size:
        raise PlmkitError(f"entity id {text!r} is not one of 1…{size - 1}", path=path, line=line)
    return int(text)


class EntityLinker:
    """Token ids → the entity each mention names, at the mention's first token (ERNIE aligns an entity to the
    first token of its mention); 0 elsewhere.

    Built from a tokenizer and a KB (`from_kb`), or from the tensors a model keeps (`from_tensors`), so a saved
    ERNIE-THU links its own input whatever calls it."""

    def __init__(self, mentions: dict[tuple[int, ...], int], continues: torch.Tensor):
        self.table = mentions  # token ids of a mention → entity id
        self.continues = continues  # (V,) bool: the token continues a word (cannot start a mention)
        self.lengths: dict[int, list[int]] = {}  # first token → the mention lengths starting with it, longest first
        for ids in mentions:
            self.lengths.setdefault(ids[0], []).append(len(ids))
        for v in self.lengths.values():
            v.sort(reverse=True)

    @classmethod
    def from_kb(cls, kb: KnowledgeBase, tokenizer) -> "EntityLinker":
        from ..objectives.wwm import WordBoundaries

        if tokenizer.kind == "bpe":
            raise PlmkitError("entity linking needs a tokenizer that marks word starts (wordpiece, bytebpe, "
                              "unigram or char), not GPT-1's bpe")
        table = {}
        for m, e in kb.mentions.items():
            for text in (m, " " + m):  # byte-level BPE folds the space before a word into its first token
                ids = tuple(tokenizer.encode(text))
                if ids and tokenizer.unk_id not in ids:
                    table.setdefault(ids, e)
        return cls(table, ~WordBoundaries(tokenizer).begins)

    def to_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(M, L) mention ids padded with -1, (M,) their entities, (V,) the continuation table."""
        L = max((len(k) for k in self.table), default=1)
        ids = torch.full((len(self.table), L), -1, dtype=torch.long)
        for r, k in enumerate(self.table):
            ids[r, :len(k)] = torch.tensor(k)
        return ids, torch.tensor(list(self.table.values()), dtype=torch.long), self.continues.clone()

    @classmethod
    def from_tensors(cls, ids: torch.Tensor, entities: torch.Tensor, continues: torch.Tensor) -> "EntityLinker":
        rows = ids.tolist()
        table = {tuple(t for t in r if t >= 0): int(e) for r, e in zip(rows, entities.tolist())}
        table.pop((), None)  # an unfilled row of a model built without a KB
        return cls(table, continues.bool().cpu())

    def link(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids → (B, T) entity ids (0 = none), longest whole-word match first."""
        out = torch.zeros(input_ids.shape, dtype=torch.long)
        cont = self.continues[input_ids.cpu().clamp(0, len(self.continues) - 1)].tolist()
        for b, row in enumerate(input_ids.tolist()):
            T, p = len(row), 0
            while p < T:
                q = p + 1
                if not cont[b][p]:
                    for n in self.lengths.get(row[p], ()):
                        e = self.table.get(tuple(row[p:p + n])) if p + n <= T else None
                        if e is not None and (p + n == T or not cont[b][p + n]):
                            out[b, p], q = e, p + n
                            break
                p = q
        return out.to(input_ids.device)
