"""What the attention heads look at. Clark, Khandelwal, Levy & Manning 2019, "What Does BERT Look At?
An Analysis of BERT's Attention", arXiv:1906.04341.

Recipe. Attention maps come from the eager path (the weights α of every layer and head, (L, N, T, T)).
- Surface patterns (§3): for each head, averaged over every real query token of a corpus sample, the
  attention paid to [CLS], to [SEP], to punctuation, to the token itself, to the previous and to the next
  token. Broad vs focused (§3.4): the entropy of each query's attention distribution, averaged per head,
  next to the entropy of uniform attention over the same keys.
- Dependency syntax (§4.2): word-level attention from token-level attention — attention *to* a word is
  the sum over its tokens, attention *from* a word the mean over its tokens — then, for every relation
  and head, how often the word the dependent attends to most is its gold head (dependent → head), or the
  word the head attends to most is the dependent (head → dependent). The baseline predicts the head at
  the relation's most common relative offset. Needs a CoNLL-U file of gold trees.
Figures: the L × N heat maps of one sentence, and each statistic as an L × N map.

Shape legend: L = layers, B = sentences, N = heads, T = tokens, W = words.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import torch

from . import inputs
from .inputs import Loaded

STATS = ("entropy", "uniform_entropy", "cls", "sep", "punct", "self", "prev", "next")
_MARKERS = "#Ġ▁</w>"


def requires(loaded: Loaded) -> str | None:
    return None if inputs.is_transformer(loaded.model) else f"{loaded.member.name} has no attention heads"


def sentence_maps(model, tokenizer, words: list[str]) -> dict:
    """One sentence's attention: {"tokens": [...], "weights": (L, N, T, T) tensor}."""
    b = inputs.encode_words(model, tokenizer, [words])
    return {"tokens": b.tokens[0], "weights": inputs.attentions(model, b.input_ids, b.attention_mask)[:, 0]}


def _is_punct(token: str) -> bool:
    t = token.strip(_MARKERS)
    return bool(t) and all(unicodedata.category(c).startswith("P") or c in "`$" for c in t)


def head_statistics(model, tokenizer, sentences: list[list[str]], batch_size: int = 16,
                    max_length: int = 128, progress=None) -> dict:
    """Per head, the mean over real query tokens of each STATS value: (L, N) lists."""
    sums: dict[str, torch.Tensor] = {}
    queries = 0
    special = {"cls": tokenizer.cls_id, "sep": tokenizer.sep_id}
    for chunk in inputs.chunks(sentences, batch_size):
        b = inputs.encode_words(model, tokenizer, chunk, max_length)
        A = inputs.attentions(model, b.input_ids, b.attention_mask).double()  # (L, B, N, T, T)
        L, B, N, T, _ = A.shape
        real = b.attention_mask.bool()  # (B, T)
        punct = torch.tensor([[_is_punct(t) for t in toks] + [False] * (T - len(toks)) for toks in b.tokens])
        keys = {name: (b.input_ids == i) & real if i is not None else torch.zeros_like(real)
                for name, i in special.items()}
        keys["punct"] = punct & real
        per_query = {name: (A * k[None, :, None, None, :]).sum(-1) for name, k in keys.items()}  # (L, B, N, T)
        eye = torch.eye(T, dtype=torch.bool)
        per_query["self"] = A[..., eye]
        per_query["prev"] = torch.nn.functional.pad(A.diagonal(-1, -2, -1), (1, 0))  # query t → key t − 1
        per_query["next"] = torch.nn.functional.pad(A.diagonal(1, -2, -1), (0, 1))  # query t → key t + 1
        per_query["entropy"] = -(A * A.clamp_min(1e-30).log()).sum(-1)
        visible = real[:, None, :].expand(B, T, T)
        if getattr(model.config, "causal", False):
            visible = visible & torch.ones(T, T, dtype=torch.bool).tril()
        per_query["uniform_entropy"] = visible.sum(-1).clamp_min(1).double().log()[None, :, None, :].expand(L, B, N, T)
        for name, v in per_query.items():
            s = (v * real[None, :, None, :]).sum((1, 3))  # (L, N)
            sums[name] = sums.get(name, 0) + s
        queries += int(real.sum())
        if progress is not None:
            progress.update(len(chunk))
    return {name: (sums[name] / queries).tolist() for name in STATS} | {"queries": queries,
                                                                           "sentences": len(sentences)}


def _word_attention(A: torch.Tensor, word_of: list[int], W: int) -> torch.Tensor:
    """(N', T, T) token attention → (N', W, W): from a word = mean of its tokens' rows, to a word = sum
    of its tokens' columns (Clark et al. §4.1)."""
    T = A.shape[-1]
    to_word = torch.zeros(T, W, dtype=A.dtype)
    for t, w in enumerate(word_of):
        if w >= 0:
            to_word[t, w] = 1.0
    from_word = to_word.T / to_word.T.sum(1, keepdim=True).clamp_min(1)  # (W, T)
    return from_word @ A @ to_word


def dependency_accuracy(model, tokenizer, parsed: list, max_length: int = 128, progress=None) -> dict:
    """Per relation: the best head and direction and its accuracy, against the best fixed offset; and
    each head's accuracy over all relations (dependent → head), (L, N)."""
    hits: dict[tuple[str, str], torch.Tensor] = defaultdict(lambda: 0)
    counts: Counter = Counter()
    offsets: dict[str, Counter] = defaultdict(Counter)
    for s in parsed:
        b = inputs.encode_words(model, tokenizer, [s.words], max_length)
        A = inputs.attentions(model, b.input_ids, b.attention_mask)[:, 0].double()  # (L, N, T, T)
        L, N = A.shape[:2]
        W = int(b.word_mask.sum())
        Aw = _word_attention(A.flatten(0, 1), b.word_of[0], W).view(L, N, W, W)
        Aw = Aw.masked_fill(torch.eye(W, dtype=torch.bool), float("-inf"))  # a word is never its own head
        best = Aw.argmax(-1)  # (L, N, W): the word each word attends to most
        for d, (h, rel) in enumerate(zip(s.heads[:W], s.relations[:W])):
            if h == 0 or h > W:
                continue
            h -= 1
            counts[rel] += 1
            counts["all"] += 1
            offsets[rel][h - d] += 1
            offsets["all"][h - d] += 1
            for r in (rel, "all"):
                hits[(r, "dependent→head")] = hits[(r, "dependent→head")] + (best[..., d] == h).double()
                hits[(r, "head→dependent")] = hits[(r, "head→dependent")] + (best[..., h] == d).double()
        if progress is not None:
            progress.update(1)
    if not counts:
        return {"relations": {}, "per_head": None, "words": 0}
    relations = {}
    for rel, n in counts.most_common():
        best_dir, best_acc, best_at = None, -1.0, (0, 0)
        for direction in ("dependent→head", "head→dependent"):
            acc = hits[(rel, direction)] / n  # (L, N)
            k = int(acc.argmax())
            if float(acc.flatten()[k]) > best_acc:
                best_dir, best_acc, best_at = direction, float(acc.flatten()[k]), divmod(k, acc.shape[1])
        offset_acc = offsets[rel].most_common(1)[0][1] / n
        relations[rel] = {"n": n, "layer": best_at[0], "head": best_at[1], "direction": best_dir,
                          "accuracy": best_acc, "offset_baseline": offset_acc}
    per_head = (hits[("all", "dependent→head")] / counts["all"]).tolist()
    return {"relations": relations, "per_head": per_head, "words": counts["all"]}


# ---- figures -------------------------------------------------------------------------------------------

def plot_maps(maps: dict, path: Path) -> None:
    """The L × N grid of one sentence's attention heat maps."""
    plt = inputs.pyplot()

    W = maps["weights"]
    L, N, T, _ = W.shape
    fig, axes = plt.subplots(L, N, figsize=(1.6 * N + 0.5, 1.6 * L + 0.5), squeeze=False)
    for l in range(L):
        for n in range(N):
            ax = axes[l][n]
            ax.imshow(W[l, n].numpy(), cmap="Blues", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if l == 0:
                ax.set_title(f"head {n}", fontsize=8)
            if n == 0:
                ax.set_ylabel(f"layer {l}", fontsize=8)
    fig.suptitle(" ".join(maps["tokens"])[:150], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_statistics(stats: dict, path: Path) -> None:
    """Each statistic as an L × N map, and entropy per head by layer against uniform attention."""
    plt = inputs.pyplot()

    names = ("cls", "sep", "punct", "self", "prev", "next")
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.0 * (len(names) + 1), 3.2))
    for ax, name in zip(axes, names):
        im = ax.imshow(torch.tensor(stats[name]).numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_title(f"attention to {name}", fontsize=9)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
    fig.colorbar(im, ax=axes[len(names) - 1], fraction=0.05)
    ax = axes[-1]
    ent, uni = torch.tensor(stats["entropy"]), torch.tensor(stats["uniform_entropy"])
    L, N = ent.shape
    for l in range(L):
        ax.scatter([l] * N, ent[l].numpy(), s=12, color="C0", label="heads" if l == 0 else None)
    ax.plot(range(L), uni[:, 0].numpy(), "k--", label="uniform")
    ax.set_xlabel("layer")
    ax.set_ylabel("mean entropy (nats)")
    ax.set_title("broad vs focused", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(loaded: Loaded, out: Path, sentence: list[str], corpus: list[list[str]], parsed: list | None = None,
        max_length: int = 128, progress=None) -> dict:
    """Heat maps of `sentence`, head statistics over `corpus`, dependency accuracy on `parsed`; writes
    attention.json, maps.png and statistics.png (and dependency.json) into `out`."""
    model, tok = loaded.model, loaded.tokenizer
    maps = sentence_maps(model, tok, sentence)
    plot_maps(maps, out / "maps.png")
    stats = head_statistics(model, tok, corpus, max_length=max_length, progress=progress)
    plot_statistics(stats, out / "statistics.png")
    result = {"sentence": {"tokens": maps["tokens"], "weights": maps["weights"].round(decimals=4).tolist()},
              "statistics": stats, "figures": ["maps.png", "statistics.png"]}
    if parsed:
        result["dependency"] = dependency_accuracy(model, tok, parsed, max_length)
    inputs.save_json(out / "attention.json", result)
    return result
