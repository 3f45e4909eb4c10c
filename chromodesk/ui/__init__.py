"""The desktop app: the only package that imports PySide6 / pyqtgraph.

Shape (see ``DESIGN.md``): the ``Karyotype`` document is the only state; widgets show
it and turn user gestures into ``QUndoCommand``s; background work runs in ``jobs``
on plain values. ``workspace.Workspace`` ties one open cell, its undo stack and the
jobs together so that ``main_window`` is wiring only.
"""
