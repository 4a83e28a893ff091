"""Thumbnails cached on disk as PNG files, keyed by image content hash."""

from __future__ import annotations

import os
import tempfile
import threading
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from . import imageio
from .decoders.base import decoded_bytes
from .imageio import ImageData, PathLike
from .windowing import to_display

__all__ = ["ThumbnailCache"]

_large_decode = threading.Lock()  # one large image decoded at a time, in any thread


class ThumbnailCache:
    """PNG thumbnails on disk, keyed by image content hash.

    Files live at ``cache_dir/thumbs/<key[:2]>/<key>_<size>.png``; the longest side
    is ``size`` pixels (aspect kept), pixels are the image through its default
    window (:func:`~tlstudio.core.windowing.to_display`), grey stays grey, RGBA keeps
    alpha. Images whose decoded size is over :attr:`large_bytes` are made one at a time
    in the whole process, however many threads ask, so several huge images are never
    held at once."""

    large_bytes = 64_000_000

    def __init__(self, cache_dir: Path, size: int = 256):
        if size < 1:
            raise ValueError(f"thumbnail size must be >= 1, got {size}")
        self.cache_dir = Path(cache_dir)
        self.size = int(size)

    def path_for(self, key: str) -> Path:
        """Where the thumbnail of content hash ``key`` lives (it may not exist yet)."""
        if not key or any(c in key for c in "/\\") or key.startswith("."):
            raise ValueError(f"invalid thumbnail key {key!r}")
        return self.cache_dir / "thumbs" / key[:2] / f"{key}_{self.size}.png"

    def get(self, path: PathLike, key: str) -> Path:
        """Path of the thumbnail of image ``path`` (content hash ``key``), made on first use.

        Raises the ImageError subclasses of :func:`~tlstudio.core.imageio.read_image` for a
        bad image."""
        out = self.path_for(key)
        if out.is_file():
            return out
        large = decoded_bytes(imageio.probe_image(path)) > self.large_bytes
        with _large_decode if large else nullcontext():
            # a JPEG decodes at 1/2..1/8 scale when that still covers the thumbnail
            data = imageio.read_image(path, reduce_to=self.size)
            thumb = self.render(data)
            del data
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_png_atomic(out, thumb)
        return out

    def render(self, data: ImageData) -> np.ndarray:
        """The thumbnail pixels (uint8) of a decoded image."""
        import cv2

        disp = to_display(data.array, data.window)
        h, w = disp.shape[:2]
        scale = self.size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        if (nw, nh) == (w, h):
            return disp
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
        return cv2.resize(np.ascontiguousarray(disp), (nw, nh), interpolation=interp)


def _write_png_atomic(out: Path, pixels: np.ndarray) -> None:
    """Writes ``pixels`` as PNG to ``out`` via a temp file + os.replace (never half a file)."""
    from PIL import Image

    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(pixels).save(f, format="PNG")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
