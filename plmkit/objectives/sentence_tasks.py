"""Multi-task training of one sentence encoder (GenSen, Subramanian et al. 2018; the Universal Sentence
Encoder, Cer et al. 2018): several tasks share the encoder, each has its own decoder or classifier on the
sentence vector, and every step trains one task's batch.

The tasks, and the data each is built from (all offline):

    skip-thought  (previous, sentence, next) lines of one document of the corpus: two GRU decoders
                  regenerate the neighbours from the sentence's vector (Kiros et al. 2015; GenSen's and
                  USE's unsupervised task)
    response      (sentence, next sentence) of the corpus: the sentence's vector must pick its next sentence
                  among the batch's next sentences by a dot product (USE's input–response task, in-batch
                  ranking as in quick-thought; the corpus has no conversations, so the "response" is the
                  sentence that follows)
    translation   English → Chinese verses of the shipped Bible (KJV → CUV, verse-aligned): a GRU decoder
                  writes the Chinese verse, character by character over a vocabulary of its own, from the
                  English verse's vector (GenSen's NMT tasks: English → French and German)
    section       an English verse → its section of the canon (six classes, `SECTIONS`): a linear softmax
                  on the vector (the supervised classification task; GenSen and USE use SNLI, which is not
                  here). None of the sentence-vector probe tasks' labels is used.

The tasks and their weights are the model's config (`tasks`, `task_schedule`), since each task adds a head.
`task_schedule = "sample"` draws each step's task with probability ∝ its weight; `"turns"` visits them in
the order given, weight w meaning w steps in a row (so the weights must be whole numbers). Both are pure
functions of (seed, step), the same on every process; at step s a task reads the examples its own shuffled
order puts at step s, as if it were trained alone, so no step depends on the steps before it (exact resume).

Shape legend: B = batch, T = source tokens, U = target tokens + 1, C = classes.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from ..data.parallel import SECTIONS, bible, section_of_book
from ..data.pretrain import SentenceRuns, StepSampler, pad_rows
from ..errors import PlmkitError
from .base import Objective

TASKS = ("skip-thought", "response", "translation", "section")
SCHEDULES = ("sample", "turns")
NEIGHBOURS = ("previous", "next")
# the translation decoder's own character vocabulary: padding, unknown, and one token that opens and ends a verse
TARGET_PAD, TARGET_UNK, TARGET_EOS = 0, 1, 2


def check_tasks(tasks: dict[str, float], schedule: str) -> None:
    """A one-line error for an unknown task or schedule, no task, or a weight the schedule cannot use."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise PlmkitError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    if not tasks:
        raise PlmkitError(f"tasks is empty; name one or more of {', '.join(TASKS)} with a weight each")
    if schedule not in SCHEDULES:
        raise PlmkitError(f"task_schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    for name, w in tasks.items():
        if not isinstance(w, (int, float)) or w <= 0:
            raise PlmkitError(f"the weight of task {name} must be a positive number, got {w!r}")
        if schedule == "turns" and float(w) != int(w):
            raise PlmkitError(f"task_schedule turns gives task {name} w steps in a row; its weight {w} is not whole")


def target_vocabulary(texts: list[str], size: int) -> dict[str, int]:
    """The translation decoder's vocabulary: the `size` − 3 most frequent characters of `texts` (ties in
    character order, so it is the same on every run), after the pad, unknown and end ids."""
    counts = Counter(c for t in texts for c in t if not c.isspace())
    chars = sorted(counts, key=lambda c: (-counts[c], c))[: max(size - 3, 0)]
    return {c: k + 3 for k, c in enumerate(chars)}


class TaskSampler:
    """Each step's task and this rank's example indices in it: [(task, index), …], one task per step.

    Args:
        lengths: examples per task, in the config's order.
        weights: the tasks' weights, same order.
        schedule: "sample" or "turns" (see the module docstring).
        batch_size, seed, rank, world_size: as for `StepSampler`.
    """

    def __init__(self, lengths: dict[str, int], weights: dict[str, float], schedule: str, batch_size: int,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        self.names = list(lengths)
        self.samplers = {n: StepSampler(lengths[n], batch_size, seed + k, rank, world_size)
                         for k, n in enumerate(self.names)}
        w = np.array([float(weights[n]) for n in self.names])
        self.p, self.schedule, self.seed = w / w.sum(), schedule, seed
        self.cycle = [n for n in self.names for _ in range(int(weights[n]))] if schedule == "turns" else None
        self.total = sum(lengths.values())
        self.batch, self.world = batch_size, world_size

    def task(self, step: int) -> str:
        """The task of global step `step`, the same on every rank."""
        if self.cycle is not None:
            return self.cycle[step % len(self.cycle)]
        return self.names[int(np.random.default_rng([self.seed, step]).choice(len(self.names), p=self.p))]

    def indices(self, step: int) -> list[tuple[str, int]]:
        name = self.task(step)
        return [(name, i) for i in self.samplers[name].indices(step)]

    def epoch(self, step: int) -> float:
        """Examples read so far over the examples of all tasks together."""
        return step * self.batch * self.world / self.total


class TaskData:
    """Index (task, i) → (task, example i of that task's data)."""

    def __init__(self, tasks: dict[str, object]):
        self.tasks = tasks

    def __len__(self) -> int:
        return sum(len(d) for d in self.tasks.values())

    def __getitem__(self, key: tuple[str, int]):
        name, i = key
        return name, self.tasks[name][i]


class VersePairs:
    """Example i = (English verse i as token ids, Chinese verse i as target-vocabulary ids, its section)."""

    def __init__(self, source: list[np.ndarray], target: list[np.ndarray], sections: list[int]):
        self.source, self.target, self.sections = source, target, sections

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        return self.source[i], self.target[i], self.sections[i]


class SentenceTasks(Objective):
    """The multi-task objective of the multi-task sentence encoders (`gensen`, `use`): `configure(config)`
    names the tasks, `dataset` builds each one's data, `collate` one task's batch, `step` its loss."""

    name = "sentence-tasks"

    def __init__(self, tokenizer, seq_len: int, seed: int = 0):
        super().__init__(tokenizer, seq_len, seed)
        self.tasks: dict[str, float] = {t: 1.0 for t in TASKS}
        self.schedule, self.target_vocab_size, self.lengths = "sample", 4000, {}

    def configure(self, config) -> None:
        """Take the tasks, their weights and schedule, and the translation vocabulary size from the model's config."""
        if not hasattr(config, "tasks"):
            raise PlmkitError(f"the {self.name} objective trains a multi-task sentence encoder (gensen, use), "
                              "whose config names its tasks")
        check_tasks(config.tasks, config.task_schedule)
        self.tasks, self.schedule = dict(config.tasks), config.task_schedule
        self.target_vocab_size = config.target_vocab_size

    def dataset(self, corpus):
        data = {}
        for name in self.tasks:
            if name in ("skip-thought", "response"):
                n = 3 if name == "skip-thought" else 2
                try:
                    runs = SentenceRuns(corpus, n, self.seq_len - 1)  # room for a decoder's end token
                except PlmkitError as e:
                    raise PlmkitError(f"task {name} has no data: {e.message}", path=corpus.directory) from None
                data[name] = runs
        if {"translation", "section"} & set(self.tasks):
            verses = self.verses()
            for name in ("translation", "section"):
                if name in self.tasks:
                    data[name] = verses
        for name, d in data.items():
            if len(d) == 0:
                raise PlmkitError(f"task {name} has no data: its source gives no example")
        self.lengths = {n: len(d) for n, d in data.items()}
        return TaskData(data)

    def verses(self) -> VersePairs:
        """The shipped Bible as (English token ids, Chinese character ids, section) per verse."""
        en, zh, books = bible()
        if not en:
            raise PlmkitError("tasks translation and section have no data: the shipped Bible gives no verse")
        vocab = target_vocabulary(zh, self.target_vocab_size)
        source = [np.asarray(x[: self.seq_len] or [self.tokenizer.doc_sep_id], dtype=np.int64)
                  for x in self.tokenizer.encode_batch(en)]
        target = [np.asarray([vocab.get(c, TARGET_UNK) for c in t if not c.isspace()][: self.seq_len - 1],
                             dtype=np.int64) for t in zh]
        return VersePairs(source, target, [section_of_book(b) for b in books])

    def sampler(self, n_examples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        return TaskSampler(self.lengths, self.tasks, self.schedule, batch_size, seed, rank, world_size)

    def collate(self, examples: list, generator: torch.Generator) -> dict:
        names = {name for name, _ in examples}
        if len(names) != 1:
            raise ValueError(f"one task per batch, got {sorted(names)}")
        name = names.pop()
        rows = [e for _, e in examples]
        pad = self.tokenizer.pad_id or 0
        if name == "skip-thought":  # the parent's batch: decoders read [SEP] y, predict y [SEP]
            sep = self.tokenizer.doc_sep_id
            before, sentence, after = zip(*rows)
            ids, mask = pad_rows(sentence, pad)  # (B, T)
            batch = {"input_ids": ids, "attention_mask": mask}
            for n, targets in zip(NEIGHBOURS, (before, after)):
                batch[f"{n}_input_ids"] = pad_rows([[sep, *y] for y in targets], pad)[0]  # (B, U)
                labels, real = pad_rows([[*y, sep] for y in targets], pad)
                batch[f"{n}_labels"] = labels.masked_fill(real == 0, -100)  # (B, U)
        elif name == "response":  # row i's response is row i of the responses: the diagonal is the target
            inputs, responses = zip(*rows)
            ids, mask = pad_rows(inputs, pad)
            r_ids, r_mask = pad_rows(responses, pad)
            batch = {"input_ids": ids, "attention_mask": mask, "response_ids": r_ids, "response_mask": r_mask,
                     "labels": torch.arange(len(rows))}
        elif name == "translation":  # the decoder reads <eos> y, predicts y <eos>
            source, target, _ = zip(*rows)
            ids, mask = pad_rows(source, pad)
            dec = pad_rows([[TARGET_EOS, *y] for y in target], TARGET_PAD)[0]  # (B, U)
            labels, real = pad_rows([[*y, TARGET_EOS] for y in target], TARGET_PAD)
            batch = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec,
                     "labels": labels.masked_fill(real == 0, -100)}
        else:  # section
            source, _, sections = zip(*rows)
            ids, mask = pad_rows(source, pad)
            batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(sections)}
        batch["task"] = name
        return batch

    def step(self, model, batch):
        name = batch["task"]
        out = model(batch["input_ids"], batch["attention_mask"], task=name,
                    targets={k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "task")})
        tokens = int(batch["attention_mask"].sum())
        for k, v in batch.items():
            if k.endswith("labels") and v.dim() == 2:
                tokens += int((v != -100).sum())
        metrics = {"loss": out.loss, "tokens": tokens, f"{name}_loss": out.loss.detach()}
        if out.logits is not None and name in ("response", "section"):  # (B, B) or (B, C) scores
            metrics[f"{name}_accuracy"] = (out.logits.argmax(-1) == batch["labels"]).float().mean().detach()
        return metrics


NUM_SECTIONS = len(SECTIONS)
