"""Every error tlstudio raises on purpose says what kind of failure it is, so the GUI
chooses its words by ``kind`` and never by comparing class names."""

from __future__ import annotations

import importlib

import pytest

from tlstudio.core import errors
from tlstudio.core.errors import (
    CANCELLED,
    DEVICE,
    ERROR_KINDS,
    FORMAT,
    INTERNAL,
    IO,
    MISSING,
    USER,
    TlsError,
    error_kind,
    error_message,
)

MODULES_WITH_ERRORS = (
    "tlstudio.ml.data",
    "tlstudio.ml.embed",
    "tlstudio.ml.evaluation",
    "tlstudio.ml.explain",
    "tlstudio.ml.export",
    "tlstudio.ml.features",
    "tlstudio.ml.report",
    "tlstudio.ml.runner",
    "tlstudio.ml.tasks.factory",
    "tlstudio.ml.trainer",
    "tlstudio.ml.weights",
)


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def test_every_tlstudio_error_has_a_kind_and_none_is_internal():
    for name in MODULES_WITH_ERRORS:
        importlib.import_module(name)
    classes = {c for c in _all_subclasses(TlsError) if c.__module__.startswith("tlstudio.")}
    assert len(classes) >= 20
    for cls in classes | {TlsError}:
        assert cls.kind in ERROR_KINDS and cls.kind != INTERNAL, cls


def test_kinds_of_the_errors_the_window_tells_apart():
    from tlstudio.ml.evaluation import EvaluationCancelled
    from tlstudio.ml.features import ExtractionCancelled
    from tlstudio.ml.trainer import DeviceError, TrainConfigError
    from tlstudio.ml.weights import WeightsError

    assert error_kind(WeightsError("resnet50: no weights")) == MISSING
    assert error_kind(DeviceError("cuda:3 does not exist")) == DEVICE
    assert error_kind(TrainConfigError("lr must be > 0")) == USER
    assert error_kind(ExtractionCancelled("stopped")) == CANCELLED
    assert error_kind(EvaluationCancelled("stopped")) == CANCELLED
    assert error_kind(errors.CorruptImageError("a.png", "empty file")) == FORMAT
    assert error_kind(errors.MissingCodecError("a.dcm", "needs a codec")) == MISSING
    assert error_kind(errors.SchemaTooNewError("project is too new")) == FORMAT


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (errors.ValidationError("box outside the image"), USER, "box outside the image"),
        (FileNotFoundError(2, "No such file or directory", "a.png"), MISSING,
         "[Errno 2] No such file or directory: 'a.png'"),
        (PermissionError(13, "Permission denied"), IO, "[Errno 13] Permission denied"),
        (MemoryError(), DEVICE, "MemoryError"),
        (ZeroDivisionError("division by zero"), INTERNAL, "ZeroDivisionError: division by zero"),
        (AssertionError(), INTERNAL, "AssertionError"),
    ],
)  # fmt: skip
def test_error_kind_and_message_of_any_exception(exc, kind, text):
    assert error_kind(exc) == kind
    assert error_message(exc) == text
