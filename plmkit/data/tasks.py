"""Labelled task data: readers for the formats users bring, label sets, and the sub-word alignment of
word-level tags.

Formats (chosen by extension): JSONL (`.jsonl`), CSV/TSV with a header (`.csv`, `.tsv`), CoNLL
(`token<TAB>tag`, a blank line between sentences; any other extension), SQuAD-style JSON (`.json`).
Every reader records the 1-based line of each example, so a bad label or field can be named exactly.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

from ..errors import PlmkitError

TASKS = ("classify", "pair", "regress", "tag", "qa", "choice", "seq2seq")


@dataclasses.dataclass
class Example:
    """One labelled (or, for predict, unlabelled) example; which fields are set depends on the task.

    classify: text (+ text_b for pair), label · regress: text (+ text_b), label (float) ·
    tag: tokens, tags · qa: text = question, context, answers [{"text", "answer_start"}], id ·
    choice: text = question/context, choices, label (int index) · seq2seq: text = source, target.
    """

    text: str = ""
    text_b: str | None = None
    label: str | float | int | None = None
    tokens: list[str] | None = None
    tags: list[str] | None = None
    context: str | None = None
    answers: list[dict] | None = None
    choices: list[str] | None = None
    target: str | None = None
    id: str | None = None
    line: int | None = None  # where it starts in its file, for error messages


def read_task(path: str | Path, task: str, labelled: bool = True) -> list[Example]:
    """Read `path` as examples of `task`; `labelled=False` lets the label fields be absent (predict)."""
    if task not in TASKS:
        raise PlmkitError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    path = Path(path)
    if str(path) != "-" and not path.is_file():
        raise PlmkitError("data file not found", path=path)
    text = _read_text(path)
    suffix = path.suffix.lower()
    if task == "qa":
        examples = _read_squad(text, path, labelled)
    elif task == "tag":
        examples = _read_conll(text, path, labelled)
    elif suffix in (".csv", ".tsv"):
        rows = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        examples = [_from_record(r, task, path, rows.line_num, labelled) for r in rows]
    else:  # JSONL, also for stdin
        examples = []
        # split("\n"), not splitlines(): JSON strings may hold U+2028 and other characters it splits on.
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise PlmkitError(f"not valid JSON: {e.msg}", path=path, line=n) from None
            if not isinstance(record, dict):
                raise PlmkitError("each line must be a JSON object", path=path, line=n)
            examples.append(_from_record(record, task, path, n, labelled))
    if not examples:
        raise PlmkitError("no examples in the file", path=path)
    return examples


def _read_text(path: Path) -> str:
    import sys

    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        data = path.read_bytes()
        raise PlmkitError("not UTF-8 text", path=path, line=data[:e.start].count(b"\n") + 1) from None


def _field(record: dict, names: tuple[str, ...], path: Path, line: int, required: bool = True):
    for name in names:
        if record.get(name) not in (None, ""):
            return record[name]
    if required:
        raise PlmkitError(f"missing field {' or '.join(repr(n) for n in names)}", path=path, line=line)
    return None


def _from_record(r: dict, task: str, path: Path, line: int, labelled: bool) -> Example:
    """A JSONL object or CSV row → Example."""
    if task == "seq2seq":
        target = _field(r, ("target",), path, line, labelled)
        return Example(text=str(_field(r, ("source",), path, line)), target=None if target is None else str(target),
                       id=r.get("id"), line=line)
    if task == "choice":
        choices = _field(r, ("choices",), path, line)
        if isinstance(choices, str):  # CSV: choices separated by "|"
            choices = choices.split("|")
        if not isinstance(choices, list) or len(choices) < 2:
            raise PlmkitError("'choices' must be a list of at least two strings", path=path, line=line)
        label = _field(r, ("label",), path, line, labelled)
        if label is not None:
            try:
                label = int(label)
            except ValueError:
                raise PlmkitError(f"label {label!r} is not an index into choices", path=path, line=line) from None
            if not 0 <= label < len(choices):
                raise PlmkitError(f"label {label} outside the {len(choices)} choices", path=path, line=line)
        return Example(text=str(_field(r, ("question", "context", "text"), path, line)),
                       choices=[str(c) for c in choices], label=label, id=r.get("id"), line=line)
    if task == "pair":
        a, b = _field(r, ("text_a",), path, line), _field(r, ("text_b",), path, line)
    else:  # classify and regress take one text, or a pair when text_a/text_b are given
        a = _field(r, ("text", "text_a"), path, line)
        b = _field(r, ("text_b",), path, line, required=False)
    label = _field(r, ("label",), path, line, labelled)
    if label is not None and task == "regress":
        try:
            label = float(label)
        except (TypeError, ValueError):
            raise PlmkitError(f"label {label!r} is not a number", path=path, line=line) from None
    elif label is not None:
        label = str(label)
    return Example(text=str(a), text_b=None if b is None else str(b), label=label, id=r.get("id"), line=line)


def _read_conll(text: str, path: Path, labelled: bool) -> list[Example]:
    """`token<TAB>tag` lines (or bare tokens when unlabelled), a blank line after each sentence."""
    examples, tokens, tags, start = [], [], [], None
    for n, line in enumerate(text.split("\n") + [""], 1):
        if not line.strip():
            if tokens:
                examples.append(Example(tokens=tokens, tags=tags if labelled else None, line=start))
            tokens, tags, start = [], [], None
            continue
        parts = line.split("\t")
        if labelled and (len(parts) < 2 or not parts[-1].strip()):
            raise PlmkitError("expected token<TAB>tag", path=path, line=n)
        start = start or n
        tokens.append(parts[0])
        tags.append(parts[-1].strip())
    return examples


def _read_squad(text: str, path: Path, labelled: bool) -> list[Example]:
    """SQuAD v1 JSON: data → paragraphs → context, qas → id, question, answers [{text, answer_start}]."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlmkitError(f"not valid JSON: {e.msg}", path=path, line=e.lineno) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise PlmkitError("missing field 'data' (SQuAD format: data → paragraphs → context, qas)", path=path)
    examples = []
    for article in doc["data"]:
        for para in article.get("paragraphs", []):
            context = para.get("context")
            if not context:
                raise PlmkitError("a paragraph without 'context'", path=path)
            for qa in para.get("qas", []):
                if "question" not in qa:
                    raise PlmkitError(f"question {qa.get('id')!r} has no 'question'", path=path)
                answers = qa.get("answers") or None
                if labelled and not answers:
                    raise PlmkitError(f"question {qa.get('id')!r} has no 'answers'", path=path)
                for a in answers or []:
                    if context[a["answer_start"]:a["answer_start"] + len(a["text"])] != a["text"]:
                        raise PlmkitError(f"question {qa.get('id')!r}: answer {a['text']!r} is not at "
                                          f"answer_start {a['answer_start']} of its context", path=path)
                examples.append(Example(text=qa["question"], context=context, answers=answers,
                                        id=str(qa.get("id", len(examples)))))
    return examples


class LabelSet:
    """The labels a model was trained on, discovered from the training examples (sorted, so a rerun gives
    the same ids), saved with the model; an unknown label later is an error naming its line."""

    def __init__(self, labels: list[str]):
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def discover(cls, examples: list[Example], task: str, declared: list[str] | None = None,
                 path=None) -> "LabelSet":
        """The sorted labels of `examples`, or the `declared` ones (in their order) when given: a label the
        training data lack may then still be predicted, and one the declaration lacks is an error."""
        if task == "tag":
            found = {t for e in examples for t in e.tags}
        elif task in ("classify", "pair"):
            found = {e.label for e in examples}
        else:  # regress, qa, choice and seq2seq have no label vocabulary
            if declared:
                raise PlmkitError(f"--labels is for classify, pair and tag; {task} has no label vocabulary")
            return cls([])
        if declared:
            declared_set = cls(declared)
            if len(declared_set.index) != len(declared):
                raise PlmkitError("--labels names a label twice")
            for e in examples:
                for label in (e.tags if task == "tag" else [e.label]):
                    if label not in declared_set.index:
                        raise PlmkitError(f"label {label!r} is not one of --labels", path=path, line=e.line)
            found = set(declared)
            if len(found) >= 2:
                return declared_set
        if len(found) < 2:
            raise PlmkitError(f"the training data hold only {len(found)} distinct label(s); need at least two")
        return cls(sorted(found))

    def __len__(self) -> int:
        return len(self.labels)

    def id(self, label: str, path=None, line: int | None = None) -> int:
        if label not in self.index:
            raise PlmkitError(f"label {label!r} was not in the training data (known: "
                              f"{', '.join(self.labels[:10])}{', …' if len(self.labels) > 10 else ''})",
                              path=path, line=line)
        return self.index[label]


def align_words(tokenizer, words: list[str]) -> tuple[list[int], list[int]]:
    """Encode a pre-split sentence and say which word each sub-token belongs to.

    The words are joined by single spaces and encoded once with character offsets, so the same code
    serves every tokenizer kind (WordPiece, BPE, byte-level BPE, unigram, char) whatever marks it uses
    for word boundaries. Returns (ids, word_of) where word_of[k] is the index of the word token k
    overlaps, or -1 for a token covering only spaces (e.g. a lone "▁").
    """
    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + 1
    ids, offsets = tokenizer.encode_with_offsets(" ".join(words))
    word_of, w = [], 0
    for s, e in offsets:
        # Byte-level BPE counts the space before a word into its first token: use the token's last char.
        while w + 1 < len(words) and starts[w + 1] < e:
            w += 1
        inside = s < starts[w] + len(words[w]) and e > starts[w]
        word_of.append(w if inside else -1)
    return ids, word_of


def first_subtoken_labels(word_of: list[int], word_labels: list[int], ignore: int = -100) -> list[int]:
    """Label the first sub-token of each word with its word's label and every other token `ignore`."""
    out, seen = [], set()
    for w in word_of:
        if w < 0 or w in seen:
            out.append(ignore)
        else:
            seen.add(w)
            out.append(word_labels[w])
    return out
