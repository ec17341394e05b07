"""UniLM's pre-training: the four LMs of one network as cloze tasks, mixed within each batch — 1/3
bidirectional (with next-sentence prediction), 1/3 sequence-to-sequence, 1/6 left-to-right, 1/6
right-to-left. Dong et al. 2019, arXiv:1905.03197, §2.2–2.3.

Inputs (Fig. 1): the bidirectional and sequence-to-sequence LMs read a segment pair `[CLS] A [SEP] B [SEP]`
(sequence-to-sequence: A the source, B its real continuation the target); the unidirectional LMs read
one segment `[CLS] A B [SEP]`. 15 % of the tokens are masked (80/10/10), as whole single tokens 80 % of
the time and as bigrams or trigrams 20 % (§2.3); the segment ids name the mode.

Shape legend: B = batch, T = sequence length, M = masked positions in the batch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.pretrain import SegmentPairs
from .mlm import MaskedLMWithNSP
from .spans import mask_spans

MODES = ("bidirectional", "left-to-right", "right-to-left", "seq2seq")
# Segment ids per mode: (first segment, second segment); the unidirectional LMs read one segment.
SEGMENTS = {"bidirectional": (0, 1), "left-to-right": (2, 2), "right-to-left": (3, 3), "seq2seq": (4, 5)}


def attention_mask(mode: str, second: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Which keys each query sees under one LM mode (Fig. 1). second: (B, T) bool, the second segment
    (seq2seq: the target); real: (B, T) bool, not padding. Returns (B, T, T) bool, query × key; every
    query sees itself, so a padding row never attends to nothing."""
    T = real.shape[1]
    i = torch.arange(T, device=real.device)
    left = i[None, :] <= i[:, None]  # (T, T) key j ≤ query i
    if mode == "bidirectional":
        seen = real[:, None, :].expand(-1, T, -1)
    elif mode == "left-to-right":
        seen = real[:, None, :] & left
    elif mode == "right-to-left":
        seen = real[:, None, :] & left.T
    elif mode == "seq2seq":  # the source reads itself both ways; the target reads the source and its own left
        source = real & ~second
        seen = source[:, None, :] | (second[:, :, None] & second[:, None, :] & left)
    else:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
    return seen | torch.eye(T, dtype=torch.bool, device=real.device)


MIX = {"bidirectional": 1 / 3, "left-to-right": 1 / 6, "right-to-left": 1 / 6, "seq2seq": 1 / 3}  # §2.3, by MODES
NGRAMS = (0.8, 0.1, 0.1)  # a masked unit is 1, 2 or 3 tokens long (§2.3)


class PairsBothWays:
    """Example i: two segment pairs cut at the same place, a pure function of (seed, i): one whose B is a
    random segment half the time (for the bidirectional LM's NSP), and one whose B always continues A (for
    the other LMs); the batch decides which one a row uses."""

    def __init__(self, corpus, max_tokens: int, seed: int = 0):
        self.nsp = SegmentPairs(corpus, max_tokens, seed)
        self.next = SegmentPairs(corpus, max_tokens, seed, random_next_prob=0.0)

    def __len__(self) -> int:
        return len(self.nsp)

    def __getitem__(self, i: int) -> tuple[tuple[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray, int]]:
        return self.nsp[i], self.next[i]


def batch_modes(n: int, generator: torch.Generator) -> list[str]:
    """The LM mode of each of n rows: MIX's shares of the batch, by systematic sampling (a random offset,
    then every 1/n) over a random order, so each mode gets its share ± 1 row and a batch of 3 or more
    always holds a bidirectional row."""
    u = float(torch.rand((), generator=generator))
    bounds = np.cumsum([MIX[m] for m in MODES])
    slots = [MODES[min(int(np.searchsorted(bounds, (k + u) / n, side="right")), len(MODES) - 1)]
             for k in range(n)]
    return [slots[k] for k in torch.randperm(n, generator=generator).tolist()]


class UnifiedLM(MaskedLMWithNSP):
    name = "unilm"

    def dataset(self, corpus):
        return PairsBothWays(corpus, self.seq_len - 3, self.seed)

    def collate(self, examples, generator):
        modes = batch_modes(len(examples), generator)
        pairs = [(*(nsp if mode == "bidirectional" else nxt), mode) for (nsp, nxt), mode in zip(examples, modes)]
        return self._mask(self._add_specials(pairs), generator)

    def _add_specials(self, examples: list[tuple[np.ndarray, np.ndarray, int, str]]) -> dict[str, torch.Tensor]:
        t = self.tokenizer
        T = max(len(a) + len(b) for a, b, _, _ in examples) + 3
        ids = torch.full((len(examples), T), t.pad_id if t.pad_id is not None else 0)
        types, second = torch.zeros_like(ids), torch.zeros(ids.shape, dtype=torch.bool)
        real = torch.zeros(ids.shape, dtype=torch.bool)
        masks = []
        for r, (a, b, _, mode) in enumerate(examples):
            pair = mode in ("bidirectional", "seq2seq")
            row = [t.cls_id, *a.tolist(), *([t.sep_id] if pair else []), *b.tolist(), t.sep_id]
            ids[r, :len(row)] = torch.tensor(row)
            real[r, :len(row)] = True
            first, other = SEGMENTS[mode]
            types[r, :len(row)] = first
            if pair:
                second[r, len(a) + 2:len(row)] = True
                types[r, len(a) + 2:len(row)] = other
            masks.append(attention_mask(mode, second[r:r + 1], real[r:r + 1])[0])
        bi = torch.tensor([mode == "bidirectional" for *_, mode in examples])
        nsp = torch.tensor([1 - is_next for _, _, is_next, _ in examples])  # 0 = B follows A (HF's convention)
        return {"input_ids": ids, "attention_mask": torch.stack(masks), "token_type_ids": types, "real": real,
                "bidirectional": bi, "next_sentence_label": nsp}

    def _mask(self, batch, generator):
        ids = batch["input_ids"]
        maskable = batch["real"] & ~torch.isin(ids, self.specials)
        batch["input_ids"], batch["masked"] = mask_spans(ids, maskable, self.tokenizer.mask_id, self.vocab_size,
                                                         generator, self.mask_prob, max_n=3, p_n=NGRAMS)
        batch["labels"] = ids[batch["masked"]]  # (M,)
        return batch

    def step(self, model, batch):
        out = self._mlm(model, batch)
        bi = batch["bidirectional"]
        # NSP belongs to the bidirectional LM: its rows only (a batch of fewer than 3 rows may have none).
        nsp_logits = out.seq_relationship_logits[bi].float()  # (B_bi, 2)
        nsp_loss = (F.cross_entropy(nsp_logits, batch["next_sentence_label"][bi]) if bool(bi.any())
                    else nsp_logits.sum())  # zero, and still part of the graph
        return {"loss": out.loss + nsp_loss, "tokens": int(batch["real"].sum()), "mlm_loss": out.loss.detach(),
                "nsp_loss": nsp_loss.detach()}
