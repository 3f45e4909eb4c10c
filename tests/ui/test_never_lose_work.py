"""Work is never lost, and concurrent work never clobbers it (issue 18, items 3 and 4).

* the real app killed with SIGKILL in the middle of the automatic relabelling restarts with
  every confirmed label, a whole cell and no temp file;
* jobs racing the user: a box changed while it is classified, the window closed, a second
  job started, another model loaded: no stale answer lands, nothing keeps running;
* two windows (or two processes) on one cell: the second is read-only and never writes
  its older state over the first one's work.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QThreadPool

from chromodesk.core.document import Box
from chromodesk.core.lock import lock_path_for, read_owner
from chromodesk.core.session import default_session_path, load_session

from .conftest import IMAGE_SIZE, open_and_classify
from .fakes import FakeClassifier

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_workers():
    """At least two worker threads (a one-core run has one): the second job then really runs beside the first."""
    pool = QThreadPool.globalInstance()
    before = pool.maxThreadCount()
    pool.setMaxThreadCount(max(2, before))
    yield
    pool.setMaxThreadCount(before)


def temp_files(session: Path) -> list[Path]:
    """What an atomic write of ``session`` leaves beside it when it is killed (see core/atomic.py)."""
    return sorted(session.parent.glob(f".{session.name}.*.tmp"))


def relabel_recipe(doc):
    """An unsure chromosome u (0.50 for a, 0.35 for b) and another b: confirming that b as a makes the
    cell assignment move u to b (see test_review_flow)."""
    unsure = next(r for r in doc if r.probabilities and sorted(r.probabilities)[-2] > 0.3)
    a, b = unsure.label, unsure.top_k(2)[1][0]
    other = next(r for r in doc if r.label == b and r.id != unsure.id)
    return unsure, other, a, b


# -- 1. kill -9 ----------------------------------------------------------------------------------------------
def run_child_until_frozen(image: Path, xml: Path, state: Path, stop_at: str, tmp_path: Path) -> dict:
    """Start the real app (tests/ui/crash_child.py), wait until it freezes where asked, kill -9 it."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path / "child-home"),
               XDG_CONFIG_HOME=str(tmp_path / "child-config"), CHROMODESK_LOG_DIR=str(tmp_path / "child-log"),
               PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tests.ui.crash_child", str(image), str(xml), str(state), stop_at],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, proc.kill)  # a hung child ends the wait with a failure, not a hung test run
    watchdog.start()
    try:
        line = proc.stdout.readline()
        alive = proc.poll() is None
        if line.strip() != "READY" or not alive:
            proc.kill()
            pytest.fail(f"the app did not reach the moment to kill it ({line!r}):\n{proc.communicate()[1][-3000:]}")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    return json.loads(state.read_text())


@pytest.mark.parametrize("stop_at", ["relabel", "write"])
def test_kill_9_during_the_automatic_relabelling_loses_no_confirmed_label(qtbot, make_window, fake, cell_files,
                                                                         tmp_path, stop_at):
    """The real app confirms six labels (the last one a correction that makes the cell assignment move
    another chromosome) and is killed with SIGKILL as that relabelling begins (``relabel``) or while its
    result is being written (``write``). Reopening the image restores every confirmed label, the whole
    cell exactly as the user saw it relabelled, removes the killed write's temp file, and takes over the
    dead app's lock."""
    image, xml = cell_files
    session = default_session_path(image)
    seen = run_child_until_frozen(image, xml, tmp_path / "state.json", stop_at, tmp_path)
    assert read_owner(lock_path_for(session)).pid == seen["pid"]  # the dead app's lock is still there
    if stop_at == "write":
        assert Path(seen["temp"]).is_file() and temp_files(session) == [Path(seen["temp"])]  # killed mid-write

    window = make_window(fake)
    ws = window.workspace
    with qtbot.waitSignal(ws.cellChanged, timeout=20000):
        ws.open_image(image)
    qtbot.waitUntil(ws.is_settled, timeout=20000)
    doc = ws.cell.doc
    assert ws.cell.source == "session"
    assert "Restored your saved review (6/46 confirmed)" in window.statusBar().currentMessage()
    assert fake.calls == []  # nothing reclassified: the probabilities came back with the session
    for rid, label in seen["confirmed"].items():
        assert doc.get(rid).final == label and doc.get(rid).confirmed_by == seen["reviewer"]
    moved = seen["moved"]
    assert doc.get(moved["corrected"]).final == moved["from"]
    assert doc.get(moved["id"]).label == moved["to"]  # the relabelling the correction called for is there
    # the whole cell as the user saw it once relabelled: every label, assignment and probability
    restored = {r.id: {"final": r.final, "confirmed_by": r.confirmed_by, "assigned": r.assigned, "label": r.label,
                       "probabilities": list(r.probabilities), "box": r.box.as_list()} for r in doc}
    assert restored == seen["cell"]
    assert temp_files(session) == []
    data = json.loads(session.read_text())
    assert data["image"]["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    # the dead app's lock is this window's now: the cell is editable and every change saved again
    assert not ws.cell.read_only and read_owner(lock_path_for(session)).pid == os.getpid()
    rid = next(r.id for r in doc if not r.confirmed)
    ws.set_label(rid, "Y")
    qtbot.waitUntil(lambda: load_session(session).get(rid).final == "Y", timeout=5000)


# -- 2a. a box changed while it is classified -----------------------------------------------------------------
def test_a_result_never_lands_on_a_box_moved_away_and_back_and_elsewhere(qtbot, make_window, cell_files):
    """Move a box (it is reclassified), undo the move and drag the box somewhere else while that job runs:
    the box has its old revision number again, but the job's answer is for the first place, not this one."""
    first, elsewhere = Box(900, 600, 960, 700), Box(40, 600, 100, 700)
    fake = FakeClassifier.from_voc(cell_files[1], IMAGE_SIZE)
    fake.labels_by_box.update({tuple(first.as_list()): "Y", tuple(elsewhere.as_list()): "X"})
    window = make_window(fake)
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    doc = ws.cell.doc
    rid = next(r.id for r in doc if r.label not in ("X", "Y"))
    fake.delay = 1.0
    fake.started.clear()
    ws.move_box(rid, first)
    assert ws.is_classifying() and fake.started.wait(20)
    window.undo_action.trigger()
    ws.move_box(rid, elsewhere)
    fake.delay = 0.0
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert doc.get(rid).box == elsewhere
    assert doc.get(rid).predicted == "X" and doc.get(rid).label == "X"  # not the "Y" of the place it left


# -- 2b. the window closed during a job ----------------------------------------------------------------------
def test_closing_during_classification_stops_the_worker_at_once_and_saves_the_whole_cell(qtbot, make_window,
                                                                                        cell_files):
    """Classify again (3 chunks of 1 s each), correct a label and close the window in the same moment:
    the window closes within a chunk, no worker thread is left or started afterwards, no answer is applied,
    and the session holds the correction with the relabelling it called for."""
    fake = FakeClassifier.from_voc(cell_files[1], IMAGE_SIZE)
    window = make_window(fake)
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    doc = ws.cell.doc
    unsure, other, a, b = relabel_recipe(doc)
    python_threads = {t for t in threading.enumerate() if not t.daemon}
    fake.delay = 1.0
    fake.started.clear()
    ws.classify(force=True)  # Cell ▸ Classify again
    assert fake.started.wait(20)
    applied = []
    ws.classified.connect(applied.append)
    ws.set_label(other.id, a)  # the correction; its autosave and relabelling are still queued
    t0 = time.monotonic()
    window.close()
    took = time.monotonic() - t0
    assert took < 1.8, f"closing took {took:.1f} s: it waited for the whole job (3 s)"
    assert QThreadPool.globalInstance().activeThreadCount() == 0
    session = default_session_path(cell_files[0])
    at_close = session.read_bytes()
    qtbot.wait(300)  # queued signals and timers run: nothing may start again, nothing is written any more
    assert QThreadPool.globalInstance().activeThreadCount() == 0 and ws.runner.active() == 0
    assert applied == []
    assert {t for t in threading.enumerate() if not t.daemon} <= python_threads  # no Python thread left either
    assert session.read_bytes() == at_close
    saved = load_session(session)
    assert saved.get(other.id).final == a and saved.get(other.id).confirmed_by == "tester"
    assert saved.get(unsure.id).label == b  # the relabelling was saved with the correction: a whole cell
    assert [r.assigned for r in saved] == [r.assigned for r in doc]
    assert not lock_path_for(default_session_path(cell_files[0])).exists()  # the lock is given back


# -- 2c. a second job while one runs -------------------------------------------------------------------------
def test_back_to_the_open_cell_before_another_one_arrives_keeps_it(qtbot, window, cell_files):
    """Open B, then change one's mind and go back to A (the open cell) before B is read: A stays."""
    import shutil

    image, xml = cell_files
    other = image.with_name("103082b.jpg")
    shutil.copy(image, other)
    shutil.copy(xml, xml.with_name("103082b.xml"))
    open_and_classify(qtbot, window, image)
    ws = window.workspace
    ws.open_image(other)
    ws.open_image(image)
    qtbot.waitUntil(lambda: ws.runner.active() == 0, timeout=20000)
    qtbot.wait(100)
    assert ws.cell.image_path == image and "103082.jpg" in window.windowTitle()
    assert not lock_path_for(default_session_path(other)).exists()  # B's lock was given back


class FirstAnswersWrong(FakeClassifier):
    """Answers "Y" for everything until told otherwise (a job for another cell, or an older model)."""

    wrong = True

    def predict_each(self, crops):
        out = super().predict_each(crops)
        if self.wrong:
            out[:] = 0.004
            out[:, -1] = 1.0
            out /= out.sum(axis=1, keepdims=True)
        return out


def test_opening_another_image_while_classifying_never_applies_the_first_result(qtbot, make_window, cell_files,
                                                                                 two_workers):
    import shutil

    image, xml = cell_files
    other = image.with_name("103082b.jpg")
    shutil.copy(image, other)
    shutil.copy(xml, xml.with_name("103082b.xml"))
    fake = FirstAnswersWrong.from_voc(xml, IMAGE_SIZE, delay=0.4)
    window = make_window(fake)
    ws = window.workspace
    ws.open_image(image)
    qtbot.waitUntil(ws.is_classifying, timeout=20000)
    assert fake.started.wait(20)  # cell A is being classified
    ws.open_image(other)
    qtbot.waitUntil(lambda: ws.cell.image_path == other, timeout=20000)
    fake.wrong = False
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert all(r.predicted != "Y" for r in ws.cell.doc)  # 103082 is 46,XX: no "Y" came from A's job
    assert ws.cell.iscn() == "46,XX"


def test_a_model_loaded_during_classification_replaces_the_running_jobs_answers(qtbot, make_window, cell_files,
                                                                                two_workers):
    """Tools ▸ Choose model while the first classification runs: the cell ends up with the new model's
    answers, not the old model's arriving late (the status bar names the new model)."""
    old = FirstAnswersWrong.from_voc(cell_files[1], IMAGE_SIZE, delay=0.4, model_id="old-model")
    new = FakeClassifier.from_voc(cell_files[1], IMAGE_SIZE, model_id="new-model")
    window = make_window(old)
    ws = window.workspace
    ws.open_image(cell_files[0])
    qtbot.waitUntil(ws.is_classifying, timeout=20000)
    assert old.started.wait(20)
    ws.classifier_factory = lambda: new
    ws.load_model()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert {r.model_id for r in ws.cell.doc} == {"new-model"}
    assert all(r.predicted != "Y" for r in ws.cell.doc) and ws.cell.iscn() == "46,XX"
    assert window.model_label.text() == "Model: new-model"


def test_classify_again_while_classifying_never_applies_the_first_jobs_answers(qtbot, make_window, cell_files):
    """Cell ▸ Classify again, twice, while the first classification runs: one job at a time, no crash,
    and the cell shows the last job's answers only."""
    fake = FirstAnswersWrong.from_voc(cell_files[1], IMAGE_SIZE, delay=0.4)
    window = make_window(fake)
    ws = window.workspace
    ws.open_image(cell_files[0])
    qtbot.waitUntil(ws.is_classifying, timeout=20000)
    assert fake.started.wait(20)
    applied = []
    ws.classified.connect(applied.append)
    ws.classify(force=True)
    ws.classify(force=True)
    fake.wrong = False
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert applied == [46]  # one result applied: the last job's
    assert all(r.predicted != "Y" for r in ws.cell.doc) and ws.cell.iscn() == "46,XX"


# -- 2d. two windows, two processes --------------------------------------------------------------------------
def test_a_second_window_on_the_same_cell_is_read_only_and_never_overwrites_the_first(qtbot, make_window, fake,
                                                                                      cell_files):
    image = cell_files[0]
    session = default_session_path(image)
    first = make_window(fake)
    open_and_classify(qtbot, first, image)
    ws1 = first.workspace
    ids = list(ws1.cell.doc.records)
    ws1.set_label(ids[0], "X")
    qtbot.waitUntil(lambda: session.is_file() and load_session(session).get(ids[0]).final == "X", timeout=5000)

    second = make_window(fake)
    ws2 = second.workspace
    with qtbot.waitSignal(ws2.cellChanged, timeout=20000):
        ws2.open_image(image)
    qtbot.waitUntil(ws2.is_settled, timeout=20000)
    assert ws2.cell.read_only and ws2.cell.doc.get(ids[0]).final == "X"  # it shows the first window's work
    assert second.windowTitle().endswith("[read-only]") and second.read_only_label.isVisibleTo(second)
    said = second.statusBar().currentMessage()
    assert "Read-only" in said and f"process {os.getpid()}" in said and "nothing is saved from this window" in said

    ws1.set_label(ids[1], "7")  # the first window goes on working: the second's copy is now older
    qtbot.waitUntil(lambda: load_session(session).get(ids[1]).final == "7", timeout=5000)
    ws2.set_label(ids[2], "Y")  # refused, and said so
    assert ws2.cell.doc.get(ids[2]).final is None and not second.undo_action.isEnabled()
    assert "the change was not made" in second.statusBar().currentMessage()
    with qtbot.waitSignal(ws2.classified, timeout=30000):
        ws2.classify(force=True)  # its document changes (new predictions): still nothing is written
    qtbot.waitUntil(ws2.is_settled, timeout=20000)
    second.close()
    saved = load_session(session)
    assert saved.get(ids[0]).final == "X" and saved.get(ids[1]).final == "7" and saved.get(ids[2]).final is None
    assert read_owner(lock_path_for(session)).token == ws1.lock_token  # closing the reader kept the editor's lock

    ws1.set_label(ids[3], "8")  # the first window is unaffected
    qtbot.waitUntil(lambda: load_session(session).get(ids[3]).final == "8", timeout=5000)


def test_when_the_editing_window_closes_the_read_only_one_takes_over_with_its_latest_work(qtbot, make_window, fake,
                                                                                         cell_files):
    image = cell_files[0]
    session = default_session_path(image)
    first = make_window(fake)
    open_and_classify(qtbot, first, image)
    second = make_window(fake)
    ws1, ws2 = first.workspace, second.workspace
    with qtbot.waitSignal(ws2.cellChanged, timeout=20000):
        ws2.open_image(image)
    qtbot.waitUntil(ws2.is_settled, timeout=20000)
    assert ws2.cell.read_only
    rid = next(iter(ws1.cell.doc.records))
    ws1.set_label(rid, "X")  # after the second window read the session
    first.close()
    assert not lock_path_for(session).exists()
    other = list(ws2.cell.doc.records)[1]
    said = []
    ws2.message.connect(said.append)
    with qtbot.waitSignal(ws2.cellChanged, timeout=20000):
        ws2.set_label(other, "5")  # not made: the cell is read again first, with the first window's last change
    assert "reloading its latest saved review" in said[0] and "Restored" in said[-1]
    qtbot.waitUntil(ws2.is_settled, timeout=20000)
    assert not ws2.cell.read_only and not second.windowTitle().endswith("[read-only]")
    assert ws2.cell.doc.get(rid).final == "X" and ws2.cell.doc.get(other).final is None
    ws2.set_label(other, "5")
    qtbot.waitUntil(lambda: load_session(session).get(other).final == "5", timeout=5000)
    assert load_session(session).get(rid).final == "X"


def test_another_process_editing_the_cell_makes_it_read_only_until_that_process_is_gone(qtbot, make_window, fake,
                                                                                       cell_files):
    """A lock naming a live process (another ChromoDesk) is respected; once that process is dead it is stale."""
    import socket

    image = cell_files[0]
    session = default_session_path(image)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path_for(session).write_text(json.dumps({"pid": owner.pid, "host": socket.gethostname(),
                                                      "token": "other-app", "since": "2026-12-01T09:12:00+00:00",
                                                      "user": "ann"}))
        window = make_window(fake)
        ws = window.workspace
        open_and_classify(qtbot, window, image)
        assert ws.cell.read_only and f"process {owner.pid} of ann" in window.statusBar().currentMessage()
        rid = next(iter(ws.cell.doc.records))
        ws.set_label(rid, "X")
        assert ws.cell.doc.get(rid).final is None
        assert not session.exists()  # classified, relabelled, refused an edit: never written
    finally:
        owner.kill()
        owner.wait(30)
    with qtbot.waitSignal(ws.cellChanged, timeout=20000):
        ws.set_label(rid, "X")  # the owner is gone: its lock is stale, the cell is read again and editable
    qtbot.waitUntil(ws.is_settled, timeout=20000)
    assert not ws.cell.read_only and read_owner(lock_path_for(session)).token == ws.lock_token
    ws.set_label(rid, "X")
    qtbot.waitUntil(lambda: session.is_file() and load_session(session).get(rid).final == "X", timeout=5000)
