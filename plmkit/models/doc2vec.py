"""doc2vec = word2vec + a vector per paragraph, trained with the word vectors to predict the paragraph's words;
the vector of a new text is inferred by gradient descent with everything else fixed. Le & Mikolov 2014,
ICML, "Distributed Representations of Sentences and Documents", arXiv:1405.4053, §2.2–2.3.

    PV-DM   (architecture=dm, the default): the paragraph vector and the window's word vectors, summed
            (gensim's default; the paper also concatenates), predict the middle word — word2vec's CBOW with
            the paragraph as one more context word that is the same at every position.
    PV-DBOW (architecture=dbow): the paragraph vector alone predicts words sampled from the paragraph —
            word2vec's skip-gram with the paragraph in the place of the word; the word vectors stay untrained.

Trained by gensim's Doc2Vec (`pip install plmkit[word2vec]`) with negative sampling; every corpus line is one
paragraph. Words as in word2vec: lower-cased, punctuation-split, rarer than `min_count` → left out. Saved:
the word vectors (`embeddings`, row 0 <unk>), the output vectors of negative sampling (`output`, which
inference needs) and the word counts (`counts`, which set the noise distribution and the subsampling);
the training paragraphs' own vectors are not kept. `sentence_vectors` rebuilds gensim's model from these
and infers a vector per text (gensim's infer_vector: `epochs` passes, learning rate 0.025 → 0.0001).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import PlmkitError
from ..family import register
from .word2vec import Word2vec, Word2vecConfig, _Sentences, _stable_hash, word_tokenizer


@dataclasses.dataclass(frozen=True)
class Doc2vecConfig(Word2vecConfig):
    architecture: str = "dm"  # "dm" (PV-DM) | "dbow" (PV-DBOW)
    epochs: int = 10  # passes over the corpus, and over each text at inference (gensim's Doc2Vec default)

    ARCHITECTURES: ClassVar[tuple[str, ...]] = ("dm", "dbow")

    def validate(self) -> None:
        super().validate()
        if self.hierarchical_softmax:
            raise PlmkitError("doc2vec here trains by negative sampling only (its vectors are what inference needs)")


class _Paragraphs:
    """Each corpus line's words tagged with its index, re-read on every epoch."""

    def __init__(self, files, tokenizer):
        self.sentences = _Sentences(files, tokenizer)

    def __iter__(self):
        from gensim.models.doc2vec import TaggedDocument

        for i, words in enumerate(self.sentences):
            yield TaggedDocument(words, [i])


def _gensim():
    try:
        from gensim.models.doc2vec import Doc2Vec
    except ImportError:
        raise PlmkitError("doc2vec needs gensim: pip install 'plmkit[word2vec]'") from None
    return Doc2Vec


@register("doc2vec", parent="word2vec", year=2014,
          paper="Le & Mikolov 2014, Distributed Representations of Sentences and Documents, ICML, arXiv:1405.4053",
          diff={"body": ["+ a vector per paragraph, a context word shared by all its windows (PV-DM) or the "
                         "only input (PV-DBOW)", "a new text's vector is inferred: gradient descent on it alone"],
                "objective": ["predict the paragraph's words from its vector (+ the window's word vectors)"],
                "training": ["trained with gensim's Doc2Vec"]},
          config=Doc2vecConfig, objective="doc2vec", tokenizer="bpe", kind="sentence vectors")
class Doc2vec(Word2vec):
    """Word vectors `embeddings` (V, m), output vectors `output` (V, m), word counts `counts` (V,); row 0 is
    <unk>, whose vectors are zero and count 0."""

    config_class = Doc2vecConfig

    def __init__(self, config: Doc2vecConfig):
        super().__init__(config)
        self.output = nn.Parameter(torch.zeros(config.vocab_size, config.embedding_size))
        self.register_buffer("counts", torch.zeros(config.vocab_size, dtype=torch.long))
        self._inference = None

    def num_parameters(self) -> int:
        return self.embeddings.weight.numel() + self.output.numel()

    @classmethod
    def fit(cls, config: Doc2vecConfig, corpus_files, tokens=None, tokenizer=None):
        """`plmkit pretrain --model doc2vec`: gensim's Doc2Vec on the corpus lines; returns (model, word tokenizer)."""
        Doc2Vec = _gensim()
        paragraphs = _Paragraphs(corpus_files, word_tokenizer([]))
        d2v = Doc2Vec(paragraphs, **_options(config))
        words = list(d2v.wv.index_to_key)
        model = cls(config.replace(vocab_size=len(words) + 1))
        with torch.no_grad():
            model.embeddings.weight[1:] = torch.from_numpy(d2v.wv.vectors)
            model.output[1:] = torch.from_numpy(d2v.syn1neg)
            model.counts[1:] = torch.tensor([d2v.wv.get_vecattr(w, "count") for w in words])
        return model, word_tokenizer(words)

    def _gensim_model(self, tokenizer):
        """gensim's Doc2Vec rebuilt from the saved vectors and counts (cached): what infer_vector needs."""
        if self._inference is None:
            words = [tokenizer.id_to_token(i) for i in range(1, self.config.vocab_size)]
            d2v = _gensim()(**_options(self.config, min_count=1))
            d2v.build_vocab_from_freq(dict(zip(words, self.counts[1:].tolist())))
            rows = [d2v.wv.key_to_index[w] for w in words]  # gensim orders by count; ties may move
            d2v.wv.vectors[rows] = self.embeddings.weight[1:].detach().numpy()
            d2v.syn1neg[rows] = self.output[1:].detach().numpy()
            self._inference = d2v
        return self._inference

    def sentence_vectors(self, texts: list[str], tokenizer, progress: bool = False) -> torch.Tensor:
        """(N, m): each text's inferred paragraph vector; words outside the vocabulary are skipped (a text with
        none gets gensim's random starting vector)."""
        from tqdm import tqdm

        d2v = self._gensim_model(tokenizer)
        ids = tokenizer.encode_batch(texts)
        vectors = [d2v.infer_vector([tokenizer.id_to_token(i) for i in row if i > 0])
                   for row in tqdm(ids, desc="infer", unit="text", disable=None if progress else True, leave=False)]
        return torch.from_numpy(np.stack(vectors)) if vectors else torch.zeros(0, self.config.embedding_size)


def _options(config: Doc2vecConfig, **overrides) -> dict:
    return {"vector_size": config.embedding_size, "dm": int(config.architecture == "dm"), "window": config.window,
            "min_count": config.min_count, "negative": config.negative, "hs": 0, "sample": config.subsample,
            "epochs": config.epochs, "seed": config.seed, "workers": 1, "hashfxn": _stable_hash, **overrides}
