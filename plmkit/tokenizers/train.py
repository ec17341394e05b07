"""`train_tokenizer`: each kind is a normalizer + pre-tokenizer + model + decoder recipe for `tokenizers`,
trained so that the same corpus always gives the same tokenizer, byte for byte.

Why a plain `tokenizers` run is not reproducible, and what each kind does about it:

- bpe, wordpiece: the BPE trainer (WordPiece's too) gives ids to the alphabet in sorted order, but creates
  the marked forms of characters (`##c` inside a word for WordPiece, `c</w>` at a word's end for GPT's BPE)
  while iterating over its word counts, a hash map seeded at random in every process. Those ids break the
  ties between pairs of equal count (lowest pair of ids first), so two runs pick different merges
  (huggingface/tokenizers#1794; the upstream fix, which visits the words in sorted order, is unreleased).
  Ids already in the vocabulary are never reassigned, and the trainer's special tokens get the first ids in
  the order given. So plmkit first collects the corpus's distinct words (a WordLevel trainer run with the
  same normalizer and pre-tokenizer, so the words are exactly those the BPE trainer counts), then hands the
  trainer its specials followed by the sorted alphabet and the marked characters in the order of their
  first appearance in the sorted words: the ids the fixed trainer assigns. No hash order is left, and the
  library still counts, merges and builds the model. The extra entries are then dropped from the added-token
  list (a JSON post-pass), so they are ordinary vocabulary entries, as in a normal run.
- unigram: the `tokenizers` UnigramTrainer also walks its sentences in hash order, so the floating-point
  sums of its E-step and the scores it gives to characters it must keep differ from run to run. The
  unigram kind is therefore trained by SentencePiece (Kudo & Richardson 2018), the implementation of the
  unigram LM (Kudo 2018) that ALBERT, T5 and XLNet used: it reads the sentences in file order and splits
  the E-step over a fixed number of threads summed in order, so its model is a function of the corpus. It
  sees the text after this tokenizer's own normalizer, splits words at spaces with a leading `▁` as the
  Metaspace pre-tokenizer does, keeps every character (coverage 1.0) and no special symbol but `<unk>`; its
  pieces and scores become a `tokenizers` Unigram model behind the specials.
- bytebpe: deterministic as it is: its alphabet is the 256 byte symbols, given sorted, and it marks nothing.
- char, rawchar: deterministic as they are: the WordLevel trainer orders by count, then by token
  (tokenizers#718).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as Backend
from tqdm import tqdm

from ..durable import check_out_dir
from ..errors import PlmkitError
from .core import Tokenizer

KINDS = ("wordpiece", "bpe", "bytebpe", "unigram", "char", "rawchar", "word")

# BERT-style specials (wordpiece, char, rawchar, word) and RoBERTa-style ones (bpe, bytebpe, unigram), in id order.
_BERT_ROLES = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
_ROBERTA_ROLES = {"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>",
                  "bos": "<s>", "eos": "</s>"}
_BERT_KINDS = ("wordpiece", "char", "rawchar", "word")
# How the BPE trainer marks a character inside a word (prefix) or at its end (suffix), per kind.
_MARKS = {"wordpiece": ("##", ""), "bpe": ("", "</w>")}
# SentencePiece's E-step sums the parts of this many threads in order: fixed, so it is part of the result
# rather than a property of the machine.
UNIGRAM_THREADS = 4


def _recipe(kind: str, lowercase: bool) -> tuple[Backend, dict[str, str]]:
    """The untrained backend and the special-token roles for `kind`."""
    roles = _BERT_ROLES if kind in _BERT_KINDS else _ROBERTA_ROLES
    lower = [normalizers.Lowercase()] if lowercase else []
    if kind == "wordpiece":
        backend = Backend(models.WordPiece(unk_token="[UNK]"))
        backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
    elif kind == "char":
        backend = Backend(models.WordLevel(unk_token="[UNK]"))
        backend.normalizer = normalizers.BertNormalizer(
            lowercase=lowercase, handle_chinese_chars=False, strip_accents=False)
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")])
        backend.decoder = decoders.Fuse()  # Chinese needs no spaces between characters
    elif kind == "rawchar":  # a character LM's input (Flair): the text as written, spaces included
        backend = Backend(models.WordLevel(unk_token="[UNK]"))
        # Whitespace becomes " " (BertNormalizer's clean_text) and is a token; between two Han characters it
        # is dropped, since Chinese text has none and only a word-split task (zh-ner) puts it there.
        backend.normalizer = normalizers.Sequence([
            normalizers.BertNormalizer(lowercase=lowercase, handle_chinese_chars=False, strip_accents=False),
            normalizers.Replace(Regex(r"(?<=\p{Han}) +(?=\p{Han})"), "")])
        backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
        backend.decoder = decoders.Fuse()
    elif kind == "word":  # whole words, the vocabulary of the pre-subword models (skip-thought: 20k words)
        backend = Backend(models.WordLevel(unk_token="[UNK]"))
        backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=False)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    elif kind == "bpe":  # GPT-1's recipe: BPE inside words, "</w>" marks a word's end
        backend = Backend(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
        backend.normalizer = normalizers.Sequence([normalizers.NFKC(), *lower])
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.BPEDecoder(suffix="</w>")
    elif kind == "bytebpe":
        backend = Backend(models.BPE())  # every byte is in the base alphabet: no unknown token needed
        if lowercase:
            backend.normalizer = normalizers.Lowercase()
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
    elif kind == "unigram":  # SentencePiece's defaults: NFKC, "▁" marks a word start
        backend = Backend(models.Unigram())
        backend.normalizer = normalizers.Sequence([normalizers.NFKC(), *lower])
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    else:
        raise PlmkitError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
    return backend, roles


def _trainer(kind: str, specials: list, vocab_size: int, min_frequency: int, show_progress: bool):
    common = dict(vocab_size=vocab_size, special_tokens=specials, show_progress=show_progress)
    if kind == "wordpiece":
        return trainers.WordPieceTrainer(min_frequency=min_frequency, continuing_subword_prefix="##", **common)
    if kind in ("char", "rawchar", "word"):  # the trainer orders equal counts by the word: deterministic
        return trainers.WordLevelTrainer(min_frequency=min_frequency, **common)
    if kind == "bpe":
        return trainers.BpeTrainer(min_frequency=min_frequency, end_of_word_suffix="</w>", **common)
    return trainers.BpeTrainer(min_frequency=min_frequency,  # bytebpe
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **common)


def _add_post_processor(backend: Backend, roles: dict[str, str], bert: bool) -> None:
    """Let Hugging Face users get `[CLS] a [SEP] b [SEP]` (or RoBERTa's `<s> a </s></s> b </s>`) by default."""
    cls, sep = roles["cls"], roles["sep"]
    pair = f"{cls} $A {sep} $B:1 {sep}:1" if bert else f"{cls} $A {sep} {sep} $B {sep}"
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=pair,
        special_tokens=[(cls, backend.token_to_id(cls)), (sep, backend.token_to_id(sep))])


def _lines(files: list[str]) -> Iterator[str]:
    """Non-blank lines of `files`; fails on a file that holds no text."""
    from ..data.shards import iter_lines

    for path in files:
        n_text = 0
        for line in iter_lines(path):
            if line.strip():
                n_text += 1
                yield line
        if n_text == 0:
            raise PlmkitError("corpus file holds no text", path=path)


def _batches(files: list[str], size: int = 1000) -> Iterator[list[str]]:
    batch = []
    for line in _lines(files):
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _seed_vocabulary(backend: Backend, files: list[str], kind: str, show_progress: bool) -> list[str]:
    """The alphabet (sorted) and then the marked characters (`##c`, `c</w>`) in the order of their first
    appearance in the corpus's sorted distinct words: the ids the BPE trainer assigns when it visits its
    words in sorted order."""
    prefix, suffix = _MARKS[kind]
    counter = Backend(models.WordLevel())
    counter.normalizer, counter.pre_tokenizer = backend.normalizer, backend.pre_tokenizer
    counter.train_from_iterator(_batches(files), trainers.WordLevelTrainer(
        vocab_size=1 << 62, min_frequency=0, show_progress=show_progress))
    words = sorted(counter.get_vocab())
    alphabet = sorted({c for w in words for c in w})
    marked = {}
    for w in words:
        last = len(w) - 1
        for i, c in enumerate(w):
            marked.setdefault((prefix if i else "") + c + (suffix if i == last else ""), None)
    return alphabet + [t for t in marked if len(t) > 1]


def _train_unigram(backend: Backend, files: list[str], vocab_size: int, specials: list[str],
                   show_progress: bool) -> Backend:
    """SentencePiece's unigram trainer on the normalized lines; its pieces behind `specials`."""
    import sentencepiece as spm

    failure: list[Exception] = []

    def sentences() -> Iterator[str]:
        try:
            for line in tqdm(_lines(files), desc="reading corpus", unit=" lines", disable=not show_progress):
                yield backend.normalizer.normalize_str(line)
        except Exception as e:  # SentencePiece turns it into a RuntimeError without path and line
            failure.append(e)
            raise

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences(), model_writer=model, model_type="unigram",
            vocab_size=vocab_size - len(specials) + 1,  # its <unk> is one of our specials
            normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
            split_by_whitespace=True, split_by_unicode_script=False, split_by_number=False,
            character_coverage=1.0, hard_vocab_limit=False, byte_fallback=False,
            max_sentence_length=1 << 30, input_sentence_size=0, num_threads=UNIGRAM_THREADS,
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, minloglevel=2)
    except RuntimeError as e:
        if failure:
            raise failure[0] from None
        raise PlmkitError(f"SentencePiece could not train on the corpus: {str(e).splitlines()[0]}",
                          path=files[0]) from None
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size()) if not sp.is_unknown(i)]
    vocab = [(t, 0.0) for t in specials] + [(p, s) for p, s in pieces if p not in specials]
    spec = json.loads(backend.to_str())
    spec["model"] = json.loads(Backend(models.Unigram(vocab, unk_id=specials.index("<unk>"))).to_str())["model"]
    trained = Backend.from_str(json.dumps(spec))
    trained.add_special_tokens(specials)
    return trained


def _without_added(backend: Backend, keep: list[str]) -> Backend:
    """`backend` with only `keep` left in its added-token list; the others stay ordinary vocabulary."""
    spec = json.loads(backend.to_str())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] in keep]
    return Backend.from_str(json.dumps(spec))


def train_tokenizer(kind: str, files: Iterable[str | os.PathLike], vocab_size: int,
                    out_dir: str | os.PathLike | None = None, lowercase: bool | None = None,
                    min_frequency: int = 2, show_progress: bool = True) -> Tokenizer:
    """Train a tokenizer of `kind` on plain-text files, streaming them line by line; the same files and
    settings give the same tokenizer in any process (see the module docstring).

    Args:
        kind: one of KINDS.
        files: UTF-8 text files, one paragraph per line.
        vocab_size: target vocabulary size, special tokens included.
        out_dir: when given, the tokenizer is saved there (`tokenizer.json` + `tokenizer_config.json`).
        lowercase: lowercase the text; None means the kind's convention (True for wordpiece only).
        min_frequency: pairs/words seen fewer times are not merged into the vocabulary (not unigram).
        show_progress: show the trainer's progress bar.
    """
    files = [os.fspath(f) for f in files]
    if lowercase is None:
        lowercase = kind in ("wordpiece", "word")
    backend, roles = _recipe(kind, lowercase)
    if not files:
        raise PlmkitError("no corpus files given")
    for path in files:
        if not os.path.isfile(path):
            raise PlmkitError("corpus file not found", path=path)
    if vocab_size < 1:
        raise PlmkitError(f"vocab_size must be positive, got {vocab_size}")
    if out_dir is not None:
        check_out_dir(out_dir)
    names = list(dict.fromkeys(roles.values()))
    if kind == "unigram":
        backend = _train_unigram(backend, files, vocab_size, names, show_progress)
    else:
        # RoBERTa's <mask> eats the space before it, so "a <mask>" masks the word
        specials = [AddedToken(t, lstrip=True) if kind == "bytebpe" and t == "<mask>" else t for t in names]
        if kind in _MARKS:
            specials += _seed_vocabulary(backend, files, kind, show_progress)
        backend.train_from_iterator(_batches(files), trainer=_trainer(kind, specials, vocab_size, min_frequency,
                                                                      show_progress))
        if kind in _MARKS:
            backend = _without_added(backend, names)
        if kind == "rawchar" and backend.token_to_id(" ") is None:
            # Chinese text holds no space, but a character LM's inputs are framed by one (Flair's word
            # vectors read the state at it): the space is always in the vocabulary, as its last entry.
            vocab = backend.get_vocab()
            backend.model = models.WordLevel({**vocab, " ": len(vocab)}, unk_token="[UNK]")
    _add_post_processor(backend, roles, bert=kind in _BERT_KINDS)
    tokenizer = Tokenizer(backend, roles, kind=kind)
    if out_dir is not None:
        tokenizer.save(out_dir)
    return tokenizer
