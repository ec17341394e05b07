"""The geometry of contextual representations, layer by layer, and how similar two models' layers are.

Recipes.
- Ethayarajh 2019, "How Contextual are Contextualized Word Representations?", arXiv:1909.00512, §3–4,
  over the words of a corpus sample (each word's first sub-token):
  anisotropy = the mean cosine similarity of randomly drawn pairs of word occurrences;
  self-similarity of a word type = the mean cosine between its occurrences in different contexts
  (types seen at least `min_count` times), averaged over types;
  intra-sentence similarity = the mean cosine between a word and its sentence's mean vector;
  MEV = the share of the variance of a type's occurrences that their first principal component explains.
  Each is also given minus the layer's anisotropy: the paper's baseline for self- and intra-sentence
  similarity (for MEV the paper subtracts the MEV of random words, which is not computed here).
- Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited", arXiv:1905.00414:
  linear CKA(X, Y) = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on centred representations of the same words.
- Abnar, Beinborn, Choenni & Zuidema 2019, "Blackbox meets blackbox: Representational Similarity and
  Stability Analysis of Neural Language Models and Brains", arXiv:1906.01539: RSA = the Pearson correlation
  of two representational dissimilarity matrices (1 − cosine over a sample of words).
Two models are compared on the same words, so their tokenizers may differ.

Shape legend: L = layers (the input layer counted), M = word occurrences, H = hidden size.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from . import inputs
from .inputs import Loaded


def requires(loaded: Loaded) -> str | None:
    return None if inputs.has_layers(loaded.model) else f"{loaded.member.name} has no layer representations"


def _mean_pair_cosine(X: torch.Tensor, pairs: torch.Tensor) -> float:
    return float(F.cosine_similarity(X[pairs[:, 0]], X[pairs[:, 1]], dim=-1).mean())


def layer_geometry(X: torch.Tensor, words: list[str], sentence_of: torch.Tensor, min_count: int = 5,
                   pairs: int = 2000, seed: int = 0) -> dict:
    """Ethayarajh's measures for one layer's word occurrences X (M, H)."""
    g = torch.Generator().manual_seed(seed)
    M = X.shape[0]
    random_pairs = torch.randint(M, (pairs, 2), generator=g)
    random_pairs = random_pairs[random_pairs[:, 0] != random_pairs[:, 1]]
    aniso = _mean_pair_cosine(X, random_pairs)
    occurrences = defaultdict(list)
    for i, w in enumerate(words):
        occurrences[w.lower()].append(i)
    types = [ix for ix in occurrences.values() if len(ix) >= min_count]
    self_sims, mevs = [], []
    for ix in types:
        V = X[ix]  # (k, H)
        U = F.normalize(V, dim=-1)
        sim = U @ U.T
        k = len(ix)
        self_sims.append(float((sim.sum() - sim.diagonal().sum()) / (k * (k - 1))))
        s = torch.linalg.svdvals(V.double())  # MEV on the uncentred occurrences, as in the paper
        mevs.append(float(s[0] ** 2 / (s ** 2).sum()))
    n_sent = int(sentence_of.max()) + 1
    means = torch.zeros(n_sent, X.shape[1]).index_add(0, sentence_of, X)
    means /= torch.bincount(sentence_of, minlength=n_sent).clamp_min(1)[:, None]
    intra = float(F.cosine_similarity(X, means[sentence_of], dim=-1).mean())
    mean = lambda v: sum(v) / len(v) if v else float("nan")  # noqa: E731
    return {"anisotropy": aniso, "self_similarity": mean(self_sims), "intra_sentence": intra,
            "mev": mean(mevs), "self_similarity_adjusted": mean(self_sims) - aniso,
            "intra_sentence_adjusted": intra - aniso, "mev_adjusted": mean(mevs) - aniso, "types": len(types)}


def linear_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Linear CKA of X (M, H1) and Y (M, H2), rows = the same examples."""
    X = (X - X.mean(0)).double()
    Y = (Y - Y.mean(0)).double()
    return float((Y.T @ X).norm() ** 2 / ((X.T @ X).norm() * (Y.T @ Y).norm()))


def rsa(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Pearson correlation of the upper triangles of the cosine dissimilarity matrices of X and Y."""
    def rdm(Z):
        Z = F.normalize(Z.double(), dim=-1)
        return 1 - Z @ Z.T

    iu = torch.triu_indices(X.shape[0], X.shape[0], 1)
    a, b = rdm(X)[iu[0], iu[1]], rdm(Y)[iu[0], iu[1]]
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


def similarity(A: list[torch.Tensor], B: list[torch.Tensor], sample: int = 1000, seed: int = 0) -> dict:
    """CKA and RSA between every layer of A and every layer of B ((L_A, L_B) lists), on the same rows;
    RSA on a random `sample` of them (its matrices are sample²)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randperm(A[0].shape[0], generator=g)[:sample]
    return {"cka": [[linear_cka(a, b) for b in B] for a in A],
            "rsa": [[rsa(a[rows], b[rows]) for b in B] for a in A]}


def run(loaded: Loaded, out: Path, sentences: list[list[str]], compare: Loaded | None = None,
        min_count: int = 5, max_length: int = 128, progress=None) -> dict:
    """Geometry per layer over `sentences`; layer similarity within the model, or with `compare`.
    Writes geometry.json, geometry.png and similarity.png into `out`."""
    model, tok = loaded.model, loaded.tokenizer
    if compare is not None:  # compare on the words both models keep within their token limits
        kept_b = inputs.kept_words(compare.model, compare.tokenizer, sentences, max_length)
        sentences = [s[:len(k)] for s, k in zip(sentences, kept_b)]
    kept = inputs.kept_words(model, tok, sentences, max_length)
    sentences = [s[:len(k)] for s, k in zip(sentences, kept)]
    states = inputs.word_states(model, tok, sentences, max_length=max_length, progress=progress)
    words = [w for s in sentences for w in s]
    sentence_of = torch.tensor([i for i, s in enumerate(sentences) for _ in s])
    layers = [layer_geometry(X, words, sentence_of, min_count) for X in states]
    if compare is not None:
        other = inputs.word_states(compare.model, compare.tokenizer, sentences, max_length=max_length)
        sim = similarity(states, other)
        against = compare.name
    else:
        sim = similarity(states, states)
        against = loaded.name
    result = {"words": len(words), "sentences": len(sentences), "min_count": min_count, "layers": layers,
              "similarity": {"against": against, **sim}, "figures": ["geometry.png", "similarity.png"]}
    plot(result, out, loaded.name)
    inputs.save_json(out / "geometry.json", result)
    return result


def plot(result: dict, out: Path, title: str) -> None:
    plt = inputs.pyplot()

    layers = range(len(result["layers"]))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (("anisotropy", "anisotropy (random pairs)"), ("self_similarity", "self-similarity"),
                       ("intra_sentence", "intra-sentence similarity"), ("mev", "variance explained by PC1")):
        a.plot(layers, [r[key] for r in result["layers"]], "o-", label=label)
    a.set_title(f"geometry by layer — {title}", fontsize=9)
    a.set_xlabel("layer (0 = embeddings)")
    a.set_ylabel("cosine / share")
    a.legend(fontsize=7)
    for key, label in (("self_similarity_adjusted", "self-similarity"),
                       ("intra_sentence_adjusted", "intra-sentence"), ("mev_adjusted", "PC1 variance")):
        b.plot(layers, [r[key] for r in result["layers"]], "o-", label=label)
    b.set_title("minus anisotropy", fontsize=9)
    b.set_xlabel("layer (0 = embeddings)")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "geometry.png", dpi=90)
    plt.close(fig)
    sim = result["similarity"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, key in zip(axes, ("cka", "rsa")):
        im = ax.imshow(torch.tensor(sim[key]).numpy(), cmap="magma", vmin=0, vmax=1, origin="lower")
        ax.set_title(f"{key.upper()}: {title} vs {sim['against']}", fontsize=8)
        ax.set_xlabel(f"layer of {sim['against']}")
        ax.set_ylabel(f"layer of {title}")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out / "similarity.png", dpi=90)
    plt.close(fig)
