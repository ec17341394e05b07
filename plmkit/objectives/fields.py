"""Grover's field-ordered language modelling: articles as fields (domain, date, authors, headline, body), each
wrapped in its begin/end tokens, split at random into a context and a target and modelled left to right
with the context first. Zellers et al. 2019, "Defending Against Neural Fake News", arXiv:1905.12616, §3
and the authors' `tokenize_for_grover_training`.

Per example, with its own draw: 35 % the body comes first and the metadata after it (each metadata field
dropped with probability 10 %) — so the model learns to write the headline or domain of a given body;
15 % all fields in canonical order; otherwise every field goes to the context or the target at random,
metadata other than the headline dropped with probability 10 %. Each part keeps canonical order; the
sequence is `sep context target sep` (the document separator ends and begins an article, as in plmkit's
packed CLM), at most seq_len + 1 tokens: a body too long for the room left is cut (its end token kept) so
the fields after it still fit (the authors cut so with probability 0.2, else let the window end inside
the body); right-padded; the loss is CLM's next-token cross-entropy over
every real token (Grover trains on all of them; padding is labelled -100).

Generation then conditions on any fields and asks for any other: the context fields in canonical order,
then the target's begin token (plmkit.workflows.grover).

The corpus is a text file of articles in the layout of plmkit.data.articles (one field per line, a blank
line between articles); the field tokens are added to the tokenizer as special tokens before the corpus
is tokenized (`special_tokens`).

Shape legend: B = batch, T = sequence length.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.articles import FIELD_TOKENS, FIELDS, begin
from ..errors import PlmkitError
from .clm import CausalLM


class Articles:
    """Example i = article i of the corpus: its fields as token-id arrays, keyed by field name."""

    def __init__(self, corpus, tokenizer):
        self.corpus = corpus
        self.field_of = {tokenizer.token_to_id(begin(f)): f for f in FIELDS}
        if None in self.field_of:
            raise PlmkitError("the tokenizer lacks Grover's field tokens (they are added before the corpus is "
                              "tokenized: pre-train with --model grover)")
        self.sep = tokenizer.doc_sep_id

    def __len__(self) -> int:
        return self.corpus.n_docs

    def __getitem__(self, d: int) -> dict[str, np.ndarray]:
        first, stop = self.corpus.doc_line_range(d)
        fields = {}
        for i in range(first, stop):
            line = self.corpus.line(i)
            line = line[line != self.sep]
            if len(line) and int(line[0]) in self.field_of:
                fields[self.field_of[int(line[0])]] = line
        return fields


class FieldOrderedLM(CausalLM):
    """CLM's loss (and step) over field-ordered articles instead of packed windows."""

    name = "fields"
    special_tokens = FIELD_TOKENS  # added to the tokenizer by `plmkit pretrain` when it lacks them
    unconditional_prob, canonical_prob, dropout_prob = 0.35, 0.15, 0.1  # the authors' settings

    def __init__(self, tokenizer, seq_len: int, seed: int = 0):
        super().__init__(tokenizer, seq_len, seed)
        self._require("pad")

    def dataset(self, corpus):
        articles = Articles(corpus, self.tokenizer)
        if not any("body" in articles[d] for d in range(min(len(articles), 20))):
            raise PlmkitError("the corpus holds no articles (lines wrapped in <|begin_body|>…<|end_body|>; see "
                              "plmkit.data.articles)", path=corpus.directory)
        return articles

    def order(self, fields: dict, u: np.ndarray) -> list[str]:
        """The fields of one example in the order they are modelled, from 11 uniform draws `u`: the case,
        then per field of FIELDS whether it is dropped, then whether it goes to the context or the target."""
        at = {f: k for k, f in enumerate(FIELDS)}
        present = [f for f in FIELDS if f in fields]
        dropped = {f: u[1 + at[f]] < self.dropout_prob for f in present}
        meta = [f for f in present if f != "body"]
        if u[0] < self.unconditional_prob:  # the body alone first, then what can be said of it
            return [f for f in present if f == "body"] + [f for f in meta if not dropped[f]]
        if u[0] < self.unconditional_prob + self.canonical_prob:
            return present
        kept = [f for f in present if f in ("headline", "body") or not dropped[f]]
        return [f for f in kept if u[6 + at[f]] < 0.5] + [f for f in kept if u[6 + at[f]] >= 0.5]

    def collate(self, examples: list[dict], generator: torch.Generator) -> dict[str, torch.Tensor]:
        draws = torch.rand(len(examples), 11, generator=generator, dtype=torch.float64).numpy()
        sep, pad = self.tokenizer.doc_sep_id, self.tokenizer.pad_id
        rows = []
        for fields, u in zip(examples, draws):
            order = self.order(fields, u)
            parts = {f: fields[f].tolist() for f in order}
            room = self.seq_len + 1 - 2 - sum(len(parts[f]) for f in order if f != "body")
            if "body" in parts and len(parts["body"]) > room > 1:  # the body is cut; its end token stays
                parts["body"] = parts["body"][:room - 1] + parts["body"][-1:]
            ids = [sep] + [t for f in order for t in parts[f]] + [sep]
            rows.append(ids[: self.seq_len + 1])
        T = max(len(r) for r in rows)
        w = torch.full((len(rows), T), pad)
        for r, ids in enumerate(rows):
            w[r, :len(ids)] = torch.tensor(ids)
        labels = w[:, 1:].clone()
        labels[torch.arange(1, T)[None, :] >= torch.tensor([len(r) for r in rows])[:, None]] = -100  # padding
        return {"input_ids": w[:, :-1], "labels": labels}
