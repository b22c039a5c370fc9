#!/bin/sh
# Builds the guest's initramfs: a gzip-compressed newc cpio archive whose /init is a static binary
# (normally guest/init/init.c), with device nodes made without root (see guest/mkcpio.py).
#   guest/mkinitramfs.sh OUT.cpio.gz INIT_BINARY [--busybox]
#   --busybox          also /bin/busybox and a /bin/<applet> symlink for each of its applets
#   WISP_BUSYBOX=path  the static busybox to use (default /bin/busybox, Debian's busybox-static)
# The output is reproducible: root-owned entries, mtime 0, gzip -n.
set -eu
die() { echo "mkinitramfs: $*" >&2; exit 1; }
usage() { echo "usage: $0 OUT.cpio.gz INIT_BINARY [--busybox]" >&2; exit 2; }
[ $# -eq 2 ] || [ $# -eq 3 ] || usage
out=$1
init=$2
busybox=
if [ $# -eq 3 ]; then
	[ "$3" = --busybox ] || usage
	busybox=${WISP_BUSYBOX:-/bin/busybox}
fi
here=$(cd "$(dirname "$0")" && pwd)

# A dynamic binary has no libraries to load in the guest; the kernel would only say
# "No working init found", so refuse it here.
check_static() {
	if [ ! -f "$1" ] || [ ! -x "$1" ]; then
		die "$1 is not an executable file"
	fi
	if LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'program interpreter'; then
		die "$1 is dynamically linked; it must be static"
	fi
}
check_static "$init"
[ -z "$busybox" ] || check_static "$busybox"
case $init in /*) ;; *) init=$(pwd)/$init ;; esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# No pipelines below: POSIX sh has no pipefail, and a failure must not go unnoticed.
{
	for d in proc sys dev tmp run bin sbin etc; do
		echo "dir /$d 0755 0 0"
	done
	echo "dir /root 0700 0 0"
	# The kernel opens /dev/console for init before anything mounts devtmpfs.
	echo "nod /dev/console 0600 0 0 c 5 1"
	echo "nod /dev/null 0666 0 0 c 1 3"
	echo "file /init $init 0755 0 0"
} >"$tmp/list"

if [ -n "$busybox" ]; then
	echo "file /bin/busybox $busybox 0755 0 0" >>"$tmp/list"
	"$busybox" --list >"$tmp/applets" || die "$busybox --list failed"
	while IFS= read -r applet; do
		case $applet in
		'' | busybox | */*) continue ;;
		esac
		echo "slink /bin/$applet busybox 0777 0 0"
	done <"$tmp/applets" >>"$tmp/list"
	for a in sh ls cat echo mount dd sync sleep ip ifconfig nc sha256sum grep mkdir rm sed awk \
		wc head tail uname nproc; do
		grep -qxF "$a" "$tmp/applets" || echo "mkinitramfs: warning: busybox has no $a" >&2
	done
fi

python3 "$here/mkcpio.py" <"$tmp/list" >"$tmp/initramfs.cpio" || die "mkcpio.py failed"
gzip -n -9 <"$tmp/initramfs.cpio" >"$tmp/initramfs.cpio.gz" || die "gzip failed"
# Into place only when complete, so a failed build never leaves a truncated archive behind.
mv -f "$tmp/initramfs.cpio.gz" "$out.tmp.$$" || die "cannot write $out"
mv -f "$out.tmp.$$" "$out" || die "cannot write $out"
