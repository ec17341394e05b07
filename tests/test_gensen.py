"""The multi-task sentence encoders gensen and use: each task's batch on hand-made data, the task schedule,
the sentence vectors (GenSen's last states, USE's Σ h / √n) and the task losses by hand, pre-training both
members with a loss per task in the log, `plmkit embed`, and the `--rows` path of bench/embeddings.py."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plmkit import family, load, load_tokenizer
from plmkit.cli import main
from plmkit.data import TokenCorpus, build_shards
from plmkit.errors import PlmkitError
from plmkit.objectives import sentence_tasks
from plmkit.objectives.sentence_tasks import (TARGET_EOS, TARGET_UNK, SentenceTasks, TaskSampler, check_tasks,
                                              target_vocabulary)
from plmkit.tokenizers import train_tokenizer
from plmkit.workflows.pretrain import pretrain

SMALL = {"embedding_size": 32, "hidden_size": 32, "target_vocab_size": 40}
# A hand-made Bible: (English verses, Chinese verses, book of each): Genesis, Judges, Mark
BIBLE = (["in the beginning", "and the light", "the word"], ["起初 神", "要有光", "道光"], [0, 6, 40])


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """Two documents of distinct words, one sentence a line."""
    d = tmp_path_factory.mktemp("story")
    path = d / "story.txt"
    path.write_text("a b\nc d e\nf\ng h\n\ni j\nk l\nm n o\n")
    tok = train_tokenizer("word", [str(path)], 100, min_frequency=1, show_progress=False)
    assert tok.vocab_size == 5 + 15  # every word its own id
    build_shards([str(path)], tok, d / "shards")
    return tok, TokenCorpus(d / "shards")


@pytest.fixture()
def tiny_bible(monkeypatch):
    monkeypatch.setattr(sentence_tasks, "bible", lambda: BIBLE)


def objective(tok, tasks, schedule="sample", seq_len=16, target_vocab_size=40):
    o = SentenceTasks(tok, seq_len)
    cfg = family.get("gensen").config_cls.preset("tiny", vocab_size=tok.vocab_size, tasks=tasks,
                                                 task_schedule=schedule, target_vocab_size=target_vocab_size)
    o.configure(cfg)
    return o


def ids(tok, text):
    return tok.encode(text)


def rows(batch_ids, mask):
    return [r[m.bool()].tolist() for r, m in zip(batch_ids, mask)]


def test_skip_thought_and_response_batches_by_hand(story):
    tok, corpus = story
    sep = tok.doc_sep_id
    o = objective(tok, {"skip-thought": 1, "response": 1})
    data = o.dataset(corpus)
    assert o.lengths == {"skip-thought": corpus.n_lines // 3, "response": corpus.n_lines // 2}
    # run 0 of skip-thought: the first three lines of document one
    name, run = data[("skip-thought", 0)]
    assert name == "skip-thought" and [r.tolist() for r in run] == [ids(tok, "a b"), ids(tok, "c d e"), ids(tok, "f")]
    b = o.collate([data[("skip-thought", 0)]], torch.Generator())
    assert b["task"] == "skip-thought" and b["input_ids"][0].tolist() == ids(tok, "c d e")
    assert b["previous_input_ids"][0].tolist() == [sep, *ids(tok, "a b")]
    assert b["previous_labels"][0].tolist() == [*ids(tok, "a b"), sep]
    assert b["next_input_ids"][0].tolist()[:2] == [sep, *ids(tok, "f")]
    assert b["next_labels"][0].tolist() == [*ids(tok, "f"), sep]
    # response: (sentence, the next one); row i's target is column i
    pairs = [data[("response", i)] for i in (0, 2)]
    b = o.collate(pairs, torch.Generator())
    assert rows(b["input_ids"], b["attention_mask"]) == [ids(tok, "a b"), ids(tok, "i j")]
    assert rows(b["response_ids"], b["response_mask"]) == [ids(tok, "c d e"), ids(tok, "k l")]
    assert b["labels"].tolist() == [0, 1]


def test_translation_and_section_batches_by_hand(story, tiny_bible):
    tok, corpus = story
    o = objective(tok, {"translation": 1, "section": 1})
    data = o.dataset(corpus)
    assert o.lengths == {"translation": 3, "section": 3}
    vocab = target_vocabulary(BIBLE[1], 40)
    assert vocab["光"] == 3  # the most frequent character (3 times) comes first, after pad, unknown, end
    b = o.collate([data[("translation", 1)], data[("translation", 0)]], torch.Generator())
    assert b["input_ids"][0].tolist() == ids(tok, "and the light")
    want = [vocab[c] for c in "要有光"]
    assert b["decoder_input_ids"][0].tolist() == [TARGET_EOS, *want]
    assert b["labels"][0].tolist() == [*want, TARGET_EOS]
    assert b["labels"][1].tolist() == [vocab[c] for c in "起初神"] + [TARGET_EOS]  # spaces are not targets
    b = o.collate([data[("section", i)] for i in range(3)], torch.Generator())
    assert b["labels"].tolist() == [0, 1, 4]  # Law, History, Gospels/Acts
    small = target_vocabulary(BIBLE[1], 4)  # room for one character: the rest are unknown
    assert list(small) == ["光"] and TARGET_UNK == 1


def test_missing_data_is_a_one_line_error_naming_the_task(tmp_path, monkeypatch):
    path = tmp_path / "two.txt"
    path.write_text("a b\nc d\n")
    tok = train_tokenizer("word", [str(path)], 50, show_progress=False)
    build_shards([str(path)], tok, tmp_path / "shards")
    corpus = TokenCorpus(tmp_path / "shards")
    with pytest.raises(PlmkitError, match="task skip-thought has no data"):
        objective(tok, {"skip-thought": 1}).dataset(corpus)
    monkeypatch.setattr(sentence_tasks, "bible", lambda: ([], [], []))
    with pytest.raises(PlmkitError, match="translation and section have no data"):
        objective(tok, {"translation": 1}).dataset(corpus)
    for tasks, schedule, msg in (({"nli": 1}, "sample", "unknown task"), ({}, "sample", "tasks is empty"),
                                 ({"section": 1.5}, "turns", "not whole"), ({"section": 0}, "sample", "positive"),
                                 ({"section": 1}, "round-robin", "task_schedule")):
        with pytest.raises(PlmkitError, match=msg):
            check_tasks(tasks, schedule)
    with pytest.raises(PlmkitError, match="unknown task"):
        family.get("use").config_cls.preset("tiny", tasks={"parsing": 1})


def test_tasks_alternate_or_are_sampled_as_configured():
    lengths = {"skip-thought": 10, "translation": 7, "section": 7}
    turns = TaskSampler(lengths, {"skip-thought": 2, "translation": 1, "section": 1}, "turns", 4, seed=3)
    assert [turns.task(s) for s in range(8)] == ["skip-thought", "skip-thought", "translation", "section"] * 2
    # a task's batch is what its own shuffled order puts at that step, and stays inside that task's data
    got = turns.indices(2)
    assert {n for n, _ in got} == {"translation"} and [i for _, i in got] == turns.samplers["translation"].indices(2)
    weights = {"skip-thought": 1, "translation": 2, "section": 1}
    sampled = TaskSampler(lengths, weights, "sample", 4, seed=3)
    counts = {n: 0 for n in lengths}
    for s in range(4000):
        counts[sampled.task(s)] += 1
    for n, w in weights.items():
        assert abs(counts[n] / 4000 - w / 4) < 0.03, counts
    other_rank = TaskSampler(lengths, weights, "sample", 4, seed=3, rank=1, world_size=2)
    assert all(other_rank.task(s) == sampled.task(s) for s in range(200))  # every rank trains the same task
    assert TaskSampler(lengths, weights, "sample", 4, seed=4).task(0) is not None
    assert [sampled.task(s) for s in range(50)] != [TaskSampler(lengths, weights, "sample", 4, seed=5).task(s)
                                                     for s in range(50)]


def test_use_vector_is_the_sum_over_root_length_by_hand():
    m = family.get("use")
    model = m.model_cls(m.config_cls.preset("tiny", vocab_size=30, hidden_size=8, embedding_size=8, num_heads=2,
                                            intermediate_size=16)).eval()
    h = torch.arange(2 * 3 * 8, dtype=torch.float).reshape(2, 3, 8)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    want = torch.stack([(h[0, 0] + h[0, 1] + h[0, 2]) / math.sqrt(3), (h[1, 0] + h[1, 1]) / math.sqrt(2)])
    assert torch.allclose(model.pool_features(h, mask), want)
    ids = torch.tensor([[5, 6, 7], [5, 6, 0]])
    with torch.no_grad():  # padding changes nothing: the vector of "5 6" alone is its padded row's
        alone = model.sentence_vector(ids[1:, :2], torch.ones(1, 2, dtype=torch.long))
        assert torch.allclose(model.sentence_vector(ids, mask)[1:], alone, atol=1e-5)


def test_gensen_vector_is_both_directions_last_states():
    m = family.get("gensen")
    model = m.model_cls(m.config_cls.preset("tiny", vocab_size=30, **SMALL)).eval()
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with torch.no_grad():
        v = model.sentence_vector(ids, mask)
        assert v.shape == (2, 64)
        e = model.embeddings(ids[1:, :2])  # "5 6" by hand: torch's GRU each way over the two words
        fwd = model.rnn(e)[0][0, -1, :32]
        bwd = model.rnn(e)[0][0, 0, 32:]
        assert torch.allclose(v[1], torch.cat([fwd, bwd]), atol=1e-5)


def test_task_losses_by_hand():
    m = family.get("gensen")
    model = m.model_cls(m.config_cls.preset("tiny", vocab_size=30, tasks={"section": 1, "response": 1},
                                            **SMALL)).eval()
    assert not hasattr(model, "translator") and len(model.decoders) == 0  # heads only for the tasks named
    ids, mask = torch.tensor([[5, 6], [7, 8], [9, 9]]), torch.ones(3, 2, dtype=torch.long)
    r_ids = torch.tensor([[6, 7], [8, 9], [5, 5]])
    with torch.no_grad():
        u, v = model.sentence_vector(ids, mask), model.sentence_vector(r_ids, mask)
        scores = u @ (v @ model.response.weight.T + model.response.bias).T  # (3, 3)
        want = -torch.log_softmax(scores, -1).diagonal().mean()
        out = model(ids, mask, task="response", targets={"response_ids": r_ids, "response_mask": mask,
                                                          "labels": torch.arange(3)})
        assert torch.allclose(out.loss, want, atol=1e-5)
        labels = torch.tensor([0, 5, 2])
        logits = u @ model.classifier.weight.T + model.classifier.bias
        out = model(ids, mask, task="section", targets={"labels": labels})
        assert torch.allclose(out.loss, F.cross_entropy(logits, labels), atol=1e-5)
        with pytest.raises(PlmkitError, match="without task translation"):
            model(ids, mask, task="translation", targets={})


@pytest.fixture(scope="module", params=["gensen", "use"])
def trained(request, kjv_head, tmp_path_factory):
    """60 steps of 32, tasks in turn, on 600 verses as the corpus (its tokenizer reads the verse tasks' words too)
    and the shipped Bible."""
    out = tmp_path_factory.mktemp(request.param) / "run"
    over = dict(SMALL, target_vocab_size=300, task_schedule="turns")
    if request.param == "use":
        over.update(num_heads=2, intermediate_size=64)
    pretrain(request.param, [str(kjv_head(600))], out, model_overrides=over,
             train_overrides={"steps": 60, "batch_size": 32, "lr": 5e-3, "log_every": 1},
             data_overrides={"seq_len": 16, "vocab_size": 200})
    return request.param, out


def test_pretraining_logs_and_lowers_each_tasks_loss(trained):
    member, out = trained
    tasks = list(family.get(member).config_cls().tasks)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    for k, r in enumerate(log):  # turns: one task a step, in the config's order; only its loss on that line
        task = tasks[k % len(tasks)]
        assert [key for key in r if key.endswith("_loss")] == [f"{task}_loss"] and r["loss"] == r[f"{task}_loss"]
    for task in tasks:
        losses = [r[f"{task}_loss"] for r in log if f"{task}_loss" in r]
        assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1, (member, task, losses)


def test_embed_gives_the_documented_vector(trained, capsys):
    member, out = trained
    model, tok = load(out), load_tokenizer(out)
    assert family.get(member).kind == "sentence vectors" and tok.kind == "word"
    capsys.readouterr()
    assert main(["embed", "--model", str(out), "--text", "and god saw the light", "amen", "--json"]) == 0
    vectors = json.loads(capsys.readouterr().out)
    width = 64 if member == "gensen" else 32  # [→h; ←h] of a 32-wide GRU; the transformer's width
    assert [len(v["vector"]) for v in vectors] == [width, width]
    x = torch.tensor([tok.encode("and god saw the light")])  # read bare, as in training
    with torch.no_grad():
        assert torch.allclose(torch.tensor(vectors[0]["vector"]), model.sentence_vector(x, torch.ones_like(x))[0],
                              atol=1e-4)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_embeddings",
                                                  Path(__file__).resolve().parents[1] / "bench" / "embeddings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_rows_replace_only_the_rows_named():
    bench = _bench()
    assert bench.select_rows("gensen,USE (transformer)") == ["GenSen", "USE (transformer)"]
    assert bench.select_rows("bert") == ["BERT [CLS]", "BERT mean", "BERT first-last"]
    assert bench.select_rows(None) == bench.ROWS
    with pytest.raises(SystemExit, match="unknown row"):
        bench.select_rows("gensen,infersent")
    old = "\n".join(bench.HEADER + ["| skip-thought | auto | x | 256 | 0.1 | 0.2 | 0.3 | 0.2 | 0.1 |",
                                    "| GenSen | auto | old | 256 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 |",
                                    "| all-MiniLM-L6-v2 mean (reference) | mean | y | 384 | 0.9 | 0.3 | 0.6 | 0.6 | 0.5 |",
                                    "| majority class | — | — | — | 0.7 | 0.1 | 0.5 | 0.4 | |"])
    r = {"method": "auto", "dimensions": 128, "mean_probe_accuracy": 0.5,
         "tasks": {t: {"probe": {"accuracy": 0.5}, "nearest_neighbour": {"accuracy": 0.25}} for t in bench.TASKS}}
    new = {row: bench.table_line(row, r, "150 steps") for row in ("GenSen", "USE (transformer)")}
    table = bench.merge_table(old, new, "| majority class | new |")
    assert table[:2] == bench.HEADER and table[-1] == "| majority class | new |"
    assert [line.split("|")[1].strip() for line in table[2:-1]] == [
        "skip-thought", "GenSen", "USE (transformer)", "all-MiniLM-L6-v2 mean (reference)"]
    assert table[2] == old.splitlines()[2] and table[5] == old.splitlines()[4]  # the others kept verbatim
    assert table[3] == "| GenSen | auto | 150 steps | 128 | 0.500 | 0.500 | 0.500 | 0.500 | 0.250 |"


def test_a_log_line_averages_each_task_over_its_own_steps(kjv_head, tmp_path):
    out = tmp_path / "run"
    pretrain("use", [str(kjv_head(200))], out, model_overrides=dict(
                 embedding_size=16, hidden_size=16, num_heads=2, intermediate_size=32, task_schedule="turns",
                 tasks={"section": 1, "response": 2}),
             train_overrides={"steps": 6, "batch_size": 8, "log_every": 3},
             data_overrides={"seq_len": 16, "vocab_size": 200})
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3, 6]
    for r in log:  # steps: section, response, response: the line's loss is the mean of the three steps
        assert set(k for k in r if k.endswith("_loss")) == {"section_loss", "response_loss"}
        assert r["loss"] == pytest.approx((r["section_loss"] + 2 * r["response_loss"]) / 3)


def test_two_processes_train_one_task_a_step(tmp_path):
    """Each step leaves the other tasks' heads without gradients: DDP is told to expect it."""
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torch.distributed.is_available() or not torchrun.exists():
        pytest.skip("torch.distributed or torchrun unavailable")
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join("\n".join(f"w{d} w{k} x{k + d}" for k in range(5)) for d in range(20)) + "\n")
    out = tmp_path / "ddp"
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "plmkit", "pretrain",
                           "--model", "gensen", "--corpus", str(corpus), "--out", str(out), "--steps", "3",
                           "--seq-len", "8", "--vocab-size", "100", "--batch-size", "4", "--log-every", "1",
                           "--set", "task_schedule=turns", "--set", "hidden_size=16", "--set", "embedding_size=16",
                           "--set", "target_vocab_size=50"],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [next(k for k in r if k.endswith("_loss")) for r in log] == ["skip-thought_loss", "translation_loss",
                                                                        "section_loss"]
