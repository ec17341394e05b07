"""ERNIE 2.0: each pre-training task's labels on hand-made text, the task embedding, the stage schedule, its
transformers counterpart with task ids, and a short pre-training run through the command line."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import plmkit
from plmkit import family
from plmkit.cli import main
from plmkit.data import TokenCorpus, build_shards
from plmkit.objectives.continual import (DEFAULT_STAGES, TASKS, ContinualMultiTask, SentenceDistance, TokenDocument,
                                         permutation_class, reorder_classes, stage_schedule)
from plmkit.tokenizers import train_tokenizer

TINY = dict(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=64)


def _model(**extra):
    torch.manual_seed(0)
    m = family.get("ernie2")
    return m.model_cls(m.config_cls(**{**TINY, **extra})).eval()


@pytest.fixture(scope="module")
def cased(tmp_path_factory):
    """A cased WordPiece tokenizer whose vocabulary holds each word of the text whole."""
    d = tmp_path_factory.mktemp("cased")
    text = "The cat saw Paris and the dog . Dogs see cats in Rome ; the cats see dogs .\n"
    (d / "text.txt").write_text(text * 20)
    return train_tokenizer("wordpiece", [str(d / "text.txt")], 200, lowercase=False)


def _corpus(tmp_path, docs: list[list[str]], tok):
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join("\n".join(lines) for lines in docs) + "\n")
    build_shards([str(path)], tok, tmp_path / "data", num_workers=1)
    return TokenCorpus(tmp_path / "data")


def test_capitalization_labels_words_and_lowercases_the_input(cased):
    obj = ContinualMultiTask(cased, 32)
    words = "The cat saw Paris and the dog .".split()
    ids = [cased.token_to_id(w) for w in words]
    assert None not in ids and cased.token_to_id("paris") is None  # Paris has no lowercase form here
    batch = obj.collate([("capitalization", [np.array(ids)])], torch.Generator().manual_seed(0))
    # [CLS] The cat saw Paris and the dog . [SEP]: "Paris" keeps its case (not counted), "." has none
    assert batch["labels"][0].tolist() == [-100, 1, 0, 0, -100, 0, 0, 0, -100, -100]
    lowered = [cased.id_to_token(i) for i in batch["input_ids"][0, 1:-1].tolist()]
    assert lowered == "the cat saw Paris and the dog .".split()
    assert batch["task"] == "capitalization" and (batch["task_type_ids"] == TASKS.index("capitalization")).all()


def test_capitalization_is_skipped_on_text_without_case(tmp_path, caplog):
    text = _write(tmp_path, "我爱北京天安门。Beijing\n天安门上太阳升。\n" * 20)
    tok = train_tokenizer("wordpiece", [str(text)], 100, lowercase=False)
    corpus = _corpus(tmp_path, [["我爱北京天安门。Beijing", "天安门上太阳升。"]] * 5, tok)
    obj = ContinualMultiTask(tok, 32)
    with caplog.at_level(logging.WARNING, logger="plmkit"):
        data = obj.dataset(corpus)
    assert "capitalization prediction skipped: most words have no letter case" in caplog.text
    assert "capitalization" not in data.names and all("capitalization" not in s for s in obj.stages)
    lower = train_tokenizer("wordpiece", [str(tmp_path / "zh.txt")], 100)  # BERT's lowercasing WordPiece
    assert "no capitals" in ContinualMultiTask(lower, 32).case.skip_reason(torch.tensor([5]), torch.tensor([True]))


def _write(tmp_path, text):
    (tmp_path / "zh.txt").write_text(text)
    return tmp_path / "zh.txt"


def test_token_document_flags_tokens_found_elsewhere_in_the_document(cased, tmp_path):
    doc = ["The cat saw Paris", "and the dog", "Dogs see cats in Rome"]
    other = ["the cats see dogs ."]
    corpus = _corpus(tmp_path, [doc, other], cased)
    examples = TokenDocument(corpus, max_tokens=3)
    segment, rest = examples[0]  # the first 3 tokens of the first line; the rest of its document around them
    assert [cased.id_to_token(int(i)) for i in segment] == ["The", "cat", "saw"]
    assert {cased.id_to_token(int(i)) for i in rest} == {"Paris", "and", "the", "dog", "Dogs", "see", "cats", "in",
                                                         "Rome"}
    seg, rest = examples[1]  # token 3 lies in line 0 still: the segment starts at that line's start again
    assert len(seg) == 3
    seg, rest = examples[2]  # token 6: "the" of line 1
    assert [cased.id_to_token(int(i)) for i in seg] == ["and", "the", "dog"]
    batch = ContinualMultiTask(cased, 16).collate([("token-document", examples[2])], torch.Generator())
    # "and", "dog" appear nowhere else in the document; "the" does not either ("The" is another token);
    # "cats" of the other document does not count.
    assert batch["labels"][0].tolist() == [-100, 0, 0, 0, -100]
    seg, rest = examples[3]  # token 9: line 2, "Dogs see cats": "see" and "cats" do not occur elsewhere in doc 0
    assert [cased.id_to_token(int(i)) for i in seg] == ["Dogs", "see", "cats"]
    assert np.isin(seg, rest).tolist() == [False, False, False]
    small = TokenDocument(_corpus(tmp_path / "b", [["the cat the", "cat dog"]], cased), max_tokens=2)
    assert np.isin(*small[0]).tolist() == [True, True]  # "the cat" of line 0: both again in the document
    assert np.isin(*small[2]).tolist() == [True, False]  # line 1 "cat dog": "cat" is in line 0, "dog" nowhere


def test_permutation_classes_count_every_shuffle_of_up_to_m_segments():
    assert reorder_classes(3) == 1 + 2 + 6
    assert permutation_class([0]) == 0
    assert [permutation_class(p) for p in ([0, 1], [1, 0])] == [1, 2]
    # the six shuffles of three segments, in lexicographic order, after the 1 + 2 smaller ones
    perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]
    assert [permutation_class(p) for p in perms] == [3, 4, 5, 6, 7, 8]


def test_reorder_batches_hold_the_shuffled_segments_their_label_names(cased):
    obj = ContinualMultiTask(cased, 32)
    lines = [np.array([cased.token_to_id(w) for w in line.split()])
             for line in ("The cat saw", "Paris and", "the dog .")]
    seen = set()
    for seed in range(40):
        batch = obj.collate([("reorder", lines)], torch.Generator().manual_seed(seed))
        row = batch["input_ids"][0].tolist()
        assert row[0] == cased.cls_id and row[-1] == cased.sep_id
        segments, cur = [], []
        for i in row[1:]:
            if i == cased.sep_id:
                segments.append(cur)
                cur = []
            else:
                cur.append(i)
        original = sorted(segments, key=lambda s: next(k for k in range(8) if np.concatenate(lines)[k:k + len(s)]
                                                       .tolist() == s))
        assert sum(original, []) == np.concatenate(lines).tolist()  # the shuffle of a split of the span
        perm = [original.index(s) for s in segments]
        assert int(batch["labels"][0]) == permutation_class(perm)
        if len(segments) == 3:  # three lines, three segments: cut at the line ends
            assert sorted(map(len, segments)) == [2, 3, 3]
        types = batch["token_type_ids"][0].tolist()  # segment ids alternate 0, 1, 0 by place
        assert types[0] == 0 and types[1:len(segments[0]) + 2] == [0] * (len(segments[0]) + 1)
        seen.add(int(batch["labels"][0]))
    assert seen == set(range(reorder_classes(3)))  # every class turns up


def test_sentence_distance_labels_adjacent_far_and_other_document(cased, tmp_path):
    # the middle line of a three-line document has no line two away: it is never labelled 1
    docs = [["The cat", "saw Paris", "and the", "dog ."], ["Dogs see", "cats in", "Rome ;"], ["the cats", "see dogs"]]
    corpus = _corpus(tmp_path, docs, cased)
    where = {tuple(corpus.line(i)[corpus.line(i) != corpus.meta["doc_sep_id"]].tolist()): (d, j)
             for i, (d, j) in enumerate((d, j) for d, doc in enumerate(docs) for j in range(len(doc)))}
    labels = []
    for seed, i in [(seed, i) for seed in range(8) for i in range(corpus.n_lines)]:
        a, b, label = SentenceDistance(corpus, max_tokens=40, seed=seed)[i]
        (da, la), (db, lb) = where[tuple(a.tolist())], where[tuple(b.tolist())]
        if label == 0:
            assert da == db and lb == la + 1
        elif label == 1:
            assert da == db and abs(lb - la) >= 2
        else:
            assert da != db
        labels.append(label)
    assert set(labels) == {0, 1, 2}
    pairs = SentenceDistance(corpus, max_tokens=40, seed=0)
    a, b, label = SentenceDistance(corpus, max_tokens=3, seed=0)[0]  # cut: A keeps its end, B its start
    assert len(a) + len(b) <= 3 and len(a) >= 1
    batch = ContinualMultiTask(cased, 16).collate([("distance", pairs[0])], torch.Generator())
    a, b, label = pairs[0]
    assert batch["input_ids"][0].tolist() == [cased.cls_id, *a.tolist(), cased.sep_id, *b.tolist(), cased.sep_id]
    assert batch["token_type_ids"][0].tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert batch["labels"].tolist() == [label]


def test_the_task_embedding_changes_the_output_and_defaults_to_task_zero():
    model = _model()
    x = torch.randint(3, 99, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        default = model(x).last_hidden_state
        by_task = [model(x, task_type_ids=torch.full_like(x, t)).last_hidden_state for t in range(len(TASKS))]
        assert torch.equal(default, by_task[0])
        assert all((by_task[0] - h).abs().max() > 1e-3 for h in by_task[1:])
        model.embeddings.task_types.weight[3] = model.embeddings.task_types.weight[0]
        assert torch.allclose(model(x, task_type_ids=torch.full_like(x, 3)).last_hidden_state, by_task[0])
        # each task's head: per token for the word-aware tasks, from the pooled [CLS] for the structure-aware
        assert model(x, task="capitalization").task_logits.shape == (2, 9, 2)
        assert model(x, task="token-document").task_logits.shape == (2, 9, 2)
        assert model(x, task="reorder").task_logits.shape == (2, 9)
        assert model(x, task="distance").task_logits.shape == (2, 3)
    with pytest.raises(plmkit.PlmkitError, match="unknown ERNIE 2.0 task"):
        model(x, task="nsp")


def test_stages_give_every_task_the_same_steps_spread_over_its_stages():
    order, stage = stage_schedule(DEFAULT_STAGES, 30, seed=0)
    assert len(order) == len(stage) == 30 and stage == sorted(stage)
    counts = {(s, t): 0 for s in range(3) for t in TASKS}
    for t, s in zip(order, stage):
        counts[s, t] += 1
    # N = 30 / 5 = 6 each: knowledge 2 + 2 + 2, capitalization and token-document 3 + 3, the last two 6
    assert [[counts[s, t] for t in TASKS] for s in range(3)] == [[2, 0, 0, 0, 0], [2, 3, 3, 0, 0], [2, 3, 3, 6, 6]]
    assert order == stage_schedule(DEFAULT_STAGES, 30, seed=0)[0] != stage_schedule(DEFAULT_STAGES, 30, seed=1)[0]
    order, stage = stage_schedule([["distance"], ["distance", "reorder"]], 7)
    assert len(order) == 7 and order.count("distance") + order.count("reorder") == 7  # remainders add up
    assert stage_schedule([TASKS], 10)[1] == [0] * 10  # one stage: plain multi-task learning
    for bad, match in [([["knowledge"], ["reorder"]], "drops knowledge"), ([["nsp"]], "unknown task"),
                       ([], "non-empty"), ([["reorder", "reorder"]], "twice")]:
        with pytest.raises(plmkit.PlmkitError, match=match):
            stage_schedule(bad, 10)


def test_scheduled_sampler_reads_the_scheduled_task_and_splits_ranks():
    from plmkit.data.pretrain import ScheduledTaskSampler

    task = np.array([0, 1, 1, 0, 2])
    sizes = [10, 20, 30]
    one = ScheduledTaskSampler(sizes, 4, task, seed=0, grad_accum=2)
    for step in range(5):
        for micro in range(2):
            idx = one.indices(step * 2 + micro)
            k = task[step]
            assert all(sum(sizes[:k]) <= i < sum(sizes[:k + 1]) for i in idx)
    ranks = [ScheduledTaskSampler(sizes, 2, task, seed=0, rank=r, world_size=2).indices(1) for r in range(2)]
    assert not set(ranks[0]) & set(ranks[1])


def test_ernie2_matches_transformers_ernie_with_task_ids_both_ways(tmp_path):
    transformers = pytest.importorskip("transformers")
    from plmkit.interop.hf import save_model

    model = _model()
    save_model(model, tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["use_task_id"] is True and config["task_type_vocab_size"] == len(TASKS)
    hf = transformers.ErnieModel.from_pretrained(tmp_path / "ours").eval()
    x = torch.randint(3, 99, (3, 11), generator=torch.Generator().manual_seed(1))
    tasks = torch.randint(0, len(TASKS), x.shape, generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(x)
    mask[1, 7:] = 0
    real = mask.bool()
    with torch.no_grad():
        ours = model(x, mask, task_type_ids=tasks)
        theirs = hf(x, attention_mask=mask, task_type_ids=tasks)
        assert (ours.last_hidden_state[real] - theirs.last_hidden_state[real]).abs().max() < 1e-4
    # the other way: a transformers ERNIE with task ids, saved, loads as ernie2 (without them: as ernie)
    torch.manual_seed(3)
    pre = transformers.ErnieForPreTraining(transformers.ErnieConfig.from_pretrained(tmp_path / "ours")).eval()
    pre.save_pretrained(tmp_path / "hf")
    loaded = plmkit.load(tmp_path / "hf")
    assert loaded.family_name == "ernie2" and loaded.config == model.config
    with torch.no_grad():
        got = loaded(x, mask, task_type_ids=tasks).logits
        want = pre(x, attention_mask=mask, task_type_ids=tasks).prediction_logits
        assert (got[real] - want[real]).abs().max() < 1e-4
    plain = transformers.ErnieConfig.from_pretrained(tmp_path / "ours")
    plain.use_task_id = False
    transformers.ErnieForPreTraining(plain).save_pretrained(tmp_path / "v1")
    assert plmkit.load(tmp_path / "v1").family_name == "ernie"


def test_saved_ernie2_keeps_its_task_heads(tmp_path):
    from plmkit.interop.hf import save_model

    model = _model()
    save_model(model, tmp_path)
    back = plmkit.load(tmp_path)
    for name, p in model.task_heads.state_dict().items():
        assert torch.equal(back.task_heads.state_dict()[name], p)


def test_pretrain_ernie2_from_the_command_line_trains_every_task_in_its_stages(corpus, tmp_path, capsys):
    (tmp_path / "stages.toml").write_text('[data]\nstages = [["knowledge"], ["knowledge", "capitalization", '
                                          '"token-document"], ["knowledge", "capitalization", "token-document", '
                                          '"reorder", "distance"]]\n')
    out = tmp_path / "run"
    assert main(["pretrain", "--model", "ernie2", "--corpus", str(corpus), "--out", str(out), "--config",
                 str(tmp_path / "stages.toml"), "--steps", "50", "--batch-size", "16", "--seq-len", "32",
                 "--vocab-size", "400", "--lr", "5e-3", "--warmup-steps", "2", "--log-every", "1",
                 "--set", "num_layers=1", "--set", "hidden_size=64", "--set", "intermediate_size=128",
                 "--set", "max_positions=64"]) == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    order, _ = stage_schedule(DEFAULT_STAGES, 50, seed=0)
    losses: dict[str, list[float]] = {}
    for record, task in zip(log, order):
        key = task.replace("-", "_") + "_loss"
        reported = [k for k in record if k.endswith("_loss")]
        assert reported == [key] and record["loss"] == pytest.approx(record[key])  # one task per step, its own
        losses.setdefault(task, []).append(record[key])
    assert set(losses) == set(TASKS)
    for task, values in losses.items():
        print(f"{task}: {len(values)} steps, loss {values[0]:.3f} → {values[-1]:.3f}")
    first, last = ({t: sum(v[s]) / len(v[s]) for t, v in losses.items()} for s in (slice(0, 2), slice(-2, None)))
    assert last["knowledge"] < first["knowledge"] - 0.3
    assert last["token-document"] < first["token-document"] - 0.2
    assert last["capitalization"] < first["capitalization"] - 0.1
    loaded = plmkit.load(out)
    assert loaded.family_name == "ernie2"
    assert loaded.task_heads["reorder"].out_features == reorder_classes(3)
    tok = plmkit.load_tokenizer(out)
    assert tok.encode("And God") != tok.encode("and god")  # ERNIE 2.0's tokenizer keeps case


def test_two_processes_train_one_task_per_step(corpus, tmp_path):
    """Under DDP a step uses one task's head: the trainer has DDP find the parameters a step left unused."""

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torch.distributed.is_available() or not torchrun.exists():
        pytest.skip("torch.distributed or torchrun unavailable")
    (tmp_path / "one-stage.toml").write_text(f"[data]\nstages = [{json.dumps(list(TASKS))}]\n")
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "plmkit", "pretrain",
                           "--model", "ernie2", "--corpus", str(corpus), "--out", str(out), "--config",
                           str(tmp_path / "one-stage.toml"), "--steps", "10", "--batch-size", "4", "--seq-len", "32",
                           "--vocab-size", "400", "--log-every", "1", "--device", "cpu", "--set", "num_layers=1",
                           "--set", "hidden_size=64", "--set", "intermediate_size=128", "--set", "max_positions=64"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 11))
    assert {k for r in log for k in r if k.endswith("_loss")} == {t.replace("-", "_") + "_loss" for t in TASKS}


def test_a_killed_run_resumes_into_the_same_weights(corpus, tmp_path):
    """The stages, the task of each step and every batch are functions of the step: a run killed after step 8
    and resumed from its step-6 checkpoint ends with the weights of a run never stopped."""
    from safetensors.torch import load_file

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    run = [sys.executable, "-m", "plmkit", "pretrain", "--model", "ernie2", "--corpus", str(corpus), "--steps", "12",
           "--save-every", "6", "--batch-size", "4", "--seq-len", "32", "--vocab-size", "400", "--log-every", "1",
           "--set", "num_layers=1", "--set", "hidden_size=64", "--set", "intermediate_size=128",
           "--set", "max_positions=64"]
    whole = subprocess.run([*run, "--out", str(tmp_path / "whole")], capture_output=True, text=True, env=env)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = subprocess.run([*run, "--out", str(tmp_path / "cut")], capture_output=True, text=True,
                            env={**env, "PLMKIT_FAULT": "step:8"})
    assert killed.returncode != 0 and not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = subprocess.run([*run, "--out", str(tmp_path / "cut"), "--resume"], capture_output=True, text=True,
                             env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
