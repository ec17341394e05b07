"""Training engine: loss falls, exact resume after SIGKILL, atomic checkpoints, schedules, grad accumulation, DDP.

Also a script for the subprocess tests: `python tests/test_train.py run OUT STEPS [resume]` and, under
torchrun, `tests/test_train.py ddp OUT`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from plmkit.errors import PlmkitError
from plmkit.train import TrainConfig, Trainer, init_distributed
from plmkit.train import checkpoint as ckpt
from plmkit.train import schedules

VOCAB, LEN = 32, 17
# The subprocess runs import plmkit from this checkout whether or not it is installed.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                     os.environ.get("PYTHONPATH", "")])}


class TinyLM(torch.nn.Module):
    """Next-token LM: embedding -> Linear -> dropout -> output tied to the embedding."""

    def __init__(self, dropout: float = 0.1):
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, 16)
        self.mix = torch.nn.Linear(16, 16)
        self.drop = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(16, VOCAB)
        self.out.weight = self.emb.weight  # tied: checkpoints must cope with shared storage

    def forward(self, ids):  # (B, T) -> (B, T, V)
        return self.out(self.drop(torch.tanh(self.mix(self.emb(ids)))))


def make_dataset(n: int = 64) -> np.ndarray:
    """Windows of a noisy Markov chain (next = 5 * cur + 3 mod V), so a per-token model can learn it."""
    rng = np.random.default_rng(0)
    seq = [0]
    for _ in range(n * LEN):
        seq.append((5 * seq[-1] + 3) % VOCAB if rng.random() > 0.1 else int(rng.integers(VOCAB)))
    return np.array(seq[: n * LEN], dtype=np.int64).reshape(n, LEN)


class Sampler:
    """Same contract as plmkit.data.pretrain.StepSampler: indices(step) is a pure function of step."""

    def __init__(self, n, batch_size, seed=0, rank=0, world_size=1):
        self.n, self.b, self.seed, self.rank, self.world = n, batch_size, seed, rank, world_size

    def indices(self, step):
        start = step * self.b * self.world + self.rank * self.b
        out = []
        for p in range(start, start + self.b):
            perm = np.random.default_rng([self.seed, p // self.n]).permutation(self.n)
            out.append(int(perm[p % self.n]))
        return out

    def epoch(self, step):
        return step * self.b * self.world / self.n


def make_collate(noise: float = 0.1):
    def collate(examples, generator):
        ids = torch.from_numpy(np.stack(examples))
        inputs = ids[:, :-1].clone()
        # Random corruption drawn from the trainer's generator, like MLM masking would be.
        corrupt = torch.rand(inputs.shape, generator=generator) < noise
        inputs[corrupt] = torch.randint(VOCAB, inputs.shape, generator=generator)[corrupt]
        return {"input_ids": inputs, "labels": ids[:, 1:]}

    return collate


def step_fn(model, batch):
    if os.environ.get("PLMKIT_TEST_SLOW"):
        time.sleep(float(os.environ["PLMKIT_TEST_SLOW"]))
    logits = model(batch["input_ids"])
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch["labels"].reshape(-1))
    acc = (logits.argmax(-1) == batch["labels"]).float().mean()
    return {"loss": loss, "tokens": batch["input_ids"].numel(), "acc": acc}


def save_fn(model, directory):
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
              os.path.join(directory, "model.safetensors"))


def make_trainer(out, dropout=0.1, noise=0.1, rank=0, world_size=1, **cfg):
    torch.manual_seed(0)
    data = make_dataset()
    cfg = {"steps": 40, "batch_size": 8, "lr": 1e-2, "warmup_steps": 4, "log_every": 1, **cfg}
    config = TrainConfig(**cfg)
    sampler = Sampler(len(data), config.batch_size, 0, rank, world_size)
    return Trainer(TinyLM(dropout), data, sampler, make_collate(noise), step_fn, config, out, save_fn=save_fn,
                   run_info={"test": True})


def read_log(out):
    return [json.loads(line) for line in (Path(out) / "train_log.jsonl").read_text().splitlines()]


# --- tests ---------------------------------------------------------------------------------------------


def test_loss_falls_and_run_dir(tmp_path):
    out = tmp_path / "run"
    summary = make_trainer(out, steps=60, log_every=5, save_every=20).train()
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(5, 61, 5))
    for key in ("step", "loss", "lr", "tokens", "tokens_per_s", "epoch", "elapsed_s", "grad_norm", "acc"):
        assert key in log[0]
    assert log[-1]["tokens"] == 60 * 8 * (LEN - 1)
    assert log[-1]["loss"] < 0.6 * log[0]["loss"]
    assert summary["tokens"] == log[-1]["tokens"] and summary["final_loss"] == log[-1]["loss"]
    for name in ("loss.png", "train_summary.json", "model.safetensors", "train_config.json"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    # keep_checkpoints=2 of step-20/40/60
    assert [s for s, _ in ckpt.complete_checkpoints(out / "checkpoints")] == [40, 60]
    step60 = out / "checkpoints" / "step-60"
    assert sorted(p.name for p in step60.iterdir()) == ["COMPLETE", "model", "trainer.json", "trainer.safetensors"]
    assert (step60 / "model" / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    with pytest.raises(PlmkitError, match="already holds a training run"):
        make_trainer(out, steps=60).train()


def _script(out, steps, *extra, env=None):
    cmd = [sys.executable, __file__, "run", str(out), str(steps), *extra]
    return subprocess.Popen(cmd, env={**ENV, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _logged_steps(out):
    try:
        return [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def test_exact_resume_after_sigkill(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    reference = _script(ref, 40)
    killed = _script(run, 40, env={"PLMKIT_TEST_SLOW": "0.03"})
    deadline = time.time() + 50
    while not ((run / "checkpoints/step-20/COMPLETE").exists() and max(_logged_steps(run), default=0) >= 25):
        assert killed.poll() is None and time.time() < deadline, killed.communicate()[0]
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert max(_logged_steps(run)) < 40
    assert reference.wait(60) == 0, reference.communicate()[0]
    resumed = _script(run, 40, "resume")
    assert resumed.wait(60) == 0, resumed.communicate()[0]

    assert (run / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    got, want = read_log(run), read_log(ref)
    assert [r["step"] for r in got] == list(range(1, 41))  # no duplicated steps
    assert [(r["loss"], r["tokens"], r["lr"]) for r in got] == [(r["loss"], r["tokens"], r["lr"]) for r in want]
    assert json.loads((run / "train_summary.json").read_text())["resumed_from"] in (20, 30)


def test_resume_ignores_tmp_and_incomplete_checkpoints(tmp_path, caplog):
    out = tmp_path / "run"
    make_trainer(out, steps=20, save_every=10).train()
    root = out / "checkpoints"
    (root / ".tmp-step-30-12345" / "model").mkdir(parents=True)
    (root / ".tmp-step-30-12345" / "COMPLETE").write_text("30\n")  # never renamed: not a checkpoint
    shutil.copytree(root / "step-20", root / "step-25")
    (root / "step-25" / "COMPLETE").unlink()  # renamed by hand, never completed
    summary = make_trainer(out, steps=30, save_every=10).train(resume=True)
    assert summary["resumed_from"] == 20
    assert "changed" not in caplog.text  # the same settings read back from JSON (tuples as lists) are the same
    assert not list(root.glob(".tmp-*"))
    assert [s for s, _ in ckpt.complete_checkpoints(root)] == [20, 30]
    assert [r["step"] for r in read_log(out)] == list(range(1, 31))


def test_resume_without_checkpoint_starts_from_scratch(tmp_path, caplog):
    summary = make_trainer(tmp_path / "new", steps=3).train(resume=True)
    assert summary["resumed_from"] is None and "starting from scratch" in caplog.text
    assert [r["step"] for r in read_log(tmp_path / "new")] == [1, 2, 3]


def test_schedules():
    f = schedules.linear(100, 10)
    assert f(0) == pytest.approx(0.1) and f(9) == 1.0 and f(10) == 1.0
    assert f(55) == pytest.approx(0.5) and f(100) == 0.0
    assert schedules.linear(100, 10, min_ratio=0.2)(100) == pytest.approx(0.2)
    c = schedules.cosine(100, 10)
    assert c(4) == pytest.approx(0.5) and c(10) == 1.0 and c(55) == pytest.approx(0.5) and c(100) == pytest.approx(0)
    assert schedules.constant(100, 10)(4) == pytest.approx(0.5) and schedules.constant(100, 10)(99) == 1.0
    s = schedules.slanted_triangular(1000)  # cut_frac 0.1, ratio 32
    assert s(0) == pytest.approx(1 / 32) and s(100) == 1.0
    assert max(range(1000), key=s) == 100 and s(999) < 0.04
    assert s(50) == pytest.approx((1 + 0.5 * 31) / 32)
    # The schedule multiplies every group's own base lr (discriminative learning rates).
    layers = [torch.nn.Linear(2, 2) for _ in range(3)]
    groups = schedules.discriminative_param_groups(layers, lr=1.0)
    assert [g["lr"] for g in groups] == pytest.approx([1 / 2.6**2, 1 / 2.6, 1.0])
    opt = torch.optim.AdamW(groups)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedules.linear(10, 2))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5 / 2.6**2, 0.5 / 2.6, 0.5])
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1 / 2.6**2, 1 / 2.6, 1.0])


def test_trainer_uses_config_schedule(tmp_path):
    make_trainer(tmp_path / "r", steps=10, warmup_steps=0, schedule="slanted_triangular", lr=0.32).train()
    lrs = [r["lr"] for r in read_log(tmp_path / "r")]
    assert lrs[0] == pytest.approx(0.01) and lrs[1] == pytest.approx(0.32)  # cut = floor(10 * 0.1) = 1


def _first_step_grads(tmp_path, name, **cfg):
    trainer = make_trainer(tmp_path / name, dropout=0.0, noise=0.0, steps=1, clip_norm=0, **cfg)
    grads = {}
    trainer.optimizer.register_step_pre_hook(
        lambda opt, *_: grads.update({n: p.grad.clone() for n, p in trainer.module.named_parameters()}))
    trainer.train()
    return grads


def test_grad_accum_matches_big_batch(tmp_path):
    big = _first_step_grads(tmp_path, "big", batch_size=8)
    accum = _first_step_grads(tmp_path, "accum", batch_size=4, grad_accum=2)
    assert big.keys() == accum.keys()
    for n in big:
        torch.testing.assert_close(accum[n], big[n], atol=1e-6, rtol=0)


def test_weight_decay_groups_and_optimizer_round_trip(tmp_path):
    trainer = make_trainer(tmp_path / "r", steps=2)
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.01 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    trainer.train()
    tensors, meta = ckpt.optimizer_state(trainer.optimizer)
    meta = json.loads(json.dumps(meta))
    fresh = make_trainer(tmp_path / "s", steps=2).optimizer
    ckpt.load_optimizer_state(fresh, tensors, meta)
    a, b = trainer.optimizer.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for k in a["state"][i]:
            assert torch.equal(a["state"][i][k], b["state"][i][k])


def test_config_validation_and_round_trip(tmp_path):
    cfg = TrainConfig.from_dict({"steps": 5, "betas": [0.9, 0.98]})
    assert cfg.betas == (0.9, 0.98) and TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    for bad in ({"steps": 0}, {"schedule": "step"}, {"precision": "fp8"}, {"lr": -1}, {"warmup_ratio": 1.5}):
        with pytest.raises(PlmkitError):
            TrainConfig(**bad)
    with pytest.raises(PlmkitError, match="unknown"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(PlmkitError, match="fp16"):
        make_trainer(tmp_path, precision="fp16", device="cpu")


def test_torchrun_two_processes_follow_the_one_process_loss_curve(tmp_path):
    """Two processes (gloo, CPU) with half the batch each give the loss curve of one process with the whole
    batch: the same global batches, gradients averaged over ranks. Dropout and corruption are off, since their
    random draws differ per rank."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torch.distributed.is_available() or not torchrun.exists():
        pytest.skip("torch.distributed or torchrun unavailable")
    out = tmp_path / "ddp"
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", __file__, "ddp", str(out)],
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = read_log(out)
    assert log[-1]["step"] == 20 and log[-1]["tokens"] == 20 * 2 * 4 * (LEN - 1)  # both ranks counted
    assert (out / "model.safetensors").is_file() and (out / "checkpoints" / "step-20" / "COMPLETE").is_file()
    make_trainer(tmp_path / "one", dropout=0.0, noise=0.0, steps=20, batch_size=8).train()
    one = read_log(tmp_path / "one")
    assert [r["step"] for r in one] == [r["step"] for r in log] == list(range(1, 21))
    diff = max(abs(a["loss"] - b["loss"]) for a, b in zip(one, log))
    print(f"largest loss difference over 20 steps, 2 processes vs 1: {diff:.2e}")
    assert diff < 1e-4


def _main(argv):
    torch.set_num_threads(1)
    if argv[0] == "run":
        out, steps = argv[1], int(argv[2])
        make_trainer(out, steps=steps, save_every=10).train(resume="resume" in argv)
    elif argv[0] == "ddp":
        rank, world, _, _ = init_distributed("cpu")
        make_trainer(argv[1], dropout=0.0, noise=0.0, steps=20, batch_size=4, save_every=10, rank=rank,
                     world_size=world).train()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    _main(sys.argv[1:])
