#!/usr/bin/env python3
"""make demo: the product's story on one screen, told by wispctl (README "wispctl").

Boots a function VM (the guest init runs a tiny function server on its serial console),
snapshots it once it says it is warm, starts CLONES clones from that snapshot (each its
own wisp process, API socket and TAP), invokes every clone once, inflates their balloons
(when wisp has the balloon API), prints the timings and the memory, and reaps everything,
checking that nothing is left behind.
"""
import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time

REQUEST = "hello from make demo"


def sh(cmd, check=True, quiet=False):
    """Runs a wispctl command, echoing it and its output; returns (status, stdout)."""
    print("$ " + " ".join([os.path.basename(cmd[0])] + cmd[1:]), flush=True)
    start = time.monotonic()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    seconds = time.monotonic() - start
    if not quiet:
        sys.stdout.write(done.stdout)
    sys.stdout.flush()
    if check and done.returncode != 0:
        raise SystemExit(f"demo: FAILED: {' '.join(cmd[5:7])} exited with status "
                         f"{done.returncode}")
    return done.returncode, done.stdout, seconds


def host_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wisp_memory_mib(state_dir):
    """Sum of RSS and PSS (MiB) of the wisp processes of state_dir, and their count."""
    rss = pss = count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if state_dir.encode() not in f.read():
                    continue
            with open(f"/proc/{pid}/smaps_rollup") as f:
                text = f.read()
        except OSError:
            continue
        rss += int(re.search(r"^Rss:\s+(\d+)", text, re.M).group(1))
        pss += int(re.search(r"^Pss:\s+(\d+)", text, re.M).group(1))
        count += 1
    return rss / 1024, pss / 1024, count


def has_balloon_api(wisp):
    schema = subprocess.run([wisp, "--api-schema"], capture_output=True, text=True).stdout
    return '"/balloon"' in schema


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clones", type=int, default=50)
    parser.add_argument("--balloon-mib", type=int, default=32)
    opts = parser.parse_args()
    wisp = os.environ["WISP_BIN"]
    wispctl = os.path.join(os.path.dirname(wisp), "wispctl")
    kernel = os.path.join(os.environ["WISP_KERNEL_DIR"], "vmlinux")
    initrd = os.environ["WISP_INITRD_BUSYBOX"]
    # Unix sockets need a real file system: under ci/kvm-harness /tmp/wisp-run is a tmpfs.
    base = "/tmp/wisp-run" if os.path.isdir("/tmp/wisp-run") else "/tmp"
    state = os.path.join(base, "wispctl-demo")
    snap = os.path.join(base, "wispctl-demo-snapshot")
    nested = os.environ.get("WISP_IN_HARNESS") == "1"
    parallel = str(os.cpu_count() or 1)
    ctl = [wispctl, "--state-dir", state, "--wisp", wisp]
    balloon = has_balloon_api(wisp)
    figures = []

    print(f"demo: wispctl drives wisp over its API: snapshot a function VM, {opts.clones} "
          "clones, invoke, balloon, reap"
          + (" [nested KVM under QEMU TCG: slow, only ratios mean anything]" if nested else ""),
          flush=True)
    subprocess.run(ctl + ["reap", "--all"], capture_output=True)  # an earlier run's
    shutil.rmtree(snap, ignore_errors=True)
    try:
        # 1. A function VM, booted and snapshotted once it is warm.
        snap_cmd = ctl + ["snapshot", "--kernel", kernel, "--initrd", initrd, "--mem", "128",
                          "--net", "-o", snap]
        if balloon:
            snap_cmd += ["--balloon", "0"]
        _, out, seconds = sh(snap_cmd)
        boot = re.search(r"boot to warm (\d+) ms, pause\+snapshot (\d+) ms", out)
        figures.append(("boot to warm marker", f"{boot.group(1)} ms" if boot else "?"))
        figures.append(("pause + snapshot (128 MiB)", f"{boot.group(2)} ms" if boot else "?"))

        # 2. The clones.
        before = host_available_mib()
        _, out, seconds = sh(ctl + ["clone", snap, "--count", str(opts.clones), "--parallel",
                                    parallel])
        rate = re.search(r"in ([0-9.]+) s: ([0-9.]+) clones/s", out)
        figures.append((f"start {opts.clones} clones (parallel {parallel})",
                        f"{rate.group(1)} s, {rate.group(2)} clones/s" if rate else "?"))
        rss, pss, count = wisp_memory_mib(state)
        used = before - host_available_mib()
        figures.append(("memory per clone: PSS / RSS",
                        f"{pss / max(count, 1):.1f} / {rss / max(count, 1):.1f} MiB"))
        figures.append(("host MemAvailable drop per clone",
                        f"{used / max(opts.clones, 1):.1f} MiB"))
        _, out, _ = sh(ctl + ["ls"], quiet=True)
        lines = out.splitlines()
        print("\n".join(lines[:4] + ([f"... ({len(lines) - 1} clones)"] if len(lines) > 4
                                      else [])), flush=True)

        # 3. Invoke every clone once: the answer is the SHA-256 of the request line.
        _, out, seconds = sh(ctl + ["invoke", "--all", REQUEST], quiet=True)
        expected = hashlib.sha256((REQUEST + "\n").encode()).hexdigest()
        answers = re.findall(r"^c[0-9]+: ([0-9a-f]{64})$", out, re.M)
        good = sum(1 for a in answers if a == expected)
        print("\n".join(out.splitlines()[:3] + ["..."] + out.splitlines()[-1:]), flush=True)
        print(f"demo: {good} of {opts.clones} answers are sha256('{REQUEST}\\n') = "
              f"{expected[:16]}...", flush=True)
        figures.append((f"invoke all {opts.clones} once", f"{seconds * 1000:.0f} ms"))
        if good != opts.clones:
            raise SystemExit("demo: FAILED: not every clone answered correctly")

        # 4. The balloons.
        if balloon:
            rss_before, pss_before, _ = wisp_memory_mib(state)
            _, out, seconds = sh(ctl + ["balloon", "--all", str(opts.balloon_mib)])
            time.sleep(2)  # the guests give their pages back
            rss_after, pss_after, _ = wisp_memory_mib(state)
            # An idle clone's guest memory is mostly the snapshot file's shared clean
            # pages, which the host holds once for all clones: inflating returns what the
            # guest dirtied after the restore, and costs the balloon driver's own pages.
            figures.append((f"balloon {opts.balloon_mib} MiB in every clone",
                            f"{seconds * 1000:.0f} ms; RSS of all {rss_before:.0f} -> "
                            f"{rss_after:.0f} MiB, PSS {pss_before:.0f} -> {pss_after:.0f} MiB"))
        else:
            print("demo: balloon step skipped: this wisp has no balloon API yet "
                  "(wisp --api-schema lists no /balloon; issue 11's virtio-balloon)",
                  flush=True)
            figures.append(("balloon", "skipped: no balloon API in this wisp"))

        # 5. Reap, and check that nothing is left.
        _, out, seconds = sh(ctl + ["reap", "--all"])
        figures.append((f"reap {opts.clones} clones", f"{seconds * 1000:.0f} ms"))
        left, _, count = wisp_memory_mib(state)
        if count or os.path.exists(state):
            raise SystemExit(f"demo: FAILED: {count} wisp processes or {state} left behind")
    finally:
        subprocess.run(ctl + ["reap", "--all"], capture_output=True)
        shutil.rmtree(snap, ignore_errors=True)

    print("\ndemo: figures" + (" (nested KVM under QEMU TCG)" if nested else ""))
    width = max(len(name) for name, _ in figures)
    for name, value in figures:
        print(f"  {name:<{width}}  {value}")
    print("demo: done: every clone reaped, nothing left behind")
    return 0


if __name__ == "__main__":
    sys.exit(main())
