"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import os


class PlmkitError(Exception):
    """A problem with the user's input: names the offending file (and line) where there is one."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None):
        self.message, self.path, self.line = message, path, line
        where = ""
        if path is not None:
            where = f"{os.fspath(path)}:{line}: " if line is not None else f"{os.fspath(path)}: "
        super().__init__(where + message)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a training run at a step boundary after writing a checkpoint there."""

    def __init__(self, step: int, checkpoint: str | os.PathLike):
        self.step, self.checkpoint = step, checkpoint
        super().__init__(f"interrupted after step {step}; checkpoint {os.fspath(checkpoint)}")
