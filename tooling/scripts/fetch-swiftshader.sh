#!/usr/bin/env bash
# Unpacks SwiftShader (software Vulkan) from Debian's chromium-common package without installing it,
# so the webgpu engine's tests run on machines without a GPU. Idempotent: a second run only prints.
#   eval "$(bash tooling/scripts/fetch-swiftshader.sh)"   # exports VK_ICD_FILENAMES and LD_LIBRARY_PATH
# Prints the two export lines on stdout; progress goes to stderr. Needs apt-get and dpkg (Debian/Ubuntu).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${SWIFTSHADER_DIR:-$root/.cache/swiftshader}"
lib="$dir/usr/lib/chromium"
icd="$lib/vk_swiftshader_icd.json"

if [[ ! -f "$icd" || ! -f "$lib/libvk_swiftshader.so" || ! -f "$lib/libvulkan.so.1" ]]; then
  mkdir -p "$dir/deb"
  if ! compgen -G "$dir/deb/chromium-common_*.deb" >/dev/null; then
    # apt-get download writes into the current folder; `apt-get update` first where the lists are empty.
    if ! (cd "$dir/deb" && apt-get download chromium-common >&2 2>/dev/null); then
      echo "fetch-swiftshader: apt-get update, then download chromium-common" >&2
      apt-get update >&2
      (cd "$dir/deb" && apt-get download chromium-common >&2)
    fi
  fi
  deb="$(compgen -G "$dir/deb/chromium-common_*.deb" | head -n 1)"
  echo "fetch-swiftshader: unpacking $(basename "$deb")" >&2
  dpkg -x "$deb" "$dir"
  # The browser's data files are not needed: keep the Vulkan loader and SwiftShader only.
  find "$lib" -mindepth 1 -maxdepth 1 ! -name 'libvulkan.so.1' ! -name 'libvk_swiftshader.so' \
    ! -name 'vk_swiftshader_icd.json' -exec rm -rf {} +
  rm -rf "$dir/deb" "$dir/usr/share" "$dir/etc"
fi
[[ -f "$icd" ]] || { echo "fetch-swiftshader: $icd missing after unpacking" >&2; exit 1; }
echo "export VK_ICD_FILENAMES='$icd'"
echo "export LD_LIBRARY_PATH='$lib'${LD_LIBRARY_PATH:+":$LD_LIBRARY_PATH"}"
