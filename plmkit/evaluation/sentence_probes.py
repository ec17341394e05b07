"""Probes of sentence vectors, SentEval-style (Conneau & Kiela 2018, LREC, "SentEval: An Evaluation Toolkit
for Universal Sentence Representations"): the encoder stays frozen, every text of a task becomes one vector,
and only a simple model on top is trained, so the score measures what the vectors hold.

A task is a folder with `train`, `dev` (optional) and `test` files (JSONL, CSV or TSV, read as by
`plmkit finetune`):
    {"text", "label"}             linear probe: multinomial logistic regression on the vectors, its L2
                                  strength picked on dev from a grid (SentEval's transfer protocol; dev is
                                  10 % of train when there is no dev file), test accuracy and macro-F1;
                                  and 1-nearest-neighbour accuracy: the label of the most cosine-similar
                                  training text.
    {"text_a", "text_b", "label"} the same probe on SentEval's pair features [u; v; |u − v|; u ∗ v].
    {"text_a", "text_b"}          retrieval (only `test` is needed): each text_a ranks every text_b of the
                                  file by cosine; recall@1, recall@10 and mean reciprocal rank of its own.
Features are standardised with the training set's mean and deviation before the regression (SentEval
does not), so one L2 grid suits vectors of any scale. The regression is fitted with full-batch L-BFGS.

Shape legend: n = texts, d = vector size, C = labels.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.tasks import read_task
from ..errors import PlmkitError
from .metrics import confusion_metrics

log = logging.getLogger("plmkit")

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
SUFFIXES = (".jsonl", ".csv", ".tsv")


def shared_data_dir() -> Path:
    """$PLMKIT_DATA, else the `shared/data` folder beside the repository (a source checkout's test data)."""
    env = os.environ.get("PLMKIT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def default_tasks() -> list[Path]:
    """The shared data's classification tasks: every tasks/* folder whose train.jsonl holds text and label."""
    root = shared_data_dir() / "tasks"
    found = []
    for d in sorted(root.glob("*")) if root.is_dir() else []:
        first = _first_record(d, "train")
        if first is not None and "text" in first and "label" in first:
            found.append(d)
    if not found:
        raise PlmkitError("no --tasks given and no shared classification tasks found (set PLMKIT_DATA to the data "
                          "folder, or name task folders with --tasks)", path=root)
    return found


def _split_file(d: Path, split: str) -> Path | None:
    return next((d / f"{split}{s}" for s in SUFFIXES if (d / f"{split}{s}").is_file()), None)


def _first_record(d: Path, split: str) -> dict | None:
    path = _split_file(d, split)
    if path is None:
        return None
    if path.suffix != ".jsonl":
        import csv

        with open(path, encoding="utf-8", newline="") as f:
            return next(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","), None)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    return json.loads(line)
                except json.JSONDecodeError as e:
                    raise PlmkitError(f"not valid JSON: {e.msg}", path=path, line=n) from None
    return None


def logistic_regression(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float, max_iter: int = 200
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, mean cross-entropy + l2/2 ‖W‖², from zero weights by full-batch L-BFGS:
    x (n, d), y (n,) → W (d, C), b (C,). Convex, so the optimum does not depend on the start.

    One thread: each of the few hundred small products costs less than handing it to a second thread does
    (300 × 8 features: 0.15 s on one thread, 12 s on two, on a busy 2-core machine)."""
    W = torch.zeros(x.shape[1], classes, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-6)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ W + b, y) + l2 / 2 * W.pow(2).sum()
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    return W.detach(), b.detach()


def linear_probe(train: tuple[np.ndarray, np.ndarray], dev: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], classes: int, grid=L2_GRID) -> dict:
    """Fit on train for each L2 strength in `grid`, keep the best on dev, score it on test. Each pair is
    (vectors (n, d), label ids (n,))."""
    mean, std = train[0].mean(0), train[0].std(0) + 1e-8
    x_tr, x_dev, x_te = (torch.from_numpy((a[0] - mean) / std).double() for a in (train, dev, test))
    y_tr, y_dev = torch.from_numpy(train[1]), torch.from_numpy(dev[1])
    best = None
    for l2 in grid:
        W, b = logistic_regression(x_tr, y_tr, classes, l2)
        acc = float(((x_dev @ W + b).argmax(1) == y_dev).double().mean())
        if best is None or acc > best[0]:
            best = (acc, l2, W, b)
    acc, l2, W, b = best
    cm = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(cm, (test[1], (x_te @ W + b).argmax(1).numpy()), 1)
    m = confusion_metrics(cm)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "dev_accuracy": acc, "l2": l2}


def _unit(x: np.ndarray) -> torch.Tensor:
    return F.normalize(torch.from_numpy(x).float(), dim=-1)


def nearest_neighbour(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                      chunk: int = 1024) -> float:
    """Accuracy of the label of each test vector's most cosine-similar training vector."""
    a, b = _unit(train[0]), _unit(test[0])
    nearest = torch.cat([(b[i:i + chunk] @ a.T).argmax(1) for i in range(0, len(b), chunk)])
    return float((train[1][nearest.numpy()] == test[1]).mean())


def retrieval(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> dict:
    """a[i] ranks every row of b by cosine; its match is b[i]. Ties count against it."""
    qa, qb = _unit(a), _unit(b)
    ranks = []
    for i in range(0, len(qa), chunk):
        s = qa[i:i + chunk] @ qb.T  # (c, n)
        own = s[torch.arange(len(s)), torch.arange(i, i + len(s))]
        ranks.append((s >= own[:, None]).sum(1))  # 1 = first
    r = torch.cat(ranks).double()
    return {"recall@1": float((r <= 1).double().mean()), "recall@10": float((r <= 10).double().mean()),
            "mrr": float((1 / r).mean()), "n": len(r)}


def evaluate_embeddings(model_dir: str | os.PathLike, tasks: list[str | os.PathLike] | None = None,
                        method: str = "auto", max_length: int = 128, batch_size: int = 64,
                        max_train: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Probe the sentence vectors of the model in `model_dir` on each task folder (default: the shared
    classification tasks); `max_train` caps the training texts (a seeded sample) to bound the time."""
    from .. import load, load_tokenizer
    from ..heads.pooling import embed, resolve_method

    t0 = time.perf_counter()
    model, tokenizer = load(model_dir), load_tokenizer(model_dir)
    method = resolve_method(model, model_dir, method)
    folders = [Path(t) for t in tasks] if tasks else default_tasks()

    def vectors(texts: list[str]) -> np.ndarray:
        return embed(model, tokenizer, texts, method, max_length, batch_size, progress).numpy()

    results = {}
    for d in folders:
        if not d.is_dir():
            raise PlmkitError("task folder not found", path=d)
        results[d.name] = _evaluate_task(d, vectors, max_train, seed)
        log.info("%s: %s", d.name, json.dumps({k: v for k, v in results[d.name].items() if k != "kind"}))
    probes = [r["probe"]["accuracy"] for r in results.values() if "probe" in r]
    return {"model": str(model_dir), "member": model.family_name, "method": method,
            "dimensions": int(vectors(["a"]).shape[1]), "tasks": results,
            "mean_probe_accuracy": float(np.mean(probes)) if probes else None,
            "seconds": round(time.perf_counter() - t0, 1)}


def _evaluate_task(d: Path, vectors, max_train: int | None, seed: int) -> dict:
    first = _first_record(d, "test")
    if first is None:
        raise PlmkitError("no test.jsonl, test.csv or test.tsv", path=d)
    pair, labelled = "text_b" in first, "label" in first
    if pair and not labelled:
        ex = read_task(_split_file(d, "test"), "pair", labelled=False)
        return {"kind": "retrieval", "retrieval": retrieval(vectors([e.text for e in ex]),
                                                            vectors([e.text_b for e in ex]))}
    task = "pair" if pair else "classify"
    splits = {}
    for split in ("train", "dev", "test"):
        path = _split_file(d, split)
        if path is None and split != "dev":
            raise PlmkitError(f"no {split}.jsonl, {split}.csv or {split}.tsv", path=d)
        splits[split] = read_task(path, task) if path else None
    rng = np.random.default_rng(seed)
    train = splits["train"]
    if max_train and len(train) > max_train:
        train = [train[i] for i in sorted(rng.choice(len(train), max_train, replace=False))]
    if splits["dev"] is None:  # SentEval's fallback: hold out part of train for the L2 choice
        order = rng.permutation(len(train))
        cut = max(1, len(train) // 10)
        splits["dev"], train = [train[i] for i in order[:cut]], [train[i] for i in order[cut:]]
    labels = sorted({e.label for e in train})
    if len(labels) < 2:
        raise PlmkitError(f"the training texts hold {len(labels)} label(s); a probe needs at least two", path=d)
    index = {lab: i for i, lab in enumerate(labels)}

    def features(examples) -> tuple[np.ndarray, np.ndarray]:
        known = [e for e in examples if e.label in index]  # a label train lacks cannot be predicted: skipped
        u = vectors([e.text for e in known])
        if pair:
            v = vectors([e.text_b for e in known])
            u = np.concatenate([u, v, np.abs(u - v), u * v], 1)
        return u, np.array([index[e.label] for e in known], dtype=np.int64)

    tr, dev, te = features(train), features(splits["dev"]), features(splits["test"])
    result = {"kind": task, "train": len(tr[1]), "dev": len(dev[1]), "test": len(te[1]), "labels": len(labels),
              "probe": linear_probe(tr, dev, te, len(labels))}
    if not pair:
        result["nearest_neighbour"] = {"accuracy": nearest_neighbour(tr, te)}
    return result
