"""Early exit with batches: a fine-tuned classifier with an internal classifier ("off-ramp") after each layer
but the last, where every row of a batch leaves as soon as its exit rule fires and the rest run on, shared by
deebert (exit when the ramp's entropy is low) and pabee (exit when the ramps agree for long enough).

The papers' code (and the transformers research examples) exit a whole batch at once and are run at
batch size 1. Here a batch shrinks as it goes: after layer l the rows whose rule fired get their
prediction from ramp l and are removed from the hidden states, the attention mask and the rule's state,
and the batch is cut to the longest remaining row (rows are right-padded, so padding never changes a real
token's state); the last layer runs for the rows still there, at [CLS] only. Each row gets the prediction
it would get alone, so the speed-up is real at batch 32 and the same at batch 1.

A ramp reads layer l's [CLS] state through a pooler (tanh(W h + b): its own, DeeBERT's "highway"
classifier, started from the model's pooler, or the model's own, shared, as in PABEE), dropout and a
linear layer. Bodies: the bidirectional transformers whose sequence heads read [CLS] (BERT and its
post-LN descendants); tasks: classify and pair.

Shape legend: B = batch (rows still running), T = sequence length, H = hidden size, C = labels,
L = layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PlmkitError
from ..heads import TaskModel

POLICIES = ("entropy", "patience")


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """(B, C) → (B,): −Σ_c p_c log p_c of softmax(logits), in nats."""
    logp = F.log_softmax(logits.float(), -1)
    return -(logp.exp() * logp).sum(-1)


class Ramp(nn.Module):
    """An internal classifier on a layer's [CLS] state: (B, H) → (B, C)."""

    def __init__(self, hidden: int, labels: int, own_pooler: bool, dropout: float):
        super().__init__()
        self.pooler = nn.Linear(hidden, hidden) if own_pooler else None
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, labels)

    def forward(self, cls: torch.Tensor, shared_pooler: nn.Module | None) -> torch.Tensor:
        pooler = self.pooler if self.pooler is not None else shared_pooler
        v = torch.tanh(pooler(cls)) if pooler is not None else cls
        return self.classifier(self.drop(v))


class ExitModel(TaskModel):
    """A sequence classifier with off-ramps after layers 1 … L − 1 and its own head after layer L.

    In eval mode `forward` exits early by `policy`: "entropy" leaves at the first ramp whose prediction has
    entropy below `threshold` (DeeBERT); "patience" leaves once `patience` ramps in a row after the first
    agree with the one before them (PABEE). It returns {"logits": (B, C), "exit_layer": (B,) 1-based}. In
    training mode it is the plain classifier; `all_logits` gives every ramp's and the head's logits."""

    def __init__(self, body: nn.Module, config, policy: str, threshold: float = 0.0, patience: int = 1,
                 own_pooler: bool = True):
        super().__init__(body, config)
        if config.task not in ("classify", "pair"):
            raise PlmkitError(f"early exit classifies sequences (classify, pair), not {config.task!r}")
        if policy not in POLICIES:
            raise PlmkitError(f"unknown exit policy {policy!r}; choose from {', '.join(POLICIES)}")
        if (self.causal or self.frozen or hasattr(body, "pool_features") or not self.rows_only
                or getattr(body, "final_norm", None) is not None):
            raise PlmkitError(f"early exit needs a post-LN bidirectional transformer read at [CLS] (BERT and its "
                              f"descendants), not {getattr(body, 'family_name', type(body).__name__)}")
        self.policy, self.threshold, self.patience = policy, float(threshold), int(patience)
        self.own_pooler = own_pooler
        H, C = body.config.hidden_size, len(config.labels)
        self.ramps = nn.ModuleList(Ramp(H, C, own_pooler, config.dropout) for _ in range(len(body.stack()) - 1))
        pooler = getattr(body, "pooler", None)
        if own_pooler and pooler is not None:  # the ramps' poolers start as the model's
            for r in self.ramps:
                r.pooler.load_state_dict(pooler.state_dict())

    def spec(self) -> dict:
        """compressed.json's "exits": the arguments that rebuild this model around its weights."""
        return {"policy": self.policy, "threshold": self.threshold, "patience": self.patience,
                "own_pooler": self.own_pooler}

    def all_logits(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Every row through every layer: L × (B, C), the ramps' then the head's."""
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        rows = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
        states = self.body.encode(ids, mask, types, output_hidden_states=True, rows=rows).hidden_states
        pooler = getattr(self.body, "pooler", None)
        out = [ramp(h[:, 0], pooler) for ramp, h in zip(self.ramps, states[1:-1])]
        return out + [self.head(self.drop(self.pooled(states[-1], mask[:, :1])))]

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.training:
            return super().forward(batch)
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        B, C = ids.shape[0], self.head.out_features
        logits = torch.zeros(B, C, device=ids.device)
        exit_layer = torch.zeros(B, dtype=torch.long, device=ids.device)
        alive = torch.arange(B, device=ids.device)  # rows still running, as indices into the batch
        lengths = mask.sum(1)
        previous = torch.full((B,), -1, dtype=torch.long, device=ids.device)  # patience: last ramp's label
        agreed = torch.zeros(B, dtype=torch.long, device=ids.device)  # patience: ramps in a row agreeing
        pooler = getattr(self.body, "pooler", None)
        x = self.body.embed(ids, types)  # (B, T, H)
        stack = self.body.stack()
        for i, layer in enumerate(stack):
            key_mask = None if bool(mask.all()) else mask.bool()
            if i == len(stack) - 1:  # the rest leave through the head, computed at [CLS] only
                h, _ = layer(x, key_mask, rows=torch.zeros(len(alive), dtype=torch.long, device=x.device))
                logits[alive] = self.head(self.drop(self.pooled(h, mask[:, :1]))).float()
                exit_layer[alive] = len(stack)
                break
            x, _ = layer(x, key_mask)  # (B, T, H)
            z = self.ramps[i](x[:, 0], pooler)  # (B, C)
            if self.policy == "entropy":
                done = entropy(z) < self.threshold
            else:
                label = z.argmax(-1)
                agreed = torch.where(label == previous, agreed + 1, torch.zeros_like(agreed))
                previous = label
                done = agreed >= self.patience
            if bool(done.any()):
                logits[alive[done]] = z[done].float()
                exit_layer[alive[done]] = i + 1
                stay = ~done
                if not bool(stay.any()):
                    break
                alive, previous, agreed = alive[stay], previous[stay], agreed[stay]
                T = int(lengths[alive].max())  # cut the padding no remaining row needs
                x, mask = x[stay, :T], mask[stay, :T]
        return {"logits": logits, "exit_layer": exit_layer}


def exit_model(teacher: TaskModel, policy: str, own_pooler: bool, **rule) -> ExitModel:
    """An ExitModel holding a copy of the fine-tuned `teacher`'s body and head, ramps new."""
    import copy

    model = ExitModel(copy.deepcopy(teacher.body), teacher.config, policy, own_pooler=own_pooler, **rule)
    model.head.load_state_dict(teacher.head.state_dict())
    model.tokenizer = teacher.tokenizer
    return model


@torch.no_grad()
def sweep(model: ExitModel, examples: list, settings: list[dict], metric: str, batch_size: int = 32,
          progress: bool = False) -> list[dict]:
    """The speed/accuracy curve: for each setting ({"threshold": S} or {"patience": t}) the task metrics on
    `examples`, the mean exit layer, the share of layer computations saved and examples/s at `batch_size`
    (one timed pass each, tokenization included)."""
    import time

    from tqdm import tqdm

    from ..heads import collate, encode
    from ..heads.inputs import Evaluation, Format, batches

    features = encode(examples, model, model.tokenizer)
    pad = Format.of(model, model.tokenizer).pad
    L = len(model.body.stack())
    model.eval()
    curve = []
    for s in tqdm(settings, desc="exit sweep", unit="setting", disable=None if progress else True, leave=False):
        for k, v in s.items():
            setattr(model, k, v)
        ev, layers = Evaluation(model, examples, model.tokenizer, True), []
        t = time.perf_counter()
        for chunk in batches(features, batch_size):
            out = model({k: v for k, v in collate(chunk, pad).items() if k != "labels"})
            ev.update(chunk, out)
            layers.append(out["exit_layer"])
        seconds = time.perf_counter() - t
        metrics = ev.result()[0]
        mean_layer = float(torch.cat(layers).float().mean())
        curve.append({**s, metric: metrics[metric], "mean_exit_layer": round(mean_layer, 3),
                      "layers_saved": round(1 - mean_layer / L, 4),
                      "examples_per_s": round(len(examples) / seconds, 2)})
    return curve


def choose(curve: list[dict], metric: str, full: float, max_drop: float) -> dict:
    """The setting with the fewest layers run whose metric is within `max_drop` of the full model's."""
    ok = [c for c in curve if c[metric] >= full - max_drop - 1e-12]
    if not ok:
        return curve[0]
    return min(ok, key=lambda c: (c["mean_exit_layer"], -c[metric]))


def plot_curve(curve: list[dict], key: str, metric: str, full: float, path) -> None:
    """Metric against the share of layers saved, one point per setting, labelled with its value."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    xs, ys = [c["layers_saved"] for c in curve], [c[metric] for c in curve]
    ax.plot(xs, ys, "o-")
    for c, x, y in zip(curve, xs, ys):
        ax.annotate(f"{c[key]:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(full, color="C3", alpha=0.5, label="every layer")
    ax.set_xlabel("share of layer computations saved")
    ax.set_ylabel(f"dev {metric}")
    ax.set_title(f"early exit by {key}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def entropy_grid(labels: int) -> list[float]:
    """Default entropy thresholds: shares of the largest entropy, ln C, from 0 (never exit early) up."""
    return [round(f * math.log(labels), 4) for f in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)]
