"""Two bars above the canvas about what the store refuses.

:class:`ReadOnlyBanner` stays up while the open project is read-only (its database or
folder cannot be written): "read-only: edits are disabled", and why.
:class:`RefusedEditBar` appears when an edit was refused because another program held the
project's write lock longer than the busy timeout: it says so, keeps the edit, and
pushes it again on Retry.
"""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from tlstudio.core.commands import Command
from tlstudio.core.errors import ProjectBusyError, TlsError
from tlstudio.gui.state import AppState

_STYLE = "#{name} {{ background: {bg}; border: 1px solid {border}; border-radius: 4px; }}"


def _bar(widget: QFrame, name: str, bg: str, border: str) -> QHBoxLayout:
    widget.setObjectName(name)
    widget.setStyleSheet(_STYLE.format(name=name, bg=bg, border=border))
    return QHBoxLayout(widget)


class ReadOnlyBanner(QFrame):
    """Hidden unless the open project is read-only."""

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self.label = QLabel()
        self.label.setWordWrap(True)
        _bar(self, "readOnlyBanner", "#e8eef7", "#8aa4c8").addWidget(self.label, 1)
        self.hide()
        app_state.project_opened.connect(lambda _p: self.sync())
        app_state.project_closed.connect(self.sync)

    def sync(self) -> None:
        project = self.app_state.project
        if project is None or not project.read_only:
            self.hide()
            return
        self.label.setText(
            f"<b>read-only: edits are disabled</b> ({project.read_only_reason}). "
            "To edit, make the project folder and its project.sqlite writable and open it again."
        )
        self.show()


class RefusedEditBar(QFrame):
    """Shown while an edit refused as busy waits for Retry (or Discard)."""

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self.command: Command | None = None
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.retry_button = QPushButton("Retry")
        self.retry_button.clicked.connect(self.retry)
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(self.discard)
        lay = _bar(self, "refusedEditBar", "#fde7e9", "#d08a92")
        lay.addWidget(self.label, 1)
        lay.addWidget(self.retry_button)
        lay.addWidget(self.discard_button)
        self.hide()
        app_state.edit_refused.connect(self.show_refused)
        app_state.project_closed.connect(self.discard)

    def show_refused(self, command: Command, message: str) -> None:
        """Keep ``command`` (refused with ``message``) for Retry and say so."""
        self.command = command
        self.label.setText(
            f"<b>Not saved: {command.text}.</b> {message}. Your edit is kept: Retry stores it."
        )
        self.show()

    def retry(self) -> None:
        """Push the kept edit again; the bar goes away once it is stored."""
        command, self.command = self.command, None
        if command is None:
            self.hide()
            return
        try:
            self.app_state.push(command)
        except ProjectBusyError:
            return  # refused again: edit_refused has shown the bar with it once more
        except TlsError as exc:  # e.g. the image was removed meanwhile
            self.label.setText(f"<b>Not saved: {command.text}.</b> {exc}")
            return
        self.hide()

    def discard(self) -> None:
        self.command = None
        self.hide()
