"""Pre-training examples cut from a `TokenCorpus`, and the step-indexed sampler that makes resume exact.

Every example is a pure function of (seed, index) and every batch a pure function of (seed, step), so a
resumed run needs only the step number to continue on the same data, and never re-reads the corpus.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..errors import PlmkitError
from .shards import TokenCorpus

log = logging.getLogger("plmkit")


class Windows:
    """Contiguous, non-overlapping windows over the packed token stream (CLM; MLM without NSP).

    Documents stay separated by the doc-sep token inside the stream; the last partial window is dropped
    so that no padding is ever needed.

    Args:
        corpus: the token stream.
        length: tokens per window.
    """

    def __init__(self, corpus: TokenCorpus, length: int):
        if length < 1:
            raise ValueError(f"window length must be positive, got {length}")
        self.corpus, self.length = corpus, length

    def __len__(self) -> int:
        return self.corpus.n_tokens // self.length

    def __getitem__(self, i: int) -> np.ndarray:
        """Window i, (length,) int64."""
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} outside [0, {len(self)})")
        return self.corpus.tokens(i * self.length, (i + 1) * self.length)


class Segments(Windows):
    """Consecutive segments of the token stream, each `stride` tokens after the previous, returned with their
    index so a recurrent objective can tell whether a segment continues the one before (Transformer-XL).

    With stride = length − 1 (causal LM), segment i's inputs are tokens [i·stride, (i + 1)·stride) and its
    targets the same range moved by one: the inputs of consecutive segments meet without gap or overlap.

    Args:
        corpus: the token stream.
        length: tokens per segment.
        stride: tokens from one segment's start to the next's, at most `length`.
    """

    def __init__(self, corpus: TokenCorpus, length: int, stride: int):
        super().__init__(corpus, length)
        if not 0 < stride <= length:
            raise ValueError(f"stride must be in (0, {length}], got {stride}")
        self.stride = stride

    def __len__(self) -> int:
        return max(0, (self.corpus.n_tokens - self.length) // self.stride + 1)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
        """(i, segment i as (length,) int64)."""
        if not 0 <= i < len(self):
            raise IndexError(f"segment {i} outside [0, {len(self)})")
        return i, self.corpus.tokens(i * self.stride, i * self.stride + self.length)


class Sentences:
    """Consecutive lines (sentences or paragraphs) of one document, up to `max_tokens` tokens in all, for
    objectives that reorder sentences (BART's permutation). Example i starts at the line holding token
    i × max_tokens and takes whole lines of its document while they fit (the first is cut if it alone is
    longer); the doc-sep token is dropped.

    Args:
        corpus: the token stream.
        max_tokens: the most tokens in an example.
    """

    def __init__(self, corpus: TokenCorpus, max_tokens: int):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        self.corpus, self.max_tokens = corpus, max_tokens

    def __len__(self) -> int:
        return max(1, self.corpus.n_tokens // self.max_tokens)

    def __getitem__(self, i: int) -> list[np.ndarray]:
        """Example i: its lines' token ids (int64), at least one non-empty."""
        if not 0 <= i < len(self):
            raise IndexError(f"example {i} outside [0, {len(self)})")
        c = self.corpus
        line = c.line_at(min(i * self.max_tokens, c.n_tokens - 1))
        end = c.doc_line_range(c.doc_of_line(line))[1]
        lines, n = [], 0
        while line < end and n < self.max_tokens:
            tokens = c.line(line)
            if line == end - 1:
                tokens = tokens[:-1]  # the doc-sep token
            if len(tokens) and (not lines or n + len(tokens) <= self.max_tokens):
                lines.append(tokens[:self.max_tokens - n])
                n += len(lines[-1])
            elif len(tokens):
                break
            line += 1
        if not lines:  # a document of one empty line: its doc-sep alone
            lines = [c.line(line - 1)[: self.max_tokens]]
        return lines


class SegmentPairs:
    """Sentence pairs (A, B, is_next) for BERT's next-sentence prediction, after create_pretraining_data.py.

    Example i starts at the line holding a random token of the i-th `max_tokens` chunk of the stream and
    takes consecutive lines of that document up to a target length; A is the first 1+ lines, B is the
    rest (is_next = 1) or, half the time, lines from a random other document (is_next = 0). A one-line
    chunk is split inside the line. The pair is then truncated to `max_tokens` as BERT does: one token
    at a time from the longer segment, from its front or back at random. Doc-sep tokens are dropped.

    Args:
        corpus: the token stream. With one document (a corpus without blank lines) a random B comes from a
            random place in that same document, as create_pretraining_data.py falls back to.
        max_tokens: the most tokens in A + B, e.g. max_seq_len - 3 to leave room for [CLS] A [SEP] B [SEP].
        seed: the examples are a pure function of (seed, i).
        short_seq_prob: how often the target length is drawn uniformly from [2, max_tokens] instead, so
            the model also sees short inputs like those of fine-tuning (BERT uses 0.1).
        random_next_prob: how often B comes from another document (BERT: 0.5; 0 keeps every B the real
            continuation, as sentence-order prediction needs).
    """

    def __init__(self, corpus: TokenCorpus, max_tokens: int, seed: int = 0, short_seq_prob: float = 0.1,
                 random_next_prob: float = 0.5):
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be at least 2 (one token per segment), got {max_tokens}")
        if corpus.n_docs < 2:
            log.warning("%s: one document (no blank lines): next-sentence negatives come from random places in "
                        "it; separate documents by a blank line for the usual other-document negatives",
                        corpus.directory)
        self.corpus, self.max_tokens, self.seed, self.short_seq_prob = corpus, max_tokens, seed, short_seq_prob
        self.random_next_prob = random_next_prob

    def __len__(self) -> int:
        return max(1, self.corpus.n_tokens // self.max_tokens)

    def _take(self, line: int, doc_end: int, target: int) -> list[np.ndarray]:
        """Non-empty lines from `line` on, within the document, until they hold `target` tokens."""
        lines, n = [], 0
        while line < doc_end and n < target:
            tokens = self.corpus.line(line)
            if line == doc_end - 1:
                tokens = tokens[:-1]  # the doc-sep token
            if len(tokens):
                lines.append(tokens)
                n += len(tokens)
            line += 1
        return lines

    def _chunk(self, rng: np.random.Generator, i: int, target: int) -> tuple[int, list[np.ndarray]]:
        """The document and its lines that example i starts from."""
        offset = min(i * self.max_tokens + int(rng.integers(self.max_tokens)), self.corpus.n_tokens - 1)
        line = self.corpus.line_at(offset)
        doc = self.corpus.doc_of_line(line)
        for _ in range(self.corpus.n_docs):
            first, end = self.corpus.doc_line_range(doc)
            # Begin a line early when the start is the document's last line, so A and B can be whole lines.
            chunk = self._take(max(first, min(line, end - 2)), end, target)
            if chunk:
                return doc, chunk
            doc = (doc + 1) % self.corpus.n_docs  # a document of empty lines: move on
            line = self.corpus.doc_line_range(doc)[0]
        raise PlmkitError("the corpus holds no tokens", path=self.corpus.directory)

    def _random_b(self, rng: np.random.Generator, doc: int, target: int) -> np.ndarray | None:
        """Up to `target` tokens from a random line on of a random document other than `doc`."""
        for _ in range(10):
            other = int(rng.integers(max(1, self.corpus.n_docs - 1)))
            other += other >= doc and self.corpus.n_docs > 1  # uniform over the other documents, if any
            first, end = self.corpus.doc_line_range(other)
            lines = self._take(int(rng.integers(first, end)), end, target) or self._take(first, end, target)
            if lines:
                return np.concatenate(lines)
        return None

    def _truncate(self, rng: np.random.Generator, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BERT's truncate_seq_pair in closed form: the same removals per segment and front/back odds."""
        excess = len(a) + len(b) - self.max_tokens
        if excess <= 0:
            return a, b
        gap = min(excess, abs(len(a) - len(b)))  # first the longer one alone, down to the other's length
        rest = excess - gap
        cut_a = (gap if len(a) > len(b) else 0) + rest // 2  # then alternately, b first on a tie
        cut_b = excess - cut_a
        out = []
        for seg, cut in ((a, cut_a), (b, cut_b)):
            front = int(rng.binomial(cut, 0.5))
            out.append(seg[front:len(seg) - (cut - front)])
        return out[0], out[1]

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Example i: segment A (int64), segment B (int64), and 1 if B follows A else 0."""
        if not 0 <= i < len(self):
            raise IndexError(f"example {i} outside [0, {len(self)})")
        rng = np.random.default_rng([self.seed, i])
        target = self.max_tokens
        if rng.random() < self.short_seq_prob:
            target = int(rng.integers(2, self.max_tokens + 1))
        doc, chunk = self._chunk(rng, i, target)
        split = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
        a = np.concatenate(chunk[:split])
        b = None
        # A single one-token line cannot be split in two, so it always takes a random B.
        if rng.random() < self.random_next_prob or (len(chunk) == 1 and len(a) == 1):
            b = self._random_b(rng, doc, max(1, target - len(a)))
        is_next = int(b is None)
        if is_next and len(chunk) > 1:
            b = np.concatenate(chunk[split:])
        elif is_next:
            if len(a) == 1:
                raise PlmkitError("the corpus is too small to build sentence pairs", path=self.corpus.directory)
            cut = int(rng.integers(1, len(a)))
            a, b = a[:cut], a[cut:]
        a, b = self._truncate(rng, a, b)
        return a, b, is_next


def pad_rows(rows, value: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id sequences → (B, T) long tensor right-padded with `value`, and the (B, T) mask of real tokens."""
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), value, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.as_tensor(np.asarray(r, dtype=np.int64))
        mask[i, :len(r)] = 1
    return ids, mask


class SentenceRuns:
    """Runs of `n` consecutive lines of one document, each line a sentence: the (previous, sentence, next)
    triples of skip-thought with n = 3, blocks of neighbouring sentences for quick-thought, single
    sentences for SimCSE with n = 1.

    Example i is the run starting at line i·n, moved back so that it ends inside its document; when that
    document has fewer than n lines, the next one that has n is used. Every example is a pure function
    of i and the corpus is never scanned, so memory is O(1) in its size (as for SegmentPairs).

    Args:
        corpus: the token stream; a corpus without blank lines is one document.
        n: lines per run.
        max_tokens: each line is cut to this many tokens; the doc-sep token that ends a document's last
            line is dropped, and a line with no tokens becomes the doc-sep token alone.
    """

    def __init__(self, corpus: TokenCorpus, n: int, max_tokens: int):
        if n < 1 or max_tokens < 1:
            raise ValueError(f"need n >= 1 and max_tokens >= 1, got {n}, {max_tokens}")
        if corpus.n_lines < n:
            raise PlmkitError(f"the corpus has {corpus.n_lines} lines; runs of {n} consecutive lines need more",
                              path=corpus.directory)
        self.corpus, self.n, self.max_tokens = corpus, n, max_tokens
        self.doc_sep = int(corpus.meta["doc_sep_id"])

    def __len__(self) -> int:
        return self.corpus.n_lines // self.n

    def _line(self, i: int) -> np.ndarray:
        tokens = self.corpus.line(i)
        if len(tokens) and tokens[-1] == self.doc_sep:
            tokens = tokens[:-1]
        return tokens[: self.max_tokens] if len(tokens) else np.array([self.doc_sep], dtype=np.int64)

    def __getitem__(self, i: int) -> list[np.ndarray]:
        """Run i: n token arrays (int64), consecutive lines of one document."""
        if not 0 <= i < len(self):
            raise IndexError(f"run {i} outside [0, {len(self)})")
        line = i * self.n
        doc = max(0, self.corpus.doc_of_line(line))
        for _ in range(self.corpus.n_docs):
            first, end = self.corpus.doc_line_range(doc)
            if end - first >= self.n:
                start = max(first, min(line, end - self.n))
                return [self._line(j) for j in range(start, start + self.n)]
            doc = (doc + 1) % self.corpus.n_docs
            line = self.corpus.doc_line_range(doc)[0]
        raise PlmkitError(f"no document has {self.n} lines; put more lines in a document (no blank lines between "
                          "sentences of one text)", path=self.corpus.directory)


class StepSampler:
    """This rank's example indices for any global step, without walking the steps before it.

    Epoch e visits the examples in the order `np.random.default_rng([seed, e]).permutation(n_examples)`;
    the global batch of step s is positions [s * B * W, (s + 1) * B * W) of the concatenated epochs
    (B = batch_size, W = world_size), so a batch may straddle two epochs; rank r takes the r-th slice.

    Args:
        n_examples: dataset length.
        batch_size: examples per rank per step.
        seed: shuffling seed.
        rank, world_size: this process's place among the data-parallel processes.
        shuffle: False visits examples in order (evaluation).
    """

    def __init__(self, n_examples: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True):
        if n_examples < 1 or batch_size < 1:
            raise ValueError(f"need n_examples >= 1 and batch_size >= 1, got {n_examples}, {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        self.n_examples, self.batch_size, self.seed = n_examples, batch_size, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self._orders: dict[int, np.ndarray] = {}  # the one or two epochs the last batch touched

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            order = (np.random.default_rng([self.seed, epoch]).permutation(self.n_examples) if self.shuffle
                     else np.arange(self.n_examples))
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = order
        return self._orders[epoch]

    def indices(self, step: int) -> list[int]:
        """Indices of this rank's `batch_size` examples at global step `step`."""
        start = (step * self.world_size + self.rank) * self.batch_size
        positions = np.arange(start, start + self.batch_size)
        epochs, within = np.divmod(positions, self.n_examples)
        return [int(self._order(int(e))[j]) for e, j in zip(epochs, within)]

    def epoch(self, step: int) -> float:
        """Epochs completed before global step `step`, fractional."""
        return step * self.batch_size * self.world_size / self.n_examples


class StreamSampler:
    """Each batch row reads one contiguous stream, segment after segment (Transformer-XL, Dai et al. 2019).

    The examples (consecutive segments of the corpus) are cut into S = batch_size × world_size streams of
    n = n_examples // S segments each; stream k holds examples k·n … (k + 1)·n − 1, and global step s gives
    row b of rank r the segment s mod n of stream r·B + b. Like StepSampler it is a pure function of the step,
    so a resumed run needs only the step number; there is nothing to shuffle, since the order is the point.
    The last n_examples mod S segments are never read.

    Args:
        n_examples: dataset length (consecutive segments).
        batch_size: rows (streams) per rank.
        rank, world_size: this process's place among the data-parallel processes.
    """

    def __init__(self, n_examples: int, batch_size: int, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        streams = batch_size * world_size
        if batch_size < 1 or n_examples < streams:
            raise PlmkitError(f"{n_examples} segments cannot fill {streams} streams (batch size {batch_size} × "
                              f"{world_size} processes); use a smaller batch or a larger corpus")
        self.n_examples, self.batch_size, self.rank, self.world_size = n_examples, batch_size, rank, world_size
        self.per_stream = n_examples // streams

    def indices(self, step: int) -> list[int]:
        """Indices of this rank's `batch_size` segments at global step `step`: one per stream."""
        first = self.rank * self.batch_size
        return [(first + b) * self.per_stream + step % self.per_stream for b in range(self.batch_size)]

    def epoch(self, step: int) -> float:
        """Passes over the streams completed before global step `step`, fractional."""
        return step / self.per_stream


class TaskMixSampler:
    """Batches drawn from several datasets laid end to end, each step's batch from one of them (multi-task
    training): the dataset of step s is drawn with `probabilities`, and within it the batches follow that
    dataset's own shuffled epochs (a StepSampler each). The draws for all `steps` are made up front from
    the seed, so the batch of any step is known without replaying the ones before it (exact resume).

    Args:
        sizes: examples in each dataset; dataset k's example j is index sum(sizes[:k]) + j.
        batch_size: examples per step.
        steps: how many steps to draw for.
        probabilities: of each dataset per step (summing to 1).
        seed: the draws' and the shuffles' seed.
    """

    def __init__(self, sizes: list[int], batch_size: int, steps: int, probabilities: list[float], seed: int = 0):
        if len(sizes) != len(probabilities):
            raise ValueError("need one probability per dataset")
        task = np.random.default_rng([seed, len(sizes)]).choice(len(sizes), size=steps, p=probabilities)
        self._follow(sizes, batch_size, task, seed)

    def _follow(self, sizes: list[int], batch_size: int, task: np.ndarray, seed: int, rank: int = 0,
                world_size: int = 1) -> None:
        """Read dataset task[s] at step s."""
        if min(sizes) < 1:
            raise ValueError("no dataset may be empty")
        self.batch_size, self.sizes, self.task = batch_size, list(sizes), task
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        # how many earlier steps drew the same dataset: the step's batch number within that dataset
        self.nth = np.zeros(len(task), dtype=np.int64)
        for k in range(len(sizes)):
            at = np.flatnonzero(self.task == k)
            self.nth[at] = np.arange(len(at))
        self.samplers = [StepSampler(n, batch_size, seed + k, rank=rank, world_size=world_size)
                         for k, n in enumerate(sizes)]

    def indices(self, step: int) -> list[int]:
        k = int(self.task[step])
        return [int(self.offsets[k]) + i for i in self.samplers[k].indices(int(self.nth[step]))]

    def epoch(self, step: int) -> float:
        """Passes over all the datasets together, fractional."""
        return step * self.batch_size / sum(self.sizes)


class ScheduledTaskSampler(TaskMixSampler):
    """TaskMixSampler with the dataset of each optimizer step given rather than drawn (ERNIE 2.0's stages,
    `plmkit.objectives.continual`); the micro-steps of one optimizer step read the same dataset, so a step's
    metrics are one task's. Like StepSampler it splits each batch among the data-parallel ranks.

    Args:
        sizes: examples in each dataset, laid end to end as in TaskMixSampler.
        batch_size: examples per rank per micro-step.
        task: (steps,) the dataset each optimizer step reads.
        seed: the shuffles' seed.
        grad_accum: micro-steps per optimizer step (the trainer asks for micro-step step × grad_accum + m).
        rank, world_size: this process's place among the data-parallel processes.
    """

    def __init__(self, sizes: list[int], batch_size: int, task: np.ndarray, seed: int = 0, grad_accum: int = 1,
                 rank: int = 0, world_size: int = 1):
        self.grad_accum, self.world_size = grad_accum, world_size
        self._follow(sizes, batch_size, np.asarray(task, dtype=np.int64), seed, rank, world_size)

    def indices(self, step: int) -> list[int]:
        """This rank's indices at micro-step `step` (optimizer step step // grad_accum)."""
        s, micro = divmod(step, self.grad_accum)
        if not 0 <= s < len(self.task):
            raise IndexError(f"step {s} outside the schedule of {len(self.task)} steps")
        k = int(self.task[s])
        return [int(self.offsets[k]) + i for i in self.samplers[k].indices(int(self.nth[s]) * self.grad_accum + micro)]

    def epoch(self, step: int) -> float:
        return step * self.batch_size * self.world_size / sum(self.sizes)
