"""A permanent status-bar label: zoom, the image pixel under the mouse and its value."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget


class CanvasReadout(QLabel):
    """Follows the canvas's ``zoom_changed`` and ``cursor_moved`` (image px) if it has them."""

    def __init__(self, canvas: QWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.canvas = canvas
        self._zoom = ""
        self._cursor = ""
        zoom = getattr(canvas, "zoom_changed", None)
        moved = getattr(canvas, "cursor_moved", None)
        if zoom is not None:
            zoom.connect(self._zoom_changed)
        if moved is not None:
            moved.connect(self._cursor_moved)

    def _zoom_changed(self, zoom: float) -> None:
        self._zoom = f"{zoom * 100:.0f} %"
        self._show()

    def _cursor_moved(self, x: float, y: float) -> None:
        value = getattr(self.canvas, "pixel_value", lambda _x, _y: None)(x, y)
        if value is None:
            self._cursor = ""
        else:
            if isinstance(value, tuple):
                shown = ", ".join(_num(v) for v in value)
            else:
                shown = _num(value)
            self._cursor = f"x {int(x)}, y {int(y)}: {shown}"
        self._show()

    def _show(self) -> None:
        self.setText("   ".join(t for t in (self._cursor, self._zoom) if t))


def _num(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
