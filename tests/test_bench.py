"""The benchmark harnesses: the two sides of each compute the same thing (the same losses, logits and token
counts). No timing assertions here; see bench/."""

import json
import sys

import pytest
import torch

from plmkit.bench.pretrain import bench_pretrain
from plmkit.bench.data import bench_data
from plmkit.bench.infer import bench_infer
from plmkit.cli import main
from plmkit.errors import PlmkitError

pytest.importorskip("transformers")


@pytest.mark.parametrize("model", ["bert", "gpt", "gpt2"])
def test_same_loss_as_the_peer_on_the_same_batches(model):
    r = bench_pretrain(model, "tiny", batch_size=4, seq_len=32, vocab_size=500, steps=3, warmup=2, rounds=1)
    for key in ("tokens_per_s", "peer_tokens_per_s", "ratio", "mfu", "peer_mfu", "peak_flops"):
        assert r[key] > 0, key
    assert r["max_loss_diff"] < 1e-4  # same weights, batches and optimizer: the same training run
    assert r["first_losses"][0] == pytest.approx(r["peer_first_losses"][0], abs=1e-4)


def test_cli_json(capsys):
    assert main(["bench", "pretrain", "--model", "bert", "--size", "tiny", "--batch-size", "2", "--seq-len", "16",
                 "--vocab-size", "300", "--steps", "1", "--rounds", "1", "--warmup", "1", "--vs", "none",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["tokens_per_s"] > 0 and "ratio" not in r


# --- bench infer: a fine-tuned classifier, plmkit fp32 / int8 against the transformers classifier ---

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=64)


@pytest.fixture(scope="module")
def task_files(tmp_path_factory, corpus):
    """KJV verses labelled by whether they name the LORD: 96 to train on, 48 to score."""
    d = tmp_path_factory.mktemp("infer-task")
    lines = [ln for ln in corpus.read_text().splitlines() if ln.strip()]
    rows = [{"text": v, "label": "lord" if "LORD" in v else "other"} for v in lines[:144]]
    for name, part in (("train.jsonl", rows[:96]), ("dev.jsonl", rows[96:])):
        (d / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    return d


def _classifier(member: str, task_files, corpus, out):
    """A tiny random body of `member` with a classification head, saved as `plmkit finetune` saves one."""
    from plmkit import family
    from plmkit.heads import HeadConfig, build, save_finetuned
    from plmkit.tokenizers import train_tokenizer

    m = family.get(member)
    tok = train_tokenizer(m.tokenizer, [corpus], 400, show_progress=False)
    fit = {"pad_token_id": tok.pad_id} if member == "roberta" else {}
    torch.manual_seed(0)
    body = m.model_cls(m.config_cls(vocab_size=tok.vocab_size, **TINY, **fit))
    net = build(body, tok, HeadConfig(task="classify", labels=("lord", "other"), max_length=48))
    with torch.no_grad():
        net.head.weight.mul_(100)  # decisive logits, so int8 rounding rarely flips a prediction
    save_finetuned(net.eval(), out, {"dev": str(task_files / "dev.jsonl")})
    return out


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, task_files, corpus):
    """A tiny BERT fine-tuned for a few steps by plmkit.workflows.finetune (which records its dev file)."""
    from plmkit.workflows.finetune import finetune

    d = tmp_path_factory.mktemp("infer-model")
    _classifier("bert", task_files, corpus, d / "body")
    finetune(d / "body", "classify", task_files / "train.jsonl", task_files / "dev.jsonl", d / "ft", epochs=1,
             batch_size=16, lr=2e-3, max_length=48, progress=False)
    return d / "ft"


def test_infer_plmkit_int8_and_peer_score_the_same_examples(finetuned, task_files):
    r = bench_infer(str(finetuned), batch_size=8, rounds=1)
    assert r["data"] == str(task_files / "dev.jsonl") and r["examples"] == 48  # the recorded dev file
    for key in ("examples_per_s", "tokens_per_s", "int8_examples_per_s", "peer_examples_per_s", "ratio",
                "int8_ratio"):
        assert r[key] > 0, key
    for key in ("accuracy", "int8_accuracy", "peer_accuracy"):
        assert 0 <= r[key] <= 1, key
    assert r["max_logit_diff"] < 1e-4  # same weights, same inputs: the same function
    assert r["peer_accuracy"] == r["accuracy"] and r["peer_agreement"] == 1
    assert r["int8_agreement"] >= 0.8 and abs(r["int8_accuracy"] - r["accuracy"]) <= 0.2
    assert r["tokens"] == r["peer_tokens"]  # the same tokenization and truncation on both sides
    assert r["padded_tokens"] <= r["peer_padded_tokens"]  # batches of similar lengths never pad more


def test_evaluate_and_predict_int8(finetuned, task_files, capsys):
    """--int8 runs plmkit.compress.quantize_int8: every linear layer quantized, predictions close to fp32."""
    from torch import nn

    from plmkit.compress import quantize_int8
    from plmkit.heads import load_finetuned

    q = quantize_int8(load_finetuned(str(finetuned)))
    assert not any(type(m) is nn.Linear for m in q.modules())
    dev = str(task_files / "dev.jsonl")
    results = {}
    for flags in ([], ["--int8"]):
        assert main(["evaluate", "--model", str(finetuned), "--data", dev, "--json", *flags]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert main(["predict", "--model", str(finetuned), "--data", dev, *flags]) == 0
        labels = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
        results[bool(flags)] = metrics, labels
    (fp32, fp32_labels), (int8, int8_labels) = results[False], results[True]
    assert len(int8_labels) == len(fp32_labels) == 48
    assert sum(a == b for a, b in zip(int8_labels, fp32_labels)) >= 0.8 * 48
    assert abs(int8["accuracy"] - fp32["accuracy"]) <= 0.2


@pytest.mark.parametrize("member", ["albert", "roberta"])
def test_infer_peer_computes_the_same_logits(member, task_files, corpus, tmp_path):
    d = _classifier(member, task_files, corpus, tmp_path / member)
    r = bench_infer(str(d), batch_size=16, rounds=1, limit=32)
    assert r["peer"].lower().startswith(member) and r["examples"] == 32
    assert r["max_logit_diff"] < 1e-4 and r["peer_agreement"] == 1
    assert r["tokens"] == r["peer_tokens"]


def test_infer_without_a_peer(task_files, corpus, tmp_path, capsys):
    d = _classifier("gpt", task_files, corpus, tmp_path / "gpt")
    assert main(["bench", "infer", "--model", str(d), "--limit", "8"]) == 2  # one-line error, no traceback
    assert "no transformers peer for 'gpt'" in capsys.readouterr().err
    r = bench_infer(str(d), batch_size=8, rounds=1, limit=8, vs_hf=False)
    assert r["int8_examples_per_s"] > 0 and "ratio" not in r
    with pytest.raises(PlmkitError, match="fine-tuned for 'classify', not 'pair'"):
        bench_infer(str(d), task="pair", vs_hf=False)


def test_cli_infer_json(finetuned, task_files, capsys):
    assert main(["bench", "infer", "--model", str(finetuned), "--data", str(task_files / "train.jsonl"),
                 "--limit", "16", "--batch-size", "8", "--rounds", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["examples"] == 16 and r["data"].endswith("train.jsonl")
    for key in ("examples_per_s", "peer_examples_per_s", "ratio", "int8_examples_per_s", "int8_ratio", "accuracy",
                "int8_accuracy", "peer_accuracy", "max_logit_diff"):
        assert key in r, key


# --- bench data: corpus → token ids, build_shards against datasets.map ---

def test_data_both_sides_count_the_same_tokens(kjv_head):
    pytest.importorskip("datasets")
    r = bench_data(kjv_head(400), scale=2, workers=1, vocab_size=300)
    one, two = r["runs"]
    assert one["tokens"] == one["peer_tokens"] > 0 and two["tokens"] == two["peer_tokens"] == 2 * one["tokens"]
    for run in r["runs"]:
        assert run["tokens_per_s"] > 0 and run["peer_tokens_per_s"] > 0 and run["ratio"] > 0
        assert run["peak_rss_mb"] > 0 and run["peer_peak_rss_mb"] > 0
    assert r["rss_growth"] > 0 and r["workers"] == 1


def test_data_without_datasets_says_what_to_install(kjv_head, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets → ImportError
    assert main(["bench", "data", "--corpus", str(kjv_head(50))]) == 2
    assert "pip install 'plmkit[bench]'" in capsys.readouterr().err


# --- bench generate: greedy and beam-search decoding against transformers' generate ---

@pytest.mark.parametrize("model", ["gpt2", "t5", "bart"])
def test_generate_bench_chooses_the_peers_tokens(model, capsys):
    """Same weights, same prompts (an encoder–decoder's sources), greedy and beam 4: both sides must choose
    the same tokens (the harness raises if not)."""
    assert main(["bench", "generate", "--model", model, "--size", "tiny", "--vocab-size", "300", "--batch-sizes",
                 "1", "3", "--new-tokens", "6", "--prompt-len", "5", "--rounds", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert [(run["batch_size"], run["num_beams"]) for run in r["runs"]] == [(1, 1), (3, 1), (1, 4), (3, 4)]
    for run in r["runs"]:
        assert run["same_tokens"] and run["ratio"] > 0
        assert run["num_beams"] > 1 or run["head_ms_per_step"] > 0
