"""Funnel-Transformer against BERT of the same width: `python bench/funnel.py [--size tiny] [--no-train]`.

Both members are built at the size preset (the funnel's depth L as blocks L/2-L/2-L/2 plus its 2-layer
decoder, BERT's L layers), from random weights, and timed on the same MLM batches of random tokens
(vocabulary 8,000, 128 tokens) in one process, alternating which goes first, after a warm-up:
- train: forward, backward and an AdamW step of the MLM objective (the funnel through its decoder);
- [CLS]: the forward a sequence-level head needs, `encode(rows=0)` — the funnel stops after its last block,
  BERT computes its last layer at [CLS] only.
Prints each side's median tokens/s and the median of the per-round ratios funnel / BERT. Run with
OMP_NUM_THREADS=1 on a shared machine; the ratio, not the tokens/s, is the number to read.
"""

import argparse
import statistics
import time

import numpy as np
import torch

from plmkit import family
from plmkit.bench.pretrain import _Tok
from plmkit.objectives import get_objective

NAMES = ("funnel", "bert")
VOCAB, SEQ_LEN = 8000, 128


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="tiny", help="size preset of both members (default tiny)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batches", type=int, default=4, help="batches per timed round")
    p.add_argument("--no-train", action="store_true", help="time the [CLS] forward only (large sizes)")
    a = p.parse_args()

    torch.manual_seed(0)
    objective = get_objective("mlm")(_Tok(VOCAB), SEQ_LEN)
    g, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    batches = [objective.collate([rng.integers(5, VOCAB, SEQ_LEN - 2) for _ in range(a.batch_size)], g)
               for _ in range(a.batches)]
    models = {n: family.get(n).model_cls(family.get(n).config_cls.preset(a.size, vocab_size=VOCAB)) for n in NAMES}
    optimizers = {n: torch.optim.AdamW(m.parameters(), 1e-3) for n, m in models.items()}
    cls = torch.zeros(a.batch_size, dtype=torch.long)
    tokens = a.batches * a.batch_size * SEQ_LEN

    def train(n: str) -> float:
        model, opt = models[n].train(), optimizers[n]
        t = time.perf_counter()
        for b in batches:
            loss = objective.step(model, b)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        return tokens / (time.perf_counter() - t)

    def read_cls(n: str) -> float:
        model = models[n].eval()
        with torch.no_grad():
            t = time.perf_counter()
            for b in batches:
                model.encode(b["input_ids"], b["attention_mask"], rows=cls)
        return tokens / (time.perf_counter() - t)

    timed = {"[CLS]": read_cls} if a.no_train else {"train": train, "[CLS]": read_cls}
    for n in NAMES:  # warm-up
        for f in timed.values():
            f(n)
    speed = {(n, w): [] for n in NAMES for w in timed}
    for r in range(a.rounds):
        for n in NAMES if r % 2 == 0 else NAMES[::-1]:
            for w, f in timed.items():
                speed[n, w].append(f(n))
    for n in NAMES:
        c = models[n].config
        depth = "-".join(map(str, getattr(c, "block_sizes", (c.num_layers,))))
        print(f"{n:7s} {depth:8s} H{c.hidden_size} {models[n].num_parameters() / 1e6:7.2f}M parameters  " +
              "  ".join(f"{w} {statistics.median(speed[n, w]):,.0f} tokens/s" for w in timed))
    for w in timed:
        ratios = [f / b for f, b in zip(speed["funnel", w], speed["bert", w])]
        print(f"{w}: funnel / bert = {statistics.median(ratios):.2f} (rounds {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
