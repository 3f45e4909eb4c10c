"""Refuse a Qt binding that corrupts the interpreter instead of crashing at random later.

PySide6 / shiboken6 6.12.0 (abi3 wheels) on Python 3.11 drop one reference to
``None`` on every call of a void method (and to ``True`` on every signal emission):
after a few thousand calls CPython aborts with "deallocating None". 6.11.3 is fine,
and Python 3.12+ is immune (``None`` is immortal there). A probe, not a version test,
so that a fixed build is accepted as soon as it exists.
"""

from __future__ import annotations

import sys


def binding_problem() -> str | None:
    """None if the Qt binding keeps reference counts right, else a one-line explanation."""
    from PySide6 import __version__ as version
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(64):
        probe.setObjectName("probe")
    lost = before - sys.getrefcount(None)
    if lost >= 32:
        return (f"PySide6 {version} loses a reference to None on every call on Python "
                f"{sys.version_info.major}.{sys.version_info.minor} and would crash the app; "
                "install PySide6-Essentials<6.12 (e.g. 6.11.3) or use Python 3.12+")
    return None
