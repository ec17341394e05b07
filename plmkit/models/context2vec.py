"""context2vec = word2vec with the context of a target word = the average of its window's word vectors →
a biLSTM over the whole sentence: an LSTM reads the words before the target left to right, another the
words after it right to left, their states are concatenated and a 2-layer MLP maps them to the context
vector; trained, as word2vec, by negative sampling (noise ∝ unigram^0.75) between the context vector and
the target word's vector. Melamud, Goldberger & Dagan 2016, CoNLL, "context2vec: Learning Generic Context
Embedding with Bidirectional LSTM", §2 and Fig. 1.

    c_i = MLP([lLSTM(x_0 … x_{i−1}); rLSTM(x_{n−1} … x_{i+1})]),  MLP(z) = L2(ReLU(L1(z)))
    loss = −log σ(t_{x_i} · c_i) − Σ_{k=1..K} log σ(−t_{w_k} · c_i),  w_k ~ unigram(w)^α

Tokens: plmkit trains it in torch, by steps, on the lower-cased WordPiece tokens of a tokenizer trained on
the corpus (frequent words are whole tokens; `fill` ranks only whole-word tokens). A training window of
the packed stream stands in for the paper's sentence: every position is a target, the LSTMs' zero
initial states standing in at the window's ends for the paper's <BOS>/<EOS>. Each LSTM reads its own
input embedding, as in the released code; the target vectors `embeddings` start at zero like
word2vec's output vectors.

Uses: `model.encode(ids)` gives the context vector of every position (B, T, D); `model.vectors(words,
tokenizer)` the target vectors; `context_vector(model, tokenizer, "the [] sat on the mat")` the vector of
a blank's context; `fill(model, tokenizer, "the [] sat on the mat")` ranks words for the blank by the cosine
of target and context vectors, as the released code's explorer does. `plmkit embed` pools the context vectors.

Shape legend: B = batch, T = sequence length, V = vocabulary, I = input word size, H = LSTM hidden size,
D = context / target vector size, K = noise words per target.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.pretrain import Windows
from ..errors import PlmkitError
from ..family import register
from ..layers.rnn import reverse_padded
from ..objectives import OBJECTIVES, Objective
from .ngram import NgramConfig
from .transformer import ModelOutput
from .word2vec import Word2vecConfig


@dataclasses.dataclass(frozen=True)
class Context2vecConfig(Word2vecConfig):
    embedding_size: int = 600  # D: target word and context vectors
    input_size: int = 300  # I: word vectors each LSTM reads ("context word units")
    hidden_size: int = 600  # H: each LSTM; the MLP's hidden layer is 2H wide
    negative: int = 10  # K noise words per target
    noise_power: float = 0.75  # α: noise drawn ∝ unigram count ^ α
    # word2vec's settings that have no meaning here: the context is the whole window, read by LSTMs,
    # trained by steps on sub-word tokens.
    architecture: str | None = None
    window: int | None = None
    min_count: int | None = None
    subsample: float | None = None
    epochs: int | None = None
    seed: int | None = None

    # base: the released models' sizes (train_context2vec.py -u 300, hidden and target units 2 × 300, MLP 2H,
    # 10 noise words: common/defs.py); tiny and mini for a CPU.
    SIZES: ClassVar[dict[str, dict]] = {"tiny": dict(embedding_size=128, input_size=64, hidden_size=128),
                                        "mini": dict(embedding_size=256, input_size=128, hidden_size=256),
                                        "base": dict(embedding_size=600, input_size=300, hidden_size=600)}

    def validate(self) -> None:
        NgramConfig.validate(self)  # word2vec's checks forbid the hidden layer this member has
        for name in ("architecture", "window", "min_count", "subsample", "epochs", "seed"):
            if getattr(self, name) is not None:
                raise PlmkitError(f"context2vec has no {name}: the context is the whole window, read by two "
                                  "LSTMs and trained by steps (set the seed with --seed)")
        if self.hierarchical_softmax or self.direct:
            raise PlmkitError("context2vec trains by negative sampling only, with no direct connection")
        for name in ("embedding_size", "input_size", "hidden_size", "negative"):
            if getattr(self, name) < 1:
                raise PlmkitError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.noise_power <= 1:
            raise PlmkitError(f"noise_power must be in [0, 1], got {self.noise_power}")
        if not 0 <= self.dropout < 1:
            raise PlmkitError(f"dropout must be in [0, 1), got {self.dropout}")


class ContextNegativeSampling(Objective):
    """Negative sampling between each position's context vector and the vectors of its token and of K
    noise tokens drawn ∝ count^α over the corpus; K and α are the member's `negative` and `noise_power`."""

    name = "context2vec"

    def dataset(self, corpus):
        counts = np.zeros(self.vocab_size, dtype=np.float64)
        chunk = 1 << 22
        for start in range(0, corpus.n_tokens, chunk):  # streamed: O(chunk) memory in the corpus size
            ids = corpus.tokens(start, min(start + chunk, corpus.n_tokens)).astype(np.int64)
            counts += np.bincount(ids, minlength=self.vocab_size)[: self.vocab_size]
        self.counts = torch.from_numpy(counts)
        self._noise: tuple[float, torch.Tensor] | None = None
        return Windows(corpus, self.seq_len)

    def collate(self, examples: list[np.ndarray], generator: torch.Generator) -> dict:
        # The noise is drawn in `step`, where K and α are known, from a seed drawn here: still a pure
        # function of the batch's generator, so a resumed run draws the same noise.
        return {"input_ids": torch.from_numpy(np.stack(examples)),  # (B, T)
                "noise_seed": int(torch.randint(0, 2**62, (), generator=generator))}

    def noise(self, power: float) -> torch.Tensor:
        """(V,) noise distribution ∝ count^power (cached)."""
        if self._noise is None or self._noise[0] != power:
            p = self.counts.pow(power) * (self.counts > 0)
            self._noise = (power, p / p.sum())
        return self._noise[1]

    def step(self, model, batch):
        x = batch["input_ids"]  # (B, T)
        config = getattr(model, "module", model).config  # under DDP the trainer hands over the wrapper
        B, T, K = *x.shape, config.negative
        g = torch.Generator().manual_seed(batch["noise_seed"])
        noise = torch.multinomial(self.noise(config.noise_power), B * T * K, replacement=True, generator=g)
        candidates = torch.cat([x[..., None], noise.view(B, T, K).to(x.device)], -1)  # (B, T, 1 + K)
        scores = model(x, candidates=candidates).logits.float()  # (B, T, 1 + K)
        pos, neg = F.logsigmoid(scores[..., 0]), F.logsigmoid(-scores[..., 1:]).sum(-1)  # (B, T) each
        return {"loss": -(pos + neg).mean(), "tokens": x.numel()}


OBJECTIVES.setdefault(ContextNegativeSampling.name, ContextNegativeSampling)


@register("context2vec", parent="word2vec", year=2016,
          paper="Melamud, Goldberger & Dagan 2016, context2vec: Learning Generic Context Embedding with "
                "Bidirectional LSTM, CoNLL",
          diff={"body": ["context = average of window word vectors → biLSTM over the whole sentence: "
                         "[→LSTM(words before); ←LSTM(words after)] → 2-layer MLP",
                         "keeps the context encoder as well as the target word vectors"],
                "layers": ["+ two LSTMs, each with its own input embedding", "+ MLP (ReLU)"],
                "objective": ["word2vec's negative sampling (unigram^0.75 noise), scoring the context vector "
                              "against the target word; 10 noise words"],
                "tokenizer": ["whole words → lower-cased WordPiece; whole-word tokens are the fill candidates"],
                "training": ["trained by steps in torch, not by gensim"]},
          config=Context2vecConfig, objective="context2vec", tokenizer="wordpiece",
          influences=("lstm",))
class Context2vec(nn.Module):
    """`embeddings` (V, D): the target word vectors (word2vec's kept vectors); `left_embeddings`,
    `right_embeddings` (V, I), `left`, `right` (LSTMs) and `mlp`: the context encoder."""

    config_class = Context2vecConfig

    def __init__(self, config: Context2vecConfig):
        super().__init__()
        self.config = c = config
        self.embeddings = nn.Embedding(c.vocab_size, c.embedding_size)
        self.left_embeddings = nn.Embedding(c.vocab_size, c.input_size)
        self.right_embeddings = nn.Embedding(c.vocab_size, c.input_size)
        self.left = nn.LSTM(c.input_size, c.hidden_size, batch_first=True)
        self.right = nn.LSTM(c.input_size, c.hidden_size, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(2 * c.hidden_size, 2 * c.hidden_size), nn.ReLU(),
                                 nn.Dropout(c.dropout), nn.Linear(2 * c.hidden_size, c.embedding_size))
        self.dropout = nn.Dropout(c.dropout)
        nn.init.zeros_(self.embeddings.weight)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def init_weights(self) -> None:
        """Draw every weight afresh as at construction (target vectors at zero)."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()
        nn.init.zeros_(self.embeddings.weight)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False, **_) -> ModelOutput:
        """(B, T) → the context vector of every position (B, T, D), read from the other tokens of its row
        (right padding is never read); hidden_states: the two input embeddings (B, T, 2I), the two LSTMs'
        states around each position (B, T, 2H), the context vectors."""
        B, T = input_ids.shape
        lengths = None if attention_mask is None else attention_mask.sum(1)  # (B,)
        el = self.dropout(self.left_embeddings(input_ids))  # (B, T, I)
        er = self.dropout(self.right_embeddings(input_ids))  # (B, T, I)
        fwd = self.left(el)[0]  # (B, T, H): position i has read x_0 … x_i
        bwd = reverse_padded(self.right(reverse_padded(er, lengths))[0], lengths)  # (B, T, H): x_{n−1} … x_i
        zero = fwd.new_zeros(B, 1, fwd.shape[-1])  # an LSTM's state before it reads anything
        before = torch.cat([zero, fwd[:, :-1]], 1)  # (B, T, H): x_0 … x_{i−1}
        after = torch.cat([bwd[:, 1:], zero], 1)  # (B, T, H): x_{n−1} … x_{i+1}
        if lengths is not None:  # the last real token has nothing after it
            after = after * (torch.arange(T, device=after.device)[None] + 1 < lengths[:, None])[..., None]
        around = torch.cat([before, after], -1)  # (B, T, 2H)
        c = self.mlp(self.dropout(around))  # (B, T, D)
        return ModelOutput(last_hidden_state=c,
                           hidden_states=(torch.cat([el, er], -1), around, c) if output_hidden_states else None)

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, *,
                candidates: torch.Tensor | None = None, logits_at: torch.Tensor | None = None,
                output_hidden_states: bool = False, **_) -> ModelOutput:
        """(B, T) → logits = context · target scores: for `candidates` (B, T, K) token ids, (B, T, K);
        without, every vocabulary token's, (B, T, V), or (M, V) at the M True positions of `logits_at` (B, T)
        (`plmkit fill-mask`)."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_hidden_states)
        c = out.last_hidden_state  # (B, T, D)
        if candidates is None:
            out.logits = (c if logits_at is None else c[logits_at]) @ self.embeddings.weight.T  # (B, T, V) | (M, V)
        else:
            out.logits = (self.embeddings(candidates) * c[:, :, None]).sum(-1)  # (B, T, K)
        return out

    def vectors(self, words: list[str], tokenizer) -> torch.Tensor:
        """Target vectors (len(words), D) of whole-word tokens; zero rows for words that are not one token."""
        ids = [tokenizer.token_to_id(w.lower()) for w in words]
        out = self.embeddings.weight.new_zeros(len(words), self.config.embedding_size)
        for row, i in enumerate(ids):
            if i is not None:
                out[row] = self.embeddings.weight[i].detach()
        return out

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The context encoder bottom to top, for ULMFiT's discriminative rates and gradual unfreezing: the
        two input embeddings, the two LSTMs, the MLP (the target vectors are not read by `encode`)."""
        return [[self.left_embeddings.weight, self.right_embeddings.weight],
                [*self.left.parameters(), *self.right.parameters()], list(self.mlp.parameters())]

    def input_frame(self, tokenizer) -> tuple[int, int, int]:
        """(begin, between a pair, end) around a task input: the document separator, as in pre-training."""
        sep = tokenizer.doc_sep_id
        return sep, sep, sep


def context_vector(model: Context2vec, tokenizer, text: str, blank: str = "[]") -> torch.Tensor:
    """(D,) context vector of the one `blank` in `text`, framed by the document separator as in pre-training."""
    if text.count(blank) != 1:
        raise PlmkitError(f"the text needs exactly one blank {blank!r}, found {text.count(blank)}")
    left, right = text.split(blank)
    sep = tokenizer.doc_sep_id
    before = [sep, *tokenizer.encode(left)]
    ids = torch.tensor([[*before, sep, *tokenizer.encode(right), sep]])  # the blank's own token is never read
    with torch.no_grad():
        return model.eval().encode(ids).last_hidden_state[0, len(before)]


def fill(model: Context2vec, tokenizer, text: str, top_k: int = 10, blank: str = "[]",
         candidates: list[str] | None = None) -> list[tuple[str, float]]:
    """Words for the `blank` in `text`, best first, with the cosine of their target vector and the blank's
    context vector: the `top_k` whole-word tokens of the vocabulary met in training, or the given `candidates`
    (a word that is not one such token scores −inf: it ranks last)."""
    c = F.normalize(context_vector(model, tokenizer, text, blank), dim=0)  # (D,)
    if candidates is not None:
        t = model.vectors(candidates, tokenizer)  # (n, D)
        scores = (F.normalize(t, dim=-1) @ c).masked_fill(t.abs().sum(-1) == 0, float("-inf"))
        return sorted(zip(candidates, scores.tolist()), key=lambda p: -p[1])
    vocab = tokenizer.backend.get_vocab(with_added_tokens=False)
    special, t = tokenizer.special_ids, model.embeddings.weight.detach()  # (V, D)
    trained = t.abs().sum(-1) > 0  # a token never met in training (neither target nor noise) is still zero
    words = [(w, i) for w, i in vocab.items() if i not in special and not w.startswith("##") and trained[i]]
    ids = torch.tensor([i for _, i in words], dtype=torch.long)
    scores = F.normalize(t[ids], dim=-1) @ c  # (n,)
    best = scores.topk(min(top_k, len(words)))
    return [(words[i][0], float(s)) for s, i in zip(best.values.tolist(), best.indices.tolist())]
