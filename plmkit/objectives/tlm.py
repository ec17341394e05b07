"""Translation language modelling (TLM) alongside masked LM over sentences of a parallel corpus.
Lample & Conneau 2019, arXiv:1901.07291, §3.3 and Figure 1.

TLM concatenates a sentence and its translation, `[CLS] a [SEP] [CLS] b [SEP]`, masks 15 % of the tokens of
both (80/10/10), and resets the positions at the start of the translation, so a masked English word can be
predicted from the Chinese context as well as the English one. Every token carries its language id (read
by the model's language embedding). MLM is the same over one sentence alone. Each example of a batch is a
TLM pair with probability `tlm_prob`, else one of its sentences (language drawn uniformly) for MLM; the
paper alternates MLM and TLM batches, which is the same mixture in expectation.

The data are `Bitext` examples: a corpus built from line-aligned files, one per language, language id =
the file's position on the command line.

Shape legend: B = batch, T = sequence length, M = masked positions in the batch.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.parallel import Bitext
from ..errors import PlmkitError
from .mlm import MaskedLM


class TranslationMaskedLM(MaskedLM):
    name = "mlm+tlm"
    tlm_prob = 0.5

    def dataset(self, corpus):
        return Bitext(corpus, self.seq_len // 2 - 2)  # a pair with its four specials fits seq_len

    def _rows(self, example: tuple[np.ndarray, ...], draw: torch.Tensor,
              generator: torch.Generator) -> list[tuple[list[int], int]]:
        """The sentences of one input row with their languages: the pair, or one sentence."""
        t = self.tokenizer
        framed = [([t.cls_id, *s.tolist(), t.sep_id], lang) for lang, s in enumerate(example)]
        if draw[0] < self.tlm_prob:
            langs = torch.randperm(len(example), generator=generator)[:2].sort().values.tolist()
            return [framed[i] for i in langs]
        return [framed[int(draw[1] * len(example))]]

    def collate(self, examples, generator):
        t = self.tokenizer
        draws = torch.rand(len(examples), 2, generator=generator)  # (B, 2): TLM or MLM, which side
        rows = [self._rows(e, d, generator) for e, d in zip(examples, draws)]
        T = max(sum(len(ids) for ids, _ in r) for r in rows)
        ids = torch.full((len(rows), T), t.pad_id if t.pad_id is not None else 0)
        langs, positions, attn = torch.zeros_like(ids), torch.zeros_like(ids), torch.zeros_like(ids)
        for r, sentences in enumerate(rows):
            at = 0
            for s, lang in sentences:
                n = len(s)
                ids[r, at:at + n] = torch.tensor(s)
                langs[r, at:at + n] = lang
                positions[r, at:at + n] = torch.arange(n)  # each sentence counts from 0 (§3.3)
                attn[r, at:at + n] = 1
                at += n
        batch = {"input_ids": ids, "attention_mask": attn, "token_type_ids": langs, "position_ids": positions,
                 "tlm": torch.tensor([len(r) == 2 for r in rows])}
        return self._mask(batch, generator)

    def step(self, model, batch):
        n_langs = getattr(getattr(model, "module", model).config, "n_langs", None)
        if n_langs is not None and int(batch["token_type_ids"].max()) >= n_langs:
            raise PlmkitError(f"the corpus has more languages (files) than the model's n_langs={n_langs}; "
                              "set --set n_langs=N")
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], logits_at=batch["masked"],
                    labels=batch["labels"], position_ids=batch["position_ids"])
        return {"loss": out.loss, "tokens": int(batch["attention_mask"].sum()),
                "tlm_share": batch["tlm"].float().mean()}
