"""ERNIE 2.0's continual multi-task pre-training: tasks are added in stages, and each stage keeps training the
tasks of the stages before it, from the parameters they left. Sun et al. 2020, arXiv:1907.12412, §3.2 and §4.2.

The paper's "sequential multi-task learning" (§3.2.2, Fig. 3) gives every task the same number N of
iterations and spreads each task's N evenly over the stages it takes part in, so a task added late is trained
densely in few stages and one added early thinly in many. plmkit does the same with N = steps / tasks (exact
counts by largest remainder); inside a stage the order of the steps is a seeded shuffle of its tasks'
allotments, so every step's batch is one task's and the stage's shares are exact. The plan is made for the
run's --steps: resuming with other --steps re-plans the stages for the new total.

The tasks (§4.2), each a small head and loss over the shared encoder, from plain text:
- knowledge: ERNIE 1.0's knowledge masking (`plmkit.objectives.ernie`) over `[CLS] text [SEP]`, no NSP.
- capitalization: is each word capitalised, predicted from an input in which every token is replaced by
  its lowercase form (the paper's English model is uncased and takes the labels from the raw text; plmkit's
  shards hold ids only, so ERNIE 2.0 trains its tokenizer cased and lowercases the input itself). Words
  whose first piece has no lowercase form in the vocabulary keep their case in the input and are not
  counted; words not starting with a letter are not counted. On text mostly without case (Chinese), or with
  a tokenizer that lowercases, the task is skipped with a warning.
- token-document: for each token of a segment, does it also occur in the rest of its document (the
  paper: "in other segments of the original document"); the rest is read up to `context` tokens on each
  side of the segment, so memory stays bounded whatever the document's length.
- reorder: a span of one document is split into n ∈ {1 … M} segments (at line ends where there are enough
  lines, else inside them), shuffled, and the permutation is classified among Σ_{k=1..M} k! classes;
  M = 3 here (9 classes); the segments are separated by [SEP] and alternate segment ids.
- distance: `[CLS] A [SEP] B [SEP]`, 3 classes: B is the line after A, a line of the same document at
  least two lines away, or a line of another document (each a third of the time, where the document
  allows it). A keeps its end and B its start when they must be cut.
The semantic-aware tasks (discourse relation, IR relevance) need labelled discourse markers and search
logs that plmkit has no data for: they are left out.

Each task has a task id (its place in TASKS) whose task embedding is added to the input; fine-tuning and
any call without task ids read id 0, knowledge masking's.

Shape legend: B = batch, T = sequence length, C = a task head's classes.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..config import _line_of_key
from ..data.pretrain import ScheduledTaskSampler, Sentences, pad_rows
from ..errors import PlmkitError
from .ernie import KnowledgeMaskedLM

log = logging.getLogger("plmkit")

TASKS = ("knowledge", "capitalization", "token-document", "reorder", "distance")  # task id = index
TOKEN_TASKS = ("capitalization", "token-document")  # a label per token; the others one per sequence
DEFAULT_STAGES = (("knowledge",), ("knowledge", "capitalization", "token-document"), TASKS)  # §4.2's order
MAX_SEGMENTS = 3  # M of sentence reordering


def reorder_classes(m: int = MAX_SEGMENTS) -> int:
    """Σ_{k=1..m} k!: every permutation of every number of segments up to m."""
    return sum(math.factorial(k) for k in range(1, m + 1))


TASK_CLASSES = {"capitalization": 2, "token-document": 2, "reorder": reorder_classes(), "distance": 3}


def permutation_class(perm: list[int]) -> int:
    """The class of a shuffle of n segments: Σ_{k<n} k! plus the permutation's rank in lexicographic order
    (its Lehmer code). perm[j] = which original segment stands at place j."""
    n, rank, rest = len(perm), 0, sorted(perm)
    for j, p in enumerate(perm):
        i = rest.index(p)
        rank += i * math.factorial(n - 1 - j)
        rest.pop(i)
    return reorder_classes(n - 1) + rank


def check_stages(stages) -> tuple[tuple[str, ...], ...]:
    """Validated stages: a non-empty list of non-empty lists of known tasks, each holding the one before."""
    if not isinstance(stages, (list, tuple)) or not stages or not all(isinstance(s, (list, tuple)) and s
                                                                      for s in stages):
        raise PlmkitError("stages must be a non-empty list of non-empty lists of task names, e.g. "
                          '[["knowledge"], ["knowledge", "capitalization"]]')
    out = []
    for i, stage in enumerate(stages, 1):
        unknown = [t for t in stage if t not in TASKS]
        if unknown:
            raise PlmkitError(f"stage {i}: unknown task(s) {', '.join(map(str, unknown))}; known: {', '.join(TASKS)}")
        if len(set(stage)) != len(stage):
            raise PlmkitError(f"stage {i} names a task twice")
        dropped = [t for t in (out[-1] if out else ()) if t not in stage]
        if dropped:
            raise PlmkitError(f"stage {i} drops {', '.join(dropped)}: each stage keeps the tasks of the stage "
                              "before it (ERNIE 2.0's continual multi-task learning)")
        out.append(tuple(stage))
    return tuple(out)


def stage_schedule(stages, steps: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """(the task of each step, the stage of each step, from 0): every task gets steps / tasks steps in all,
    spread evenly over the stages from the one that adds it (rounded by largest remainder so the counts add
    up to `steps`); a stage's steps are a seeded shuffle of its tasks' counts."""
    stages = check_stages(stages)
    tasks = list(dict.fromkeys(t for s in stages for t in s))
    added = {t: next(i for i, s in enumerate(stages) if t in s) for t in tasks}
    share = [(i, t, steps / len(tasks) / (len(stages) - added[t])) for i, s in enumerate(stages) for t in s]
    counts = [int(math.floor(x)) for _, _, x in share]
    by_remainder = sorted(range(len(share)), key=lambda j: (-(share[j][2] - counts[j]), j))
    for j in by_remainder[:steps - sum(counts)]:
        counts[j] += 1
    order, stage_of = [], []
    for i in range(len(stages)):
        steps_i = [t for (s, t, _), c in zip(share, counts) if s == i for _ in range(c)]
        order += [steps_i[j] for j in np.random.default_rng([seed, i]).permutation(len(steps_i))]
        stage_of += [i] * len(steps_i)
    return order, stage_of


class CaseTable:
    """Per vocabulary entry: whether its word text begins with a capital, with any cased letter, and the id of
    its lowercase form (itself when already lowercase or when the vocabulary lacks the form)."""

    _AFFIXES = {"wordpiece": ("##", ""), "bytebpe": ("Ġ", ""), "unigram": ("▁", ""), "bpe": ("", "</w>")}

    def __init__(self, tokenizer):
        vocab = tokenizer.backend.get_vocab()
        V = tokenizer.vocab_size
        self.upper, self.cased = torch.zeros(V, dtype=torch.bool), torch.zeros(V, dtype=torch.bool)
        self.lower = torch.arange(V)
        prefix, suffix = self._AFFIXES.get(tokenizer.kind, ("", ""))
        special = set(tokenizer.special_ids)
        for token, i in vocab.items():
            if i >= V or i in special:
                continue
            core = token[len(prefix):] if prefix and token.startswith(prefix) else token
            affix = token[:len(token) - len(core)]
            tail = suffix if suffix and core.endswith(suffix) else ""
            core = core[:len(core) - len(tail)] if tail else core
            if not core:
                continue
            self.upper[i], self.cased[i] = core[0].isupper(), core[0].lower() != core[0].upper()
            if core != core.lower():
                self.lower[i] = vocab.get(affix + core.lower() + tail, i)

    def skip_reason(self, ids: torch.Tensor, begins: torch.Tensor) -> str | None:
        """Why capitalization prediction has nothing to learn on these (N,) corpus ids, or None.
        begins: (N,) bool, the tokens that begin a word."""
        if not bool(self.upper.any()):
            return "the vocabulary has no capitals (the tokenizer lowercases)"
        starts = ids[begins]
        if len(starts) == 0 or float(self.cased[starts].float().mean()) < 0.5:
            return "most words have no letter case (e.g. Chinese)"
        return None


class TokenDocument:
    """Example i: (a segment of up to `max_tokens` tokens starting at the line holding token i × max_tokens,
    the sorted distinct ids of its document outside it, up to `context` tokens on each side). Doc-sep
    tokens are dropped."""

    def __init__(self, corpus, max_tokens: int, context: int = 4096):
        self.corpus, self.max_tokens, self.context = corpus, max_tokens, context
        self.doc_sep = int(corpus.meta["doc_sep_id"])

    def __len__(self) -> int:
        return max(1, self.corpus.n_tokens // self.max_tokens)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(f"example {i} outside [0, {len(self)})")
        c = self.corpus
        line = c.line_at(min(i * self.max_tokens, c.n_tokens - 1))
        first, end = c.doc_line_range(max(0, c.doc_of_line(line)))
        doc_start, doc_stop = c.line_span(first)[0], c.line_span(end - 1)[1]
        a = c.line_span(line)[0]
        if doc_stop - a <= 1:  # the document's closing doc-sep alone: start the segment at the document's start
            a = doc_start
        b = min(a + self.max_tokens, doc_stop)
        segment = c.tokens(a, b)
        rest = np.concatenate([c.tokens(max(doc_start, a - self.context), a),
                               c.tokens(b, min(doc_stop, b + self.context))])
        return segment[segment != self.doc_sep], np.unique(rest[rest != self.doc_sep])


class SentenceDistance:
    """Example i: (A, B, label), A the line i (moved back where the label needs a later line), B the line after
    it (label 0), a line of its document at least two lines away (1), or a line of another document (2); the
    label is uniform over those the document allows, a pure function of (seed, i). A keeps its last and B
    its first tokens, `max_tokens` in all."""

    def __init__(self, corpus, max_tokens: int, seed: int = 0):
        if corpus.n_lines < 2:
            raise PlmkitError("sentence distance needs at least two lines", path=corpus.directory)
        if corpus.n_docs < 2:
            log.warning("%s: one document (no blank lines): sentence distance has no other-document pairs",
                        corpus.directory)
        self.corpus, self.max_tokens, self.seed = corpus, max_tokens, seed
        self.doc_sep = int(corpus.meta["doc_sep_id"])

    def __len__(self) -> int:
        return self.corpus.n_lines

    def _line(self, i: int) -> np.ndarray:
        t = self.corpus.line(i)
        return t[t != self.doc_sep]

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"example {i} outside [0, {len(self)})")
        c, rng = self.corpus, np.random.default_rng([self.seed, i])
        doc = max(0, c.doc_of_line(i))
        first, end = c.doc_line_range(doc)
        a = min(max(i, first), end - 1)
        far = [*range(first, a - 1), *range(a + 2, end)]  # lines at least two away (none for 3 lines' middle)
        labels = [k for k, ok in ((0, end - first >= 2), (1, bool(far)), (2, c.n_docs >= 2)) if ok]
        if not labels:
            raise PlmkitError("sentence distance: no document has two lines and there is no second document",
                              path=c.directory)
        label = labels[int(rng.integers(len(labels)))]
        if label == 0:
            a = min(a, end - 2)
            b = a + 1
        elif label == 1:
            b = far[int(rng.integers(len(far)))]
        else:
            other = int(rng.integers(c.n_docs - 1))
            other += other >= doc
            lo, hi = c.doc_line_range(other)
            b = int(rng.integers(lo, hi))
        A, B = self._line(a), self._line(b)
        half = self.max_tokens // 2
        keep_a = min(len(A), max(half, self.max_tokens - len(B)))
        A = A[len(A) - keep_a:]
        return A, B[:self.max_tokens - len(A)], label


class TaskExamples:
    """Several tasks' datasets end to end; example j is (task name, that task's example)."""

    def __init__(self, datasets: dict[str, object]):
        self.names, self.datasets = list(datasets), list(datasets.values())
        self.sizes = [len(d) for d in self.datasets]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, j: int):
        k = int(np.searchsorted(self.offsets, j, "right")) - 1
        if not 0 <= j < len(self):
            raise IndexError(f"example {j} outside [0, {len(self)})")
        return self.names[k], self.datasets[k][j - int(self.offsets[k])]


class ContinualMultiTask(KnowledgeMaskedLM):
    """ERNIE 2.0's pre-training: ERNIE 1.0's knowledge masking plus capitalization, token–document relation,
    sentence reordering and sentence distance, in stages (module docstring). The model needs a task
    embedding table and a head per task (`plmkit.models.ernie2`)."""

    name = "continual"
    lowercase = False  # the capitalization task's labels are read from the tokens: keep the case
    context = 4096  # document tokens read on each side of a token–document segment

    def __init__(self, tokenizer, seq_len: int, seed: int = 0, lexicon: str | None = None, stages=None,
                 train=None, source=None):
        """stages: the tasks of each stage (default DEFAULT_STAGES); train: the run's TrainConfig (its steps
        and gradient accumulation place the stages); source: the settings file the stages came from."""
        super().__init__(tokenizer, seq_len, seed, lexicon=lexicon)
        try:
            self.stages = check_stages(DEFAULT_STAGES if stages is None else stages)
        except PlmkitError as e:
            raise PlmkitError(e.message, path=source, line=_line_of_key(source, "stages")) from None
        self.steps, self.grad_accum = (train.steps, train.grad_accum) if train is not None else (None, 1)
        self.case = CaseTable(tokenizer)
        self.pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        self.examples: TaskExamples | None = None

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(t for s in self.stages for t in s))

    def dataset(self, corpus):
        if "capitalization" in self.tasks:
            ids = torch.from_numpy(corpus.tokens(0, min(corpus.n_tokens, 200_000)).astype("int64"))
            reason = self.case.skip_reason(ids, self.words.begins[ids] & ~torch.isin(ids, self.specials))
            if reason:
                log.warning("capitalization prediction skipped: %s", reason)
                self.stages = check_stages([[t for t in s if t != "capitalization"] for s in self.stages])
            else:
                self._log_case_coverage(ids)
        if "knowledge" in self.tasks:
            self.prepare(corpus)
        L, M = self.seq_len, MAX_SEGMENTS
        make = {"knowledge": lambda: Sentences(corpus, L - 2),  # [CLS] … [SEP]
                "capitalization": lambda: Sentences(corpus, L - 2),
                "token-document": lambda: TokenDocument(corpus, L - 2, self.context),
                "reorder": lambda: Sentences(corpus, L - 1 - M),  # [CLS] and up to M [SEP]s
                "distance": lambda: SentenceDistance(corpus, L - 3, self.seed)}  # [CLS] A [SEP] B [SEP]
        self.examples = TaskExamples({t: make[t]() for t in self.tasks})
        return self.examples

    def _log_case_coverage(self, ids: torch.Tensor) -> None:
        capital = ids[self.words.begins[ids] & self.case.upper[ids]]
        if len(capital):
            log.info("capitalization: %.0f%% of capitalised words have a lowercase form in the vocabulary and "
                     "are predicted; the rest keep their case and are not counted",
                     100 * float((self.case.lower[capital] != capital).float().mean()))

    def sampler(self, n_examples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if self.examples is None or self.steps is None:
            raise PlmkitError("the continual objective needs its dataset and the run's steps before its sampler")
        order, stage_of = stage_schedule(self.stages, self.steps, seed)
        for i, stage in enumerate(self.stages):
            at = [s for s, k in enumerate(stage_of) if k == i]
            counts = {t: sum(order[s] == t for s in at) for t in stage}
            span = f"steps {at[0] + 1}–{at[-1] + 1}" if at else "no steps"
            log.info("stage %d (%s): %s", i + 1, span, ", ".join(f"{t} {n}" for t, n in counts.items()))
        index = {t: k for k, t in enumerate(self.examples.names)}
        return ScheduledTaskSampler(self.examples.sizes, batch_size, np.array([index[t] for t in order]), seed,
                                    self.grad_accum, rank, world_size)

    # --- batches -------------------------------------------------------------------------------------------

    def collate(self, examples, generator):
        task = examples[0][0]
        if any(t != task for t, _ in examples):
            raise ValueError("a batch of the continual objective holds one task")
        batch = getattr(self, "_" + task.replace("-", "_"))([e for _, e in examples], generator)
        batch["task"] = task
        batch["task_type_ids"] = torch.full_like(batch["input_ids"], TASKS.index(task))
        return batch

    def _rows(self, rows: list[list[int]], types: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
        ids, mask = pad_rows(rows, self.pad)
        tt = torch.zeros_like(ids)
        for r, t in enumerate(types or []):
            tt[r, :len(t)] = torch.tensor(t)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}

    def _wrap(self, tokens: np.ndarray) -> list[int]:
        return [self.tokenizer.cls_id, *tokens.tolist(), self.tokenizer.sep_id]

    def _knowledge(self, examples: list[list[np.ndarray]], generator) -> dict:
        return self._mask(self._rows([self._wrap(np.concatenate(lines)) for lines in examples]), generator)

    def _capitalization(self, examples: list[list[np.ndarray]], generator) -> dict:
        batch = self._rows([self._wrap(np.concatenate(lines)) for lines in examples])
        ids, real = batch["input_ids"], batch["attention_mask"].bool()
        # Counted: words beginning with a letter that has case, unless capitalised with no lowercase form.
        keeps_case = self.case.upper[ids] & (self.case.lower[ids] == ids)
        counted = self.words.starts(ids) & self.case.cased[ids] & ~keeps_case & real & ~torch.isin(ids, self.specials)
        batch["labels"] = torch.where(counted, self.case.upper[ids].long(), -100)  # (B, T)
        batch["input_ids"] = self.case.lower[ids]
        return batch

    def _token_document(self, examples: list[tuple[np.ndarray, np.ndarray]], generator) -> dict:
        batch = self._rows([self._wrap(seg) for seg, _ in examples])
        labels = torch.full_like(batch["input_ids"], -100)
        for r, (seg, rest) in enumerate(examples):
            labels[r, 1:1 + len(seg)] = torch.from_numpy(np.isin(seg, rest).astype(np.int64))
        labels[torch.isin(batch["input_ids"], self.specials)] = -100
        batch["labels"] = labels
        return batch

    def _reorder(self, examples: list[list[np.ndarray]], generator) -> dict:
        t, rows, types, labels = self.tokenizer, [], [], []
        for lines in examples:
            tokens = np.concatenate(lines)
            n = 1 + int(torch.randint(min(MAX_SEGMENTS, len(tokens)), (), generator=generator))
            bounds = np.cumsum([len(x) for x in lines])[:-1]
            bounds = bounds[(bounds > 0) & (bounds < len(tokens))]
            if len(bounds) < n - 1:  # too few line ends: cut inside the text
                bounds = np.arange(1, len(tokens))
            cuts = sorted(bounds[torch.randperm(len(bounds), generator=generator)[:n - 1].numpy()].tolist())
            segments = np.split(tokens, cuts)
            perm = torch.randperm(n, generator=generator).tolist()
            row, typ = [t.cls_id], [0]
            for place, p in enumerate(perm):
                row += [*segments[p].tolist(), t.sep_id]
                typ += [place % 2] * (len(segments[p]) + 1)
            rows.append(row)
            types.append(typ)
            labels.append(permutation_class(perm))
        batch = self._rows(rows, types)
        batch["labels"] = torch.tensor(labels)
        return batch

    def _distance(self, examples: list[tuple[np.ndarray, np.ndarray, int]], generator) -> dict:
        t = self.tokenizer
        rows = [[t.cls_id, *a.tolist(), t.sep_id, *b.tolist(), t.sep_id] for a, b, _ in examples]
        types = [[0] * (len(a) + 2) + [1] * (len(b) + 1) for a, b, _ in examples]
        batch = self._rows(rows, types)
        batch["labels"] = torch.tensor([label for *_, label in examples])
        return batch

    # --- losses --------------------------------------------------------------------------------------------

    def step(self, model, batch):
        task, key = batch["task"], batch["task"].replace("-", "_")
        inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        tokens = int(batch["attention_mask"].sum())
        if task == "knowledge":
            loss = model(*inputs, task_type_ids=batch["task_type_ids"], task=task, logits_at=batch["masked"],
                         labels=batch["labels"]).loss
            return {"loss": loss, "tokens": tokens, f"{key}_loss": loss.detach()}
        logits = model(*inputs, task_type_ids=batch["task_type_ids"], task=task).task_logits.float()  # (B[, T], C)
        labels = batch["labels"]
        counted = labels != -100
        logits, labels = logits[counted], labels[counted]  # (N, C), (N,)
        if not len(labels):  # nothing to predict in this batch (no capitalised word): a zero still in the graph
            return {"loss": logits.sum(), "tokens": tokens}
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        return {"loss": loss, "tokens": tokens, f"{key}_loss": loss.detach(), f"{key}_acc": acc.detach()}
