"""One exception type for bad input: its message is the one line the user sees."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A file the user gave us cannot be used. ``str(err)`` names the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = problem
        shown = _printable(self.path) if self.path else None  # a newline in a file name must not split the line
        super().__init__(f"{shown}: {_printable(problem)}" if shown else _printable(problem))


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
