"""`train_tokenizer`: each kind is a normalizer + pre-tokenizer + model + decoder recipe for `tokenizers`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as Backend

from ..errors import PlmkitError
from .core import Tokenizer

KINDS = ("wordpiece", "bpe", "bytebpe", "unigram", "char", "word")

# BERT-style specials (wordpiece, char) and RoBERTa-style ones (bpe, bytebpe, unigram), in id order.
_BERT_ROLES = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
_ROBERTA_ROLES = {"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>",
                  "bos": "<s>", "eos": "</s>"}


def _recipe(kind: str, vocab_size: int, lowercase: bool, min_frequency: int, show_progress: bool):
    """The untrained backend, its trainer and the special-token roles for `kind`."""
    bert = kind in ("wordpiece", "char", "word")
    roles = _BERT_ROLES if bert else _ROBERTA_ROLES
    specials = list(dict.fromkeys(roles.values()))
    if kind == "bytebpe":  # RoBERTa's <mask> eats the space before it, so "a <mask>" masks the word
        specials = [AddedToken(t, lstrip=True) if t == "<mask>" else t for t in specials]
    common = dict(vocab_size=vocab_size, special_tokens=specials, show_progress=show_progress)
    lower = [normalizers.Lowercase()] if lowercase else []
    if kind == "wordpiece":
        backend = Backend(models.WordPiece(unk_token="[UNK]"))
        backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(min_frequency=min_frequency, continuing_subword_prefix="##", **common)
    elif kind == "char":
        backend = Backend(models.WordLevel(unk_token="[UNK]"))
        backend.normalizer = normalizers.BertNormalizer(
            lowercase=lowercase, handle_chinese_chars=False, strip_accents=False)
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")])
        backend.decoder = decoders.Fuse()  # Chinese needs no spaces between characters
        trainer = trainers.WordLevelTrainer(min_frequency=min_frequency, **common)
    elif kind == "word":  # whole words, the vocabulary of the pre-subword models (skip-thought: 20k words)
        backend = Backend(models.WordLevel(unk_token="[UNK]"))
        backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=False)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordLevelTrainer(min_frequency=min_frequency, **common)
    elif kind == "bpe":  # GPT-1's recipe: BPE inside words, "</w>" marks a word's end
        backend = Backend(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
        backend.normalizer = normalizers.Sequence([normalizers.NFKC(), *lower])
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.BPEDecoder(suffix="</w>")
        trainer = trainers.BpeTrainer(min_frequency=min_frequency, end_of_word_suffix="</w>", **common)
    elif kind == "bytebpe":
        backend = Backend(models.BPE())  # every byte is in the base alphabet: no unknown token needed
        if lowercase:
            backend.normalizer = normalizers.Lowercase()
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(min_frequency=min_frequency,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **common)
    elif kind == "unigram":  # SentencePiece's defaults: NFKC, "▁" marks a word start
        backend = Backend(models.Unigram())
        backend.normalizer = normalizers.Sequence([normalizers.NFKC(), *lower])
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(unk_token="<unk>", **common)
    else:
        raise PlmkitError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
    return backend, trainer, roles


def _add_post_processor(backend: Backend, roles: dict[str, str], bert: bool) -> None:
    """Let Hugging Face users get `[CLS] a [SEP] b [SEP]` (or RoBERTa's `<s> a </s></s> b </s>`) by default."""
    cls, sep = roles["cls"], roles["sep"]
    pair = f"{cls} $A {sep} $B:1 {sep}:1" if bert else f"{cls} $A {sep} {sep} $B {sep}"
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=pair,
        special_tokens=[(cls, backend.token_to_id(cls)), (sep, backend.token_to_id(sep))])


def _batches(files: list[str], size: int = 1000) -> Iterator[list[str]]:
    """Non-blank lines of `files` in batches; fails on a file that holds no text."""
    from ..data.shards import iter_lines

    batch = []
    for path in files:
        n_text = 0
        for line in iter_lines(path):
            if line.strip():
                batch.append(line)
                n_text += 1
                if len(batch) == size:
                    yield batch
                    batch = []
        if n_text == 0:
            raise PlmkitError("corpus file holds no text", path=path)
    if batch:
        yield batch


def train_tokenizer(kind: str, files: Iterable[str | os.PathLike], vocab_size: int,
                    out_dir: str | os.PathLike | None = None, lowercase: bool | None = None,
                    min_frequency: int = 2, show_progress: bool = True) -> Tokenizer:
    """Train a tokenizer of `kind` on plain-text files, streaming them line by line.

    Args:
        kind: one of KINDS.
        files: UTF-8 text files, one paragraph per line.
        vocab_size: target vocabulary size, special tokens included.
        out_dir: when given, the tokenizer is saved there (`tokenizer.json` + `tokenizer_config.json`).
        lowercase: lowercase the text; None means the kind's convention (True for wordpiece and word).
        min_frequency: pairs/words seen fewer times are not merged into the vocabulary (not unigram).
        show_progress: show the trainer's progress bar.
    """
    files = [os.fspath(f) for f in files]
    if lowercase is None:
        lowercase = kind in ("wordpiece", "word")
    backend, trainer, roles = _recipe(kind, vocab_size, lowercase, min_frequency, show_progress)
    if not files:
        raise PlmkitError("no corpus files given")
    for path in files:
        if not os.path.isfile(path):
            raise PlmkitError("corpus file not found", path=path)
    backend.train_from_iterator(_batches(files), trainer=trainer)
    _add_post_processor(backend, roles, bert=kind in ("wordpiece", "char", "word"))
    tokenizer = Tokenizer(backend, roles, kind=kind)
    if out_dir is not None:
        tokenizer.save(out_dir)
    return tokenizer
