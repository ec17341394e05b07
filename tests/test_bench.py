"""The benchmark harness: both sides train identically (no timing assertions here; see bench/)."""

import json

import pytest

from plmkit.bench import bench_pretrain
from plmkit.cli import main

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
