"""The bake-off: FLOPs of a step, cells that run once, members that join later, the claims' logic."""

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from plmkit.cli import main
from plmkit.errors import PlmkitError
from plmkit.workflows.bakeoff import (SCRATCH, Settings, Task, bakeoff, claims, count_flops, flops_ticks, parse_task,
                                      schedule, step_flops)


class TinyAttention(torch.nn.Module):
    """One projection and SDPA: B × T × D in, H heads of D / H."""

    def __init__(self, d=8, heads=2):
        super().__init__()
        self.proj = torch.nn.Linear(d, d, bias=False)
        self.heads = heads

    def forward(self, x):
        B, T, D = x.shape
        q = self.proj(x).view(B, T, self.heads, D // self.heads).transpose(1, 2)  # (B, H, T, D/H)
        return F.scaled_dot_product_attention(q, q, q, is_causal=True)


def test_step_flops_are_flopcounters_and_the_hand_count():
    B, T, D, H = 3, 5, 8, 2
    model = TinyAttention(D, H)
    batch = {"x": torch.randn(B, T, D)}

    def step_fn(m, b):
        return {"loss": m(b["x"]).square().sum()}

    flops = step_flops(model, batch, step_fn)
    # By hand: the projection 2·B·T·D·D forward, and its weight gradient the same (x needs no gradient);
    # attention QKᵀ and PV 2·B·H·T·T·(D/H) each forward, and five such products backward (the four gradients
    # and QKᵀ again: the fused kernel recomputes the scores instead of storing them; torch's formula for it).
    proj, attn = 2 * B * T * D * D, 2 * B * H * T * T * (D // H)
    assert flops == 2 * proj + 2 * attn + 5 * attn
    with FlopCounterMode(display=False) as counter:  # the counter itself, once the CPU kernel has its formula
        model.zero_grad()
        step_fn(model, batch)["loss"].backward()
    assert counter.get_total_flops() == flops
    # The CPU kernel counts as the same attention written out as matmuls.
    q = torch.randn(B, H, T, D // H)
    with torch.no_grad():
        explicit, _ = count_flops(lambda: (q @ q.transpose(-1, -2)).softmax(-1) @ q)
        fused, _ = count_flops(lambda: F.scaled_dot_product_attention(q, q, q))
    assert fused == explicit == 2 * attn


@pytest.fixture(scope="module")
def tiny(kjv_head, tmp_path_factory):
    d = tmp_path_factory.mktemp("bakeoff") / "verses"
    d.mkdir()
    texts = [("the lord spake unto moses saying", "law"), ("blessed is the man that walketh not", "poetry"),
             ("and the king went up to the house", "history"), ("praise ye the lord o my soul", "poetry"),
             ("these are the statutes and judgments", "law"), ("and david smote the philistines", "history")]
    for split, n in (("train", 4), ("dev", 2), ("test", 2)):
        (d / f"{split}.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in texts * n))
    heldout = d / "heldout.txt"
    heldout.write_text("in the beginning god created the heaven and the earth\n")
    settings = Settings(seq_len=16, batch_size=4, vocab_size=300, points=(0.5, 1.0), seeds=1, ft_steps=2,
                        ft_batch_size=8, max_length=16, eval_every=2, lm_window=16)
    return dict(corpus=[str(kjv_head(300))], tasks=[parse_task(str(d))], heldout=str(heldout), settings=settings,
                out=d / "out")


def _cells_run(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("bakeoff: ") and "tokenizer" not in
            r.getMessage()]


def test_two_members_end_to_end_then_a_rerun_does_nothing_and_a_new_member_runs_only_its_cells(tiny, caplog):
    caplog.set_level(logging.INFO, logger="plmkit")
    run = dict(corpus=tiny["corpus"], tasks=tiny["tasks"], heldout=tiny["heldout"], budget=1.2e9,
               settings=tiny["settings"], progress=False)
    r = bakeoff(tiny["out"], members=["gpt", "bert"], **run)
    gpt, bert = r["members"]
    for m in (gpt, bert):
        assert m["steps"] == int(1.2e9 // m["flops_per_step"]) // 2 * 2 > 2 and m["pretrain_flops"] <= 1.2e9
        assert set(m["points"]) == {f"step-{round(m['steps'] / 2)}", f"step-{m['steps']}", SCRATCH}
        cells = m["finetune"][tiny["tasks"][0].name]
        assert all(len(c["scores"]) == 1 and 0 <= c["mean"] <= 1 and c["sd"] == 0 for c in cells.values())
    # One step of the tiny GPT: about 6 FLOPs per parameter per token (forward 2, backward 4); a little less,
    # since the position table (a sixth of the parameters here) is looked up, not multiplied.
    assert 0.7 < gpt["flops_per_step"] / (6 * gpt["parameters"] * 4 * 16) < 1
    assert set(gpt["lm"]) == {p for p in gpt["points"] if p != SCRATCH} and not bert["lm"]  # BERT is no LM
    for f in ("bakeoff.json", "table.md", "bakeoff.png", "report.md"):
        assert (tiny["out"] / f).stat().st_size > 0
    assert "| gpt |" in (tiny["out"] / "table.md").read_text()
    assert {c["claim"] for c in r["claims"]} >= {"ELECTRA beats BERT at equal compute", "pre-training beats none"}

    caplog.clear()
    again = bakeoff(tiny["out"], members=["gpt", "bert"], **run)
    assert _cells_run(caplog) == [] and again["members"] == r["members"]

    caplog.clear()
    grown = bakeoff(tiny["out"], members=["gpt", "bert", "ngram"], **run)
    ran = _cells_run(caplog)
    assert ran and all(m.startswith("bakeoff: ngram") for m in ran)
    ngram = grown["members"][2]
    assert ngram["counted"] and ngram["pretrain_flops"] is None and "final" in ngram["lm"]
    assert "no hidden states to put a task head on" in ngram["finetune"][tiny["tasks"][0].name]["final"]["failed"]
    lm_claim = next(c for c in grown["claims"] if "n-gram" in c["claim"])
    assert lm_claim["verdict"] in ("held", "did not hold") and "gpt" in lm_claim["evidence"]

    with pytest.raises(PlmkitError, match="other budget"):
        bakeoff(tiny["out"], members=["gpt"], **{**run, "budget": 2e9})


def test_minutes_give_each_member_the_steps_its_timed_step_allows(tiny, tmp_path):
    """With --minutes, steps = the wall-clock ÷ the seconds of a step timed outside the FLOP counter; the FLOPs
    are still counted, so a member's FLOPs follow from its steps rather than bound them."""
    run = dict(corpus=tiny["corpus"], tasks=tiny["tasks"], heldout=None, settings=tiny["settings"], progress=False)
    r = bakeoff(tmp_path / "out", members=["gpt"], minutes=0.05, **run)
    (gpt,) = r["members"]
    probe = json.loads((tmp_path / "out" / "members" / "gpt" / "probe" / "done.json").read_text())
    assert probe["seconds_per_step"] > 0
    assert gpt["steps"] == schedule(max(1, int(0.05 * 60 / probe["seconds_per_step"])), (0.5, 1.0))[0]
    assert gpt["pretrain_flops"] == gpt["steps"] * gpt["flops_per_step"] == gpt["steps"] * probe["flops_per_step"]
    assert r["settings"]["minutes"] == 0.05 and r["settings"]["budget_flops"] is None
    with pytest.raises(PlmkitError, match="budget"):  # a directory keeps the compute it was started with
        bakeoff(tmp_path / "out", members=["gpt"], budget=1e9, **run)


def test_the_flops_axis_is_labelled_within_a_decade():
    assert flops_ticks(1.5e11, 6e11) == [5e11]
    assert flops_ticks(2.5e10, 4e11) == [5e10, 1e11, 2e11, 5e11]
    assert flops_ticks(1e9, 1e9) == []


def _row(member, name=None, objective="clm", parent=None, counted=False, scores=None, lm=None):
    """A measured member as bakeoff.json holds it: scores {task: {point: [seed scores]}}."""
    import statistics

    points = {"step-10": {"step": 10, "flops": 1e9}, SCRATCH: {"step": 0, "flops": 0}}
    ft = {t: {p: {"metric": "accuracy", "scores": s, "mean": statistics.fmean(s), "sd": statistics.stdev(s)}
              for p, s in per.items()} for t, per in (scores or {}).items()}
    return {"member": member, "name": name or member, "objective": objective, "parent": parent, "counted": counted,
            "points": points if not counted else {"final": {"step": None, "flops": None}}, "finetune": ft,
            "lm": lm or {}, "seconds": 1.0}


def by_claim(rows, tasks):
    return {c["claim"]: c for c in claims(rows, tasks)}


def test_claims_from_synthetic_cells():
    tasks = [Task("a", "classify", "x", "y"), Task("p", "pair", "x", "y")]
    good, bad = [0.8, 0.82, 0.81], [0.6, 0.62, 0.61]
    rows = [
        _row("bert", objective="mlm+nsp", parent="gpt", scores={"a": {"step-10": bad, SCRATCH: good},
                                                                "p": {"step-10": bad, SCRATCH: bad}}),
        _row("bert@mlm", name="bert", objective="mlm", parent="gpt", scores={"a": {"step-10": good}, "p": {"step-10": good}}),
        _row("electra", objective="rtd", parent="bert", scores={"a": {"step-10": good}, "p": {"step-10": good}}),
        _row("bert@mlm+sop", name="bert", objective="mlm+sop", scores={"p": {"step-10": bad}, "a": {"step-10": good}}),
        _row("ngram", objective="counts", counted=True, lm={"final": {"bits_per_byte": 2.0}}),
        _row("gpt", lm={"step-10": {"bits_per_byte": 1.5}}),
        _row("broken") | {"failed": "RuntimeError: no"},
    ]
    by = {c["claim"]: c for c in claims(rows, tasks)}
    assert by["ELECTRA beats BERT at equal compute"]["verdict"] == "held"
    assert "+0.200" in by["ELECTRA beats BERT at equal compute"]["evidence"]
    assert by["NSP does not help (without NSP ≥ with NSP)"]["verdict"] == "held"
    # SOP vs NSP is judged on the pair task alone, where the two are level: not a win.
    sop = by["SOP beats NSP on sentence-pair tasks"]
    assert sop["verdict"] == "did not hold" and "p: +0.000" in sop["evidence"] and "a:" not in sop["evidence"]
    # BERT from scratch beats its own pre-trained checkpoint on task a: that member's verdict goes the other way.
    pre = by["pre-training beats none"]
    assert pre["verdict"] == "did not hold" and "bert — did not hold" in pre["evidence"]
    assert by["neural LMs overtake the KN n-gram as the budget grows"]["verdict"] == "held"
    assert by["dynamic masking ≥ static masking"]["verdict"] == "not measurable here"  # no static run
    # Static masks seen once (under one epoch of the copies) are dynamic ones: not judged, whatever the scores.
    once = _row("bert@mlm-static", name="bert", objective="mlm-static", scores={"a": {"step-10": bad}}) | {"epochs": 0.4}
    static = by_claim(rows + [once], tasks)["dynamic masking ≥ static masking"]
    assert static["verdict"] == "not measurable here" and "0.40 epochs" in static["evidence"]
    # Seen three times each, they are judged: bert@mlm (good) ≥ bert@mlm-static (bad) on task a.
    thrice = once | {"epochs": 3.0}
    static = by_claim(rows + [thrice], tasks)["dynamic masking ≥ static masking"]
    assert static["verdict"] == "held" and "bert@mlm vs bert@mlm-static" in static["evidence"]
    assert claims(rows[:1], tasks[:1])[0]["verdict"] == "not measurable here"  # no ELECTRA measured


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["bakeoff", "--corpus", str(tmp_path / "none.txt"), "--budget", "1e9", "--tasks",
                 "classify:a.jsonl", "--out", str(tmp_path / "o")]) == 2
    assert "KIND:TRAIN,DEV" in capsys.readouterr().err
    (tmp_path / "c.txt").write_text("x\n")
    assert main(["bakeoff", "--corpus", str(tmp_path / "c.txt"), "--budget", "1e9", "--tasks", str(tmp_path),
                 "--out", str(tmp_path / "o")]) == 2
    assert "train.jsonl or train.txt" in capsys.readouterr().err


def test_jobs_run_members_in_processes_of_their_own_with_the_cells_one_job_makes(tiny, tmp_path):
    """--jobs 2 runs each member in its own process; the rows come back in the order asked, each member's cells
    the ones a run of one job makes (same steps, FLOPs, points and fine-tuning cells)."""
    run = dict(corpus=tiny["corpus"], tasks=tiny["tasks"], heldout=tiny["heldout"], budget=1.2e9,
               settings=tiny["settings"], progress=False)
    one = bakeoff(tiny["out"], members=["gpt", "bert"], **run)
    two = bakeoff(tmp_path / "out", members=["gpt", "bert"], jobs=2, **run)
    assert [m["member"] for m in two["members"]] == ["gpt", "bert"]
    for a, b in zip(one["members"], two["members"]):
        assert (a["steps"], a["flops_per_step"], a["points"], set(a["lm"])) == \
               (b["steps"], b["flops_per_step"], b["points"], set(b["lm"]))
        assert {t: set(c) for t, c in a["finetune"].items()} == {t: set(c) for t, c in b["finetune"].items()}
        assert all(len(c["scores"]) == 1 for cells in b["finetune"].values() for c in cells.values())
    with pytest.raises(PlmkitError, match="jobs"):
        bakeoff(tmp_path / "out", members=["gpt"], jobs=0, **run)


def test_the_schedule_puts_every_point_on_a_checkpoint_and_saves_only_those():
    """Points at quarters of 2,121 steps would have a gcd of 1 (a checkpoint every step, gigabytes): the steps are
    rounded down to a multiple of 4, and checkpoints fall exactly on the points."""
    assert schedule(2121, (0.25, 0.5, 1.0)) == (2120, [530, 1060, 2120], 530)
    assert schedule(1589, (1.0,)) == (1589, [1589], 1589)
    steps, marks, every = schedule(1000, (0.3, 1.0))
    assert steps == 1000 and marks == [300, 1000] and every == 100
    assert schedule(3, (0.25, 1.0)) == (3, [1, 3], 1)  # fewer steps than quarters: nothing to round


def test_a_second_bakeoff_in_a_running_ones_directory_is_refused(tiny, tmp_path):
    from plmkit.durable import exclusive

    run = dict(corpus=tiny["corpus"], tasks=tiny["tasks"], heldout=None, budget=1e9, settings=tiny["settings"],
               progress=False)
    with exclusive(tmp_path / "out", "bake-off"):  # as a run going on holds it
        with pytest.raises(PlmkitError, match="another bake-off is running"):
            bakeoff(tmp_path / "out", members=["gpt"], **run)
    assert not (tmp_path / "out" / "members").exists()


_ORPHAN = """
import concurrent.futures, logging, multiprocessing, os, sys, time
from plmkit.workflows.bakeoff import _worker

def wait(path):
    open(path, "w").write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, ctx, _worker, (1, logging.WARNING, os.getpid())) as pool:
        pool.submit(wait, sys.argv[1]).result()
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its reaping is left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_member_process_ends_when_the_bakeoff_process_is_killed(tmp_path):
    """SIGTERM to the bake-off (a kill, not Ctrl-C, which reaches the workers too) must not leave its member
    processes writing the run's cells on their own; a rerun would then race them."""
    script, pid_file = tmp_path / "run.py", tmp_path / "worker.pid"
    script.write_text(_ORPHAN)
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)])
    try:
        deadline = time.time() + 120
        while not pid_file.exists() or not pid_file.read_text():
            assert time.time() < deadline and parent.poll() is None, "the worker did not start"
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        parent.terminate()
        parent.wait(30)
        deadline = time.time() + 15
        while _alive(worker):
            assert time.time() < deadline, "the member process outlived the bake-off"
            time.sleep(0.2)
    finally:
        parent.kill()


def test_a_task_that_ships_with_plmkit_is_taken_by_its_name(tmp_path):
    from plmkit.data.shipped import write_task

    task = parse_task("bible-paraphrase", tmp_path / "shipped")
    assert task.kind == "pair" and task.name == "bible-paraphrase"
    assert task.train == str(tmp_path / "shipped" / "bible-paraphrase" / "train.jsonl")
    assert (tmp_path / "shipped" / "bible-paraphrase" / "test.jsonl").read_text() == \
        (write_task("bible-paraphrase", tmp_path / "again") / "test.jsonl").read_text()
    with pytest.raises(PlmkitError, match="bible-paraphrase"):  # without a place to write it, a name is unknown
        parse_task("bible-paraphrase")
