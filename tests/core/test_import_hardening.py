"""Image import against hostile or odd input (issue 11 §3–7, §14 BMP, §15).

Decompression bombs, file names that are not UTF-8, FIFOs, PNG eXIf orientation, the
exit status of an import that added nothing, one size limit with one message, one
class-name limit.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import tlstudio
from tlstudio.cli import main
from tlstudio.core import imageio
from tlstudio.core.decoders import base as decoder_base
from tlstudio.core.errors import ImageTooLargeError, ValidationError
from tlstudio.core.formats import export_labels, import_labels
from tlstudio.core.project import Project
from tlstudio.core.thumbnails import ThumbnailCache

REPO = Path(tlstudio.__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


# -- §3 decompression bombs ------------------------------------------------------------------


def test_the_decoded_size_limit_follows_the_available_memory(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), np.zeros((1000, 2000, 3), np.uint8))  # decodes to 6.0 MB
    monkeypatch.setattr(decoder_base, "available_memory", lambda: 8_000_000)
    with pytest.raises(ImageTooLargeError) as err:
        imageio.probe_image(path)
    assert err.value.reason == (
        "2000×1000 RGB 8-bit decodes to 6.0 MB, more than a quarter of the 8.0 MB of memory "
        "available now (2.0 MB)"
    )
    with Project.create(tmp_path / "p") as p:
        report = p.add_images([path])
        assert report.added == [] and report.failed == [(path, err.value.reason)]
        monkeypatch.setattr(decoder_base, "available_memory", lambda: 64_000_000)
        assert len(p.add_images([path]).added) == 1


def test_the_decoded_size_limit_can_be_given(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    cv2.imwrite(str(path), np.zeros((100, 300), np.uint16))  # 60 kB decoded
    with pytest.raises(ImageTooLargeError, match=r"300×100 grey 16-bit decodes to 60\.0 kB, "
                       r"more than the limit \(50\.0 kB\)"):  # fmt: skip
        imageio.read_image(path, max_bytes=50_000)
    assert imageio.read_image(path, max_bytes=60_000).array.shape == (100, 300)


MEASURE = textwrap.dedent(
    """
    import re, sys
    from tlstudio.core.project import Project

    def status(key):
        text = open("/proc/self/status").read()
        return int(re.search(key + r":\\s+(\\d+) kB", text).group(1)) * 1024

    project = Project.create(sys.argv[1])
    project.add_images([sys.argv[3]])  # warm-up: the PNG code is loaded before measuring
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = status("VmRSS")
    report = project.add_images([sys.argv[2]])
    print(len(report.added), report.failed, status("VmHWM") - before)
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux /proc needed")
def test_importing_a_png_never_holds_the_decoded_image(tmp_path: Path) -> None:
    big = tmp_path / "bomb.png"
    cv2.imwrite(str(big), np.full((4000, 4000, 3), 200, np.uint8))  # 48 MB decoded
    assert big.stat().st_size < 1_000_000
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.full((8, 8, 3), 3, np.uint8))
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "p"), str(big), str(small)],
        capture_output=True, text=True, timeout=120, env=_env(), check=True,
    ).stdout.split()  # fmt: skip
    added, peak = int(out[0]), int(out[-1])
    assert added == 1
    assert peak < 48_000_000 // 4, f"import grew the process by {peak / 1e6:.0f} MB"


def test_a_png_cut_short_with_valid_chunks_is_reported(tmp_path: Path) -> None:
    """The pixel data of a PNG whose chunks are all whole but too few rows were stored."""
    raw = b"".join(b"\x00" + bytes(30 * 3) for _ in range(10))  # 10 of the 20 rows

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30, 20, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path = tmp_path / "short.png"
    path.write_bytes(png)
    assert imageio.probe_image(path).height == 20  # the header is fine
    with Project.create(tmp_path / "p") as p:
        report = p.add_images([path])
    assert report.added == []
    assert report.failed == [(path, "PNG pixel data is truncated: 910 bytes of rows missing")]


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_truncated_images_are_still_reported(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cut{suffix}"
    rng = np.random.default_rng(1)
    cv2.imwrite(str(path), rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with Project.create(tmp_path / "p") as p:
        report = p.add_images([path])
    assert report.added == [] and len(report.failed) == 1
    assert "truncated" in report.failed[0][1]


def test_thumbnails_of_a_jpeg_decode_at_reduced_size(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), np.full((1600, 2400, 3), 90, np.uint8))
    assert imageio.read_image(path, reduce_to=256).array.shape == (200, 300, 3)  # 1/8 scale
    assert imageio.read_image(path, reduce_to=700).array.shape == (800, 1200, 3)  # 1/2: ≥ 700
    assert imageio.read_image(path).array.shape == (1600, 2400, 3)
    thumb = ThumbnailCache(tmp_path / "cache", 256).get(path, "k" * 8)
    assert Image.open(thumb).size == (256, 171)


# -- §4 file names that are not valid UTF-8 ----------------------------------------------------


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="names are always Unicode there")
def test_a_file_name_that_is_not_utf8_is_skipped_and_the_rest_imported(
    tmp_path: Path, make_images, capsys
) -> None:
    src = tmp_path / "src"
    good = make_images(src, 6)
    bad = Path(os.fsdecode(os.fsencode(src) + b"/bad\xff\xfe.jpg"))
    cv2.imwrite(str(tmp_path / "x.jpg"), np.full((10, 10, 3), 5, np.uint8))
    os.replace(tmp_path / "x.jpg", bad)
    root = tmp_path / "p"
    Project.create(root).close()
    assert main(["import", str(root), str(src)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "Images: 6 added" in out
    assert f"skipped: {src}/bad\\xff\\xfe.jpg: the file name is not valid UTF-8" in out
    with Project.open(root) as p:
        assert sorted(r.name for r in p.images()) == sorted(f.name for f in good)
        # a copy gets a name that can be stored
        report = p.add_images([bad], copy=True)
        assert len(report.added) == 1 and p.image(report.added[0]).path == "images/bad__.jpg"
        assert p.read_image(report.added[0]).array.shape == (10, 10, 3)


# -- §5 FIFOs and other non-regular files -------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_on_the_command_line_is_skipped(tmp_path: Path, make_images) -> None:
    root = tmp_path / "p"
    Project.create(root).close()
    (good,) = make_images(tmp_path / "src", 1)
    fifos = [tmp_path / "pipe.png", tmp_path / "labels.json"]
    for f in fifos:
        os.mkfifo(f)
    proc = subprocess.run(
        [sys.executable, "-m", "tlstudio", "import", str(root), *map(str, fifos), str(good)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=REPO,
    )  # fmt: skip  (a read from a FIFO without a writer would block: the timeout fails it)
    assert proc.returncode == 0, proc.stderr
    assert "Images: 1 added" in proc.stdout
    for f in fifos:
        assert f"skipped: {f}: not a regular file (a FIFO (named pipe)); skipped" in proc.stdout


# -- §6 PNG eXIf orientation ---------------------------------------------------------------------


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _move_exif_after_idat(path: Path) -> None:
    """Rewrite the PNG with its eXIf chunk after the pixel data (allowed by readers)."""
    data = path.read_bytes()
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append(data[pos : pos + 12 + length])
        pos += 12 + length
    exif = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    path.write_bytes(data[:8] + b"".join(rest[:-1] + exif + rest[-1:]))


@pytest.mark.parametrize("where", ["before pixels", "after pixels"])
@pytest.mark.parametrize("depth", [8, 16])
def test_png_exif_orientation_is_applied_like_jpeg(tmp_path: Path, depth: int, where: str) -> None:
    rng = np.random.default_rng(2)
    stored = rng.integers(0, 256, (20, 40), dtype=np.uint8)  # 40 wide, 20 high as stored
    path = tmp_path / "turned.png"
    if depth == 8:
        Image.fromarray(stored).save(path, exif=_exif(6))
        expected = np.rot90(stored, -1)
    else:
        wide = stored.astype(np.uint16) * 257
        Image.fromarray(wide).save(path, exif=_exif(6))
        expected = np.rot90(wide, -1)
    if where == "after pixels":
        _move_exif_after_idat(path)
    jpeg = tmp_path / "turned.jpg"
    Image.fromarray(stored).save(jpeg, exif=_exif(6), quality=95)

    info, jpeg_info = imageio.probe_image(path), imageio.probe_image(jpeg)
    assert (info.width, info.height) == (20, 40) == (jpeg_info.width, jpeg_info.height)
    data = imageio.read_image(path)
    assert data.array.shape == (40, 20) == imageio.read_image(jpeg).array.shape
    np.testing.assert_array_equal(data.array, expected)
    with Project.create(tmp_path / "p") as p:  # stored size = the frame of coordinates
        (iid,) = p.add_images([path]).added
        assert (p.image(iid).width, p.image(iid).height) == (20, 40)
    thumb = ThumbnailCache(tmp_path / "cache", 16).render(data)
    assert thumb.shape == (16, 8)


def test_the_training_reader_applies_png_orientation(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tlstudio.ml.data import read_rgb

    stored = np.zeros((20, 40), np.uint8)
    stored[:, :5] = 255  # a bright band at the left, which orientation 6 turns to the top
    path = tmp_path / "turned.png"
    Image.fromarray(stored).save(path, exif=_exif(6))
    rgb = read_rgb(path)
    assert rgb.shape == (40, 20, 3)
    assert rgb[:5].min() == 255 and rgb[5:].max() == 0


# -- §7 the exit status of an import that added nothing -----------------------------------------


def test_import_fails_when_nothing_was_imported(tmp_path: Path, capsys, make_images) -> None:
    root = tmp_path / "p"
    Project.create(root).close()
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.png", "b.jpg"):
        (bad / name).write_bytes(b"not an image")
    assert main(["import", str(root), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert "Images: 0 added" in out and "2 bad files" in out
    assert err.strip().endswith("error: nothing was imported: 2 files were bad or skipped")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["import", str(root), str(empty)]) == 2
    assert "nothing was imported: no image files were found" in capsys.readouterr().err

    good = make_images(tmp_path / "good", 2)
    assert main(["import", str(root), str(tmp_path / "good")]) == 0
    capsys.readouterr()
    # the same images again: nothing new, but nothing wrong either
    assert main(["import", str(root), *map(str, good)]) == 0
    assert "0 added, 2 duplicates skipped" in capsys.readouterr().out


# -- §14 one size limit, one message -----------------------------------------------------------


def _bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP file header and info header claiming ``width``×``height`` (no pixels)."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54) + info + bytes(16)


@pytest.mark.parametrize("side", [30_001, 70_000])
def test_a_bmp_over_the_limit_gets_our_limit_and_message(tmp_path: Path, side: int) -> None:
    path = tmp_path / "huge.bmp"
    path.write_bytes(_bmp_header(side, 30_000))
    with pytest.raises(ImageTooLargeError) as err:
        imageio.probe_image(path)
    assert err.value.reason == (
        f"{side}×30000 = {side * 30_000:,} pixels exceeds the limit of 900,000,000"
    )


def test_every_format_reports_a_given_limit_the_same_way(tmp_path: Path) -> None:
    for suffix in (".bmp", ".jpg", ".png", ".tif"):
        path = tmp_path / f"im{suffix}"
        cv2.imwrite(str(path), np.zeros((20, 30, 3), np.uint8))
        with pytest.raises(ImageTooLargeError) as err:
            imageio.probe_image(path, max_pixels=100)
        assert err.value.reason == "30×20 = 600 pixels exceeds the limit of 100", suffix


# -- §15 one class-name limit ----------------------------------------------------------------------


def test_class_names_longer_than_the_import_limit_are_refused_at_creation(
    project: Project, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="longer than 200 characters"):
        project.add_class("x" * 201)
    cat = project.class_by_name("cat")
    with pytest.raises(ValidationError, match="longer than 200 characters"):
        project.rename_class(cat.id, "y" * 300)
    longest = project.add_class("z" * 200)
    project.set_tags(project.image_ids()[0], [longest.id])
    out = export_labels(project, "csv", tmp_path / "labels.csv")
    with Project.create(tmp_path / "again") as again:
        report = import_labels(again, out, "csv")
        assert report.annotations["tags"] == 1 and again.class_by_name("z" * 200) is not None


def test_a_label_file_with_a_too_long_class_name_names_the_place(
    tmp_path: Path, make_images
) -> None:
    from tlstudio.core.errors import FormatError

    (img,) = make_images(tmp_path, 1)
    csv = tmp_path / "labels.csv"
    csv.write_text(f"image,label\n{img.name},{'q' * 300}\n")
    with Project.create(tmp_path / "p") as p, pytest.raises(FormatError) as err:
        import_labels(p, csv, "csv")
    assert re.search(
        r"labels\.csv \(line 2\): class name longer than 200 characters", str(err.value)
    )
    with Project.open(tmp_path / "p") as p:
        assert p.image_count() == 0 and p.classes() == []


def test_large_thumbnails_are_made_one_at_a_time(tmp_path: Path, monkeypatch) -> None:
    """However many threads ask (the browser uses up to three), two large images are never
    decoded and held at the same time."""
    import threading
    import time

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"big{i}.png")
        cv2.imwrite(str(paths[-1]), np.full((300, 400, 3), 40 * i, np.uint8))  # 360 kB decoded
    monkeypatch.setattr(ThumbnailCache, "large_bytes", 100_000, raising=False)
    real, active, most = imageio.read_image, [0], [0]

    def slow_read(path, **kwargs):
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.2)  # long enough for the other threads to start theirs
        try:
            return real(path, **kwargs)
        finally:
            active[0] -= 1

    monkeypatch.setattr(imageio, "read_image", slow_read)
    cache = ThumbnailCache(tmp_path / "cache", 32)
    threads = [
        threading.Thread(target=cache.get, args=(p, f"key{i:04d}")) for i, p in enumerate(paths)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert most[0] == 1
    assert all(cache.path_for(f"key{i:04d}").is_file() for i in range(3))
