"""One editor per cell: a lock file beside its session names the process that edits it.

``<session>.lock`` is JSON: the owner's pid, host, start time, user and a token (one per
window, so two windows of one process are told apart). Whoever finds a live owner must
not write the session (the app opens the cell read-only): otherwise its older state would
overwrite the owner's newer work at its next autosave. A lock whose process is gone (a
crash, ``kill -9``, a power cut) is stale and taken over; so is one whose pid now belongs
to another process (Linux: the process start time and boot id are recorded and compared).
A lock written on another host (a shared folder) cannot be checked and is respected.

Qt-free and torch-free; stdlib only.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

LOCK_SUFFIX = ".lock"


def lock_path_for(session_path: str | Path) -> Path:
    session_path = Path(session_path)
    return session_path.with_name(session_path.name + LOCK_SUFFIX)


def new_token() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class LockOwner:
    pid: int
    host: str
    token: str
    since: str = ""
    user: str = ""
    boot_id: str | None = None
    proc_start: int | None = None

    def describe(self) -> str:
        """For the user: who holds the cell (``process 1234 of ann on lab-pc, since 09:12 UTC``)."""
        who = f" of {self.user}" if self.user else ""
        when = f", since {self.since[11:16]} UTC" if len(self.since) >= 16 else ""
        mine = " (another window of this ChromoDesk)" if self.pid == os.getpid() and self.host == _host() else ""
        return f"process {self.pid}{who} on {self.host}{when}{mine}"


def _host() -> str:
    try:
        return socket.gethostname()
    except OSError:  # pragma: no cover
        return "unknown-host"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return ""


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) from Linux's /proc; None elsewhere or if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # the name may hold spaces and parentheses
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (a zombie counts as dead)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - os.kill(pid, 0) would terminate it there
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # access denied: it exists
        code = ctypes.c_ulong()
        try:
            return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return False
    stat = _proc_stat(pid)
    return not (stat is not None and stat[0] in ("Z", "X"))


def owner_alive(owner: LockOwner) -> bool:
    """False when the owner is certainly gone; True when alive or when it cannot be told (another host)."""
    if owner.host != _host():
        return True
    if owner.boot_id and _boot_id() and owner.boot_id != _boot_id():
        return False  # written before the last reboot
    if not pid_alive(owner.pid):
        return False
    if owner.proc_start is not None:
        stat = _proc_stat(owner.pid)
        if stat is not None and stat[1] != owner.proc_start:
            return False  # the pid was reused by another process
    return True


def read_owner(path: str | Path) -> LockOwner | None:
    """The owner named in a lock file; None if there is none or it is unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return LockOwner(pid=int(data["pid"]), host=str(data["host"]), token=str(data["token"]),
                         since=str(data.get("since", "")), user=str(data.get("user", "")),
                         boot_id=data.get("boot_id"), proc_start=data.get("proc_start"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def this_process(token: str) -> LockOwner:
    stat = _proc_stat(os.getpid())
    return LockOwner(pid=os.getpid(), host=_host(), token=token,
                     since=datetime.now(timezone.utc).replace(microsecond=0).isoformat(), user=_user(),
                     boot_id=_boot_id(), proc_start=stat[1] if stat else None)


class CellLock:
    """The lock of one session file for one owner ``token``.

    ``acquire()`` returns None when this owner holds the lock (also when it already did),
    else the live owner that holds it. A folder where no lock can be written (read-only)
    gives no lock and no owner: ``held`` stays False and nothing else changes.
    """

    def __init__(self, session_path: str | Path, token: str):
        self.path = lock_path_for(session_path)
        self.token = token
        self.held = False

    def acquire(self) -> LockOwner | None:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = read_owner(self.path)
                if owner is not None and owner.token == self.token:
                    self.held = True
                    return None
                if owner is not None and owner_alive(owner):
                    return owner
                if owner is None and self._young():
                    # just created by another process that has not written it yet
                    return LockOwner(pid=0, host=_host(), token="", user="another process")
                self._remove_stale(owner)
                continue
            except OSError:
                return None  # cannot lock here (read-only folder): the session cannot be written either
            me = this_process(self.token)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(asdict(me), fh)
                fh.flush()
                os.fsync(fh.fileno())
            self.held = True
            return None
        return read_owner(self.path) or LockOwner(pid=0, host=_host(), token="", user="another process")

    def _young(self, seconds: float = 5.0) -> bool:
        import time

        try:
            return time.time() - self.path.stat().st_mtime < seconds
        except OSError:
            return False

    def _remove_stale(self, owner: LockOwner | None) -> None:
        """Take a dead owner's lock away without ever deleting a live one that replaced it meanwhile."""
        aside = self.path.with_name(f"{self.path.name}.{self.token}.stale")
        try:
            os.replace(self.path, aside)
        except OSError:
            return
        moved = read_owner(aside)
        if moved is not None and (owner is None or moved.token != owner.token):
            try:  # another process took the lock between our read and the move: give it back
                os.link(aside, self.path)
            except OSError:
                pass
        try:
            aside.unlink()
        except OSError:
            pass

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        if not self.held:
            return
        self.held = False
        owner = read_owner(self.path)
        if owner is not None and owner.token == self.token:
            try:
                self.path.unlink()
            except OSError:
                pass


__all__ = ["CellLock", "LockOwner", "lock_path_for", "new_token", "owner_alive", "pid_alive", "read_owner"]
