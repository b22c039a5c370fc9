#!/bin/sh
# Runs a command where /dev/kvm works: here if this host has it, else inside
# ci/kvm-harness. Says which, and returns the command's own exit status.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
# Hardware KVM needs VT-x or AMD-V in the CPU flags. A /dev/kvm without them is a
# software implementation (this workplace's hosts have one, "kvm-pvm", which cannot run
# an unmodified Linux guest: its instruction emulator gives up on cmpxchg16b), so it
# does not count. WISP_KVM=direct or WISP_KVM=harness overrides the choice.
mode=${WISP_KVM:-auto}
if [ "$mode" = auto ]; then
	mode=harness
	if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qw -E 'vmx|svm' /proc/cpuinfo; then
		mode=direct
	fi
fi
if [ "$mode" = direct ]; then
	echo "with-kvm: using this host's /dev/kvm" >&2
	exec "$@"
fi
if [ -e /dev/kvm ]; then
	echo "with-kvm: this host's /dev/kvm is not hardware KVM (no vmx/svm CPU flag): running inside ci/kvm-harness (nested KVM under QEMU TCG)" >&2
else
	echo "with-kvm: no /dev/kvm here: running inside ci/kvm-harness (nested KVM under QEMU TCG)" >&2
fi
quoted=""
for arg in "$@"; do
	quoted="$quoted '$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")'"
done
WISP_IN_HARNESS=1 exec "$here/kvm-harness" "$quoted"
