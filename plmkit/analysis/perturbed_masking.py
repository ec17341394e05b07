"""Perturbed masking: the syntax a masked LM implies, without a trained probe. Wu, Chen, Kao & Liu 2020,
"Perturbed Masking: Parameter-free Probing for Analyzing and Interpreting BERT", arXiv:2004.14786, §2–3.

Recipe. For words x_i, x_j of a sentence, mask x_i and read the last layer at i, H(x∖{x_i})_i; mask x_j
as well and read it again, H(x∖{x_i, x_j})_i. The impact of x_j on x_i is their Euclidean distance

    f(x_i, x_j) = ‖H(x∖{x_i})_i − H(x∖{x_i, x_j})_i‖₂

A word is masked by masking all its sub-tokens and read at its first sub-token (the paper's "first"
sub-word rule). The matrix over [ROOT] = [CLS] and the words (f(x_i, [ROOT]) = 0, since [CLS] is never
masked) is normalised by a softmax per row and read as arc scores, score(head j → dependent i) =
softmax_j f(x_i, ·), the word that moves x_i most being its likeliest head; Eisner's algorithm
(Eisner 1996) then finds the best projective tree. Against gold trees (CoNLL-U) the unlabelled
attachment score (UAS) is compared with the right-branching chain (each word's head is the next word,
the last word the root), the baseline the paper reports.

Cost: 1 + W + W² forward passes per sentence of W words, batched.

Shape legend: W = words, T = tokens, H = hidden size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import inputs
from .inputs import Loaded


def requires(loaded: Loaded) -> str | None:
    model, tok = loaded.model, loaded.tokenizer
    if not inputs.is_transformer(model) or inputs.causal(model):
        return f"{loaded.member.name} is not a bidirectional transformer encoder"
    if tok.mask_id is None:
        return "the tokenizer has no mask token"
    return None


@torch.no_grad()
def impact_matrix(model, tokenizer, words: list[str], batch_size: int = 64, max_length: int = 128) -> torch.Tensor:
    """(W, W) f(x_i, x_j); the diagonal is 0."""
    b = inputs.encode_words(model, tokenizer, [words], max_length)
    ids, owners = b.input_ids[0], b.word_of[0]
    W = int(b.word_mask.sum())
    first = b.first[0, :W]
    spans = [torch.tensor([t for t, w in enumerate(owners) if w == k]) for k in range(W)]
    variants = []
    for i in range(W):
        base = ids.clone()
        base[spans[i]] = tokenizer.mask_id
        variants.append(base)
        for j in range(W):
            both = base.clone()
            both[spans[j]] = tokenizer.mask_id
            variants.append(both)
    x = torch.stack(variants)  # (W + W², T)
    states = []
    for k in range(0, len(x), batch_size):
        states.append(model.encode(x[k:k + batch_size]).last_hidden_state.float())
    h = torch.cat(states).view(W, W + 1, -1, states[0].shape[-1])  # (W, 1 + W, T, H)
    at = h[torch.arange(W), :, first]  # (W, 1 + W, H): states at word i's first sub-token
    f = (at[:, :1] - at[:, 1:]).norm(dim=-1)  # (W, W)
    return f.fill_diagonal_(0.0)


def eisner(scores: np.ndarray) -> list[int]:
    """The best projective tree under arc scores[h, d] (node 0 = root; it may head several words, as in the
    standard algorithm);
    returns head[d] for d = 1 … n (index 0 is the root's own, -1)."""
    n = scores.shape[0]
    NEG = -np.inf
    # complete[s, t, dir], incomplete[s, t, dir]: dir 0 = head at t (left arcs), 1 = head at s (right arcs)
    C = np.full((n, n, 2), NEG)
    I = np.full((n, n, 2), NEG)  # noqa: E741
    Cb = np.zeros((n, n, 2), dtype=int)
    Ib = np.zeros((n, n, 2), dtype=int)
    for s in range(n):
        C[s, s, :] = 0.0
    for k in range(1, n):
        for s in range(n - k):
            t = s + k
            r = np.arange(s, t)
            base = C[s, r, 1] + C[r + 1, t, 0]
            left = base + scores[t, s]  # arc t → s
            if s == 0:
                left = np.full_like(left, NEG)  # nothing heads the root
            right = base + scores[s, t]  # arc s → t
            I[s, t, 0], Ib[s, t, 0] = left.max(), r[left.argmax()]
            I[s, t, 1], Ib[s, t, 1] = right.max(), r[right.argmax()]
            r0 = np.arange(s, t)
            lc = C[s, r0, 0] + I[r0, t, 0]
            C[s, t, 0], Cb[s, t, 0] = lc.max(), r0[lc.argmax()]
            r1 = np.arange(s + 1, t + 1)
            rc = I[s, r1, 1] + C[r1, t, 1]
            C[s, t, 1], Cb[s, t, 1] = rc.max(), r1[rc.argmax()]
    heads = [-1] * n

    def complete(s, t, d):
        if s == t:
            return
        r = Cb[s, t, d]
        if d == 0:
            complete(s, r, 0)
            incomplete(r, t, 0)
        else:
            incomplete(s, r, 1)
            complete(r, t, 1)

    def incomplete(s, t, d):
        r = Ib[s, t, d]
        if d == 0:
            heads[s] = t
        else:
            heads[t] = s
        complete(s, r, 1)
        complete(r + 1, t, 0)

    complete(0, n - 1, 1)
    return heads


def induce(f: torch.Tensor) -> list[int]:
    """Heads (1-based, 0 = root) of the words from an impact matrix (W, W), by Eisner on row-softmaxed scores."""
    W = f.shape[0]
    m = torch.zeros(W + 1, W + 1, dtype=torch.float64)
    m[1:, 1:] = f.double()  # m[i, j] = impact of word j on word i; column 0 ([ROOT]) stays 0
    p = m.softmax(-1)  # each word's distribution over its possible heads
    scores = p.T.numpy().copy()  # scores[h, d]
    return [int(h) for h in eisner(scores)[1:]]


def uas(pred: list[int], gold: list[int]) -> tuple[int, int]:
    return sum(int(p == g) for p, g in zip(pred, gold)), len(gold)


def right_chain(n: int) -> list[int]:
    return [i + 2 for i in range(n - 1)] + [0]


def run(loaded: Loaded, out: Path, sentences: list[list[str]] | None = None, parsed: list | None = None,
        max_words: int = 30, progress=None) -> dict:
    """Impact matrices, induced trees, and UAS against gold trees where `parsed` gives them (else trees for
    `sentences`); writes perturbed_masking.json and perturbed_masking.png into `out`."""
    model, tok = loaded.model, loaded.tokenizer
    items = [(p.words, p.heads) for p in parsed] if parsed else [(s, None) for s in sentences or []]
    items = [(w, h) for w, h in items if 2 <= len(w) <= max_words]
    trees, right, correct, total = [], 0, 0, 0
    first_matrix = None
    for words, gold in items:
        f = impact_matrix(model, tok, words)
        W = f.shape[0]
        words, gold = words[:W], (gold[:W] if gold else None)
        heads = induce(f)
        if first_matrix is None:
            first_matrix = (words, f)
        tree = {"words": words, "heads": heads}
        if gold is not None and all(h <= W for h in gold):
            c, n = uas(heads, gold)
            correct, total = correct + c, total + n
            right += uas(right_chain(W), gold)[0]
            tree["gold"] = gold
        trees.append(tree)
        if progress is not None:
            progress.update(1)
    result = {"sentences": len(trees), "trees": trees[:50], "figures": ["perturbed_masking.png"]}
    if total:
        result.update(uas=correct / total, right_branching_uas=right / total, words=total)
    if first_matrix is not None:
        result["impact"] = {"words": first_matrix[0], "matrix": first_matrix[1].round(decimals=4).tolist()}
        plot(first_matrix[0], first_matrix[1], trees[0], out / "perturbed_masking.png", loaded.name)
    inputs.save_json(out / "perturbed_masking.json", result)
    return result


def plot(words: list[str], f: torch.Tensor, tree: dict, path: Path, title: str) -> None:
    plt = inputs.pyplot()
    from matplotlib.patches import Arc

    W = len(words)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 1.4]})
    im = a.imshow(f.numpy(), cmap="Reds")
    a.set_xticks(range(W))
    a.set_xticklabels(words, rotation=90, fontsize=7)
    a.set_yticks(range(W))
    a.set_yticklabels(words, fontsize=7)
    a.set_xlabel("masked word x_j")
    a.set_ylabel("word x_i read")
    a.set_title(f"impact f(x_i, x_j) — {title}", fontsize=9)
    fig.colorbar(im, ax=a, fraction=0.046)
    for i, w in enumerate(words):
        b.text(i + 1, 0, w, ha="center", va="top", fontsize=7, rotation=45)
    for key, color, sign in (("heads", "C3", 1), ("gold", "C0", -1)):
        for d, h in enumerate(tree.get(key) or [], 1):
            if h == 0:
                b.plot([d, d], [0, sign * 0.8 * W / 4], color=color, lw=1)
                continue
            width = abs(h - d)
            b.add_patch(Arc(((h + d) / 2, 0), width, width * 0.5 * sign * 2, theta1=0 if sign > 0 else 180,
                            theta2=180 if sign > 0 else 360, color=color, lw=1))
    b.set_xlim(0, W + 1)
    b.set_ylim(-W / 4 - 1, W / 4 + 1)
    b.axis("off")
    b.set_title("induced tree (above, red)" + (" vs gold (below, blue)" if tree.get("gold") else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
