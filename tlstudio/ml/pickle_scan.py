"""Why a ``torch.load(weights_only=True)`` failed, in words a user can act on.

``weights_only`` loading refuses any pickle that would import Python objects, but torch
reports that as an unpickling error that reads like a damaged file. :func:`load_failure`
looks at the pickle's opcodes (with :mod:`pickletools`, which never executes anything)
and tells a file that holds Python objects, which could run code, from one that is
corrupt or truncated.
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path
from typing import IO

REFUSED = (
    "refused: the file holds Python objects, which could run code; only plain tensors are loaded"
)

# what a plain tensor file refers to (torch's weights-only allow-list, in spirit)
_PLAIN_PREFIXES = ("torch.", "collections.OrderedDict", "_codecs.encode")
_PLAIN_BUILTINS = {"set", "frozenset", "bytearray", "slice", "complex", "int", "float", "bool"}
_STRING_OPS = {
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
    "BINSTRING", "STRING",
}  # fmt: skip
_MAX_PICKLES = 8  # the legacy torch format is a few pickles in a row, then raw data


def load_failure(path: str | Path, exc: BaseException) -> str:
    """The reason to show for ``torch.load(path, weights_only=True)`` raising ``exc``."""
    objects = python_objects(Path(path))
    if objects:
        shown = ", ".join(objects[:3]) + (", ..." if len(objects) > 3 else "")
        return f"{REFUSED} (found: {shown})"
    return f"corrupt, truncated or not a PyTorch file ({type(exc).__name__})"


def python_objects(path: Path) -> list[str]:
    """Dotted names of the Python objects (other than plain tensor parts) that the pickles
    in ``path`` would import, in order of appearance; [] for none or no pickle at all."""
    found: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    if name.endswith(".pkl"):
                        with zf.open(name) as f:
                            _scan(f, found)
        else:
            with open(path, "rb") as f:
                for _ in range(_MAX_PICKLES):
                    if not _scan(f, found):
                        break
    except (OSError, zipfile.BadZipFile, RuntimeError):
        pass
    # protocol 2 pickles name Python 3's builtins as Python 2 did
    named = (n.replace("__builtin__.", "builtins.", 1) for n in found)
    return [name for name in dict.fromkeys(named) if not _plain(name)]


def _plain(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    if module == "builtins":
        return attr in _PLAIN_BUILTINS
    return name.startswith(_PLAIN_PREFIXES)


def _memo_index(arg: object) -> int:
    """The memo index a PUT or GET opcode carries (pickletools decodes it as an int)."""
    if not isinstance(arg, int):
        raise ValueError(f"memo index {arg!r} is not an integer")
    return arg


def _scan(f: IO[bytes], found: list[str]) -> bool:
    """Add the globals one pickle in ``f`` imports to ``found``; True if it ended with STOP
    (another pickle may follow), False if the data is not (or no longer) a pickle."""
    strings: list[str] = []
    memo: dict[int, str | None] = {}
    last: str | None = None
    try:
        for op, arg, _pos in pickletools.genops(f):
            name = op.name
            if name in _STRING_OPS:
                last = arg if isinstance(arg, str) else str(arg)
                strings.append(last)
                continue
            if name == "MEMOIZE":
                memo[len(memo)] = last
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[_memo_index(arg)] = last
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                last = memo.get(_memo_index(arg))
                if last is not None:
                    strings.append(last)
                continue
            elif name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif name == "STOP":
                return True
            last = None
    except Exception:  # truncated or not a pickle: what was seen so far stands
        return False
    return False
