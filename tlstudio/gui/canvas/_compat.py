"""Work around PySide6 builds that return singletons without owning a reference
(seen with PySide6 6.12.0's ``cp310-abi3`` wheel on CPython 3.11): every call of
a void C++ method (``setPos``, ``setVisible``, ``update`` …) drops a reference to
``None``, and every ``Signal.emit`` one to ``True``.

From CPython 3.12 on these objects are immortal and the leak is harmless; on 3.11
their reference counts (a few thousand at start) run down and the interpreter
aborts with "Fatal Python error: none_dealloc" (or "bool_dealloc") after a few
thousand calls, at the latest at exit. :func:`guard_none_refcount` detects the
leak and, only then, gives None, True and False reference counts they cannot
exhaust, which is what 3.12 does for every immortal object.
"""

from __future__ import annotations

import ctypes
import sys

_GUARD = 1 << 40  # > 10^12 leaked references before anything could go wrong
_applied = False


def void_calls_leak_none() -> bool:
    """True if calling a void Qt method lowers ``None``'s reference count."""
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(20):
        probe.setObjectName("probe")
    return sys.getrefcount(None) <= before - 15


def guard_none_refcount() -> bool:
    """Apply the work-around if this interpreter needs it. Returns True if applied
    (now or earlier). Safe to call many times."""
    global _applied
    if _applied:
        return True
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    if not void_calls_leak_none():
        return False
    # ob_refcnt is the first field of every CPython object (a Py_ssize_t)
    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += _GUARD
    _applied = True
    return True
