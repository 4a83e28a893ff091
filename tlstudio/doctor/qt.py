"""The doctor's Qt section: which platform plugin Qt will load, whether the system has
the libraries that plugin links (``ldd``, Linux), whether there is a display, and
(``probe=True``) whether Qt really starts and with which OpenGL renderer.

Qt's own message when the xcb plugin cannot load blames ``libxcb-cursor0`` even when
other libraries are missing; these checks name the missing files and the Debian/Ubuntu
packages that hold them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from . import FAIL, OK, WARN, Check, self_command

SECTION = "Qt window system"
RENDER_SECTION = "Rendering"
DESKTOP_PLATFORMS = ("xcb", "wayland")  # Linux platforms that need a display
_NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found", re.MULTILINE)
_SONAME = re.compile(r"^(lib.+?)\.so\.(\d+)")
# Debian package names that do not follow "soname stem + version" (Debian policy 8.1).
_PACKAGE_EXCEPTIONS = {
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgio-2.0.so.0": "libglib2.0-0",
}
PROBE_TIMEOUT_S = 60


def plugin_file_name(platform: str) -> str:
    """File name of the platform plugin ``platform`` on this operating system."""
    if sys.platform == "win32":
        return f"q{platform}.dll"
    return f"libq{platform}.dylib" if sys.platform == "darwin" else f"libq{platform}.so"


def plugin_dirs() -> list[Path]:
    """Folders Qt searches for plugins (QT_PLUGIN_PATH, then Qt's own and the app's)."""
    from PySide6.QtCore import QCoreApplication, QLibraryInfo

    found = [p for p in os.environ.get("QT_PLUGIN_PATH", "").split(os.pathsep) if p]
    found.append(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    found += QCoreApplication.libraryPaths()
    out: list[Path] = []
    for p in map(Path, found):
        if p not in out:
            out.append(p)
    return out


def platform_plugin(platform: str) -> Path | None:
    """The plugin file Qt would load for ``platform``, or None if Qt has none."""
    for folder in plugin_dirs():
        path = folder / "platforms" / plugin_file_name(platform)
        if path.is_file():
            return path
    return None


def available_platforms() -> list[str]:
    """Names of the platform plugins Qt can find (e.g. xcb, wayland, offscreen)."""
    names: set[str] = set()
    for folder in plugin_dirs():
        for path in (folder / "platforms").glob(plugin_file_name("*")):
            stem = path.name.split(".")[0]
            names.add(stem[4:] if stem.startswith("libq") else stem[1:])
    return sorted(names)


def chosen_platform(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(platform, why): the platform Qt picks with ``env`` (default: this process's)."""
    env = os.environ if env is None else env
    requested = env.get("QT_QPA_PLATFORM", "").strip()
    if requested:  # "name:options;fallback": Qt tries the first one first
        return requested.split(";")[0].split(":")[0], "set by QT_QPA_PLATFORM"
    if sys.platform == "darwin":
        return "cocoa", "macOS"
    if sys.platform == "win32":
        return "windows", "Windows"
    if env.get("XDG_SESSION_TYPE") == "wayland" and env.get("WAYLAND_DISPLAY"):
        return "wayland", "Wayland session"
    return "xcb", "X11, Qt's default on Linux"


def missing_libraries(plugin: Path) -> list[str] | None:
    """Shared libraries that ``plugin`` (directly or through its dependencies) needs and
    the system lacks, from ``ldd``; None when ``ldd`` cannot run (not Linux, no ldd)."""
    try:
        out = subprocess.run(
            ["ldd", str(plugin)], capture_output=True, text=True, timeout=30,
            env={**os.environ, "LC_ALL": "C"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return list(dict.fromkeys(_NOT_FOUND.findall(out.stdout + out.stderr)))


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that usually holds ``soname`` (``libxcb-icccm.so.4`` ->
    ``libxcb-icccm4``; ``libxkbcommon-x11.so.0`` -> ``libxkbcommon-x11-0``)."""
    if soname in _PACKAGE_EXCEPTIONS:
        return _PACKAGE_EXCEPTIONS[soname]
    match = _SONAME.match(soname)
    if match is None:
        return soname
    stem, version = match.group(1).lower(), match.group(2)
    return f"{stem}-{version}" if stem[-1].isdigit() else f"{stem}{version}"


def install_hint(libraries: list[str]) -> str:
    """The fix for missing ``libraries``: the apt-get line, and the files for other systems."""
    packages = " ".join(dict.fromkeys(debian_package(lib) for lib in libraries))
    return (
        f"Debian/Ubuntu: sudo apt-get install {packages}\n"
        f"other Linux: install the packages that provide {', '.join(libraries)}"
    )


def qt_checks(
    env: Mapping[str, str] | None = None, plugin: Path | None = None, probe: bool = False
) -> list[Check]:
    """The Qt section. ``plugin``: check this plugin file as the platform to use.
    ``probe``: also start Qt in a child process (about a second) and read OpenGL."""
    env = os.environ if env is None else env
    try:
        import PySide6
        from PySide6 import QtCore
    except ImportError as exc:
        return [Check(SECTION, "PySide6", FAIL, f"cannot import PySide6 ({exc})",
                      "pip install PySide6-Essentials  (or reinstall tlstudio)")]  # fmt: skip
    checks = [Check(SECTION, "Qt", OK, f"PySide6 {PySide6.__version__}, Qt {QtCore.qVersion()}")]
    path: Path | None
    if plugin is not None:
        platform = plugin.name.split(".")[0].removeprefix("lib")[1:]  # libqxcb.so -> xcb
        why, path = "--platform-plugin", plugin
    else:
        platform, why = chosen_platform(env)
        path = platform_plugin(platform)
    if path is None or not path.is_file():
        names = ", ".join(available_platforms()) or "none"
        fix = (f"unset QT_QPA_PLATFORM, or set it to one of: {names}" if "QT_QPA" in why
               else "reinstall tlstudio (its Qt platform plugins are incomplete)")  # fmt: skip
        checks.append(Check(SECTION, "platform plugin", FAIL,
                            f"Qt has no platform plugin '{platform}' ({why}); it has: {names}",
                            fix))  # fmt: skip
        return checks
    checks.append(Check(SECTION, "platform plugin", OK, f"'{platform}' ({why}): {path}"))
    if sys.platform.startswith("linux"):
        checks.append(_library_check(platform, path, required=True))
        xcb = platform_plugin("xcb")
        if platform != "xcb" and plugin is None and xcb is not None:
            checks.append(_library_check("xcb", xcb, required=False))
        checks.append(_display_check(platform, env))
    if probe and all(c.status != FAIL for c in checks):
        checks += probe_checks(platform, env)
    return checks


def _library_check(platform: str, plugin: Path, required: bool) -> Check:
    name = f"libraries of the '{platform}' plugin"
    missing = missing_libraries(plugin)
    if missing is None:
        return Check(SECTION, name, WARN, "not checked (ldd did not run)",
                     f"run: ldd {plugin} | grep 'not found'")  # fmt: skip
    if not missing:
        return Check(SECTION, name, OK, "all found")
    role = "the window cannot open" if required else "the desktop window (X11) would not open"
    return Check(SECTION, name, FAIL if required else WARN,
                 f"missing {', '.join(missing)}: {role}", install_hint(missing))  # fmt: skip


def _display_check(platform: str, env: Mapping[str, str]) -> Check:
    if platform not in DESKTOP_PLATFORMS:
        return Check(SECTION, "display", OK,
                     f"'{platform}' needs none (no window appears on screen)")  # fmt: skip
    var = "DISPLAY" if platform == "xcb" else "WAYLAND_DISPLAY"
    if env.get(var):
        return Check(SECTION, "display", OK, f"{var}={env[var]}")
    return Check(SECTION, "display", FAIL, f"{var} is not set: there is no screen to open on",
                 "start tlstudio from a desktop session (over SSH: ssh -X); the commands "
                 "(tlstudio --help) work without a display")  # fmt: skip


def probe_checks(platform: str, env: Mapping[str, str]) -> list[Check]:
    """Start Qt on ``platform`` in a child process; report it and its OpenGL renderer."""
    cmd = self_command("doctor", "--probe-qt")
    child_env = {**env, "QT_QPA_PLATFORM": platform}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              env=child_env)  # fmt: skip
    except subprocess.TimeoutExpired:
        return [Check(SECTION, "start", FAIL, f"Qt did not start in {PROBE_TIMEOUT_S} s",
                      "QT_DEBUG_PLUGINS=1 tlstudio  shows what Qt is doing")]  # fmt: skip
    info = _last_json(done.stdout)
    if done.returncode != 0 or info is None:
        said = [line for line in done.stderr.splitlines() if line.strip()][:3]
        return [Check(SECTION, "start", FAIL,
                      f"Qt stopped (exit {done.returncode}): {' / '.join(said) or 'no message'}",
                      "QT_DEBUG_PLUGINS=1 tlstudio  shows Qt's plugin search")]  # fmt: skip
    checks = [Check(SECTION, "start", OK, f"Qt started the '{info['platform']}' platform")]
    if info.get("gl_renderer"):
        soft = any(s in info["gl_renderer"].lower() for s in ("llvmpipe", "software", "swrast"))
        detail = f"OpenGL {info.get('gl_version', '?')}, {info['gl_renderer']}"
        checks.append(Check(RENDER_SECTION, "OpenGL", OK,
                            detail + (" (software rendering)" if soft else "")))  # fmt: skip
    else:
        checks.append(Check(RENDER_SECTION, "OpenGL", WARN,
                            f"no OpenGL context on '{info['platform']}': Qt draws in software",
                            "nothing needed: tlstudio draws without OpenGL; for GPU drawing "
                            "install the graphics driver (Debian: libgl1-mesa-dri)"))  # fmt: skip
    return checks


def _last_json(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "platform" in value:
            return value
    return None


def probe_main() -> int:
    """In the child process: start a QGuiApplication, read the OpenGL renderer, print
    JSON. Qt aborts this process if the platform cannot start (the parent reports it)."""
    from PySide6.QtGui import QGuiApplication, QOffscreenSurface, QOpenGLContext

    app = QGuiApplication(sys.argv[:1])
    info: dict[str, str] = {"platform": app.platformName()}
    context = QOpenGLContext()
    if context.create():
        surface = QOffscreenSurface()
        surface.setFormat(context.format())
        surface.create()
        if surface.isValid() and context.makeCurrent(surface):
            functions = context.functions()
            info["gl_renderer"] = str(functions.glGetString(0x1F01))  # GL_RENDERER
            info["gl_version"] = str(functions.glGetString(0x1F02))  # GL_VERSION
            context.doneCurrent()
    print(json.dumps(info))
    return 0


def startup_problems(env: Mapping[str, str] | None = None) -> list[Check]:
    """The FAILs of the quick Qt checks (no child process): what stops the window."""
    return [c for c in qt_checks(env) if c.status == FAIL]


def fallback_platform(env: Mapping[str, str] | None = None) -> str | None:
    """Another desktop platform that passes the quick checks when the default one fails
    (wayland for xcb or the reverse, on a desktop that offers both); None if there is
    none or the user chose the platform (QT_QPA_PLATFORM)."""
    env = os.environ if env is None else env
    if env.get("QT_QPA_PLATFORM") or not sys.platform.startswith("linux"):
        return None
    chosen, _why = chosen_platform(env)
    for other in DESKTOP_PLATFORMS:
        if other != chosen and not startup_problems({**env, "QT_QPA_PLATFORM": other}):
            return other
    return None
