#!/usr/bin/env python3
"""make bench-density: how many clones of one 128 MiB function-VM snapshot one machine
holds at once, and what each costs (README "Density benchmark").

Everything goes through wispctl, the reference control plane (README "wispctl"):
  1. `wispctl snapshot` boots the function VM (busybox initramfs, the function server on
     its serial console, a balloon of 0 MiB) and snapshots it once it is warm;
  2. `wispctl clone` restores clones from it (File backend: every clone maps the one
     memory file MAP_PRIVATE), first --sequential of them one at a time, then the rest
     --parallel at a time, up to --count or until wispctl stops (host full: memory,
     fork/pids, files; or a wisp that fails), and says why;
  3. the memory of all of them is measured: PSS of every wisp process
     (/proc/PID/smaps) plus the kernel's share (the growth of the kernel's own
     /proc/meminfo lines: slab, kernel stacks, page tables, secondary (KVM) page tables,
     vmalloc, per-cpu), and wisp's own private memory (the private pages of every mapping
     but guest RAM: what the VMM itself costs, not what the guest dirtied);
  4. `wispctl invoke --all` invokes every clone once (its answer is checked), the memory
     is measured again;
  5. `wispctl balloon --all` inflates every balloon; what that returns is measured;
  6. `wispctl reap --all`, checking that no wisp is left;
  7. the peer: --peer-count QEMU `-M microvm` VMs (KVM, 128 MiB, the same kernel,
     initramfs and command line) booted until warm and measured the same way, then the
     same number restored from a QEMU snapshot of one of them (`migrate` to a file, then
     `-incoming`); and as many wisp VMs booted (not restored) the same way.

wisp and wispctl run from copies in a tmpfs (inside ci/kvm-harness the build directory is
on a 9p share that is read again at every exec, some 60 ms of every clone's start).

The emulated machine of ci/kvm-harness has its own limit: its kernel has died (panicked,
or went silent) while a thousand clones started. The number of clones running is kept in
$WISP_HARNESS_PROGRESS as they start; when the harness starts the job again in a new
machine, the run says how many clones the dead machine held, asks for 80% of that, and
reports the machine's death as what stopped the first attempt.

Usage: tests/bench/bench_density.py [--count N] [--sequential N] [--parallel P]
           [--peer-count N] [--balloon-mib M] [--min-available MIB] [--json FILE]
Paths come from $WISP_BIN ($WISP_BIN's directory holds wispctl), $WISP_KERNEL_DIR and
$WISP_INITRD_BUSYBOX. Needs /dev/kvm (ci/with-kvm.sh). Exits 1 if a step failed (not when
the machine filled up before --count: that is a result), 2 on bad input.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_boot import describe_machine, stage_binaries, where_line  # noqa: E402
from bench_snapshot import Qmp, microvm_argv  # noqa: E402

MEM_MIB = 128
REQUEST = "hello from bench-density"
WARM_MARKER = b"wispctl-fn: warm"
# The kernel's own memory that grows with every VM (KVM's structures, page tables of
# the VMM processes and KVM's secondary ones, thread stacks, vmalloc'ed and per-cpu).
KERNEL_FIELDS = ("Slab", "KernelStack", "PageTables", "SecPageTables", "VmallocUsed",
                 "Percpu")


class BenchError(Exception):
    pass


# --- what the machine has and what the processes use -----------------------------------

def meminfo():
    """/proc/meminfo in KiB."""
    values = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            values[name] = int(rest.split()[0])
    return values


def kernel_kib(info):
    return sum(info.get(name, 0) for name in KERNEL_FIELDS)


def read_first(path, default="?"):
    try:
        with open(path) as f:
            return f.read().split("\n")[0].strip()
    except OSError:
        return default


def machine_limits():
    info = meminfo()
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    return {
        "mem_total_mib": info["MemTotal"] // 1024,
        "mem_available_mib": info["MemAvailable"] // 1024,
        "cpus": os.cpu_count(),
        "nofile_soft_hard": list(nofile),
        "nproc_soft": nproc[0],
        "pid_max": read_first("/proc/sys/kernel/pid_max"),
        "threads_max": read_first("/proc/sys/kernel/threads-max"),
        "file_max": read_first("/proc/sys/fs/file-max"),
        "overcommit_memory": read_first("/proc/sys/vm/overcommit_memory"),
        "thp": read_first("/sys/kernel/mm/transparent_hugepage/enabled"),
    }


def usage_now():
    """What the machine has in use now: open files, tasks, load."""
    file_nr = read_first("/proc/sys/fs/file-nr").split()
    loadavg = read_first("/proc/loadavg").split()
    return {"open_files": int(file_nr[0]) if file_nr else -1,
            "tasks": int(loadavg[3].split("/")[1]) if len(loadavg) > 3 else -1,
            "load1": float(loadavg[0]) if loadavg else -1.0,
            "mem_available_mib": meminfo()["MemAvailable"] // 1024}


def busy_cpu_seconds():
    """CPU time spent not idle, all CPUs together, since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def processes(exe_name, needle):
    """Pids whose command name is exe_name and whose command line contains needle."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != exe_name:
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle.encode() not in f.read():
                    continue
        except OSError:
            continue
        pids.append(int(pid))
    return pids


SMAPS_HEAD = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def smaps_memory(pid, guest_kib):
    """(rss, pss, own_private, guest_private, threads) in KiB for one process. Guest RAM
    is every mapping at least guest_kib large (wisp maps it in one piece per region: the
    memory file MAP_PRIVATE after a restore, anonymous after a boot; QEMU anonymous);
    own_private is the private pages (clean and dirty) of every other mapping: the
    VMM's own heap, stacks, page-table copies, its binary's written data."""
    rss = pss = own = guest = 0
    size = 0
    priv = 0
    in_guest = False

    def close_mapping():
        nonlocal own, guest
        if in_guest:
            guest += priv
        else:
            own += priv

    with open(f"/proc/{pid}/smaps") as f:
        started = False
        for line in f:
            if SMAPS_HEAD.match(line):
                if started:
                    close_mapping()
                started = True
                lo, hi = line.split()[0].split("-")
                size = (int(hi, 16) - int(lo, 16)) // 1024
                in_guest = size >= guest_kib
                priv = 0
                continue
            name, _, rest = line.partition(":")
            if name == "Rss":
                rss += int(rest.split()[0])
            elif name == "Pss":
                pss += int(rest.split()[0])
            elif name in ("Private_Clean", "Private_Dirty"):
                priv += int(rest.split()[0])
        if started:
            close_mapping()
    threads = len(os.listdir(f"/proc/{pid}/task"))
    return rss, pss, own, guest, threads


def own_private_breakdown(pid, guest_kib, top=6):
    """One process's largest private non-guest mappings: [(KiB, what)], what being the
    mapping's name ([heap], [stack], a file) or "anon SIZE" for a nameless one."""
    found = []
    name, size, priv, in_guest = None, 0, 0, False
    with open(f"/proc/{pid}/smaps") as f:
        lines = f.read().splitlines() + ["0-0 ---p 0 0:0 0"]
    for line in lines:
        if SMAPS_HEAD.match(line):
            if name is not None and not in_guest and priv:
                found.append((priv, name))
            parts = line.split(None, 5)
            lo, hi = parts[0].split("-")
            size = (int(hi, 16) - int(lo, 16)) // 1024
            in_guest = size >= guest_kib
            name = parts[5] if len(parts) > 5 else f"anon {size} KiB"
            priv = 0
        elif line.startswith(("Private_Clean:", "Private_Dirty:")):
            priv += int(line.split()[1])
    merged = {}
    for kib, what in found:
        merged[what] = merged.get(what, 0) + kib
    return sorted(((kib, what) for what, kib in merged.items()), reverse=True)[:top]


def measure(pids, guest_kib, baseline):
    """The memory of a set of VMM processes: sums (KiB) and per-VM figures (MiB)."""
    rss = pss = own = guest = threads = 0
    measured = 0
    for pid in pids:
        try:
            r, p, o, g, t = smaps_memory(pid, guest_kib)
        except OSError:
            continue
        rss, pss, own, guest, threads = rss + r, pss + p, own + o, guest + g, threads + t
        measured += 1
    info = meminfo()
    kernel = kernel_kib(info) - kernel_kib(baseline)
    available_drop = baseline["MemAvailable"] - info["MemAvailable"]
    n = max(measured, 1)
    return {
        "vms": measured,
        "threads": threads,
        "pss_total_mib": pss / 1024,
        "kernel_total_mib": kernel / 1024,
        "kernel_fields_mib": {name: (info.get(name, 0) - baseline.get(name, 0)) / 1024
                              for name in KERNEL_FIELDS},
        "host_per_vm_mib": (pss + kernel) / 1024 / n,
        "pss_per_vm_mib": pss / 1024 / n,
        "kernel_per_vm_mib": kernel / 1024 / n,
        "rss_per_vm_mib": rss / 1024 / n,
        "own_private_per_vm_mib": own / 1024 / n,
        "guest_private_per_vm_mib": guest / 1024 / n,
        "available_drop_per_vm_mib": available_drop / 1024 / n,
        "available_drop_total_mib": available_drop / 1024,
    }


def settle():
    """Lets the VMs finish what their start began and the kernel its per-cpu caches."""
    time.sleep(3)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")  # reclaimable slab only (dentries, inodes); keeps page cache
    except OSError:
        pass  # not root: the slab figure then includes some reclaimable objects
    time.sleep(1)


def baseline_now():
    """/proc/meminfo before VMs start, settled the same way as the measurements."""
    settle()
    return meminfo()


def describe_measurement(m):
    return (f"{m['vms']} VMs: host {m['host_per_vm_mib']:.2f} MiB/VM (PSS "
            f"{m['pss_per_vm_mib']:.2f} + kernel {m['kernel_per_vm_mib']:.2f}), RSS "
            f"{m['rss_per_vm_mib']:.2f}, VMM's own private {m['own_private_per_vm_mib']:.2f}, "
            f"guest private {m['guest_private_per_vm_mib']:.2f}, MemAvailable drop "
            f"{m['available_drop_per_vm_mib']:.2f} MiB/VM")


# --- wispctl --------------------------------------------------------------------------

class Wispctl:
    def __init__(self, wispctl, wisp, state):
        self.base = [wispctl, "--state-dir", state, "--wisp", wisp, "--timeout", "600"]

    def run(self, *args, check=True, echo=True, progress=False, running_before=0):
        """Runs wispctl; progress: its progress lines are shown as they come (so that a
        run the emulated machine does not survive still says how far it got), and the
        clones running (running_before + those started) go to the harness's progress
        file."""
        cmd = self.base + list(args)
        if echo:
            shown = " ".join(a if len(a) < 60 else "..." + a[-40:] for a in args)
            print(f"$ wispctl {shown}", flush=True)
        start = time.monotonic()
        if progress:
            with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) as proc:
                err = []
                for line in proc.stderr:
                    err.append(line)
                    if line.startswith("wispctl: clone:"):
                        print(f"  {line.strip()} (MemAvailable "
                              f"{meminfo()['MemAvailable'] // 1024} MiB)", flush=True)
                        started = re.search(r"clone: (\d+)/", line)
                        if started:
                            record_running(running_before + int(started.group(1)))
                out = proc.stdout.read()
            done = subprocess.CompletedProcess(cmd, proc.returncode, out, "".join(err))
        else:
            done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.monotonic() - start
        if check and done.returncode != 0:
            raise BenchError(f"wispctl {' '.join(args[:2])} failed with status "
                             f"{done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
        return done, seconds


def record_running(clones):
    path = os.environ.get("WISP_HARNESS_PROGRESS")
    if path:
        with open(path, "a") as f:
            f.write(f"density-running {clones}\n")
            f.flush()
            os.fsync(f.fileno())


def running_when_last_machine_died():
    """The fewest clones at which an earlier emulated machine of this job died (the most
    it had running), or 0; marks this machine's attempt in the progress file."""
    path = os.environ.get("WISP_HARNESS_PROGRESS")
    if not path:
        return 0
    deaths = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.startswith("density-attempt"):
                    deaths.append(0)
                elif line.startswith("density-running ") and deaths:
                    deaths[-1] = max(deaths[-1], int(line.split()[1]))
    with open(path, "a") as f:
        f.write("density-attempt\n")
    deaths = [n for n in deaths if n]
    return min(deaths) if deaths else 0


def clone_batch(ctl, snap, count, parallel, min_available, running_before=0):
    """Starts up to count clones; (started, seconds, rate, busy CPU seconds, stop reason
    or None)."""
    busy = busy_cpu_seconds()
    done, seconds = ctl.run("clone", snap, "--count", str(count), "--parallel",
                            str(parallel), "--min-available", str(min_available),
                            check=False, progress=True, running_before=running_before)
    summary = re.search(r"clone: (\d+) of (\d+) clones started .* in ([0-9.]+) s: "
                        r"([0-9.]+) clones/s", done.stdout)
    if not summary:
        raise BenchError(f"wispctl clone printed no summary (status {done.returncode}):\n"
                         f"{done.stdout[-2000:]}{done.stderr[-3000:]}")
    print(summary.group(0), flush=True)
    stopped = re.search(r"stopped after \d+ of \d+ clones: (.*); \d+ clones run",
                        done.stderr)
    reason = stopped.group(1) if stopped else None
    if done.returncode != 0 and not reason:
        raise BenchError(f"wispctl clone failed without saying why (status "
                         f"{done.returncode}):\n{done.stderr[-3000:]}")
    if reason:
        print(f"  wispctl stopped: {reason}", flush=True)
        # the wisp messages wispctl showed, if any
        shown = [line for line in done.stderr.splitlines()
                 if not line.startswith("wispctl: clone:")]
        if shown:
            print("  " + "\n  ".join(shown[-8:]), flush=True)
    busy = busy_cpu_seconds() - busy
    return (int(summary.group(1)), float(summary.group(3)), float(summary.group(4)), busy,
            reason)


def wait_until(predicate, timeout, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def balloon_settled(pids, guest_kib, samples, wait_s):
    """Waits until the sum of PSS stops falling (the guests have given their pages);
    returns the seconds waited."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < wait_s:
        time.sleep(2)
        now = measure(pids, guest_kib, samples)["pss_total_mib"]
        if last is not None and last - now < 1.0:
            break
        last = now
    return time.monotonic() - start


def bench_wisp(args, ctl, snap, results):
    guest_kib = MEM_MIB * 1024
    baseline = baseline_now()
    results["baseline_mem_available_mib"] = baseline["MemAvailable"] // 1024
    sequential = min(args.sequential, args.count)
    started, seconds, rate, busy, reason = clone_batch(ctl, snap, sequential, 1,
                                                       args.min_available)
    results["sequential"] = {"clones": started, "seconds": seconds, "per_s": rate,
                             "busy_cpu_s": busy}
    if not reason and args.count > sequential:
        more, seconds, rate, busy, reason = clone_batch(ctl, snap, args.count - sequential,
                                                        args.parallel, args.min_available,
                                                        started)
        started += more
        results["parallel"] = {"clones": more, "seconds": seconds, "per_s": rate,
                               "parallel": args.parallel, "busy_cpu_s": busy}
    if not reason and args.machine_died_at:
        reason = (f"the emulated machine: its kernel died with {args.machine_died_at} clones "
                  f"running in the first attempt; this attempt asked for {args.count}")
    results["stop_reason"] = reason
    results["usage_at_stop"] = usage_now()
    pids = processes("wisp", args.state)
    results["clones_running"] = len(pids)
    print(f"bench-density: {len(pids)} clones running at once (asked for {args.count})",
          flush=True)
    if not pids:
        raise BenchError("no clone is running")
    settle()
    idle = measure(pids, guest_kib, baseline)
    results["idle"] = idle
    print("  idle: " + describe_measurement(idle), flush=True)
    try:
        parts = own_private_breakdown(pids[0], guest_kib)
        results["own_private_breakdown_kib"] = parts
        print("  one clone's own private memory, largest: "
              + ", ".join(f"{what} {kib} KiB" for kib, what in parts), flush=True)
    except OSError:
        pass

    done, seconds = ctl.run("invoke", "--all", REQUEST, check=False)
    expected = hashlib.sha256((REQUEST + "\n").encode()).hexdigest()
    answers = re.findall(r"^c[0-9]+: ([0-9a-f]{64})$", done.stdout, re.M)
    good = sum(1 for a in answers if a == expected)
    results["invoke"] = {"clones": len(pids), "correct": good, "seconds": seconds}
    print(f"  invoke --all: {good} of {len(pids)} correct answers in {seconds:.2f} s",
          flush=True)
    if good != len(pids):
        print(done.stderr[-2000:], flush=True)
    settle()
    invoked = measure(pids, guest_kib, baseline)
    results["invoked"] = invoked
    print("  after one invocation each: " + describe_measurement(invoked), flush=True)

    done, seconds = ctl.run("balloon", "--all", str(args.balloon_mib), check=False)
    waited = balloon_settled(pids, guest_kib, baseline, 120)
    settle()
    ballooned = measure(pids, guest_kib, baseline)
    results["balloon"] = {
        "mib_each": args.balloon_mib, "patch_seconds": seconds, "waited_s": waited,
        "ok": done.returncode == 0,
        "pss_returned_total_mib": invoked["pss_total_mib"] - ballooned["pss_total_mib"],
        "available_returned_total_mib": (invoked["available_drop_total_mib"]
                                         - ballooned["available_drop_total_mib"]),
        "after": ballooned}
    print(f"  balloon {args.balloon_mib} MiB in all: PATCH {seconds:.2f} s, settled after "
          f"{waited:.0f} s more; " + describe_measurement(ballooned), flush=True)

    # Still alive after all that?
    done, _ = ctl.run("invoke", "--all", REQUEST, check=False)
    answers = re.findall(r"^c[0-9]+: ([0-9a-f]{64})$", done.stdout, re.M)
    results["invoke_after_balloon_correct"] = sum(1 for a in answers if a == expected)

    done, seconds = ctl.run("reap", "--all")
    results["reap_seconds"] = seconds
    left = processes("wisp", args.state)
    if left or os.path.exists(args.state):
        raise BenchError(f"reap left {len(left)} wisp processes or {args.state} behind")
    print(f"  reap --all: {seconds:.2f} s, nothing left", flush=True)
    if good != len(pids):
        raise BenchError(f"only {good} of {len(pids)} clones answered correctly")


# --- the peers: VMs booted (QEMU microvm, wisp) and restored (QEMU) ----------------------

def start_vms(argvs, consoles):
    procs = []
    for argv, console in zip(argvs, consoles):
        out = open(console, "wb")
        procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT))
        out.close()
    return procs


def wait_warm(procs, consoles, timeout):
    def warm(console):
        try:
            with open(console, "rb") as f:
                return WARM_MARKER in f.read()
        except OSError:
            return False

    def all_warm():
        for proc, console in zip(procs, consoles):
            if proc.poll() is not None:
                with open(console, "rb") as f:
                    tail = f.read()[-1500:].decode(errors="replace")
                raise BenchError(f"a VM ended (status {proc.returncode}) before its warm "
                                 f"marker:\n{tail}")
        return all(warm(c) for c in consoles)

    if not wait_until(all_warm, timeout):
        raise BenchError(f"not all {len(procs)} VMs printed their warm marker within "
                         f"{timeout} s")


def stop_vms(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    for proc in procs:
        proc.wait()


def qemu_argv(qemu, kernel, initrd, cmdline, qmp=None, incoming=None):
    return microvm_argv(qemu, kernel, initrd, MEM_MIB, cmdline, qmp=qmp, incoming=incoming)


def peer_booted(label, argvs, work, results, key):
    consoles = [os.path.join(work, f"{key}-{i}.console") for i in range(len(argvs))]
    baseline = baseline_now()
    procs = start_vms(argvs, consoles)
    try:
        start = time.monotonic()
        wait_warm(procs, consoles, 600)
        warm_s = time.monotonic() - start
        settle()
        m = measure([p.pid for p in procs], MEM_MIB * 1024, baseline)
        m["warm_seconds"] = warm_s
        results[key] = m
        print(f"  {label}, booted until warm ({warm_s:.1f} s): " + describe_measurement(m),
              flush=True)
    finally:
        stop_vms(procs)
    return consoles


def peer_qemu_restored(args, kernel, initrd, cmdline, work, results):
    """One QEMU booted and saved (migrate to a file), then peer_count restored from it."""
    qmp_path = os.path.join(work, "qemu-save.qmp")
    console = os.path.join(work, "qemu-save.console")
    state = os.path.join(work, "qemu.state")
    procs = start_vms([qemu_argv(args.qemu, kernel, initrd, cmdline, qmp=qmp_path)], [console])
    try:
        wait_warm(procs, [console], 600)
        qmp = Qmp(qmp_path, time.monotonic() + 60, procs[0])
        qmp.execute("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        qmp.execute("stop")
        qmp.execute("migrate", uri=f"exec:cat > {state}")
        if not wait_until(lambda: qmp.execute("query-migrate").get("status") == "completed",
                          300, 0.05):
            raise BenchError("QEMU's migrate to a file did not complete")
        qmp.close()
    finally:
        stop_vms(procs)
    qmps = [os.path.join(work, f"qemu-restored-{i}.qmp") for i in range(args.peer_count)]
    consoles = [os.path.join(work, f"qemu-restored-{i}.console")
                for i in range(args.peer_count)]
    baseline = baseline_now()
    start = time.monotonic()
    procs = start_vms([qemu_argv(args.qemu, kernel, initrd, cmdline, qmp=q,
                                 incoming=f"exec:cat {state}") for q in qmps], consoles)
    try:
        for q, proc in zip(qmps, procs):
            monitor = Qmp(q, time.monotonic() + 300, proc)
            if not wait_until(lambda: monitor.execute("query-status").get("status")
                              == "running", 300, 0.05):
                raise BenchError("a restored QEMU did not reach running")
            monitor.close()
        running_s = time.monotonic() - start
        settle()
        m = measure([p.pid for p in procs], MEM_MIB * 1024, baseline)
        m["running_seconds"] = running_s
        results["qemu_restored"] = m
        print(f"  QEMU microvm, restored (-incoming, all running after {running_s:.1f} s): "
              + describe_measurement(m), flush=True)
    finally:
        stop_vms(procs)
        os.unlink(state)


def bench_peers(args, kernel, initrd, cmdline, work, results):
    n = args.peer_count
    print(f"bench-density: the peers, {n} VMs of {MEM_MIB} MiB each, measured the same way",
          flush=True)
    if args.qemu:
        try:
            peer_booted("QEMU microvm", [qemu_argv(args.qemu, kernel, initrd, cmdline)] * n,
                        work, results, "qemu_booted")
            peer_qemu_restored(args, kernel, initrd, cmdline, work, results)
        except (BenchError, OSError) as err:
            results.setdefault("errors", []).append(f"QEMU peer: {err}")
            print(f"  FAILED QEMU peer: {err}", flush=True)
    else:
        print("  QEMU peer skipped: no qemu-system-x86_64", flush=True)
    wisp_argv = [args.wisp, "--kernel", kernel, "--initrd", initrd, "--vcpus", "1",
                 "--mem-mib", str(MEM_MIB), "--cmdline", cmdline]
    try:
        peer_booted("wisp", [wisp_argv] * n, work, results, "wisp_booted")
    except (BenchError, OSError) as err:
        results.setdefault("errors", []).append(f"wisp booted: {err}")
        print(f"  FAILED wisp booted: {err}", flush=True)


# --- report ---------------------------------------------------------------------------

def report(args, results):
    lim = results["limits"]
    idle, invoked = results.get("idle"), results.get("invoked")
    seq, par = results.get("sequential"), results.get("parallel")
    cpus = lim["cpus"] or 1
    rows = [("clones running at once", f"{results.get('clones_running', 0)} of "
             f"{args.count} asked ({lim['mem_total_mib']} MiB, {cpus} CPUs)")]
    if results.get("stop_reason"):
        u = results["usage_at_stop"]
        rows.append(("stopped by", f"{results['stop_reason']} (then: MemAvailable "
                     f"{u['mem_available_mib']} MiB, {u['tasks']} tasks, "
                     f"{u['open_files']} open files, load {u['load1']})"))
    else:
        rows.append(("stopped by", f"nothing: --count {args.count} reached (MemAvailable "
                     f"then {results['usage_at_stop']['mem_available_mib']} MiB)"))
    if idle:
        rows += [
            ("host memory per idle clone", f"{idle['host_per_vm_mib']:.2f} MiB (PSS "
             f"{idle['pss_per_vm_mib']:.2f} + kernel {idle['kernel_per_vm_mib']:.2f}); "
             f"MemAvailable drop {idle['available_drop_per_vm_mib']:.2f} MiB"),
            ("wisp's own private memory per clone",
             f"{idle['own_private_per_vm_mib']:.2f} MiB (guest pages copied on write: "
             f"{idle['guest_private_per_vm_mib']:.2f} MiB; RSS {idle['rss_per_vm_mib']:.2f})"),
            ("threads per clone", f"{idle['threads'] / max(idle['vms'], 1):.1f}")]
    def per_busy_core(batch):
        return batch["clones"] / batch["busy_cpu_s"] if batch["busy_cpu_s"] > 0 else 0.0
    if seq:
        rows.append(("clones started per second, sequential",
                     f"{seq['per_s']:.1f}/s ({seq['clones']} in {seq['seconds']:.2f} s, one "
                     f"at a time); {per_busy_core(seq):.1f} per busy CPU-second "
                     f"({seq['busy_cpu_s']:.1f} CPU-s)"))
    if par:
        rows.append((f"clones started per second, parallel {par['parallel']}",
                     f"{par['per_s']:.1f}/s ({par['clones']} in {par['seconds']:.2f} s), "
                     f"{par['per_s'] / cpus:.1f}/s per core ({cpus} cores); "
                     f"{per_busy_core(par):.1f} per busy CPU-second "
                     f"({par['busy_cpu_s']:.1f} CPU-s)"))
    if "invoke" in results:
        inv = results["invoke"]
        rows.append(("invoke every clone once", f"{inv['seconds']:.2f} s ({inv['correct']} "
                     f"of {inv['clones']} correct)"))
    if invoked:
        rows.append(("host memory per clone after one invocation",
                     f"{invoked['host_per_vm_mib']:.2f} MiB (wisp's own private "
                     f"{invoked['own_private_per_vm_mib']:.2f}, guest copied on write "
                     f"{invoked['guest_private_per_vm_mib']:.2f})"))
    if "balloon" in results:
        b = results["balloon"]
        n = max(results["clones_running"], 1)
        rows.append((f"returned by a {b['mib_each']} MiB balloon in each (negative: grew)",
                     f"PSS {b['pss_returned_total_mib']:.1f} MiB in all "
                     f"({b['pss_returned_total_mib'] / n:.2f} MiB/clone), MemAvailable "
                     f"{b['available_returned_total_mib']:.1f} MiB in all; host per clone "
                     f"then {b['after']['host_per_vm_mib']:.2f} MiB; "
                     f"{results.get('invoke_after_balloon_correct', 0)} still answer"))
    if "reap_seconds" in results:
        rows.append(("reap all", f"{results['reap_seconds']:.2f} s"))
    for key, label in (("qemu_booted", "QEMU microvm booted"),
                       ("qemu_restored", "QEMU microvm restored (-incoming)"),
                       ("wisp_booted", "wisp booted (not restored)")):
        m = results.get(key)
        if m:
            rows.append((f"peer: {label}, {m['vms']} VMs",
                         f"host {m['host_per_vm_mib']:.2f} MiB/VM (PSS "
                         f"{m['pss_per_vm_mib']:.2f} + kernel {m['kernel_per_vm_mib']:.2f}), "
                         f"VMM's own private {m['own_private_per_vm_mib']:.2f}, guest "
                         f"{m['guest_private_per_vm_mib']:.2f}"))
    print("\nbench-density: figures (" + results["where"] + ")")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for err in results.get("errors", []):
        print(f"  ERROR: {err.splitlines()[0]}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--peer-count", type=int, default=10)
    parser.add_argument("--balloon-mib", type=int, default=32)
    parser.add_argument("--min-available", type=int, default=256)
    parser.add_argument("--qemu", default="qemu-system-x86_64")
    parser.add_argument("--json")
    args = parser.parse_args()
    args.wisp = os.environ.get("WISP_BIN", "")
    args.wispctl = os.path.join(os.path.dirname(args.wisp), "wispctl")
    args.kernel = os.path.join(os.environ.get("WISP_KERNEL_DIR", ""), "vmlinux")
    args.initrd = os.environ.get("WISP_INITRD_BUSYBOX", "")
    problems = [f"{what} {path} is missing" for what, path in
                (("wisp", args.wisp), ("wispctl", args.wispctl), ("kernel", args.kernel),
                 ("busybox initramfs", args.initrd)) if not os.path.isfile(path)]
    if args.count < 1 or args.peer_count < 0 or args.sequential < 1:
        problems.append("--count and --sequential must be at least 1")
    if problems:
        for p in problems:
            print(f"bench-density: {p}", file=sys.stderr)
        sys.exit(2)
    args.qemu = shutil.which(args.qemu) or ""
    # Unix sockets need a real file system: under ci/kvm-harness /tmp/wisp-run is a tmpfs.
    base = "/tmp/wisp-run" if os.path.isdir("/tmp/wisp-run") else "/tmp"
    args.state = os.path.join(base, "density-state")
    args.snap = os.path.join(base, "density-snapshot")
    args.work = os.path.join(base, "density-work")
    return args


def main():
    args = parse_args()
    machine = describe_machine()
    results = {"where": where_line(machine), "limits": machine_limits(), "count": args.count}
    lim = results["limits"]
    print(f"bench-density: {args.count} clones of one {MEM_MIB} MiB snapshot through wispctl; "
          + results["where"], flush=True)
    print(f"bench-density: the machine: {lim['mem_total_mib']} MiB (available "
          f"{lim['mem_available_mib']}), {lim['cpus']} CPUs, open files "
          f"{lim['nofile_soft_hard']}, pid_max {lim['pid_max']}, threads-max "
          f"{lim['threads_max']}, overcommit_memory {lim['overcommit_memory']}, THP "
          f"{lim['thp']}", flush=True)
    # Every clone's wisp, and invoke --all's lock per clone, holds files.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    args.machine_died_at = running_when_last_machine_died()
    if args.machine_died_at:
        results["machine_died_at"] = args.machine_died_at
        args.count = max(1, args.machine_died_at * 4 // 5)
        print(f"bench-density: the emulated machine before this one died with "
              f"{args.machine_died_at} clones running; this one asks for {args.count}",
              flush=True)
    bindir = os.path.join(os.path.dirname(args.state), "density-bin")
    shutil.rmtree(bindir, ignore_errors=True)
    os.makedirs(bindir)
    stage_binaries(args, ("wisp", "wispctl"), bindir)
    ctl = Wispctl(args.wispctl, args.wisp, args.state)
    ctl.run("reap", "--all", check=False, echo=False)  # an earlier run's
    for path in (args.snap, args.work):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(args.work)
    status = 0
    try:
        done, _ = ctl.run("snapshot", "--kernel", args.kernel, "--initrd", args.initrd,
                          "--mem", str(MEM_MIB), "--balloon", "0", "-o", args.snap)
        print(done.stdout.strip(), flush=True)
        with open(os.path.join(args.snap, "wispctl.json")) as f:
            cmdline = json.load(f)["boot_args"]
        try:
            bench_wisp(args, ctl, args.snap, results)
        except (BenchError, OSError) as err:
            results.setdefault("errors", []).append(f"wisp clones: {err}")
            print(f"  FAILED wisp clones: {err}", flush=True)
            status = 1
        finally:
            ctl.run("reap", "--all", check=False, echo=False)
        if args.peer_count:
            bench_peers(args, args.kernel, args.initrd, cmdline, args.work, results)
    except BenchError as err:
        results.setdefault("errors", []).append(str(err))
        print(f"bench-density: FAILED: {err}", flush=True)
        status = 1
    finally:
        shutil.rmtree(args.snap, ignore_errors=True)
        shutil.rmtree(args.work, ignore_errors=True)
        shutil.rmtree(bindir, ignore_errors=True)
    if results.get("errors"):
        status = 1
    report(args, results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
