"""Files that survive a kill at any moment, and the named points where tests kill a run.

Every file a later run reads (a resumed run, `plmkit.load`, the recipe deciding which stage is finished) is
written under a temporary name beside its final one and renamed into place: a rename within a directory is
atomic on POSIX, so a reader sees the old file, the new one, or none, never half of one. A directory that
must be whole (a tokenizer, the token shards) is built under a temporary name and swapped in the same way.
A kill leaves at most temporary names behind, which `remove_stale` clears before the next run writes.

`fault(point)` lets a test kill the process with SIGKILL right after a named point: with
`PLMKIT_FAULT=checkpoint:20` the run dies the moment checkpoint 20 is complete, with
`PLMKIT_FAULT=write:run.json` after run.json's temporary file is written and before it is renamed, and with
`PLMKIT_FAULT=SIGINT@step:5` it gets the signal Ctrl-C sends, while step 5 ends. The points are listed in
FAULT_POINTS; the kill sweep in tests/test_robust.py visits them all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

from .errors import PlmkitError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

FAULT_ENV = "PLMKIT_FAULT"

# Where a run can be made to kill itself, in the order a pre-training run reaches them (N: a step number).
FAULT_POINTS = {
    "write:NAME": "the temporary file of NAME is written, not yet renamed",
    "tokenizer": "the tokenizer trained on the corpus is in place",
    "swap:NAME": "the old directory NAME (e.g. data, the shards) is moved aside, the new one not yet moved in",
    "shards": "the token shards are in place",
    "run": "run.json is written",
    "step:N": "optimizer step N is done, not yet logged",
    "log:N": "step N's line is in train_log.jsonl",
    "eval:N": "the evaluation after step N is done (fine-tuning)",
    "checkpoint:N": "checkpoint N is complete",
    "final": "the final model is saved, train_summary.json not yet written",
    "final-eval": "a fine-tuned model is saved and tested, eval.json not yet written",
    "stage:NAME": "a recipe stage is finished (general, domain, task, finetune-LABEL)",
}


def fault(point: str, n: int | str | None = None) -> None:
    """Kill this process (SIGKILL, no cleanup) when PLMKIT_FAULT names this point; `SIGNAL@point` sends that
    signal instead."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    sig, _, wanted = wanted.rpartition("@")
    if wanted == (point if n is None else f"{point}:{n}"):
        os.kill(os.getpid(), getattr(signal, sig) if sig else signal.SIGKILL)


def check_out_dir(out: str | os.PathLike) -> None:
    """An output directory must be a directory we can write to, or creatable: checked before any work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PlmkitError("exists and is not a directory; choose another --out", path=out)
    probe = out if out.exists() else next((p for p in out.absolute().parents if p.exists()), Path("."))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PlmkitError("is not writable; choose another --out", path=probe)


@contextlib.contextmanager
def exclusive(directory: Path, what: str) -> Iterator[None]:
    """Hold `directory`/.lock while the block runs: a second process asking for it fails at once instead of
    writing the same files (no lock where the platform has no flock)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PlmkitError(f"another {what} is running in this directory; wait for it to end or choose "
                                  "another --out", path=directory) from None
        yield


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (a directory's entries are flushed separately)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write `data` (text is UTF-8) to `path` through a temporary file in the same directory and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    fault("write", path.name)
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """For writers that take a file name (safetensors, matplotlib): yields a temporary path to write, renamed
    to `path` when the block ends without an exception, deleted otherwise."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        fault("write", path.name)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def building_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary directory beside `final`; when the block succeeds it replaces `final`
    (see `replace_dir`), when it fails it is deleted and `final` is left as it was."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(new: Path, final: Path) -> None:
    """Move the finished directory `new` to `final`, replacing what is there. Between the two renames no
    `final` exists (a reader rebuilds it) and the old one waits under a temporary name for `remove_stale`."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        fault("swap", final.name)
        new.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(final)


def remove_stale(directory: str | os.PathLike) -> None:
    """Delete the temporary files and directories killed writers left in `directory` (call only when no
    other process writes there)."""
    directory = Path(directory)
    if directory.is_dir():
        for p in directory.iterdir():
            if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name):
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
