"""Background jobs: how they share the machine with the window."""

from __future__ import annotations

import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux; Qt priorities elsewhere")
def test_background_work_gives_way_to_the_gui_thread(qtbot):
    """Preprocessing and the network use every core; the window must still get the CPU first."""
    import os
    import threading

    from chromodesk.ui.jobs import Job, JobRunner

    def niceness(*, progress, is_cancelled):
        seen = [os.getpriority(os.PRIO_PROCESS, threading.get_native_id())]
        helper = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        helper.start()
        helper.join()
        return seen

    from PySide6.QtCore import QThreadPool

    runner = JobRunner()
    runner.pool = QThreadPool()  # its own threads, whatever other tests left in the global pool
    job = Job("nice", niceness)
    with qtbot.waitSignal(job.signals.done, timeout=60000) as got:
        runner.start(job)
    gui = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker, started_by_worker = got.args[0]
    assert worker > gui and started_by_worker == worker  # threads a job starts (OpenCV strips, torch) inherit it
    assert runner.shutdown()


def test_work_handed_to_a_worker_keeps_the_cells_note():
    """The karyogram and the exports are made from a worker's copy of the cell: a cell marked not
    analysable must say so there too, with its comment (the copy once dropped both)."""
    from chromodesk.core.document import Box, Karyotype
    from chromodesk.core.export import review_status
    from chromodesk.ui.jobs import detached

    doc = Karyotype(image_path="cell.png", image_sha256="ab" * 32, width=100, height=100)
    doc.add(Box(1, 1, 10, 10))
    doc.set_cell_note(True, "overlapping spread", in_report=True)
    copy = detached(doc)
    assert review_status(copy) == "NOT ANALYSABLE: overlapping spread"
    assert copy.in_report and copy.next_id == doc.next_id and not copy._listeners
