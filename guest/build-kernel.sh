#!/bin/sh
# Builds the wisp guest kernel (vmlinux with its PVH note, and bzImage) from Debian's
# linux-source-6.1, out of tree, once per (config fragment, source version), into a cache
# outside the clone so that fresh clones (CI) reuse it.
#   guest/build-kernel.sh            build if needed, print the cache directory
#   guest/build-kernel.sh --full-config FILE
#                                    the same from a complete .config (Firecracker's guest
#                                    configuration, make firecracker-kernel) instead of our
#                                    fragment: olddefconfig fills what Debian's 6.1 adds
#   WISP_CACHE=/abs/path             cache root (default $HOME/.cache/wisp)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
full_config=
if [ "${1:-}" = --full-config ]; then
	[ -f "${2:-}" ] || { echo "build-kernel: --full-config '${2:-}': no such file" >&2; exit 1; }
	full_config=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
fi
cache=${WISP_CACHE:-$HOME/.cache/wisp}
tarball=$(ls /usr/src/linux-source-6.1.tar.xz 2>/dev/null || true)
[ -n "$tarball" ] || { echo "build-kernel: /usr/src/linux-source-6.1.tar.xz missing; run ci/install-deps.sh" >&2; exit 1; }
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
# The recipe version changes only when the build itself changes, not this script's wording.
recipe=1
if [ -n "$full_config" ]; then
	hash=$( (cat "$full_config"; echo "recipe=$recipe") | sha256sum | cut -c1-12)
	out="$cache/fullconfig-$hash-$srcver"
else
	hash=$( (cat "$here/wisp-guest.config"; echo "recipe=$recipe") | sha256sum | cut -c1-12)
	out="$cache/guest-$hash-$srcver"
fi
if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache"
exec 9>"$cache/.kernel.lock"; flock 9
if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ]; then echo "$out"; exit 0; fi
src="$cache/linux-source-$srcver"
if [ ! -f "$src/.extracted" ]; then
	echo "build-kernel: extracting $tarball into $src" >&2
	rm -rf "$src" "$src.tmp"; mkdir -p "$src.tmp"
	tar -xJf "$tarball" -C "$src.tmp" --strip-components=1
	touch "$src.tmp/.extracted"; mv "$src.tmp" "$src"
fi
build="$out.build"
rm -rf "$build"; mkdir -p "$build"
start=$(date +%s)
echo "build-kernel: configuring in $build" >&2
if [ -n "$full_config" ]; then
	cp "$full_config" "$build/.config"
	make -s -C "$src" O="$build" ARCH=x86_64 olddefconfig >&2
else
	make -s -C "$src" O="$build" ARCH=x86_64 KCONFIG_ALLCONFIG="$here/wisp-guest.config" allnoconfig >&2
	# Every line of the fragment must have survived allnoconfig: a dropped option is a bug.
	bad=0
	grep -E '^CONFIG_' "$here/wisp-guest.config" | while IFS= read -r line; do
		grep -qxF "$line" "$build/.config" || { echo "build-kernel: $line did not stick" >&2; echo x; }
	done | grep -q x && bad=1
	if [ $bad != 0 ]; then
		rm -rf "$build"
		echo "build-kernel: the config fragment does not apply; fix guest/wisp-guest.config" >&2
		exit 1
	fi
fi
jobs=$(nproc)
echo "build-kernel: make -j$jobs vmlinux bzImage (about 8 minutes on 2 cores)" >&2
make -s -C "$src" O="$build" ARCH=x86_64 -j"$jobs" vmlinux bzImage >&2
mkdir -p "$out.tmp"
cp "$build/vmlinux" "$out.tmp/vmlinux"
cp "$build/arch/x86/boot/bzImage" "$out.tmp/bzImage"
cp "$build/.config" "$out.tmp/config"
echo "$(( $(date +%s) - start ))" > "$out.tmp/build-seconds"
rm -rf "$out"; mv "$out.tmp" "$out"; rm -rf "$build"
echo "build-kernel: built in $(cat "$out/build-seconds") s" >&2

echo "$out"
