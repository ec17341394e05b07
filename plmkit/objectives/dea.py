"""The denoising entity auto-encoder (dEA) alongside BERT's MLM + NSP: ERNIE-THU's pre-training. Zhang et al.
2019, arXiv:1905.07129, §3.4.

Every sentence pair is linked against the knowledge base (plmkit.data.knowledge: string match, the entity
aligned to a mention's first token) before masking. dEA then corrupts the alignments: of the aligned tokens,
5 % get a random entity instead, 15 % lose theirs (the model must recover it from the text), the rest keep
it; every aligned token predicts its true entity from its final state, scored against the candidates —
the entities of the batch, as the authors' release does (the paper says those of the sequence, to keep the
softmax off the whole KB). Loss = MLM + NSP + dEA. The MLM masking is BERT's and independent of the
entities, so a masked mention may keep its entity: then the word is to be read from the knowledge.

The entity vectors come from the KB directory's TransE (`plmkit knowledge prepare`); the objective sizes
the model's entity table and mention tables from the KB (`model_fields`) and installs them (`attach`).

Shape legend: B = batch, T = sequence length, N = aligned tokens in the batch, C = candidate entities.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.knowledge import EntityLinker, KnowledgeBase
from ..errors import PlmkitError
from .mlm import MaskedLMWithNSP


def load_vectors(kb_dir: Path) -> torch.Tensor:
    """(E, K) the TransE entity vectors a KB directory holds."""
    from safetensors.torch import load_file

    path = Path(kb_dir) / "transe.safetensors"
    if not path.is_file():
        raise PlmkitError("no transe.safetensors: the KB has no entity vectors (run `plmkit knowledge prepare`)",
                          path=kb_dir)
    return load_file(str(path))["entities"]


class DenoisingEntityAutoencoder(MaskedLMWithNSP):
    name = "mlm+nsp+dea"
    replace_prob, drop_prob = 0.05, 0.15  # of the aligned tokens (§3.4)

    def __init__(self, tokenizer, seq_len: int, seed: int = 0, kb: str | None = None):
        super().__init__(tokenizer, seq_len, seed)
        if kb is None:
            raise PlmkitError("the mlm+nsp+dea objective needs a knowledge base: [data] kb = DIR "
                              "(written by `plmkit knowledge prepare`)")
        self.kb = KnowledgeBase.load(kb)
        self.vectors = load_vectors(kb)
        if len(self.vectors) != len(self.kb.entities):
            raise PlmkitError(f"transe.safetensors has {len(self.vectors)} rows for {len(self.kb.entities)} entities",
                              path=kb)
        self.linker = EntityLinker.from_kb(self.kb, tokenizer)

    def model_fields(self) -> dict:
        """The config fields the KB decides."""
        ids, _, _ = self.linker.to_tensors()
        return {"entity_vocab_size": len(self.vectors), "entity_size": self.vectors.shape[1],
                "num_mentions": ids.shape[0], "mention_length": ids.shape[1]}

    def attach(self, model) -> None:
        model.set_knowledge(self.vectors, self.linker)

    def collate(self, examples, generator):
        batch = self._add_specials(examples)
        entities = self.linker.link(batch["input_ids"])  # (B, T) on the clean text
        batch = self._mask(batch, generator)
        aligned = entities > 0
        u = torch.rand(entities.shape, generator=generator)
        random = torch.randint(1, len(self.vectors), entities.shape, generator=generator)
        corrupted = torch.where(aligned & (u < self.replace_prob), random, entities)
        corrupted = torch.where(aligned & (u >= self.replace_prob) & (u < self.replace_prob + self.drop_prob),
                                0, corrupted)
        candidates = entities[aligned].unique()  # (C,) sorted
        batch.update(entity_ids=corrupted, dea_positions=aligned, dea_candidates=candidates,
                     dea_labels=torch.searchsorted(candidates, entities[aligned]))  # (N,) index into candidates
        return batch

    def step(self, model, batch):
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], logits_at=batch["masked"],
                    labels=batch["labels"], entity_ids=batch["entity_ids"])
        nsp_logits = out.seq_relationship_logits.float()  # (B, 2)
        nsp_loss = F.cross_entropy(nsp_logits, batch["next_sentence_label"])
        metrics = {"tokens": int(batch["attention_mask"].sum()), "mlm_loss": out.loss.detach(),
                   "nsp_loss": nsp_loss.detach()}
        h = out.last_hidden_state[batch["dea_positions"]]  # (N, H)
        logits = getattr(model, "module", model).entity_logits(h, batch["dea_candidates"]).float()  # (N, C)
        # A batch without a single entity (N = 0) adds nothing: the mean over no tokens would be NaN.
        dea_loss = F.cross_entropy(logits, batch["dea_labels"], reduction="sum") / max(1, len(logits))
        dea_acc = (logits.argmax(-1) == batch["dea_labels"]).float().sum() / max(1, len(logits))
        return {"loss": out.loss + nsp_loss + dea_loss, **metrics, "dea_loss": dea_loss.detach(), "dea_acc": dea_acc}
