"""The centre of the window: the annotation canvas, or a placeholder until it exists.

:func:`create_canvas` returns ``tlstudio.gui.canvas.CanvasView(app_state)`` when that
package imports, else a :class:`PlaceholderCanvas` with the same methods, so the
window wires both alike."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from tlstudio.core.errors import TlsError
from tlstudio.gui.state import AppState

log = logging.getLogger(__name__)


class PlaceholderCanvas(QWidget):
    """Says which image is selected (or that its file is missing); draws no pixels."""

    window_changed = Signal(float, float)  # center, width (array units)
    message = Signal(str)  # a note for the status bar

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self.mask_opacity = 0.5
        self.mask_visible = True
        self.window: tuple[float, float] | None = None
        self.status_label = QLabel()
        self.status_label.setObjectName("canvasMessage")
        self.status_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.status_label.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(self.status_label)
        self.setMinimumSize(320, 240)
        app_state.image_changed.connect(self._show)
        app_state.project_opened.connect(lambda _p: self._show(app_state.image_id))
        app_state.project_closed.connect(lambda: self._show(None))
        self._show(None)

    def _show(self, image_id: int | None) -> None:
        project = self.app_state.project
        if project is None:
            self.status_label.setText(
                "Open or create a project (File menu), or drop a folder here."
            )
            return
        if image_id is None:
            self.status_label.setText("Select an image in the browser.")
            return
        try:
            rec = project.image(image_id)
            path = project.image_path(rec)
        except TlsError as exc:
            self.status_label.setText(str(exc))
            return
        if not path.is_file():
            self.status_label.setText(
                f"Image file missing:\n{path}\n\nUse Relink folder… to find it."
            )
            self.message.emit(f"Image file missing: {path}")
        else:
            self.status_label.setText(f"{rec.name}\n{rec.width} × {rec.height} px, {rec.format}")

    # the CanvasView interface, as no-ops
    def fit_to_window(self) -> None:
        pass

    def zoom_1to1(self) -> None:
        pass

    def set_mask_opacity(self, opacity: float) -> None:
        self.mask_opacity = opacity

    def set_mask_visible(self, visible: bool) -> None:
        self.mask_visible = visible

    def set_window(self, center: float, width: float) -> None:
        self.window = (center, width)
        self.window_changed.emit(center, width)

    def reset_window(self) -> None:
        self.window = None


def canvas_class() -> type | None:
    """``CanvasView`` if the canvas package imports, else None."""
    try:
        from tlstudio.gui.canvas import CanvasView  # noqa: PLC0415
    except ImportError:
        try:
            from tlstudio.gui.canvas.view import CanvasView  # noqa: PLC0415
        except ImportError:
            return None
    return CanvasView


def tool_shortcuts() -> list[tuple[str, str]]:
    """The canvas's ``TOOL_SHORTCUTS`` (key, description); empty without a canvas."""
    for mod in ("tlstudio.gui.canvas", "tlstudio.gui.canvas.view"):
        try:
            module = __import__(mod, fromlist=["TOOL_SHORTCUTS"])
        except ImportError:
            continue
        found = getattr(module, "TOOL_SHORTCUTS", None)
        if found:
            return [(str(k), str(d)) for k, d in found]
    return []


def create_canvas(app_state: AppState) -> QWidget:
    """The real canvas when available, else the placeholder."""
    cls = canvas_class()
    if cls is None:
        return PlaceholderCanvas(app_state)
    return cls(app_state)
