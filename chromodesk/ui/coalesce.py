"""Run a widget update once per event-loop turn, however many document events asked for it.

A classification brings 46 predictions and a reassignment at once; redrawing a panel for
each of them is the stall the app must avoid.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, QTimer


class NextTurn:
    """Callable: ``soon()`` schedules ``fn`` on the next event-loop turn unless already scheduled.

    ``owner`` bounds the call's lifetime: a deleted widget's update never runs.
    """

    def __init__(self, owner: QObject, fn: Callable[[], object]):
        self._owner, self._fn = owner, fn
        self.pending = False

    def __call__(self, *_) -> None:
        if not self.pending:
            self.pending = True
            QTimer.singleShot(0, self._owner, self._run)

    def _run(self) -> None:
        self.pending = False
        self._fn()
