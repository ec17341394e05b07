"""Flair: the raw-character tokenizer, word vectors read at the right characters (§2.2), pre-training on
both directions' next-character loss, and BiLSTM-style tagging with a CRF that saves and reloads."""

import json

import pytest
import torch

from plmkit import family, load_tokenizer
from plmkit.cli import main
from plmkit.data.tasks import Example, LabelSet, read_task
from plmkit.heads import HeadConfig, build, collate, encode, evaluate, load_finetuned
from plmkit.interop.hf import load_model, save_model
from plmkit.tokenizers import train_tokenizer

SMALL = dict(embedding_size=16, hidden_size=24)


@pytest.fixture(scope="module")
def files(kjv_head, tmp_path_factory):
    """A 400-verse corpus and a capitalisation tagging task on the next 64 verses (words ending in "s" are a
    second class, which only the forward state at the word's end can see)."""
    d = tmp_path_factory.mktemp("flair")
    corpus = kjv_head(464).read_text().split("\n")
    verses = [v for v in corpus if v.strip()]
    (d / "corpus.txt").write_text("\n".join(corpus[:420]) + "\n")
    tags = lambda w: "B-CAP" if w[0].isupper() else "B-S" if w.endswith("s") else "O"  # noqa: E731
    (d / "tag.txt").write_text("".join("".join(f"{w}\t{tags(w)}\n" for w in v.split()[:12]) + "\n"
                                       for v in verses[400:464]))
    return d


@pytest.fixture(scope="module")
def tok(files):
    return train_tokenizer("rawchar", [files / "corpus.txt"], 200, show_progress=False)


def _tiny(tok, **kw):
    m = family.get("flair")
    torch.manual_seed(0)
    return m.model_cls(m.config_cls.preset("tiny", vocab_size=tok.vocab_size, dropout=0.0, **{**SMALL, **kw}))


def test_rawchar_keeps_spaces_but_none_between_han_characters(tok):
    ids, offsets = tok.encode_with_offsets("In the 中 国")
    space = tok.token_to_id(" ")
    assert space is not None and ids.count(space) == 2 and len(ids) == 9  # 中 and 国 adjacent
    assert offsets[-1] == (9, 10) and tok.decode(tok.encode("In the beginning")) == "In the beginning"
    assert tok.kind == "rawchar"


def test_a_rawchar_vocabulary_from_text_without_spaces_still_has_the_space(tmp_path):
    """Chinese text has no space, but Flair frames every input with one: it is added as the last entry."""
    (tmp_path / "zh.txt").write_text("中国人民\n人民日报\n", encoding="utf-8")
    zh = train_tokenizer("rawchar", [tmp_path / "zh.txt"], 200, show_progress=False)
    space = zh.token_to_id(" ")
    assert space == zh.vocab_size - 1 and zh.encode("人 民") == [zh.token_to_id("人"), zh.token_to_id("民")]
    assert zh.encode("a 人") == [zh.unk_id, space, zh.token_to_id("人")]


def test_word_vectors_come_from_the_characters_around_each_word(tok):
    model = _tiny(tok).eval()
    H = SMALL["hidden_size"]
    sep, space = model.input_frame(tok)[0], tok.token_to_id(" ")
    # [SEP] a n d ␣ G o d ␣ s a i d ␣ : words start at 1, 5, 9; the end space is position 13.
    ids = [sep, *tok.encode("and God said"), space]
    assert ids[4] == ids[8] == space and len(ids) == 14
    x = torch.tensor([ids])
    with torch.no_grad():
        h = model.encode(x, torch.ones_like(x)).last_hidden_state  # (1, 14, 2H)
        starts, words = torch.tensor([[1, 5, 9]]), torch.ones(1, 3, dtype=torch.bool)
        w = model.word_vectors(h, starts, words, torch.tensor([14]))[0]  # (3, 2H)
        # forward half: the state at the space closing each word, = the forward LM run on the prefix alone
        for k, end in enumerate([4, 8, 13]):
            prefix = model.encode(x[:, :end + 1]).last_hidden_state[0, -1, :H]
            torch.testing.assert_close(w[k, :H], prefix)
        # backward half: the state at the character before the word, = the backward LM run on the suffix alone
        for k, before in enumerate([0, 4, 8]):
            suffix = model.encode(x[:, before:]).last_hidden_state[0, 0, H:]
            torch.testing.assert_close(w[k, H:], suffix)
    # The tagging head reads exactly these vectors: encode a sentence the way fine-tuning does.
    examples = [Example(tokens=["and", "God", "said"], tags=["O", "B-CAP", "O"])]
    net = build(model, tok, HeadConfig(task="tag", labels=("B-CAP", "O"), dropout=0.0)).eval()
    f = encode(examples, net, tok)
    assert f[0]["input_ids"] == ids and f[0]["first"] == [0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]
    with torch.no_grad():
        emissions = net(collate(f, tok.pad_id))["logits"][0]
    torch.testing.assert_close(emissions, net.head(w))


def test_both_lms_resize_and_reinitialise(tok):
    model = _tiny(tok)
    x = torch.randint(0, tok.vocab_size, (2, 9))
    with torch.no_grad():
        old = model(x)
        model.resize_token_embeddings(tok.vocab_size + 3)
        new = model(x)
    assert model.config.vocab_size == model.embeddings_backward.num_embeddings == tok.vocab_size + 3
    assert new.backward_logits.shape[-1] == new.logits.shape[-1] == tok.vocab_size + 3
    torch.testing.assert_close(new.backward_logits[..., :-3], old.backward_logits)
    torch.testing.assert_close(new.logits[..., :-3], old.logits)
    before = model.embeddings_backward.weight.clone()
    model.init_weights()
    assert not torch.equal(before, model.embeddings_backward.weight)
    groups = model.layer_groups()  # ULMFiT: both embeddings at the bottom, then the one layer of both LMs
    assert len(groups) == 2 and {id(p) for p in groups[0]} == {id(model.embeddings.weight),
                                                                id(model.embeddings_backward.weight)}


def test_pretrain_loss_falls_and_predicts_both_ways(files, tmp_path):
    out = tmp_path / "flair"
    assert main(["-q", "pretrain", "--model", "flair", "--corpus", str(files / "corpus.txt"), "--out", str(out),
                 "--steps", "30", "--seq-len", "48", "--batch-size", "8", "--lr", "1e-2", "--log-every", "5", "--workers", "1",
                 *[a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]]) == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    first, last = log[0], log[-1]
    assert last["loss"] < 0.8 * first["loss"]
    assert last["forward_loss"] < first["forward_loss"] and last["backward_loss"] < first["backward_loss"]
    model = load_model(out)
    assert model.family_name == "flair" and load_tokenizer(out).kind == "rawchar"
    assert model.embeddings_backward.weight.data_ptr() != model.embeddings.weight.data_ptr()


@pytest.mark.parametrize("features", ["scalar-mix", "finetune"])
def test_tagging_with_a_crf_learns_saves_and_reloads(files, tok, tmp_path, features, fits_one_batch):
    body = tmp_path / "body"
    save_model(_tiny(tok), body, tok)
    f = str(files / "tag.txt")
    examples = read_task(f, "tag")
    labels = tuple(LabelSet.discover(examples, "tag").labels)
    torch.manual_seed(0)
    net = build(load_model(body), tok, HeadConfig(task="tag", labels=labels, crf=True, features=features,
                                                  max_length=256))
    fits_one_batch(net, collate(encode(examples[:16], net, tok), tok.pad_id), lr=3e-2)
    out = tmp_path / "ft"
    assert main(["-q", "finetune", "--model", str(body), "--task", "tag", "--crf", "--features", features,
                 "--train", f, "--dev", f, "--out", str(out), "--epochs", "1", "--lr", "1e-2",
                 "--max-length", "256", "--batch-size", "16"]) == 0
    ev = json.loads((out / "eval.json").read_text())["dev"]
    loaded = load_finetuned(out)
    assert loaded.body.family_name == "flair" and loaded.crf is not None
    assert any(p.requires_grad for p in loaded.body.parameters()) == (features == "finetune")
    metrics, _ = evaluate(loaded, loaded.tokenizer, examples)
    assert metrics["f1"] == pytest.approx(ev["f1"])
