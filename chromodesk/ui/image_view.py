"""The metaphase image with one box per chromosome (pyqtgraph).

Zoom with the wheel, pan by dragging the background, levels in the histogram at the
right. A box is coloured by its state and shows its label; hovering shows the top-3
guesses; a click selects it. The selected box can be dragged and resized; the change
becomes one undo command when the drag finishes. In draw mode a drag on the image
draws a new box; in knife mode it draws a straight line that cuts a chromosome in two. In brush
and polygon mode the selected chromosome's outline is painted or redrawn (``outline_tools``).
Ctrl+click (or Shift+click) picks a second chromosome besides the selected one (for Join).
The view never edits the document itself: it emits requests.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainterPath, QPen
from PySide6.QtWidgets import (
    QGraphicsItem, QGraphicsLineItem, QGraphicsPathItem, QGraphicsRectItem, QLabel, QVBoxLayout, QWidget,
)

from chromodesk.core.document import Box, ChromosomeRecord, Event

from . import style
from .coalesce import NextTurn
from .outline_tools import OutlineTools


# a pause between chunks of box creation: a zero timer would run every chunk (and the
# repaint each one triggers) in one event-loop pass, which is the stall chunking avoids
_BREATHE_MS = 4


def _label_font() -> QFont:
    font = QFont()
    font.setPointSize(8)
    font.setBold(True)
    return font


class BoxLabel(QGraphicsItem):
    """The label tab above a box: a filled rectangle with bold text, at screen size.

    Painted directly rather than with pg.TextItem, whose rich-text document made
    creating, relabelling and painting 46 labels the largest GUI stall of a new cell.
    """

    PAD = 2.0

    def __init__(self, parent: QGraphicsItem):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._font = _label_font()
        self._metrics = QFontMetricsF(self._font)
        self._text = ""
        self._fill = QColor(0, 0, 0)
        self._border = QColor(0, 0, 0)
        self._rect = QRectF()

    def set_label(self, text: str, fill: QColor, border: QColor) -> None:
        if text != self._text:
            self.prepareGeometryChange()
            self._text = text
            w = self._metrics.horizontalAdvance(text) + 2 * self.PAD if text else 0.0
            h = self._metrics.height() + self.PAD if text else 0.0
            self._rect = QRectF(0.0, -h, w, h)  # above the box's top-left corner
        self._fill, self._border = fill, border
        self.update()

    def toPlainText(self) -> str:  # same name as Qt's text items, for tests and accessibility
        return self._text

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter, option, widget=None) -> None:
        if not self._text:
            return
        painter.setPen(QPen(self._border))
        painter.setBrush(self._fill)
        painter.drawRect(self._rect)
        painter.setPen(QPen(QColor(255, 255, 255)))
        painter.setFont(self._font)
        painter.drawText(self._rect, Qt.AlignmentFlag.AlignCenter, self._text)


class CellViewBox(pg.ViewBox):
    """A ViewBox that can draw rectangles (draw mode) and knife lines (knife mode) and reports
    clicks on the background."""

    boxDrawn = Signal(object)  # QRectF, image coordinates
    knifeDrawn = Signal(object, object)  # QPointF, QPointF: the line's ends, image coordinates
    backgroundClicked = Signal()

    def __init__(self):
        super().__init__(invertY=True, lockAspect=True, enableMenu=False)
        self.draw_mode = False
        self.keep_drawing = False
        self.knife_mode = False
        self._knife = QGraphicsLineItem()
        pen = QPen(style.KNIFE, 2)
        pen.setCosmetic(True)
        self._knife.setPen(pen)
        self._knife.setZValue(1000)
        self._knife.hide()
        self.addItem(self._knife, ignoreBounds=True)
        self._rubber = QGraphicsRectItem()
        pen = QPen(style.SELECTED, 2, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._rubber.setPen(pen)
        self._rubber.setZValue(1000)
        self._rubber.hide()
        self.addItem(self._rubber, ignoreBounds=True)
        self.tools = OutlineTools(self)

    @property
    def brush_mode(self) -> bool:
        return self.tools.brush

    @property
    def polygon_mode(self) -> bool:
        return self.tools.polygon

    @property
    def roi_inert(self) -> bool:
        """Brush and polygon: every click and drag is the tool's, none a box's."""
        return self.tools.brush or self.tools.polygon

    def mouseDragEvent(self, ev, axis=None):
        if self.tools.drag(ev):
            return
        if self.knife_mode and ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            start = self.mapSceneToView(ev.buttonDownScenePos(Qt.MouseButton.LeftButton))
            end = self.mapSceneToView(ev.scenePos())
            if ev.isFinish():
                self._knife.hide()
                self.knifeDrawn.emit(start, end)
            else:
                self._knife.setLine(QLineF(start, end))
                self._knife.show()
            return
        if self.draw_mode and ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            start = self.mapSceneToView(ev.buttonDownScenePos(Qt.MouseButton.LeftButton))
            rect = QRectF(start, self.mapSceneToView(ev.scenePos())).normalized()
            if ev.isFinish():
                self._rubber.hide()
                # one box per Draw: a drag meant to pan must not draw a second one; Shift keeps drawing
                self.keep_drawing = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
                self.boxDrawn.emit(rect)
            else:
                self._rubber.setRect(rect)
                self._rubber.show()
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev):
        if self.tools.click(ev):
            return
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.backgroundClicked.emit()
            return
        super().mouseClickEvent(ev)


class ChromosomeROI(pg.ROI):
    def __init__(self, record: ChromosomeRecord):
        b = record.box
        super().__init__((b.xmin, b.ymin), (b.width, b.height), movable=True, rotatable=False, resizable=False,
                         removable=False, snapSize=1.0, translateSnap=True, scaleSnap=True)
        self.record_id = record.id
        self.translatable = False  # only the selected box moves: a click elsewhere never nudges a box
        self.setAcceptedMouseButtons(Qt.MouseButton.LeftButton)
        self.text = BoxLabel(self)
        # the chromosome's own outline (mask network or technician) inside its box: what the
        # classifier and the karyogram take as this chromosome, neighbours left out
        self.outline = QGraphicsPathItem(self)
        self._outline_key = None
        self.selected = False
        self.doubtful = False  # held out because the detector was unsure of it: drawn dotted
        self._shown = None
        self.update_from(record)

    def box(self) -> Box:
        pos, size = self.pos(), self.size()
        x0, y0 = int(round(pos.x())), int(round(pos.y()))
        return Box(x0, y0, x0 + int(round(size.x())), y0 + int(round(size.y())))

    def update_from(self, record: ChromosomeRecord) -> None:
        b = record.box
        if self.box() != b:
            self.blockSignals(True)
            self.setPos((b.xmin, b.ymin), update=False, finish=False)
            self.setSize((b.width, b.height), update=True, finish=False)
            self.blockSignals(False)
        colour = style.colour(record)
        self._update_outline(record, colour)
        text = style.short_label(record)
        doubtful = record.rejected and record.excluded is None and record.doubt > 0
        if (text, colour.rgb(), doubtful) != self._shown:
            self._shown = (text, colour.rgb(), doubtful)
            self.state_colour, self.doubtful = colour, doubtful
            self._apply_pen()
            fill = QColor(colour)
            fill.setAlpha(215)
            self.text.set_label(text, fill, QColor(colour))
        self.setToolTip(style.tooltip(record))

    def _update_outline(self, record: ChromosomeRecord, colour: QColor) -> None:
        key = (record.outline, record.box.xmin, record.box.ymin, colour.rgb())
        if key == self._outline_key:
            return
        self._outline_key = key
        path = QPainterPath()
        if record.outline:
            x0, y0 = record.box.xmin, record.box.ymin
            path.moveTo(record.outline[0][0] + 0.5 - x0, record.outline[0][1] + 0.5 - y0)
            for x, y in record.outline[1:]:
                path.lineTo(x + 0.5 - x0, y + 0.5 - y0)
            path.closeSubpath()
        pen = QPen(colour, 1.5)
        pen.setCosmetic(True)  # the same thickness at every zoom
        self.outline.setPen(pen)
        self.outline.setPath(path)

    def mouseDragEvent(self, ev):
        view = self.getViewBox()
        if getattr(view, "roi_inert", False):
            view.mouseDragEvent(ev)  # a brush stroke, even when the scene gave it to the box
            return
        if getattr(view, "knife_mode", False):
            ev.ignore()  # the knife line goes to the view, even when it starts on a box
            return
        super().mouseDragEvent(ev)

    def mouseClickEvent(self, ev):
        view = self.getViewBox()
        if getattr(view, "roi_inert", False):
            view.mouseClickEvent(ev)  # a brush dab or a polygon point
            return
        super().mouseClickEvent(ev)

    def hoverEvent(self, ev):
        view = self.getViewBox()
        if getattr(view, "roi_inert", False):
            if self.mouseHovering:  # claims nothing: the scene then gives clicks and drags to the view
                self.mouseHovering = False
                self.currentPen = self.pen
                self.update()
            return
        if getattr(view, "knife_mode", False):  # the selected box must not claim the knife's drag
            translatable, self.translatable = self.translatable, False
            try:
                super().hoverEvent(ev)
            finally:
                self.translatable = translatable
            return
        super().hoverEvent(ev)

    partner = False  # the second chromosome picked for Join

    def set_partner(self, partner: bool) -> None:
        if partner != self.partner:
            self.partner = partner
            self.setZValue(20 if partner or self.selected else 10)
            self._apply_pen()

    def _apply_pen(self) -> None:
        if self.partner and not self.selected:
            self.setPen(pg.mkPen(style.SELECTED, width=3, style=Qt.PenStyle.DashLine))
            self.hoverPen = pg.mkPen(style.SELECTED, width=4, style=Qt.PenStyle.DashLine)
        elif self.selected:
            self.setPen(pg.mkPen(style.SELECTED, width=3))
            self.hoverPen = pg.mkPen(style.SELECTED, width=4)
        else:
            line = Qt.PenStyle.DotLine if self.doubtful else Qt.PenStyle.SolidLine
            self.setPen(pg.mkPen(self.state_colour, width=2, style=line))
            self.hoverPen = pg.mkPen(self.state_colour, width=4, style=line)
        self.currentPen = self.hoverPen if self.mouseHovering else self.pen
        self.update()

    def set_selected(self, selected: bool) -> None:
        if selected == self.selected:
            return
        self.selected = selected
        self.translatable = selected
        self.setZValue(20 if selected or self.partner else 10)  # its box and label above the neighbours' in a dense area
        if selected:
            for corner, anchor in (((1, 1), (0, 0)), ((0, 0), (1, 1)), ((1, 0), (0, 1)), ((0, 1), (1, 0))):
                self.addScaleHandle(corner, anchor)
            for handle in self.getHandles():  # larger than pyqtgraph's default: findable on a busy cell
                handle.radius = 7
                handle.buildPath()
        else:
            for handle in list(self.getHandles()):
                self.removeHandle(handle)
        self._apply_pen()


class ImageView(QWidget):
    selectRequested = Signal(object)  # record id or None
    boxDrawn = Signal(object)  # Box
    drawModeChanged = Signal(bool)
    knifeModeChanged = Signal(bool)
    knifeDrawn = Signal(object, object)  # (x, y), (x, y): a knife line's ends, image coordinates
    brushModeChanged = Signal(bool)
    polygonModeChanged = Signal(bool)
    # in pixel coordinates (pixel (i, j) centred on (i, j), as outlines): a stroke and whether it erases;
    # a polygon's points
    brushPainted = Signal(object, bool)
    polygonDrawn = Signal(object)
    partnerRequested = Signal(object)  # record id: Ctrl+click (or Shift+click) on a box
    boxEdited = Signal(str, object)  # record id, Box

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.graphics = pg.GraphicsView(background=(40, 40, 40))
        self.viewbox = CellViewBox()
        self.graphics.setCentralItem(self.viewbox)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.viewbox.addItem(self.image_item)
        self.histogram = pg.HistogramLUTWidget(image=self.image_item, orientation="horizontal")
        self.histogram.setMaximumHeight(80)
        self.histogram.setToolTip("Contrast: drag the handles to set the grey levels")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(_legend())
        layout.addWidget(self.histogram)
        self.rois: dict[str, ChromosomeROI] = {}
        self.cell = None
        self._dirty: set[str] = set()
        self._to_add: list[str] = []
        self._flush_soon = NextTurn(self, self._flush)
        self.viewbox.boxDrawn.connect(self._drawn)
        self.viewbox.knifeDrawn.connect(
            lambda a, b: self.knifeDrawn.emit((float(a.x()), float(a.y())), (float(b.x()), float(b.y()))))
        self.viewbox.backgroundClicked.connect(lambda: self.selectRequested.emit(None))
        self.tools = self.viewbox.tools
        self.tools.strokeFinished.connect(self.brushPainted)
        self.tools.polygonClosed.connect(self.polygonDrawn)
        self.graphics.scene().sigMouseMoved.connect(lambda pos: self.tools.hover(self.viewbox.mapSceneToView(pos)))

    # -- binding ----------------------------------------------------------------------------------
    def set_cell(self, cell) -> None:
        if self.cell is not None:
            self.cell.changed.disconnect(self._on_event)
            self.cell.selectionChanged.disconnect(self._on_selection)
            self.cell.partnerChanged.disconnect(self._on_partner)
        self.cell = cell
        self._dirty = set()
        self._to_add = []
        self._clear()
        self.tools.cancel_polygon()  # points clicked on another cell
        if cell is None:
            self.image_item.clear()
            return
        gray = cell.gray
        levels = _auto_levels(gray)
        self.image_item.setImage(gray, autoLevels=False, levels=levels)
        self.histogram.setLevels(*levels)
        cell.changed.connect(self._on_event)
        cell.selectionChanged.connect(self._on_selection)
        cell.partnerChanged.connect(self._on_partner)
        self.fit()
        # 46 boxes cost ~80 ms of GUI time: create them a few per event-loop turn
        self._to_add = list(cell.doc.records)
        self._add_some()

    def is_building(self) -> bool:
        return bool(self._to_add) or self._flush_soon.pending

    def _add_some(self, n: int = 4) -> None:
        if self.cell is None:
            return
        while self._to_add and n > 0:
            rid = self._to_add.pop(0)
            record = self.cell.doc.records.get(rid)
            if record is not None and rid not in self.rois:
                self._add(record)
                self.rois[rid].set_selected(rid == self.cell.selected)
                self.rois[rid].set_partner(rid == self.cell.partner)
                n -= 1
        if self._to_add:
            QTimer.singleShot(_BREATHE_MS, self, self._add_some)

    def set_display(self, invert: bool | None = None, gamma: float | None = None) -> None:
        """Grey-level mapping for the eye only (the classifier never sees it): inverted, and a gamma
        that brightens (< 1) or darkens (> 1) the midtones where pale bands hide."""
        self.invert = self.invert if invert is None else bool(invert)
        self.gamma = self.gamma if gamma is None else float(gamma)
        stops = np.linspace(0.0, 1.0, 17)
        values = stops ** self.gamma
        if self.invert:
            values = 1.0 - values
        colours = [(int(round(v * 255)),) * 3 + (255,) for v in values]
        self.histogram.gradient.setColorMap(pg.ColorMap(stops, colours))

    invert = False
    gamma = 1.0

    def fit(self) -> None:
        if self.cell is not None:
            self.viewbox.setRange(QRectF(0, 0, self.cell.doc.width, self.cell.doc.height), padding=0.02)

    def _leave_other_modes(self, keep: str) -> None:
        for name in ("draw", "knife", "brush", "polygon"):
            if name != keep:
                getattr(self, f"set_{name}_mode")(False)

    def set_draw_mode(self, on: bool) -> None:
        if on:
            self._leave_other_modes("draw")
        if on != self.viewbox.draw_mode:
            self.viewbox.draw_mode = on
            self.graphics.setCursor(Qt.CursorShape.CrossCursor if on else Qt.CursorShape.ArrowCursor)
            self.drawModeChanged.emit(on)

    def set_knife_mode(self, on: bool) -> None:
        """Knife mode: each drag draws a straight line that cuts the chromosome it crosses in two;
        it stays on until Esc (or K again)."""
        if on:
            self._leave_other_modes("knife")
        if on != self.viewbox.knife_mode:
            self.viewbox.knife_mode = on
            self.graphics.setCursor(Qt.CursorShape.CrossCursor if on else Qt.CursorShape.ArrowCursor)
            self._show_handles()
            self.knifeModeChanged.emit(on)

    def set_brush_mode(self, on: bool) -> None:
        """Brush mode: drags paint the selected chromosome's outline (Shift or the right button
        erases); it stays on until Esc (or the action again)."""
        if on:
            self._leave_other_modes("brush")
        if on != self.tools.brush:
            self.tools.set_brush(on)
            self.graphics.setCursor(Qt.CursorShape.CrossCursor if on else Qt.CursorShape.ArrowCursor)
            self._show_handles()
            self.brushModeChanged.emit(on)

    def set_polygon_mode(self, on: bool) -> None:
        """Polygon mode: clicks place the selected chromosome's new outline point by point."""
        if on:
            self._leave_other_modes("polygon")
        if on != self.tools.polygon:
            self.tools.set_polygon(on)
            self.graphics.setCursor(Qt.CursorShape.CrossCursor if on else Qt.CursorShape.ArrowCursor)
            self._show_handles()
            self.polygonModeChanged.emit(on)

    def _show_handles(self) -> None:
        """The selected box's resize handles, hidden while the knife (brush, polygon) is out: a cut
        starting on one must not resize the box."""
        hidden = self.viewbox.knife_mode or self.viewbox.roi_inert
        for roi in self.rois.values():
            for handle in roi.getHandles():
                handle.setVisible(not hidden)

    # -- document events ------------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        doc = self.cell.doc
        if event.kind == "reset":
            self._clear()
            self._to_add = list(doc.records)
            self._add_some()
            return
        if event.kind == "removed":
            self._remove(event.record_id)
            return
        ids = [event.record_id] if event.record_id is not None else list(doc.records)
        if event.kind in ("prediction", "label"):
            # 46 predictions + one reassignment arrive together: restyle each box once, next loop turn
            self._dirty.update(ids)
            self._flush_soon()
            return
        self._update(ids)

    def _flush(self) -> None:
        ids, self._dirty = self._dirty, set()
        if self.cell is not None:
            self._update(ids)

    def _update(self, ids) -> None:
        doc = self.cell.doc
        for rid in ids:
            record = doc.records.get(rid)
            if record is None:
                continue
            if rid in self.rois:
                self.rois[rid].update_from(record)
            else:
                self._add(record)
                if rid == self.cell.selected:
                    self.rois[rid].set_selected(True)
                    self._show_handles()

    def _on_selection(self, record_id) -> None:
        for rid, roi in self.rois.items():
            roi.set_selected(rid == record_id)
        if self.viewbox.knife_mode or self.viewbox.roi_inert:
            self._show_handles()
        if record_id in self.rois:
            self._ensure_visible(self.rois[record_id])

    def _on_partner(self, record_id) -> None:
        for rid, roi in self.rois.items():
            roi.set_partner(rid == record_id)

    def _ensure_visible(self, roi: ChromosomeROI) -> None:
        view = self.viewbox.viewRect()
        b = roi.box()
        rect = QRectF(b.xmin, b.ymin, b.width, b.height)
        if not view.contains(rect):
            centre = rect.center()
            self.viewbox.translateBy(x=centre.x() - view.center().x(), y=centre.y() - view.center().y())

    # -- items --------------------------------------------------------------------------------------
    def _add(self, record: ChromosomeRecord) -> None:
        roi = ChromosomeROI(record)
        roi.setZValue(10)
        roi.sigClicked.connect(self._roi_clicked)
        roi.sigRegionChangeFinished.connect(self._roi_changed)
        self.viewbox.addItem(roi)
        self.rois[record.id] = roi

    def _remove(self, record_id: str) -> None:
        roi = self.rois.pop(record_id, None)
        if roi is not None:
            self.viewbox.removeItem(roi)

    def _clear(self) -> None:
        for rid in list(self.rois):
            self._remove(rid)

    def _roi_clicked(self, roi: ChromosomeROI, ev) -> None:
        if ev.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier):
            self.partnerRequested.emit(roi.record_id)
        else:
            self.selectRequested.emit(roi.record_id)

    def _roi_changed(self, roi: ChromosomeROI) -> None:
        self.boxEdited.emit(roi.record_id, roi.box())

    def _drawn(self, rect: QRectF) -> None:
        box = Box(int(np.floor(rect.left())), int(np.floor(rect.top())), int(np.ceil(rect.right())),
                  int(np.ceil(rect.bottom())))
        if not self.viewbox.keep_drawing:
            self.set_draw_mode(False)
        self.boxDrawn.emit(box)

    # -- for tests and scripts --------------------------------------------------------------------------
    def map_image_to_widget(self, x: float, y: float) -> QPointF:
        """Where image pixel (x, y) is in ``graphics.viewport()`` coordinates."""
        scene = self.viewbox.mapViewToScene(QPointF(x, y))
        return QPointF(self.graphics.mapFromScene(scene))


def _legend() -> QLabel:
    # no-break spaces inside an entry, plain spaces between them: a narrow window wraps the line
    # instead of being held wide by it
    parts = [f"<span style='color:{style.colour(key).name()}'>■</span>&nbsp;{html.escape(text).replace(' ', '&nbsp;')}"
             for key, text in style.LEGEND]
    keys = ("selected:&nbsp;<span style='color:#e6b800'>■</span> wheel&nbsp;zoom · drag&nbsp;pan · B&nbsp;draw · "
            "Del&nbsp;delete · K&nbsp;knife · J&nbsp;join · Shift+B&nbsp;brush · P&nbsp;outline · "
            "N&nbsp;not&nbsp;a&nbsp;chromosome · F&nbsp;fit")
    label = QLabel(" &nbsp;".join(parts) + f" &nbsp; <span style='color:#777'>{keys}</span>")
    label.setWordWrap(True)
    label.setContentsMargins(6, 2, 6, 2)
    return label


def _auto_levels(gray: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(gray, (0.5, 99.5))
    return (float(lo), float(hi)) if hi > lo else (0.0, 255.0)
