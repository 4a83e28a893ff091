"""Imports the torch-heavy modules the Train panel needs, once, in a background thread
(everything under :mod:`tlstudio.ml` imports torch: seconds), and reads what the panel
shows first: the weights available per backbone and whether there is a GPU."""

from __future__ import annotations

import importlib
import threading

ML_MODULES = (
    "tlstudio.ml.backbones",
    "tlstudio.ml.weights",
    "tlstudio.ml.transforms",
    "tlstudio.ml.trainer",
    "tlstudio.ml.data",
    "tlstudio.ml.runner",
)
GUI_MODULES = (  # Qt only, but compiling them is worth doing off the GUI thread too
    "tlstudio.gui.training.backbone_table",
    "tlstudio.gui.training.freeze_strip",
    "tlstudio.gui.training.augment_preview",
    "tlstudio.gui.training.augment_editor",
    "tlstudio.gui.training.options_editor",
)


class MlLoader:
    """Class-level state: one import per process, whoever asks first."""

    _lock = threading.Lock()
    _thread: threading.Thread | None = None
    _done = threading.Event()
    _error: BaseException | None = None
    statuses: dict | None = None  # weights status per backbone, read by the thread
    gpu: bool = False  # a CUDA or Apple GPU is there (torch.cuda initialises slowly)

    @classmethod
    def start(cls) -> None:
        with cls._lock:
            if cls._thread is None and not cls._done.is_set():
                cls._thread = threading.Thread(
                    target=cls._run, name="tlstudio-ml-import", daemon=True
                )
                cls._thread.start()

    @classmethod
    def _run(cls) -> None:
        try:
            for name in ML_MODULES + GUI_MODULES:
                importlib.import_module(name)
            from tlstudio.gui.training.backbone_table import read_weights_statuses
            from tlstudio.ml.backbones import list_backbones

            cls.statuses = read_weights_statuses([s.name for s in list_backbones()])
            cls.gpu = cls._has_gpu()
        except BaseException as exc:  # reported by wait()
            cls._error = exc
        finally:
            cls._done.set()

    @staticmethod
    def _has_gpu() -> bool:
        import torch

        mps = getattr(torch.backends, "mps", None)
        return bool(torch.cuda.is_available() or (mps is not None and mps.is_available()))

    @classmethod
    def done(cls) -> bool:
        return cls._done.is_set()

    @classmethod
    def wait(cls) -> None:
        """Block until the modules are imported (importing here if no thread started)."""
        with cls._lock:
            started = cls._thread is not None
        if not started and not cls._done.is_set():
            for name in ML_MODULES:
                importlib.import_module(name)
            cls.gpu = cls._has_gpu()
            cls._done.set()
        cls._done.wait()
        if cls._error is not None:
            raise cls._error
