"""Token shards, the corpus reader over them, and the pre-training datasets and sampler."""

import filecmp
import itertools
import json
import os

import numpy as np
import pytest

from plmkit.data import SegmentPairs, StepSampler, TokenCorpus, Windows, build_shards
from plmkit.errors import PlmkitError
from plmkit.tokenizers import train_tokenizer


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory):
    """Real text in three shapes: blank-line-separated documents, one document without blank lines
    (long enough to be cut mid-document), and whitespace-only lines around a short document."""
    tmp = tmp_path_factory.mktemp("text")
    with open(shared_data / "corpora" / "en" / "wiki-sample.txt", encoding="utf-8") as f:
        lines = list(itertools.islice(f, 700))
    paths = [tmp / "wiki.txt", tmp / "one-doc.txt", tmp / "spaces.txt"]
    paths[0].write_text("".join(lines[:600]), encoding="utf-8")
    paths[1].write_text("".join(line for line in lines[600:] if line.strip()), encoding="utf-8")
    paths[2].write_text(" \n\t\nA short document.\nIts second line.\n   \n", encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def tokenizer(files):
    return train_tokenizer("wordpiece", files[:1], 500, show_progress=False)


@pytest.fixture(scope="module")
def corpus(files, tokenizer, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "corpus"
    build_shards(files, tokenizer, out, num_workers=1, show_progress=False, shard_bytes=30_000)
    return TokenCorpus(out)


def _reference_docs(files, tokenizer):
    """Each document as the list of its lines' token ids, read the simple way."""
    docs = []
    for path in files:
        lines = open(path, encoding="utf-8").read().splitlines()
        for blank, group in itertools.groupby(lines, key=lambda s: not s.strip()):
            if not blank:
                docs.append([tokenizer.encode(s) for s in group])
    return docs


def test_shards_hold_the_exact_token_stream(files, tokenizer, corpus):
    docs = _reference_docs(files, tokenizer)
    sep = tokenizer.doc_sep_id
    stream = [t for doc in docs for t in itertools.chain(*doc, [sep])]
    assert corpus.n_tokens == len(stream) and corpus.dtype == np.uint16 and corpus.vocab_size == 500
    assert corpus.n_docs == len(docs) and corpus.n_lines == sum(len(d) for d in docs)
    assert any(s["n_docs"] == 0 for s in corpus.meta["shards"])  # a shard cut from inside a document
    assert corpus.tokens(0, corpus.n_tokens).tolist() == stream
    line = 0
    for d, doc in enumerate(docs):
        assert corpus.doc_line_range(d) == (line, line + len(doc))
        for j, ids in enumerate(doc):
            expected = ids + [sep] if j == len(doc) - 1 else ids  # the doc-sep ends the last line
            assert corpus.line(line).tolist() == expected
            assert corpus.doc_of_line(line) == d
            start, stop = corpus.line_span(line)
            if stop > start:
                assert corpus.line_at(start) == corpus.line_at(stop - 1) == line
            line += 1


def test_shards_identical_for_any_worker_count(files, tokenizer, corpus, tmp_path):
    build_shards(files, tokenizer, tmp_path / "two", num_workers=2, show_progress=False, shard_bytes=30_000)
    names = sorted(os.listdir(corpus.directory))
    assert names == sorted(os.listdir(tmp_path / "two"))
    assert all(filecmp.cmp(corpus.directory / n, tmp_path / "two" / n, shallow=False) for n in names)
    meta = json.loads((tmp_path / "two" / "meta.json").read_text())
    assert meta["tokenizer_sha256"] == tokenizer.sha256 and meta["sources"][0]["bytes"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["two"]  # no temporary directory left behind


def test_shard_errors(files, tokenizer, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(PlmkitError, match="missing.txt: corpus file not found"):
        build_shards([tmp_path / "missing.txt"], tokenizer, out, show_progress=False)
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(PlmkitError, match="holds no text: .*empty.txt"):
        build_shards([tmp_path / "empty.txt"], tokenizer, out, show_progress=False)
    (tmp_path / "bad.txt").write_bytes(b"fine\n\nstill fine\n\xff\xfe broken\n")
    with pytest.raises(PlmkitError, match=r"bad.txt:4: not UTF-8"):
        build_shards([files[0], tmp_path / "bad.txt"], tokenizer, out, num_workers=2, show_progress=False)
    assert not out.exists()
    with pytest.raises(PlmkitError, match="no meta.json"):
        TokenCorpus(tmp_path)
    (tmp_path / "meta.json").write_text('{"format": 1}')
    with pytest.raises(PlmkitError, match="garbled meta.json"):
        TokenCorpus(tmp_path)


def test_windows_cover_the_stream(corpus):
    windows = Windows(corpus, 64)
    assert len(windows) == corpus.n_tokens // 64
    joined = np.concatenate([windows[i] for i in range(len(windows))])
    assert joined.dtype == np.int64 and np.array_equal(joined, corpus.tokens(0, len(windows) * 64))
    with pytest.raises(IndexError):
        windows[len(windows)]


def test_segment_pairs(corpus, tokenizer):
    pairs = SegmentPairs(corpus, max_tokens=61, seed=3)
    assert len(pairs) == corpus.n_tokens // 61 >= 200
    examples = [pairs[i] for i in range(200)]
    again = SegmentPairs(corpus, max_tokens=61, seed=3)
    for i in (0, 57, 199):
        a, b, is_next = again[i]
        assert np.array_equal(a, examples[i][0]) and np.array_equal(b, examples[i][1])
        assert is_next == examples[i][2]
    assert not np.array_equal(SegmentPairs(corpus, 61, seed=4)[57][0], examples[57][0])
    assert 0.4 <= np.mean([e[2] for e in examples]) <= 0.6
    for a, b, _ in examples:
        assert len(a) and len(b) and len(a) + len(b) <= 61
        assert tokenizer.doc_sep_id not in a and tokenizer.doc_sep_id not in b
    assert max(len(a) + len(b) for a, b, _ in examples) == 61


def test_step_sampler_resumes_and_covers_each_epoch():
    n, bs = 50, 4
    walked = StepSampler(n, bs, seed=7)
    history = [walked.indices(s) for s in range(40)]
    assert StepSampler(n, bs, seed=7).indices(25) == history[25]
    first_epoch = [i for batch in history[:12] for i in batch] + history[12][:2]  # 50 = 12 * 4 + 2
    assert sorted(first_epoch) == list(range(n))
    assert walked.epoch(25) == 2.0
    ranks = [StepSampler(n, bs, seed=7, rank=r, world_size=2) for r in (0, 1)]
    epoch = [[i for s in range(6) for i in sampler.indices(s)] for sampler in ranks]
    assert not set(epoch[0]) & set(epoch[1]) and len(set(epoch[0]) | set(epoch[1])) == 48
    assert StepSampler(n, bs, shuffle=False).indices(13) == [2, 3, 4, 5]


def test_segment_pairs_on_one_document_draw_negatives_from_within_it(tokenizer, tmp_path):
    """A corpus without blank lines is one document: negatives come from elsewhere in it, as BERT's
    create_pretraining_data.py falls back to, instead of failing."""
    text = tmp_path / "one.txt"
    text.write_text("".join(f"line {i} of the only document, with some words in it\n" for i in range(300)))
    build_shards([str(text)], tokenizer, tmp_path / "shards", num_workers=1, show_progress=False)
    one = TokenCorpus(tmp_path / "shards")
    assert one.n_docs == 1
    pairs = SegmentPairs(one, max_tokens=30, seed=0)
    examples = [pairs[i] for i in range(len(pairs))]
    assert 0.3 <= np.mean([e[2] for e in examples]) <= 0.7
    assert all(len(a) and len(b) and len(a) + len(b) <= 30 for a, b, _ in examples)
