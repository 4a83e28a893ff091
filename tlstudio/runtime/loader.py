"""Open an exported model file by what its bytes are, never by its name or its sidecar.

- ONNX (a protobuf ModelProto, see :mod:`tlstudio.runtime.onnx_file`) is data: it runs in
  onnxruntime on the CPU. Tensors whose data lives in external files must stay inside the
  model's folder (symbolic links resolved).
- TorchScript (a zip archive with a ``code/`` folder) is a program: loading it runs code
  from the file with the user's rights. It is opened only through a loader the caller
  passes in to say it trusts the file (see :data:`TorchScriptLoader`); the runtime itself
  never imports torch.

A name ending in ``.onnx`` (or ``.pt``, ``.pth``, ``.ts``) whose content is the other
format is refused, and so is a sidecar whose ``model_format`` disagrees with the content.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import ExportError, SidecarError, UntrustedModelError
from .onnx_file import ExternalTensor, OnnxScan, scan_onnx
from .sidecar import Sidecar
from .threads import configured, passive_waiting

#: float32 N×3×S×S batch → the model's outputs in order
Runner = Callable[[np.ndarray], list[np.ndarray]]
#: (model file, threads or None) → Runner; passing one is how a caller says it trusts the
#: TorchScript file (e.g. ``tlstudio.ml.export.torchscript_runner``)
TorchScriptLoader = Callable[[Path, "int | None"], Runner]

_SUFFIX_FORMATS = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".ts": "torchscript",
}
_FORMAT_NAMES = {"onnx": "an ONNX model", "torchscript": "a TorchScript archive"}
TORCHSCRIPT_REFUSED = (
    "TorchScript is a program, not data, and would run with your rights; refused. "
    "Run it only if you trust where it came from (tlstudio predict "
    "--trust-torchscript), or ask for the ONNX export (tlstudio export-model --out model.onnx)"
)


def model_file_format(path: Path) -> str:
    """``"onnx"`` or ``"torchscript"``, from the content of ``path``; raises
    :class:`ExportError` for anything else."""
    return _identify(path)[0]


def _identify(path: Path) -> tuple[str, OnnxScan | None]:
    """The format by content, and for ONNX the scan of its tensors (read once)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":
            if _is_torchscript_zip(path):
                return "torchscript", None
            raise ExportError(
                f"{path}: a zip archive but not a TorchScript model (a PyTorch checkpoint is "
                "not an exported model; write one with tlstudio export-model)"
            )
        scan = scan_onnx(path)
    except OSError as exc:
        raise ExportError(f"{path}: cannot read the model file ({exc.strerror or exc})") from exc
    if scan.is_onnx:
        return "onnx", scan
    raise ExportError(f"{path}: neither an ONNX model nor a TorchScript archive")


def _is_torchscript_zip(path: Path) -> bool:
    """A TorchScript archive holds ``<name>/code/...`` and ``<name>/constants.pkl``; a plain
    ``torch.save`` checkpoint has neither."""
    import zipfile  # only for zip files: its imports (bz2, lzma, shutil) cost ONNX users time

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(
        n.count("/") >= 1 and (n.split("/")[1] == "code" or n.endswith("/constants.pkl"))
        for n in names
    )


def check_names_agree(path: Path, fmt: str, side: Sidecar) -> None:
    """Refuse a file whose name suffix or sidecar claims the other format."""
    claimed = _SUFFIX_FORMATS.get(path.suffix.lower())
    if claimed is not None and claimed != fmt:
        raise ExportError(
            f"{path}: named {path.suffix} but the content is {_FORMAT_NAMES[fmt]}; "
            "refused (a file whose name and content disagree is not loaded)"
        )
    if side.model_format is not None and side.model_format != fmt:
        raise SidecarError(
            side.path, "model_format",
            f"says {side.model_format!r} but {path.name} is {_FORMAT_NAMES[fmt]}; refused",
        )  # fmt: skip


def open_runner(
    path: Path,
    side: Sidecar,
    *,
    threads: int | None = None,
    torchscript: TorchScriptLoader | None = None,
) -> tuple[str, Runner]:
    """(format, runner) for the model file ``path`` described by ``side``. TorchScript
    needs ``torchscript`` (the caller's trust); without it :class:`UntrustedModelError`
    is raised before a byte of the archive is unpickled."""
    fmt, scan = _identify(path)
    check_names_agree(path, fmt, side)
    if scan is None:  # TorchScript
        if torchscript is None:
            raise UntrustedModelError(f"{path}: {TORCHSCRIPT_REFUSED}")
        return fmt, torchscript(path, threads)
    check_external_data(path, scan.external)
    return fmt, onnx_runner(path, side, threads)


def check_external_data(path: Path, external: list[ExternalTensor]) -> None:
    """Refuse an ONNX model whose tensors (``external``, from :func:`scan_onnx`) read data
    from files outside its folder (an absolute path, ``..``, or a link that leads out)."""
    folder = path.resolve().parent
    for tensor in external:
        loc = tensor.location
        where = f"tensor {tensor.name!r}" if tensor.name else "a tensor"
        if not loc:
            raise ExportError(f"{path}: {where} is stored externally but names no file; refused")
        target = (folder / loc).resolve()
        if Path(loc).is_absolute() or not target.is_relative_to(folder):
            raise ExportError(
                f"{path}: {where} reads its data from {loc!r}, outside the model's folder "
                f"{folder}; refused"
            )


def onnx_runner(path: Path, side: Sidecar, threads: int | None = None) -> Runner:
    """An onnxruntime CPU session over ``path`` (already checked by :func:`open_runner`)
    whose input/output shapes agree with ``side``. ``threads``: intra-op threads (None:
    the process's thread budget, :mod:`tlstudio.runtime.threads`; without one,
    onnxruntime's choice)."""
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError as exc:  # declared dependency; a broken install says so
        raise ExportError(f"onnxruntime is needed to run {path.name} ({exc})") from exc
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    budget = configured()
    if not threads and budget is not None:
        threads = budget.threads
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        if passive_waiting():  # onnxruntime's own pool spins too; idle threads sleep
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{path}: not a loadable ONNX model ({reason[:300]})") from exc
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ExportError(f"{path}: takes {len(inputs)} inputs; an exported model takes one")
    _check_input(path, side, inputs[0].shape)
    check_output_shapes(path, side, [o.shape for o in session.get_outputs()], batch=None)
    name = inputs[0].name

    def run_onnx(x: np.ndarray) -> list[np.ndarray]:
        return list(session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)}))

    return run_onnx


def _check_input(path: Path, side: Sidecar, shape: Sequence[object]) -> None:
    s = side.input_size
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise ExportError(f"{path}: input shape {list(shape)} is not N×3×S×S images")
    fixed = [d for d in shape[2:] if isinstance(d, int)]
    if any(d != s for d in fixed):
        raise SidecarError(
            side.path, "preprocessing.input_size",
            f"{s} px, but {path.name} takes {shape[2]}×{shape[3]} images",
        )  # fmt: skip


def expected_shapes(side: Sidecar, batch: int | None) -> list[tuple[int | None, ...]]:
    """Per output, its dimensions as the sidecar implies them (None: free)."""
    if "," in side.task:  # a multi-task model: each task's outputs in turn
        return [
            shape
            for task in side.task.split(",")
            for shape in expected_shapes(dataclasses.replace(side, task=task), batch)
        ]
    n, s, c, p = batch, side.input_size, len(side.class_names), len(side.point_names)
    shapes: dict[str, list[tuple[int | None, ...]]] = {
        "classify": [(n, c)],
        "segment": [(n, c + 1, s, s)],
        "landmarks": [(n, p, None, None), (n, p, 3)],
        "autoencode": [(n, 3, s, s), (n, None), (n,)],
        "detect": [(None, 4), (None,), (None,)],
        "instances": [(None, 4), (None,), (None,), (None, None, None)],
    }
    return shapes[side.task] * max(1, side.ensemble_members)  # one set per member


#: the sidecar field that fixes each output's size along an axis, for messages
_FIELD_OF_AXIS = {
    ("classify", 1): "classes",
    ("segment", 1): "classes",
    ("landmarks", 1): "template.points",
}


def check_output_shapes(
    path: Path, side: Sidecar, shapes: Sequence[Sequence[object]], batch: int | None
) -> None:
    """Raise if the model's output shapes (ints, or names/None for free dimensions) do not
    fit the sidecar: output count, class count, template points, input size, batch."""
    want = expected_shapes(side, batch)
    names = side.output_names
    if len(shapes) != len(want):
        raise SidecarError(
            side.path, "task",
            f"a {side.task} model has {len(want)} outputs ({', '.join(names)}); "
            f"{path.name} has {len(shapes)}",
        )  # fmt: skip
    for name, got, exp in zip(names, shapes, want, strict=True):
        got = list(got)
        bad_axis = None if len(got) == len(exp) else -1
        for axis, (g, e) in enumerate(zip(got, exp, strict=False)):
            if bad_axis is None and isinstance(g, int) and e is not None and g != e:
                bad_axis = axis
        if bad_axis is None:
            continue
        field = _FIELD_OF_AXIS.get((side.task, bad_axis))
        if field is None and bad_axis >= 2 and side.task in ("segment", "autoencode"):
            field = "preprocessing.input_size"
        shown = "×".join("?" if d is None else str(d) for d in exp)
        raise SidecarError(
            side.path, field or "task",
            f"{path.name} returns {name!r} of shape {got}; the sidecar implies {shown}",
        )  # fmt: skip
