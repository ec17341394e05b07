"""The registry of compression methods, what a method receives (`Job`) and what it returns (`Result`).

A method is a function `run(job) -> Result` in a module of its own under plmkit/compress/, registered
with `@register(name, paper=..., options=(...))`; see the package docstring for the contract.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import PlmkitError

SEQUENCE_TASKS = ("classify", "pair")  # one label per input: the tasks the distillation losses are written for


@dataclasses.dataclass(frozen=True)
class Option:
    """One method option: `--NAME` on the command line (underscores as dashes), `job.options[NAME]` in
    the method. `default=None` means "decided by the method" (e.g. the teacher's width) and is recorded
    as the value the method chose. A bool option is a switch that defaults to False."""

    name: str
    type: type  # int | float | str | bool
    default: Any
    help: str
    choices: tuple | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any, method: str) -> Any:
        """`value` converted to the option's type (from a string, or a JSON number), or a PlmkitError."""
        if value is None:
            return None
        try:
            if self.type is bool:
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0"):
                        raise ValueError(value)
                    value = value.lower() in ("true", "1")
                value = bool(value)
            elif self.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            else:
                value = self.type(value)
        except (TypeError, ValueError):
            raise PlmkitError(f"{method} {self.flag}: expected {self.type.__name__}, got {value!r}") from None
        if self.choices and value not in self.choices:
            raise PlmkitError(f"{method} {self.flag}: {value!r} is not one of {', '.join(map(str, self.choices))}")
        return value


# Options most methods share; a method lists the ones it takes.
EPOCHS = Option("epochs", int, 3, "passes over --train (default 3)")
LR = Option("lr", float, 5e-5, "peak learning rate, linear warm-up (10 %%) and decay (default 5e-5)")
BATCH_SIZE = Option("batch_size", int, 16, "examples per step (default 16)")
MAX_LENGTH = Option("max_length", int, None, "tokens per input, specials included (default: the teacher's)")
SEED = Option("seed", int, 0, "seed for the student's initialisation, data order and dropout (default 0)")
PATIENCE = Option("patience", int, 2, "dev evaluations (one per epoch) without improvement before stopping "
                  "(default 2); the best dev checkpoint is kept")
LAYERS = Option("layers", int, None, "student layers (default: half the teacher's)")
HIDDEN = Option("hidden", int, None, "student width (default: the teacher's)")
INIT = Option("init", str, None, "student initialisation: teacher (copy teacher layers, the method's choice of "
              "which), random, or a directory holding a smaller pre-trained model with the teacher's tokenizer "
              "(Turc et al. 2019's pre-trained compact students; --layers/--hidden then come from it)")
STUDENT = Option("student", str, None, "family member of the student, e.g. distilbert (default: the teacher's)")
STEPS = Option("steps", int, 1000, "--corpus: optimizer steps of general distillation (default 1000)")
SEQ_LEN = Option("seq_len", int, 128, "--corpus: tokens per training sequence (default 128)")
TRAINING = (EPOCHS, LR, BATCH_SIZE, MAX_LENGTH, SEED, PATIENCE)
GENERAL = (STEPS, SEQ_LEN)  # the options of general distillation, on a corpus
TRANSFORMER_STUDENT = (LAYERS, HIDDEN, INIT, STUDENT)


@dataclasses.dataclass
class Job:
    """What a method receives. Task mode (`corpus` is None): `teacher` is the fine-tuned TaskModel (eval
    mode, with `.tokenizer`), `train`/`dev` its examples (plmkit.data.tasks.Example), `task` its task.
    General mode (`corpus` set, for methods registered with general=True): `teacher` is a pre-trained
    body, `tokenizer` its tokenizer, and the method distils on the text of `corpus`. `options` holds
    every option of the method, resolved (defaults filled in); `out` is the output directory, where the
    method may write a training log. `test` (task mode, when given) is for what a method reports, e.g. a
    curve over its settings; no method selects anything on it."""

    method: str
    teacher: Any
    tokenizer: Any
    options: dict[str, Any]
    out: Path
    task: str | None = None
    train: list | None = None
    dev: list | None = None
    train_path: Path | None = None
    dev_path: Path | None = None
    test: list | None = None
    corpus: Path | None = None
    teacher_dir: Path | None = None
    progress: bool = True


@dataclasses.dataclass
class Result:
    """What a method returns. `model`: the compressed model, with `.tokenizer` — a TaskModel in task mode
    (saved with plmkit.heads.save_finetuned unless `save` is given), a pre-trained body in general mode
    (saved with plmkit.interop.hf.save_model). `info`: what compression.json records about the student
    beyond sizes and scores (its member, layers, initialisation, the layers it copied, losses used…).
    `curve`: the dev evaluations made while training (eval.json's "curve"), `best_step` the one kept.
    `save(model, directory, info)`: for methods whose saved form is not the default (e.g. packed weights;
    plmkit.compress.storage.saver makes one), `info` the run's record for plmkit.json; the directory must
    still load with plmkit.heads.load_finetuned. `parameters`: the count to report
    when `model.parameters()` does not show it (e.g. packed weights)."""

    model: Any
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    curve: list[dict] = dataclasses.field(default_factory=list)
    best_step: int | None = None
    save: Callable[[Any, Path, dict], Any] | None = None
    parameters: int | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    run: Callable[[Job], Result]
    paper: str
    summary: str  # the first paragraph of the method module's docstring, on one line
    description: str  # the module docstring
    options: tuple[Option, ...]
    tasks: tuple[str, ...]
    general: bool  # also distils a pre-trained model on a corpus

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def resolve(self, given: dict[str, Any]) -> dict[str, Any]:
        """Every option of the method: the given values checked and converted, defaults for the rest.
        An unknown key is an error that lists the known ones."""
        unknown = sorted(set(given) - {o.name for o in self.options})
        if unknown:
            known = ", ".join(o.name for o in self.options) or "none"
            raise PlmkitError(f"{self.name} has no option {', '.join(unknown)}; its options: {known}")
        return {o.name: o.check(given[o.name], self.name) if o.name in given else o.default for o in self.options}


_METHODS: dict[str, Method] = {}


def register(name: str, *, paper: str, options: tuple[Option, ...] = (), tasks: tuple[str, ...] = SEQUENCE_TASKS,
             general: bool = False) -> Callable[[Callable[[Job], Result]], Callable[[Job], Result]]:
    """Function decorator: `run(job) -> Result` becomes method `name`, described by its module's
    docstring (first paragraph: what it is and the paper; then the recipe and where plmkit departs)."""
    names = [o.name for o in options]
    if len(set(names)) != len(names):
        raise ValueError(f"{name}: an option is declared twice in {names}")

    def deco(run: Callable[[Job], Result]) -> Callable[[Job], Result]:
        doc = inspect.getdoc(sys.modules[run.__module__]) or ""
        if not doc:
            raise ValueError(f"{name}: its module needs a docstring stating the paper's recipe")
        summary = " ".join(doc.split("\n\n")[0].split())
        _METHODS[name] = Method(name, run, paper, summary, doc, tuple(options), tuple(tasks), general)
        return run

    return deco


def get(name: str) -> Method:
    if name not in _METHODS:
        raise PlmkitError(f"unknown compression method {name!r}; known: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def methods() -> list[Method]:
    """Every registered method, in registration order."""
    return list(_METHODS.values())
