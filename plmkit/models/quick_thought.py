"""quick-thought = skip-thought with the decoders replaced by a classifier: a second encoder g reads the
candidate sentences, and the sentence's vector f(s) must pick its true neighbours among every other
sentence of the batch by the inner product f(s)·g(c). Logeswaran & Lee 2018, ICLR, "An efficient framework
for learning sentence representations", arXiv:1803.02893, §3, eq. 1–2:

    p(c | s, S_cand) = exp(f(s)·g(c)) / Σ_{c' ∈ S_cand} exp(f(s)·g(c'))
    objective        Σ_s Σ_{c ∈ S_ctxt(s)} log p(c | s, S_cand)

f and g are GRUs with separate weights (they share the word embedding here); the vector of a sentence at
test time is [f(s); g(s)] (§4). No word is generated, so there is no softmax over the vocabulary and a
step costs two encoder passes. The data are skip-thought's (previous, sentence, next) lines of one
document: every sentence of the batch is an anchor whose context is its neighbours in its own triple, and
all the other sentences of the batch are its contrastive candidates (the paper's batches are 400
contiguous sentences, so their neighbours are in the batch too).

Shape legend: B = triples per batch, N = 3B sentences, T = words, H = GRU size.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..data.pretrain import SentenceRuns, pad_rows
from ..family import register
from ..layers.rnn import RecurrentStack
from ..objectives import OBJECTIVES, Objective
from .rnn import Rnn
from .skip_thought import SkipThought, SkipThoughtConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class QuickThoughtConfig(SkipThoughtConfig):
    embedding_size: int = 300  # §4.1: 300-d word vectors
    hidden_size: int = 1200  # §4.1: uni-QT, 1200-d GRUs (the vector [f; g] is 2400-d)


class ContextClassification(Objective):
    """Pick each sentence's neighbours among the batch's sentences: −mean over (sentence, neighbour) pairs of
    log softmax over the candidates (every other sentence of the batch)."""

    name = "quick-thought"

    def dataset(self, corpus):
        return SentenceRuns(corpus, 3, self.seq_len)

    def collate(self, examples: list[list[np.ndarray]], generator: torch.Generator) -> dict[str, torch.Tensor]:
        ids, mask = pad_rows([s for run in examples for s in run], self.tokenizer.pad_id or 0)  # (N, T), run-major
        return {"input_ids": ids, "attention_mask": mask}

    def step(self, model, batch):
        scores = model(batch["input_ids"], batch["attention_mask"], candidates=True).logits.float()  # (N, N)
        N = len(scores)
        i = torch.arange(N, device=scores.device)
        scores = scores.masked_fill(i[:, None] == i[None], float("-inf"))  # a sentence is not its own candidate
        run, pos = i // 3, i % 3
        # (N, N) True where column j is a neighbour of row i: the next or previous line of the same triple
        context = (run[:, None] == run[None]) & ((pos[:, None] - pos[None]).abs() == 1)
        logp = scores.log_softmax(-1)
        loss = -logp[context].mean()
        # how often the best-scoring candidate is a neighbour
        accuracy = context[i, scores.argmax(-1)].float().mean()
        return {"loss": loss, "tokens": int(batch["attention_mask"].sum()), "accuracy": accuracy.detach()}


OBJECTIVES.setdefault(ContextClassification.name, ContextClassification)


@register("quick-thought", parent="skip-thought", year=2018,
          paper="Logeswaran & Lee 2018, An efficient framework for learning sentence representations, ICLR, "
                "arXiv:1803.02893",
          diff={"objective": ["generate the neighbouring sentences → classify them among the batch's sentences "
                              "(in-batch candidates, inner-product scores)"],
                "body": ["− decoders, − softmax", "+ a second encoder g for the candidates",
                         "sentence vector = [f(s); g(s)]"]},
          config=QuickThoughtConfig, objective="quick-thought", tokenizer="word")
class QuickThought(SkipThought):
    config_class = QuickThoughtConfig

    def __init__(self, config: QuickThoughtConfig):
        super().__init__(config)
        self.output = None  # no word is generated: the softmax the parent builds is not needed

    def build_body(self) -> None:
        Rnn.build_body(self)  # f: the GRU stack the parent encodes with (`rnn`); no decoders
        c = self.config
        self.context_rnn = RecurrentStack(self.cell, c.embedding_size, c.hidden_size, c.num_layers, c.dropout)  # g

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False, **_) -> ModelOutput:
        """(B, T) → [f; g] states (B, T, 2H), both left to right (the last real word's is the sentence vector);
        hidden_states: the embeddings (B, T, E), then [f_j; g_j] for each layer j."""
        e = self.dropout(self.embeddings(input_ids))  # (B, T, E)
        layers = [torch.cat([f, g], -1) for f, g in zip(self.rnn(e), self.context_rnn(e))]  # L × (B, T, 2H)
        return ModelOutput(last_hidden_state=layers[-1], hidden_states=(e, *layers) if output_hidden_states else None)

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, *,
                candidates: bool = False, output_hidden_states: bool = False, **_) -> ModelOutput:
        """(N, T) → last_hidden_state [f; g] (N, T, 2H); with `candidates`, logits (N, N) = f(s_i)·g(s_j), every
        sentence of the batch scored as a candidate context of every other."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_hidden_states)
        if candidates:
            last = (attention_mask.sum(1).long() - 1 if attention_mask is not None
                    else torch.full((len(input_ids),), input_ids.shape[1] - 1, device=input_ids.device))
            f, g = out.last_hidden_state[torch.arange(len(last), device=last.device), last].chunk(2, -1)  # (N, H)
            out.logits = f @ g.T
        return out
