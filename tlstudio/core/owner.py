"""Which process owns a piece of work (a training run, an import's staging folder), and
whether that process is still alive.

A process is named by its id, its host name and its start time: process ids are reused,
so the start time tells a new process with the same id from the one that wrote the
record. Where the start time cannot be read (no ``/proc``), the id alone decides.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class ProcessOwner:
    """A process: ``pid``, ``host`` (``socket.gethostname()``) and ``started``, an opaque
    start-time token of that host (empty where it cannot be read)."""

    pid: int
    host: str
    started: str = ""

    @classmethod
    def current(cls) -> ProcessOwner:
        """This process."""
        pid = os.getpid()
        return cls(pid, _host(), _start_token(pid))

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "started": self.started})

    @classmethod
    def from_json(cls, text: str | None) -> ProcessOwner | None:
        """The owner stored by :meth:`to_json`; None for no or unreadable text."""
        if not text:
            return None
        try:
            d = json.loads(text)
            return cls(int(d["pid"]), str(d["host"]), str(d.get("started", "")))
        except (ValueError, TypeError, KeyError):
            return None

    def is_gone(self) -> bool:
        """True when this process certainly no longer runs: same host, and no process with
        this id, or one that started at another time. A process of another host is never
        called gone (it cannot be checked from here)."""
        if self.host != _host():
            return False
        if not _pid_exists(self.pid):
            return True
        if self.started:
            now = _start_token(self.pid)
            return bool(now) and now != self.started
        return False


@cache
def _host() -> str:
    return socket.gethostname()


def _start_token(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc/PID/stat`` field
    22) joined with the boot id; empty where there is no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return ""
    # the command name (field 2) is in parentheses and may itself hold spaces or ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return ""
    return f"{_boot_id()}:{fields[19]}"


@cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _pid_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _pid_exists_windows(pid)
    try:
        os.kill(pid, 0)  # signal 0: no signal is sent, only the existence is checked
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True


def _pid_exists_windows(pid: int) -> bool:  # pragma: no cover - Windows only
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
