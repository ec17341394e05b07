"""Unsupervised SimCSE: each sentence is its own positive, seen twice through the encoder with different
dropout masks; the other sentences of the batch are the negatives. Gao, Yao & Chen 2021, EMNLP, "SimCSE:
Simple Contrastive Learning of Sentence Embeddings", §3, eq. 4:

    ℓ_i = −log  exp(sim(h_i, h_i⁺) / τ) / Σ_j exp(sim(h_i, h_j⁺) / τ),   sim = cosine,  τ = 0.05

An objective for any encoder, not a member: `plmkit pretrain --init DIR --objective simcse` trains the
body of DIR (BERT or any of its family, ELMo, …) and keeps its member. Both views go through one forward
pass of the batch stacked twice, as the released code does: dropout draws a fresh mask per element, so the
two copies differ only by it. The sentence vector is `plmkit embed`'s "auto" one: [CLS] (a causal body's
last token, ELMo's own pooling), with BERT's pooler (dense + tanh, the paper's MLP) on top during
training only — "w/ MLP (train)", the paper's choice for unsupervised SimCSE (§6.3, Table 6) — so that
`plmkit embed` reads [CLS] without the pooler, as the paper evaluates. Data: one sentence per corpus line.

Shape legend: B = sentences per batch, T = tokens, H = hidden size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.pretrain import SentenceRuns
from ..errors import PlmkitError
from .base import Objective


class SimCSE(Objective):
    name = "simcse"
    temperature = 0.05  # τ (§3; the paper's Table D.1 finds 0.05 best)
    pooling = "auto"  # the vector `plmkit embed` reads by default

    def dataset(self, corpus):
        return SentenceRuns(corpus, 1, self.seq_len - 2)  # room for [CLS] and [SEP]

    def collate(self, examples: list[list[np.ndarray]], generator: torch.Generator) -> dict:
        # Framing needs the body (its [CLS]/[SEP] or its own frame), which `step` has.
        return {"sentences": [run[0] for run in examples]}

    def step(self, model, batch):
        from ..heads.pooling import frame, pool

        body = getattr(model, "module", None)
        if body is not None:
            raise PlmkitError("simcse runs the encoder outside its DDP wrapper; train it in one process")
        x, mask = frame(model, self.tokenizer, batch["sentences"], self.seq_len)  # (B, T) each
        device = next(model.parameters()).device
        x, mask = torch.cat([x, x]).to(device), torch.cat([mask, mask]).to(device)  # (2B, T): two dropout views
        z = pool(model, x, mask, self.pooling)  # (2B, H)
        if getattr(model, "pooler", None) is not None:
            z = torch.tanh(model.pooler(z))
        z1, z2 = z.float().chunk(2)  # (B, H) each
        sim = F.normalize(z1, dim=-1) @ F.normalize(z2, dim=-1).T / self.temperature  # (B, B)
        target = torch.arange(len(sim), device=sim.device)
        loss = F.cross_entropy(sim, target)
        accuracy = (sim.argmax(1) == target).float().mean()  # how often a sentence picks its own other view
        return {"loss": loss, "tokens": int(mask.sum()), "accuracy": accuracy.detach()}
