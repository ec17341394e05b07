"""The command line end to end on a small slice of the shipped corpus: pre-training, inference, the
family graph, and one-line errors with exit code 2."""

import json
import math
import subprocess
import sys

import pytest

from plmkit.cli import main


FAST = ["--size", "tiny", "--steps", "40", "--batch-size", "16", "--seq-len", "32", "--vocab-size", "600",
        "--lr", "5e-3", "--log-every", "1", "--warmup-steps", "4"]


@pytest.fixture(scope="module", params=["bert", "gpt"])
def run(request, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "run"
    assert main(["-q", "pretrain", "--model", request.param, "--corpus", str(corpus), "--out", str(out), *FAST]) == 0
    return request.param, out


def test_pretrain_loss_falls_and_writes_the_run(run):
    _, out = run
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 41))
    assert all(k in log[0] for k in ("step", "loss", "lr", "tokens", "tokens_per_s"))
    last = sum(r["loss"] for r in log[-10:]) / 10
    assert last < log[0]["loss"] - 0.5
    # Better than guessing uniformly over the 600-token vocabulary (ln 600 = 6.4): the model has learned.
    lm_loss = sum(r.get("mlm_loss", r["loss"]) for r in log[-10:]) / 10
    assert lm_loss < math.log(600) - 0.5
    for name in ("config.json", "model.safetensors", "tokenizer.json", "plmkit.json", "loss.png"):
        assert (out / name).exists(), name
    assert list((out / "tb").iterdir())


def test_inference_commands(run, capsys, monkeypatch):
    member, out = run
    capsys.readouterr()
    if member == "bert":
        assert main(["fill-mask", "--model", str(out), "--text", "And God said, Let there be [MASK].",
                     "--top-k", "3", "--json"]) == 0
        fills = json.loads(capsys.readouterr().out)
        assert len(fills) == 1 and len(fills[0]) == 3
        assert fills[0][0]["score"] >= fills[0][1]["score"] >= fills[0][2]["score"]
        assert main(["generate", "--model", str(out), "--prompt", "x"]) == 2  # a masked LM cannot generate
        assert main(["gibbs", "--model", str(out), "--text", "And God [MASK]", "--length", "4", "--iterations",
                     "20", "--burnin", "10", "--samples", "2", "--seed", "1", "--json"]) == 0
        samples = json.loads(capsys.readouterr().out)
        assert len(samples) == 2 and all(len(s["tokens"]) == 5 for s in samples)
    else:
        args = ["generate", "--model", str(out), "--prompt", "And God said", "--max-new-tokens", "8",
                "--top-k", "20", "--top-p", "0.9", "--seed", "1", "--json"]
        assert main(args) == 0
        first = json.loads(capsys.readouterr().out)
        assert main(args) == 0
        assert json.loads(capsys.readouterr().out) == first  # seeded sampling repeats
        assert 0 < len(first["tokens"]) <= 8
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # a terminal: the text is streamed as it comes
        assert main(args[:-1]) == 0
        assert capsys.readouterr().out == first["text"] + "\n"
        monkeypatch.undo()
        prompts = out.parent / "prompts.jsonl"
        prompts.write_text('{"prompt": "And God said"}\n\n{"text": "In the beginning"}\n')
        assert main(["generate", "--model", str(out), "--prompts", str(prompts), "--num-beams", "3",
                     "--num-return-sequences", "2", "--max-new-tokens", "6", "--stop", "."]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["index"] for r in lines] == [0, 0, 1, 1] and lines[0]["score"] >= lines[1]["score"]
        assert all("." not in r["completion"] for r in lines)
        prompts.write_text('{"prompt": "And God said"}\n{"prompt": 3}\n')
        assert "prompts.jsonl:2" in _error(["generate", "--model", str(out), "--prompts", str(prompts)], capsys)
        assert "deterministic" in _error(["generate", "--model", str(out), "--prompt", "x", "--num-beams", "2",
                                          "--temperature", "0.7"], capsys)
        assert "masked LM" in _error(["gibbs", "--model", str(out), "--length", "3"], capsys)


def test_family_and_diff(tmp_path, capsys):
    assert main(["family", "--json"]) == 0
    members = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert members["bert"]["parent"] == "gpt" and members["gpt"]["parent"] is None
    assert main(["diff", "bert"]) == 0
    text = capsys.readouterr().out
    assert "next-sentence prediction" in text and "parent: gpt" in text
    assert main(["family", "--out", str(tmp_path / "family.png")]) == 0
    assert (tmp_path / "family.png").read_bytes()[:4] == b"\x89PNG"


def _error(args, capsys) -> str:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("plmkit: error:")
    return err


def test_bad_input_is_one_line_with_exit_code_2(corpus, tmp_path, capsys):
    out = str(tmp_path / "o")
    base = ["pretrain", "--model", "bert", "--out", out, "--steps", "2"]
    assert "missing.txt" in _error([*base, "--corpus", str(tmp_path / "missing.txt")], capsys)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    assert "empty.txt" in _error([*base, "--corpus", str(empty)], capsys)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("good line\nsecond line\ncaf\xe9 au lait\n".encode("latin-1"))
    assert "latin1.txt:3" in _error([*base, "--corpus", str(latin)], capsys)
    assert "unknown model" in _error(["pretrain", "--model", "bertt", "--corpus", str(corpus), "--out", out], capsys)
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\nhidden_size = 64\nnum_layer = 3\n")
    err = _error([*base, "--corpus", str(corpus), "--config", str(toml)], capsys)
    assert "c.toml" in err and "num_layer" in err


def test_tokenizer_that_does_not_fit_the_embedding(corpus, tmp_path, capsys):
    tok = tmp_path / "tok"
    assert main(["tokenizer", "train", "--kind", "wordpiece", "--corpus", str(corpus), "--vocab-size", "600",
                 "--out", str(tok)]) == 0
    toml = tmp_path / "small.toml"
    toml.write_text("[model]\nvocab_size = 100\n")
    err = _error(["pretrain", "--model", "bert", "--corpus", str(corpus), "--out", str(tmp_path / "o"),
                  "--tokenizer", str(tok), "--config", str(toml)], capsys)
    assert "embedding" in err and "tok" in err


def test_no_traceback_from_the_installed_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "plmkit", "pretrain", "--model", "nope", "--corpus", "x.txt",
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "unknown model" in r.stderr
