#!/usr/bin/env bash
# Build tlstudio as a one-folder application, dist/tlstudio/, with PyInstaller, in a clean
# virtual environment made from constraints.txt (the tested versions) and
# packaging/build-constraints.txt (PyInstaller). Prints the folder's size and the build time.
#
#   packaging/build.sh              # fresh build/venv, then build
#   packaging/build.sh --keep-venv  # reuse build/venv if it exists (quicker rebuild)
#   PYTHON=python3.11 packaging/build.sh
#
# On Linux, the Qt xcb plugin's system libraries that this machine has are bundled (PyInstaller
# collects every library a plugin links, except the graphics stack and libc); the ones it lacks
# are listed with the apt-get line, since the build cannot carry what it cannot see.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=build/venv
keep_venv=0
for arg in "$@"; do
  case "$arg" in
    --keep-venv) keep_venv=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
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
  "$VENV/bin/python" - <<'PY'
from tlstudio.doctor.qt import install_hint, missing_libraries, platform_plugin

plugin = platform_plugin("xcb")
missing = missing_libraries(plugin) if plugin else None
if missing:
    print("warning: this machine lacks libraries of the Qt xcb plugin, so the build cannot "
          f"bundle them: {', '.join(missing)}\n  " + install_hint(missing).replace("\n", "\n  "))
elif missing == []:
    print("== the Qt xcb plugin's libraries are all here; the build bundles them")
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
