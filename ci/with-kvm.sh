#!/bin/sh
# Runs a command where /dev/kvm works: here if this host has it, else inside
# ci/kvm-harness. Says which, and returns the command's own exit status.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ -w /dev/kvm ] && [ -r /dev/kvm ]; then
	echo "with-kvm: using this host's /dev/kvm" >&2
	exec "$@"
fi
echo "with-kvm: no /dev/kvm here: running inside ci/kvm-harness (nested KVM under QEMU TCG)" >&2
quoted=""
for arg in "$@"; do
	quoted="$quoted '$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")'"
done
WISP_IN_HARNESS=1 exec "$here/kvm-harness" "$quoted"
