"""skip-thought = RNN LM with GRU cells whose objective is the next word → the neighbouring sentences: the
encoder reads a sentence, two GRU decoders conditioned on its final state generate the sentence before
and the one after; whole words; vocabulary expansion from word2vec. Kiros et al. 2015, NeurIPS,
"Skip-Thought Vectors", arXiv:1506.06726, §2.

    encoder   h_i = the GRU's last state over the words of sentence s_i (§2.1): the skip-thought vector
    decoders  a GRU each for s_{i−1} and s_{i+1}, every gate also reading C·h_i; one vocabulary matrix V
              (the softmax) shared by both, and one word embedding shared with the encoder
    objective Σ_t log P(w_{i+1}^t | w_{i+1}^{<t}, h_i) + Σ_t log P(w_{i−1}^t | w_{i−1}^{<t}, h_i)

The conditioning is an input: each decoder step reads [x_t; h_i], so its input matrix holds the paper's W
and C together (torch's GRU applies the reset gate to U·h_{t−1} + b where the paper has U(r ⊙ h_{t−1}), the
cuDNN form). A decoder reads [SEP] w^1 … w^n and predicts w^1 … w^n [SEP]: the document separator stands
for <eos>. Training data are (previous, sentence, next) lines of one document, one sentence per line
(BookCorpus in the paper). The words are the lower-cased words of a word-level tokenizer trained on the
corpus (the paper kept 20k); `expand_vocabulary` (§2.2) then maps word2vec vectors into the encoder's word
space with a linear map fit on the words both know, so the encoder reads every word2vec word.

As a fine-tuning body and for `plmkit embed`, the encoder is causal: the vector of a text is its last
state. Shape legend: B = batch, T = words, V = vocabulary, E = word embedding size, H = GRU size.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..data.pretrain import SentenceRuns, pad_rows
from ..errors import PlmkitError
from ..family import register
from ..layers.lm_loss import lm_cross_entropy
from ..objectives import OBJECTIVES, Objective
from .rnn import Rnn, RnnConfig
from .transformer import ModelOutput

NEIGHBOURS = ("previous", "next")


@dataclasses.dataclass(frozen=True)
class SkipThoughtConfig(RnnConfig):
    embedding_size: int = 620  # the paper's word vectors
    hidden_size: int = 2400  # uni-skip's GRU
    dropout: float = 0.0  # the paper trains without dropout

    # base: uni-skip (§3: 620-d words, 2400-d GRU); tiny and mini for a CPU.
    SIZES: ClassVar[dict[str, dict]] = {"tiny": dict(embedding_size=128, hidden_size=256),
                                        "mini": dict(embedding_size=256, hidden_size=512),
                                        "base": dict(embedding_size=620, hidden_size=2400)}
    causal = property(lambda self: False)  # its softmax serves the decoders: it is no LM of its input


@dataclasses.dataclass
class SkipThoughtOutput(ModelOutput):
    neighbour_losses: dict[str, torch.Tensor] | None = None  # each decoder's mean cross-entropy


class NeighbourSentences(Objective):
    """Encode each sentence; decode the one before and the one after from its vector (teacher forcing)."""

    name = "skip-thought"

    def dataset(self, corpus):
        return SentenceRuns(corpus, 3, self.seq_len - 1)  # room for the decoders' [SEP]

    def collate(self, examples: list[list[np.ndarray]], generator: torch.Generator) -> dict[str, torch.Tensor]:
        sep, pad = self.tokenizer.doc_sep_id, self.tokenizer.pad_id or 0
        before, sentence, after = zip(*examples)
        ids, mask = pad_rows(sentence, pad)  # (B, T)
        batch = {"input_ids": ids, "attention_mask": mask}
        for name, targets in zip(NEIGHBOURS, (before, after)):
            batch[f"{name}_input_ids"] = pad_rows([[sep, *y] for y in targets], pad)[0]  # (B, T')
            labels, real = pad_rows([[*y, sep] for y in targets], pad)
            batch[f"{name}_labels"] = labels.masked_fill(real == 0, -100)  # (B, T')
        return batch

    def step(self, model, batch):
        neighbours = {n: (batch[f"{n}_input_ids"], batch[f"{n}_labels"]) for n in NEIGHBOURS}
        out = model(batch["input_ids"], batch["attention_mask"], neighbours=neighbours)
        tokens = sum(int((batch[f"{n}_labels"] != -100).sum()) for n in NEIGHBOURS)
        return {"loss": out.loss, "tokens": tokens,
                **{f"{n}_loss": v.detach() for n, v in out.neighbour_losses.items()}}


OBJECTIVES.setdefault(NeighbourSentences.name, NeighbourSentences)


@register("skip-thought", parent="rnn", year=2015,
          paper="Kiros et al. 2015, Skip-Thought Vectors, NeurIPS, arXiv:1506.06726",
          diff={"objective": ["next word → the previous and the next sentence, generated from the sentence's "
                              "vector"],
                "body": ["+ two decoders (previous, next) conditioned on the encoder's last state at every step",
                         "the encoder's last state is the sentence vector"],
                "layers": ["tanh cells → GRU cells"],
                "tokenizer": ["sub-words → whole lower-cased words",
                              "vocabulary expansion: word2vec vectors mapped linearly into the word space"]},
          config=SkipThoughtConfig, objective="skip-thought", tokenizer="word", kind="sentence vectors",
          influences=("word2vec",))
class SkipThought(Rnn):
    config_class = SkipThoughtConfig
    cell = "gru"
    causal_features = True  # the encoder reads left to right: a text's vector is its last state

    def build_body(self) -> None:
        super().build_body()
        c = self.config
        self.decoders = nn.ModuleDict({n: nn.GRU(c.embedding_size + c.hidden_size, c.hidden_size, batch_first=True)
                                       for n in NEIGHBOURS})

    def sentence_vector(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) → (B, H): the encoder's state at each row's last real word."""
        h = self.encode(input_ids, attention_mask).last_hidden_state  # (B, T, H)
        last = (attention_mask.sum(1).long() - 1 if attention_mask is not None
                else torch.full((len(h),), h.shape[1] - 1, device=h.device))
        return h[torch.arange(len(h), device=h.device), last]

    def decode(self, name: str, vector: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Decoder `name` from the sentence vectors (B, H), reading input_ids (B, T') → its states (B, T', H)."""
        e = self.dropout(self.embeddings(input_ids))  # (B, T', E)
        condition = vector[:, None].expand(-1, input_ids.shape[1], -1)  # (B, T', H): C·h_i at every step
        return self.decoders[name](torch.cat([e, condition], -1))[0]

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, *,
                neighbours: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                output_hidden_states: bool = False, **_) -> ModelOutput:
        """Without `neighbours`: the RNN's forward (the shared softmax on the encoder's states). With
        {"previous": (decoder input ids, labels), "next": (…)}, each (B, T'): `loss` is the sum of the two
        decoders' mean cross-entropies (-100 labels not counted), computed without the (B, T', V) logits."""
        if neighbours is None:
            return super().forward(input_ids, attention_mask, token_type_ids, output_hidden_states=output_hidden_states)
        vector = self.sentence_vector(input_ids, attention_mask)  # (B, H)
        losses = {n: lm_cross_entropy(self.dropout(self.decode(n, vector, ids)), self.output.weight, labels,
                                      self.output.bias) for n, (ids, labels) in neighbours.items()}
        return SkipThoughtOutput(last_hidden_state=vector, loss=sum(losses.values()), neighbour_losses=losses)


def expand_vocabulary(model: SkipThought, tokenizer, w2v, w2v_tokenizer) -> dict:
    """Kiros et al. §2.2: fit W (d × E) by least squares so that v_w2v(w) W ≈ the encoder's embedding of w over
    the words both vocabularies hold, then give every word2vec word the encoder lacks the embedding v_w2v W.
    Changes `model` (new embedding rows; new softmax rows that score every context low, as
    resize_token_embeddings draws them) and `tokenizer` (the words appended) in place; returns counts and
    the fit's R² on the shared words."""
    from tokenizers import models

    if tokenizer.kind != "word":
        raise PlmkitError(f"vocabulary expansion maps whole words; this tokenizer is {tokenizer.kind!r}, not a "
                          "word-level one (pretrain skip-thought with its default word tokenizer)")
    vocab = tokenizer.backend.get_vocab(with_added_tokens=False)
    w2v_vocab = {w: i for w, i in w2v_tokenizer.backend.get_vocab(with_added_tokens=False).items() if i > 0}
    shared = [w for w in vocab if w in w2v_vocab and vocab[w] not in tokenizer.special_ids]
    new = sorted((w for w in w2v_vocab if w not in vocab), key=w2v_vocab.get)  # word2vec's order: frequent first
    if len(shared) < 2:
        raise PlmkitError(f"the two vocabularies share {len(shared)} word(s); the linear map needs more")
    src = w2v.embeddings.weight.detach().double()  # (V_w2v, d)
    x = src[[w2v_vocab[w] for w in shared]]  # (n, d)
    y = model.embeddings.weight.detach().double()[[vocab[w] for w in shared]]  # (n, E)
    W = torch.linalg.lstsq(x, y).solution  # (d, E): the paper's un-regularised L2 linear regression
    r2 = 1 - float((x @ W - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum())
    size = tokenizer.vocab_size
    model.resize_token_embeddings(size + len(new))
    with torch.no_grad():
        if new:
            mapped = src[[w2v_vocab[w] for w in new]] @ W  # (m, E)
            model.embeddings.weight[size:] = mapped.to(model.embeddings.weight.dtype)
    tokenizer.backend.model = models.WordLevel({**vocab, **{w: size + k for k, w in enumerate(new)}},
                                               unk_token=tokenizer.roles["unk"])
    return {"shared_words": len(shared), "added_words": len(new), "vocab_size": tokenizer.vocab_size, "fit_r2": r2}
