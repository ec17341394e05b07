"""Labelled task data: readers for the formats users bring, label sets, and the sub-word alignment of
word-level tags.

Formats (chosen by extension): JSONL (`.jsonl`), CSV/TSV with a header (`.csv`, `.tsv`), CoNLL
(`token<TAB>tag`, a blank line between sentences; any other extension), SQuAD-style JSON (`.json`).
Every reader records the 1-based line of each example, so a bad label or field can be named exactly.
A UTF-8 byte-order mark, CRLF and lone-CR line ends read as a clean LF file does; a NUL byte, labels that
are numbers on some lines and strings on others, a CSV row with more or fewer fields than its header,
CoNLL lines with other than two columns, and tags that break BIO where the file uses BIO are refused.
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
    label_type: str | None = None  # "string" or "number" as the file wrote the label (JSONL), for a check


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
        examples = []
        for r in rows:
            if None in r or None in r.values():  # DictReader's restkey / restval: a ragged row
                n = len(r) - 1 + len(r.get(None) or []) if None in r else sum(v is not None for v in r.values())
                raise PlmkitError(f"a row of {n} fields under a header of {len(rows.fieldnames)}", path=path,
                                  line=rows.line_num)
            examples.append(_from_record(r, task, path, rows.line_num, labelled))
    else:  # JSONL, also for stdin
        examples = [_from_record(r, task, path, n, labelled) for n, r in jsonl_records(text, path)]
    if not examples:
        raise PlmkitError("no examples in the file", path=path)
    if task in ("classify", "pair") and labelled:
        _same_label_type(examples, path)
    return examples


def jsonl_records(text: str, path=None) -> list[tuple[int, dict]]:
    """(1-based line, object) for each non-blank line of JSONL text; a line that is not a JSON object is
    an error naming it."""
    records = []
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
        records.append((n, record))
    return records


def _read_text(path: Path) -> str:
    """The file (or stdin) as text with LF line ends, a leading byte-order mark dropped."""
    import sys

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        data = path.read_bytes()
        raise PlmkitError("not UTF-8 text", path=path, line=data[:e.start].count(b"\n") + 1) from None
    if "\0" in text:
        raise PlmkitError("a NUL byte: not a UTF-8 text file (UTF-16? save it as UTF-8)", path=path,
                          line=text[:text.index("\0")].count("\n") + 1)
    # A raw CR can only end a line: JSON strings escape it, and CSV quoting keeps it (newline="").
    return text.replace("\r\n", "\n") if path.suffix.lower() in (".csv", ".tsv") else \
        text.replace("\r\n", "\n").replace("\r", "\n")


def _same_label_type(examples: list[Example], path: Path) -> None:
    """Labels are all strings or all numbers: "1" and 1 would otherwise become one class silently."""
    kinds = {}
    for e in examples:
        kinds.setdefault(e.label_type, e.line)
        if len(kinds) > 1:
            first = next(iter(kinds))
            raise PlmkitError(f"label {e.label!r} is a {e.label_type} but the label on line {kinds[first]} is a "
                              f"{first}; make every label a string (or every one a number)", path=path, line=e.line)


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
    label_type = "number" if isinstance(label, (int, float)) and not isinstance(label, bool) else "string"
    if label is not None and task == "regress":
        try:
            label = float(label)
        except (TypeError, ValueError):
            raise PlmkitError(f"label {label!r} is not a number", path=path, line=line) from None
    elif label is not None:
        label = str(label)
    return Example(text=str(a), text_b=None if b is None else str(b), label=label, id=r.get("id"), line=line,
                   label_type=label_type)


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
        if labelled and (len(parts) != 2 or not parts[1].strip()):
            raise PlmkitError(f"expected token<TAB>tag, found {len(parts)} column(s); keep the token and tag "
                              "columns (e.g. cut -f1,4 for CoNLL-2003)", path=path, line=n)
        start = start or n
        tokens.append(parts[0])
        tags.append(parts[-1].strip())
    if labelled:
        _check_bio(examples, path)
    return examples


def _check_bio(examples: list[Example], path: Path) -> None:
    """Where a file tags with B-/I- prefixes, every tag is O, B-X or I-X, and I-X continues a B-X or I-X."""
    if not any(t[:2] in ("B-", "I-") for e in examples for t in e.tags):
        return
    for e in examples:
        previous = "O"
        for k, tag in enumerate(e.tags):
            bad = None
            if tag != "O" and tag[:2] not in ("B-", "I-"):
                bad = f"tag {tag!r} is not O, B-X or I-X, as the file's other tags are (BIO)"
            elif tag.startswith("I-") and previous[2:] != tag[2:]:
                bad = f"{tag} follows {previous}: not BIO (an entity starts with B-{tag[2:]})"
            if bad:
                raise PlmkitError(bad, path=path, line=e.line + k)
            previous = tag


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
            raise PlmkitError(f"the training data hold only {len(found)} distinct label(s); need at least two",
                              path=path)
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


def read_prompts(path: str | Path) -> list[str]:
    """Prompts for `plmkit generate --prompts`: JSONL (`.jsonl`: an object with "prompt", "text" or "source"
    (a seq2seq task's file) per line) or plain text, one prompt per line; blank lines are skipped; "-" reads stdin."""
    path = Path(path)
    if str(path) != "-" and not path.is_file():
        raise PlmkitError("prompts file not found", path=path)
    text = _read_text(path)
    if path.suffix.lower() != ".jsonl":
        prompts = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    else:
        prompts = []
        for n, record in jsonl_records(text, path):
            prompt = _field(record, ("prompt", "text", "source"), path, n)
            if not isinstance(prompt, str):
                raise PlmkitError("the prompt must be a string", path=path, line=n)
            prompts.append(prompt)
    if not prompts:
        raise PlmkitError("no prompts in the file", path=path)
    return prompts
