#!/bin/sh
# Installs the Debian packages wisp needs, only those that are missing, so that a fresh
# machine needs nothing by hand. Called by make before anything that needs them.
set -eu
packages="build-essential pkg-config libseccomp-dev liburing-dev libcmocka-dev libjansson-dev
linux-source-6.1 bc bison flex libelf-dev libssl-dev
qemu-system-x86 busybox-static kmod cpio util-linux
clang libclang-rt-14-dev clang-format e2fsprogs iproute2 curl python3 python3-yaml"
missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "ci/install-deps.sh: missing packages:$missing; run as root or install them" >&2
	exit 1
fi
echo "ci/install-deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
