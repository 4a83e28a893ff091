"""BackgroundJob (the one way the GUI runs work off its thread) and the leak check that
every GUI test ends with."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QThread, QThreadPool
from PySide6.QtWidgets import QWidget
from thread_leaks import ThreadWatch, check_no_leaks

from tlstudio.core.errors import (
    CANCELLED,
    FORMAT,
    INTERNAL,
    IO,
    MISSING,
    USER,
    Cancelled,
    CorruptImageError,
    FormatError,
    MissingCodecError,
    ValidationError,
    error_kind,
)
from tlstudio.gui.workers.jobs import BackgroundJob, job_pool, live_jobs


def _record(job: BackgroundJob) -> list[tuple]:
    """Every signal of ``job``, in order, as (name, *args)."""
    seen: list[tuple] = []
    job.progressed.connect(lambda d, t, s: seen.append(("progressed", d, t, s)))
    job.succeeded.connect(lambda v: seen.append(("succeeded", v)))
    job.failed.connect(lambda k, m: seen.append(("failed", k, m)))
    job.cancelled.connect(lambda: seen.append(("cancelled",)))
    job.finished.connect(lambda: seen.append(("finished",)))
    return seen


def test_a_job_reports_progress_then_its_result_on_the_gui_thread(qtbot):
    threads = []

    def work(token, progress):
        threads.append(threading.current_thread())
        for i in range(3):
            progress(i + 1, 3, "counting")
        return 42

    job = BackgroundJob(work)
    seen = _record(job)
    with qtbot.waitSignal(job.finished, timeout=5000):
        job.start()
    assert seen == [
        ("progressed", 1, 3, "counting"),
        ("progressed", 2, 3, "counting"),
        ("progressed", 3, 3, "counting"),
        ("succeeded", 42),
        ("finished",),
    ]
    assert threads[0] is not threading.main_thread()
    assert job.is_finished and job not in live_jobs()


def test_progress_is_thinned_but_each_stage_end_arrives(qtbot):
    def work(token, progress):
        for i in range(1, 1001):
            progress(i, 1000, "images")
        progress(0, 0, "projection")
        return None

    job = BackgroundJob(work, progress_interval_s=60)
    seen = _record(job)
    with qtbot.waitSignal(job.finished, timeout=5000):
        job.start()
    reports = [e[1:] for e in seen if e[0] == "progressed"]
    assert reports == [(1, 1000, "images"), (1000, 1000, "images"), (0, 0, "projection")]


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (ValidationError("box outside the image"), USER, "box outside the image"),
        (CorruptImageError("a.png", "empty file"), FORMAT, "a.png: empty file"),
        (FormatError("l.json", "line 3", "bad"), FORMAT, "l.json (line 3): bad"),
        (MissingCodecError("b.dcm", "needs pylibjpeg"), MISSING, "b.dcm: needs pylibjpeg"),
        (FileNotFoundError(2, "No such file", "c.png"), MISSING, "No such file: 'c.png'"),
        (PermissionError(13, "Permission denied"), IO, "Permission denied"),
        (KeyError("oops"), INTERNAL, "KeyError: 'oops'"),
    ],
)
def test_a_failure_carries_its_kind_and_message(qtbot, error, kind, message):
    def work(token, progress):
        raise error

    job = BackgroundJob(work)
    seen = _record(job)
    with qtbot.waitSignal(job.finished, timeout=5000):
        job.start()
    assert seen[0][0] == "failed"
    assert seen[0][1] == kind == error_kind(error)
    assert message in seen[0][2]
    assert seen[1:] == [("finished",)]


def test_cancel_stops_the_work_and_says_cancelled(qtbot):
    started, steps = threading.Event(), []

    def work(token, progress):
        started.set()
        while not token.is_cancelled:
            steps.append(1)
            progress(len(steps), 0)
            threading.Event().wait(0.005)
        raise Cancelled("stopped")

    job = BackgroundJob(work)
    seen = _record(job)
    job.start()
    assert started.wait(5)
    qtbot.waitUntil(lambda: any(e[0] == "progressed" for e in seen), timeout=5000)
    with qtbot.waitSignal(job.finished, timeout=5000):
        job.cancel()
    assert [e[0] for e in seen if e[0] != "progressed"] == ["cancelled", "finished"]
    assert seen.index(("cancelled",)) > max(i for i, e in enumerate(seen) if e[0] == "progressed")


def test_work_that_returns_after_a_cancel_gives_its_partial_result(qtbot):
    started, gate = threading.Event(), threading.Event()

    def work(token, progress):
        started.set()
        gate.wait(5)
        return "partial" if token.is_cancelled else "whole"

    job = BackgroundJob(work)
    seen = _record(job)
    job.start()
    assert started.wait(5)
    job.cancel()
    gate.set()
    assert job.wait(5000)
    assert seen == [("succeeded", "partial"), ("finished",)]
    assert error_kind(Cancelled("x")) == CANCELLED


def test_a_job_cancelled_before_it_began_does_not_run(qtbot):
    ran = []
    job = BackgroundJob(lambda token, progress: ran.append(1))
    seen = _record(job)
    job.cancel()
    job.start()
    assert job.wait(5000)
    assert ran == [] and seen == [("cancelled",), ("finished",)]


def test_a_deleted_receiver_hears_nothing_and_its_job_is_cancelled(qtbot):
    began, gate, saw_cancel = threading.Event(), threading.Event(), []
    widget = QWidget()
    label = QWidget(widget)

    def work(token, progress):
        began.set()
        gate.wait(5)
        saw_cancel.append(token.is_cancelled)
        progress(1, 1)
        return "late"

    job = BackgroundJob(work, context=widget)
    # a slot that would crash on the deleted widget if it were called
    job.succeeded.connect(lambda value: label.setToolTip(value))
    job.progressed.connect(lambda *_: label.setToolTip("progress"))
    seen = _record(job)
    job.start()
    qtbot.waitUntil(began.is_set, timeout=30_000)  # a busy pool may start it late
    widget.deleteLater()
    qtbot.waitUntil(lambda: job.is_cancelled, timeout=5000)
    gate.set()
    qtbot.waitUntil(lambda: job.is_finished, timeout=5000)
    assert saw_cancel == [True]
    assert seen == []


def test_wait_delivers_the_outcome_at_once(qtbot):
    job = BackgroundJob(lambda token, progress: "done")
    seen = _record(job)
    owner = QWidget()
    job.start(job_pool(owner, 1, "test pool"))
    assert job.wait(5000)
    assert seen == [("succeeded", "done"), ("finished",)]


# --------------------------------------------------------------------------- leak check


def test_the_leak_check_names_a_qthread_left_running(qtbot, monkeypatch):
    watch = ThreadWatch()
    watch.install(monkeypatch)
    release = threading.Event()

    class Blocked(QThread):
        def run(self) -> None:
            release.wait(10)

    thread = Blocked()
    thread.setObjectName("left running")
    thread.start()
    threading.Timer(0.5, release.set).start()  # ends it while the check cleans up
    try:
        with pytest.raises(pytest.fail.Exception) as failure:
            check_no_leaks(watch, grace_ms=50)
        text = str(failure.value)
        assert "QThread 'left running'" in text and "test_background_jobs.py" in text
    finally:
        release.set()
        thread.wait(10_000)
    assert watch.busy() == []


def test_the_leak_check_names_a_busy_private_pool_and_passes_once_it_is_idle(qtbot, monkeypatch):
    watch = ThreadWatch()
    watch.install(monkeypatch)
    release = threading.Event()
    owner = QWidget()
    job = BackgroundJob(lambda token, progress: release.wait(10))
    job.start(job_pool(owner, 1, "deliberately busy"))
    unnamed = QThreadPool(owner)  # made without job_pool: named by its owner
    unnamed.start(lambda: release.wait(10))
    try:
        leaks = watch.settle(grace_ms=50)
        mine = [leak for leak in leaks if "'deliberately busy'" in leak]
        assert len(mine) == 1 and "test_background_jobs.py" in mine[0]
        assert any("'of QWidget'" in leak and "test_background_jobs.py" in leak for leak in leaks)
    finally:
        release.set()
    check_no_leaks(watch, grace_ms=5000)  # passes: the job ends within the grace
    qtbot.waitUntil(lambda: job.is_finished, timeout=5000)


def test_the_leak_check_names_an_unfinished_executor_task(qtbot, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    watch = ThreadWatch()
    watch.install(monkeypatch)
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as executor:
        executor.submit(release.wait, 10)
        try:
            assert any("executor task" in leak for leak in watch.settle(grace_ms=50))
        finally:
            release.set()
    assert watch.busy() == []


def test_the_leak_check_names_a_plain_thread_left_running(qtbot, monkeypatch):
    watch = ThreadWatch()
    watch.install(monkeypatch)
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(10,), name="plain left running")
    thread.start()
    threading.Timer(0.5, release.set).start()  # ends it while the check cleans up
    try:
        with pytest.raises(pytest.fail.Exception) as failure:
            check_no_leaks(watch, grace_ms=50)
        text = str(failure.value)
        assert "thread 'plain left running' started at tests/gui/test_background_jobs.py" in text
    finally:
        release.set()
        thread.join(10)
    assert watch.busy() == []


def test_the_leak_check_leaves_threads_of_libraries_alone(qtbot, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    watch = ThreadWatch()
    watch.install(monkeypatch)
    executor = ThreadPoolExecutor(max_workers=1)  # its worker thread idles until shutdown
    try:
        executor.submit(int).result(10)
        assert watch.busy() == []
    finally:
        executor.shutdown()
