"""The one path by which the GUI imports its torch-heavy modules off the GUI thread.

Two threads that import torchvision for the first time at once can fail: Python resolves
a circular import between two threads by handing one of them a half-initialised module
("cannot import name 'StochasticDepth' from partially initialized module
'torchvision.ops'"). So the Train panel's loader and every
:class:`~tlstudio.gui.workers.jobs.BackgroundJob` made with ``needs_ml=True`` import
:data:`ML_MODULES` through :func:`import_ml`, one thread at a time, before their work
starts: a job started while the loader imports waits for it. Once the modules are
imported, :func:`import_ml` costs a lock and a few dictionary look-ups.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable

#: imported in this order by :func:`import_ml`: torch and torchvision first (their
#: circular imports are where a concurrent first import breaks), then tlstudio's ML layer
ML_MODULES: tuple[str, ...] = (
    "torch",
    "torchvision",
    "tlstudio.ml.backbones",
    "tlstudio.ml.weights",
    "tlstudio.ml.transforms",
    "tlstudio.ml.trainer",
    "tlstudio.ml.data",
    "tlstudio.ml.runner",
)

# Re-entrant: an import made under the lock may itself need the ML modules.
_lock = threading.RLock()


def import_ml(extra: Iterable[str] = ()) -> None:
    """Import :data:`ML_MODULES`, then the modules named in ``extra``, while no other
    thread imports them through here (it waits meanwhile). Raises what an import raises."""
    with _lock:
        for name in (*ML_MODULES, *extra):
            importlib.import_module(name)
