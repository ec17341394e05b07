"""Cross-lingual evaluation of sentence vectors: bitext retrieval and zero-shot transfer.

Bitext retrieval (the Tatoeba measure of Artetxe & Schwenk 2019, §4.3): embed N sentences and their N
translations; a sentence is retrieved correctly when its nearest neighbour by cosine among all N
translations is its own. Reported as accuracy in each direction (LASER reports the error rate, 1 − it).
With `center`, each language's mean vector is subtracted first: a small model's vectors share a large
per-language offset, and raw cosine then sends every query to the same "hub" sentence of the other
language; centring removes the offset and leaves what the vectors say about meaning (Libovický et al.
2020, "On the Language Neutrality of Pre-trained Multilingual Representations").

Zero-shot transfer (§4.1–4.2): a classifier trained on sentence vectors of one language is tested on
sentence vectors of the other, the encoder frozen. The classifier is multinomial logistic regression
(L2, full-batch L-BFGS) on standardised features, so the score reflects the vectors, not a tuned head.

Shape legend: N = sentences, H = vector size, C = classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..heads.pooling import embed
from .sentence_probes import logistic_regression


@torch.no_grad()
def sentence_vectors(model, tokenizer, texts: list[str], language: int | None = None, pool: str | None = None,
                     batch_size: int = 64, max_length: int = 128, progress: bool = False) -> torch.Tensor:
    """(N, H) vectors: a body's own pooling where it has one (LASER's max-pool), else the mean of the last
    layer over the real tokens (the mBERT-style baseline, and XLM). `language` reaches a body with language
    embeddings only (XLM); the others read every language the same way."""
    pool = pool or ("auto" if hasattr(model, "pool_features") else "mean")
    if getattr(model, "segment_embeddings", True):
        language = None
    return embed(model, tokenizer, texts, pool, max_length, batch_size, progress, language=language)


def bitext_retrieval(a: torch.Tensor, b: torch.Tensor, center: bool = False) -> dict[str, float]:
    """a, b: (N, H), row i of b the translation of row i of a → accuracy of a → b and of b → a."""
    if center:
        a, b = a - a.mean(0), b - b.mean(0)
    sim = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T  # (N, N) cosine
    gold = torch.arange(len(a))
    return {"a_to_b": float((sim.argmax(1) == gold).float().mean()),
            "b_to_a": float((sim.argmax(0) == gold).float().mean())}


def zero_shot(train_x: torch.Tensor, train_y: list[str], test_x: torch.Tensor, test_y: list[str],
              l2: float = 1e-2) -> float:
    """Train logistic regression (penalty l2 ‖W‖²) on (train_x, train_y); its accuracy on (test_x, test_y)."""
    labels = sorted(set(train_y))
    index = {lab: i for i, lab in enumerate(labels)}
    y = torch.tensor([index[v] for v in train_y])
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x, xt = (train_x - mean) / std, (test_x - mean) / std
    w, b = logistic_regression(x, y, len(labels), 2 * l2)  # its penalty is l2/2 ‖W‖²
    pred = (xt @ w + b).argmax(1).tolist()
    return sum(labels[p] == t for p, t in zip(pred, test_y)) / len(test_y)
