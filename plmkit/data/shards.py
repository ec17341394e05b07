"""Plain-text corpora -> pre-tokenized shards on disk, and `TokenCorpus` to read them with O(1) memory.

Layout of a shard directory (all offsets int64, token ids uint16 or uint32):
  meta.json           format, dtype, counts, the shard list, sources, tokenizer hash
  tokens-XXXXX.bin    the shard's token ids; the last line of every document ends with the doc-sep token
  lines-XXXXX.npy     (n_lines + 1,) start of each line in the shard's tokens, then the end
  docs-XXXXX.npy      (n_docs + 1,) first line of each document starting in the shard, then n_lines;
                      docs[0] > 0 when the shard opens in the middle of a document (a huge one)

A shard is the tokens of one byte range of one input file, cut where possible after a blank line;
the ranges depend only on the files, never on the number of workers, so the output is identical for
any `num_workers`.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import shutil
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..durable import replace_dir
from ..errors import PlmkitError

FORMAT = 1
_SEARCH_BYTES = 1 << 20  # how far past a cut point to look for a blank line before cutting mid-document


MAX_LINE_BYTES = 10 << 20  # a paragraph (or a document) per line; longer is a file that is not line-structured


def iter_lines(path: str | os.PathLike, start: int = 0, end: int | None = None) -> Iterator[str]:
    """Stream the lines (without the line end) of a UTF-8 file, or of a byte range of it.

    A UTF-8 byte-order mark at the start is skipped; CRLF and lone CR end a line as LF does.

    Args:
        path: the file.
        start, end: byte range; `start` must be at a line start; lines starting before `end` are read.

    Raises:
        PlmkitError: the file cannot be read, or a line is not UTF-8, holds a NUL byte or is longer than
            MAX_LINE_BYTES (the error names the line).
    """
    try:
        f = open(path, "rb")
    except OSError as e:
        raise PlmkitError(f"cannot read corpus file: {e.strerror}", path=path) from None

    def where(offset: int) -> int:
        # Count lines only on this rare path, so a byte range need not know its first line number.
        f.seek(0)
        return sum(f.read(min(1 << 20, start - i)).count(b"\n") for i in range(0, start, 1 << 20)) + offset + 1

    with f:
        f.seek(start)
        pos = start
        for offset, raw in enumerate(f):
            if end is not None and pos >= end:
                return
            size = len(raw)
            if pos == 0 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if len(raw) > MAX_LINE_BYTES:
                raise PlmkitError(f"a line of {len(raw):,} bytes; a corpus holds one paragraph per line (at most "
                                  f"{MAX_LINE_BYTES:,} bytes): split the text into lines", path=path,
                                  line=where(offset))
            if b"\0" in raw:
                raise PlmkitError("a NUL byte: not a UTF-8 text file (UTF-16? save it as UTF-8)", path=path,
                                  line=where(offset))
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise PlmkitError("not UTF-8 text", path=path, line=where(offset)) from None
            text = text.rstrip("\r\n")
            if "\r" in text:  # lone CRs (old Mac line ends) inside what LF delimits
                yield from text.split("\r")
            else:
                yield text
            pos += size


@dataclass(frozen=True)
class _Unit:
    """One byte range of one file: the work of one task and the content of one shard."""

    index: int
    path: str
    start: int
    end: int
    starts_doc: bool  # False when the previous unit was cut in the middle of a document
    ends_doc: bool


def _split_file(path: str, size: int, shard_bytes: int) -> list[tuple[int, int, bool]]:
    """Cut points (start, end, ends_doc) of a file: after the first blank line past each multiple of
    `shard_bytes`, or at the first line end past it when no blank line comes within _SEARCH_BYTES."""
    ranges, start = [], 0
    with open(path, "rb") as f:
        while size - start > shard_bytes:
            f.seek(start + shard_bytes)
            f.readline()  # finish the line the cut point falls in
            line_cut, cut = f.tell(), None
            while f.tell() < min(size, line_cut + _SEARCH_BYTES):
                if not f.readline().decode("utf-8", "replace").strip():
                    cut = f.tell()
                    break
            ends_doc = cut is not None
            cut = cut if ends_doc else line_cut
            if cut >= size:
                break
            ranges.append((start, cut, ends_doc))
            start = cut
    return ranges + [(start, size, True)]


def _encode_unit(unit: _Unit, tokenizer_json: str, dtype: str, doc_sep: int, batch_lines: int,
                 tmp: str) -> dict:
    """Tokenize one unit into part files `tmp/part-<index>.*`; returns its counts (or the error to raise).

    Runs in a worker process, so it takes the tokenizer as JSON and reports PlmkitError as data
    (exceptions lose their `path`/`line` when pickled back).
    """
    from tokenizers import Tokenizer as Backend

    backend = Backend.from_str(tokenizer_json)
    # The same ids as encode_batch without tracking character offsets: about 1.3x faster, where available.
    encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)
    line_starts, doc_starts = array("q"), array("q")  # shard-local offsets, bounded by the shard size
    n_tokens = n_content = 0
    part = Path(tmp) / f"part-{unit.index}"
    try:
        with open(part.with_suffix(".bin"), "wb") as out:

            def flush(texts: list[str], opens_doc: list[bool]) -> None:
                nonlocal n_tokens, n_content
                pieces = []  # token-id lists in stream order
                for ids, new_doc in zip(encode_batch(texts, add_special_tokens=False), opens_doc):
                    if new_doc:
                        if line_starts:  # the previous document's last line gets the separator
                            pieces.append((doc_sep,))
                            n_tokens += 1
                        doc_starts.append(len(line_starts))
                    line_starts.append(n_tokens)
                    pieces.append(ids.ids)
                    n_tokens += len(ids.ids)
                    n_content += len(ids.ids)
                out.write(np.fromiter(itertools.chain.from_iterable(pieces), dtype=dtype).tobytes())

            texts, opens_doc, new_doc = [], [], unit.starts_doc
            for line in iter_lines(unit.path, unit.start, unit.end):
                if not line.strip():
                    new_doc = True
                    continue
                texts.append(line)
                opens_doc.append(new_doc)
                new_doc = False
                if len(texts) == batch_lines:
                    flush(texts, opens_doc)
                    texts, opens_doc = [], []
            if texts:
                flush(texts, opens_doc)
            if unit.ends_doc and line_starts:
                out.write(np.array([doc_sep], dtype=dtype).tobytes())
                n_tokens += 1
    except PlmkitError as e:
        return {"error": (e.message, os.fspath(e.path) if e.path else None, e.line)}
    line_starts.append(n_tokens)
    doc_starts.append(len(line_starts) - 1)
    np.save(part.with_suffix(".lines.npy"), np.frombuffer(line_starts, dtype=np.int64))
    np.save(part.with_suffix(".docs.npy"), np.frombuffer(doc_starts, dtype=np.int64))
    return {"n_tokens": n_tokens, "n_content": n_content, "n_lines": len(line_starts) - 1,
            "n_docs": len(doc_starts) - 1, "bytes": unit.end - unit.start}


def _run(args: tuple) -> dict:
    return _encode_unit(*args)


def _share_cores(threads: int) -> None:
    """Give each worker its share of the cores: `encode_batch` runs a thread per core of its own."""
    os.environ["RAYON_NUM_THREADS"] = str(threads)  # read when the tokenizers thread pool starts


def build_shards(files: Iterable[str | os.PathLike], tokenizer, out_dir: str | os.PathLike,
                 num_workers: int | None = None, batch_lines: int = 1000, show_progress: bool = True,
                 shard_bytes: int = 64 << 20) -> dict:
    """Tokenize plain-text files into a shard directory, streaming, in parallel across processes.

    A document is a run of non-blank lines; blank (or whitespace-only) lines and file ends separate
    documents. `tokenizer.doc_sep_id` is appended after each document's last line.

    Args:
        files: UTF-8 text files, one paragraph or sentence per line.
        tokenizer: a plmkit Tokenizer.
        out_dir: the shard directory to create; a previous shard directory there is replaced.
        num_workers: processes tokenizing at once; default min(2, cpu count).
        batch_lines: lines per `encode_batch` call.
        show_progress: show a progress bar over the input bytes.
        shard_bytes: input bytes per shard (about 4 bytes of English text per token).

    Returns:
        The contents of meta.json.
    """
    files = [os.fspath(f) for f in files]
    if not files:
        raise PlmkitError("no corpus files given")
    for path in files:
        if not os.path.isfile(path):
            raise PlmkitError("corpus file not found", path=path)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "meta.json").is_file():
        raise PlmkitError("exists and is not a shard directory; refusing to overwrite it", path=out_dir)
    sizes = [os.path.getsize(p) for p in files]
    units = []
    for path, size in zip(files, sizes):
        starts_doc = True
        for start, end, ends_doc in _split_file(path, size, shard_bytes):
            units.append(_Unit(len(units), path, start, end, starts_doc, ends_doc))
            starts_doc = ends_doc
    dtype = "uint16" if tokenizer.vocab_size < 1 << 16 else "uint32"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent)
    try:
        tasks = [(u, tokenizer.backend.to_str(), dtype, tokenizer.doc_sep_id, batch_lines, tmp) for u in units]
        num_workers = min(num_workers or min(2, os.cpu_count() or 1), len(units))
        results = []
        with tqdm(total=sum(sizes), unit="B", unit_scale=True, desc="tokenizing",
                  disable=None if show_progress else True) as bar:  # None: off when stderr is no terminal
            if num_workers == 1:
                stream = map(_run, tasks)
            else:
                # spawn, not fork: a forked child cannot use the tokenizers thread pool of its parent
                threads = max(1, (os.cpu_count() or 1) // num_workers)
                pool = multiprocessing.get_context("spawn").Pool(num_workers, _share_cores, (threads,))
                stream = pool.imap(_run, tasks)
            try:
                for result in stream:
                    if "error" in result:
                        raise PlmkitError(*result["error"])
                    results.append(result)
                    bar.update(result["bytes"])
            finally:
                if num_workers > 1:
                    pool.terminate()
        if sum(r["n_content"] for r in results) == 0:
            raise PlmkitError(f"the corpus holds no text: {', '.join(files)}")
        meta = _finish(tmp, units, results, files, sizes, tokenizer, dtype)
        replace_dir(Path(tmp), out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _finish(tmp: str, units: list[_Unit], results: list[dict], files: list[str], sizes: list[int],
            tokenizer, dtype: str) -> dict:
    """Name the non-empty parts as numbered shards and write meta.json."""
    shards = []
    for unit, r in zip(units, results):
        part = Path(tmp) / f"part-{unit.index}"
        if r["n_lines"] == 0:
            for suffix in (".bin", ".lines.npy", ".docs.npy"):
                part.with_suffix(suffix).unlink()
            continue
        k = len(shards)
        names = {"tokens": f"tokens-{k:05d}.bin", "lines": f"lines-{k:05d}.npy", "docs": f"docs-{k:05d}.npy"}
        for suffix, key in ((".bin", "tokens"), (".lines.npy", "lines"), (".docs.npy", "docs")):
            part.with_suffix(suffix).rename(Path(tmp) / names[key])
        shards.append({**names, "n_tokens": r["n_tokens"], "n_lines": r["n_lines"], "n_docs": r["n_docs"],
                       "source": files.index(unit.path), "byte_range": [unit.start, unit.end]})
    meta = {
        "format": FORMAT, "dtype": dtype, "vocab_size": tokenizer.vocab_size,
        "doc_sep_id": tokenizer.doc_sep_id,
        "n_tokens": sum(s["n_tokens"] for s in shards), "n_lines": sum(s["n_lines"] for s in shards),
        "n_docs": sum(s["n_docs"] for s in shards), "shards": shards,
        "sources": [{"path": os.path.abspath(p), "bytes": b} for p, b in zip(files, sizes)],
        "tokenizer_sha256": tokenizer.sha256,
    }
    (Path(tmp) / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return meta


class TokenCorpus:
    """A shard directory as one token stream, memory-mapped lazily, read-only.

    Args:
        directory: what `build_shards` wrote.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.is_file():
            raise PlmkitError("not a shard directory (no meta.json); build one with build_shards",
                              path=self.directory)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta["format"] != FORMAT:
                raise PlmkitError(f"shard format {meta['format']} is not {FORMAT}", path=meta_path)
            self.dtype = np.dtype(meta["dtype"])
            shards = meta["shards"]
            counts = np.array([[s["n_tokens"], s["n_lines"], s["n_docs"]] for s in shards], dtype=np.int64)
        except (ValueError, KeyError, TypeError) as e:
            raise PlmkitError(f"garbled meta.json ({type(e).__name__}: {e})", path=meta_path) from None
        for s in shards:
            for key in ("tokens", "lines", "docs"):
                if not (self.directory / s[key]).is_file():
                    raise PlmkitError(f"shard file {s[key]} is missing", path=self.directory)
            size = (self.directory / s["tokens"]).stat().st_size
            if size != s["n_tokens"] * self.dtype.itemsize:
                raise PlmkitError(f"{s['tokens']} holds {size} bytes, meta.json says "
                                  f"{s['n_tokens']} tokens of {self.dtype}", path=self.directory)
        self.meta = meta
        self.vocab_size = meta["vocab_size"]
        # Global offsets where each shard starts, (n_shards + 1,) each: O(shards) memory, not O(corpus).
        zero = np.zeros((1, 3), dtype=np.int64)
        self._token_at, self._line_at, self._doc_at = np.concatenate([zero, counts.cumsum(0)]).T
        self.n_tokens, self.n_lines, self.n_docs = (int(x) for x in (self._token_at[-1], self._line_at[-1],
                                                                     self._doc_at[-1]))
        self._maps: dict[tuple[str, int], np.ndarray] = {}

    def __repr__(self) -> str:
        return (f"TokenCorpus({str(self.directory)!r}, n_tokens={self.n_tokens}, n_lines={self.n_lines}, "
                f"n_docs={self.n_docs})")

    def _array(self, key: str, k: int) -> np.ndarray:
        """Shard k's tokens, lines or docs array, mapped on first use."""
        if (key, k) not in self._maps:
            path = self.directory / self.meta["shards"][k][key]
            self._maps[key, k] = (np.memmap(path, dtype=self.dtype, mode="r") if key == "tokens"
                                  else np.load(path, mmap_mode="r"))
        return self._maps[key, k]

    def tokens(self, start: int, stop: int) -> np.ndarray:
        """Token ids [start, stop) of the whole stream, (stop - start,) int64; may span shards."""
        if not 0 <= start <= stop <= self.n_tokens:
            raise IndexError(f"token range [{start}, {stop}) outside [0, {self.n_tokens})")
        out = np.empty(stop - start, dtype=np.int64)
        k, pos = int(np.searchsorted(self._token_at, start, "right")) - 1, start
        while pos < stop:
            base = self._token_at[k]
            end = min(stop, self._token_at[k + 1])
            out[pos - start:end - start] = self._array("tokens", k)[pos - base:end - base]
            pos, k = end, k + 1
        return out

    def line_span(self, i: int) -> tuple[int, int]:
        """Global token offsets (start, stop) of line i; the doc-sep ends a document's last line."""
        if not 0 <= i < self.n_lines:
            raise IndexError(f"line {i} outside [0, {self.n_lines})")
        k = int(np.searchsorted(self._line_at, i, "right")) - 1
        lines, local, base = self._array("lines", k), i - self._line_at[k], self._token_at[k]
        return int(base + lines[local]), int(base + lines[local + 1])

    def line(self, i: int) -> np.ndarray:
        """Token ids of line i, int64."""
        return self.tokens(*self.line_span(i))

    def line_at(self, offset: int) -> int:
        """Index of the line holding global token `offset`."""
        if not 0 <= offset < self.n_tokens:
            raise IndexError(f"token {offset} outside [0, {self.n_tokens})")
        k = int(np.searchsorted(self._token_at, offset, "right")) - 1
        lines = self._array("lines", k)
        # "right" skips empty lines (start == next start) to the line that really holds the token
        return int(self._line_at[k] + np.searchsorted(lines[:-1], offset - self._token_at[k], "right") - 1)

    def doc_of_line(self, i: int) -> int:
        """Index of the document line i belongs to."""
        if not 0 <= i < self.n_lines:
            raise IndexError(f"line {i} outside [0, {self.n_lines})")
        k = int(np.searchsorted(self._line_at, i, "right")) - 1
        docs = self._array("docs", k)
        # -1 when the shard opens mid-document: the document began in an earlier shard
        return int(self._doc_at[k] + np.searchsorted(docs[:-1], i - self._line_at[k], "right") - 1)

    def doc_line_range(self, d: int) -> tuple[int, int]:
        """Global line indices (first, end) of document d."""
        if not 0 <= d < self.n_docs:
            raise IndexError(f"document {d} outside [0, {self.n_docs})")
        k = int(np.searchsorted(self._doc_at, d, "right")) - 1
        local = d - self._doc_at[k]
        first = int(self._line_at[k] + self._array("docs", k)[local])
        if d + 1 == self.n_docs:
            return first, self.n_lines
        # The next document may start in a later shard; shards without document starts lie between.
        j = int(np.searchsorted(self._doc_at, d + 1, "right")) - 1
        return first, int(self._line_at[j] + self._array("docs", j)[d + 1 - self._doc_at[j]])
