"""tlstudio.core.imageio (with its decoders, windowing and thumbnails) on tiny real files
written into tmp_path (and pydicom's bundled files)."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image, ImageOps
from pydicom.data import get_testdata_file

from tlstudio.core import imageio
from tlstudio.core.errors import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    MissingCodecError,
    UnsupportedFormatError,
)
from tlstudio.core.imageio import (
    ImageInfo,
    file_sha256,
    is_image_file,
    probe_image,
    read_image,
)
from tlstudio.core.thumbnails import ThumbnailCache
from tlstudio.core.windowing import default_window, to_display

RNG = np.random.default_rng(7)


def _pixels(shape: tuple[int, ...], dtype) -> np.ndarray:
    top = np.iinfo(dtype).max
    a = RNG.integers(0, top, size=shape, endpoint=True).astype(dtype)
    a.flat[0], a.flat[-1] = 0, top  # the extremes must survive too
    return a


def _write_png(path: Path, a: np.ndarray) -> None:
    """Writes RGB(A)/grey ``a`` exactly (OpenCV wants BGR order)."""
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR if a.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), a)


def _dicom(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} not available")
    return path


# --------------------------------------------------------------------------- round trips

SHAPES = {"grey": (9, 13), "rgb": (9, 13, 3), "rgba": (9, 13, 4)}


@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_keeps_exact_values(tmp_path, kind, dtype):
    a = _pixels(SHAPES[kind], dtype)
    p = tmp_path / f"{kind}.png"
    _write_png(p, a)
    data = read_image(p)
    assert data.array.dtype == dtype
    np.testing.assert_array_equal(data.array, a)
    bits = 8 * np.dtype(dtype).itemsize
    expected = ImageInfo(13, 9, bits, len(SHAPES[kind]) == 2 and 1 or SHAPES[kind][2], "PNG")
    assert data.info == expected
    assert probe_image(p) == expected
    if dtype == np.uint16:
        assert data.array.max() > 255
    assert data.warnings == []


@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_round_trip_keeps_exact_values(tmp_path, kind, dtype):
    a = _pixels(SHAPES[kind], dtype)
    p = tmp_path / f"{kind}.tif"
    tifffile.imwrite(p, a, photometric="minisblack" if kind == "grey" else "rgb")
    data = read_image(p)
    assert data.array.dtype == dtype
    np.testing.assert_array_equal(data.array, a)
    assert data.info.format == "TIFF"
    assert data.info.bit_depth == 8 * np.dtype(dtype).itemsize
    assert probe_image(p) == data.info


def test_png_grey_alpha_and_palette_become_rgba_and_rgb(tmp_path):
    la = _pixels((5, 6, 2), np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    data = read_image(tmp_path / "la.png")
    assert data.array.shape == (5, 6, 4)
    np.testing.assert_array_equal(data.array[..., 0], la[..., 0])
    np.testing.assert_array_equal(data.array[..., 3], la[..., 1])

    idx = _pixels((5, 6), np.uint8) % 4
    pal = Image.fromarray(idx, mode="P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    pal.save(tmp_path / "p.png")
    data = read_image(tmp_path / "p.png")
    lut = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], np.uint8)
    np.testing.assert_array_equal(data.array, lut[idx])
    assert probe_image(tmp_path / "p.png").channels == 3


def test_multi_page_tiff_reads_first_page_with_warning(tmp_path):
    stack = _pixels((5, 8, 7), np.uint16)
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, stack, photometric="minisblack")
    data = read_image(p)
    np.testing.assert_array_equal(data.array, stack[0])
    assert data.info.pages == 5 and probe_image(p).pages == 5
    assert data.warnings == ["multi-page TIFF: 5 pages, showing the first"]


def test_tiff_orientation_tag_is_applied(tmp_path):
    a = _pixels((4, 6), np.uint16)
    p = tmp_path / "rot.tif"
    tifffile.imwrite(p, a, extratags=[(274, "H", 1, 6, True)])
    data = read_image(p)
    np.testing.assert_array_equal(data.array, np.rot90(a, -1))
    assert (data.info.width, data.info.height) == (4, 6)
    assert probe_image(p) == data.info


def test_lzw_tiff_needs_no_imagecodecs(tmp_path):
    """tifffile needs imagecodecs for LZW; the Pillow fallback reads it."""
    rgb = _pixels((10, 12, 3), np.uint8)
    grey16 = _pixels((10, 12), np.uint16)
    Image.fromarray(rgb).save(tmp_path / "rgb.tif", compression="tiff_lzw")
    Image.fromarray(grey16).save(tmp_path / "g16.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif").array, rgb)
    data = read_image(tmp_path / "g16.tif")
    assert data.array.dtype == np.uint16
    np.testing.assert_array_equal(data.array, grey16)


def test_jpeg_exif_orientation_6_rotates_clockwise(tmp_path):
    from skimage import data as skdata

    photo = skdata.astronaut()[100:140:1, 150:210]  # 40 × 60, not square
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    Image.fromarray(photo).save(p, quality=95, exif=exif.tobytes())

    info = probe_image(p)
    assert (info.width, info.height, info.channels, info.format) == (40, 60, 3, "JPEG")
    data = read_image(p)
    assert data.array.shape == (60, 40, 3)
    with Image.open(p) as im:
        stored = np.array(im)  # as stored, not rotated
        viewed = np.array(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(data.array, np.rot90(stored, -1))
    np.testing.assert_array_equal(data.array, viewed)
    assert np.abs(data.array.astype(int) - np.rot90(photo, -1)).mean() < 4  # lossy, same picture


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_bmp_round_trip(tmp_path, mode):
    a = _pixels((7, 5) if mode == "L" else (7, 5, 3), np.uint8)
    p = tmp_path / "x.bmp"
    Image.fromarray(a, mode=mode).save(p)
    data = read_image(p)
    np.testing.assert_array_equal(data.array, a)
    assert data.info == probe_image(p) == ImageInfo(5, 7, 8, 1 if mode == "L" else 3, "BMP")
    assert data.window == (128.0, 256.0)


def test_format_comes_from_content_not_extension(tmp_path):
    a = _pixels((6, 4, 3), np.uint8)
    p = tmp_path / "really_a_png.jpg"
    Image.fromarray(a).save(p, format="PNG")
    data = read_image(p)
    assert data.info.format == "PNG"
    np.testing.assert_array_equal(data.array, a)


# --------------------------------------------------------------------------- DICOM


def test_ct_rescale_gives_modality_values():
    path = _dicom("CT_small.dcm")
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    data = read_image(path)
    np.testing.assert_array_equal(data.array, expected)
    assert data.array.dtype == np.int16
    assert data.info == ImageInfo(128, 128, 16, 1, "DICOM") == probe_image(path)
    c, w = data.window  # no window in the header: the data's robust range
    assert expected.min() <= c - w / 2 < c + w / 2 <= expected.max()


def test_ct_header_window_and_rescale():
    path = _dicom("17106")  # CT with RescaleIntercept -1024, WindowCenter 30, WindowWidth 100
    ds = pydicom.dcmread(path)
    data = read_image(path)
    np.testing.assert_array_equal(
        data.array, ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    )
    assert data.window == (float(ds.WindowCenter), float(ds.WindowWidth))


def test_mr_multi_valued_window_takes_first():
    path = _dicom("MR_small.dcm")
    ds = pydicom.dcmread(path)
    data = read_image(path)
    np.testing.assert_array_equal(data.array, ds.pixel_array)
    assert data.window == (600.0, 1600.0)
    path = _dicom("examples_overlay.dcm")  # WindowCenter [450, 200], WindowWidth [790, 443]
    assert read_image(path).window == (450.0, 790.0)


def test_one_bit_dicom_gets_a_window_over_its_data():
    data = read_image(_dicom("liver_1frame.dcm"))  # BitsAllocated 1: values 0/1 in uint8
    assert set(np.unique(data.array)) == {0, 1}
    assert set(np.unique(to_display(data.array, data.window))) == {0, 255}


def test_monochrome1_is_inverted_so_high_is_bright():
    path = _dicom("6154")  # CR, MONOCHROME1, slope 0.684, intercept 200, window 1600/2800
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    rescaled = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    data = read_image(path)
    total = data.array.astype(np.float64) + rescaled  # one constant: a mirror, not a copy
    assert np.ptp(rescaled) > 0
    np.testing.assert_allclose(total, total.flat[0], atol=1e-3)
    c, w = data.window
    assert w == float(ds.WindowWidth)
    np.testing.assert_allclose(c, total.flat[0] - float(ds.WindowCenter), atol=1e-3)
    # shown through the mirrored window, what was dark (high raw value) is now bright
    raw_view = to_display(rescaled, (float(ds.WindowCenter), w)).astype(int)
    new_view = to_display(data.array, data.window).astype(int)
    assert np.abs((255 - raw_view) - new_view).max() <= 1
    brightest_raw = np.unravel_index(np.argmax(rescaled), rescaled.shape)
    assert data.array[brightest_raw] == data.array.min()


def test_multi_frame_dicom_reads_first_frame_with_warning():
    path = _dicom("rtdose.dcm")
    ds = pydicom.dcmread(path)
    data = read_image(path)
    np.testing.assert_array_equal(data.array, ds.pixel_array[0])
    assert data.info.pages == 15 == probe_image(path).pages
    assert data.warnings == ["multi-frame DICOM: 15 frames, showing the first"]

    path = _dicom("SC_rgb_rle_2frame.dcm")
    data = read_image(path)
    np.testing.assert_array_equal(data.array, pydicom.dcmread(path).pixel_array[0])
    assert data.info == ImageInfo(100, 100, 8, 3, "DICOM", 2)


def test_dicom_without_preamble_needs_dcm_suffix(tmp_path):
    ds = pydicom.dcmread(_dicom("CT_small.dcm"))
    raw = ds.pixel_array
    del ds.file_meta
    ds.preamble = None
    p = tmp_path / "bare.dcm"
    pydicom.dcmwrite(p, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert p.read_bytes()[128:132] != b"DICM"
    data = read_image(p)
    np.testing.assert_array_equal(data.array, raw.astype(np.int32) - 1024)
    assert data.info.format == "DICOM"
    other = tmp_path / "bare.bin"
    other.write_bytes(p.read_bytes())
    with pytest.raises(UnsupportedFormatError):
        probe_image(other)


def test_compressed_dicom_without_codec_names_syntax_and_package():
    path = _dicom("MR_small_jpeg_ls_lossless.dcm")
    try:
        pydicom.dcmread(path).pixel_array  # noqa: B018
    except Exception:
        pass
    else:
        pytest.skip("a JPEG-LS decoder is installed")
    assert probe_image(path).width == 64  # the header alone needs no codec
    with pytest.raises(MissingCodecError) as err:
        read_image(path)
    msg = str(err.value)
    assert "JPEG-LS" in msg and "pip install" in msg and "MR_small_jpeg_ls_lossless" in msg


def test_truncated_dicom_is_corrupt():
    with pytest.raises(CorruptImageError, match="MR_truncated"):
        read_image(_dicom("MR_truncated.dcm"))


# --------------------------------------------------------------------------- bad input


def _png_bytes(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.touch()
    for fn in (probe_image, read_image):
        with pytest.raises(CorruptImageError, match="empty file") as err:
            fn(p)
        assert "empty.png" in str(err.value)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_truncated_png_is_corrupt(tmp_path, dtype):
    a = _pixels((64, 64, 3), dtype)
    p = tmp_path / "cut.png"
    _write_png(p, a)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    assert probe_image(p).width == 64  # the header is intact
    with pytest.raises(CorruptImageError, match="cut.png"):
        read_image(p)


@pytest.mark.parametrize("suffix", [".jpg", ".tif", ".bmp"])
def test_truncated_files_are_corrupt(tmp_path, suffix):
    a = _pixels((48, 40, 3), np.uint8)
    p = tmp_path / f"cut{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(p, a)
    else:
        Image.fromarray(a).save(p)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(CorruptImageError, match=f"cut{suffix}"):
        read_image(p)


def test_text_file_named_png_is_unsupported(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("these are not pixels\n")
    with pytest.raises(UnsupportedFormatError, match="text") as err:
        read_image(p)
    assert "notes.png" in str(err.value)
    p.write_bytes(b"GIF89a" + bytes(20))
    with pytest.raises(UnsupportedFormatError, match="GIF"):
        probe_image(p)


@pytest.mark.parametrize(
    "content",
    [b"\x89PNG\r\n\x1a\n" + bytes(40), b"\xff\xd8\xff" + os.urandom(64), b"BM" + bytes(60),
     b"II*\x00" + os.urandom(64), bytes(128) + b"DICM" + os.urandom(64)],
    ids=["png", "jpeg", "bmp", "tiff", "dicom"],
)  # fmt: skip
def test_garbage_after_magic_raises_only_image_errors(tmp_path, content):
    p = tmp_path / "junk.img"
    p.write_bytes(content)
    for fn in (probe_image, read_image):
        with pytest.raises(ImageError) as err:
            fn(p)
        assert isinstance(err.value, (CorruptImageError, UnsupportedFormatError))
        assert "junk.img" in str(err.value)


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="gone.png"):
        read_image(tmp_path / "gone.png")


def test_too_large_header_is_refused_before_decoding(tmp_path):
    p = tmp_path / "huge.png"
    p.write_bytes(_png_bytes(100_000, 100_000))  # header only; real pixels would be 10 GB
    for fn in (probe_image, read_image):
        with pytest.raises(ImageTooLargeError, match="100000×100000"):
            fn(p)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_max_pixels_checked_before_any_decode(tmp_path, monkeypatch, suffix):
    a = _pixels((20, 30, 3), np.uint8)
    p = tmp_path / f"x{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(p, a)
    else:
        Image.fromarray(a).save(p)

    def boom(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", boom)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", boom)
    monkeypatch.setattr(cv2, "imdecode", boom)
    with pytest.raises(ImageTooLargeError, match="600"):
        read_image(p, max_pixels=100)
    assert probe_image(p, max_pixels=600).width == 30  # the header alone, no decode


# --------------------------------------------------------------------------- display


def test_to_display_window_mapping():
    u8 = _pixels((4, 5), np.uint8)
    assert to_display(u8) is u8
    np.testing.assert_array_equal(to_display(u8, (128, 256)), u8)

    v = np.array([[0, 999, 1000, 1500, 1999, 2000, 4000]], np.uint16)
    out = to_display(v, (1500, 1000))  # lo 1000, hi 2000
    np.testing.assert_array_equal(out, [[0, 0, 0, 128, 255, 255, 255]])
    np.testing.assert_array_equal(to_display(v, (1500, 0)), [[0, 0, 0, 255, 255, 255, 255]])

    s = RNG.integers(-2000, 3000, size=(30, 30)).astype(np.int16)
    np.testing.assert_array_equal(
        to_display(s, (40, 400)), to_display(s.astype(np.float32), (40, 400))
    )

    f = np.array([[np.nan, -1.0, 0.5, 2.0]], np.float32)
    np.testing.assert_array_equal(to_display(f, (0.5, 1.0)), [[0, 0, 128, 255]])


def test_to_display_keeps_alpha_and_default_window_spans_16_bit_data():
    rgba = _pixels((6, 6, 4), np.uint16)
    out = to_display(rgba)
    assert out.dtype == np.uint8 and out.shape == (6, 6, 4)
    np.testing.assert_array_equal(out[..., 3], np.rint(rgba[..., 3] / 257.0))
    c, w = default_window(rgba)
    assert rgba[..., :3].min() <= c - w / 2 and c + w / 2 <= rgba[..., :3].max()
    assert out[..., :3].min() == 0 and out[..., :3].max() == 255


# --------------------------------------------------------------------------- thumbnails, helpers


def test_thumbnail_is_made_once_with_the_right_size(tmp_path, monkeypatch):
    from skimage import data as skdata

    photo = skdata.astronaut()[:200, :300]
    src = tmp_path / "photo.png"
    Image.fromarray(photo).save(src)
    key = file_sha256(src)
    cache = ThumbnailCache(tmp_path / "cache", size=64)
    thumb = cache.get(src, key)
    assert thumb == tmp_path / "cache" / "thumbs" / key[:2] / f"{key}_64.png"
    with Image.open(thumb) as im:
        assert im.size == (64, 43) and im.mode == "RGB"
    mtime = thumb.stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("the image was read again")

    monkeypatch.setattr(imageio, "read_image", boom)
    assert cache.get(src, key) == thumb
    assert thumb.stat().st_mtime_ns == mtime
    assert [p.name for p in thumb.parent.iterdir()] == [thumb.name]  # no temp files left


def test_thumbnail_of_16_bit_grey_stays_grey(tmp_path):
    a = _pixels((40, 20), np.uint16)
    src = tmp_path / "g16.tif"
    tifffile.imwrite(src, a)
    thumb = ThumbnailCache(tmp_path, size=32).get(src, "ab" * 32)
    with Image.open(thumb) as im:
        assert im.mode == "L" and im.size == (16, 32)
        assert np.ptp(np.array(im)) > 200  # windowed over the data, not clipped to 8 bits


def test_file_sha256_and_suffixes(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(os.urandom(3_000_000))
    assert file_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    assert is_image_file("x/Scan.DCM") and is_image_file(Path("a.TIFF"))
    assert not is_image_file("notes.txt") and not is_image_file("dir.png/file")
