"""The cell lock: one editor per session file; a dead owner's lock is stale, a live one's is respected."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from chromodesk.core.lock import CellLock, lock_path_for, new_token, owner_alive, read_owner


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(session, pid, **extra):
    data = {"pid": pid, "host": socket.gethostname(), "token": "someone", "since": "2026-12-01T09:12:00+00:00",
            "user": "ann"} | extra
    lock_path_for(session).write_text(json.dumps(data))


def test_first_owner_holds_it_a_second_is_told_who_and_release_frees_it(tmp_path):
    session = tmp_path / "cell.jpg.chromodesk.json"
    mine, theirs = CellLock(session, new_token()), CellLock(session, new_token())
    assert mine.acquire() is None and mine.held
    assert mine.acquire() is None  # again: still ours
    owner = theirs.acquire()
    assert owner is not None and not theirs.held and owner.pid == os.getpid()
    assert f"process {os.getpid()}" in owner.describe() and "another window" in owner.describe()
    theirs.release()  # not held: must not remove the owner's lock
    assert read_owner(lock_path_for(session)).token == mine.token
    mine.release()
    assert not lock_path_for(session).exists()
    assert theirs.acquire() is None and theirs.held


def test_a_dead_process_lock_is_taken_over(tmp_path):
    session = tmp_path / "s.json"
    _write_lock(session, _dead_pid())
    lock = CellLock(session, new_token())
    assert lock.acquire() is None and read_owner(lock_path_for(session)).token == lock.token
    assert list(tmp_path.iterdir()) == [lock_path_for(session)]  # nothing left from the takeover


def test_a_live_process_lock_is_respected(tmp_path):
    session = tmp_path / "s.json"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _write_lock(session, proc.pid)
        owner = CellLock(session, new_token()).acquire()
        assert owner is not None and owner.pid == proc.pid and "of ann" in owner.describe()
    finally:
        proc.kill()
        proc.wait()
    assert CellLock(session, new_token()).acquire() is None  # and once it is gone, stale


def test_a_reused_pid_or_a_reboot_makes_it_stale(tmp_path):
    session = tmp_path / "s.json"
    _write_lock(session, os.getpid(), proc_start=1)  # our pid, but not our start time: a reused pid
    if sys.platform.startswith("linux"):
        assert not owner_alive(read_owner(lock_path_for(session)))
        _write_lock(session, os.getpid(), boot_id="not-this-boot")
        assert not owner_alive(read_owner(lock_path_for(session)))
    _write_lock(session, os.getpid(), host="another-host")  # cannot be checked from here: respected
    assert owner_alive(read_owner(lock_path_for(session)))


def test_an_unreadable_lock_is_respected_while_young_and_taken_when_old(tmp_path):
    session = tmp_path / "s.json"
    path = lock_path_for(session)
    path.write_text("")  # being written by another process right now
    assert CellLock(session, new_token()).acquire() is not None
    old = time.time() - 60
    os.utime(path, (old, old))
    assert CellLock(session, new_token()).acquire() is None
