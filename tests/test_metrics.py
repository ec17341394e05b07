"""Metrics against values computed by hand, and the CRF against brute force over every tag sequence."""

import itertools
import math

import numpy as np
import pytest
import torch

from plmkit.layers.crf import CRF
from plmkit.evaluation.metrics import Classification, Regression, SquadQA, Tagging, bio_spans, is_bio


def test_classification_in_batches():
    m = Classification(3)
    gold, pred = [0, 0, 1, 1, 2, 2, 2, 0], [0, 1, 1, 1, 2, 0, 2, 0]
    m.update(pred[:3], gold[:3])  # streaming: two batches give the one confusion matrix
    m.update(pred[3:], gold[3:])
    r = m.compute()
    assert r["accuracy"] == pytest.approx(6 / 8) and r["micro_f1"] == pytest.approx(6 / 8)
    # Per class (tp, gold, pred): 0 → (2, 3, 3), 1 → (2, 2, 3), 2 → (2, 3, 2); F1 = 2tp / (gold + pred).
    assert r["macro_f1"] == pytest.approx((4 / 6 + 4 / 5 + 4 / 5) / 3)
    # Gorodkin's MCC: (c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)), c = 6, s = 8.
    t, p = np.array([3, 2, 3]), np.array([3, 3, 2])
    mcc = (6 * 8 - (p * t).sum()) / math.sqrt((64 - (p * p).sum()) * (64 - (t * t).sum()))
    assert r["mcc"] == pytest.approx(mcc)


def test_binary_mcc_is_the_phi_coefficient():
    m = Classification(2)
    m.update([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])  # tp 2, fp 1, tn 1, fn 1
    assert m.compute()["mcc"] == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))


def test_pearson_and_spearman_with_ties():
    m = Regression()
    m.update([1.0, 2.0, 2.0], [1.0, 3.0, 2.0])
    m.update([5.0], [4.0])
    r = m.compute()
    x, y = np.array([1, 2, 2, 5.0]), np.array([1, 3, 2, 4.0])
    assert r["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    # Ranks with ties averaged: x → 1, 2.5, 2.5, 4; y → 1, 3, 2, 4.
    assert r["spearman"] == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4], [1, 3, 2, 4])[0, 1])


def test_bio_spans_follow_seqeval():
    assert bio_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG", "I-ORG"]) == {
        ("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("ORG", 5, 7)}
    assert bio_spans(["I-PER", "I-PER", "O"]) == {("PER", 0, 2)}  # an I- without a B- opens an entity
    assert is_bio(["O", "B-PER", "I-PER"]) and not is_bio(["nn", "vb"])


def test_entity_f1_exact_match():
    m = Tagging(bio=True)
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-PER"]]
    m.update(pred, gold)
    r = m.compute()  # gold spans 3, predicted 4, exact matches 2 (LOC, ORG): the cut PER does not count
    assert (r["precision"], r["recall"]) == (pytest.approx(2 / 4), pytest.approx(2 / 3))
    assert r["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert r["accuracy"] == pytest.approx(4 / 6)


def test_squad_em_and_f1():
    m = SquadQA()
    m.update(["The mat.", "on the red mat"], [["the mat", "a mat"], ["the blue mat"]])
    r = m.compute()
    assert r["exact_match"] == pytest.approx(50.0)
    # "on red mat" vs "blue mat" after normalisation: 1 common word, precision 1/3, recall 1/2.
    assert r["f1"] == pytest.approx(100 * (1 + 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2)) / 2)


def _brute(crf, emissions, length):
    scores = {}
    for tags in itertools.product(range(crf.num_tags), repeat=length):
        s = crf.start[tags[0]] + crf.end[tags[-1]] + sum(emissions[t, tags[t]] for t in range(length))
        s = s + sum(crf.transitions[tags[t - 1], tags[t]] for t in range(1, length))
        scores[tags] = float(s.detach())
    return scores


@torch.no_grad()
def test_crf_matches_brute_force():
    torch.manual_seed(0)
    crf = CRF(3)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    log_z = crf.log_partition(emissions, mask)
    best = crf.decode(emissions, mask)
    tags = torch.tensor([[0, 2, 1, 1], [2, 0, 0, 0]])
    score = crf.score(emissions, tags, mask)
    for b, length in enumerate((4, 2)):
        scores = _brute(crf, emissions[b], length)
        assert float(log_z[b]) == pytest.approx(math.log(sum(math.exp(s) for s in scores.values())), rel=1e-5)
        assert tuple(best[b, :length].tolist()) == max(scores, key=scores.get)
        assert float(score[b]) == pytest.approx(scores[tuple(tags[b, :length].tolist())], rel=1e-5)
    assert best[1, 2:].tolist() == [0, 0]
    nll = crf(emissions, tags, mask)
    assert float(nll) == pytest.approx(float((log_z - score).mean()))
