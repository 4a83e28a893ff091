"""The chosen run's prediction statuses for the image browser, computed off the GUI thread.

:func:`~tlstudio.core.prediction_query.prediction_status` runs as a
:class:`~tlstudio.gui.workers.jobs.BackgroundJob` (about 50 ms for 5,000 classified
images; masks take longer) with its own project connection: when a run is chosen, and
again after predictions change (at once) or labels change (once the edits pause). One
computation at a time; one made out of date while it runs is redone when it ends.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from tlstudio.core.prediction_query import PredictionStatus, prediction_status
from tlstudio.core.project import Project
from tlstudio.gui.state import AppState
from tlstudio.gui.workers.jobs import start_job

STATUS_DELAY_MS = 300  # labels changed: recompute prediction statuses once the edits pause


def _statuses(root: Path, run_id: int) -> dict[int, PredictionStatus]:
    with Project.open(root) as project:  # SQLite connections belong to one thread
        return prediction_status(project, run_id)


class PredictionStatuses(QObject):
    """Statuses of ``app_state.run_id`` on the open project.

    ``changed(statuses)`` when new ones replace the known ones (an empty dict when they
    could not be computed; ``message`` then says why). Nothing is sent when a
    recomputation changed no verdict."""

    changed = Signal(object)  # dict[int, PredictionStatus]
    message = Signal(str)

    def __init__(self, app_state: AppState, parent: QObject | None = None):
        super().__init__(parent)
        self.app_state = app_state
        # (project root, run id) the statuses belong to, the statuses, whether a
        # computation is running (for which key) and whether it is already out of date
        self.key: tuple[Path, int] | None = None
        self.statuses: dict[int, PredictionStatus] | None = None
        self._busy = False
        self._running: tuple[Path, int] | None = None
        self._stale = False
        self._timer = QTimer(self, singleShot=True, interval=STATUS_DELAY_MS)
        self._timer.timeout.connect(self._compute)

    def wanted(self) -> tuple[Path, int] | None:
        """(project root, run id) whose statuses the browser wants; None without a run."""
        project, run_id = self.app_state.project, self.app_state.run_id
        return None if project is None or run_id is None else (project.root, run_id)

    def ready(self) -> bool:
        """Whether the known statuses are those of the wanted run."""
        wanted = self.wanted()
        return wanted is not None and self.key == wanted

    def forget(self) -> None:
        self.key = None
        self.statuses = None
        self._timer.stop()

    def ensure(self) -> None:
        """Compute the wanted run's statuses unless known or on their way."""
        wanted = self.wanted()
        if wanted is None or self.ready():
            return
        if not (self._busy and self._running == wanted):
            self._compute()

    def request(self, delay: bool = True) -> None:
        """Recompute (labels or predictions changed) after ``STATUS_DELAY_MS`` (edits
        come in bursts) or now."""
        if self.wanted() is None:
            return
        if delay:
            self._timer.start()
        else:
            self._timer.stop()
            self._compute()

    def _compute(self) -> None:
        wanted = self.wanted()
        if wanted is None:
            return
        if self._busy:  # one at a time; the running one is already out of date
            self._stale = True
            return
        self._busy, self._stale, self._running = True, False, wanted
        root, run_id = wanted
        start_job(
            lambda _token, _progress: _statuses(root, run_id),
            context=self,
            succeeded=lambda result: self._computed(wanted, result),
            failed=lambda _kind, message: self._failed(wanted, message),
        )

    def _computed(self, key: tuple[Path, int], statuses: dict) -> None:
        self._busy = False
        if self._stale or key != self.wanted():
            self._compute()  # labels, predictions or the run changed meanwhile
            if key != self.wanted():
                return
        if key == self.key and statuses == self.statuses:
            return  # the edit changed no verdict: no refilter, no repaint
        self.key, self.statuses = key, statuses
        self.changed.emit(statuses)

    def _failed(self, key: tuple[Path, int], message: str) -> None:
        self._busy = False
        if key == self.wanted():
            self.message.emit(f"Cannot check the predictions of run {key[1]}: {message}")
            self.key, self.statuses = key, {}
            self.changed.emit(self.statuses)
        elif self.wanted() is not None:
            self._compute()
