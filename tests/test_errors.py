"""Bad input, every command: one table of cases, each ending with exit code 2 and one stderr line that names
the file (and line), no traceback, and nothing left in --out that stops the same command once the input is
fixed; and the inputs that are accepted (BOM, CRLF, lone CR) read as the clean file does.

docs/errors.md is generated from these tables: `PLMKIT_WRITE_DOCS=1 python -m pytest tests/test_errors.py`
rewrites it, and the last test fails when it no longer matches.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from plmkit.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
TINY = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_positions=64)
SMALL_RUN = ["--size", "tiny", "--set", "hidden_size=32", "--set", "num_layers=1", "--set", "num_heads=2",
             "--set", "intermediate_size=64", "--steps", "2", "--batch-size", "2", "--seq-len", "16",
             "--vocab-size", "150"]

LATIN1 = "good line\nsecond line\ncaf\xe9 au lait\n".encode("latin-1")
BAD_UTF8 = b"fine\nalso fine\n\xc3\x28 broken\n"
NUL = b"one line\ntwo\x00three\n"
BLANK = b"\n  \n\t\n"
CLEAN_TEXT = b"and god said let there be light\nand there was light\n\nin the beginning was the word\n"
JSONL = b'{"text": "in the beginning", "label": "law"}\n{"text": "grace be with you", "label": "epistle"}\n'


def jsonl(*rows: str) -> bytes:
    return "".join(r + "\n" for r in rows).encode()


@dataclass
class Case:
    id: str
    command: str  # as the docs list it
    input: str  # what is wrong, in words
    argv: list[str]  # {f}: the case's file, {out}: an output dir, {bert} {gpt} {cls} {tag} {corpus} {long}: fixtures
    names: str  # what the message must name (a file's name), then ":LINE:" when `line` is given
    expect: str  # a part of the message
    line: int | None = None
    data: bytes | None = None  # written to {f} (its name is `fname`)
    fname: str = "input.txt"
    model: str | None = None  # a broken copy of a fixture model at {f}: "bin", "truncated", "config", "head"
    fix: bytes | None = None  # rerun with this in {f}: the command must then succeed
    needs: dict = field(default_factory=dict)


PRE = ["pretrain", "--model", "bert", "--out", "{out}", *SMALL_RUN]
FT = ["finetune", "--model", "{bert}", "--task", "classify", "--out", "{out}", "--epochs", "1", "--batch-size", "2",
      "--max-length", "16"]
SQUAD_BAD = json.dumps({"data": [{"paragraphs": [{"context": "the cat sat on the mat", "qas": [
    {"id": "q1", "question": "who sat?", "answers": [{"text": "dog", "answer_start": 4}]}]}]}]}).encode()

CASES = [
    # tokenizer train
    Case("tok-latin1", "tokenizer train", "Latin-1 corpus", ["tokenizer", "train", "--kind", "bpe", "--corpus", "{f}",
         "--vocab-size", "100", "--out", "{out}"], "input.txt", "not UTF-8", 3, LATIN1),
    Case("tok-invalid-utf8", "tokenizer train", "invalid UTF-8 bytes", ["tokenizer", "train", "--kind", "wordpiece",
         "--corpus", "{f}", "--vocab-size", "100", "--out", "{out}"], "input.txt", "not UTF-8", 3, BAD_UTF8),
    Case("tok-nul", "tokenizer train", "a NUL byte", ["tokenizer", "train", "--kind", "unigram", "--corpus", "{f}",
         "--vocab-size", "100", "--out", "{out}"], "input.txt", "NUL byte", 2, NUL, fix=CLEAN_TEXT * 20),
    Case("tok-empty", "tokenizer train", "an empty file", ["tokenizer", "train", "--kind", "bpe", "--corpus", "{f}",
         "--vocab-size", "100", "--out", "{out}"], "input.txt", "holds no text", None, b""),
    Case("tok-blank", "tokenizer train", "only blank lines", ["tokenizer", "train", "--kind", "char", "--corpus", "{f}",
         "--vocab-size", "100", "--out", "{out}"], "input.txt", "holds no text", None, BLANK),
    Case("tok-long-line", "tokenizer train", "one 50 MB line", ["tokenizer", "train", "--kind", "bpe", "--corpus",
         "{long}", "--vocab-size", "100", "--out", "{out}"], "long.txt", "one paragraph per line", 1),
    Case("tok-missing", "tokenizer train", "a corpus file that does not exist", ["tokenizer", "train", "--kind", "bpe",
         "--corpus", "{f}", "--vocab-size", "100", "--out", "{out}"], "input.txt", "not found"),
    Case("tok-out-file", "tokenizer train", "--out is an existing file", ["tokenizer", "train", "--kind", "bpe",
         "--corpus", "{corpus}", "--vocab-size", "100", "--out", "{f}"], "input.txt", "not a directory", None,
         b"a file"),
    Case("tok-out-readonly", "tokenizer train", "--out in a read-only directory", ["tokenizer", "train", "--kind",
         "bpe", "--corpus", "{corpus}", "--vocab-size", "100", "--out", "{readonly}/tok"], "readonly",
         "not writable"),
    # pretrain
    Case("pre-latin1", "pretrain", "Latin-1 corpus", [*PRE, "--corpus", "{f}"], "input.txt", "not UTF-8", 3, LATIN1,
         fix=CLEAN_TEXT * 40),
    Case("pre-nul", "pretrain", "a NUL byte (a UTF-16 file)", [*PRE, "--corpus", "{f}"], "input.txt", "NUL byte", 1,
         "one line\n".encode("utf-16")),
    Case("pre-blank", "pretrain", "only blank lines", [*PRE, "--corpus", "{f}"], "input.txt", "holds no text", None,
         BLANK),
    Case("pre-long-line", "pretrain", "one 50 MB line", [*PRE, "--corpus", "{long}"], "long.txt",
         "one paragraph per line", 1),
    Case("pre-unknown-model", "pretrain", "an unknown --model", ["pretrain", "--model", "bertt", "--corpus", "{corpus}",
         "--out", "{out}"], "", "unknown model 'bertt'"),
    Case("pre-unknown-size", "pretrain", "an unknown --size", ["pretrain", "--model", "bert", "--size", "huge",
         "--corpus", "{corpus}", "--out", "{out}"], "", "huge"),
    Case("pre-steps-0", "pretrain", "--steps 0", [*PRE, "--corpus", "{corpus}", "--steps", "0"], "",
         "steps must be >= 1"),
    Case("pre-steps-negative", "pretrain", "--steps -3", [*PRE, "--corpus", "{corpus}", "--steps", "-3"], "",
         "steps must be >= 1"),
    Case("pre-seq-len", "pretrain", "--seq-len above the model's positions", ["pretrain", "--init", "{bert}",
         "--corpus", "{corpus}", "--out", "{out}", "--seq-len", "100"], "bert", "exceeds the model's max_positions 64"),
    Case("pre-toml-table", "pretrain", "a TOML with an unknown table", [*PRE, "--corpus", "{corpus}", "--config",
         "{f}"], "c.toml", "unknown table(s) modle", None, b"[modle]\nhidden_size = 64\n", "c.toml"),
    Case("pre-toml-key", "pretrain", "a TOML with an unknown key", [*PRE, "--corpus", "{corpus}", "--config", "{f}"],
         "c.toml", "unknown config key(s) num_layer", 3, b"[model]\nhidden_size = 64\nnum_layer = 3\n", "c.toml"),
    Case("pre-toml-invalid", "pretrain", "a file that is not TOML", [*PRE, "--corpus", "{corpus}", "--config", "{f}"],
         "c.toml", "not valid TOML", 2, b"[model]\nhidden_size = = 64\n", "c.toml"),
    Case("pre-toml-stages", "pretrain", "ERNIE 2.0 stages where a later stage drops an earlier task",
         ["pretrain", "--model", "ernie2", "--out", "{out}", *SMALL_RUN, "--corpus", "{corpus}", "--config", "{f}"],
         "c.toml", "stage 2 drops knowledge", 2, b'[data]\nstages = [["knowledge"], ["reorder"]]\n', "c.toml",
         fix=b'[data]\nstages = [["knowledge"], ["knowledge", "reorder"]]\n'),
    Case("pre-vocab-too-big", "pretrain", "a tokenizer larger than the model's embedding", [*PRE, "--corpus",
         "{corpus}", "--tokenizer", "{bert}", "--config", "{f}"], "bert", "has only 100 rows", None,
         b"[model]\nvocab_size = 100\n", "c.toml"),
    Case("pre-tokenizer-json", "pretrain", "a tokenizer.json that is not a tokenizer", [*PRE, "--corpus", "{corpus}",
         "--tokenizer", "{f}"], "tokenizer.json", "cannot read tokenizer", None, b'{"model": 3}', "tokenizer.json"),
    Case("pre-init-bin", "pretrain", "--init a directory with only pytorch_model.bin", ["pretrain", "--init", "{f}",
         "--corpus", "{corpus}", "--out", "{out}", "--steps", "1", "--seq-len", "32"], "model", "weights_only=True",
         model="bin"),
    Case("pre-init-truncated", "pretrain", "--init with a truncated model.safetensors", ["pretrain", "--init", "{f}",
         "--corpus", "{corpus}", "--out", "{out}", "--steps", "1", "--seq-len", "32"], "model.safetensors",
         "truncated", model="truncated"),
    Case("pre-out-file", "pretrain", "--out is an existing file", [*PRE, "--corpus", "{corpus}", "--out", "{f}"],
         "input.txt", "not a directory", None, b"a file"),
    # finetune
    Case("ft-jsonl-bad-line", "finetune", "JSONL with a bad line in the middle", [*FT, "--train", "{f}", "--dev",
         "{f}"], "train.jsonl", "not valid JSON", 3,
         jsonl('{"text": "a", "label": "x"}', '{"text": "b", "label": "y"}', '{"text": "c", "label": ',
               '{"text": "d", "label": "x"}'), "train.jsonl",
         fix=jsonl('{"text": "a", "label": "x"}', '{"text": "b", "label": "y"}', '{"text": "c", "label": "x"}',
                   '{"text": "d", "label": "x"}')),
    Case("ft-label-types", "finetune", "a label that is a number on one line, a string on another", [*FT, "--train",
         "{f}", "--dev", "{f}"], "train.jsonl", "label '1' is a number", 2,
         jsonl('{"text": "a", "label": "1"}', '{"text": "b", "label": 1}', '{"text": "c", "label": "0"}'),
         "train.jsonl"),
    Case("ft-missing-text", "finetune", "a missing text field", [*FT, "--train", "{f}", "--dev", "{f}"], "train.jsonl",
         "missing field 'text'", 2, jsonl('{"text": "a", "label": "x"}', '{"txt": "b", "label": "y"}'),
         "train.jsonl"),
    Case("ft-csv-column", "finetune", "CSV with a missing column", [*FT, "--train", "{f}", "--dev", "{f}"],
         "train.csv", "missing field 'label'", 2, b"text\nhello\nworld\n", "train.csv"),
    Case("ft-csv-ragged", "finetune", "CSV with a ragged row", [*FT, "--train", "{f}", "--dev", "{f}"], "train.csv",
         "a row of 3 fields under a header of 2", 3, b"text,label\nhello,x\nworld,y,extra\n", "train.csv"),
    Case("ft-conll-columns", "finetune", "CoNLL with three columns", [*FT[:4], "tag", *FT[5:], "--train", "{f}",
         "--dev", "{f}"], "train.txt", "found 3 column(s)", 1, b"The\tDT\tO\ncat\tNN\tO\n\n", "train.txt"),
    Case("ft-conll-bio", "finetune", "CoNLL tags that are not BIO (I- after O)", [*FT[:4], "tag", *FT[5:], "--train",
         "{f}", "--dev", "{f}"], "train.txt", "I-PER follows O", 4, b"John\tB-PER\nSmith\tI-PER\nsaw\tO\nMary\tI-PER\n\n",
         "train.txt"),
    Case("ft-conll-tag", "finetune", "CoNLL with a tag outside BIO in a BIO file", [*FT[:4], "tag", *FT[5:], "--train",
         "{f}", "--dev", "{f}"], "train.txt", "'VERB' is not O, B-X or I-X", 3, b"\nJohn\tB-PER\nsaw\tVERB\n\n",
         "train.txt"),
    Case("ft-squad-answer", "finetune", "SQuAD answers not in the context", [*FT[:4], "qa", *FT[5:], "--train", "{f}",
         "--dev", "{f}"], "train.json", "is not at answer_start 4", None, SQUAD_BAD, "train.json"),
    Case("ft-max-length", "finetune", "--max-length above the model's positions", [*FT, "--train", "{f}", "--dev",
         "{f}", "--max-length", "100"], "bert", "exceeds the model's 64 positions", None, JSONL, "train.jsonl"),
    Case("ft-model-bin", "finetune", "a model directory with only pytorch_model.bin", ["finetune", "--model", "{f}",
         "--task", "classify", "--train", "{corpus}.jsonl", "--dev", "{corpus}.jsonl", "--out", "{out}"], "model",
         "weights_only=True", model="bin"),
    Case("ft-model-config", "finetune", "a config.json that is not JSON", ["finetune", "--model", "{f}", "--task",
         "classify", "--train", "{corpus}.jsonl", "--dev", "{corpus}.jsonl", "--out", "{out}"], "config.json", "not valid JSON", 1,
         model="config"),
    Case("ft-latin1", "finetune", "Latin-1 training file", [*FT, "--train", "{f}", "--dev", "{f}"], "train.jsonl",
         "not UTF-8", 2, '{"text": "a", "label": "x"}\n{"text": "caf\xe9", "label": "y"}\n'.encode("latin-1"),
         "train.jsonl"),
    Case("ft-nul", "finetune", "a NUL byte", [*FT, "--train", "{f}", "--dev", "{f}"], "train.jsonl", "NUL byte", 2,
         b'{"text": "a", "label": "x"}\n{"text": "b\x00", "label": "y"}\n', "train.jsonl"),
    Case("ft-empty", "finetune", "an empty training file", [*FT, "--train", "{f}", "--dev", "{f}"], "train.jsonl",
         "no examples", None, b"", "train.jsonl"),
    Case("ft-one-label", "finetune", "training data with one label", [*FT, "--train", "{f}", "--dev", "{f}"],
         "train.jsonl", "only 1 distinct label", None, jsonl('{"text": "a", "label": "x"}', '{"text": "b", "label": "x"}'),
         "train.jsonl"),
    Case("ft-unknown-label", "finetune", "a dev label the training data lack", [*FT, "--train", "{corpus}.jsonl",
         "--dev", "{f}"], "dev.jsonl", "label 'gospel' is not one the model was trained for", 2,
         jsonl('{"text": "a", "label": "law"}', '{"text": "b", "label": "gospel"}'), "dev.jsonl"),
    Case("ft-out-file", "finetune", "--out is an existing file", [*FT, "--train", "{corpus}.jsonl", "--dev",
         "{corpus}.jsonl", "--out", "{f}"], "input.txt", "not a directory", None, b"a file"),
    # evaluate, predict
    Case("eval-not-finetuned", "evaluate", "a model that has no head", ["evaluate", "--model", "{bert}", "--data",
         "{corpus}.jsonl"], "bert", "no head.json"),
    Case("eval-bad-json", "evaluate", "JSONL with a bad line", ["evaluate", "--model", "{cls}", "--data", "{f}"],
         "data.jsonl", "not valid JSON", 2, jsonl('{"text": "a", "label": "law"}', "{oops}"), "data.jsonl"),
    Case("eval-head-json", "evaluate", "a head.json that is not JSON", ["evaluate", "--model", "{f}", "--data",
         "{corpus}.jsonl"], "head.json", "not valid JSON", 1, model="head"),
    Case("pred-missing", "predict", "a data file that does not exist", ["predict", "--model", "{cls}", "--data",
         "{f}"], "input.txt", "not found"),
    Case("pred-latin1", "predict", "Latin-1 data", ["predict", "--model", "{cls}", "--data", "{f}"], "data.jsonl",
         "not UTF-8", 1, '{"text": "caf\xe9"}\n'.encode("latin-1"), "data.jsonl"),
    Case("pred-truncated-head", "predict", "a truncated head.safetensors", ["predict", "--model", "{f}", "--data",
         "{corpus}.jsonl"], "head.safetensors", "truncated", model="head-truncated"),
    # embed, fill-mask, generate
    Case("embed-missing", "embed", "a model directory that does not exist", ["embed", "--model", "{f}", "--text",
         "x"], "input.txt", "model directory not found"),
    Case("embed-truncated", "embed", "a truncated model.safetensors", ["embed", "--model", "{f}", "--text", "x"],
         "model.safetensors", "truncated", model="truncated"),
    Case("fill-causal", "fill-mask", "a causal model", ["fill-mask", "--model", "{gpt}", "--text", "a [MASK]"], "gpt",
         "needs a masked LM"),
    Case("fill-config", "fill-mask", "a config.json that is not JSON", ["fill-mask", "--model", "{f}", "--text",
         "a [MASK]"], "config.json", "not valid JSON", 1, model="config"),
    Case("gen-masked", "generate", "a masked model", ["generate", "--model", "{bert}", "--prompt", "x"], "bert",
         "needs a model that continues text left to right"),
    Case("gen-bin", "generate", "a model directory with only pytorch_model.bin", ["generate", "--model", "{f}",
         "--prompt", "x"], "model", "convert it once to safetensors", model="bin"),
    # evaluate-lm
    Case("lm-latin1", "evaluate-lm", "Latin-1 text", ["evaluate-lm", "--model", "{gpt}", "--data", "{f}"],
         "input.txt", "not UTF-8", 3, LATIN1),
    Case("lm-long-line", "evaluate-lm", "one 50 MB line", ["evaluate-lm", "--model", "{gpt}", "--data", "{long}"],
         "long.txt", "one paragraph per line", 1),
    Case("lm-masked", "evaluate-lm", "a masked model", ["evaluate-lm", "--model", "{bert}", "--data", "{corpus}"],
         "bert", "needs a left-to-right LM"),
    # recipe
    Case("recipe-table", "recipe", "a TOML with an unknown table", ["recipe", "{f}", "--out", "{out}"], "r.toml",
         "unknown table(s) domian", None, b'[domian]\ncorpus = ["x.txt"]\n[finetune]\ntask = "classify"\n', "r.toml"),
    Case("recipe-key", "recipe", "an unknown key", ["recipe", "{f}", "--out", "{out}"], "r.toml",
         "unknown key(s) stepz", 4, b'[general]\nmodel = "bert"\ncorpus = ["x.txt"]\nstepz = 3\n[finetune]\n'
         b'task = "classify"\ntrain = "t"\ndev = "d"\n', "r.toml"),
    Case("recipe-invalid", "recipe", "a file that is not TOML", ["recipe", "{f}", "--out", "{out}"], "r.toml",
         "not valid TOML", 1, b"[general\n", "r.toml"),
    Case("recipe-corpus", "recipe", "a Latin-1 corpus in a stage", ["recipe", "{f}", "--out", "{out}"], "latin1.txt",
         "not UTF-8", 3, None, "r.toml", needs={"latin1.txt": LATIN1}),
]
# The recipe whose corpus is Latin-1 points at it.
CASES[-1].data = b'[general]\nmodel = "bert"\ncorpus = ["latin1.txt"]\nsteps = 1\n[finetune]\ntask = "classify"\n' \
                 b'train = "t.jsonl"\ndev = "t.jsonl"\n'


@pytest.fixture(scope="module")
def env(tmp_path_factory, kjv_head):
    """Tiny random-weight BERT and GPT directories, a classifier on the BERT, a small corpus and task file,
    and one 50 MB line."""
    from plmkit.heads import HeadConfig, build, save_finetuned
    from plmkit.interop.hf import save_model
    from plmkit.models.bert import Bert, BertConfig
    from plmkit.models.gpt import Gpt, GptConfig
    from plmkit.tokenizers import train_tokenizer

    d = tmp_path_factory.mktemp("errors")
    corpus = shutil.copy(kjv_head(300), d / "corpus.txt")
    verses = [v for v in Path(corpus).read_text().splitlines() if v.strip()]
    Path(f"{corpus}.jsonl").write_text("".join(json.dumps({"text": v, "label": "law" if i % 2 else "epistle"}) + "\n"
                                               for i, v in enumerate(verses[:8])))
    torch.manual_seed(0)
    for name, kind, cls, config in (("bert", "wordpiece", Bert, BertConfig), ("gpt", "bpe", Gpt, GptConfig)):
        tok = train_tokenizer(kind, [corpus], 200, show_progress=False)
        save_model(cls(config(vocab_size=tok.vocab_size, **TINY)), d / name, tok)
    from plmkit import load, load_tokenizer

    head = build(load(d / "bert"), load_tokenizer(d / "bert"), HeadConfig(task="classify", labels=("epistle", "law"),
                                                                         max_length=32))
    save_finetuned(head, d / "cls")
    with open(d / "long.txt", "wb") as f:
        f.write(b"word " * (10 << 20) + b"\n")  # 50 MiB in one line
    readonly = d / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(readonly)], capture_output=True).returncode == 0
    yield {"dir": d, "corpus": str(corpus), "bert": str(d / "bert"), "gpt": str(d / "gpt"), "cls": str(d / "cls"),
           "long": str(d / "long.txt"), "readonly": str(readonly),
           "readonly_ok": os.geteuid() != 0 or immutable}
    if immutable:
        subprocess.run(["chattr", "-i", str(readonly)])
    readonly.chmod(0o755)


def _broken_model(kind: str, env: dict, dest: Path) -> None:
    """A copy of a fixture model with one thing wrong."""
    shutil.copytree(env["cls"] if kind.startswith("head") else env["bert"], dest)
    if kind == "bin":
        (dest / "model.safetensors").rename(dest / "pytorch_model.bin")
        (dest / "plmkit.json").unlink()
    elif kind == "truncated":
        data = (dest / "model.safetensors").read_bytes()
        (dest / "model.safetensors").write_bytes(data[:len(data) // 2])
    elif kind == "config":
        (dest / "plmkit.json").unlink()
        (dest / "config.json").write_text("{not json")
    elif kind == "head":
        (dest / "head.json").write_text("{not json")
    elif kind == "head-truncated":
        data = (dest / "head.safetensors").read_bytes()
        (dest / "head.safetensors").write_bytes(data[:len(data) // 2])


BLOCKING = ("train_log.jsonl", "eval.json", "checkpoints", "recipe.json", "train_summary.json")
MESSAGES: dict[str, str] = {}


def _normalize(message: str, tmp_root: Path) -> str:
    """The message without what changes with the machine or other parts of plmkit: the temporary directories
    in its paths, lists of the known members or keys, and the wording of a library's own error."""
    message = re.sub(re.escape(str(tmp_root)) + r"/[^/\s']+/", "", message)
    message = re.sub(r"(known: )[^;)]*", r"\1…", message)
    return re.sub(r"(cannot read tokenizer|truncated or damaged\?\)): .*", r"\1: …", message)


def run(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of the command from its error on (progress bars may come before it)."""
    capsys.readouterr()
    code = main(["-q", *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err[err.find("plmkit: error: "):].strip() if "plmkit: error: " in err else err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, env, tmp_path, capsys):
    if case.argv and "{readonly}" in " ".join(case.argv) and not env["readonly_ok"]:
        pytest.skip("no read-only directory can be made here (root without chattr)")
    f = tmp_path / (case.fname if not case.model else "model")
    if case.model:
        _broken_model(case.model, env, f)
    elif case.data is not None:
        f.write_bytes(case.data)
    for name, data in case.needs.items():
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "out"
    argv = [a.format(f=f, out=out, **{k: v for k, v in env.items() if isinstance(v, str)}) for a in case.argv]
    code, err = run(argv, capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("plmkit: error: "), err
    where = f"{case.names}:{case.line}: " if case.line else case.names
    assert where in err and case.expect in err, err
    MESSAGES[case.id] = _normalize(err[len("plmkit: error: "):], tmp_path.parent)
    if out.is_dir():
        assert not [n for n in BLOCKING if (out / n).exists()], list(out.iterdir())
    if case.fix is not None:
        f.write_bytes(case.fix)
        assert run(argv, capsys)[0] == 0


# --- accepted: read as the clean file ------------------------------------------------------------------

ACCEPTED = [
    ("corpus", "a UTF-8 byte-order mark", lambda b: b"\xef\xbb\xbf" + b),
    ("corpus", "CRLF line ends", lambda b: b.replace(b"\n", b"\r\n")),
    ("corpus", "lone CR line ends", lambda b: b.replace(b"\n", b"\r")),
    ("JSONL", "a UTF-8 byte-order mark", lambda b: b"\xef\xbb\xbf" + b),
    ("JSONL", "CRLF line ends", lambda b: b.replace(b"\n", b"\r\n")),
    ("JSONL", "lone CR line ends", lambda b: b.replace(b"\n", b"\r")),
    ("CSV", "a UTF-8 byte-order mark", lambda b: b"\xef\xbb\xbf" + b),
    ("CSV", "CRLF line ends", lambda b: b.replace(b"\n", b"\r\n")),
    ("CoNLL", "a UTF-8 byte-order mark and CRLF", lambda b: b"\xef\xbb\xbf" + b.replace(b"\n", b"\r\n")),
    ("TOML", "a UTF-8 byte-order mark and CRLF", lambda b: b"\xef\xbb\xbf" + b.replace(b"\n", b"\r\n")),
]
CLEAN = {"corpus": CLEAN_TEXT * 10, "JSONL": JSONL, "CSV": b"text,label\nin the beginning,law\ngrace be,epistle\n",
         "CoNLL": b"John\tB-PER\nsaw\tO\n\nMary\tB-PER\n\n", "TOML": b"[model]\nhidden_size = 64\n[train]\nlr = 0.01\n"}


def _read(fmt: str, path: Path):
    from plmkit.data.shards import iter_lines
    from plmkit.data.tasks import read_task
    from plmkit.tokenizers import train_tokenizer
    from plmkit.workflows.pretrain import read_toml

    if fmt == "corpus":
        return list(iter_lines(path)), train_tokenizer("bpe", [path], 120, show_progress=False).backend.to_str()
    if fmt == "TOML":
        return read_toml(path)
    suffix = {"JSONL": ".jsonl", "CSV": ".csv", "CoNLL": ".txt"}[fmt]
    return read_task(path.rename(path.with_suffix(suffix)), "tag" if fmt == "CoNLL" else "classify")


@pytest.mark.parametrize("fmt, what, change", ACCEPTED, ids=[f"{f}-{w}" for f, w, _ in ACCEPTED])
def test_accepted_reads_as_the_clean_file(fmt, what, change, tmp_path):
    clean, variant = tmp_path / "clean", tmp_path / "variant"
    clean.write_bytes(CLEAN[fmt])
    variant.write_bytes(change(CLEAN[fmt]))
    assert _read(fmt, variant) == _read(fmt, clean)


# --- docs/errors.md ------------------------------------------------------------------------------------


def render() -> str:
    rows = ["# What plmkit refuses, and what it accepts", "",
            "Generated by tests/test_errors.py from its tables (`PLMKIT_WRITE_DOCS=1 python -m pytest "
            "tests/test_errors.py` rewrites it). Every refusal exits with code 2 and prints one line, `plmkit: error: "
            "` and the message below, which names the file (and line); it leaves nothing in --out that stops the same "
            "command once the input is fixed.", "", "| command | input | message |", "|---|---|---|"]
    for c in CASES:
        message = MESSAGES[c.id].replace("|", "\\|").replace("<", "&lt;")
        rows.append(f"| `{c.command}` | {c.input} | {message} |")
    rows += ["", "Accepted, and read exactly as the same file without it:", "", "| file | variant |", "|---|---|"]
    rows += [f"| {fmt} | {what} |" for fmt, what, _ in ACCEPTED]
    return "\n".join(rows) + "\n"


def test_docs_errors_md_is_generated_from_the_tables():
    if set(MESSAGES) != {c.id for c in CASES}:
        pytest.skip("needs every case of the table to have run")
    text = render()
    if os.environ.get("PLMKIT_WRITE_DOCS"):
        DOCS.parent.mkdir(exist_ok=True)
        DOCS.write_text(text)
    assert DOCS.is_file() and DOCS.read_text() == text, "docs/errors.md is stale: rerun with PLMKIT_WRITE_DOCS=1"


def test_the_table_covers_every_command_users_feed_files_to():
    assert len(CASES) >= 40
    assert {c.command for c in CASES} == {"tokenizer train", "pretrain", "finetune", "evaluate", "predict", "embed",
                                          "fill-mask", "generate", "evaluate-lm", "recipe"}
