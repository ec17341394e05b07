"""Task readers, their one-line errors, label sets, and the sub-word alignment of word tags for every
tokenizer kind."""

import json

import pytest

from plmkit.errors import PlmkitError
from plmkit.data.tasks import LabelSet, align_words, first_subtoken_labels, read_task
from plmkit.tokenizers import train_tokenizer


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_csv_tsv_read_the_same_examples(tmp_path):
    rows = [{"text": "a good day", "label": "pos"}, {"text": "a bad, bad day", "label": "neg"}]
    jsonl = _write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + "\n")
    csv = _write(tmp_path / "d.csv", 'text,label\na good day,pos\n"a bad, bad day",neg\n')
    tsv = _write(tmp_path / "d.tsv", "label\ttext\npos\ta good day\nneg\ta bad, bad day\n")
    for f in (jsonl, csv, tsv):
        ex = read_task(f, "classify")
        assert [(e.text, e.label) for e in ex] == [(r["text"], r["label"]) for r in rows], f
    assert [e.line for e in read_task(csv, "classify")] == [2, 3]


def test_pairs_regression_and_choice(tmp_path):
    pair = _write(tmp_path / "p.jsonl", json.dumps({"text_a": "x", "text_b": "y", "label": "entail"}) + "\n")
    e = read_task(pair, "pair")[0]
    assert (e.text, e.text_b, e.label) == ("x", "y", "entail")
    reg = _write(tmp_path / "r.csv", "text_a,text_b,label\nx,y,3.5\n")
    assert read_task(reg, "regress")[0].label == 3.5
    ch = _write(tmp_path / "c.jsonl", json.dumps({"question": "q", "choices": ["a", "b", "c"], "label": 2}) + "\n")
    e = read_task(ch, "choice")[0]
    assert (e.text, e.choices, e.label) == ("q", ["a", "b", "c"], 2)


def test_conll_and_squad(tmp_path):
    conll = _write(tmp_path / "t.txt", "John\tB-PER\nran\tO\n\n\nParis\tB-LOC\n")  # no final blank line
    ex = read_task(conll, "tag")
    assert [(e.tokens, e.tags, e.line) for e in ex] == [(["John", "ran"], ["B-PER", "O"], 1), (["Paris"], ["B-LOC"], 5)]
    ctx = "The cat sat on the mat."
    squad = {"data": [{"paragraphs": [{"context": ctx, "qas": [
        {"id": "q1", "question": "Where?", "answers": [{"text": "the mat", "answer_start": 15}]}]}]}]}
    e = read_task(_write(tmp_path / "s.json", json.dumps(squad)), "qa")[0]
    assert (e.id, e.text, e.context, e.answers[0]["text"]) == ("q1", "Where?", ctx, "the mat")


@pytest.mark.parametrize("name, text, task, message", [
    ("empty.jsonl", "\n\n", "classify", "empty.jsonl: no examples"),
    ("nolabel.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n', "classify",
     "nolabel.jsonl:2: missing field 'label'"),
    ("notext.csv", "label,body\nx,hello\n", "classify", "notext.csv:2: missing field 'text'"),
    ("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": \n', "classify", "bad.jsonl:2: not valid JSON"),
    ("bad.txt", "John\tB-PER\nran\n", "tag", "bad.txt:2: expected token<TAB>tag"),
    ("choice.jsonl", '{"question": "q", "choices": ["a", "b"], "label": 5}\n', "choice",
     "choice.jsonl:1: label 5 outside"),
    ("reg.jsonl", '{"text": "q", "label": "high"}\n', "regress", "reg.jsonl:1: label 'high' is not a number"),
    ("squad.json", '{"version": 1}', "qa", "squad.json: missing field 'data'"),
])
def test_errors_name_file_and_line(tmp_path, name, text, task, message):
    with pytest.raises(PlmkitError) as e:
        read_task(_write(tmp_path / name, text), task)
    assert message in str(e.value)


def test_missing_file_and_unknown_label(tmp_path):
    with pytest.raises(PlmkitError, match="not found"):
        read_task(tmp_path / "nope.jsonl", "classify")
    labels = LabelSet.discover(read_task(_write(tmp_path / "t.jsonl", '{"text": "a", "label": "y"}\n'
                                                '{"text": "b", "label": "x"}\n'), "classify"), "classify")
    assert labels.labels == ["x", "y"]
    with pytest.raises(PlmkitError, match=r"dev.jsonl:7: label 'z' was not in the training data"):
        labels.id("z", path="dev.jsonl", line=7)


def test_declared_labels_keep_their_order_and_admit_labels_train_lacks(tmp_path):
    train = _write(tmp_path / "t.jsonl", '{"text": "a", "label": "y"}\n{"text": "b", "label": "y"}\n')
    examples = read_task(train, "classify")
    with pytest.raises(PlmkitError, match="only 1 distinct label"):
        LabelSet.discover(examples, "classify")
    labels = LabelSet.discover(examples, "classify", declared=["z", "y", "x"])
    assert labels.labels == ["z", "y", "x"] and labels.id("x") == 2
    with pytest.raises(PlmkitError, match=r"t.jsonl:1: label 'y' is not one of --labels"):
        LabelSet.discover(examples, "classify", declared=["a", "b"], path=train)
    with pytest.raises(PlmkitError, match="twice"):
        LabelSet.discover(examples, "classify", declared=["y", "y"])


@pytest.fixture(scope="module")
def corpus(kjv_head):
    return kjv_head(2000)


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "bytebpe", "unigram", "char"])
def test_alignment_labels_the_first_subtoken_of_each_word(kind, corpus):
    tok = train_tokenizer(kind, [corpus], 300, show_progress=False)
    words = ["Jehoshaphat", "begat", "Joram;", "and", "unbelievably", "x"]
    ids, word_of = align_words(tok, words)
    assert len(ids) == len(word_of) > len(words)  # a small vocabulary splits some words
    # Every word is reached, in order, and the tokens of word w decode back to it.
    assert sorted(set(word_of) - {-1}) == list(range(len(words)))
    in_words = [w for w in word_of if w >= 0]
    assert in_words == sorted(in_words)
    for w, word in enumerate(words):
        pieces = [i for i, wo in zip(ids, word_of) if wo == w]
        assert tok.decode(pieces).replace(" ", "").lower() == word.lower(), (kind, word)
    labels = first_subtoken_labels(word_of, [10, 11, 12, 13, 14, 15])
    assert [label for label in labels if label != -100] == [10, 11, 12, 13, 14, 15]
    firsts = [k for k, label in enumerate(labels) if label != -100]
    assert all(word_of[k] != word_of[k - 1] for k in firsts if k > 0)


def test_line_separators_inside_json_and_newlines_inside_csv(tmp_path):
    jsonl = _write(tmp_path / "d.jsonl", json.dumps({"text": "a\u2028b", "label": "x"}, ensure_ascii=False) + "\n"
                   + json.dumps({"text": "c", "label": "y"}) + "\n")
    assert [e.text for e in read_task(jsonl, "classify")] == ["a\u2028b", "c"]
    csv = _write(tmp_path / "d.csv", 'text,label\n"two\nlines",x\nthird,\n')
    with pytest.raises(PlmkitError, match=r"d.csv:4: missing field 'label'"):
        read_task(csv, "classify")


def test_labels_flag_reads_a_list_or_a_file(tmp_path):
    from plmkit.cli.finetune import _labels

    assert _labels("pos, neg,") == ["pos", "neg"] and _labels(None) is None
    (tmp_path / "tags.txt").write_text("NN\n,\n\nVB\n")
    assert _labels(f"@{tmp_path / 'tags.txt'}") == ["NN", ",", "VB"]
    with pytest.raises(PlmkitError, match="labels file not found"):
        _labels(f"@{tmp_path / 'none.txt'}")
