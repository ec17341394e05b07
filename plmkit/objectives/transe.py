"""TransE: knowledge-graph embeddings in which a relation is a translation, h + r ≈ t. Bordes et al. 2013,
"Translating Embeddings for Modeling Multi-relational Data", NeurIPS.

The data transform and the loss (Algorithm 1): each true triple (h, r, t) is paired with a corrupted one,
its head or its tail (with equal probability) replaced by a random entity; the loss is the margin
ranking loss [γ + d(h + r, t) − d(h' + r, t')]₊ with d the L1 distance (the paper's choice for WordNet).
Entity vectors are kept on the unit sphere (the paper renormalises them before each batch; here the
distance reads them normalised, the same constraint without an in-place step); relations are initialised
uniform in ±6/√k and normalised once, as in the paper. It trains with plmkit's Trainer (AdamW, no weight
decay) and gives ERNIE-THU its entity embeddings (plmkit.objectives.dea).

The model is nothing but the two tables the loss scores, so it lives here with its objective.

Shape legend: B = batch, E = entities (row 0 = "no entity", never trained), R = relations, K = dimension.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class TransE(nn.Module):
    def __init__(self, num_entities: int, num_relations: int, dim: int = 100):
        super().__init__()
        bound = 6 / math.sqrt(dim)
        self.entities = nn.Embedding(num_entities, dim)  # (E, K)
        self.relations = nn.Embedding(num_relations, dim)  # (R, K)
        nn.init.uniform_(self.entities.weight, -bound, bound)
        nn.init.uniform_(self.relations.weight, -bound, bound)
        with torch.no_grad():
            self.relations.weight.copy_(F.normalize(self.relations.weight, dim=-1))

    def distance(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B,) ids of heads, relations, tails → (B,) L1 distance ‖h + r − t‖ with unit-norm entities."""
        e = lambda i: F.normalize(self.entities(i), dim=-1)  # noqa: E731
        return (e(h) + self.relations(r) - e(t)).abs().sum(-1)

    def vectors(self) -> torch.Tensor:
        """(E, K) the entity vectors as the loss sees them (unit norm; row 0 zero)."""
        v = F.normalize(self.entities.weight.detach(), dim=-1).clone()
        v[0] = 0
        return v

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class Triples:
    """The (h, r, t) id triples as a dataset: example i is triple i."""

    def __init__(self, triples: np.ndarray):
        self.triples = triples  # (N, 3) int64

    def __len__(self) -> int:
        return len(self.triples)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.triples[i]


class TransEObjective:
    """Corrupted triples and the margin ranking loss, in the Trainer's collate/step form."""

    name = "transe"

    def __init__(self, num_entities: int, margin: float = 1.0):
        self.num_entities, self.margin = num_entities, margin

    def collate(self, examples: list[np.ndarray], generator: torch.Generator) -> dict[str, torch.Tensor]:
        pos = torch.from_numpy(np.stack(examples))  # (B, 3)
        neg = pos.clone()
        side = torch.rand(len(pos), generator=generator) < 0.5  # corrupt the head, else the tail
        random = torch.randint(1, self.num_entities, (len(pos),), generator=generator)
        neg[:, 0] = torch.where(side, random, pos[:, 0])
        neg[:, 2] = torch.where(side, pos[:, 2], random)
        return {"positive": pos, "negative": neg}

    def step(self, model, batch: dict[str, torch.Tensor]) -> dict:
        p, n = batch["positive"], batch["negative"]
        d_pos, d_neg = model.distance(p[:, 0], p[:, 1], p[:, 2]), model.distance(n[:, 0], n[:, 1], n[:, 2])
        loss = F.relu(self.margin + d_pos - d_neg).mean()
        return {"loss": loss, "tokens": len(p), "ranked_right": (d_pos < d_neg).float().mean()}
