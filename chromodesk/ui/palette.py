"""The label palette (24 buttons in Denver groups) and the keyboard grammar of review.

Keyboard (anywhere in the main window except text fields): type ``1``…``22``, ``X`` or
``Y`` then Enter to label the selected chromosome; Backspace/Escape edit the typed
label; Space accepts the selected chromosome's label; Tab jumps to the next least
confident chromosome. The palette only emits intents; ``Workspace`` turns them into
undo commands.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from chromodesk.core.labels import CLASSES, DENVER_GROUPS

from . import style
from .coalesce import NextTurn

# palette groups: Denver A-G, with X beside group C and Y beside group G (as on the karyogram)
PALETTE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (g, labels + (("X",) if g == "C" else ("Y",) if g == "G" else ())) for g, labels in DENVER_GROUPS.items()
)


class LabelPalette(QWidget):
    labelClicked = Signal(str)
    acceptClicked = Signal()
    acceptAllClicked = Signal()
    nextClicked = Signal()
    rejectClicked = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.buttons: dict[str, QPushButton] = {}
        self.info = QLabel("Select a chromosome")
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.typed = QLabel("")
        self.typed.setMinimumWidth(90)
        self.typed.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        groups = QGridLayout()
        groups.setSpacing(4)
        positions = {"A": (0, 0), "B": (0, 1), "C": (1, 0), "D": (2, 0), "E": (2, 1), "F": (3, 0), "G": (3, 1)}
        spans = {"C": 2}
        for name, labels in PALETTE_GROUPS:
            box = QGroupBox(name)
            row = QHBoxLayout(box)
            row.setContentsMargins(4, 2, 4, 4)
            row.setSpacing(3)
            for label in labels:
                button = QPushButton(label)
                button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the review grammar
                button.setCheckable(True)
                button.setMinimumWidth(30)
                button.setToolTip(f"Label the selected chromosome {label} (or type {label} then Enter)")
                button.clicked.connect(lambda _=False, label=label: self.labelClicked.emit(label))
                self.buttons[label] = button
                row.addWidget(button)
            r, c = positions[name]
            groups.addWidget(box, r, c, 1, spans.get(name, 1))

        actions = QGridLayout()  # two by two: the dock stays narrow enough for a 1024-pixel screen
        self.accept_button = QPushButton("Accept (Space)")
        self.accept_all_button = QPushButton("Accept all")
        self.next_button = QPushButton("Next unsure (Tab)")
        self.reject_button = QPushButton("Not a chromosome (N)")
        self.reject_button.setCheckable(True)
        self.reject_button.setToolTip("The selected box holds no chromosome (background, debris, a nucleus, a "
                                      "fragment or a merged cluster): out of the counts, the karyogram and the "
                                      "karyotype. Click again, or give it a label, to bring it back.")
        for b, signal in ((self.accept_button, self.acceptClicked), (self.accept_all_button, self.acceptAllClicked),
                          (self.next_button, self.nextClicked), (self.reject_button, self.rejectClicked)):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(signal.emit)
            actions.addWidget(b, actions.count() // 2, actions.count() % 2)
        self.accept_all_button.setToolTip("Confirm the shown label of every chromosome not yet confirmed")

        self.info.setMinimumHeight(2 * self.info.fontMetrics().height() + 4)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        head = QHBoxLayout()
        head.addWidget(self.info, 1)
        head.addWidget(self.typed)
        layout.addLayout(head)
        layout.addLayout(groups)
        layout.addLayout(actions)
        self.cell = None
        # many document events arrive together (46 predictions): redraw once, on the next loop turn
        self.refresh_soon = NextTurn(self, self.refresh)

    def set_cell(self, cell) -> None:
        if self.cell is not None:
            self.cell.changed.disconnect(self.refresh_soon)
            self.cell.selectionChanged.disconnect(self.refresh)
        self.cell = cell
        if cell is not None:
            cell.changed.connect(self.refresh_soon)
            cell.selectionChanged.connect(self.refresh)
        self.refresh()

    def show_typed(self, text: str, valid: bool) -> None:
        if not text:
            self.typed.setText("")
        else:
            colour = "#1a7f37" if valid else "#c00000"
            self.typed.setText(f"<span style='color:{colour}'>typed <b>{text}</b>{' ⏎' if valid else ''}</span>")

    def refresh(self, *_):
        cell = self.cell
        record = cell.doc.records.get(cell.selected) if (cell is not None and cell.selected) else None
        counts = cell.counts() if cell is not None else {}
        top = {label for label, _ in record.top_k(3)} if record is not None else set()
        for label, button in self.buttons.items():
            button.setEnabled(record is not None)
            button.setChecked(record is not None and record.label == label)
            k = counts.get(label, 0)
            font = button.font()
            font.setBold(label in top)
            button.setFont(font)
            button.setToolTip(f"{label}: {k} in this cell. Label the selected chromosome {label} "
                              f"(or type {label} then Enter)")
        self.accept_button.setEnabled(record is not None and not record.confirmed and record.label is not None)
        self.accept_all_button.setEnabled(cell is not None and any(not r.confirmed for r in cell.doc))
        self.reject_button.setEnabled(record is not None)
        self.reject_button.setChecked(record is not None and record.rejected)
        if record is None:
            self.info.setText("Select a chromosome: click its box, its row or its picture in the karyogram")
            return
        top3 = ", ".join(f"{label} <small>{p:.2f}</small>" for label, p in record.top_k(3))
        colour = style.colour(record).name()
        self.info.setText(f"<b>{record.id}</b> &nbsp;<span style='color:{colour};font-size:large'><b>"
                          f"{record.label or '?'}</b></span> &nbsp;{style.status_text(record)}"
                          + (f"<br>guesses: {top3}" if top3 else ""))


class ReviewKeys(QObject):
    """Application event filter for the review keys while ``window`` is active."""

    labelEntered = Signal(str)
    acceptPressed = Signal()
    nextPressed = Signal()
    rejectPressed = Signal()
    escapePressed = Signal()  # with nothing typed: leave draw mode
    enterPressed = Signal()  # with nothing typed: close the outline being drawn
    backspacePressed = Signal()  # with nothing typed: take back the outline's last point
    typedChanged = Signal(str, bool)  # text so far, is it a label

    def __init__(self, window: QWidget):
        super().__init__(window)
        self.window = window
        self.buffer = ""
        self.enabled = True

    def _applies(self, obj) -> bool:
        if not self.enabled or not isinstance(obj, QWidget) or obj.window() is not self.window:
            return False
        focus = self.window.focusWidget()
        return not isinstance(focus, (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox)) and not (
            isinstance(focus, QComboBox) and focus.isEditable())

    def clear(self, *_) -> None:
        """Another chromosome was selected: what was typed for the previous one is dropped."""
        if self.buffer:
            self._set("")

    def _set(self, text: str) -> None:
        self.buffer = text
        self.typedChanged.emit(text, text in CLASSES)

    def eventFilter(self, obj, event) -> bool:
        if event.type() != QEvent.Type.KeyPress or not self._applies(obj):
            return False
        key = event.key()
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if mods not in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ShiftModifier):
            return False
        text = event.text().upper()
        if text.isdigit() and len(text) == 1 and mods == Qt.KeyboardModifier.NoModifier:
            candidate = self.buffer + text if self.buffer.isdigit() and len(self.buffer) < 2 else text
            self._set(candidate if candidate != "0" else "")
            return True
        if text in ("X", "Y"):
            self._set(text)
            return True
        if text == "N" and mods == Qt.KeyboardModifier.NoModifier:
            self._set("")
            self.rejectPressed.emit()
            return True
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.buffer:
            label, valid = self.buffer, self.buffer in CLASSES
            self._set("")
            if valid:
                self.labelEntered.emit(label)
            return True
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and mods == Qt.KeyboardModifier.NoModifier:
            self.enterPressed.emit()
            return False  # the focused widget still sees its Enter
        if key == Qt.Key.Key_Backspace and self.buffer:
            self._set(self.buffer[:-1])
            return True
        if key == Qt.Key.Key_Backspace and mods == Qt.KeyboardModifier.NoModifier:
            self.backspacePressed.emit()
            return True  # seen once: unaccepted, it would come back here from each parent (text fields never get here)
        if key == Qt.Key.Key_Escape and self.buffer:
            self._set("")
            return True
        if key == Qt.Key.Key_Escape:
            self.escapePressed.emit()
            return False  # dialogs and menus still see their Esc
        if key == Qt.Key.Key_Space and mods == Qt.KeyboardModifier.NoModifier:
            self.acceptPressed.emit()
            return True
        if key == Qt.Key.Key_Tab and mods == Qt.KeyboardModifier.NoModifier:
            self.nextPressed.emit()
            return True
        return False
