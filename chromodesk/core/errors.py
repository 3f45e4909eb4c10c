"""One exception type for bad input: its message is the one line the user sees."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A file the user gave us cannot be used. ``str(err)`` names the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
