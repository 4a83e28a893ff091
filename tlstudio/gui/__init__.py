"""The PySide6 window: main window, canvas, panels, workers and plots.

Importing this package first works round a PySide6 bug (seen in 6.12.0):
``SignalInstance.emit()`` and ``.disconnect()`` return ``True`` without a new
reference, so every call from Python takes one reference from the ``True``
singleton; after a few hundred signals the interpreter aborts with "Fatal Python
error: bool_dealloc". A probe checks whether the running PySide6 has the bug and
only then wraps both methods to give the missing reference back.
"""

from __future__ import annotations

import ctypes
import sys


def _fix_signal_bool_refcount() -> bool:
    """Patch ``SignalInstance.emit``/``disconnect`` if they drop a reference; True if patched."""
    try:
        from PySide6.QtCore import QObject, Signal, SignalInstance
    except ImportError:  # the window is not installed; core and CLI do not care
        return False

    class _Probe(QObject):
        fired = Signal()

    probe = _Probe()
    slot = probe.deleteLater  # any callable: only the return value of disconnect matters
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    incref.restype = None

    def loses_reference(call) -> bool:
        before = sys.getrefcount(True)
        for _ in range(8):
            call()
        return sys.getrefcount(True) < before - 4  # 8 lost; leave room for noise

    def fixed(original):
        def call(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            if result is True or result is False:
                incref(result)  # the reference PySide forgot to add
            return result

        call.__name__ = original.__name__
        call.__doc__ = original.__doc__
        return call

    patched = False
    if loses_reference(probe.fired.emit):
        SignalInstance.emit = fixed(SignalInstance.emit)
        patched = True

    def connect_disconnect() -> None:
        probe.fired.connect(slot)
        probe.fired.disconnect(slot)

    if loses_reference(connect_disconnect):
        SignalInstance.disconnect = fixed(SignalInstance.disconnect)
        patched = True
    probe.deleteLater()
    return patched


PYSIDE_BOOL_FIX = _fix_signal_bool_refcount()
