"""Render tlstudio's icons from their SVG sources and copy what the app needs into the package.

Run from the repository root after editing an SVG in ``resources/``::

    QT_QPA_PLATFORM=offscreen python resources/make_icons.py

It writes ``resources/app/png/tlstudio-<N>.png`` (16–512 px), ``resources/app/tlstudio.ico``
(16–256 px, Windows) and ``resources/app/tlstudio.icns`` (16–512 px, macOS), and copies the
toolbar SVGs and the application icon into ``tlstudio/resources/icons/`` (what the running
app loads). Needs only the packages tlstudio already installs: PySide6 (QtSvg renders the
SVG) and Pillow (writes ``.ico``/``.icns``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "resources"
APP_SVG = SOURCES / "app" / "tlstudio.svg"
PNG_DIR = SOURCES / "app" / "png"
PACKAGE_ICONS = ROOT / "tlstudio" / "resources" / "icons"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)  # px; hicolor theme sizes
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)  # .ico holds at most 256 px
ICNS_SIZES = (16, 32, 64, 128, 256, 512)  # the sizes Pillow's ICNS writer stores
PACKAGE_PNG = 256  # one raster copy of the app icon in the package (window icon fallback)


def render(svg: Path, size: int) -> Image.Image:
    """``svg`` drawn into a transparent ``size``×``size`` px RGBA image."""
    renderer = QSvgRenderer(QByteArray(svg.read_bytes()))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not an SVG that Qt can draw")
    image = QImage(size, size, QImage.Format.Format_RGBA8888)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    data = bytes(image.constBits())
    return Image.frombuffer("RGBA", (size, size), data, "raw", "RGBA", image.bytesPerLine(), 1)


def main() -> int:
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    PNG_DIR.mkdir(parents=True, exist_ok=True)
    images = {size: render(APP_SVG, size) for size in PNG_SIZES}
    for size, image in images.items():
        image.save(PNG_DIR / f"tlstudio-{size}.png", optimize=True)
    largest = images[max(PNG_SIZES)]
    largest.save(
        SOURCES / "app" / "tlstudio.ico",
        sizes=[(s, s) for s in ICO_SIZES],
        append_images=[images[s] for s in ICO_SIZES],
    )
    largest.save(SOURCES / "app" / "tlstudio.icns", append_images=[images[s] for s in ICNS_SIZES])

    PACKAGE_ICONS.mkdir(parents=True, exist_ok=True)
    for svg in sorted((SOURCES / "toolbar").glob("*.svg")):
        render(svg, 24)  # fails loudly on an SVG that Qt cannot draw
        shutil.copyfile(svg, PACKAGE_ICONS / svg.name)
    shutil.copyfile(APP_SVG, PACKAGE_ICONS / APP_SVG.name)
    images[PACKAGE_PNG].save(PACKAGE_ICONS / f"tlstudio-{PACKAGE_PNG}.png", optimize=True)
    print(f"wrote {len(PNG_SIZES)} PNGs, tlstudio.ico, tlstudio.icns; package icons in "
          f"{PACKAGE_ICONS.relative_to(ROOT)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
