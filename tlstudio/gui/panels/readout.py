"""A permanent status-bar label: zoom, the image pixel under the mouse and its value."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget

from tlstudio.gui.canvas import CanvasView


class CanvasReadout(QLabel):
    """Follows the canvas: its zoom, and the pixel under the mouse (image px, full-depth
    value). The pixel part is cleared when the mouse leaves the image or the canvas,
    and when another image is shown (until the mouse moves over it)."""

    def __init__(self, canvas: CanvasView, parent: QWidget | None = None):
        super().__init__(parent)
        self.canvas = canvas
        self._zoom = ""
        self._cursor = ""
        canvas.zoom_changed.connect(self._zoom_changed)
        canvas.cursor_moved.connect(self._cursor_moved)
        canvas.cursor_left.connect(self._cursor_gone)

    def _zoom_changed(self, zoom: float) -> None:
        self._zoom = f"{zoom * 100:.0f} %"
        self._show()

    def _cursor_moved(self, x: float, y: float) -> None:
        value = self.canvas.pixel_value(x, y)
        if value is None:  # outside the image, or its pixels are not decoded yet
            self._cursor = ""
        else:
            if isinstance(value, tuple):
                shown = ", ".join(_num(v) for v in value)
            else:
                shown = _num(value)
            self._cursor = f"x {int(x)}, y {int(y)}: {shown}"
        self._show()

    def _cursor_gone(self) -> None:
        self._cursor = ""
        self._show()

    def _show(self) -> None:
        self.setText("   ".join(t for t in (self._cursor, self._zoom) if t))


def _num(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
