"""Do the representations know numbers? Wallace, Wang, Li, Singh & Gardner 2019, "Do NLP Models Know
Numbers? Probing Numeracy in Embeddings", arXiv:1909.07940, §3.

Recipe. Each integer of a range is written in digits and represented (a) by the model's input token
embedding (the mean of its sub-tokens' rows) and (b) by each layer's state for the number read alone
(mean over its sub-tokens, framed as the model frames a text). The integers are split 80/20 at random;
probes are trained on the first part and tested on the held-out numbers (the paper's interpolation
setting). Three probes per representation:
- list maximum: a BiLSTM reads the embeddings of 5 numbers, a linear layer scores each, softmax picks
  the largest; accuracy;
- decoding: a two-layer ReLU MLP regresses the value from its embedding; RMSE;
- addition: the same MLP on the concatenated embeddings of two numbers regresses their sum; RMSE.
The control is the same probes on random vectors of the same width, one fixed vector per number (the
paper's random-embedding baseline): what a probe can do without any numeracy in the embedding.

Shape legend: K = numbers, H = embedding width.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import inputs
from .inputs import Loaded


def requires(loaded: Loaded) -> str | None:
    return None if inputs.has_layers(loaded.model) else f"{loaded.member.name} has no embeddings to probe"


@torch.no_grad()
def number_vectors(model, tokenizer, numbers: list[int]) -> dict[str, torch.Tensor]:
    """{"token": (K, H) input-embedding rows, "layer ℓ": (K, H) states} for each number."""
    from ..heads.pooling import frame_ids

    begin, end = frame_ids(model, tokenizer)
    ids = [tokenizer.encode(str(n)) or [tokenizer.unk_id or 0] for n in numbers]
    out: dict[str, torch.Tensor] = {}
    table = getattr(getattr(model, "embeddings", None), "tokens", None)
    if isinstance(table, nn.Embedding):
        out["token"] = torch.stack([table.weight[i].mean(0) for i in ids]).float()
    T = max(len(x) for x in ids) + len(begin) + len(end)
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    x = torch.full((len(ids), T), pad, dtype=torch.long)
    mask = torch.zeros_like(x)
    span = torch.zeros(len(ids), T)
    for k, row in enumerate(ids):
        full = begin + row + end
        x[k, :len(full)], mask[k, :len(full)] = torch.tensor(full), 1
        span[k, len(begin):len(begin) + len(row)] = 1.0 / len(row)
    states = model.encode(x, mask, output_hidden_states=True).hidden_states
    for layer, h in enumerate(states):
        out[f"layer {layer}"] = torch.einsum("kt,kth->kh", span, h.float())
    return out


class _Mlp(nn.Module):
    def __init__(self, d_in: int, hidden: int = 100):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


class _ListMax(nn.Module):
    def __init__(self, d_in: int, hidden: int = 64):
        super().__init__()
        self.lstm = nn.LSTM(d_in, hidden, batch_first=True, bidirectional=True)
        self.score = nn.Linear(2 * hidden, 1)

    def forward(self, x):  # (B, 5, H) → (B, 5)
        return self.score(self.lstm(x)[0]).squeeze(-1)


def _train(probe: nn.Module, make_batch, steps: int, lr: float = 1e-3):
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    for _ in range(steps):
        x, y, loss_fn = make_batch()
        loss = loss_fn(probe(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return probe


def probe_vectors(E: torch.Tensor, numbers: torch.Tensor, train: torch.Tensor, test: torch.Tensor,
                  steps: int = 300, seed: int = 0) -> dict:
    """The three probes on embeddings E (K, H) of `numbers` (K,); train/test are index tensors into K."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    E = (E - E[train].mean(0)) / E[train].std(0).clamp_min(1e-6)  # standardised on the training numbers
    scale = float(numbers.abs().max()) or 1.0
    value = numbers.float() / scale  # regress values in [-1, 1]; RMSE is reported in the numbers' units

    def pick(pool, shape):
        return pool[torch.randint(len(pool), shape, generator=g)]

    def dec_batch():
        i = pick(train, (64,))
        return E[i], value[i], F.mse_loss

    def add_batch():
        a, b = pick(train, (64,)), pick(train, (64,))
        return torch.cat([E[a], E[b]], -1), value[a] + value[b], F.mse_loss

    def max_batch(pool, n=64):
        ix = pick(pool, (n, 5))
        return E[ix], value[ix].argmax(-1), F.cross_entropy

    H = E.shape[1]
    dec = _train(_Mlp(H), dec_batch, steps)
    add = _train(_Mlp(2 * H), add_batch, steps)
    lmax = _train(_ListMax(H), lambda: max_batch(train), steps)
    with torch.no_grad():
        dec_rmse = float(((dec(E[test]) - value[test]) ** 2).mean().sqrt()) * scale
        a, b = pick(test, (1000,)), pick(test, (1000,))
        add_rmse = float(((add(torch.cat([E[a], E[b]], -1)) - (value[a] + value[b])) ** 2).mean().sqrt()) * scale
        x, y, _ = max_batch(test, 1000)
        max_acc = float((lmax(x).argmax(-1) == y).double().mean())
    return {"list_max_accuracy": max_acc, "decoding_rmse": dec_rmse, "addition_rmse": add_rmse}


def run(loaded: Loaded, out: Path, low: int = 0, high: int = 99, steps: int = 300, progress=None) -> dict:
    """The three probes on every representation of the integers low … high and on random vectors;
    writes numeracy.json and numeracy.png into `out`."""
    numbers = list(range(low, high + 1))
    reps = number_vectors(loaded.model, loaded.tokenizer, numbers)
    K = len(numbers)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(K, generator=g)
    train, test = perm[: int(0.8 * K)], perm[int(0.8 * K):]
    width = next(iter(reps.values())).shape[1]
    reps["random vectors"] = torch.randn(K, width, generator=g)
    nums = torch.tensor(numbers)
    single = sum(len(loaded.tokenizer.encode(str(n))) == 1 for n in numbers)
    results = {}
    for name, E in reps.items():
        results[name] = probe_vectors(E, nums, train, test, steps)
        if progress is not None:
            progress.update(1)
    result = {"range": [low, high], "train_numbers": len(train), "test_numbers": len(test),
              "single_token_numbers": single, "chance_list_max": 0.2, "representations": results,
              "figures": ["numeracy.png"]}
    plot(result, out / "numeracy.png", loaded.name)
    inputs.save_json(out / "numeracy.json", result)
    return result


def plot(result: dict, path: Path, title: str) -> None:
    plt = inputs.pyplot()

    names = list(result["representations"])
    rows = [result["representations"][n] for n in names]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, label in zip(axes, ("list_max_accuracy", "decoding_rmse", "addition_rmse"),
                              ("list maximum: accuracy (↑)", "decoding: RMSE (↓)", "addition: RMSE (↓)")):
        ax.bar(range(len(names)), [r[key] for r in rows], color=["C0"] * (len(names) - 1) + ["0.6"])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        ax.set_title(label, fontsize=9)
    axes[0].axhline(result["chance_list_max"], color="k", ls="--", lw=1)
    fig.suptitle(f"numeracy probes, integers {result['range'][0]}–{result['range'][1]} — {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
