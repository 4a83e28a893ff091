#!/usr/bin/env bash
# Build tlstudio as a one-folder application, dist/tlstudio/, with PyInstaller, in a clean
# virtual environment made from constraints.txt (the tested versions) and
# packaging/build-constraints.txt (PyInstaller). Prints the folder's size and the build time.
#
#   packaging/build.sh              # fresh build/venv, then build
#   packaging/build.sh --keep-venv  # reuse build/venv if it exists (quicker rebuild)
#   PYTHON=python3.11 packaging/build.sh
#
# On Linux the Qt xcb plugin's system libraries are bundled (PyInstaller collects every library
# a plugin links, except the graphics stack, libxcb itself and libc); those this machine lacks
# are fetched as Debian packages (apt-get download) and unpacked under build/ first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=build/venv
keep_venv=0
for arg in "$@"; do
  case "$arg" in
    --keep-venv) keep_venv=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

start=$(date +%s)
if [ "$keep_venv" = 0 ] || [ ! -x "$VENV/bin/pyinstaller" ]; then
  echo "== clean build environment: $VENV ($("$PYTHON" --version))"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -c constraints.txt -c packaging/build-constraints.txt \
    . pyinstaller pyinstaller-hooks-contrib
else
  echo "== reusing $VENV; installing this checkout of tlstudio"
  "$VENV/bin/python" -m pip install -q --no-deps --force-reinstall -c constraints.txt .
fi
venv_done=$(date +%s)

if [ "$(uname -s)" = Linux ]; then
  # Libraries of the Qt xcb plugin missing on this machine: fetch their Debian packages
  # (apt-get download: no root, nothing installed) and unpack them under build/, where
  # PyInstaller (which resolves with ldd, so LD_LIBRARY_PATH) finds and bundles them.
  missing_packages=$("$VENV/bin/python" - <<'PY'
from tlstudio.doctor.qt import debian_package, missing_libraries, platform_plugin

plugin = platform_plugin("xcb")
missing = (missing_libraries(plugin) or []) if plugin else []
print(" ".join(dict.fromkeys(debian_package(lib) for lib in missing)))
PY
)
  if [ -z "$missing_packages" ]; then
    echo "== the Qt xcb plugin's libraries are all on this machine; the build bundles them"
  elif command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
    echo "== this machine lacks $missing_packages (Qt xcb plugin); fetching them to bundle"
    extra=build/system-libs
    rm -rf "$extra"
    mkdir -p "$extra/debs" "$extra/root"
    (cd "$extra/debs" && apt-get download $missing_packages 2>&1 | grep -v "unsandboxed" || true)
    for deb in "$extra"/debs/*.deb; do dpkg-deb -x "$deb" "$extra/root"; done
    lib_dirs=$(find "$PWD/$extra/root" -name "*.so*" -printf '%h\n' | sort -u | paste -sd:)
    export LD_LIBRARY_PATH="$lib_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    echo "warning: this machine lacks libraries of the Qt xcb plugin ($missing_packages) and"
    echo "  cannot fetch them (no apt-get); the build will not carry them. Install them first:"
    echo "  sudo apt-get install $missing_packages"
  fi
  "$VENV/bin/python" - <<'PY'
from tlstudio.doctor.qt import missing_libraries, platform_plugin

plugin = platform_plugin("xcb")
missing = missing_libraries(plugin) if plugin else None
if missing:
    print(f"warning: the build will lack {', '.join(missing)}: the window will need them "
          "installed on the machine that runs it")
PY
fi

echo "== PyInstaller"
rm -rf build/pyinstaller dist/tlstudio
nice -n 10 "$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/tlstudio.spec

# Desktop integration files beside the executable, for dist/tlstudio/install-desktop.sh.
share=dist/tlstudio/share
mkdir -p "$share/applications" "$share/metainfo" "$share/icons/hicolor/scalable/apps"
cp packaging/tlstudio.desktop "$share/applications/"
cp packaging/*.metainfo.xml "$share/metainfo/"
cp resources/app/tlstudio.svg "$share/icons/hicolor/scalable/apps/tlstudio.svg"
for png in resources/app/png/tlstudio-*.png; do
  size=${png##*-}; size=${size%.png}
  mkdir -p "$share/icons/hicolor/${size}x${size}/apps"
  cp "$png" "$share/icons/hicolor/${size}x${size}/apps/tlstudio.png"
done
cp packaging/install-desktop.sh LICENSE dist/tlstudio/

end=$(date +%s)
echo "== built dist/tlstudio/"
echo "size: $(du -sh dist/tlstudio | cut -f1) ($(find dist/tlstudio -type f | wc -l) files)"
echo "largest parts:"
du -sh dist/tlstudio/_internal/* 2>/dev/null | sort -rh | head -6 | sed 's/^/  /'
echo "build time: $((end - start)) s (environment $((venv_done - start)) s, PyInstaller $((end - venv_done)) s)"
