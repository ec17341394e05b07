"""`plmkit bench data`: corpus → token ids with plmkit (`build_shards`) and with Hugging Face `datasets`
(`load_dataset("text")` + `.map(batched=True)`), with the same fast tokenizer, on the corpus and on a copy
`scale` times larger.

Each side runs in a fresh process of its own, so its peak resident memory is its alone (the peak of the
largest process: the side's main process or one of its workers, from `getrusage`). Both sides get the
same number of worker processes: `build_shards(num_workers=W)` and `.map(num_proc=W)`; `build_shards`
starts at most one per shard (64 MB of input), so it may use fewer, and both report what they used.
The `datasets` side wraps the same tokenizer.json in transformers' `PreTrainedTokenizerFast` and keeps only
`input_ids` (no attention mask or token types), so both produce the same ids; its cache lives in the
side's temporary directory and is deleted with it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import PlmkitError

SIDES = ("plmkit", "datasets")


def bench_data(corpus: str | os.PathLike, scale: int = 10, workers: int = 2, tokenizer: str | None = None,
               vocab_size: int = 8000, rounds: int = 1) -> dict[str, Any]:
    """Tokens/s and peak RSS of both sides on `corpus` and on it repeated `scale` times; returns the
    measurements. Without `tokenizer`, a WordPiece tokenizer (`vocab_size`) is trained on the corpus
    first, as `plmkit pretrain` does; training is not timed. With `rounds` > 1 each side runs that many
    times per corpus, alternating, and the fastest run counts."""
    try:
        import datasets  # noqa: F401  (checked here, used in the child process)
        import transformers  # noqa: F401
    except ImportError:
        raise PlmkitError("the data benchmark needs `datasets` and `transformers`: "
                          "pip install 'plmkit[bench]'") from None
    corpus = Path(corpus)
    if not corpus.is_file():
        raise PlmkitError("corpus file not found", path=corpus)
    if scale < 1 or workers < 1 or rounds < 1:
        raise PlmkitError("--scale, --workers and --rounds must be at least 1")
    with tempfile.TemporaryDirectory(prefix="plmkit-bench-data-") as tmp:
        tmp = Path(tmp)
        tok_dir = _tokenizer(corpus, tokenizer, vocab_size, tmp / "tokenizer")
        corpora = {1: corpus}
        if scale > 1:
            corpora[scale] = _repeat(corpus, scale, tmp / f"{corpus.stem}-x{scale}{corpus.suffix}")
        runs = []
        for times, path in corpora.items():
            best: dict[str, dict] = {}
            for _ in range(rounds):
                for side in SIDES:
                    r = _run_side(side, path, tok_dir, workers, tmp)
                    rss = max(r["peak_rss_mb"], best.get(side, r)["peak_rss_mb"])  # the highest of all runs
                    if side not in best or r["seconds"] < best[side]["seconds"]:
                        best[side] = r
                    best[side]["peak_rss_mb"] = rss
            ours, peer = best["plmkit"], best["datasets"]
            runs.append({"scale": times, "bytes": path.stat().st_size, "tokens": ours["tokens"],
                         "peer_tokens": peer["tokens"], "tokens_per_s": ours["tokens"] / ours["seconds"],
                         "peer_tokens_per_s": peer["tokens"] / peer["seconds"],
                         "ratio": peer["seconds"] / ours["seconds"] * ours["tokens"] / max(peer["tokens"], 1),
                         "peak_rss_mb": ours["peak_rss_mb"], "peer_peak_rss_mb": peer["peak_rss_mb"],
                         "processes": ours["processes"], "peer_processes": peer["processes"]})
    first, last = runs[0], runs[-1]
    return {"corpus": str(corpus), "tokenizer": tokenizer or f"wordpiece {vocab_size} trained on the corpus",
            "workers": workers, "scale": scale, "peer": f"datasets {_version('datasets')}", "runs": runs,
            "tokens_per_s": first["tokens_per_s"], "peer_tokens_per_s": first["peer_tokens_per_s"],
            "ratio": first["ratio"], "peak_rss_mb": first["peak_rss_mb"], "peer_peak_rss_mb": first["peer_peak_rss_mb"],
            "rss_growth": last["peak_rss_mb"] / first["peak_rss_mb"],
            "peer_rss_growth": last["peer_peak_rss_mb"] / first["peer_peak_rss_mb"]}


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _tokenizer(corpus: Path, given: str | None, vocab_size: int, out: Path) -> Path:
    """A directory holding tokenizer.json + tokenizer_config.json, which both sides load."""
    from ..tokenizers import load_tokenizer, train_tokenizer

    if given is None:
        train_tokenizer("wordpiece", [corpus], vocab_size, out_dir=out, show_progress=False)
    else:
        load_tokenizer(given).save(out)  # any format plmkit reads, written as tokenizer.json for both sides
    return out


def _repeat(corpus: Path, times: int, out: Path) -> Path:
    """The corpus `times` over, one copy after another (a line break between copies)."""
    with open(corpus, "rb") as f:
        data = f.read()
    if not data.endswith(b"\n"):
        data += b"\n"
    with open(out, "wb") as f:
        for _ in range(times):
            f.write(data)
    return out


def _run_side(side: str, corpus: Path, tok_dir: Path, workers: int, tmp: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=tmp))
    try:
        p = subprocess.run([sys.executable, "-m", "plmkit.bench.data", side, str(corpus), str(tok_dir), str(work),
                            str(workers)], capture_output=True, text=True,
                           env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                                "HF_DATASETS_CACHE": str(work / "cache"), "HF_HOME": str(work / "hf")})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PlmkitError(f"the {side} side failed: {last}", path=corpus)
    return json.loads(p.stdout.strip().splitlines()[-1])


def _peak_rss_mb() -> float:
    """Largest peak resident set of this process and its finished children, in MiB.

    This process's own peak is VmHWM where Linux has it: its `ru_maxrss` would also count the memory of
    the process that started it (the kernel carries the high-water mark across fork and exec). Its
    children were started by this process, so theirs count only what this side held."""
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            own = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    return max(peak, own) / 2**20


def _plmkit_side(corpus: str, tok_dir: str, work: str, workers: int) -> dict:
    from ..data import build_shards
    from ..tokenizers import load_tokenizer

    tokenizer = load_tokenizer(tok_dir)
    t = time.perf_counter()
    meta = build_shards([corpus], tokenizer, Path(work) / "shards", num_workers=workers, show_progress=False)
    seconds = time.perf_counter() - t
    rss = _peak_rss_mb()
    # Every document ends with one doc-sep token; the rest are the text's own tokens.
    return {"tokens": meta["n_tokens"] - meta["n_docs"], "seconds": seconds, "peak_rss_mb": rss,
            "processes": min(workers, len(meta["shards"]))}


def _datasets_side(corpus: str, tok_dir: str, work: str, workers: int) -> dict:
    import datasets
    import pyarrow.compute as pc
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(Path(tok_dir) / "tokenizer.json"))

    def tokenize(batch):
        return tokenizer(batch["text"], add_special_tokens=False, return_attention_mask=False,
                         return_token_type_ids=False)

    t = time.perf_counter()
    ds = datasets.load_dataset("text", data_files=corpus, split="train", cache_dir=str(Path(work) / "cache"))
    ds = ds.map(tokenize, batched=True, num_proc=workers if workers > 1 else None, remove_columns=["text"])
    seconds = time.perf_counter() - t
    rss = _peak_rss_mb()
    tokens = int(pc.sum(pc.list_value_length(ds.data.column("input_ids"))).as_py() or 0)
    return {"tokens": tokens, "seconds": seconds, "peak_rss_mb": rss, "processes": workers}


if __name__ == "__main__":  # one side, in its own process: SIDE CORPUS TOKENIZER_DIR WORK_DIR WORKERS
    side, corpus_path, tok, work_dir, n = sys.argv[1:6]
    run = _plmkit_side if side == "plmkit" else _datasets_side
    print(json.dumps(run(corpus_path, tok, work_dir, int(n))))
