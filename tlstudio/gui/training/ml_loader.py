"""Imports the torch-heavy modules the Train panel needs, once per process, as a
:class:`~tlstudio.gui.workers.jobs.BackgroundJob` (everything under :mod:`tlstudio.ml`
imports torch: seconds), and reads what the panel shows first: the weights available per
backbone and whether there is a GPU.

The ML modules are imported through :func:`~tlstudio.gui.workers.ml_imports.import_ml`
(``needs_ml=True``), so a job that needs them while this import runs waits for it
instead of importing torchvision at the same time."""

from __future__ import annotations

import threading

from PySide6.QtCore import QCoreApplication, QThreadPool

from tlstudio.gui.workers.jobs import BackgroundJob, job_pool
from tlstudio.gui.workers.ml_imports import import_ml

GUI_MODULES = (  # Qt only, but compiling them is worth doing off the GUI thread too
    "tlstudio.gui.training.backbone_table",
    "tlstudio.gui.training.freeze_strip",
    "tlstudio.gui.training.augment_preview",
    "tlstudio.gui.training.augment_editor",
    "tlstudio.gui.training.options_editor",
)


class MlLoader:
    """Class-level state: one import per process, whoever asks first. Call from the GUI
    thread."""

    _job: BackgroundJob | None = None
    _pool: QThreadPool | None = None
    _loaded = threading.Event()  # set when _load has ended, also when it failed
    _error: BaseException | None = None
    statuses: dict | None = None  # weights status per backbone, read by the import job
    gpu: bool = False  # a CUDA or Apple GPU is there (torch.cuda initialises slowly)

    @classmethod
    def start(cls) -> None:
        """Start the import job (in a one-thread pool of the application) unless it ran."""
        if cls._job is not None or cls._loaded.is_set():
            return
        if cls._pool is None:
            app = QCoreApplication.instance()
            if app is None:  # the panels that call this exist only inside an application
                raise RuntimeError("MlLoader.start needs a running QApplication")
            cls._pool = job_pool(app, 1, "ml-import")
        cls._job = BackgroundJob(lambda _token, _progress: cls._load(), name="ml-import")
        cls._job.start(cls._pool)

    @classmethod
    def _load(cls) -> None:
        try:
            import_ml(GUI_MODULES)
            from tlstudio.gui.training.backbone_table import read_weights_statuses
            from tlstudio.ml.backbones import list_backbones

            cls.statuses = read_weights_statuses([s.name for s in list_backbones()])
            cls.gpu = cls._has_gpu()
        except BaseException as exc:  # raised again by wait()
            cls._error = exc
            raise
        finally:
            cls._loaded.set()

    @staticmethod
    def _has_gpu() -> bool:
        import torch

        mps = getattr(torch.backends, "mps", None)
        return bool(torch.cuda.is_available() or (mps is not None and mps.is_available()))

    @classmethod
    def done(cls) -> bool:
        return cls._loaded.is_set()

    @classmethod
    def wait(cls) -> None:
        """Block until the modules are imported (importing here if no job started) and
        raise what the import raised."""
        if cls._job is not None:
            cls._job.wait()
        elif not cls._loaded.is_set():
            cls._load()
        if cls._error is not None:
            raise cls._error
