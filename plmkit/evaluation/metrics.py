"""Evaluation metrics, computed streaming: each metric accumulates counts batch by batch (`update`) and
reports at the end (`compute`), so evaluation memory does not grow with the data (regression keeps its
(n,) predictions for the rank correlation, never logits).

Every metric object has `update(pred, gold)` and `compute() -> dict[str, float]`; `MAIN[task]` names the
number early stopping and the quickstart compare.
"""

from __future__ import annotations

import collections
import math
import re
import string

import numpy as np

MAIN = {"classify": "accuracy", "pair": "accuracy", "regress": "pearson", "tag": "f1", "qa": "f1",
        "choice": "accuracy", "seq2seq": "rouge_l"}


class Classification:
    """Accuracy, macro/micro F1 and Matthews correlation from a running confusion matrix."""

    def __init__(self, num_classes: int):
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)  # [gold, predicted]

    def update(self, pred, gold) -> None:
        np.add.at(self.confusion, (np.asarray(gold, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)

    def compute(self) -> dict[str, float]:
        return confusion_metrics(self.confusion)


def agreement(a: list, b: list) -> float:
    """Share of positions where two models' predicted labels are the same: a copy's fidelity to its original,
    whatever the gold labels."""
    if len(a) != len(b) or not a:
        raise ValueError(f"agreement of {len(a)} and {len(b)} predictions")
    return sum(x == y for x, y in zip(a, b)) / len(a)


def confusion_metrics(cm: np.ndarray) -> dict[str, float]:
    cm = cm.astype(np.float64)
    n, tp = cm.sum(), np.diag(cm)
    gold, pred = cm.sum(1), cm.sum(0)
    present = (gold + pred) > 0  # macro-F1 over classes that occur in gold or predictions
    f1 = np.divide(2 * tp, gold + pred, out=np.zeros_like(tp), where=(gold + pred) > 0)
    # Multi-class MCC (Gorodkin 2004), = phi coefficient for two classes.
    cov_xy = tp.sum() * n - (gold * pred).sum()
    cov_xx, cov_yy = n * n - (pred * pred).sum(), n * n - (gold * gold).sum()
    mcc = cov_xy / math.sqrt(cov_xx * cov_yy) if cov_xx > 0 and cov_yy > 0 else 0.0
    acc = float(tp.sum() / n) if n else 0.0
    return {"accuracy": acc,
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            # Single-label: every error is one false positive and one false negative, so micro-F1 = accuracy.
            "micro_f1": acc,
            "mcc": float(mcc), "n": int(n)}


class Regression:
    """Pearson and Spearman correlation, and mean squared error."""

    def __init__(self):
        self.pred: list[np.ndarray] = []
        self.gold: list[np.ndarray] = []

    def update(self, pred, gold) -> None:
        self.pred.append(np.asarray(pred, dtype=np.float64).ravel())
        self.gold.append(np.asarray(gold, dtype=np.float64).ravel())

    def compute(self) -> dict[str, float]:
        p, g = np.concatenate(self.pred), np.concatenate(self.gold)
        return {"pearson": pearson(p, g), "spearman": pearson(_ranks(p), _ranks(g)),
                "mse": float(((p - g) ** 2).mean()), "n": int(p.size)}


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank (as Spearman's rho needs)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def bio_spans(tags: list[str]) -> set[tuple[str, int, int]]:
    """Entity spans (type, start, end exclusive) of a BIO/IOB2 sequence, seqeval's default (non-strict)
    rules: an I- that does not continue an entity of its type starts a new one."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, t = tag.partition("-")
        if kind is not None and (prefix != "I" or t != kind):  # B, O or another type closes the entity
            spans.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and kind is None:
            start, kind = i, t
    return spans


def is_bio(labels: list[str]) -> bool:
    """Whether a tag set is BIO entity tags (else tagging is scored per token, e.g. part of speech)."""
    return all(l == "O" or re.match(r"^[BI]-.+", l) for l in labels) and any(l.startswith("B-") for l in labels)


class Tagging:
    """Token accuracy, and for BIO tags entity-level precision/recall/F1 by exact span match (seqeval's
    default mode); for other tag sets f1 is the token accuracy (micro-F1 over tokens)."""

    def __init__(self, bio: bool):
        self.bio = bio
        self.correct = self.tokens = self.tp = self.n_pred = self.n_gold = 0

    def update(self, pred: list[list[str]], gold: list[list[str]]) -> None:
        for p, g in zip(pred, gold):
            self.correct += sum(a == b for a, b in zip(p, g))
            self.tokens += len(g)
            if self.bio:
                sp, sg = bio_spans(p), bio_spans(g)
                self.tp += len(sp & sg)
                self.n_pred += len(sp)
                self.n_gold += len(sg)

    def compute(self) -> dict[str, float]:
        acc = self.correct / self.tokens if self.tokens else 0.0
        if not self.bio:
            return {"accuracy": acc, "f1": acc, "n": self.tokens}
        precision = self.tp / self.n_pred if self.n_pred else 0.0
        recall = self.tp / self.n_gold if self.n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "accuracy": acc, "n": self.tokens}


def _normalize_answer(s: str) -> list[str]:
    """SQuAD v1.1's normalisation: lower case, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return re.sub(r"\b(a|an|the)\b", " ", s).split()


def squad_f1(pred: str, gold: str) -> float:
    p, g = _normalize_answer(pred), _normalize_answer(gold)
    common = sum((collections.Counter(p) & collections.Counter(g)).values())
    if common == 0:
        return float(p == g)  # both empty counts as a match
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


class SquadQA:
    """SQuAD v1.1 exact match and token F1, each the max over the gold answers, in percent."""

    def __init__(self):
        self.em = self.f1 = 0.0
        self.n = 0

    def update(self, pred: list[str], gold: list[list[str]]) -> None:
        for p, answers in zip(pred, gold):
            self.em += max(float(_normalize_answer(p) == _normalize_answer(a)) for a in answers)
            self.f1 += max(squad_f1(p, a) for a in answers)
            self.n += 1

    def compute(self) -> dict[str, float]:
        return {"exact_match": 100 * self.em / max(self.n, 1), "f1": 100 * self.f1 / max(self.n, 1), "n": self.n}


_WORD = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|\w+", re.UNICODE)  # a CJK character, or a run of word characters


def text_tokens(s: str) -> list[str]:
    """Lower-cased words, each CJK character a word of its own (Chinese is not written with spaces)."""
    return _WORD.findall(s.lower())


def rouge_l(pred: str, gold: str) -> float:
    """ROUGE-L F1 (Lin 2004): the longest common subsequence of the two token lists, as precision and
    recall of it, their harmonic mean."""
    p, g = text_tokens(pred), text_tokens(gold)
    if not p or not g:
        return float(p == g)
    prev = [0] * (len(g) + 1)
    for a in p:  # LCS by dynamic programming, one row at a time
        cur = [0]
        for j, b in enumerate(g):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(g)
    return 2 * precision * recall / (precision + recall)


def _normalize_space(s: str) -> str:
    return " ".join(s.split())


class TextGeneration:
    """Generated text against one reference each: ROUGE-L F1 (mean over examples), corpus BLEU (sacrebleu,
    summing its n-gram statistics batch by batch; its "zh" tokenizer when the references hold Chinese,
    "13a" otherwise) and exact match (whitespace normalised), in percent."""

    def __init__(self):
        self.rouge = self.exact = 0.0
        self.n = 0
        self.bleu = None
        self.stats: np.ndarray | None = None

    def update(self, pred: list[str], gold: list[str]) -> None:
        if self.bleu is None:
            try:
                from sacrebleu.metrics import BLEU
            except ImportError:
                from ..errors import PlmkitError

                raise PlmkitError("BLEU needs sacrebleu: pip install 'plmkit[seq2seq]'") from None
            chinese = any(re.search(r"[\u3400-\u9fff]", g) for g in gold)
            self.bleu = BLEU(tokenize="zh" if chinese else "13a")
        stats = np.asarray(self.bleu._extract_corpus_statistics(list(pred), [list(gold)]), dtype=np.int64).sum(0)
        self.stats = stats if self.stats is None else self.stats + stats
        for p, g in zip(pred, gold):
            self.rouge += rouge_l(p, g)
            self.exact += float(_normalize_space(p) == _normalize_space(g))
            self.n += 1

    def compute(self) -> dict[str, float]:
        n = max(self.n, 1)
        bleu = self.bleu._compute_score_from_stats(self.stats.tolist()).score if self.stats is not None else 0.0
        return {"rouge_l": 100 * self.rouge / n, "bleu": bleu, "exact_match": 100 * self.exact / n, "n": self.n}
