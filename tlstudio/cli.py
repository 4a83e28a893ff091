"""The ``tlstudio`` command: the window with no subcommand, headless work with one.

``main`` returns the exit status: 0 on success, 2 for user errors (a
:class:`~tlstudio.core.errors.TlsError` or a bad command line, printed as
``error: <message>`` on stderr without a traceback), 1 when a file system call
fails, 130 on Ctrl+C. Heavy modules are imported inside the commands so that
``tlstudio --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import __version__
from .core.errors import shown_path
from .core.formats import (
    EXPORT_KINDS,
    FORMAT_OPTIONS,
    FORMATS,
    LABEL_FORMATS,
    LABEL_SUFFIXES,
    label_format,
)

if TYPE_CHECKING:
    from .core.formats import LabelImportReport
    from .core.project import ImportReport, Project

COMMANDS = (
    "new", "import", "export", "info", "demo", "train", "evaluate", "predict", "experiment",
    "export-model", "report", "doctor", "bundle", "run-job", "import-run",
)  # fmt: skip
IMPORT_FORMATS = (*FORMATS, "images")  # "images": add the paths as images only
KIND_NAMES = {  # kind: (one, several)
    "tags": ("tag", "tags"),
    "boxes": ("box", "boxes"),
    "landmarks": ("landmark set", "landmark sets"),
    "masks": ("mask", "masks"),
    "objects": ("object", "objects"),
}
REPORT_NAMES = {**KIND_NAMES, "ignore": ("ignore region", "ignore regions")}  # label imports


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    from .runtime import threads

    threads.prepare_environment()  # before torch starts OpenMP
    if argv is None:  # the command itself, not a script or test calling main()
        from .core.bytecode import compile_in_background

        compile_in_background()  # for the next start, when Python writes no bytecode
    try:
        if not args_list or (
            len(args_list) == 1
            and args_list[0] not in COMMANDS
            and not args_list[0].startswith("-")
        ):
            return _open_window(args_list[0] if args_list else None)
        parser = _parser()
        try:
            args = parser.parse_args(args_list)
        except SystemExit as exc:  # --help, --version or a usage error (already printed)
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        threads.configure(_thread_count(args), gui=False)
        return args.run(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from .core.errors import TlsError

        if isinstance(exc, TlsError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):
            name = f"{exc.filename}: " if exc.filename else ""
            print(f"error: {name}{exc.strerror or exc}", file=sys.stderr)
            return 1
        raise
    finally:
        threads.clear()  # the budget belongs to this command, not to a caller's process


def _thread_count(args: argparse.Namespace) -> int | None:
    """``--threads`` if the command has it and it was given, else ``TLSTUDIO_THREADS``."""
    from .runtime.threads import threads_from_env

    given = getattr(args, "threads", None)
    return given if given is not None else threads_from_env()


# -- command line ---------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tlstudio",
        usage="tlstudio [-h] [--version] [PROJECT_DIR | COMMAND ...]",
        description="Transfer Learning Studio: label images, train and inspect models offline. "
        "Without a command, opens the window (on PROJECT_DIR if given).",
    )
    parser.add_argument("--version", action="version", version=f"tlstudio {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", prog="tlstudio")

    p = sub.add_parser("new", help="create an empty project folder")
    p.add_argument("dir", metavar="DIR", help="folder to create the project in")
    p.add_argument("--multi-label", action="store_true", help="allow several class tags per image")
    p.set_defaults(run=_cmd_new)

    p = sub.add_parser(
        "import",
        help="add images and/or label files to a project",
        description="Add image files and folders (searched recursively) and label files. "
        "Without --format, folders and image files are added as images (bad files are "
        "listed and skipped) and label files (.json, .txt, .xml, .csv, .yaml) are imported "
        "with their format recognised from their content, after the images. With --format, "
        "every PATH is read as that format (a dataset folder or a label file); 'images' "
        "adds them as images only. Each label import is all-or-nothing.",
    )
    p.add_argument("dir", metavar="DIR", help="project folder")
    p.add_argument("paths", metavar="PATH", nargs="+", help="image file, folder or label file")
    p.add_argument(
        "--format",
        choices=IMPORT_FORMATS,
        help=f"read every PATH as this format ({_formats_help()}; images: add them as images only)",
    )
    p.add_argument("--copy", action="store_true", help="copy images into DIR/images/")
    p.add_argument(
        "--domain",
        metavar="NAME",
        help="the domain (site, scanner, microscope, batch...) of the images this import adds; "
        "images already in the project keep theirs",
    )
    _add_format_options(p, "import")
    p.set_defaults(run=_cmd_import)

    p = sub.add_parser("export", help="write the labels in an interchange format")
    p.add_argument("dir", metavar="DIR", help="project folder")
    p.add_argument(
        "--format", required=True, choices=FORMATS, help=f"format to write ({_formats_help()})"
    )
    p.add_argument("out", metavar="OUT", help="output file or folder")
    p.add_argument("--kind", choices=EXPORT_KINDS, help=f"which labels: {_kinds_help()}")
    p.add_argument(
        "--template", metavar="NAME", help="landmark template of a YOLO pose or DeepLabCut export"
    )
    _add_format_options(p, "export")
    p.set_defaults(run=_cmd_export)

    p = sub.add_parser("info", help="counts per class, kind and split; templates; missing files")
    p.add_argument("dir", metavar="DIR", help="project folder")
    p.set_defaults(run=_cmd_info)

    p = sub.add_parser("demo", help="create a demo project of synthetic shapes with exact labels")
    p.add_argument("dir", metavar="DIR", help="new or empty folder")
    p.add_argument("--images", type=int, default=48, help="number of images (default 48)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(run=_cmd_demo)
    p.add_argument(
        "--train", action="store_true", help="also train a small classifier and print its metrics"
    )

    from .cli_ml import add_commands

    add_commands(sub)
    from .cli_confidence import add_commands as add_confidence_commands

    add_confidence_commands(sub)
    from .cli_jobs import add_commands as add_job_commands

    add_job_commands(sub)
    from .doctor import add_command as add_doctor

    add_doctor(sub)
    parser.set_defaults(run=lambda _args: _open_window(None))
    return parser


# -- commands -------------------------------------------------------------------------------


def _open_window(project_dir: str | None) -> int:
    if project_dir is not None:
        from .core.project import Project

        Project.open(project_dir).close()  # a clear error for a folder that is not a project
    # a window that fails to import raises here, with its real error
    from .gui.app import run

    return int(run(project_dir) or 0)


def _cmd_new(args: argparse.Namespace) -> int:
    from .core.project import Project

    with Project.create(args.dir, multi_label=args.multi_label) as project:
        kind = "multi-label" if project.multi_label else "single-label"
        print(f"Created {kind} project in {project.root}")
    return 0


def _add_format_options(parser: argparse.ArgumentParser, use: str) -> None:
    """One yes/no flag per format option of the registry (see FormatOption)."""
    for o in FORMAT_OPTIONS:
        if use in o.used_by:
            parser.add_argument(o.flag, dest=f"opt_{o.name}", action="store_true", help=o.help)


def _format_options(args: argparse.Namespace, fmt: str, use: str) -> dict[str, bool]:
    """The format options given on the command line that ``fmt`` takes for ``use``."""
    own = {o.name for o in label_format(fmt).options if use in o.used_by}
    return {o.name: True for o in FORMAT_OPTIONS
            if getattr(args, f"opt_{o.name}", False) and o.name in own}  # fmt: skip


def _check_format_options(args: argparse.Namespace, formats: list[str], use: str) -> None:
    from .core.errors import ValidationError

    for o in FORMAT_OPTIONS:
        if getattr(args, f"opt_{o.name}", False) and not any(
            o.name in _format_options(args, f, use) for f in formats
        ):
            titles = ", ".join(label_format(f).title for f in formats) or "images"
            raise ValidationError(f"{o.flag} does not apply to {titles}")


def _cmd_import(args: argparse.Namespace) -> int:
    from .core.errors import FormatError, ValidationError
    from .core.project import Project, check_domain

    paths = [Path(p) for p in args.paths]
    domain = check_domain(args.domain)
    with Project.open(args.dir) as project:
        for p in paths:
            if not p.exists():
                raise ValidationError(f"{shown_path(p)}: no such file or folder")
        from .core import imageio
        from .core.formats import detect_format, import_labels

        # FIFOs, sockets and devices are never read (a FIFO would block): add_images lists
        # them as skipped, with the reason
        odd = [p for p in paths if not p.is_dir() and not p.is_file()]
        tally = _Tally()
        if args.format == "images":
            tally.images(_add_images(project, paths, args.copy, domain))
            return tally.status()
        if args.format is not None:
            _check_format_options(args, [args.format], "import")
            opts = _format_options(args, args.format, "import")
            if odd:
                tally.images(_add_images(project, odd, args.copy, domain))
            for p in paths:
                if p not in odd:
                    report = import_labels(
                        project, p, args.format, copy_images=args.copy, options=opts,
                        domain=domain,
                    )  # fmt: skip
                    tally.labels(p, args.format, report)
            return tally.status()
        images: list[Path] = []
        labels: list[Path] = []
        notes = []
        for p in paths:
            if p.is_dir():
                images.append(p)
                try:
                    fmt = detect_format(p)
                except FormatError:
                    continue
                notes.append(
                    f"note: {shown_path(p)} looks like {label_format(fmt).description}; only "
                    "its images were added. "
                    f"To import its labels: tlstudio import {args.dir} {p} --format {fmt}"
                )
            elif (
                p not in odd and p.suffix.lower() in LABEL_SUFFIXES and not imageio.is_image_file(p)
            ):
                labels.append(p)
            else:
                images.append(p)
        detected = [(p, detect_format(p)) for p in labels]
        _check_format_options(args, [fmt for _, fmt in detected], "import")
        if images:  # first, so label files can refer to these images
            tally.images(_add_images(project, images, args.copy, domain))
        for p, fmt in detected:
            opts = _format_options(args, fmt, "import")
            report = import_labels(
                project, p, fmt, copy_images=args.copy, options=opts, domain=domain
            )
            tally.labels(p, fmt, report)
        for line in notes:
            print(shown_path(line))
    return tally.status()


class _Tally:
    """Prints each part of an import and decides the exit status: 2 when nothing was
    imported although something was asked for (every file bad, skipped or no image
    found), 0 otherwise (images already in the project count as imported)."""

    def __init__(self) -> None:
        self.imported = 0  # images added or already there, label files imported
        self.refused = 0  # bad files and things skipped

    def images(self, report: ImportReport) -> None:
        _print_images(report)
        self.imported += len(report.added) + len(report.duplicates)
        self.refused += len(report.failed) + len(report.skipped)

    def labels(self, path: Path, fmt: str | None, report: LabelImportReport) -> None:
        _print_labels(path, fmt, report)
        self.imported += 1

    def status(self) -> int:
        if self.imported:
            return 0
        why = (
            f"{_count(self.refused, 'file was', 'files were')} bad or skipped"
            if self.refused
            else "no image files were found"
        )
        print(f"error: nothing was imported: {why}", file=sys.stderr)
        return 2


def _add_images(
    project: Project, paths: list[Path], copy: bool, domain: str | None = None
) -> ImportReport:
    with _progress("images", sys.stderr) as progress:
        return project.add_images(paths, copy=copy, progress=progress, domain=domain)


def _print_images(report: ImportReport) -> None:
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    print(
        f"Images: {len(report.added)} added, "
        f"{_count(len(report.duplicates), 'duplicate', 'duplicates')} skipped, "
        f"{_count(len(report.failed), 'bad file', 'bad files')}{skipped}"
    )
    for path, reason in report.failed:
        print(f"  bad file: {shown_path(path)}: {reason}")
    for path, reason in report.skipped:
        print(f"  skipped: {shown_path(path)}: {reason}")
    for path in report.duplicates:
        print(f"  duplicate: {shown_path(path)}")
    for path, message in report.warnings:
        print(f"  warning: {shown_path(path)}: {message}")
    if report.cancelled:
        print("  (cancelled)")


def _print_labels(path: Path, fmt: str | None, report: LabelImportReport) -> None:
    counts = ", ".join(
        _count(n, *REPORT_NAMES.get(k, (k, k))) for k, n in report.annotations.items() if n
    )
    print(
        f"Labels from {shown_path(path)}{f' ({fmt})' if fmt else ''}: "
        f"{report.images_added} images added, "
        f"{report.images_matched} matched; {counts or 'no annotations'}"
    )
    for message in report.warnings:
        print(f"  warning: {shown_path(message)}")


def _cmd_export(args: argparse.Namespace) -> int:
    from .core.errors import ValidationError
    from .core.project import Project

    fmt = label_format(args.format)
    if args.kind and not fmt.export_kinds:
        kinds = ", ".join(f.title for f in LABEL_FORMATS if f.export_kinds)
        raise ValidationError(f"--kind applies to {kinds} only, not {args.format}")
    if args.template and not (fmt.export_kinds or fmt.takes_template):
        raise ValidationError(f"--template applies to {_kinds_formats()} only, not {args.format}")
    _check_format_options(args, [args.format], "export")
    with Project.open(args.dir) as project:
        from .core.formats import export_labels

        warnings: list[str] = []
        try:
            out = export_labels(
                project, args.format, Path(args.out), kind=args.kind, template=args.template,
                warnings=warnings, options=_format_options(args, args.format, "export"),
            )  # fmt: skip
        except ValueError as exc:  # the exporters' word for a choice that does not fit
            raise ValidationError(str(exc)) from None
    for message in warnings:
        print(f"warning: {message}", file=sys.stderr)
    kind = f" ({args.kind})" if args.kind else ""
    print(f"Exported {args.format}{kind} to {out}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .core.project import Project

    with Project.open(args.dir) as project:
        _print_info(project)
    return 0


def _print_info(project: Project) -> None:
    s = project.stats()
    mode = "multi-label" if project.multi_label else "single-label"
    print(f"Project {shown_path(project.root)} ({mode})")
    if project.read_only:
        print(f"Read-only ({project.read_only_reason}): edits are disabled")
    print(f"Images: {s['images']} ({s['labelled_images']} labelled, {len(s['missing'])} missing)")
    kinds = s["kinds"]
    print("Annotations: " + ", ".join(_count(kinds[k], *KIND_NAMES[k]) for k in KIND_NAMES))
    if s["classes"]:
        width = max(8, *(len(name) for name in s["classes"]))
        heads = ("tags", "boxes", "landmarks", "mask images")
        print("Classes:".ljust(width + 2) + "".join(f"{h:>13}" for h in heads))
        for name, usage in s["classes"].items():
            row = (usage["tags"], usage["boxes"], usage["landmarks"], usage["masks"])
            print(f"  {name:<{width}}" + "".join(f"{n:>13}" for n in row))
    else:
        print("Classes: none")
    splits = s["splits"]
    parts = [f"{name} {splits.get(name, 0)}" for name in ("train", "val", "test")]
    parts.append(f"unassigned {splits.get('None', 0)}")
    print("Splits: " + ", ".join(parts))
    if s["domains"]:
        named = sum(s["domains"].values())
        rest = [f"no domain {s['images'] - named}"] if named < s["images"] else []
        print(
            "Domains: " + ", ".join([*(f"{name} {n}" for name, n in s["domains"].items()), *rest])
        )
    templates = project.templates()
    if templates:
        print("Templates: " + ", ".join(f"{t.name} ({len(t.points)} points)" for t in templates))
    else:
        print("Templates: none")
    if s["missing"]:
        print("Missing files:")
        for stored in s["missing"]:
            p = Path(stored)
            print(f"  {shown_path(p if p.is_absolute() else project.root / p)}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from .core.demo import create_demo_project

    start = time.perf_counter()
    with create_demo_project(args.dir, args.images, args.size, args.seed) as project:
        took = time.perf_counter() - start
        print(
            f"Created a demo project of {project.image_count()} synthetic images "
            f"({args.size}×{args.size} px, seed {args.seed}) in {took:.1f} s:"
        )
        _print_info(project)
        if args.train:
            from .cli_ml import train_demo

            status = train_demo(project)
            if status:
                return status
    print(f"Open it with: tlstudio {args.dir}")
    return 0


# -- helpers -------------------------------------------------------------------------------


def _formats_help() -> str:
    """``coco: a COCO dataset; yolo: a YOLO dataset; …`` from the format registry."""
    return "; ".join(f"{f.name}: {f.description}" for f in LABEL_FORMATS)


def _kinds_formats() -> str:
    """Titles of the formats whose export takes a template (``YOLO, DeepLabCut``)."""
    return ", ".join(f.title for f in LABEL_FORMATS if f.export_kinds or f.takes_template)


def _kinds_help() -> str:
    """``for YOLO: detect (default), pose, segment`` from the format registry."""
    parts = [
        f"for {f.title}: {f.export_kinds[0]} (default), {', '.join(f.export_kinds[1:])}"
        for f in LABEL_FORMATS
        if f.export_kinds
    ]
    return "; ".join(parts)


def _count(n: int, one: str, several: str) -> str:
    return f"{n} {one if n == 1 else several}"


@contextmanager
def _progress(what: str, stream: TextIO) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` callback that rewrites one line on ``stream`` when it is
    a terminal (at most ten times a second); None otherwise."""
    if not (hasattr(stream, "isatty") and stream.isatty()):
        yield None
        return
    last = [0.0, False]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.1 or done == total:
            last[0], last[1] = now, True
            stream.write(f"\rimporting {what}: {done}/{total}")
            stream.flush()

    try:
        yield progress
    finally:
        if last[1]:
            stream.write("\n")
            stream.flush()
