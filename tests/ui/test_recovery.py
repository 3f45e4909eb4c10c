"""Crash recovery: a session saved at the worst moment reopens as a consistent cell."""

from __future__ import annotations

from chromodesk.core.session import default_session_path, load_session

from .conftest import open_and_classify


def test_a_session_saved_mid_relabelling_reopens_consistent_and_without_temp_files(qtbot, make_window, fake, cell_files):
    """As after SIGKILL between a correction and the automatic relabelling: the session has the
    correction but stale assignments (two cells' worth of 1 and 2 swapped), and a temp file lies beside it."""
    import os
    import time

    from chromodesk.core.session import save_session
    from chromodesk.pipeline import reassign

    image = cell_files[0]
    window = make_window(fake)
    open_and_classify(qtbot, window, image)
    doc = window.workspace.cell.doc  # the first window stays open, as after a crash
    ones = [r for r in doc if r.assigned == "1"]
    ones[0].assigned = "2"  # stale: what a half-finished relabelling leaves
    path = default_session_path(image)
    save_session(doc, path)
    stale = path.parent / f".{path.name}.k3j2h1.tmp"
    stale.write_text("{half a session")
    old = time.time() - 600
    os.utime(stale, (old, old))
    other = make_window(fake)
    with qtbot.waitSignal(other.workspace.cellChanged, timeout=20000):
        other.workspace.open_image(image)
    qtbot.waitUntil(other.workspace.is_settled, timeout=20000)
    restored = other.workspace.cell.doc
    assert not stale.exists()
    expected = reassign(load_session(path))
    assert [r.assigned for r in restored] == expected.assigned
    assert other.workspace.cell.iscn() == "46,XX"
