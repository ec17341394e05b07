"""Config base: frozen, validated, JSON-serialisable dataclasses that reject unknown keys.

A family member's config subclasses its parent's and changes defaults or adds fields
(DESIGN.md, "A family member").
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from .errors import PlmkitError

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Subclasses raise PlmkitError on inconsistent values (call super().validate())."""

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any], source: str | Path | None = None) -> C:
        unknown = sorted(set(d) - cls.field_names())
        if unknown:
            raise PlmkitError(
                f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}; "
                f"known: {', '.join(sorted(cls.field_names()))}",
                path=source, line=_line_of_key(source, unknown[0]),
            )
        try:
            return cls(**d)
        except TypeError as e:
            raise PlmkitError(f"bad config for {cls.__name__}: {e}", path=source) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self: C, **changes: Any) -> C:
        return self.from_dict({**self.to_dict(), **changes})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _line_of_key(source: str | Path | None, key: str) -> int | None:
    """The 1-based line where `key = …` is set in a TOML/JSON source file, for error messages."""
    if source is None or not Path(source).is_file():
        return None
    pattern = re.compile(rf'^\s*"?{re.escape(key)}"?\s*[=:]')
    for n, line in enumerate(Path(source).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if pattern.match(line):
            return n
    return None


def read_toml_file(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    """A TOML settings file as a dict; a missing, non-UTF-8 or malformed file is a PlmkitError naming it."""
    p = Path(path)
    if not p.is_file():
        raise PlmkitError(f"{what} not found", path=p)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8-sig"))  # a byte-order mark is not an error
    except tomllib.TOMLDecodeError as e:
        # tomllib's "(at line N, column M)" becomes path:N, as every bad-input error names its place
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        raise PlmkitError(f"not valid TOML: {str(e)[:m.start()].strip() if m else e}", path=p,
                          line=int(m.group(1)) if m else None) from None
    except UnicodeDecodeError:
        raise PlmkitError("not UTF-8 text", path=p) from None


def beside(path: str | os.PathLike, value: str | None) -> str | None:
    """A path written in the settings file at `path`, read from that file's directory unless absolute."""
    return str((Path(path).parent / value).resolve()) if value and not Path(value).is_absolute() else value
