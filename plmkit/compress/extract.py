"""extract = model extraction: a copy trained on the victim's answers to queries the attacker makes up, the
victim's weights and training labels never read. Krishna et al. 2020, "Thieves on Sesame Street! Model
Extraction of BERT-based APIs", arXiv:1910.12366.

Recipe: the victim is a BERT fine-tuned on a task and served as an API: text in, answer out. The
attacker, who knows only that it is a fine-tuned BERT, sends queries that need not be real task data —
RANDOM: sentences of words drawn from a vocabulary, or WIKI: sentences from Wikipedia — and fine-tunes its
own copy of the public pre-trained BERT on the answers, the top label alone or the whole output
distribution. Agreement with the victim (the share of held-out inputs on which the two give the same label)
and the copy's task accuracy are reported against the number of queries: nonsense queries already buy
a close copy, real sentences a closer one.

Here the victim is the fine-tuned --model behind a narrow interface: the attacker's code reaches it only
through one prediction call (the `Victim` class), which is how the test checks that no weight is read.
`--queries random` draws each query's words uniformly from `--vocabulary tokenizer` (the whole words of the
copy's own tokenizer) or `corpus` (the word types of `--corpus`), its number of words drawn from the lengths
of the task's training texts (their labels are never read) and cut at --max-length; `--queries corpus`
draws lines of `--corpus` (default the shared English Wikipedia sample), a line being one query. A pair
task's second text is a second query drawn the same way. `--answers label` returns the victim's top label
(the copy trains on its cross-entropy), `probs` the label distribution (the cross-entropy against it). The
queries are one seeded stream, so budget 100's queries are the first 100 of budget 1000's and each is
asked once. The copy starts from `--init DIR`, by default the pre-trained model the victim was fine-tuned
from (its plmkit.json names it), and trains for `--epochs` with no model selection (the attacker has no
labelled dev set). `--budgets 100,300,1000` trains a copy at each budget and writes the curve — agreement
and accuracy on --test (else --dev), the victim's accuracy beside them — to compression.json and
extraction_curve.png; the directory keeps the copy at `--budget` (default the largest).

Where plmkit departs: random words are drawn uniformly from the copy's tokenizer or a given corpus (the
paper's vocabulary is WikiText-103's), with lengths from the task's training texts; a pair's second text is
drawn independently of the first; the victim reads the queries at --max-length, which defaults to the
victim's own; classify and pair tasks only (no SQuAD or BoolQ extraction).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import PlmkitError
from .kd import teacher_logits, train_student
from .registry import BATCH_SIZE, LR, MAX_LENGTH, SEED, Job, Option, Result, register

OPTIONS = (
    Option("epochs", int, 3, "passes over the answered queries (default 3)"), LR, BATCH_SIZE, MAX_LENGTH, SEED,
    Option("queries", str, "random", "what the attacker asks: random (sentences of random words) or corpus "
           "(lines of --corpus) (default random)", choices=("random", "corpus")),
    Option("answers", str, "label", "what the victim returns: label (its top label) or probs (its label "
           "distribution) (default label)", choices=("label", "probs")),
    Option("budget", int, None, "queries the saved copy is trained on (default 1000, or the largest of --budgets)"),
    Option("budgets", str, None, "comma-separated budgets, e.g. 100,300,1000: a copy trained at each, the curve "
           "of agreement and accuracy against queries in compression.json and extraction_curve.png"),
    Option("vocabulary", str, "tokenizer", "--queries random: draw words from the copy's tokenizer (its whole "
           "words) or from the word types of --corpus (default tokenizer)", choices=("tokenizer", "corpus")),
    Option("corpus", str, None, "plain-text file: the lines --queries corpus draws, or the words of --vocabulary "
           "corpus (default the shared data's corpora/en/wiki-sample.txt)"),
    Option("init", str, None, "the pre-trained model the copy starts from (default the one the victim was "
           "fine-tuned from, as its plmkit.json records)"),
)
DEFAULT_BUDGET = 1000
SPECIAL_PREFIXES = ("Ġ", "▁")  # byte-level BPE's and SentencePiece's word-start marks


class Victim:
    """The fine-tuned model served as an API: examples in, answers out, (N, C) — a one-hot row for its top
    label, or its label distribution. The attacker holds only this object; `query` counts what it asks,
    `answer` (uncounted) is the experimenter's own use, to score agreement on held-out data."""

    def __init__(self, model, answers: str, batch_size: int, progress: bool = False):
        self._model = model
        self.labels = tuple(model.config.labels)  # the API's answers name them
        self.task = model.config.task
        self.max_length = model.config.max_length  # the API's input limit
        self._kind, self._batch_size, self._progress = answers, batch_size, progress
        self.queries = 0

    def query(self, examples: list) -> torch.Tensor:
        self.queries += len(examples)
        return self.answer(examples)

    def answer(self, examples: list) -> torch.Tensor:
        probs = teacher_logits(self._model, examples, self._batch_size, self._progress).softmax(-1)  # (N, C)
        if self._kind == "label":
            return F.one_hot(probs.argmax(-1), len(self.labels)).float()
        return probs


def default_corpus() -> Path:
    from ..evaluation.sentence_probes import shared_data_dir

    return shared_data_dir() / "corpora" / "en" / "wiki-sample.txt"


def _lines(path: Path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield line.strip()


def corpus_lines(path: Path, n: int, rng: random.Random) -> list[str]:
    """`n` non-blank lines of `path` drawn at random (reservoir sampling: one pass, n lines held), in random
    order; with fewer lines than `n`, every line, then again, reshuffled, until there are n."""
    sample: list[str] = []
    for i, line in enumerate(_lines(path)):
        if i < n:
            sample.append(line)
        else:
            j = rng.randrange(i + 1)
            if j < n:
                sample[j] = line
    if not sample:
        raise PlmkitError("no text to draw queries from", path=path)
    rng.shuffle(sample)
    out = list(sample)
    while len(out) < n:
        out += rng.sample(sample, len(sample))
    return out[:n]


def corpus_words(path: Path) -> list[str]:
    """The word types of `path` (split on white space), sorted so that a seed draws the same words."""
    words: set[str] = set()
    for line in _lines(path):
        words.update(line.split())
    if not words:
        raise PlmkitError("no words to draw queries from", path=path)
    return sorted(words)


def tokenizer_words(tokenizer) -> list[str]:
    """The whole words of a tokenizer's vocabulary: no continuation pieces (##x), no special tokens, word-start
    marks stripped, letters only."""
    words = set()
    for token in tokenizer.backend.get_vocab(with_added_tokens=False):
        if token.startswith("##"):
            continue
        word = token[1:] if token.startswith(SPECIAL_PREFIXES) else token
        if word.isalpha():
            words.add(word)
    return sorted(words)


def make_queries(o: dict, n: int, lengths: list[int], pair_lengths: list[int] | None, tokenizer,
                 corpus: Path) -> list:
    """The attacker's first `n` queries (plmkit.data.tasks.Example, unlabelled), the same for the same options
    and seed. `lengths`: the number of words of each training text (of each second text for `pair_lengths`),
    which random queries follow, cut at --max-length."""
    from ..data.tasks import Example

    rng = random.Random(o["seed"])
    if o["queries"] == "corpus":
        texts = corpus_lines(corpus, n * (2 if pair_lengths else 1), rng)
        if pair_lengths:
            return [Example(text=a, text_b=b) for a, b in zip(texts[:n], texts[n:])]
        return [Example(text=t) for t in texts]
    vocab = tokenizer_words(tokenizer) if o["vocabulary"] == "tokenizer" else corpus_words(corpus)
    if not vocab:
        raise PlmkitError("the copy's tokenizer has no whole words to draw random queries from; use "
                          "--vocabulary corpus")

    def sentence(pool: list[int]) -> str:
        k = max(1, min(rng.choice(pool), o["max_length"]))
        return " ".join(rng.choices(vocab, k=k))

    return [Example(text=sentence(lengths), text_b=sentence(pair_lengths) if pair_lengths else None)
            for _ in range(n)]


def budgets_of(o: dict) -> tuple[list[int], int]:
    """(every budget to train a copy at, ascending; the budget of the copy kept)."""
    sweep = []
    if o["budgets"]:
        try:
            sweep = [int(x) for x in o["budgets"].split(",") if x.strip()]
        except ValueError:
            raise PlmkitError(f"extract --budgets wants comma-separated integers, got {o['budgets']!r}") from None
    kept = o["budget"] or (max(sweep) if sweep else DEFAULT_BUDGET)
    budgets = sorted(set(sweep) | {kept})
    if budgets[0] < 1:
        raise PlmkitError("extract budgets must be at least 1 query")
    return budgets, kept


def init_dir(job: Job) -> str:
    """--init, else the pre-trained directory the victim's plmkit.json says it was fine-tuned from."""
    import json

    if job.options["init"]:
        return job.options["init"]
    record = Path(job.teacher_dir or "") / "plmkit.json"
    source = json.loads(record.read_text()).get("finetuned", {}).get("model") if record.is_file() else None
    if not source or not Path(source).is_dir():
        raise PlmkitError("the victim's plmkit.json names no pre-trained model that exists here; give the copy's "
                          "starting point with --init DIR (e.g. a BERT)", path=record)
    return source


def train_copy(job: Job, init: str, victim: Victim, queries: list, answers: torch.Tensor, out: Path):
    """A TaskModel built on the pre-trained `init` and trained on (queries, answers) for --epochs."""
    from .. import load, load_tokenizer
    from ..heads import HeadConfig, build

    o = job.options
    torch.manual_seed(o["seed"])
    config = HeadConfig(task=victim.task, labels=victim.labels, max_length=o["max_length"])
    copy = build(load(init), load_tokenizer(init), config)

    def step(m, batch):
        logits = m.student(batch)["logits"]  # (B, C)
        loss = F.cross_entropy(logits.float(), batch["targets"])  # against the answers: one-hot or probabilities
        return {"loss": loss, "tokens": int(batch["attention_mask"].sum())}

    train_student(job, copy, step, out=out, examples=queries, targets=answers, labels=[-100] * len(queries),
                  select=False)
    return copy


def score(copy, examples: list, reference: list[str], metric: str, batch_size: int) -> dict:
    """The copy's metrics on labelled `examples` and its agreement with the victim's labels `reference`."""
    from ..evaluation.metrics import agreement
    from ..heads import evaluate

    metrics, predictions = evaluate(copy, copy.tokenizer, examples, batch_size=batch_size)
    return {"agreement": agreement([p["label"] for p in predictions], reference), metric: metrics[metric]}


def plot_curve(curve: list[dict], metric: str, victim_score: float, split: str, path: Path) -> None:
    """Agreement with the victim and the copy's score against queries (log scale), the victim's score drawn."""
    from matplotlib.figure import Figure

    from ..durable import atomic_file

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    x = [c["queries"] for c in curve]
    ax.plot(x, [c["agreement"] for c in curve], "o-", label="agreement with the victim")
    ax.plot(x, [c[metric] for c in curve], "s-", label=f"copy's {split} {metric}")
    ax.axhline(victim_score, color="grey", ls="--", label=f"victim's {split} {metric}")
    ax.set_xscale("log")
    ax.set_xticks(x, [str(v) for v in x], minor=False)
    ax.set_xticks([], minor=True)
    ax.set_xlabel("queries")
    ax.set_ylabel(f"{split} share")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100)


@register("extract", paper="Krishna et al. 2020, arXiv:1910.12366", options=OPTIONS)
def run(job: Job) -> Result:
    from .. import load_tokenizer
    from ..evaluation.metrics import MAIN, agreement

    o = job.options
    if job.task not in ("classify", "pair"):
        raise PlmkitError(f"extract copies classify and pair models, not {job.task!r}")
    if o["max_length"] is None:
        raise PlmkitError("extract needs --max-length (plmkit compress fills in the victim's)")
    victim = Victim(job.teacher, o["answers"], 2 * o["batch_size"], job.progress)
    budgets, kept = budgets_of(o)
    corpus = Path(o["corpus"]) if o["corpus"] else default_corpus()
    if (o["queries"] == "corpus" or o["vocabulary"] == "corpus") and not corpus.is_file():
        raise PlmkitError("corpus file not found (give one with --corpus)", path=corpus)
    init = init_dir(job)
    lengths = [len(e.text.split()) for e in job.train]  # the training texts' lengths; never their labels
    pair = [len(e.text_b.split()) for e in job.train if e.text_b] if job.task == "pair" else None
    queries = make_queries(o, budgets[-1], lengths, pair or None, load_tokenizer(init), corpus)
    answers = victim.query(queries)  # (N, C), each query asked once

    split, held_out = ("test", job.test) if job.test else ("dev", job.dev)
    metric = MAIN[job.task]  # accuracy, for classify and pair
    reference = [victim.labels[i] for i in victim.answer(held_out).argmax(-1).tolist()]  # the victim's labels
    victim_score = agreement(reference, [e.label for e in held_out])  # its accuracy
    curve, copy = [], None
    for b in budgets:
        out = job.out if b == kept else job.out / "budgets" / str(b)
        model = train_copy(job, init, victim, queries[:b], answers[:b], out)
        curve.append({"queries": b, **score(model, held_out, reference, metric, 2 * o["batch_size"])})
        if b == kept:
            copy = model
    if len(budgets) > 1:
        plot_curve(curve, metric, victim_score, split, job.out / "extraction_curve.png")
    body = copy.body
    said = answers[:kept].argmax(-1).bincount(minlength=len(victim.labels)).tolist()  # the kept copy's answers
    info = {"member": body.family_name, "init": init, "layers": getattr(body.config, "num_layers", None),
            "hidden": getattr(body.config, "hidden_size", None), "queries": kept, "victim_queries": victim.queries,
            "query_kind": o["queries"], "answers": o["answers"],
            "answer_labels": dict(zip(victim.labels, said)),
            "corpus": str(corpus) if o["queries"] == "corpus" or o["vocabulary"] == "corpus" else None,
            "curve": {"split": split, "metric": metric, "victim": victim_score, "points": curve}}
    return Result(copy, info)
