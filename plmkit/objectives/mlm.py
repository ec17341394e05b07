"""Masked language modelling (15 % of tokens; of those 80 % → [MASK], 10 % → a random token, 10 % kept)
and next-sentence prediction. Devlin et al. 2019, arXiv:1810.04805, §3.1 and Appendix A.1. Masks are drawn
anew each time a window is read (dynamic, RoBERTa §4.1), except in `mlm-static`, BERT's original recipe.

Shape legend: B = batch, T = sequence length, V = vocabulary, M = masked positions in the batch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.pretrain import SegmentPairs, Windows
from .base import Objective


def mask_tokens(input_ids: torch.Tensor, maskable: torch.Tensor, mask_id: int, vocab_size: int,
                generator: torch.Generator, prob: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose round(prob × maskable tokens) positions per sequence (at least one) and corrupt them 80/10/10.

    input_ids, maskable (bool): (B, T). Returns (corrupted input_ids, chosen positions as bool (B, T)).
    """
    scores = torch.rand(input_ids.shape, generator=generator).masked_fill(~maskable, 2.0)
    k = (maskable.sum(1) * prob).round().clamp(min=1)  # (B,)
    rank = scores.argsort(1).argsort(1)  # rank of each position's score within its row
    chosen = (rank < k[:, None]) & maskable  # (B, T)
    return corrupt(input_ids, chosen, mask_id, vocab_size, generator), chosen


def corrupt(input_ids: torch.Tensor, chosen: torch.Tensor, mask_id: int, vocab_size: int,
            generator: torch.Generator) -> torch.Tensor:
    """BERT's 80/10/10 at the chosen (B, T) positions, decided per token: [MASK], a random token, or kept."""
    action = torch.rand(input_ids.shape, generator=generator)
    random_tokens = torch.randint(vocab_size, input_ids.shape, generator=generator)
    corrupted = torch.where(chosen & (action < 0.8), mask_id, input_ids)
    return torch.where(chosen & (action >= 0.8) & (action < 0.9), random_tokens, corrupted)


class MaskedLM(Objective):
    """MLM alone over packed windows `[CLS] tokens… [SEP]` (no padding)."""

    name = "mlm"
    mask_prob = 0.15

    def __init__(self, tokenizer, seq_len: int, seed: int = 0):
        super().__init__(tokenizer, seq_len, seed)
        self._require("cls", "sep", "mask")
        self.specials = torch.tensor(sorted(tokenizer.special_ids))  # never masked

    def dataset(self, corpus):
        return Windows(corpus, self.seq_len - 2)

    def _add_specials(self, examples: list[np.ndarray]) -> dict[str, torch.Tensor]:
        t = self.tokenizer
        w = torch.from_numpy(np.stack(examples))  # (B, T - 2)
        B = w.shape[0]
        ids = torch.cat([torch.full((B, 1), t.cls_id), w, torch.full((B, 1), t.sep_id)], 1)  # (B, T)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}

    def _mask(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        ids = batch["input_ids"]
        maskable = batch["attention_mask"].bool() & ~torch.isin(ids, self.specials)
        batch["input_ids"], batch["masked"] = self.choose_and_corrupt(batch, maskable, generator)
        batch["labels"] = ids[batch["masked"]]  # (M,)
        return batch

    def choose_and_corrupt(self, batch: dict[str, torch.Tensor], maskable: torch.Tensor,
                           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Which tokens to predict and their corrupted input; objectives masking whole words, n-grams or
        entities override this. Returns (corrupted input_ids, chosen positions as bool (B, T))."""
        return mask_tokens(batch["input_ids"], maskable, self.tokenizer.mask_id, self.vocab_size, generator,
                           self.mask_prob)

    def collate(self, examples, generator):
        return self._mask(self._add_specials(examples), generator)

    def _mlm(self, model, batch):
        # Decode the vocabulary only at the masked positions: the rest of the logits would be thrown away.
        # The model computes the loss there itself, without holding the (M, V) logits.
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], logits_at=batch["masked"],
                     labels=batch["labels"])

    def step(self, model, batch):
        return {"loss": self._mlm(model, batch).loss, "tokens": int(batch["attention_mask"].sum())}


class Copies:
    """`copies` copies of a dataset, item j = (j, dataset[j mod n]): what BERT's preprocessing wrote to disk
    before masking (create_pretraining_data.py, dupe_factor)."""

    def __init__(self, dataset, copies: int):
        self.dataset, self.copies = dataset, copies

    def __len__(self) -> int:
        return len(self.dataset) * self.copies

    def __getitem__(self, j: int):
        return j, self.dataset[j % len(self.dataset)]


class StaticMaskedLM(MaskedLM):
    """MLM with static masks, as the original BERT was trained (RoBERTa §4.1, the baseline of Table 1): the
    corpus is duplicated `dupe_factor` = 10 times and each copy of a window is masked once, ahead of training,
    so a copy read again in a later epoch shows the same mask. Here the mask of copy j is drawn from a
    generator seeded by (seed, j) when it is read, which is the same thing without writing the copies out.

    Below one epoch of the copies (10 passes over the corpus) no mask is ever seen twice, and static masking
    is dynamic masking by another name; the difference RoBERTa measured (40 epochs: each mask seen 4 times)
    needs a corpus the budget passes over many times."""

    name = "mlm-static"
    dupe_factor = 10

    def dataset(self, corpus):
        return Copies(super().dataset(corpus), self.dupe_factor)

    def collate(self, examples, generator):
        copy_ids = [j for j, _ in examples]
        batch = self._add_specials([w for _, w in examples])
        ids = batch["input_ids"]
        maskable = batch["attention_mask"].bool() & ~torch.isin(ids, self.specials)
        rows = [mask_tokens(ids[r:r + 1], maskable[r:r + 1], self.tokenizer.mask_id, self.vocab_size,
                            torch.Generator().manual_seed(self.seed * 1_000_003 + j), self.mask_prob)
                for r, j in enumerate(copy_ids)]
        batch["input_ids"] = torch.cat([c for c, _ in rows])
        batch["masked"] = torch.cat([m for _, m in rows])
        batch["labels"] = ids[batch["masked"]]  # (M,)
        return batch


class MaskedLMWithNSP(MaskedLM):
    """BERT's full objective: `[CLS] A [SEP] B [SEP]`, B the real continuation half the time; the NSP loss
    from the pooled [CLS] is added to the MLM loss."""

    name = "mlm+nsp"
    pair_task = "nsp"  # names the sentence-pair loss and accuracy in the log

    def dataset(self, corpus):
        return SegmentPairs(corpus, self.seq_len - 3, self.seed)

    def _add_specials(self, examples: list[tuple[np.ndarray, np.ndarray, int]]) -> dict[str, torch.Tensor]:
        t = self.tokenizer
        T = max(len(a) + len(b) for a, b, _ in examples) + 3
        ids = torch.full((len(examples), T), t.pad_id if t.pad_id is not None else 0)
        types = torch.zeros_like(ids)
        attn = torch.zeros_like(ids)
        for r, (a, b, _) in enumerate(examples):
            row = [t.cls_id, *a.tolist(), t.sep_id, *b.tolist(), t.sep_id]
            ids[r, : len(row)] = torch.tensor(row)
            types[r, len(a) + 2: len(row)] = 1
            attn[r, : len(row)] = 1
        # Hugging Face's convention, so the head means the same there: 0 = B follows A, 1 = B is random.
        nsp = torch.tensor([1 - is_next for _, _, is_next in examples])
        return {"input_ids": ids, "attention_mask": attn, "token_type_ids": types, "next_sentence_label": nsp}

    def step(self, model, batch):
        out = self._mlm(model, batch)
        mlm_loss = out.loss
        nsp_logits = out.seq_relationship_logits.float()  # (B, 2)
        nsp_loss = F.cross_entropy(nsp_logits, batch["next_sentence_label"])
        nsp_acc = (nsp_logits.argmax(-1) == batch["next_sentence_label"]).float().mean()
        return {"loss": mlm_loss + nsp_loss, "tokens": int(batch["attention_mask"].sum()),
                "mlm_loss": mlm_loss.detach(), f"{self.pair_task}_loss": nsp_loss.detach(),
                f"{self.pair_task}_acc": nsp_acc}
