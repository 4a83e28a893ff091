"""``tlstudio doctor`` and the start-up check: a missing system library of the Qt platform
plugin is named with its package (a fake ``ldd`` plays the fresh machine), and the window
command prints the doctor's Qt section instead of Qt's message and abort."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tlstudio.cli import main
from tlstudio.doctor import FAIL, OK
from tlstudio.doctor.qt import chosen_platform, debian_package, install_hint, qt_checks

ROOT = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ldd is Linux's")


def _fake_ldd(folder: Path, missing: list[str]) -> Path:
    """A folder holding an ``ldd`` that reports ``missing`` as not found (and libc found)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"\t{lib} => not found" for lib in missing]
    lines.append("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0000000000)")
    script = folder / "ldd"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n" + "\n".join(lines) + "\nEOF\n")
    script.chmod(0o755)
    return folder


def _env(**changes: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def test_doctor_exits_0_here(tmp_path: Path) -> None:
    """On this machine (tests run with QT_QPA_PLATFORM=offscreen) nothing fails."""
    done = subprocess.run(
        [sys.executable, "-m", "tlstudio", "doctor", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
        env=_env(QT_QPA_PLATFORM="offscreen"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for heading in ("Qt window system", "PyTorch", "Weights", "Storage", "DICOM codecs"):
        assert f"\n{heading}\n" in f"\n{done.stdout}"
    assert "ok    start: Qt started the 'offscreen' platform" in done.stdout
    assert "ok    efficientnet_lite0:" in done.stdout
    assert "ok    torchvision C++ ops" in done.stdout
    assert f"{tmp_path / 'cache'} (writable)" in done.stdout


@linux_only
def test_doctor_names_the_missing_library_of_a_plugin_that_cannot_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin = tmp_path / "plugins" / "platforms" / "libqxcb.so"
    plugin.parent.mkdir(parents=True)
    plugin.write_bytes(b"\x7fELF not really")
    fake = _fake_ldd(tmp_path / "bin", ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DISPLAY", ":0")
    status = main(["doctor", "--platform-plugin", str(plugin)])
    out = capsys.readouterr().out
    assert status == 1
    line = next(ln for ln in out.splitlines() if "libraries of the 'xcb' plugin" in ln)
    assert line.lstrip().startswith(FAIL)
    assert "libxcb-icccm.so.4" in line and "libxcb-keysyms.so.1" in line
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in out
    assert "1 problem(s) to fix" in out


@linux_only
def test_readme_apt_line_covers_the_xcb_plugin_libraries() -> None:
    """Every X11/GL library the installed xcb plugin links is in the README's apt-get line."""
    from tlstudio.doctor.qt import platform_plugin

    plugin = platform_plugin("xcb")
    if plugin is None or shutil.which("ldd") is None:
        pytest.skip("no xcb plugin or no ldd here")
    out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    linked = {line.split()[0] for line in out.splitlines() if "=>" in line}
    wanted = {lib for lib in linked if lib.startswith(
        ("libxcb-", "libxkbcommon-x11", "libX11-xcb", "libEGL", "libGL.", "libfontconfig"))}  # fmt: skip
    assert wanted, out
    readme = (ROOT / "README.md").read_text()
    apt_line = next(line for line in readme.splitlines() if "sudo apt-get install libegl1" in line)
    packages = set(apt_line.strip("`").split()[3:])
    assert {debian_package(lib) for lib in wanted} <= packages


@linux_only
def test_window_prints_the_doctor_instead_of_qt_message(tmp_path: Path) -> None:
    """The fresh-Debian case: X11 session, the xcb plugin misses two libraries. Qt would
    abort blaming libxcb-cursor0; tlstudio names the two and exits 1."""
    fake = _fake_ldd(tmp_path / "bin", ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    env = _env(QT_QPA_PLATFORM=None, WAYLAND_DISPLAY=None, XDG_SESSION_TYPE="x11", DISPLAY=":0")
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    done = subprocess.run([sys.executable, "-m", "tlstudio"], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "tlstudio cannot open its window" in done.stderr
    assert "missing libxcb-icccm.so.4, libxcb-keysyms.so.1" in done.stderr
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in done.stderr
    assert "xcb-cursor0" not in done.stderr


def test_qt_fatal_platform_error_prints_the_doctor_and_exits_1() -> None:
    """When Qt itself gives up on the platform (here: a platform that does not exist), the
    QApplication's fatal message becomes the doctor's Qt section and exit status 1, not
    an abort (SIGABRT) after Qt's "Reinstalling the application may fix this problem"."""
    code = "from tlstudio.gui.app import create_application; create_application()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=_env(QT_QPA_PLATFORM="nosuchplatform"))  # fmt: skip
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "tlstudio cannot open its window" in done.stderr
    assert "Qt has no platform plugin 'nosuchplatform'" in done.stderr
    assert "offscreen" in done.stderr  # the platforms it has
    assert "Reinstalling the application" not in done.stderr


def test_offscreen_here_passes_the_quick_checks() -> None:
    checks = qt_checks(env={"QT_QPA_PLATFORM": "offscreen"})
    assert [c for c in checks if c.status == FAIL] == []
    assert any(c.name == "platform plugin" and c.status == OK for c in checks)


@pytest.mark.parametrize(
    ("soname", "package"),
    [
        ("libxcb-icccm.so.4", "libxcb-icccm4"),
        ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
        ("libxcb-cursor.so.0", "libxcb-cursor0"),
        ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
        ("libX11-xcb.so.1", "libx11-xcb1"),
        ("libEGL.so.1", "libegl1"),
        ("libdbus-1.so.3", "libdbus-1-3"),
        ("libglib-2.0.so.0", "libglib2.0-0"),
    ],
)
def test_debian_package_of_a_library(soname: str, package: str) -> None:
    assert debian_package(soname) == package


def test_install_hint_lists_each_package_once() -> None:
    hint = install_hint(["libglib-2.0.so.0", "libgobject-2.0.so.0", "libegl.so.1"])
    assert "sudo apt-get install libglib2.0-0 libegl1\n" in hint


@pytest.mark.parametrize(
    ("env", "platform"),
    [
        ({"QT_QPA_PLATFORM": "offscreen"}, "offscreen"),
        ({"QT_QPA_PLATFORM": "wayland:option;xcb"}, "wayland"),
        ({"DISPLAY": ":0"}, "xcb"),
        ({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}, "wayland"),
    ],
)
@linux_only
def test_chosen_platform(env: dict[str, str], platform: str) -> None:
    assert chosen_platform(env)[0] == platform
