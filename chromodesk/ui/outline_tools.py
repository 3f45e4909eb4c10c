"""The brush and the polygon on the image view: gestures and previews, no geometry.

A brush stroke (left-drag paints, Shift+drag or right-drag erases, a click dabs) and a
polygon (click the points, Backspace takes the last one back, double-click or Enter closes it, Esc drops it) are handed on as
image pixel coordinates, pixel (i, j) centred on (i, j) as outlines store them
(``core.redraw``); the workspace turns them into the selected chromosome's outline.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsPathItem

from . import style

MIN_RADIUS, MAX_RADIUS = 1.0, 60.0  # brush radius in image pixels


def to_pixels(points) -> list[tuple[float, float]]:
    """View coordinates (pixel (i, j) covers [i, i + 1) x [j, j + 1)) -> pixel-centre coordinates."""
    return [(float(p.x()) - 0.5, float(p.y()) - 0.5) for p in points]


class OutlineTools(QObject):
    strokeFinished = Signal(object, bool)  # [(x, y), ...] in pixel coordinates, erase
    polygonClosed = Signal(object)  # [(x, y), ...] in pixel coordinates
    radiusChanged = Signal(float)

    def __init__(self, viewbox):
        super().__init__(viewbox)
        self.viewbox = viewbox
        self.brush = False
        self.polygon = False
        self.radius = 6.0
        self._stroke: list[QPointF] = []
        self._erase = False
        self._points: list[QPointF] = []
        self._hover: QPointF | None = None
        self.cursor = QGraphicsEllipseItem()  # the brush's reach around the mouse
        self.preview = QGraphicsPathItem()  # the stroke being painted, as wide as the brush
        self.outline = QGraphicsPathItem()  # the polygon so far, and on to the mouse
        pen = QPen(style.SELECTED, 1.5)
        pen.setCosmetic(True)
        self.cursor.setPen(pen)
        pen = QPen(style.SELECTED, 2, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.outline.setPen(pen)
        for z, item in enumerate((self.preview, self.outline, self.cursor)):
            item.setZValue(1001 + z)
            item.hide()
            viewbox.addItem(item, ignoreBounds=True)

    # -- modes --------------------------------------------------------------------------------------------
    def set_brush(self, on: bool) -> None:
        self.brush = on
        self._stroke = []
        self.preview.hide()
        self.cursor.setVisible(on and self._hover is not None)
        self._place_cursor()

    def set_polygon(self, on: bool) -> None:
        self.polygon = on
        self.cancel_polygon()

    def set_radius(self, radius: float) -> None:
        radius = min(max(float(radius), MIN_RADIUS), MAX_RADIUS)
        if radius != self.radius:
            self.radius = radius
            self._place_cursor()
            self.radiusChanged.emit(radius)

    def grow(self, steps: int) -> None:
        """``[`` / ``]``: about 20% per step, at least a pixel."""
        r = self.radius
        self.set_radius(r + steps * max(1.0, round(0.2 * r)))

    # -- mouse ----------------------------------------------------------------------------------------------
    def hover(self, view_pos: QPointF) -> None:
        self._hover = QPointF(view_pos)
        if self.brush:
            self.cursor.show()
            self._place_cursor()
        if self.polygon and self._points:
            self._draw_polygon()

    def drag(self, ev) -> bool:
        """A brush stroke; True when handled."""
        buttons = (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton)
        if not self.brush or ev.button() not in buttons:
            return False
        ev.accept()
        pos = self.viewbox.mapSceneToView(ev.scenePos())
        if ev.isStart() or not self._stroke:
            self._stroke = [self.viewbox.mapSceneToView(ev.buttonDownScenePos(ev.button()))]
            self._erase = self._erasing(ev)
        self._stroke.append(pos)
        self.hover(pos)
        if ev.isFinish():
            stroke, self._stroke = self._stroke, []
            self.preview.hide()
            self.strokeFinished.emit(to_pixels(stroke), self._erase)
        else:
            self._draw_stroke()
        return True

    def click(self, ev) -> bool:
        """A brush dab, or a polygon point (a double-click closes it); True when handled."""
        pos = self.viewbox.mapSceneToView(ev.scenePos())
        if self.brush and ev.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            ev.accept()
            self.strokeFinished.emit(to_pixels([pos]), self._erasing(ev))
            return True
        if self.polygon and ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            if ev.double():
                self.close_polygon()
            else:
                self._points.append(pos)
                self._draw_polygon()
            return True
        return False

    def close_polygon(self) -> bool:
        """Enter or a double-click: the points so far go out as the new outline."""
        if not self.polygon or not self._points:
            return False
        points = to_pixels(self._points)
        self.cancel_polygon()
        self.polygonClosed.emit(points)
        return True

    def drop_last_point(self) -> bool:
        """Backspace: the polygon's last point goes (a misplaced click), the rest stay."""
        if not self.polygon or not self._points:
            return False
        self._points.pop()
        if self._points:
            self._draw_polygon()
        else:
            self.outline.hide()
        return True

    def cancel_polygon(self) -> None:
        self._points = []
        self.outline.hide()

    @property
    def polygon_points(self) -> int:
        return len(self._points)

    # -- drawing ---------------------------------------------------------------------------------------------
    @staticmethod
    def _erasing(ev) -> bool:
        return ev.button() == Qt.MouseButton.RightButton or bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)

    def _place_cursor(self) -> None:
        if self._hover is not None:
            r = self.radius
            self.cursor.setRect(QRectF(self._hover.x() - r, self._hover.y() - r, 2 * r, 2 * r))

    def _draw_stroke(self) -> None:
        path = QPainterPath(self._stroke[0])
        for p in self._stroke[1:]:
            path.lineTo(p)
        pen = QPen(style.BRUSH_ERASE if self._erase else style.BRUSH_PAINT, 2 * self.radius)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        self.preview.setPen(pen)
        self.preview.setPath(path)
        self.preview.show()

    def _draw_polygon(self) -> None:
        path = QPainterPath(self._points[0])
        for p in self._points[1:]:
            path.lineTo(p)
        if self._hover is not None:
            path.lineTo(self._hover)
        self.outline.setPath(path)
        self.outline.show()
