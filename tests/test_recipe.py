"""Continued pre-training (`pretrain --init`) and the four-stage recipe."""

import json

import pytest
import torch

import plmkit
from plmkit.cli import main
from plmkit.errors import PlmkitError
from plmkit.workflows.pretrain import pretrain

TINY = dict(steps=4, batch_size=4, log_every=1)
DATA = dict(seq_len=32, vocab_size=600)


@pytest.fixture(scope="module")
def general(kjv_head, tmp_path_factory):
    out = tmp_path_factory.mktemp("general") / "run"
    pretrain("bert", [str(kjv_head(400))], out, model_overrides={"num_layers": 1}, train_overrides=TINY,
             data_overrides=DATA)
    return out


def test_init_continues_from_the_saved_weights_and_records_the_stages(general, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("the king went up to the house of the lord\nand the people followed him\n\n" * 60)
    out = tmp_path / "domain"
    # A vanishing learning rate: the continued model must still be the saved one, not a fresh init.
    pretrain(None, [str(other)], out, train_overrides={**TINY, "lr": 1e-12}, data_overrides={"seq_len": 32},
             init=general)
    before, after = plmkit.load(general).state_dict(), plmkit.load(out).state_dict()
    assert before.keys() == after.keys()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    assert plmkit.load_tokenizer(out).vocab_size == plmkit.load_tokenizer(general).vocab_size
    info = json.loads((out / "plmkit.json").read_text())["pretraining"]
    assert info["init"] == str(general.resolve())
    assert [s["corpus"] for s in info["earlier_stages"]] == [json.loads((general / "plmkit.json").read_text())
                                                             ["pretraining"]["corpus"]]


def test_init_refuses_what_it_cannot_honour(general, tmp_path, corpus):
    with pytest.raises(PlmkitError, match="holds a bert model, not gpt"):
        pretrain("gpt", [str(corpus)], tmp_path / "a", init=general)
    with pytest.raises(PlmkitError, match="drop num_layers"):
        pretrain(None, [str(corpus)], tmp_path / "b", model_overrides={"num_layers": 2}, init=general)
    with pytest.raises(PlmkitError, match="keeps the tokenizer"):
        pretrain(None, [str(corpus)], tmp_path / "c", data_overrides={"tokenizer": str(general)}, init=general)


def _task(path, n, offset=0):
    rows = [{"text": f"the lord spake unto moses number {i}", "label": "law"} if i % 2 else
            {"text": f"paul an apostle wrote to the church number {i}", "label": "epistle"}
            for i in range(offset, offset + n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path.name


def test_recipe_runs_every_stage_compares_and_skips_finished_ones(corpus, tmp_path, capsys):
    (tmp_path / "domain.txt").write_text("and moses spake unto the children of israel\n\n" * 80)
    train, dev = _task(tmp_path / "train.jsonl", 24), _task(tmp_path / "dev.jsonl", 8, offset=100)
    stage = "steps = 3\nbatch_size = 4\nseq_len = 32\n"
    (tmp_path / "r.toml").write_text(
        f'[general]\nmodel = "bert"\ncorpus = ["{corpus}"]\nvocab_size = 600\n{stage}[general.set]\nnum_layers = 1\n'
        f'[domain]\ncorpus = "domain.txt"\n{stage}[task]\n{stage}'
        f'[finetune]\ntask = "classify"\ntrain = "{train}"\ndev = "{dev}"\nepochs = 1\nmax_length = 32\n'
        'compare = true\n')
    out = tmp_path / "out"
    assert main(["-q", "recipe", str(tmp_path / "r.toml"), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    for row in ("general", "domain", "task", "fine-tuned scratch", "fine-tuned after-task"):
        assert row in table
    summary = json.loads((out / "recipe.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["general", "domain", "task"]
    assert list(summary["finetune"]) == ["scratch", "after-general", "after-domain", "after-task"]
    # The task stage read the training file's text, one example per document, no labels.
    text = (out / "task-text-0.txt").read_text()
    assert "moses number 1\n\n" in text and "law" not in text.replace("lord", "")
    # Each stage continued the one before it.
    info = json.loads((out / "task" / "plmkit.json").read_text())["pretraining"]
    assert info["init"] == str((out / "domain").resolve()) and len(info["earlier_stages"]) == 2
    # A rerun skips what is finished.
    mtime = (out / "general" / "model.safetensors").stat().st_mtime
    assert main(["-q", "recipe", str(tmp_path / "r.toml"), "--out", str(out)]) == 0
    assert (out / "general" / "model.safetensors").stat().st_mtime == mtime


def test_recipe_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[general]\nmodel = "bert"\ncorpus = ["x.txt"]\nstepz = 3\n[finetune]\ntask = "classify"\n'
                   'train = "t"\ndev = "d"\n')
    assert main(["recipe", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.toml:4: unknown key(s) stepz in [general]" in capsys.readouterr().err
    bad.write_text('[domain]\ncorpus = ["x.txt"]\n[finetune]\ntask = "classify"\ntrain = "t"\ndev = "d"\n')
    assert main(["recipe", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "add init = DIR to [domain]" in capsys.readouterr().err
    bad.write_text('[task]\ninit = "no-such-dir"\ncorpus = ["x.txt"]\n[finetune]\ntask = "classify"\ntrain = "t"\n'
                   'dev = "d"\n')
    assert main(["recipe", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "no-such-dir: model directory not found" in capsys.readouterr().err  # init accepted, then checked
