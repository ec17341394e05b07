"""Layer-wise linear probes, with a control task and scalar-mix weights.

Recipes.
- Liu, Gardner, Belinkov, Peters & Smith 2019, "Linguistic Knowledge and Transferability of Contextual
  Representations", arXiv:1903.08855: a linear classifier on each layer's frozen representation of a
  word (here the word's first sub-token, as the tagging heads read it) or of a sentence (the pooled
  vector the sequence heads read: [CLS], a causal model's last token, or the body's own pooling); the
  accuracy per layer shows where the information is linearly available.
- Hewitt & Liang 2019, "Designing and Interpreting Probes with Control Tasks", arXiv:1909.03368: the
  control task gives every word type a fixed random label drawn from the task's label distribution, so
  only memorising word identities solves it; selectivity = task accuracy − control accuracy shows how
  much of a probe's score is the probe's own capacity. (Word-level tasks only: a sentence has no type.)
- Tenney, Das & Pavlick 2019, "BERT Rediscovers the Classical NLP Pipeline", arXiv:1905.05950: a probe
  on a learned scalar mix of all layers (ELMo's s = softmax(w), Peters et al. 2018) gives mix weights and
  their centre of gravity Σ_ℓ ℓ·s_ℓ; cumulative probes on the mix of layers 0 … ℓ give the gain Δ_ℓ of
  each added layer and the expected layer E_Δ[ℓ] = Σ_ℓ ℓ·Δ_ℓ / Σ_ℓ Δ_ℓ.
Every probe is a softmax regression fitted by full-batch L-BFGS with a small L2 penalty on standardised
features, scored on the test split (dev when there is no test). Layer 0 is the input embedding layer.

Shape legend: L = layers (the input layer counted), M = examples (words or sentences), H = hidden size,
C = labels.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.tasks import read_task
from ..errors import PlmkitError
from . import inputs
from .inputs import Loaded


def requires(loaded: Loaded) -> str | None:
    return None if inputs.has_layers(loaded.model) else f"{loaded.member.name} has no layer representations"


def find_splits(data: list[str]) -> dict[str, Path]:
    """--data: a folder holding train/dev/test files, or one to three files (train, dev, test)."""
    paths = [Path(p) for p in data]
    if len(paths) == 1 and paths[0].is_dir():
        found = {}
        for split in ("train", "dev", "test"):
            hits = sorted(p for p in paths[0].iterdir() if p.stem == split and p.is_file())
            if hits:
                found[split] = hits[0]
        if "train" not in found:
            raise PlmkitError("no train.* file in the folder", path=paths[0])
        return found
    if not 1 <= len(paths) <= 3:
        raise PlmkitError("--data takes a folder or one to three files (train, dev, test)")
    for p in paths:
        if not p.is_file():
            raise PlmkitError("data file not found", path=p)
    return dict(zip(("train", "dev", "test"), paths))


def read_split(path: Path, limit: int, seed: int = 0) -> tuple[str, list]:
    """(kind, examples): "tag" for CoNLL files (word labels), "classify" for JSONL/CSV/TSV (sentence labels);
    at most `limit` examples, drawn at random (seeded)."""
    kind = "classify" if path.suffix.lower() in (".jsonl", ".csv", ".tsv") else "tag"
    examples = read_task(path, kind)
    if len(examples) > limit:
        rng = random.Random(seed)
        examples = [examples[i] for i in sorted(rng.sample(range(len(examples)), limit))]
    return kind, examples


@torch.no_grad()
def sentence_states(model, tokenizer, texts: list[str], batch_size: int = 32, max_length: int = 128,
                    progress=None) -> list[torch.Tensor]:
    """(L + 1) × (M, H): each layer's pooled vector of each text, pooled as the sequence heads pool."""
    from ..heads.pooling import frame_ids

    begin, end = frame_ids(model, tokenizer)
    causal = inputs.causal(model)
    per_layer: list[list[torch.Tensor]] = []
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    for chunk in inputs.chunks(texts, batch_size):
        ids = [begin + x[: max_length - len(begin) - len(end)] + end for x in tokenizer.encode_batch(chunk)]
        ids = [x if x else [pad] for x in ids]
        T = max(len(x) for x in ids)
        x = torch.full((len(ids), T), pad, dtype=torch.long)
        mask = torch.zeros_like(x)
        for i, row in enumerate(ids):
            x[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
        states = model.encode(x, mask, output_hidden_states=True).hidden_states
        if not per_layer:
            per_layer = [[] for _ in states]
        last = mask.sum(1) - 1
        for acc, h in zip(per_layer, states):
            if hasattr(model, "pool_features"):
                v = model.pool_features(h, mask)
            else:
                v = h[torch.arange(len(ids)), last] if causal else h[:, 0]
            acc.append(v.float())
        if progress is not None:
            progress.update(len(chunk))
    return [torch.cat(x) for x in per_layer]


def control_labels(words: list[str], label_ids: list[int], num_labels: int, seed: int = 0,
                   table: dict | None = None) -> tuple[list[int], dict]:
    """Hewitt & Liang's control task: each word type's fixed label, drawn once from the empirical label
    distribution of `label_ids`; `table` carries the assignment from the training split to the others."""
    rng = random.Random(seed)
    table = dict(table or {})
    counts = torch.bincount(torch.tensor(label_ids), minlength=num_labels).double()
    population = list(range(num_labels))
    weights = counts.tolist()
    out = []
    for w in words:
        if w not in table:
            table[w] = rng.choices(population, weights)[0]
        out.append(table[w])
    return out, table


class _Standardise:
    def __init__(self, X: torch.Tensor):
        self.mean, self.std = X.mean(0), X.std(0).clamp_min(1e-6)

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        return (X - self.mean) / self.std


def fit_probe(X: torch.Tensor, y: torch.Tensor, num_labels: int, l2: float = 1e-3, steps: int = 100,
              mix: bool = False) -> tuple[torch.nn.Module, "callable"]:
    """A softmax regression on X (M, H) — or, with mix=True, on a scalar mix of X (L, M, H) — fitted by
    L-BFGS. Returns (the probe, the standardiser for new features)."""
    from ..layers.scalar_mix import ScalarMix

    torch.manual_seed(0)
    norm = _Standardise(X.flatten(0, -2) if mix else X)
    Xn = norm(X)
    linear = torch.nn.Linear(X.shape[-1], num_labels)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    mixer = ScalarMix(X.shape[0]) if mix else None
    probe = torch.nn.ModuleDict({"linear": linear, **({"mix": mixer} if mix else {})})
    opt = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=steps, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        feats = mixer([x[:, None] for x in Xn])[:, 0] if mix else Xn
        loss = F.cross_entropy(linear(feats), y) + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe, norm


@torch.no_grad()
def probe_accuracy(probe, norm, X: torch.Tensor, y: torch.Tensor) -> float:
    Xn = norm(X)
    feats = probe["mix"]([x[:, None] for x in Xn])[:, 0] if "mix" in probe else Xn
    return float((probe["linear"](feats).argmax(-1) == y).double().mean())


def run(loaded: Loaded, out: Path, data: list[str], max_train: int = 1000, max_eval: int = 500,
        max_length: int = 128, progress=None) -> dict:
    """Probe every layer of the model on the task in `data`; writes probe.json and probe.png into `out`."""
    model, tok = loaded.model, loaded.tokenizer
    splits = find_splits(data)
    kind, train = read_split(splits["train"], max_train)
    eval_name = "test" if "test" in splits else "dev" if "dev" in splits else None
    if eval_name is None:  # one file: hold out a fifth of it
        cut = max(1, len(train) // 5)
        train, evaluation = train[cut:], train[:cut]
        eval_name = "held-out fifth of train"
    else:
        _, evaluation = read_split(splits[eval_name], max_eval)

    def features(examples):
        if kind == "tag":
            sents = [e.tokens for e in examples]
            kept = inputs.kept_words(model, tok, sents, max_length)
            X = inputs.word_states(model, tok, sents, max_length=max_length, progress=progress)
            words = [w for s in kept for w in s]
            labels = [t for e, s in zip(examples, kept) for t in e.tags[:len(s)]]
            return X, words, labels
        texts = [e.text if e.text_b is None else f"{e.text} {e.text_b}" for e in examples]
        return sentence_states(model, tok, texts, max_length=max_length, progress=progress), None, \
            [e.label for e in examples]

    Xtr, words_tr, lab_tr = features(train)
    Xev, words_ev, lab_ev = features(evaluation)
    labels = sorted(set(lab_tr))
    index = {lab: i for i, lab in enumerate(labels)}
    ytr = torch.tensor([index[x] for x in lab_tr])
    yev = torch.tensor([index.get(x, -1) for x in lab_ev])  # a label unseen in training is always wrong
    C = len(labels)
    if C < 2:
        raise PlmkitError("the training split holds fewer than two labels", path=splits["train"])
    majority = float((yev == torch.bincount(ytr).argmax()).double().mean())
    layers = []
    control_table = None
    if kind == "tag":
        ctr, control_table = control_labels(words_tr, ytr.tolist(), C)
        cev, _ = control_labels(words_ev, ytr.tolist(), C, table=control_table)
        ctr, cev = torch.tensor(ctr), torch.tensor(cev)
    for layer, (a, b) in enumerate(zip(Xtr, Xev)):
        p, norm = fit_probe(a, ytr, C)
        row = {"layer": layer, "accuracy": probe_accuracy(p, norm, b, yev)}
        if kind == "tag":
            pc, normc = fit_probe(a, ctr, C)
            row["control"] = probe_accuracy(pc, normc, b, cev)
            row["selectivity"] = row["accuracy"] - row["control"]
        layers.append(row)
    # Tenney et al.: the mix of all layers, and cumulative mixes of layers 0 … ℓ.
    cumulative = []
    for top in range(len(Xtr)):
        Atr, Aev = torch.stack(Xtr[:top + 1]), torch.stack(Xev[:top + 1])
        if top == 0:
            p, norm = fit_probe(Atr[0], ytr, C)
            cumulative.append(probe_accuracy(p, norm, Aev[0], yev))
            continue
        p, norm = fit_probe(Atr, ytr, C, mix=True)
        cumulative.append(probe_accuracy(p, norm, Aev, yev))
    weights = p["mix"].weights.softmax(0).tolist() if len(Xtr) > 1 else [1.0]
    gains = [cumulative[0]] + [b - a for a, b in zip(cumulative, cumulative[1:])]
    positive = [max(g, 0.0) for g in gains[1:]]
    expected = sum((i + 1) * g for i, g in enumerate(positive)) / sum(positive) if sum(positive) > 0 else 0.0
    result = {"task": kind, "train": str(splits["train"]), "evaluated_on": eval_name, "labels": len(labels),
              "train_examples": len(ytr), "eval_examples": len(yev), "majority_baseline": majority,
              "layers": layers, "mix": {"weights": weights, "accuracy": cumulative[-1],
                                        "center_of_gravity": sum(i * w for i, w in enumerate(weights))},
              "cumulative": {"accuracy": cumulative, "gain": gains, "expected_layer": expected},
              "figures": ["probe.png"]}
    plot(result, out / "probe.png", loaded.name)
    inputs.save_json(out / "probe.json", result)
    return result


def plot(result: dict, path: Path, title: str) -> None:
    plt = inputs.pyplot()

    layers = [r["layer"] for r in result["layers"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(layers, [r["accuracy"] for r in result["layers"]], "o-", label="task")
    if "control" in result["layers"][0]:
        a.plot(layers, [r["control"] for r in result["layers"]], "s--", label="control task")
        a.plot(layers, [r["selectivity"] for r in result["layers"]], "^:", label="selectivity")
    a.axhline(result["majority_baseline"], color="0.6", lw=1, label="majority label")
    a.set_xlabel("layer (0 = embeddings)")
    a.set_ylabel(f"accuracy ({result['evaluated_on']})")
    a.set_title(f"linear probe by layer — {title}", fontsize=9)
    a.set_xticks(layers)
    a.legend(fontsize=7)
    w = result["mix"]["weights"]
    b.bar(range(len(w)), w, color="C2", label="scalar-mix weight s_ℓ")
    b.axvline(result["mix"]["center_of_gravity"], color="C3", label="centre of gravity")
    b.axvline(result["cumulative"]["expected_layer"], color="C4", ls="--", label="expected layer E_Δ")
    b.set_xlabel("layer")
    b.set_xticks(range(len(w)))
    b.set_title(f"scalar mix (accuracy {result['mix']['accuracy']:.3f})", fontsize=9)
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
