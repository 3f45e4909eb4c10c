"""Reading files that come from elsewhere (shared drives, e-mail, other programs) with limits
checked before the content is trusted: a regular file, a bounded size, text in a known
encoding, JSON without runaway nesting or numbers. Every refusal is an InputError naming
the file and the limit, never a traceback or a hang (a FIFO would block a plain read)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from .errors import InputError

MB = 1 << 20


def regular_file(path: str | Path, what: str = "file") -> Path:
    """``path`` if it is a regular file; else an InputError that says what is there instead."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(path, f"{what} not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot read the {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise InputError(path, f"not a file but a folder (expected a {what})")
    if not stat.S_ISREG(mode):
        raise InputError(path, f"not a file but a {'pipe' if stat.S_ISFIFO(mode) else 'device or socket'} "
                               f"(expected a {what})")
    return path


def read_limited(path: str | Path, limit_bytes: int, what: str = "file") -> bytes:
    """The bytes of a regular file no larger than ``limit_bytes`` (checked before reading)."""
    path = regular_file(path, what)
    size = path.stat().st_size
    if size > limit_bytes:
        raise InputError(path, f"{what} is {size / MB:,.1f} MB; the limit is {limit_bytes / MB:,.0f} MB")
    try:
        with open(path, "rb") as fh:
            return fh.read(limit_bytes + 1)
    except OSError as exc:
        raise InputError(path, f"cannot read the {what} ({exc.strerror or exc})") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path: str | Path, limit_bytes: int, what: str) -> Any:
    """JSON from a file: UTF-8 (a leading byte-order mark is accepted), at most ``limit_bytes``,
    no NaN/Infinity, numbers of at most 4,300 digits, nesting within Python's recursion limit."""
    path = Path(path)
    raw = read_limited(path, limit_bytes, what)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"{what} is not UTF-8 text (byte {exc.start}; corrupt or another encoding?)") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"corrupt {what} (invalid JSON at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise InputError(path, f"{what} is nested too deeply to be one of ours (corrupt or crafted)") from None
    except ValueError as exc:  # NaN / Infinity, or an integer longer than Python converts
        problem = "a number with thousands of digits" if "digits" in str(exc) else str(exc)
        raise InputError(path, f"corrupt {what} ({problem})") from None
