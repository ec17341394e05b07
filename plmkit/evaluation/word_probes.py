"""Static word-vector probes: analogies by vector offset (3CosAdd; Mikolov et al. 2013, NAACL, "Linguistic
Regularities in Continuous Space Word Representations") and word similarity (Spearman ρ against human
ratings: SimLex-999, WordSim-353). Pairs with a word outside the vocabulary are skipped and counted.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from pathlib import Path

import numpy as np

from ..errors import PlmkitError


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def analogies(vectors: np.ndarray, vocab: dict[str, int], facts: str | os.PathLike) -> dict:
    """a : b :: c : ? for every two (subject, object) pairs of one relation in `facts` (JSONL); the answer is
    the nearest word to b − a + c by cosine, a, b and c excluded. Returns accuracy overall and per relation."""
    by_rel: dict[str, list[tuple[str, str]]] = {}
    for line in Path(facts).read_text(encoding="utf-8").splitlines():
        f = json.loads(line)
        by_rel.setdefault(f["relation"], []).append((f["subject"].lower(), f["object"].lower()))
    E = _unit(vectors.astype(np.float32))  # (V, m)
    out, correct, total, asked = {}, 0, 0, 0
    for rel, pairs in by_rel.items():
        qs = [(vocab.get(a), vocab.get(b), vocab.get(c), vocab.get(d))
              for (a, b), (c, d) in itertools.permutations(pairs, 2)]
        asked += len(qs)
        qs = np.array([q for q in qs if all(q)], dtype=np.int64).reshape(-1, 4)  # id 0 = <unk> or absent
        hits = 0
        for chunk in np.array_split(qs, max(1, len(qs) // 512)):
            if not len(chunk):
                continue
            target = _unit(E[chunk[:, 1]] - E[chunk[:, 0]] + E[chunk[:, 2]])  # (Q, m)
            scores = target @ E.T  # (Q, V)
            scores[:, 0] = -np.inf
            np.put_along_axis(scores, chunk[:, :3], -np.inf, axis=1)
            hits += int((scores.argmax(1) == chunk[:, 3]).sum())
        out[rel] = {"accuracy": hits / len(qs) if len(qs) else None, "questions": len(qs)}
        correct, total = correct + hits, total + len(qs)
    return {"accuracy": correct / total if total else None, "questions": total, "coverage": total / asked,
            "relations": out}


def similarity(vectors: np.ndarray, vocab: dict[str, int], pairs_tsv: str | os.PathLike) -> dict:
    """Spearman ρ between cosine similarity and the human score of each in-vocabulary pair."""
    with open(pairs_tsv, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or not {"word1", "word2", "score"} <= set(rows[0]):
        raise PlmkitError("expected a TSV with columns word1, word2, score", path=pairs_tsv)
    ids = [(vocab.get(r["word1"].lower()), vocab.get(r["word2"].lower()), float(r["score"])) for r in rows]
    ids = [(a, b, s) for a, b, s in ids if a and b]
    if len(ids) < 3:
        return {"spearman": None, "pairs": len(ids), "coverage": len(ids) / len(rows)}
    a, b, human = (np.array(col) for col in zip(*ids))
    E = _unit(vectors.astype(np.float64))
    cos = (E[a] * E[b]).sum(1)
    return {"spearman": float(np.corrcoef(_ranks(cos), _ranks(human))[0, 1]), "pairs": len(ids),
            "coverage": len(ids) / len(rows)}


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties sharing their mean rank, as Spearman's ρ wants."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def probe(vectors: np.ndarray, vocab: dict[str, int], probes_dir: str | os.PathLike) -> dict:
    """Every probe under `probes_dir` (the shared data's `probes/`): analogies and both similarity sets."""
    d = Path(probes_dir)
    return {"analogies": analogies(vectors, vocab, d / "analogies" / "facts.jsonl"),
            "simlex999": similarity(vectors, vocab, d / "word-similarity" / "simlex999.tsv"),
            "wordsim353": similarity(vectors, vocab, d / "word-similarity" / "wordsim353.tsv")}
