"""The chromosome table: a QAbstractTableModel over the document's records and events."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QItemSelectionModel, QMimeData, QModelIndex, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from chromodesk.core.document import Event

from . import style
from .coalesce import NextTurn
from .karyogram import MIME

COLUMNS = ("ID", "Label", "Conf.", "Status")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ID_ROLE = Qt.ItemDataRole.UserRole + 2


class ChromosomeTableModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.cell = None
        self._ids: list[str] = []
        self._changed: set[str] = set()
        self._flush_soon = NextTurn(self, self._flush)

    def set_cell(self, cell) -> None:
        self.beginResetModel()
        if self.cell is not None:
            self.cell.changed.disconnect(self._on_event)
        self.cell = cell
        self._ids = list(cell.doc.records) if cell is not None else []
        if cell is not None:
            cell.changed.connect(self._on_event)
        self.endResetModel()

    def row_of(self, record_id: str) -> int:
        try:
            return self._ids.index(record_id)
        except ValueError:
            return -1

    def record_id(self, row: int) -> str:
        return self._ids[row]

    # -- Qt model API --------------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._ids)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        # Qt asks ~10 roles per cell per paint; answer the unused ones before any lookup
        if role not in _ROLES or not index.isValid() or self.cell is None:
            return None
        record = self.cell.doc.records.get(self._ids[index.row()])
        if record is None:
            return None
        col = index.column()
        if role == ID_ROLE:
            return record.id
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return record.id
            if col == 1:
                return style.short_label(record)
            if col == 2:
                return "" if record.confidence is None else f"{record.confidence:.2f}"
            if col == 3:
                return style.short_status(record)
        if role == SORT_ROLE:
            if col == 0:
                return _natural(record.id)
            if col == 1:
                return _label_key(record.label)
            if col == 2:
                return -1.0 if record.confidence is None else record.confidence
            return (1 if record.confirmed else 0, record.confidence or 0.0)
        if role == Qt.ItemDataRole.ForegroundRole and col in (1, 3):
            return style.colour(record)
        if role == Qt.ItemDataRole.ToolTipRole:
            return style.tooltip(record)
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: QModelIndex):
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    def mimeTypes(self) -> list[str]:
        return [MIME]

    def mimeData(self, indexes):
        mime = QMimeData()
        if indexes:
            mime.setData(MIME, self._ids[indexes[0].row()].encode())
        return mime

    # -- document events ---------------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        doc = self.cell.doc
        if event.kind == "reset":
            self.set_cell(self.cell)
            return
        if event.kind == "removed":
            row = self.row_of(event.record_id)
            if row >= 0:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._ids[row]
                self.endRemoveRows()
            return
        if event.kind == "added" and event.record_id not in self._ids:
            # where the document has it (an undo puts a chromosome back where it stood)
            order = {rid: k for k, rid in enumerate(doc.records)}
            row = sum(1 for rid in self._ids if order.get(rid, len(order)) < order[event.record_id])
            self.beginInsertRows(QModelIndex(), row, row)
            self._ids.insert(row, event.record_id)
            self.endInsertRows()
            return
        # a classification brings 46 predictions and one reassignment at once: repaint once,
        # on the next event-loop turn, instead of 47 times
        if event.record_id is None:
            self._changed.update(self._ids)
        elif event.record_id in doc.records:
            self._changed.add(event.record_id)
        if self._changed:
            self._flush_soon()

    def _flush(self) -> None:
        rows = [self.row_of(rid) for rid in self._changed]
        self._changed = set()
        rows = [r for r in rows if r >= 0]
        if rows:
            self.dataChanged.emit(self.index(min(rows), 0), self.index(max(rows), len(COLUMNS) - 1))


_ROLES = frozenset({Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.ToolTipRole,
                    Qt.ItemDataRole.TextAlignmentRole, SORT_ROLE, ID_ROLE})


def _natural(record_id: str):
    digits = "".join(ch for ch in record_id if ch.isdigit())
    return (record_id.rstrip("0123456789"), int(digits) if digits else 0)


def _label_key(label):
    from chromodesk.core.labels import CLASS_INDEX

    return CLASS_INDEX.get(label, 99)


class _Proxy(QSortFilterProxyModel):
    def lessThan(self, left, right) -> bool:
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


class ChromosomeTable(QTableView):
    """Sortable view; selection follows and drives the cell's selection."""

    selectRequested = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model_ = ChromosomeTableModel(self)
        self.proxy = _Proxy(self)
        self.proxy.setSourceModel(self.model_)
        self.proxy.setDynamicSortFilter(False)  # rows do not jump while the reviewer works
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setTabKeyNavigation(False)
        self.setAlternatingRowColors(True)
        self.setDragEnabled(True)  # a row dropped on a karyogram slot relabels the chromosome
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(22)
        header = self.horizontalHeader()
        # fixed widths: ResizeToContents would re-read every row on every change (seconds per classification)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        # all four widths before the stretch: the stretched "Status" never shrinks below the width it
        # had when the stretch began (Qt's default 100 px), and at 1024 px a scrollbar then hid it
        header.setMinimumSectionSize(36)
        for column, width in enumerate((44, 50, 46, 60)):
            self.setColumnWidth(column, width)
        header.setStretchLastSection(True)
        self.selectionModel().selectionChanged.connect(self._user_selected)
        self._syncing = False
        # when a row goes away Qt moves the current row to a neighbour, and with focus here that
        # selects it: that is not the user choosing a chromosome
        self._removing = False
        self.cell = None

    def set_cell(self, cell) -> None:
        if self.cell is not None:
            self.cell.selectionChanged.disconnect(self.show_selection)
        self.cell = cell
        self.model_.set_cell(cell)
        if cell is not None:
            cell.selectionChanged.connect(self.show_selection)
            self.show_selection(cell.selected)

    def rowsAboutToBeRemoved(self, parent, start, end) -> None:  # Qt's virtual, runs before the view moves on
        self._removing = True
        QTimer.singleShot(0, self, self._rows_gone)
        super().rowsAboutToBeRemoved(parent, start, end)

    def _rows_gone(self) -> None:
        self._removing = False
        if self.cell is not None:
            self.show_selection(self.cell.selected)  # the table shows the document's selection again

    def _user_selected(self, *_):
        if self._syncing or self._removing:
            return
        rows = self.selectionModel().selectedRows()
        if rows:
            self.selectRequested.emit(rows[0].data(ID_ROLE))

    def show_selection(self, record_id) -> None:
        self._syncing = True
        try:
            row = self.model_.row_of(record_id) if record_id is not None else -1
            if row < 0:
                self.clearSelection()
                return
            index = self.proxy.mapFromSource(self.model_.index(row, 0))
            self.selectionModel().select(index, QItemSelectionModel.SelectionFlag.ClearAndSelect
                                         | QItemSelectionModel.SelectionFlag.Rows)
            self.scrollTo(index)
        finally:
            self._syncing = False
