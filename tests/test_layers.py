"""The layer rule of DESIGN.md: core imports no Qt and no torch; ml imports no Qt."""

import subprocess
import sys

QT = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6")


def _loaded_modules(package: str) -> set[str]:
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {line.split(".")[0] for line in out.stdout.split()}


def test_core_imports_neither_qt_nor_torch():
    roots = _loaded_modules("tlstudio.core")
    assert not roots & set(QT), f"tlstudio.core loaded Qt: {roots & set(QT)}"
    assert not roots & {"torch", "torchvision"}, "tlstudio.core loaded torch"


def test_ml_imports_no_qt():
    roots = _loaded_modules("tlstudio.ml")
    assert not roots & set(QT), f"tlstudio.ml loaded Qt: {roots & set(QT)}"


def test_check_would_catch_a_violation():
    """The detector itself works: a module that imports PySide6 is seen."""
    code = "import sys, PySide6.QtCore; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "PySide6" in {line.split(".")[0] for line in out.stdout.split()}
