"""Display facts from image headers: HU detection and every DICOM header window, and
the quick reduced-resolution JPEG decode used for a first look at big images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from tlstudio.core.imageio import read_image
from tlstudio.core.reduced import read_reduced
from tlstudio.core.window_presets import CT_PRESETS, display_facts


def test_ct_in_hu_without_header_windows() -> None:
    path = get_testdata_file("CT_small.dcm")
    facts = display_facts(path, read_image(path).window)
    assert facts.in_hu and facts.header_windows == ()
    assert [(p.name, p.window) for p in CT_PRESETS] == [
        ("Brain", (40, 80)), ("Soft tissue", (40, 400)), ("Lung", (-600, 1500)),
        ("Bone", (400, 1800)), ("Liver", (60, 150)),
    ]  # fmt: skip


def test_every_header_window_with_its_name(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = [40, -600, 300], [80, 1500, 0]  # the last is invalid
    ds.WindowCenterWidthExplanation = ["BRAIN", ""]
    ds.save_as(tmp_path / "ct.dcm")
    facts = display_facts(tmp_path / "ct.dcm", read_image(tmp_path / "ct.dcm").window)
    assert [(w.name, w.window) for w in facts.header_windows] == [
        ("BRAIN", (40.0, 80.0)), ("Header window 2", (-600.0, 1500.0)),
    ]  # fmt: skip
    ds.RescaleType = "US"  # unspecified units: not HU
    ds.save_as(tmp_path / "us.dcm")
    assert not display_facts(tmp_path / "us.dcm", (0, 1)).in_hu


def test_monochrome1_header_windows_mirror_like_the_pixels(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.WindowCenter, ds.WindowWidth = [600, 100], [1600, 50]
    ds.save_as(tmp_path / "m1.dcm")
    data = read_image(tmp_path / "m1.dcm")
    facts = display_facts(tmp_path / "m1.dcm", data.window)
    first, second = facts.header_windows
    assert first.window == data.window  # the reader's default is the first, mirrored
    total = data.window[0] + 600
    assert second.window == (total - 100, 50)
    assert not facts.in_hu


def test_non_dicom_files_have_no_facts(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.dcm").write_bytes(b"not dicom at all")
    for name in ("a.png", "b.dcm", "missing.dcm"):
        facts = display_facts(tmp_path / name, (0, 1))
        assert not facts.in_hu and facts.header_windows == ()


@pytest.mark.parametrize("orientation", [1, 6, 3])
def test_reduced_jpeg_matches_the_full_decode(tmp_path: Path, orientation: int) -> None:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    pixels = np.kron(small, np.ones((16, 16, 1), np.uint8))  # 192×256 flat blocks
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "p.jpg", quality=95, exif=exif)
    full = read_image(tmp_path / "p.jpg").array
    reduced = read_reduced(tmp_path / "p.jpg", 4)
    assert reduced is not None and reduced.dtype == np.uint8
    h, w = full.shape[:2]
    assert reduced.shape == (h // 4, w // 4, 3)  # same orientation as the full decode
    shrunk = full.reshape(h // 4, 4, w // 4, 4, 3).mean(axis=(1, 3))
    assert np.abs(shrunk - reduced).mean() < 6


def test_no_reduced_decode_for_other_formats(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "tiny.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff nothing")
    for name in ("a.png", "tiny.jpg", "broken.jpg", "missing.jpg"):
        assert read_reduced(tmp_path / name) is None
