"""Heads on tiny BERT and GPT bodies: every task trains and its loss falls, GPT's input transformations,
save → load_finetuned round trips, scalar mix and ULMFiT, the CLI end to end, and the quickstart in a
tiny mode. Then the lineage as bodies (LSTM, ELMo, word2vec): framing, pooling, scalar mix, ULMFiT groups,
and --init-embeddings from word2vec vectors, frozen or tuned."""

import gzip
import json
from importlib import resources

import pytest
import torch

from plmkit import heads, load
from plmkit.cli import main
from plmkit.workflows.finetune import GradualUnfreezing, finetune
from plmkit.heads import HeadConfig, build, collate, encode, load_finetuned, save_finetuned
from plmkit.interop.hf import save_model
from plmkit.models.bert import Bert, BertConfig
from plmkit.models.gpt import Gpt, GptConfig
from plmkit.models.word2vec import init_input_embeddings
from plmkit.data.tasks import read_task
from plmkit.tokenizers import load_tokenizer, train_tokenizer

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=128, max_positions=128)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny tasks made from KJV verses, with labels a model can learn from the words."""
    d = tmp_path_factory.mktemp("tasks")
    with resources.files("plmkit").joinpath("resources/kjv.txt.gz").open("rb") as f:
        lines = [ln for ln in gzip.open(f, "rt", encoding="utf-8").read().splitlines() if ln.strip()][:1200]
    (d / "corpus.txt").write_text("\n".join(lines))
    verses = lines[:96]

    def jsonl(name, rows):
        (d / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    jsonl("classify.jsonl", [{"text": v, "label": "lord" if "LORD" in v else "other"} for v in verses])
    jsonl("pair.jsonl", [{"text_a": v, "text_b": lines[i + 300], "label": "lord" if "LORD" in v else "other"}
                         for i, v in enumerate(verses)])
    jsonl("regress.jsonl", [{"text_a": v, "text_b": lines[i + 300], "label": len(v) / 100}
                            for i, v in enumerate(verses)])
    jsonl("choice.jsonl", [{"question": v, "choices": [lines[i + 1], lines[i + 600], lines[i + 900]], "label": 0}
                           for i, v in enumerate(verses)])
    (d / "tag.txt").write_text("".join("".join(f"{w}\t{'B-CAP' if w[0].isupper() else 'O'}\n" for w in v.split()) + "\n"
                                       for v in verses))
    paragraphs = []
    for i, v in enumerate(verses[:48]):
        context = " ".join(lines[i:i + 4])  # longer than one window: exercises the doc stride
        answer = v.split()[2]
        answers = [{"text": answer, "answer_start": context.index(answer)}]
        qas = [{"id": str(i), "question": "the third word", "answers": answers}]
        paragraphs.append({"context": context, "qas": qas})
    (d / "qa.json").write_text(json.dumps({"data": [{"paragraphs": paragraphs}]}))
    return d


@pytest.fixture(scope="module", params=["bert", "gpt"])
def body_dir(request, data, tmp_path_factory):
    """A tiny random-weight BERT (WordPiece) or GPT (BPE) saved as a model directory."""
    kind, cls, config = {"bert": ("wordpiece", Bert, BertConfig), "gpt": ("bpe", Gpt, GptConfig)}[request.param]
    tok = train_tokenizer(kind, [data / "corpus.txt"], 400, show_progress=False)
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp(request.param) / "model"
    save_model(cls(config(vocab_size=tok.vocab_size, **TINY)), d, tok)
    return d


def _task_model(body_dir, task, examples, **kw):
    from plmkit.data.tasks import LabelSet

    tok = load_tokenizer(body_dir)
    labels = tuple(LabelSet.discover(examples, task).labels)
    torch.manual_seed(0)
    return build(load(body_dir), tok, HeadConfig(task=task, labels=labels, dropout=0.0, **kw)), tok


FILES = {"classify": "classify.jsonl", "pair": "pair.jsonl", "regress": "regress.jsonl", "choice": "choice.jsonl",
         "tag": "tag.txt", "qa": "qa.json"}


@pytest.mark.parametrize("task, extra", [("classify", {}), ("pair", {}), ("regress", {}), ("choice", {}),
                                         ("tag", {}), ("tag", {"crf": True}),
                                         ("qa", {"max_length": 40, "doc_stride": 12})])
def test_each_head_learns(body_dir, data, task, extra, fits_one_batch):
    examples = read_task(data / FILES[task], task)
    model, tok = _task_model(body_dir, task, examples, **extra)
    fits_one_batch(model, collate(encode(examples[:16], model, tok), tok.pad_id or 0), lr=3e-3)


@pytest.mark.parametrize("task", ["classify", "pair", "choice"])
def test_sequence_heads_compute_the_last_layer_only_where_they_pool(body_dir, data, task):
    """[CLS] (BERT) or the [extract] token (GPT) alone in the last layer: the same logits and gradients as
    the whole last layer, on padded batches."""
    examples = read_task(data / FILES[task], task)
    model, tok = _task_model(body_dir, task, examples)
    assert model.rows_only
    batch = collate(encode(examples[:8], model, tok), tok.pad_id or 0)
    assert not batch["attention_mask"].all()
    grads = []
    for rows_only in (True, False):
        model.rows_only = rows_only
        model.zero_grad()
        out = model(batch)
        out["loss"].backward()
        grads.append((out["logits"].detach(), model.body.layers[0].attn.qkv.weight.grad.clone()))
    (fast, g_fast), (full, g_full) = grads
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_fast, g_full, atol=1e-6, rtol=1e-4)


def test_qa_windows_hold_the_answer(body_dir, data):
    examples = read_task(data / "qa.json", "qa")
    model, tok = _task_model(body_dir, "qa", examples, max_length=40, doc_stride=12)
    features = encode(examples, model, tok)
    assert len(features) > 2 * len(examples)  # long contexts become several overlapping windows
    found = set()
    for f in features:
        if f["start_positions"]:
            answer = tok.decode(f["input_ids"][f["start_positions"]:f["end_positions"] + 1])
            assert answer.replace(" ", "").lower() == examples[f["example"]].answers[0]["text"].lower()
            assert all(f["context_mask"][f["start_positions"]:f["end_positions"] + 1])
            found.add(f["example"])
    assert found == set(range(len(examples)))


def test_gpt_input_transformations(data, tmp_path):
    tok = train_tokenizer("bpe", [data / "corpus.txt"], 400, show_progress=False)
    body = Gpt(GptConfig(vocab_size=tok.vocab_size, **TINY))
    n_before = tok.vocab_size
    pair = read_task(data / "pair.jsonl", "pair")
    model = build(body, tok, HeadConfig(task="pair", labels=("lord", "other")))
    start, delim, extract = (tok.token_to_id(t) for t in heads.GPT_TOKENS)
    assert (start, delim, extract) == (n_before, n_before + 1, n_before + 2)
    assert body.config.vocab_size == body.embeddings.tokens.num_embeddings == n_before + 3
    e = pair[0]
    f = encode([e], model, tok)[0]
    a, b = tok.encode(e.text), tok.encode(e.text_b)
    assert f["input_ids"] == [start, *a, delim, *b, extract]  # entailment: premise [delim] hypothesis
    # Similarity: both orders, as two views whose features are summed.
    reg = build(body, tok, HeadConfig(task="regress", gpt_tokens=heads.GPT_TOKENS))
    views = encode(read_task(data / "regress.jsonl", "regress")[:1], reg, tok)[0]["views"]
    assert [v[0] for v in views] == [[start, *a, delim, *b, extract], [start, *b, delim, *a, extract]]
    # Multiple choice: one sequence per option.
    ch = build(body, tok, HeadConfig(task="choice", gpt_tokens=heads.GPT_TOKENS))
    ex = read_task(data / "choice.jsonl", "choice")[0]
    views = encode([ex], ch, tok)[0]["views"]
    assert [v[0] for v in views] == [[start, *tok.encode(ex.text), delim, *tok.encode(c), extract] for c in ex.choices]
    # The head reads the [extract] token: changing anything after it (padding) changes nothing.
    batch = collate(encode(pair[:2], model, tok), 0)
    model.eval()
    one = model({k: v[:1, : len(f["input_ids"])] for k, v in batch.items() if k != "labels"})["logits"]
    both = model({k: v for k, v in batch.items() if k != "labels"})["logits"]
    torch.testing.assert_close(one[0], both[0], atol=1e-5, rtol=1e-5)
    # The added tokens and rows survive a save and load.
    save_finetuned(model, tmp_path / "ft")
    again = load_finetuned(tmp_path / "ft")
    assert again.tokenizer.token_to_id("<|extract|>") == extract
    assert again.body.config.vocab_size == n_before + 3


@pytest.mark.parametrize("task, extra", [("classify", {}), ("tag", {"crf": True}), ("choice", {}),
                                         ("qa", {"max_length": 40, "doc_stride": 12}),
                                         ("classify", {"features": "scalar-mix"})])
def test_save_load_gives_the_same_predictions(body_dir, data, task, extra, tmp_path):
    from plmkit.heads import evaluate

    examples = read_task(data / FILES[task], task)
    model, tok = _task_model(body_dir, task, examples, **extra)
    examples = examples[::4]
    with torch.no_grad():  # perturb the heads so a head that was not saved would show
        for name, p in model.named_parameters():
            if not name.startswith("body."):
                p.add_(torch.randn_like(p) * 0.5)
    metrics, preds = evaluate(model, tok, examples)
    save_finetuned(model, tmp_path / "ft")
    loaded = load_finetuned(tmp_path / "ft")
    metrics2, preds2 = evaluate(loaded, loaded.tokenizer, examples)
    assert preds == preds2 and metrics == metrics2


def test_finetune_ulmfit_and_scalar_mix(body_dir, data, tmp_path):
    f = str(data / "classify.jsonl")
    r = finetune(body_dir, "classify", f, f, tmp_path / "ulm", epochs=3, lr=3e-3, ulmfit=True, patience=3,
                 progress=False)
    assert [c["epoch"] for c in r["curve"]] == [1.0, 2.0, 3.0]
    cfg = json.loads((tmp_path / "ulm" / "train_config.json").read_text())["config"]
    assert cfg["schedule"] == "slanted_triangular"
    # The embeddings, the lowest of the 4 groups, are still frozen after 3 epochs.
    before, after = load(body_dir), load_finetuned(tmp_path / "ulm").body
    n = before.embeddings.tokens.num_embeddings
    assert torch.equal(before.embeddings.tokens.weight, after.embeddings.tokens.weight[:n])
    r = finetune(body_dir, "classify", f, f, tmp_path / "mix", epochs=2, features="scalar-mix", progress=False)
    loaded = load_finetuned(tmp_path / "mix")
    assert loaded.mix.weights.numel() == TINY["num_layers"] + 1
    assert not any(p.requires_grad for p in loaded.body.parameters())


def test_gradual_unfreezing_one_group_per_epoch(body_dir, data):
    examples = read_task(data / "classify.jsonl", "classify")
    model, _ = _task_model(body_dir, "classify", examples)
    groups = model.layer_groups()  # embeddings, layer 0, layer 1, everything above
    assert len(groups) == TINY["num_layers"] + 2
    assert {id(p) for g in groups for p in g} == {id(p) for p in model.parameters()}
    unfreezing = GradualUnfreezing(groups)
    for epoch in range(5):
        assert [all(p.requires_grad for p in g) for g in groups] == [i >= 3 - epoch for i in range(4)]
        assert not any(p.requires_grad for g in groups[:max(3 - epoch, 0)] for p in g)
        unfreezing.next()


def test_cli_finetune_evaluate_predict_embed(body_dir, data, tmp_path, capsys):
    out = tmp_path / "ft"
    f = str(data / "tag.txt")
    assert main(["-q", "finetune", "--model", str(body_dir), "--task", "tag", "--train", f, "--dev", f, "--test", f,
                 "--out", str(out), "--epochs", "2", "--lr", "3e-3", "--batch-size", "16"]) == 0
    ev = json.loads((out / "eval.json").read_text())
    assert set(ev["dev"]) >= {"f1", "precision", "recall"} and set(ev["test"]) >= {"f1"}
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "checkpoints").exists()
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--data", f, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == pytest.approx(ev["test"]["f1"])
    assert main(["predict", "--model", str(out), "--data", f]) == 0
    preds = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(preds) == 96 and len(preds[0]["tokens"]) == len(preds[0]["tags"])
    assert main(["embed", "--model", str(out), "--text", "In the beginning", "And God", "--pool", "mean",
                 "--json"]) == 0
    vectors = json.loads(capsys.readouterr().out)
    assert [len(v["vector"]) for v in vectors] == [TINY["hidden_size"]] * 2


def test_cli_errors_are_one_line(body_dir, data, tmp_path, capsys):
    bad = tmp_path / "dev.jsonl"
    bad.write_text('{"text": "a", "label": "lord"}\n{"text": "b", "label": "nobody"}\n')
    f = str(data / "classify.jsonl")
    for args, where in [(["--dev", str(bad)], "dev.jsonl:2"), (["--dev", str(tmp_path / "none.jsonl")], "none.jsonl")]:
        capsys.readouterr()
        assert main(["finetune", "--model", str(body_dir), "--task", "classify", "--train", f, "--out",
                     str(tmp_path / "o"), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and where in err
    assert main(["evaluate", "--model", str(body_dir), "--data", f]) == 2  # a body without a head
    assert "head.json" in capsys.readouterr().err


# --- the lineage as bodies: LSTM, ELMo, word2vec --------------------------------------------------------

LINEAGE = dict(embedding_size=32, hidden_size=32, num_layers=2)


@pytest.fixture(scope="module")
def lineage_tok(data):
    return train_tokenizer("bpe", [data / "corpus.txt"], 400, show_progress=False)


@pytest.fixture(scope="module", params=["lstm", "elmo"])
def lineage_dir(request, data, lineage_tok, tmp_path_factory):
    """A tiny random-weight LSTM LM or ELMo biLM (BPE) saved as a model directory."""
    from plmkit import family

    m = family.get(request.param)
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp(request.param) / "model"
    save_model(m.model_cls(m.config_cls.preset("tiny", vocab_size=lineage_tok.vocab_size, **LINEAGE)), d, lineage_tok)
    return d


@pytest.fixture(scope="module")
def w2v_dir(data, tmp_path_factory):
    """word2vec vectors of 32 dimensions (= the tiny bodies' embedding width) trained on the task corpus."""
    pytest.importorskip("gensim")
    d = tmp_path_factory.mktemp("w2v") / "w2v"
    assert main(["-q", "pretrain", "--model", "word2vec", "--corpus", str(data / "corpus.txt"), "--out", str(d),
                 "--set", "embedding_size=32", "--set", "min_count=2", "--set", "epochs=2"]) == 0
    return d


@pytest.mark.parametrize("task", ["classify", "tag"])
def test_lineage_heads_learn_and_frame_their_inputs(lineage_dir, data, task, fits_one_batch):
    examples = read_task(data / FILES[task], task)
    model, tok = _task_model(lineage_dir, task, examples)
    features = encode(examples[:16], model, tok)
    ids = features[0]["input_ids"]
    if model.body.family_name == "elmo":  # bidirectional features: framed by the pre-training separator
        assert not model.causal and model.config.gpt_tokens == ()
        assert ids[0] == tok.doc_sep_id and (task == "tag" or ids[-1] == tok.doc_sep_id)
        assert model.head.in_features == 2 * LINEAGE["hidden_size"]  # [→h; ←h]
    else:  # a causal LM: GPT's input transformation, new rows in the embedding
        start, extract = tok.token_to_id(heads.GPT_TOKENS[0]), tok.token_to_id(heads.GPT_TOKENS[2])
        assert model.causal and ids[0] == start and (task == "tag" or ids[-1] == extract)
        assert model.body.embeddings.num_embeddings == model.body.config.vocab_size == tok.vocab_size
    fits_one_batch(model, collate(features, tok.pad_id), lr=1e-2)


def test_elmo_pooling_reads_each_direction_end_and_ignores_padding(data, lineage_tok, tmp_path):
    from plmkit.models.elmo import Elmo, ElmoConfig

    torch.manual_seed(0)
    save_model(Elmo(ElmoConfig(vocab_size=lineage_tok.vocab_size, **LINEAGE)), tmp_path / "elmo", lineage_tok)
    examples = read_task(data / "classify.jsonl", "classify")
    model, tok = _task_model(tmp_path / "elmo", "classify", examples)
    examples = examples[:4]
    model.eval()
    batch = collate(encode(examples, model, tok), tok.pad_id)
    mask = batch["attention_mask"]
    assert len(set(mask.sum(1).tolist())) > 1  # rows of different lengths: there is padding
    together = model({k: v for k, v in batch.items() if k != "labels"})["logits"]
    for b in range(4):
        n = int(mask[b].sum())
        alone = model({"input_ids": batch["input_ids"][b:b + 1, :n], "attention_mask": mask[b:b + 1, :n]})["logits"]
        torch.testing.assert_close(alone[0], together[b], atol=1e-5, rtol=1e-5)
    h = model.body.encode(batch["input_ids"], mask).last_hidden_state
    n = int(mask[1].sum())
    H = LINEAGE["hidden_size"]
    pooled = model.pooled(h, mask)[1]
    assert torch.equal(pooled[:H], h[1, n - 1, :H]) and torch.equal(pooled[H:], h[1, 0, H:])
    # `plmkit embed` frames and pools a body the way the heads do.
    from plmkit.heads import embed

    texts = [e.text for e in examples[:2]]
    ids = [tok.doc_sep_id, *tok.encode(texts[1]), tok.doc_sep_id]
    with torch.no_grad():
        h1 = model.body.encode(torch.tensor([ids])).last_hidden_state[0]
    vectors = embed(model.body, tok, texts)
    assert vectors.shape == (2, 2 * H)
    torch.testing.assert_close(vectors[1], torch.cat([h1[-1, :H], h1[0, H:]]), atol=1e-5, rtol=1e-5)


def test_finetune_lineage_bodies_classify_tag_and_scalar_mix(lineage_dir, data, tmp_path):
    from plmkit.heads import evaluate

    c, t = str(data / "classify.jsonl"), str(data / "tag.txt")
    assert main(["-q", "finetune", "--model", str(lineage_dir), "--task", "classify", "--train", c, "--dev", c,
                 "--test", c, "--out", str(tmp_path / "c"), "--epochs", "1", "--lr", "3e-3", "--from-scratch",
                 "--batch-size", "32"]) == 0
    ev = json.loads((tmp_path / "c" / "eval.json").read_text())
    assert ev["test"]["n"] == 96 and 0 <= ev["test"]["accuracy"] <= 1
    assert main(["-q", "finetune", "--model", str(lineage_dir), "--task", "tag", "--train", t, "--dev", t,
                 "--out", str(tmp_path / "t"), "--epochs", "2", "--features", "scalar-mix", "--lr", "1e-2"]) == 0
    ev = json.loads((tmp_path / "t" / "eval.json").read_text())
    loaded = load_finetuned(tmp_path / "t")
    assert loaded.mix.weights.numel() == LINEAGE["num_layers"] + 1  # the embeddings and each layer
    assert not any(p.requires_grad for p in loaded.body.parameters())
    metrics, _ = evaluate(loaded, loaded.tokenizer, read_task(t, "tag"))
    assert metrics["f1"] == pytest.approx(ev["dev"]["f1"])  # the saved model is the one that was scored
    assert ev["dev"]["accuracy"] > 0.75  # capitalised words are B-CAP: a frozen body's layers already tell


def test_ulmfit_groups_on_an_lstm(data, lineage_tok, tmp_path):
    from plmkit.models.lstm import Lstm, LstmConfig

    torch.manual_seed(0)
    save_model(Lstm(LstmConfig(vocab_size=lineage_tok.vocab_size, **LINEAGE)), tmp_path / "lstm", lineage_tok)
    examples = read_task(data / "classify.jsonl", "classify")
    model, _ = _task_model(tmp_path / "lstm", "classify", examples)
    groups = model.layer_groups()  # embeddings, LSTM layer 0, LSTM layer 1, head and the rest
    body = model.body
    assert len(groups) == LINEAGE["num_layers"] + 2
    assert groups[0] == [body.embeddings.weight]
    assert {id(p) for p in groups[1]} == {id(p) for p in body.rnn.layers[0].parameters()}
    assert {id(p) for p in groups[-1]} >= {id(p) for p in model.head.parameters()}
    assert {id(p) for g in groups for p in g} == {id(p) for p in model.parameters()}
    f = str(data / "classify.jsonl")
    r = finetune(tmp_path / "lstm", "classify", f, f, tmp_path / "ulm", epochs=3, lr=3e-3, ulmfit=True,
                 patience=3, progress=False)
    assert len(r["curve"]) == 3
    after = load_finetuned(tmp_path / "ulm").body
    n = load(tmp_path / "lstm").config.vocab_size
    # the embeddings, the lowest of the 4 groups, are still frozen after 3 epochs
    assert torch.equal(load(tmp_path / "lstm").embeddings.weight, after.embeddings.weight[:n])


@pytest.mark.parametrize("freeze", [True, False])
def test_init_embeddings_from_word2vec(lineage_dir, w2v_dir, data, tmp_path, freeze):
    w2v, wtok = load(w2v_dir), load_tokenizer(w2v_dir)
    f = str(data / "classify.jsonl")
    out = tmp_path / "ft"
    assert main(["-q", "finetune", "--model", str(lineage_dir), "--task", "classify", "--train", f, "--dev", f,
                 "--out", str(out), "--epochs", "2", "--lr", "1e-2", "--init-embeddings", str(w2v_dir),
                 *(["--freeze-embeddings"] if freeze else [])]) == 0
    ev = json.loads((out / "eval.json").read_text())
    tok = load_tokenizer(lineage_dir)
    info = ev["init_embeddings"]
    assert info["frozen"] == freeze and 20 < info["rows"] < tok.vocab_size
    initialised = load(lineage_dir)
    assert init_input_embeddings(initialised, tok, w2v, wtok) == info["rows"]
    start, after = initialised.embeddings.weight, load_finetuned(out).body.embeddings.weight[: tok.vocab_size]
    [god] = tok.encode("God")  # one token, a word2vec word once lower-cased
    cos = torch.nn.functional.cosine_similarity(start[god], w2v.vectors(["god"], wtok)[0], dim=0)
    assert cos.item() == pytest.approx(1.0, abs=1e-5)
    if freeze:  # the copied vectors and the untouched rows both survive training unchanged
        assert torch.equal(after, start)
    else:
        assert not torch.equal(after[god], start[god])


def test_init_embeddings_on_a_transformer_and_size_errors(body_dir, w2v_dir, data, tmp_path, capsys):
    f = str(data / "classify.jsonl")
    args = ["finetune", "--model", str(body_dir), "--task", "classify", "--train", f, "--dev", f, "--epochs", "1"]
    assert main(["-q", *args, "--out", str(tmp_path / "ok"), "--init-embeddings", str(w2v_dir),
                 "--freeze-embeddings"]) == 0
    rows = json.loads((tmp_path / "ok" / "eval.json").read_text())["init_embeddings"]["rows"]
    body, initialised = load_finetuned(tmp_path / "ok").body, load(body_dir)
    assert init_input_embeddings(initialised, load_tokenizer(body_dir), load(w2v_dir), load_tokenizer(w2v_dir)) == rows
    n = initialised.config.vocab_size
    assert rows > 20 and torch.equal(body.embeddings.tokens.weight[:n], initialised.embeddings.tokens.weight)
    capsys.readouterr()
    small = tmp_path / "w2v16"
    assert main(["-q", "pretrain", "--model", "word2vec", "--corpus", str(data / "corpus.txt"), "--out", str(small),
                 "--set", "embedding_size=16", "--set", "min_count=2", "--set", "epochs=1"]) == 0
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "bad"), "--init-embeddings", str(small)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "embedding_size=32" in err


def test_word2vec_body_tags_with_frozen_or_tuned_vectors(w2v_dir, data, tmp_path):
    t = str(data / "tag.txt")
    r = finetune(w2v_dir, "tag", t, t, tmp_path / "mix", epochs=3, features="scalar-mix", lr=3e-2, progress=False)
    loaded = load_finetuned(tmp_path / "mix")
    assert loaded.mix.weights.numel() == 1  # its one layer: the static vectors
    assert torch.equal(loaded.body.embeddings.weight, load(w2v_dir).embeddings.weight)
    assert r["dev"]["accuracy"] > 0.8  # majority tag (O) alone is below that
    log = [json.loads(line) for line in (tmp_path / "mix" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"]
    finetune(w2v_dir, "classify", str(data / "classify.jsonl"), str(data / "classify.jsonl"), tmp_path / "tuned",
             epochs=1, lr=1e-2, progress=False)
    assert not torch.equal(load_finetuned(tmp_path / "tuned").body.embeddings.weight, load(w2v_dir).embeddings.weight)


def test_scalar_mix_needs_layers_of_one_width(data, lineage_tok, tmp_path):
    from plmkit.errors import PlmkitError
    from plmkit.models.lstm import Lstm, LstmConfig

    save_model(Lstm(LstmConfig(vocab_size=lineage_tok.vocab_size, embedding_size=16, hidden_size=32)),
               tmp_path / "lstm", lineage_tok)
    with pytest.raises(PlmkitError, match="widths differ"):
        build(load(tmp_path / "lstm"), lineage_tok, HeadConfig(task="classify", labels=("a", "b"),
                                                              features="scalar-mix"))


def test_quickstart_tiny(tmp_path, capsys):
    from plmkit.workflows.quickstart import quickstart

    report = quickstart(str(tmp_path / "qs"), steps=3, tiny=True)
    saved = json.loads((tmp_path / "qs" / "report.json").read_text())
    for name in ("pretrained", "scratch"):
        assert set(saved[name]) >= {"metric", "score", "seconds"} and 0 <= saved[name]["score"] <= 1
    assert saved["pretrained"]["score"] == report["pretrained"]["score"]
    assert (tmp_path / "qs" / "comparison.png").exists()
    assert "from scratch" in capsys.readouterr().out
