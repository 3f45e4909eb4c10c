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
