"""Finding background work a test left running (used by the autouse fixture in conftest).

:class:`ThreadWatch` records, while installed, every QThread started, every QThreadPool
given work, every ``concurrent.futures`` task submitted and every plain
``threading.Thread`` that code of the repository (tlstudio or the tests) starts itself,
with the place that did it. Threads that libraries start, an executor's workers among
them, are theirs to manage: of an executor, its tasks count. :meth:`ThreadWatch.busy`
lists what is still running, also in the global pool and the pools made by
:func:`tlstudio.gui.workers.jobs.job_pool` (whoever started their work). Threads that a
pool keeps idle are not work.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: files whose frames are skipped when naming who started work: the machinery itself
_MACHINERY = {
    str(Path(__file__).resolve()),
    str(ROOT / "tlstudio" / "gui" / "workers" / "jobs.py"),
}

#: folders of the repository's own code (a virtual environment may sit in the repository)
_OWN_CODE = tuple(str(ROOT / folder) + os.sep for folder in ("tlstudio", "tests", "tools"))


def calling_place(skip: int = 2) -> str:
    """``file:line`` of the nearest caller inside the repository, past the job machinery
    (not pytest, Qt or the standard library)."""
    frame = sys._getframe(skip)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_OWN_CODE) and name not in _MACHINERY:
            return f"{Path(name).relative_to(ROOT)}:{frame.f_lineno}"
        frame = frame.f_back
    return "(outside the repository)"


def starting_place(skip: int = 2) -> str | None:
    """``file:line`` of the code that called ``Thread.start``, past the threading module,
    if it is the repository's own (not the machinery's); else None."""
    frame = sys._getframe(skip)
    # past Thread subclasses of the standard library and a watch installed on top of this
    while frame is not None and frame.f_code.co_filename in (threading.__file__, *_MACHINERY):
        frame = frame.f_back
    if frame is None or not frame.f_code.co_filename.startswith(_OWN_CODE):
        return None
    name = frame.f_code.co_filename
    return f"{Path(name).relative_to(ROOT)}:{frame.f_lineno}"


def _alive(obj: Any) -> bool:
    import shiboken6

    return shiboken6.isValid(obj)


class ThreadWatch:
    """Records background work while installed (see the module docstring)."""

    def __init__(self) -> None:
        self.threads: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self.pools: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()
        self.futures: list[tuple[concurrent.futures.Future, str]] = []
        self.plain_threads: weakref.WeakKeyDictionary[threading.Thread, str] = (
            weakref.WeakKeyDictionary()
        )

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from PySide6.QtCore import QThread, QThreadPool

        base_thread_start = QThread.start
        base_pool_start = QThreadPool.start
        base_submit = concurrent.futures.ThreadPoolExecutor.submit
        base_plain_start = threading.Thread.start
        watch = self

        def thread_start(self, *args: Any) -> None:
            watch.threads[self] = calling_place()
            base_thread_start(self, *args)

        def pool_start(self, runnable: Any, *args: Any) -> None:
            watch.pools.setdefault(self, []).append(calling_place())
            base_pool_start(self, runnable, *args)

        def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
            future = base_submit(self, fn, *args, **kwargs)
            watch.futures.append((future, calling_place()))
            return future

        def plain_start(self: threading.Thread) -> None:
            place = starting_place()
            if place is not None:
                watch.plain_threads[self] = place
            base_plain_start(self)

        monkeypatch.setattr(QThread, "start", thread_start)
        monkeypatch.setattr(QThreadPool, "start", pool_start)
        monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "submit", submit)
        monkeypatch.setattr(threading.Thread, "start", plain_start)

    def busy(self) -> list[str]:
        """One line per QThread or plain thread still running, pool with active work or
        unfinished future, naming where it was started."""
        from PySide6.QtCore import QThreadPool

        from tlstudio.gui.workers.jobs import registered_pools

        global_pool = QThreadPool.globalInstance()
        found = []
        for thread, place in list(self.threads.items()):
            if _alive(thread) and thread.isRunning():
                found.append(f"QThread {thread.objectName() or type(thread).__name__!r}"
                             f" started at {place}")  # fmt: skip
        for plain, place in list(self.plain_threads.items()):
            if plain.is_alive():
                found.append(f"thread {plain.name!r} started at {place}")
        pools = {id(p): p for p in registered_pools()}
        pools.update({id(p): p for p in list(self.pools.keys())})
        for pool in pools.values():
            if pool is global_pool and pool not in self.pools:
                continue  # only Qt's own C++ work (e.g. font loading) ran there: not ours
            if _alive(pool) and pool.activeThreadCount() > 0:
                owner = pool.parent()
                name = pool.objectName() or (
                    "global" if pool is global_pool else f"of {type(owner).__name__}"
                )
                places = sorted(set(self.pools.get(pool, []))) or ["(before this test)"]
                found.append(f"thread pool {name!r} busy; work started at {', '.join(places)}")
        for future, place in self.futures:
            if not future.done():
                found.append(f"executor task submitted at {place} not finished")
        return found

    def settle(self, grace_ms: int) -> list[str]:
        """:meth:`busy` after letting work end for up to ``grace_ms`` ms (the Qt event
        loop runs meanwhile, so finished jobs deliver their outcome)."""
        deadline = time.monotonic() + grace_ms / 1000
        found = self.busy()
        while found and time.monotonic() < deadline:
            _process_events(20)
            found = self.busy()
        return found

    def stop_leftovers(self) -> None:
        """Cancel what was left and wait for it, so the next test starts clean."""
        from tlstudio.gui.workers.jobs import live_jobs, wait_for_jobs

        for job in live_jobs():
            job.cancel()
        for thread in list(self.threads.keys()):
            if _alive(thread) and thread.isRunning():
                thread.quit()
                thread.wait(10_000)
        for pool in list(self.pools.keys()):
            if _alive(pool):
                pool.clear()
                pool.waitForDone(10_000)
        wait_for_jobs(10_000)
        concurrent.futures.wait([f for f, _ in self.futures], timeout=10)
        for plain in list(self.plain_threads.keys()):
            plain.join(10)  # a plain thread cannot be stopped from outside


def _process_events(ms: int) -> None:
    """Run the Qt event loop for ``ms`` ms (unlike QTest.qWait, Python threads run too)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def check_no_leaks(watch: ThreadWatch, grace_ms: int) -> None:
    """Fail (``pytest.fail``) if background work is still running after ``grace_ms``;
    what was left is stopped first."""
    leaks = watch.settle(grace_ms)
    if leaks:
        watch.stop_leftovers()
        pytest.fail(
            "background work still running after the test (wait for it, or shut down the"
            " widget that owns it, before the test ends):\n  " + "\n  ".join(leaks),
            pytrace=False,
        )
