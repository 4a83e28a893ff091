"""Python's cyclic garbage collection, run on the GUI thread only.

Automatic collection runs in whichever thread happens to allocate when a threshold is
crossed; when that is a pool thread and the garbage holds Qt widgets (a closed dialog in a
reference cycle), the widgets are destroyed there. Qt then locks the objects' connection
mutexes in the pool thread while that thread waits for the GIL, and the GUI thread,
holding the GIL, waits for the same mutexes: the window freezes for good (seen in the test
suite: a pool thread collecting a closed window's menus). :class:`GuiThreadCollector`
turns automatic collection off and collects from a timer on the GUI thread instead, as
often as the thresholds would have (the usual PyQt recipe).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

#: how often (ms) the GUI thread checks whether a collection is due
CHECK_INTERVAL_MS = 500


class GuiThreadCollector(QObject):
    """Collect garbage on the thread that makes this object (the GUI thread) only.
    Made once per application (parent: the QApplication)."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self._thresholds = gc.get_threshold()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(CHECK_INTERVAL_MS)

    def check(self) -> None:
        """Collect the oldest generation whose count passed its threshold, as Python's
        own collector would."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self._thresholds[generation]:
                gc.collect(generation)
                return
