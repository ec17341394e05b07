"""Multi-task fine-tuning (MT-DNN): the task-mixing sampler, the task file, and `plmkit finetune --multitask`
end to end with the single-task comparison at the same total steps."""

import json
from collections import Counter

import numpy as np
import pytest
import torch

from plmkit import load
from plmkit.cli import main
from plmkit.data.pretrain import TaskMixSampler
from plmkit.errors import PlmkitError
from plmkit.heads import load_finetuned
from plmkit.interop.hf import save_model
from plmkit.models.bert import Bert, BertConfig
from plmkit.tokenizers import train_tokenizer
from plmkit.workflows.multitask import probabilities, read_spec

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=64)


def test_task_mix_sampler_draws_tasks_by_probability_and_walks_each_task_in_epochs():
    sizes, steps = [30, 10, 5], 3000
    p = probabilities(sizes, "proportional", 1.0)
    assert p == pytest.approx([30 / 45, 10 / 45, 5 / 45])
    s = TaskMixSampler(sizes, batch_size=5, steps=steps, probabilities=p, seed=3)
    batches = [s.indices(i) for i in range(steps)]
    task = [0 if b[0] < 30 else 1 if b[0] < 40 else 2 for b in batches]
    assert all(all((0 if i < 30 else 1 if i < 40 else 2) == t for i in b) for b, t in zip(batches, task))  # one task
    share = Counter(task)
    for k in range(3):
        assert share[k] / steps == pytest.approx(p[k], abs=0.03)
    # Task 1's first 4 batches are one shuffled pass over its 10 examples, twice.
    firsts = [b for b, t in zip(batches, task) if t == 1][:4]
    assert sorted(i for b in firsts[:2] for i in b) == list(range(30, 40))
    assert sorted(i for b in firsts[2:] for i in b) == list(range(30, 40))
    # A pure function of the step: a new sampler (a resumed run) gives the same batches.
    again = TaskMixSampler(sizes, batch_size=5, steps=steps, probabilities=p, seed=3)
    assert [again.indices(i) for i in (2999, 7, 1500)] == [batches[2999], batches[7], batches[1500]]
    # Temperature sampling flattens the mix: T = 2 draws ∝ √size.
    assert probabilities([100, 25], "temperature", 2.0) == pytest.approx([2 / 3, 1 / 3])


@pytest.fixture(scope="module")
def setup(kjv_head, tmp_path_factory):
    """A tiny random BERT and three tasks made from verses: two classifications and a tagging task."""
    d = tmp_path_factory.mktemp("mt")
    verses = [v for v in kjv_head(1200).read_text().splitlines() if v.strip()]
    tok = train_tokenizer("wordpiece", [kjv_head(1200)], 300, show_progress=False)
    torch.manual_seed(0)
    save_model(Bert(BertConfig(vocab_size=tok.vocab_size, **TINY)), d / "bert", tok)

    def jsonl(name, rows, label):
        (d / name).write_text("".join(json.dumps({"text": v, "label": label(v)}) + "\n" for v in rows))

    for split, rows in (("train", verses[:160]), ("dev", verses[160:220]), ("test", verses[220:300])):
        jsonl(f"god-{split}.jsonl", rows, lambda v: "god" if "God" in v else "other")
        jsonl(f"length-{split}.jsonl", rows, lambda v: "long" if len(v.split()) > 25 else "short")
        (d / f"caps-{split}.txt").write_text("".join(
            "".join(f"{w}\t{'CAP' if w[0].isupper() else 'low'}\n" for w in v.split()[:12]) + "\n" for v in rows))
    toml = d / "tasks.toml"
    toml.write_text('model = "bert"\nsteps = 24\nbatch_size = 8\nlr = 3e-3\nmax_length = 48\neval_every = 8\n'
                    'finetune_steps = 4\ncompare = true\n'
                    + "".join(f'[tasks.{n}]\ntask = "{t}"\ntrain = "{n}-train.{e}"\ndev = "{n}-dev.{e}"\n'
                              f'test = "{n}-test.{e}"\n' for n, t, e in (("god", "classify", "jsonl"),
                                                                        ("length", "classify", "jsonl"),
                                                                        ("caps", "tag", "txt"))))
    return d, toml


def test_multitask_cli_compares_single_multi_and_per_task_at_the_same_steps(setup, capsys):
    d, toml = setup
    out = d / "run"
    capsys.readouterr()
    assert main(["-q", "finetune", "--multitask", str(toml), "--out", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table[1:]] == ["single-task", "multi-task", "multi-task+per-task"]
    r = json.loads((out / "multitask.json").read_text())
    rows = r["rows"]
    assert sum(x["steps"] for x in rows["single-task"].values()) == 24  # 160 examples each: 8 + 8 + 8
    assert sum(x["steps_drawn"] for x in rows["multi-task"].values()) == 24
    mt_stage = json.loads((out / "multi-task+per-task" / "multi-task" / "train_summary.json").read_text())
    assert mt_stage["steps"] == 24 - 3 * 4 and all(x["steps"] == 4 for x in rows["multi-task+per-task"].values())
    # One body under every head: the saved task directories of the multi-task model share its weights.
    bodies = [load(out / "multi-task" / n) for n in ("god", "length", "caps")]
    start = load(d / "bert")
    for name, p in bodies[0].state_dict().items():
        assert torch.equal(p, bodies[1].state_dict()[name]) and torch.equal(p, bodies[2].state_dict()[name])
    assert not torch.equal(bodies[0].embeddings.tokens.weight, start.embeddings.tokens.weight)  # it trained
    log = [json.loads(x) for x in (out / "multi-task" / "train_log.jsonl").read_text().splitlines()]
    assert np.mean([x["loss"] for x in log[-6:]]) < np.mean([x["loss"] for x in log[:6]])
    # Each task directory is a fine-tuned model: `plmkit evaluate` scores it, and the per-task runs continued it.
    model = load_finetuned(out / "multi-task" / "caps")
    assert model.config.task == "tag" and model.config.labels == ("CAP", "low")
    assert main(["-q", "evaluate", "--model", str(out / "multi-task" / "caps"), "--data", str(d / "caps-test.txt"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == pytest.approx(rows["multi-task"]["caps"]["test"]["f1"])
    per_task = json.loads((out / "multi-task+per-task" / "god" / "train_config.json").read_text())
    assert per_task["run_info"]["model"] == str(out / "multi-task+per-task" / "multi-task" / "god")
    assert main(["-q", "finetune", "--multitask", str(toml), "--out", str(out)]) == 2  # not over a finished run


def test_multitask_file_errors(setup, tmp_path, capsys):
    d, toml = setup
    bad = tmp_path / "bad.toml"
    bad.write_text(toml.read_text().replace("steps = 24", "steps = 24\nsampling_rate = 2"))
    with pytest.raises(PlmkitError, match="sampling_rate") as e:
        read_spec(bad)
    assert e.value.line == 3
    bad.write_text('model = "x"\n[tasks.one]\ntask = "classify"\ntrain = "a"\ndev = "b"\n')
    with pytest.raises(PlmkitError, match="at least two tasks"):
        read_spec(bad)
    bad.write_text(toml.read_text().replace('task = "tag"', 'task = "qa"'))
    with pytest.raises(PlmkitError, match=r"tasks.caps.*task must be one of"):
        read_spec(bad)
    bad.write_text(toml.read_text().replace("finetune_steps = 4", "finetune_steps = 8"))
    with pytest.raises(PlmkitError, match="leave no multi-task steps"):
        read_spec(bad)
    capsys.readouterr()
    assert main(["finetune", "--multitask", str(toml), "--out", str(tmp_path / "o"), "--task", "classify"]) == 2
    assert "drop --task" in capsys.readouterr().err
    assert main(["finetune", "--model", str(d / "bert"), "--out", str(tmp_path / "o")]) == 2
    assert "--task" in capsys.readouterr().err
