"""Files that are either fully written or not there: write to a temporary file beside the
target, fsync, then ``os.replace``. A crash or an exception leaves the old file (or none)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | Path, *, mode: int = 0o644, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; when the block ends without an
    exception, it is flushed to disk and replaces ``path``. Otherwise it is deleted and
    ``path`` is left as it was. ``mode``: permission bits of the new file. ``sync=False``
    skips the flush (for many small files: a killed process still never leaves half a
    file; a power cut may)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, mode)  # mkstemp creates 0600
        yield tmp
        if sync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(
    path: str | Path, text: str, *, newline: str | None = None, sync: bool = True
) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (``newline`` and ``sync`` as for
    :meth:`pathlib.Path.write_text` and :func:`replacing`)."""
    with replacing(path, sync=sync) as tmp:
        tmp.write_text(text, encoding="utf-8", newline=newline)
