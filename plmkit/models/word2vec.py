"""word2vec = FFNN LM − hidden layer − full softmax − left-only context: a log-linear model predicts a word
from its window (CBOW) or the window from the word (skip-gram), trained with negative sampling or
hierarchical softmax; only the word vectors are kept. Mikolov et al. 2013, arXiv:1301.3781 and NeurIPS
("Distributed Representations of Words and Phrases and their Compositionality").

Trained with gensim (`pip install plmkit[word2vec]`). Words are the lower-cased, punctuation-split words of
BERT's pre-tokenizer; words seen fewer than `min_count` times map to <unk> (row 0, a zero vector).

As a fine-tuning body (`plmkit finetune --model W2V_DIR`) its one layer is the static vector of each word:
`--features scalar-mix` keeps the vectors frozen (a mix of one layer is a learned scale γ), the default
tunes them. Inputs are framed by <unk> (the zero vector) where other bodies put [CLS]/[SEP], and a
sequence is the mean of its words' vectors (a bag of words: the vectors carry no order). `init_weights`
draws vectors as gensim does before training, the random-embedding baseline of --from-scratch.
`init_input_embeddings` copies the vectors into another model's token embedding instead.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import ClassVar

import torch
from torch import nn

from ..errors import PlmkitError
from ..family import register
from .ffnn import FfnnConfig
from .ngram import NgramConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class Word2vecConfig(FfnnConfig):
    order: int | None = None  # no left-to-right order: the window reaches both sides
    embedding_size: int = 100  # gensim's default vector size
    hidden_size: int = 0  # no hidden layer: log-linear
    direct: bool = False
    dropout: float = 0.0
    architecture: str = "skipgram"  # "skipgram" (predict the window from the word) | "cbow" (the reverse)
    window: int = 5  # words on each side
    negative: int = 5  # noise words per positive (negative sampling); 0 with hierarchical_softmax
    hierarchical_softmax: bool = False  # Huffman-tree softmax instead of negative sampling
    min_count: int = 5  # rarer words become <unk>
    subsample: float = 1e-3  # down-sampling threshold of frequent words (§2.3 of the NeurIPS paper)
    epochs: int = 5
    seed: int = 1

    SIZES: ClassVar[dict[str, dict]] = {"tiny": dict(embedding_size=100), "small": dict(embedding_size=300)}
    ARCHITECTURES: ClassVar[tuple[str, ...]] = ("skipgram", "cbow")
    causal = property(lambda self: False)  # keeps only word vectors: it cannot score or generate text

    def validate(self) -> None:
        NgramConfig.validate(self)  # the FFNN's hidden-layer checks do not apply
        if self.architecture not in self.ARCHITECTURES:
            raise PlmkitError(f"architecture must be {' or '.join(self.ARCHITECTURES)}, got {self.architecture!r}")
        if self.hidden_size or self.direct:
            raise PlmkitError("word2vec has no hidden layer and no direct connection")
        if self.hierarchical_softmax == (self.negative > 0):
            raise PlmkitError("choose one of negative sampling (negative > 0) and hierarchical_softmax")
        if self.embedding_size <= 0 or self.window <= 0 or self.min_count < 1 or self.epochs < 1:
            raise PlmkitError("embedding_size, window, min_count and epochs must be positive")

    def check_order(self) -> None:
        if self.order is not None:
            raise PlmkitError("word2vec reads a symmetric window, not an order; set window instead")


def word_tokenizer(words: list[str]):
    """A word-level plmkit Tokenizer over `words`, <unk> first, splitting and normalising like BERT."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import models, normalizers, pre_tokenizers

    from ..tokenizers import Tokenizer

    backend = Backend(models.WordLevel({w: i for i, w in enumerate(["<unk>", *words])}, unk_token="<unk>"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return Tokenizer(backend, {"unk": "<unk>"}, kind="word")


class _Sentences:
    """The corpus lines as word lists, re-read on every epoch (gensim iterates several times)."""

    def __init__(self, files, tokenizer):
        self.files, self.backend = files, tokenizer.backend

    def __iter__(self):
        from ..data.shards import iter_lines

        for f in self.files:
            for line in iter_lines(f):
                if line.strip():
                    yield [w for w, _ in self.backend.pre_tokenizer.pre_tokenize_str(
                        self.backend.normalizer.normalize_str(line))]


def _stable_hash(s: str) -> int:
    """gensim seeds each word's initial vector with this; Python's hash() changes between processes."""
    return zlib.crc32(s.encode("utf-8"))


@register("word2vec", parent="ffnn", year=2013,
          paper="Mikolov et al. 2013, Efficient Estimation of Word Representations in Vector Space, arXiv:1301.3781",
          diff={"body": ["− tanh hidden layer (log-linear)", "left context → symmetric window (CBOW) or "
                         "predict the window from the word (skip-gram)", "keeps only the word vectors"],
                "objective": ["softmax → negative sampling or hier. softmax"],
                "tokenizer": ["sub-words → whole lower-cased words, rare words → <unk>"],
                "training": ["frequent-word subsampling", "trained with gensim"]},
          config=Word2vecConfig, objective="word2vec", tokenizer="bpe",
          kind="word vectors")
class Word2vec(nn.Module):
    """The input word vectors, (V, m); row 0 is <unk>."""

    config_class = Word2vecConfig

    def __init__(self, config: Word2vecConfig):
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size)
        nn.init.zeros_(self.embeddings.weight)

    def num_parameters(self) -> int:
        return self.embeddings.weight.numel()

    @classmethod
    def fit(cls, config: Word2vecConfig, corpus_files, tokens=None, tokenizer=None):
        """`plmkit pretrain --model word2vec`: train on the corpus text with gensim; the sub-word shards are
        not used (word2vec's vocabulary is whole words). Returns (model, word tokenizer)."""
        try:
            from gensim.models import Word2Vec
        except ImportError:
            raise PlmkitError("word2vec needs gensim: pip install 'plmkit[word2vec]'") from None
        sentences = _Sentences(corpus_files, word_tokenizer([]))
        w2v = Word2Vec(sentences, vector_size=config.embedding_size, window=config.window,
                       min_count=config.min_count, sg=int(config.architecture == "skipgram"),
                       hs=int(config.hierarchical_softmax), negative=config.negative, sample=config.subsample,
                       epochs=config.epochs, seed=config.seed, workers=1, hashfxn=_stable_hash)
        words = list(w2v.wv.index_to_key)
        model = cls(config.replace(vocab_size=len(words) + 1))
        with torch.no_grad():
            model.embeddings.weight[1:] = torch.from_numpy(w2v.wv.vectors)
        return model, word_tokenizer(words)

    def vectors(self, words: list[str], tokenizer) -> torch.Tensor:
        """(len(words), m), zero rows for words not in the vocabulary."""
        ids = [tokenizer.token_to_id(w.lower()) or 0 for w in words]
        return self.embeddings.weight[torch.tensor(ids)].detach()

    def forward(self, input_ids: torch.Tensor, **_) -> torch.Tensor:
        """(B, T) → (B, T, m) word vectors."""
        return self.embeddings(input_ids)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False, **_) -> ModelOutput:
        """(B, T) → the word vectors (B, T, m), the body's only layer (hidden_states holds just it)."""
        e = self.embeddings(input_ids)
        return ModelOutput(last_hidden_state=e, hidden_states=(e,) if output_hidden_states else None)

    def init_weights(self) -> None:
        """Uniform in ±0.5/m, as gensim draws vectors before training; <unk> stays zero."""
        m = self.config.embedding_size
        with torch.no_grad():
            nn.init.uniform_(self.embeddings.weight, -0.5 / m, 0.5 / m)
            self.embeddings.weight[0] = 0

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return [[self.embeddings.weight]]

    def input_frame(self, tokenizer) -> tuple[int, int, int]:
        """(begin, between a pair, end) around a task input: <unk>, whose vector is zero (no special tokens)."""
        return 0, 0, 0

    def pool_features(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(N, T, m) → (N, m): the mean vector of the words between the framing tokens."""
        inner = attention_mask.clone()  # (N, T)
        inner[:, 0] = 0
        inner[torch.arange(h.shape[0], device=h.device), attention_mask.sum(1).long() - 1] = 0
        return (h * inner[..., None]).sum(1) / inner.sum(1, keepdim=True).clamp(min=1)


_MARKERS = ("##", "▁", "Ġ")  # word-piece continuation, SentencePiece and byte-level word starts


def init_input_embeddings(model: nn.Module, tokenizer, w2v: Word2vec, w2v_tokenizer, freeze: bool = False,
                          rescale: bool = True) -> int:
    """Copy word2vec vectors into `model`'s input token embedding for every token of `tokenizer` that is a
    word2vec word once its sub-word markers are stripped and it is lower-cased; other rows keep their
    initialisation. `rescale` multiplies the copied vectors by one factor so that their standard deviation
    is that of the rows they replace: the body's layers then see inputs at the scale they were initialised
    for, and copied and uncopied rows share one scale (128-d skip-gram vectors of Brown + Wikipedia have an
    element std of 0.16: 6× below an N(0, 1) embedding, 8× above a Normal(0, 0.02) one; drawing the other
    rows at the vectors' scale instead, as Kim 2014 did, would change every row of a pre-trained body).
    Directions, hence cosine similarities, are kept. `freeze` stops gradients to the whole embedding (and
    to an LM head tied to it). Returns the number of rows copied."""
    emb = model.embeddings.tokens if hasattr(model.embeddings, "tokens") else model.embeddings
    if emb.embedding_dim != w2v.config.embedding_size:
        raise PlmkitError(f"the model's embedding has {emb.embedding_dim} dimensions, the word2vec vectors "
                          f"{w2v.config.embedding_size}; pretrain word2vec with --set embedding_size="
                          f"{emb.embedding_dim}")
    rows, src = [], []
    for token, i in tokenizer.backend.get_vocab(with_added_tokens=False).items():
        word = token.removesuffix("</w>")
        for m in _MARKERS:
            word = word.removeprefix(m)
        j = w2v_tokenizer.token_to_id(word.lower())
        if word and j:  # j == 0 is <unk>
            rows.append(i)
            src.append(j)
    rows_t, src_t = torch.tensor(rows, dtype=torch.long), torch.tensor(src, dtype=torch.long)
    with torch.no_grad():
        vectors = w2v.embeddings.weight[src_t].to(emb.weight.dtype)
        if rescale and len(rows) > 1:
            vectors = vectors * (emb.weight[rows_t].std() / vectors.std().clamp(min=1e-12))
        emb.weight[rows_t] = vectors
    emb.weight.requires_grad_(not freeze)
    return len(rows)
