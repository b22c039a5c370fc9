#!/usr/bin/env python3
"""make demo: boot the wisp guest once, run a job in it, and print the boot time.

The job shows what the guest sees (kernel, CPUs, memory) and computes something small;
the boot time is measured from wisp's start to the init's ready marker, next to the
guest's own uptime at that marker.
"""
import os
import re
import subprocess
import sys
import time

JOB = ("echo; echo == inside the wisp guest; uname -sr; echo cpus: $(nproc); "
       "grep MemTotal /proc/meminfo; echo sum 1..1000: $(seq 1000 | awk '{s+=$1} END {print s}')")
CMDLINE = ("console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux "
           "i8042.nopnp i8042.dumbkbd quiet -- /bin/sh -c \"" + JOB + "\"")


def main():
    wisp = os.environ["WISP_BIN"]
    kernel = os.path.join(os.environ["WISP_KERNEL_DIR"], "vmlinux")
    initrd = os.environ["WISP_INITRD_BUSYBOX"]
    args = [wisp, "--kernel", kernel, "--initrd", initrd, "--vcpus", "2", "--mem-mib", "256",
            "--cmdline", CMDLINE]
    print("demo: " + " ".join(a if " " not in a else repr(a) for a in args), flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    marker_ms = None
    uptime = None
    for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip("\r\n")
        print(line, flush=True)
        match = re.search(r"wisp-init: ready uptime=([0-9.]+)", line)
        if match and marker_ms is None:
            marker_ms = (time.monotonic() - start) * 1000
            uptime = float(match.group(1)) * 1000
    status = proc.wait()
    print()
    if marker_ms is None:
        print(f"demo: FAILED: the guest never reached its init (wisp exit status {status})")
        return 1
    nested = os.environ.get("WISP_IN_HARNESS") == "1"
    print(f"demo: boot time (wisp start -> guest init ready): {marker_ms:.0f} ms; "
          f"guest uptime at that point: {uptime:.0f} ms"
          + (" [nested KVM under QEMU TCG: slow, only ratios mean anything]" if nested else ""))
    print(f"demo: wisp exited with status {status} after the guest rebooted")
    return 0 if status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
