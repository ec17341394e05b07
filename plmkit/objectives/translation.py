"""Translation as a pre-training objective: an encoder reads a sentence, a decoder writes its translation
token by token (teacher forcing), cross-entropy on the translation. CoVe trains its encoder this way
(McCann et al. 2017, §3: English → German); LASER trains one encoder for all languages by translating
into the other language, the decoder told which one (Artetxe & Schwenk 2019, §3).

The data are `Bitext` examples (one line-aligned file per language, language id = file position). The
decoder reads `<s> y` and predicts `y </s>` (the tokenizer's cls and sep tokens).

Shape legend: B = batch, S = source length, U = target length + 1.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.parallel import Bitext
from .base import Objective


class Translation(Objective):
    """Language 0 → language 1 (CoVe's fixed direction)."""

    name = "translate"
    any_direction = False

    def __init__(self, tokenizer, seq_len: int, seed: int = 0):
        super().__init__(tokenizer, seq_len, seed)
        self._require("cls", "sep", "pad")

    def dataset(self, corpus):
        return Bitext(corpus, self.seq_len - 1)

    def collate(self, examples: list[tuple[np.ndarray, ...]], generator: torch.Generator) -> dict[str, torch.Tensor]:
        t = self.tokenizer
        n_langs = len(examples[0])
        if self.any_direction:  # a source language, then any other as the target
            src = torch.randint(n_langs, (len(examples),), generator=generator)
            tgt = (src + 1 + torch.randint(n_langs - 1, (len(examples),), generator=generator)) % n_langs
        else:
            src, tgt = torch.zeros(len(examples), dtype=torch.long), torch.ones(len(examples), dtype=torch.long)
        sources = [e[int(s)][: self.seq_len].tolist() or [t.sep_id] for e, s in zip(examples, src)]
        targets = [e[int(g)].tolist() for e, g in zip(examples, tgt)]
        S, U = max(map(len, sources)), max(map(len, targets)) + 1
        ids = torch.full((len(examples), S), t.pad_id)
        mask = torch.zeros_like(ids)
        dec = torch.full((len(examples), U), t.pad_id)
        labels = torch.full((len(examples), U), -100)
        for r, (s, y) in enumerate(zip(sources, targets)):
            ids[r, :len(s)], mask[r, :len(s)] = torch.tensor(s), 1
            dec[r, :len(y) + 1] = torch.tensor([t.cls_id, *y])
            labels[r, :len(y) + 1] = torch.tensor([*y, t.sep_id])
        return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec, "labels": labels,
                "target_lang": tgt}

    def step(self, model, batch):
        if self.any_direction:  # LASER's decoder is told the language to write
            out = model(batch["input_ids"], batch["attention_mask"], decoder_input_ids=batch["decoder_input_ids"],
                        target_lang=batch["target_lang"])
        else:  # a model that takes labels computes the loss itself, without the (B, U, V) logits
            out = model(batch["input_ids"], batch["attention_mask"], decoder_input_ids=batch["decoder_input_ids"],
                        labels=batch["labels"])
        loss = out.loss
        if loss is None:
            logits = out.logits  # (B, U, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch["labels"].reshape(-1))
        return {"loss": loss, "tokens": int((batch["labels"] != -100).sum() + batch["attention_mask"].sum())}


class TranslationAnyDirection(Translation):
    """Each pair translated from a random language into another (LASER's shared decoder)."""

    name = "translate-any"
    any_direction = True
