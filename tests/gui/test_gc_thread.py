"""Garbage is collected on the GUI thread only: automatic collection is off, and the
collector's timer collects reference cycles (a closed dialog in a cycle, say) once the
allocation counts pass Python's thresholds."""

from __future__ import annotations

import gc
import threading
import weakref

from PySide6.QtCore import QObject

from tlstudio.gui.gc_thread import GuiThreadCollector


class _Node:
    """A reference cycle that only the cyclic collector frees."""

    def __init__(self) -> None:
        self.me = self


def test_cycles_are_collected_by_the_gui_thread_and_not_by_others(qtbot):
    owner = QObject()
    collected_in: list[str] = []

    def note_collection(phase: str, _info: dict) -> None:
        if phase == "start":
            collected_in.append(threading.current_thread().name)

    gc.callbacks.append(note_collection)
    try:
        GuiThreadCollector(owner)
        assert not gc.isenabled()
        first = _Node()
        dead = weakref.ref(first)
        del first

        def allocate_in_a_worker() -> None:  # far past the first threshold
            junk = [_Node() for _ in range(3 * gc.get_threshold()[0])]
            del junk

        worker = threading.Thread(target=allocate_in_a_worker, name="worker")
        worker.start()
        worker.join(30)
        assert dead() is not None  # the worker's allocations started no collection
        qtbot.waitUntil(lambda: dead() is None, timeout=5000)  # the timer's did
        assert collected_in and set(collected_in) == {threading.main_thread().name}
    finally:
        gc.callbacks.remove(note_collection)
        owner.deleteLater()
        gc.enable()
