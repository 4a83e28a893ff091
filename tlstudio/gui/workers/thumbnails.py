"""Thumbnails for the image browser, made off the GUI thread.

A request puts (key, path) on a last-in-first-out stack: the rows the user
scrolled to most recently are the ones on screen, so they are served first,
and when the stack grows past ``max_queued`` the oldest requests are dropped
(the view asks again if those rows come back into sight). At most ``threads``
pool tasks drain the stack. Each produces the cache PNG through
:class:`~tlstudio.core.thumbnails.ThumbnailCache`, loads and scales it into a
QImage in the worker, and the GUI thread only turns that into a QPixmap.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QRect, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap

from tlstudio.core.errors import ImageError, error_message
from tlstudio.core.thumbnails import ThumbnailCache
from tlstudio.gui.workers.jobs import job_pool

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.gui.state import AppState


class _Relay(QObject):
    """Lives in the GUI thread; worker threads emit through it (queued)."""

    loaded = Signal(str, object, str)  # key, QImage or None, error message


def placeholder_icon(size: int, text: str = "", color: str = "#d0d4da") -> QIcon:
    """A flat rounded square with an optional word, for rows without a thumbnail."""
    pm = QPixmap(size, size)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(color))
    p.drawRoundedRect(QRect(2, 2, size - 4, size - 4), 6, 6)
    if text:
        p.setPen(QColor("#5b6470"))
        p.drawText(pm.rect(), Qt.AlignmentFlag.AlignCenter, text)
    p.end()
    return QIcon(pm)


class ThumbnailLoader(QObject):
    """Icons of images by content hash; :meth:`icon` never blocks unless ``synchronous``.

    ``size``: longest side of the cached PNG (px); ``icon_size``: longest side of the
    icon handed to the view (px). ``threads``: pool size (default: CPU cores - 1, at
    most 3). ``synchronous`` makes :meth:`icon` do the work inline
    (only for comparison in the benchmark)."""

    thumbnail_ready = Signal(str)  # key: icon(key, ...) now returns it (or the broken icon)

    def __init__(
        self,
        cache_dir: Path,
        *,
        size: int = 128,
        icon_size: int = 96,
        threads: int | None = None,
        synchronous: bool = False,
        max_queued: int = 256,
        max_cached: int = 2000,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.cache = ThumbnailCache(cache_dir, size)
        self.icon_size = icon_size
        self.synchronous = synchronous
        self.max_queued = max_queued
        self.max_cached = max_cached
        self._icons: OrderedDict[str, QIcon] = OrderedDict()  # LRU
        self._failed: dict[str, str] = {}
        self._queued: set[str] = set()  # requested, result not yet back (GUI thread only)
        self._stack: list[tuple[str, Path]] = []  # guarded by _lock
        self._active = 0  # pool tasks draining the stack; guarded by _lock
        self._lock = threading.Lock()
        self._closed = False
        if threads is None:
            # leave a core to the GUI thread: on 2 cores a second worker doubled the
            # scroll stutter (tests/bench/bench_window.py); more rarely pays, given the GIL
            threads = max(1, min(3, (os.cpu_count() or 2) - 1))
        # not one BackgroundJob per image: a few long-lived drains serve a LIFO stack,
        # so the rows scrolled to last come first and stale requests are dropped
        self._pool = job_pool(self, threads, "thumbnails")
        self._relay = _Relay()
        self._relay.loaded.connect(self._on_loaded)
        self.broken_icon = placeholder_icon(icon_size, "?", "#e8d2d2")

    # -- GUI thread -----------------------------------------------------------------
    def icon(self, key: str, path: Path) -> QIcon | None:
        """The icon of image ``path`` (content hash ``key``), or None while it loads."""
        icon = self._icons.get(key)
        if icon is not None:
            self._icons.move_to_end(key)
            return icon
        if key in self._failed:
            return self.broken_icon
        if self.synchronous:
            image, error = self._make(key, path)
            self._store(key, image, error)
            return self._icons.get(key, self.broken_icon)
        if key not in self._queued and not self._closed:
            self._queued.add(key)
            self._push(key, Path(path))
        return None

    def error(self, key: str) -> str | None:
        """Why the thumbnail of ``key`` could not be made, if it failed."""
        return self._failed.get(key)

    def forget_failures(self) -> None:
        """Try failed thumbnails again (after files were relinked)."""
        self._failed.clear()

    def pending(self) -> int:
        """Requests not yet answered."""
        return len(self._queued)

    def shutdown(self) -> None:
        """Drop queued work and wait for running tasks (at most one image each)."""
        self._closed = True
        with self._lock:
            self._stack.clear()
        self._pool.waitForDone()

    def _push(self, key: str, path: Path) -> None:
        start = False
        with self._lock:
            self._stack.append((key, path))
            if len(self._stack) > self.max_queued:
                dropped = self._stack[: -self.max_queued]
                del self._stack[: -self.max_queued]
            else:
                dropped = []
            if self._active < self._pool.maxThreadCount():
                self._active += 1
                start = True
        for k, _ in dropped:
            self._queued.discard(k)  # asked again when its row is painted again
        if start:
            self._pool.start(self._drain)

    def _on_loaded(self, key: str, image: QImage | None, error: str) -> None:
        self._queued.discard(key)
        if self._closed:
            return
        self._store(key, image, error)
        self.thumbnail_ready.emit(key)

    def _store(self, key: str, image: QImage | None, error: str) -> None:
        if image is None:
            self._failed[key] = error
            return
        self._icons[key] = QIcon(QPixmap.fromImage(image))
        while len(self._icons) > self.max_cached:
            self._icons.popitem(last=False)

    # -- pool threads -----------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._stack or self._closed:
                    self._active -= 1
                    return
                key, path = self._stack.pop()
            image, error = self._make(key, path)
            try:
                self._relay.loaded.emit(key, image, error)
            except RuntimeError:  # the window is gone
                return

    def _make(self, key: str, path: Path) -> tuple[QImage | None, str]:
        try:
            png = self.cache.get(path, key)
        except ImageError as exc:
            return None, exc.reason
        except OSError as exc:
            return None, f"cannot read file ({exc.strerror or exc})"
        except Exception as exc:  # a thumbnail must never take the window down
            return None, error_message(exc)
        image = QImage(str(png))
        if image.isNull():
            return None, "cannot load the cached thumbnail"
        if max(image.width(), image.height()) > self.icon_size:
            image = image.scaled(
                self.icon_size,
                self.icon_size,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        return image, ""


class ProjectThumbnails(QObject):
    """A :class:`ThumbnailLoader` for whichever project ``app_state`` has open: a new one
    when a project opens, the old one shut down when it closes. Build it before
    connecting slots that ask for icons on ``project_opened``."""

    thumbnail_ready = Signal(str)  # key: icon(key, ...) now returns it

    def __init__(self, app_state: AppState, *, icon_size: int, size: int = 128, parent: QObject):
        super().__init__(parent)
        self.app_state = app_state
        self.icon_size, self.size = icon_size, size
        self.loader: ThumbnailLoader | None = None
        app_state.project_opened.connect(lambda _p: self.reset())
        app_state.project_closed.connect(self.reset)
        self.reset()

    def reset(self) -> None:
        """Shut the loader down and make one for the open project (if any)."""
        self.shutdown()
        project = self.app_state.project
        if project is not None:
            self.loader = ThumbnailLoader(
                project.cache_dir, size=self.size, icon_size=self.icon_size, parent=self
            )
            self.loader.thumbnail_ready.connect(self.thumbnail_ready)

    def icon(self, key: str, path: Path) -> QIcon | None:
        """The loader's icon (None while it loads or without a project)."""
        return None if self.loader is None else self.loader.icon(key, path)

    def shutdown(self) -> None:
        """Stop the loader (waits for at most one image per thread)."""
        if self.loader is not None:
            self.loader.shutdown()
            self.loader.deleteLater()
            self.loader = None
