"""A cancel/pause flag shared between the thread doing long work and the one asking it to
stop (the GUI, a Ctrl+C handler). Plain threading: usable from core, ml and gui alike."""

from __future__ import annotations

import threading


class CancelToken:
    """Cooperative cancel/pause flags, safe to set from any thread.

    The trainer checks it before every batch: cancel stops the fit after the current
    batch, pause blocks the training thread until resumed (or cancelled)."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self._paused = threading.Event()
        self._wake = threading.Event()  # set on resume/cancel to end a pause wait early

    def cancel(self) -> None:
        """Ask the run to stop; also ends any pause."""
        self._cancelled.set()
        self._wake.set()

    def pause(self) -> None:
        """Ask the run to wait before its next batch."""
        self._wake.clear()
        self._paused.set()

    def resume(self) -> None:
        """End a pause."""
        self._paused.clear()
        self._wake.set()

    @property
    def is_cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancelled.is_set()

    @property
    def is_paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._paused.is_set()

    def wait_while_paused(self, poll_s: float = 0.05) -> bool:
        """Block while paused; return at once on resume or cancel.

        Returns False if the run was cancelled, True if it may go on."""
        while self._paused.is_set() and not self._cancelled.is_set():
            self._wake.wait(poll_s)
        return not self._cancelled.is_set()
