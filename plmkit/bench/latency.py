"""Inference speed of fine-tuned models side by side, for compression.json and the frontier: examples/s at a
given batch size on the same examples, tokenization included, through `plmkit.heads.evaluate` (what
`plmkit evaluate` and `predict` run). The models alternate round by round after an untimed warm-up, so
drifts in the machine's speed (other jobs on a shared machine) hit each of them alike."""

from __future__ import annotations

import time
from typing import Any

import torch

# Examples timed per batch size: enough batches at 32 to average over lengths, few at 1 (slow).
EXAMPLES = {1: 64, 32: 256}


def throughput(models: dict[str, Any], examples: list, batch_sizes=(1, 32), rounds: int = 3) -> dict:
    """{"examples_per_s": {name: {"B": examples/s}}, "examples": {"B": n}, "rounds", "threads"} for TaskModels
    `models` (each with `.tokenizer`) on the first EXAMPLES[B] of `examples`, batch sizes B as strings (the
    JSON keys)."""
    from ..heads import evaluate

    speed: dict[str, dict[str, float]] = {name: {} for name in models}
    counts = {}
    for b in batch_sizes:
        chunk = examples[:EXAMPLES.get(b, 8 * b)]
        counts[str(b)] = len(chunk)
        for m in models.values():
            evaluate(m, m.tokenizer, chunk[:b], labelled=False, batch_size=b)
        seconds = dict.fromkeys(models, 0.0)
        for _ in range(rounds):
            for name, m in models.items():
                t = time.perf_counter()
                evaluate(m, m.tokenizer, chunk, labelled=False, batch_size=b)
                seconds[name] += time.perf_counter() - t
        for name in models:
            speed[name][str(b)] = len(chunk) * rounds / seconds[name]
    return {"examples_per_s": speed, "examples": counts, "rounds": rounds, "threads": torch.get_num_threads()}
