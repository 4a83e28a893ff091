#!/usr/bin/env bash
# Install tlstudio's desktop entry, icons and AppStream file for the current user (no root),
# so that tlstudio appears in the applications menu with its icon.
#
#   install-desktop.sh [EXECUTABLE]   EXECUTABLE: default ./tlstudio beside this script (the
#                                     frozen folder dist/tlstudio/), else `tlstudio` on PATH
#   install-desktop.sh --uninstall    remove what it installed
#
# Works from the frozen folder (files under ./share/) and from the source tree
# (packaging/ and resources/app/). Installs into ${XDG_DATA_HOME:-~/.local/share}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
app_id=io.github.tlstudio.tlstudio
sizes="16 24 32 48 64 128 256 512"

if [ -f "$here/share/applications/tlstudio.desktop" ]; then  # frozen folder
  desktop_src=$here/share/applications/tlstudio.desktop
  metainfo_src=$here/share/metainfo/$app_id.metainfo.xml
  svg_src=$here/share/icons/hicolor/scalable/apps/tlstudio.svg
  png_src() { echo "$here/share/icons/hicolor/$1x$1/apps/tlstudio.png"; }
else  # source tree
  desktop_src=$here/tlstudio.desktop
  metainfo_src=$here/$app_id.metainfo.xml
  svg_src=$here/../resources/app/tlstudio.svg
  png_src() { echo "$here/../resources/app/png/tlstudio-$1.png"; }
fi

installed=("$data/applications/tlstudio.desktop" "$data/metainfo/$app_id.metainfo.xml"
           "$data/icons/hicolor/scalable/apps/tlstudio.svg")
for size in $sizes; do installed+=("$data/icons/hicolor/${size}x${size}/apps/tlstudio.png"); done

refresh() {
  command -v update-desktop-database >/dev/null && update-desktop-database -q "$data/applications" || true
  command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$data/icons/hicolor" || true
}

if [ "${1:-}" = --uninstall ]; then
  rm -f "${installed[@]}"
  refresh
  echo "Removed tlstudio's desktop entry and icons from $data"
  exit 0
fi

exe=${1:-}
if [ -z "$exe" ]; then
  if [ -x "$here/tlstudio" ] && [ -f "$here/tlstudio" ]; then exe=$here/tlstudio
  else exe=$(command -v tlstudio || true); fi
fi
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
  echo "install-desktop.sh: no tlstudio executable found; give its path: install-desktop.sh /path/to/tlstudio" >&2
  exit 2
fi
exe=$(cd "$(dirname "$exe")" && pwd)/$(basename "$exe")
case "$exe" in *[\"\`\$\\]*)
  echo "install-desktop.sh: the path $exe has characters a desktop entry cannot quote" >&2; exit 2 ;;
esac

mkdir -p "$data/applications" "$data/metainfo" "$data/icons/hicolor/scalable/apps"
sed -e "s|^Exec=.*|Exec=\"$exe\" %f|" -e "s|^TryExec=.*|TryExec=$exe|" "$desktop_src" \
  > "$data/applications/tlstudio.desktop"
cp "$metainfo_src" "$data/metainfo/"
cp "$svg_src" "$data/icons/hicolor/scalable/apps/tlstudio.svg"
for size in $sizes; do
  mkdir -p "$data/icons/hicolor/${size}x${size}/apps"
  cp "$(png_src "$size")" "$data/icons/hicolor/${size}x${size}/apps/tlstudio.png"
done
if command -v desktop-file-validate >/dev/null; then
  desktop-file-validate "$data/applications/tlstudio.desktop"
fi
refresh
echo "Installed tlstudio ($exe) in the applications menu: $data/applications/tlstudio.desktop"
