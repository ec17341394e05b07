"""Nothing lost, whatever happens: the same command twice gives the same bytes; a run killed (SIGKILL) at every
named point of plmkit.durable and at moments chosen by the clock resumes into bit-identical weights with every
step logged once, for pre-training, fine-tuning and the recipe; Ctrl-C stops at a step boundary with a
checkpoint; nothing in the package unpickles.

The killed runs are forked from this process (no interpreter start and imports per run) and run the CLI with
PLMKIT_FAULT set; the references are fresh interpreters, so their hash seeds are their own.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plmkit.cli import main
from plmkit.durable import FAULT_ENV, FAULT_POINTS
from plmkit.tokenizers import KINDS

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
ENV.pop(FAULT_ENV, None)

SMALL = ["--set", "hidden_size=32", "--set", "num_heads=2", "--set", "intermediate_size=64", "--size", "tiny"]
PRETRAIN = ["--steps", "12", "--batch-size", "4", "--seq-len", "32", "--vocab-size", "200", "--save-every", "3",
            "--log-every", "1", "--warmup-steps", "2", "--lr", "3e-3"]


@pytest.fixture(scope="module", autouse=True)
def warm():
    """What every run imports on first use (torch's optimizer compiler, TensorBoard, matplotlib), imported once
    here so the forked runs inherit it instead of each importing it again."""
    import matplotlib.figure  # noqa: F401
    import torch.utils.tensorboard  # noqa: F401

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True)


def _child(argv: list[str], fault: str | None, stderr: str) -> None:
    if fault:
        os.environ[FAULT_ENV] = fault
    else:
        os.environ.pop(FAULT_ENV, None)
    # One thread, as the references (OMP_NUM_THREADS=1): the same kernels, the same sums; and no use of the
    # OpenMP thread team this process inherited from its parent, which a forked child cannot rely on.
    torch.set_num_threads(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.dup2(os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", buffering=1, closefd=False)  # not pytest's
    code = main(["-q", *argv])
    sys.stderr.flush()
    os._exit(code)


def fork_cli(argv: list[str], fault: str | None = None, kill_after: float | None = None,
             stderr: str = os.devnull) -> int:
    """Run the CLI in a forked child; its exit code (-9 when SIGKILLed). `kill_after` seconds: SIGKILL it then."""
    p = multiprocessing.get_context("fork").Process(target=_child, args=(argv, fault, stderr))
    p.start()
    p.join(kill_after if kill_after is not None else 1200)
    if p.is_alive():
        if kill_after is None:
            p.kill()
            pytest.fail(f"{argv} hung")
        p.kill()
        p.join()
    return p.exitcode


def fresh_cli(argv: list[str]) -> None:
    """Run the CLI in a new interpreter: its own hash seeds, nothing shared with this process."""
    r = subprocess.run([sys.executable, "-m", "plmkit", "-q", *argv], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def steps_logged(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]


def tb_steps(out: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    return [e.step for e in acc.Scalars("train/loss")]


def same_bytes(a: Path, b: Path, *names: str) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def sweep(argv_for, chain: list[tuple[str | float | None, bool, int]], out: Path, torn_log_after: str | None = None):
    """Run `argv_for(resume)` once per chain entry (fault point or seconds until SIGKILL, resume?, exit code
    expected: -9 killed, 130 Ctrl-C, None either: a timed kill may land after the end); then once to the end."""
    for point, resume, code in chain:
        timed = isinstance(point, float)
        got = fork_cli(argv_for(resume), None if timed else point, kill_after=point if timed else None)
        if code is not None:
            assert got == code, f"{point}: exit {got}"
        if point == torn_log_after:  # a line cut short by the kill, as a torn write leaves it
            with open(out / "train_log.jsonl", "a") as f:
                f.write('{"step": 99, "lo')
    assert fork_cli(argv_for(True)) == 0


# --- determinism ---------------------------------------------------------------------------------------


def test_every_tokenizer_kind_is_the_same_in_two_processes(kjv_head, tmp_path):
    corpus = kjv_head(400)
    script = ("import sys, hashlib; from plmkit.tokenizers import KINDS, train_tokenizer\n"
              "for k in KINDS: print(k, hashlib.sha256(train_tokenizer(k, [sys.argv[1]], 300, "
              "show_progress=False).backend.to_str().encode()).hexdigest())")
    runs = [subprocess.run([sys.executable, "-c", script, str(corpus)], env=ENV, capture_output=True, text=True,
                           timeout=120) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    first, second = (dict(line.split() for line in r.stdout.splitlines()) for r in runs)
    assert sorted(first) == sorted(KINDS) and first == second


def test_seeded_bpe_keeps_the_library_vocabulary(kjv_head):
    """The seeded trainer learns the same kind of vocabulary: every character, its marked forms, merges."""
    from plmkit.tokenizers import train_tokenizer

    corpus = kjv_head(300)
    for kind, marked in (("wordpiece", "##e"), ("bpe", "e</w>")):
        tok = train_tokenizer(kind, [corpus], 400, show_progress=False)
        spec = json.loads(tok.backend.to_str())
        assert [t["content"] for t in spec["added_tokens"]] == list(dict.fromkeys(tok.roles.values()))
        vocab = spec["model"]["vocab"]
        assert len(vocab) == 400 and marked in vocab and "e" in vocab
        assert tok.decode(tok.encode("And God said")).lower().replace(" ", "") == "andgodsaid"


@pytest.fixture(scope="module")
def reference(kjv_head, tmp_path_factory):
    """An uninterrupted pre-training run in a fresh interpreter, and the same command forked from this one."""
    corpus = kjv_head(600)
    outs = [tmp_path_factory.mktemp("reference") / "run" for _ in range(2)]
    argv = lambda out: ["pretrain", "--model", "bert", *SMALL, "--corpus", str(corpus), "--out", str(out), *PRETRAIN]  # noqa: E731
    fresh_cli(argv(outs[0]))
    assert fork_cli(argv(outs[1])) == 0
    return corpus, outs[0], outs[1]


def test_the_same_command_twice_gives_the_same_bytes(reference):
    _, a, b = reference
    same_bytes(a, b, "tokenizer.json", "tokenizer_config.json", "model.safetensors", "config.json",
               "data/meta.json", "data/tokens-00000.bin")
    assert [json.loads(x)["loss"] for x in (a / "train_log.jsonl").read_text().splitlines()] == \
        [json.loads(x)["loss"] for x in (b / "train_log.jsonl").read_text().splitlines()]


# --- kill sweeps ---------------------------------------------------------------------------------------

# Every phase of a pre-training run, in order: each entry kills one process, the next resumes the same
# directory. (point, resume, exit code); a float is a SIGKILL after that many seconds.
PRETRAIN_CHAIN = [
    ("write:tokenizer.json", False, -9), ("tokenizer", False, -9), ("shards", False, -9),
    ("swap:data", False, -9),  # a rerun without --resume rebuilds the shards over the complete ones
    ("write:run.json", True, -9), ("run", True, -9), ("step:2", True, -9), ("log:4", True, -9),
    ("write:step-6", True, -9), ("checkpoint:6", True, -9), ("write:train_log.jsonl", True, -9),
    ("SIGINT@step:8", True, 130), ("step:10", True, -9), ("checkpoint:12", True, -9),
    ("write:model.safetensors", True, -9), ("final", True, -9),
]
# Kills by the clock, on a run of their own: each lands wherever the run has got to (or after its end).
TIMED = [(0.3, False, None), (0.6, True, None), (0.9, True, None), (1.2, True, None), (0.6, True, None)]


def test_pretraining_killed_everywhere_resumes_bit_identically(reference, tmp_path):
    corpus, ref, _ = reference
    argv = lambda out, resume: ["pretrain", "--model", "bert", *SMALL, "--corpus", str(corpus), "--out", str(out),  # noqa: E731
                                *PRETRAIN, *(["--resume"] if resume else [])]
    out, timed = tmp_path / "run", tmp_path / "timed"
    sweep(lambda resume: argv(out, resume), PRETRAIN_CHAIN, out, torn_log_after="checkpoint:6")
    sweep(lambda resume: argv(timed, resume), TIMED, timed)
    for run in (out, timed):
        same_bytes(run, ref, "tokenizer.json", "model.safetensors", "data/meta.json", "data/tokens-00000.bin")
        assert steps_logged(run) == list(range(1, 13))
        assert [json.loads(x)["loss"] for x in (run / "train_log.jsonl").read_text().splitlines()] == \
            [json.loads(x)["loss"] for x in (ref / "train_log.jsonl").read_text().splitlines()]
        assert sorted(tb_steps(run)) == list(range(1, 13))
        assert not [p.name for p in run.rglob(".*")]  # no temporary file or directory left behind
        assert json.loads((run / "train_summary.json").read_text())["steps"] == 12


def _task(path: Path, verses: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": v, "label": "long" if len(v) > 100 else "short"}) + "\n"
                            for v in verses))
    return path


@pytest.fixture(scope="module")
def task(reference, tmp_path_factory):
    d = tmp_path_factory.mktemp("task")
    verses = [v for v in Path(reference[0]).read_text().splitlines() if v.strip()]
    return _task(d / "train.jsonl", verses[:32]), _task(d / "dev.jsonl", verses[100:116])


FINETUNE = ["--task", "classify", "--epochs", "2", "--batch-size", "8", "--max-length", "32", "--eval-every", "2",
            "--lr", "1e-3", "--ulmfit", "--patience", "4"]
FINETUNE_CHAIN = [("step:1", False, -9), ("eval:2", True, -9), ("checkpoint:2", True, -9), ("write:step-4", True, -9),
                  ("log:4", True, -9), ("SIGINT@step:5", True, 130), ("step:7", True, -9), ("checkpoint:8", True, -9), ("final", True, -9), ("final-eval", True, -9),
                  ("write:eval.json", True, -9)]


def test_finetuning_killed_everywhere_resumes_bit_identically(reference, task, tmp_path):
    _, model, _ = reference
    train, dev = task
    argv = lambda out, resume: ["finetune", "--model", str(model), "--train", str(train), "--dev", str(dev),  # noqa: E731
                                "--test", str(dev), "--out", str(out), *FINETUNE, *(["--resume"] if resume else [])]
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert fork_cli(argv(ref, False)) == 0
    sweep(lambda resume: argv(out, resume), FINETUNE_CHAIN, out)
    same_bytes(out, ref, "model.safetensors", "head.safetensors", "head.json")
    got, want = (json.loads((d / "eval.json").read_text()) for d in (out, ref))
    assert {k: v for k, v in got.items() if k != "seconds"} == {k: v for k, v in want.items() if k != "seconds"}
    assert steps_logged(out) == steps_logged(ref) == [4, 8] and not (out / "checkpoints").exists()
    assert fork_cli(argv(out, True)) == 0  # --resume of a finished run prints its result
    assert fork_cli(argv(out, False)) == 2  # without --resume it refuses to overwrite it


# One process per entry, each rerunning the recipe: stages it finished are skipped, the interrupted one resumes.
RECIPE_CHAIN = [("tokenizer", False, -9), ("checkpoint:2", False, -9), ("stage:general", False, -9),
                ("shards", False, -9), ("checkpoint:4", False, -9), ("SIGINT@step:2", False, 130), ("eval:4", False, -9),
                ("stage:finetune-after-task", False, -9)]


def test_recipe_killed_in_every_stage_gives_the_same_model(reference, task, tmp_path):
    corpus = reference[0]
    train, dev = task
    (tmp_path / "r.toml").write_text(
        f'[general]\nmodel = "bert"\ncorpus = ["{corpus}"]\nvocab_size = 200\nsteps = 4\nbatch_size = 4\n'
        f'seq_len = 32\nsave_every = 2\n[general.set]\nnum_layers = 1\nhidden_size = 32\nnum_heads = 2\n'
        f'intermediate_size = 64\n[task]\nsteps = 4\nbatch_size = 4\nseq_len = 32\nsave_every = 2\n'
        f'[finetune]\ntask = "classify"\ntrain = "{train}"\ndev = "{dev}"\nepochs = 1\nbatch_size = 8\n'
        'max_length = 32\n')
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert fork_cli(["recipe", str(tmp_path / "r.toml"), "--out", str(ref)]) == 0
    for point, _, code in RECIPE_CHAIN:
        assert fork_cli(["recipe", str(tmp_path / "r.toml"), "--out", str(out)], point) == code, point
    assert fork_cli(["recipe", str(tmp_path / "r.toml"), "--out", str(out)]) == 0
    for stage in ("general", "task", "finetune/after-task"):
        same_bytes(out / stage, ref / stage, "model.safetensors")
    same_bytes(out / "finetune/after-task", ref / "finetune/after-task", "head.safetensors")
    assert steps_logged(out / "task") == steps_logged(ref / "task") == [4]


def test_every_fault_point_is_reached_by_a_sweep():
    visited = {re.sub(r":.*", "", p.split("@")[-1]) for chain in (PRETRAIN_CHAIN, FINETUNE_CHAIN, RECIPE_CHAIN)
               for p, _, _ in chain if isinstance(p, str)}
    assert visited == {p.split(":")[0] for p in FAULT_POINTS}


def test_ctrl_c_checkpoints_and_says_how_to_resume(reference, tmp_path):
    corpus = reference[0]
    out = tmp_path / "run"
    argv = ["pretrain", "--model", "bert", *SMALL, "--corpus", str(corpus), "--out", str(out), *PRETRAIN]
    assert fork_cli(argv, "SIGINT@step:5", stderr=str(tmp_path / "stderr")) == 130
    err = (tmp_path / "stderr").read_text()
    assert "interrupted after step 5" in err and "--resume" in err and "Traceback" not in err
    assert (out / "checkpoints" / "step-5" / "COMPLETE").is_file() and steps_logged(out)[-1] == 5


# --- untrusted files -----------------------------------------------------------------------------------


def test_nothing_in_the_package_unpickles():
    bad = []
    for path in sorted((ROOT / "plmkit").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if (re.search(r"\btorch\.load\(", code) and "weights_only=True" not in code) or \
                    re.search(r"\b(import pickle|from pickle|pickle\.loads?|cPickle|dill|joblib\.load)\b", code) or \
                    "allow_pickle=True" in code or re.search(r"trust_remote_code\s*=\s*True", code):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)
