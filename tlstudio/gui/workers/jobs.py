"""The one way the GUI runs work off its thread: :class:`BackgroundJob`.

``fn(token, progress)`` runs in a thread pool and knows nothing of Qt: ``token`` is a
:class:`~tlstudio.core.cancel.CancelToken` to check between steps (or pause at),
``progress(done, total, stage="")`` reports plain numbers (``total`` 0: unknown). If it touches the
project it opens its own connection (SQLite connections belong to one thread). Its
outcome comes back on the GUI thread as exactly one of

- ``succeeded(value)``: ``fn`` returned ``value``;
- ``failed(kind, message)``: it raised; ``kind`` is :func:`tlstudio.core.errors.error_kind`
  of the exception, ``message`` its :func:`~tlstudio.core.errors.error_message` (kind
  ``"internal"`` is a bug: the message names the exception's type and the traceback is
  logged);
- ``cancelled()``: ``fn`` raised an error of kind ``"cancelled"`` (e.g.
  :class:`~tlstudio.core.errors.Cancelled`), or raised anything after
  :meth:`BackgroundJob.cancel`, or the job was cancelled before it began. A ``fn``
  that returns after a cancel succeeds: what it returns is its (partial) result;

then ``finished()``. When the ``context`` object given to the job is deleted before
then, the job is cancelled and emits nothing more, so a closed view never hears back.

A job whose ``fn`` imports :mod:`tlstudio.ml` (so torch) is made with ``needs_ml=True``:
the ML modules are then imported through :func:`~tlstudio.gui.workers.ml_imports.import_ml`
before ``fn`` runs, never by two threads at once.

The pool thread touches no QObject of the job: it runs a plain :class:`_Work` and reports
through one long-lived relay object, so a job dropped on the GUI thread the moment its
outcome arrives is never destroyed, or signalled, from the pool thread (that race crashed
the suite now and then).

Pools: the global QThreadPool by default; :func:`job_pool` makes a private one (a view
whose jobs must not run side by side, or must not wait behind others). Every pool made
there is listed by :func:`registered_pools`, so shutdown and the tests' leak check can
find them.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import shiboken6
from PySide6.QtCore import QObject, QThreadPool, Signal

from tlstudio.core.cancel import CancelToken
from tlstudio.core.errors import CANCELLED, INTERNAL, error_kind, error_message
from tlstudio.gui.workers.ml_imports import import_ml

log = logging.getLogger(__name__)

_SUCCEEDED, _FAILED, _CANCELLED = 0, 1, 2


class Progress(Protocol):
    def __call__(self, done: int, total: int, stage: str = "") -> None: ...


JobFn = Callable[[CancelToken, Progress], Any]

_live: dict[int, BackgroundJob] = {}  # started jobs whose outcome is not delivered yet
_keys = itertools.count(1)
_pools: weakref.WeakSet[QThreadPool] = weakref.WeakSet()


class _Relay(QObject):
    """Carries every job's reports from pool threads to the GUI thread, by job key. One
    for the process, made on the GUI thread and never deleted."""

    reported = Signal(int, int, int, str)  # key, done, total, stage
    ended = Signal(int)  # key


_the_relay: _Relay | None = None


def _relay() -> _Relay:
    global _the_relay
    if _the_relay is None:  # first start(), on the GUI thread
        _the_relay = _Relay()
        _the_relay.reported.connect(_on_reported)
        _the_relay.ended.connect(_on_ended)
    return _the_relay


def _on_reported(key: int, done: int, total: int, stage: str) -> None:
    job = _live.get(key)
    if job is not None:
        job._relay_progress(done, total, stage)


def _on_ended(key: int) -> None:
    job = _live.get(key)
    if job is not None:
        job._deliver()


class _Work:
    """What the pool thread runs: ``fn`` and its outcome, no Qt object of the job."""

    def __init__(self, key: int, fn: JobFn, token: CancelToken, name: str, needs_ml: bool,
                 interval_s: float, relay: _Relay):  # fmt: skip
        self.fn: JobFn | None = fn
        self.key, self.token, self.name = key, token, name
        self.needs_ml, self.interval_s, self.relay = needs_ml, interval_s, relay
        self.last_report, self.last_stage = 0.0, ""
        self.outcome: tuple[int, Any] | None = None  # set before ``done``
        self.done = threading.Event()

    def progress(self, done: int, total: int, stage: str = "") -> None:
        if self.token.is_cancelled:
            return
        now = time.monotonic()
        ends = total > 0 and done >= total
        if ends or stage != self.last_stage or now - self.last_report >= self.interval_s:
            self.last_report, self.last_stage = now, stage
            _emit(self.relay.reported, self.key, int(done), int(total), stage)

    def run(self) -> None:
        outcome: tuple[int, Any]
        fn, self.fn = self.fn, None  # the job keeps its own reference, dropped on its thread
        if self.token.is_cancelled or fn is None:
            outcome = (_CANCELLED, None)
        else:
            try:
                if self.needs_ml:
                    import_ml()
                value = fn(self.token, self.progress)
            except BaseException as exc:  # reported to the GUI, never raised in a pool thread
                kind = error_kind(exc)
                if kind == CANCELLED or self.token.is_cancelled:
                    outcome = (_CANCELLED, None)
                else:
                    if kind == INTERNAL:
                        log.error("background job %s failed", self.name, exc_info=exc)
                    outcome = (_FAILED, (kind, error_message(exc)))
            else:
                outcome = (_SUCCEEDED, value)
            del fn
        self.outcome = outcome
        _emit(self.relay.ended, self.key)
        self.done.set()


def _emit(signal: Any, *args: Any) -> None:
    try:
        signal.emit(*args)
    except RuntimeError:  # the application is shutting down
        pass


def job_pool(parent: QObject, threads: int, name: str) -> QThreadPool:
    """A private pool of at most ``threads`` threads, owned by ``parent`` and registered
    (see :func:`registered_pools`). ``name`` says whose it is in leak reports."""
    pool = QThreadPool(parent)
    pool.setMaxThreadCount(max(1, threads))
    pool.setObjectName(name)
    _pools.add(pool)
    return pool


def registered_pools() -> list[QThreadPool]:
    """The global pool and every live pool made by :func:`job_pool`."""
    pools = [QThreadPool.globalInstance()]
    pools += [p for p in list(_pools) if shiboken6.isValid(p)]
    return pools


def live_jobs() -> list[BackgroundJob]:
    """Started jobs whose outcome has not been delivered yet."""
    return list(_live.values())


def wait_for_jobs(msecs: int = -1) -> bool:
    """Wait until every registered pool is idle (window shutdown and tests); True if
    they all are. Outcomes are delivered later by the event loop, or never if it ends."""
    deadline = None if msecs < 0 else time.monotonic() + msecs / 1000
    ok = True
    for pool in registered_pools():
        left = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        ok = pool.waitForDone(left) and ok
    return ok


class BackgroundJob(QObject):
    """``fn(token, progress)`` in a pool thread; its outcome as signals on the GUI thread
    (see the module docstring). Create and start it on the GUI thread.

    ``progress_interval_s``: ``progressed`` comes at most once per interval (s), plus
    every report that finishes a stage (``done >= total > 0``) or starts a new one.
    ``needs_ml``: import the ML modules first (see the module docstring). ``token``: the
    token ``fn`` gets (one that can also pause, say); default a new CancelToken."""

    progressed = Signal(int, int, str)  # done, total (0: unknown), stage
    succeeded = Signal(object)  # what fn returned
    failed = Signal(str, str)  # kind (tlstudio.core.errors.ERROR_KINDS), message
    cancelled = Signal()
    finished = Signal()  # after succeeded, failed or cancelled

    def __init__(
        self,
        fn: JobFn,
        *,
        context: QObject | None = None,
        progress_interval_s: float = 0.0,
        name: str = "",
        needs_ml: bool = False,
        token: CancelToken | None = None,
    ):
        super().__init__()
        self.token = token if token is not None else CancelToken()
        self.name = name or getattr(fn, "__name__", "job")
        self._fn = fn  # dropped on this (the GUI) thread with the job
        self._context = context
        self._interval = progress_interval_s
        self._needs_ml = needs_ml
        self._work: _Work | None = None
        self._delivered = False
        if context is not None:
            context.destroyed.connect(self.cancel)

    # -- GUI thread ---------------------------------------------------------------------
    def start(self, pool: QThreadPool | None = None) -> BackgroundJob:
        """Queue the job in ``pool`` (default: the global pool); returns the job."""
        key = next(_keys)
        self._work = _Work(key, self._fn, self.token, self.name, self._needs_ml,
                           self._interval, _relay())  # fmt: skip
        _live[key] = self
        (pool or QThreadPool.globalInstance()).start(self._work.run)
        return self

    def cancel(self) -> None:
        """Ask ``fn`` to stop (it sees ``token.is_cancelled``); no more ``progressed``
        arrives. Safe from any thread."""
        self.token.cancel()

    @property
    def is_cancelled(self) -> bool:
        return self.token.is_cancelled

    @property
    def is_finished(self) -> bool:
        """Whether the outcome was delivered."""
        return self._delivered

    def wait(self, msecs: int = -1) -> bool:
        """Block until ``fn`` has ended (at most ``msecs`` ms; -1: no limit), then
        deliver the outcome now. True if it was delivered. For shutdown and tests: the
        GUI thread is blocked meanwhile."""
        if not self._delivered:
            work = self._work
            if work is None:
                return False  # never started
            if not work.done.wait(None if msecs < 0 else msecs / 1000):
                return False
            self._deliver()
        return True

    def _context_gone(self) -> bool:
        return self._context is not None and not shiboken6.isValid(self._context)

    def _relay_progress(self, done: int, total: int, stage: str) -> None:
        if not (self._delivered or self.token.is_cancelled or self._context_gone()):
            self.progressed.emit(done, total, stage)

    def _deliver(self) -> None:
        work = self._work
        if self._delivered or work is None or work.outcome is None:
            return
        self._delivered = True
        _live.pop(work.key, None)
        status, value = work.outcome
        work.outcome = None  # the result is freed on this thread, not the pool's
        if self._context_gone():
            return  # whoever asked is gone
        if status == _SUCCEEDED:
            self.succeeded.emit(value)
        elif status == _FAILED:
            self.failed.emit(*value)
        else:
            self.cancelled.emit()
        self.finished.emit()


def start_job(
    fn: JobFn,
    *,
    context: QObject | None = None,
    pool: QThreadPool | None = None,
    succeeded: Callable[[Any], None] | None = None,
    failed: Callable[[str, str], None] | None = None,
    cancelled: Callable[[], None] | None = None,
    progressed: Callable[[int, int, str], None] | None = None,
    progress_interval_s: float = 0.0,
    needs_ml: bool = False,
) -> BackgroundJob:
    """Make a :class:`BackgroundJob`, connect the given callbacks and start it."""
    job = BackgroundJob(
        fn, context=context, progress_interval_s=progress_interval_s, needs_ml=needs_ml
    )
    for signal, slot in (
        (job.succeeded, succeeded),
        (job.failed, failed),
        (job.cancelled, cancelled),
        (job.progressed, progressed),
    ):
        if slot is not None:
            signal.connect(slot)
    return job.start(pool)
