"""Atomic file writes: a temp file in the same folder, fsync, then rename over the target.

A crash mid-write leaves the old file intact, never a half-written one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _stage(path: Path, data: bytes) -> Path:
    """``data`` in a synced temp file beside ``path``; the caller renames it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; exports should be readable like any file
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    tmp = _stage(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_all(files: dict[Path, bytes]) -> list[Path]:
    """Several files as one set: every one is written and synced to a temp file first, and
    only then are they renamed into place. A full disk or any other failure while writing
    leaves none of them (and the old versions untouched)."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            staged.append((_stage(Path(path), data), Path(path)))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in staged:  # renames within one folder: they do not run out of space
        os.replace(tmp, path)
    return [path for _, path in staged]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temps(path: str | Path, older_than_s: float = 60.0) -> list[Path]:
    """Delete the temp files that a write of ``path`` left behind when its process was killed
    (``.NAME.<random>.tmp`` beside it). Recent ones may belong to a write in progress: kept."""
    import time

    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    now = time.time()
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime >= older_than_s:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            pass  # another process took it, or no permission: not ours to force
    return removed
