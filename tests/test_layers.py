"""The layer rule of DESIGN.md at run time: loading all of core loads no torch and no Qt.

The rule itself is checked by import-linter (``lint-imports``; contracts in
pyproject.toml), which reads every import statement of tlstudio, those inside functions
included. Its graph stops at the first third-party package, though: it sees
``tlstudio.core.decoders.tiff -> tifffile`` but not what tifffile imports when it loads.
This test covers that gap for core, whose dependencies (numpy, OpenCV, Pillow, tifffile,
pydicom, PyYAML) must stay free of torch and Qt. For ml the same run-time check would
spend seconds importing torch to learn that torch and torchvision load no Qt; the
contracts cover ml's own imports.
"""

import subprocess
import sys

FORBIDDEN_IN_CORE = {"torch", "torchvision", "PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6"}


def test_loading_every_core_module_loads_neither_torch_nor_qt() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import tlstudio.core as pkg\n"
        "names = [m.name for m in pkgutil.walk_packages(pkg.__path__, 'tlstudio.core.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, roots = out.stdout.splitlines()
    loaded = set(roots.split())
    assert int(count) > 20 and {"numpy", "cv2", "yaml"} <= loaded  # core was really loaded
    assert not loaded & FORBIDDEN_IN_CORE, (
        f"loading tlstudio.core loaded {loaded & FORBIDDEN_IN_CORE}"
    )
