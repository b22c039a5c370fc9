#!/usr/bin/env python3
"""Boot benchmark: wisp against QEMU's microvm machine, same guest, same host, one run.

Boots the same PVH vmlinux and initramfs N times with each VMM, alternating: wisp as it
boots by default (ACPI tables, beside the MP table and the virtio_mmio.device= parameters
that this kernel without ACPI uses), wisp --no-acpi (no ACPI tables) and QEMU microvm
(acpi=off), and measures for every boot:

  time to marker   from just before spawning the VMM to reading the guest init's
                   "wisp-init: ready" line on the VMM's stdout (the guest's serial console)
  guest uptime     the guest's own CLOCK_BOOTTIME in that line: the part of the boot the
                   guest kernel saw, without the VMM's start-up before the first vCPU entry
  RSS              the VMM process's resident memory outside guest memory (the sum of Rss:
                   in /proc/PID/smaps over every mapping smaller than guest memory),
                   sampled 0.5 s after the marker while the guest idles (wisp.sleep=2)
  VM exits         KVM's exit count for the boot's VM, from its creation to its end

With --jailed (make bench-boot JAILED=1) three more rows boot the same guest configured
over the API socket (PUT /boot-source, /machine-config, /actions InstanceStart), the way
a control plane drives a jailed wisp: plain wisp with --no-seccomp, plain wisp (its
default seccomp filters), and wisp started by wisp-jailer with the filters (the kernel and
initrd hard-linked into the jail root once its socket is up; tests/bench/jailing.py).
Their time to marker counts from spawning wisp (or the jailer) and includes the requests;
the ratios to the --no-seccomp row are what the filters and the jail cost.

Needs /dev/kvm (run it through ci/with-kvm.sh or ci/kvm-harness on a host without one) and,
for VM exits, a readable debugfs (root); without it the exits are reported as n/a.

Usage:
  tests/bench/bench_boot.py [--runs N] [--wisp PATH] [--kernel VMLINUX] [--initrd PATH]
                            [--mem-mib 128] [--qemu qemu-system-x86_64] [--timeout S]
                            [--json FILE] [--jailed [--jailer PATH]]
The paths default to $WISP_BIN, $WISP_KERNEL (else $WISP_KERNEL_DIR/vmlinux) and
$WISP_INITRD, as `make bench` passes them. Exits 1 if any boot failed, 2 on bad input.
"""
from __future__ import annotations  # `int | None` in dataclasses before Python 3.10

import argparse
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jailing  # noqa: E402

# The kernel parses `reboot=` itself; the rest is wisp's default command line plus `quiet`
# (serial output is slow, and more so emulated) and the init's idle time for the RSS sample.
CMDLINE = ("console=ttyS0 reboot={reboot} panic=-1 i8042.noaux i8042.nomux "
           "i8042.nopnp i8042.dumbkbd quiet wisp.sleep=2")
# wisp ends on the i8042 reset of reboot=k; microvm has no i8042, so QEMU (-no-reboot)
# gets the triple fault of reboot=t instead.
WISP_REBOOT, QEMU_REBOOT = "k", "t"
# Only a complete line: the uptime's digits may still be on their way over the serial port.
READY = re.compile(rb"wisp-init: ready uptime=([0-9]+(?:\.[0-9]+)?) cpus=([0-9]+)\r?\n")
RSS_SAMPLE_DELAY = 0.5      # seconds after the marker; well inside wisp.sleep=2
POLL_INTERVAL = 0.02        # seconds between reads of the pipes and the VM's exit counter
KVM_DEBUGFS = "/sys/kernel/debug/kvm"
# wisp both ways: its default (ACPI tables, plus the MP table and virtio_mmio.device=
# parameters that a kernel without ACPI such as this one uses) and --no-acpi (no tables).
VMMS = ("wisp", "wisp-no-acpi", "qemu")
WISP_VMMS = ("wisp", "wisp-no-acpi")
# --jailed: booted over the API; each ratio below is to API_BASE.
API_VMMS = ("wisp-api-no-seccomp", "wisp-api", "wisp-jailed")
API_BASE = "wisp-api-no-seccomp"
LABELS = {"wisp": "wisp", "wisp-no-acpi": "wisp --no-acpi", "qemu": "QEMU microvm",
          "wisp-api-no-seccomp": "API --no-seccomp", "wisp-api": "API, filters",
          "wisp-jailed": "API, jailed"}


# --- measuring one boot ---------------------------------------------------------------

class VmExitCounter:
    """Follows one process's VM in KVM's debugfs: /sys/kernel/debug/kvm/<pid>-<fd>/exits.

    The top-level /sys/kernel/debug/kvm/exits cannot be used as a before/after counter: it
    sums over the VMs alive when it is read, so a VM's exits vanish with it. Hence the
    per-VM file is polled while the VM lives and the last value read is the VM's total; it
    misses at most the exits of the last poll interval, the guest's final reset.
    """

    def __init__(self, pid):
        self.pid = pid
        self.path = None
        self.last = None

    @staticmethod
    def available():
        return os.access(os.path.join(KVM_DEBUGFS, "exits"), os.R_OK)

    def _find_vm_dir(self):
        # KVM names the directory after the thread that created the VM: any of the VMM's.
        try:
            tids = set(os.listdir(f"/proc/{self.pid}/task"))
            for name in os.listdir(KVM_DEBUGFS):
                if name.split("-", 1)[0] in tids:
                    return os.path.join(KVM_DEBUGFS, name, "exits")
        except OSError:
            pass
        return None

    def sample(self):
        if self.path is None:
            self.path = self._find_vm_dir()
            if self.path is None:
                return
        try:
            with open(self.path) as f:
                self.last = int(f.read())
        except (OSError, ValueError):
            pass  # the VM is gone (its last value stays) or was never readable


def smaps_rss_kib(pid, guest_bytes):
    """(RSS outside guest memory, RSS of guest memory, guest mappings found), in KiB.

    Guest memory is any mapping at least as large as the guest's RAM: with one memory
    region (guests below the 32-bit MMIO gap) nothing else in a VMM is that large.
    """
    outside = guest = mappings = 0
    in_guest = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):  # a mapping's header line
                start, end = (int(x, 16) for x in first.split("-"))
                in_guest = end - start >= guest_bytes
                mappings += in_guest
            elif first == "Rss:":
                kib = int(line.split()[1])
                if in_guest:
                    guest += kib
                else:
                    outside += kib
    return outside, guest, mappings


@dataclass
class Boot:
    vmm: str
    index: int
    error: str = ""
    exit_status: int | None = None
    ms_to_marker: float | None = None
    guest_uptime_ms: float | None = None
    rss_kib: int | None = None           # outside guest memory
    guest_rss_kib: int | None = None     # guest memory touched so far, for a sanity check
    exits: int | None = None             # the VM's whole life
    exits_at_marker: int | None = None
    seconds_total: float | None = None   # spawn to the process's end
    console_tail: str = field(default="", repr=False)
    stderr_tail: str = field(default="", repr=False)

    @property
    def ok(self):
        return not self.error


class VmmProcess:
    """A running VMM whose stdout and stderr are drained as they come, never buffered."""

    def __init__(self, argv):
        self.start = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self.exits = VmExitCounter(self.proc.pid)
        self.output = {self.proc.stdout.fileno(): bytearray(),
                       self.proc.stderr.fileno(): bytearray()}
        self.open_fds = set(self.output)
        self.searched = 0  # how much of stdout the marker search has been through

    @property
    def console(self):
        return self.output[self.proc.stdout.fileno()]

    @property
    def stderr(self):
        return self.output[self.proc.stderr.fileno()]

    def pump(self, until, stop=lambda: False):
        """Reads output and samples the exit counter until `until`, EOF on both pipes
        (the VMM has ended or closed them) or stop() holds. Returns stop()'s last value."""
        next_sample = 0.0
        while self.open_fds:
            # stop() first: the marker's time is taken as soon as pump returns.
            if stop():
                return True
            now = time.monotonic()
            if now >= next_sample:
                self.exits.sample()
                next_sample = now + POLL_INTERVAL
            if now >= until:
                return False
            ready, _, _ = select.select(list(self.open_fds), [], [],
                                        min(until, next_sample) - now)
            for fd in ready:
                data = os.read(fd, 65536)
                if data:
                    self.output[fd] += data
                else:
                    self.open_fds.discard(fd)
        return stop()

    def find_marker(self):
        """The ready marker's match once its line is complete; remembers where it looked."""
        match = READY.search(self.console, max(0, self.searched - 100))
        self.searched = len(self.console)
        return match

    def wait(self, until):
        """The exit status, or None if the process is still running at `until`."""
        try:
            return self.proc.wait(timeout=max(0.0, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def tail(data, lines):
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def boot_once(vmm, index, argv, guest_bytes, timeout, configure=None):
    """Boots once; a Boot with error set if anything did not go as it should.
    configure(process, deadline), if given, starts the VM once the process runs."""
    boot = Boot(vmm, index)
    process = VmmProcess(argv)
    deadline = process.start + timeout
    marker = None

    def marker_seen():
        nonlocal marker
        marker = marker or process.find_marker()
        return marker is not None

    try:
        if configure:
            try:
                configure(process, deadline)
            except (OSError, RuntimeError) as err:
                boot.error = f"configuring over the API: {err}"
                return boot
        if not process.pump(deadline, marker_seen):
            timed_out = time.monotonic() >= deadline
            boot.error = ("no ready marker within %d s" % timeout if timed_out
                          else "the VMM ended before the ready marker")
            return boot
        marker_time = time.monotonic()
        boot.ms_to_marker = round((marker_time - process.start) * 1000, 1)
        boot.guest_uptime_ms = float(marker.group(1)) * 1000
        boot.exits_at_marker = process.exits.last

        process.pump(min(deadline, marker_time + RSS_SAMPLE_DELAY))
        try:
            outside, guest, mappings = smaps_rss_kib(process.proc.pid, guest_bytes)
            if mappings == 0:
                boot.error = "no mapping as large as guest memory in smaps"
            boot.rss_kib, boot.guest_rss_kib = outside, guest
        except OSError as err:
            boot.error = f"cannot read smaps {RSS_SAMPLE_DELAY} s after the marker: {err}"

        process.pump(deadline)  # until the VMM closes its output, i.e. ends
        boot.exit_status = process.wait(deadline)
        if boot.exit_status is None:
            boot.error = boot.error or f"did not end within {timeout} s"
        elif boot.exit_status != 0:
            boot.error = boot.error or f"exit status {boot.exit_status}"
        boot.seconds_total = round(time.monotonic() - process.start, 3)
        boot.exits = process.exits.last
        return boot
    finally:
        process.kill()
        if boot.exit_status is None:
            boot.exit_status = process.proc.returncode
        process.pump(time.monotonic() + 2)  # what is left in the pipes, for the report
        boot.console_tail = tail(process.console, 15)
        boot.stderr_tail = tail(process.stderr, 10)


def stage_guest_images(args, workdir):
    """Copies of the kernel and initrd in a tmpfs, so that both VMMs read them from memory:
    inside ci/kvm-harness they live on a 9p share, whose slow reads would be in the times.
    wisp runs from a copy there too (the share is read again at every exec, some 60 ms;
    a jailed wisp runs from the jailer's copy in its jail anyway)."""
    kernel, initrd = os.path.join(workdir, "vmlinux"), os.path.join(workdir, "initrd")
    shutil.copyfile(args.kernel, kernel)
    shutil.copyfile(args.initrd, initrd)
    stage_binaries(args, ("wisp",), workdir)
    return kernel, initrd


def stage_binaries(args, names, directory):
    """args.NAME (a program path) for each name becomes a copy in `directory` (a tmpfs):
    inside ci/kvm-harness the build directory is a 9p share read again at every exec."""
    for name in names:
        copy = os.path.join(directory, os.path.basename(getattr(args, name)))
        shutil.copy2(getattr(args, name), copy)
        setattr(args, name, copy)


def wisp_argv(args, kernel, initrd, acpi=True):
    return [args.wisp, "--kernel", kernel, "--initrd", initrd,
            "--cmdline", CMDLINE.format(reboot=WISP_REBOOT), "--vcpus", "1",
            "--mem-mib", str(args.mem_mib)] + ([] if acpi else ["--no-acpi"])


def api_sock_wait(process, path, deadline):
    while not os.path.exists(path):
        if time.monotonic() > deadline or process.proc.poll() is not None:
            raise RuntimeError(f"no API socket {path} (status {process.proc.poll()})")
        process.pump(time.monotonic() + 0.002)


def api_boot(process, sock, kernel, initrd, mem_mib, deadline):
    """The three requests a control plane sends to boot a configured VM."""
    from bench_snapshot import http  # one HTTP client for the benchmarks
    api_sock_wait(process, sock, deadline)
    for method, path, body in (
            ("PUT", "/boot-source", {"kernel_image_path": kernel, "initrd_path": initrd,
                                     "boot_args": CMDLINE.format(reboot=WISP_REBOOT)}),
            ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": mem_mib}),
            ("PUT", "/actions", {"action_type": "InstanceStart"})):
        status, text = http(sock, method, path, body)
        if status not in (200, 204):
            raise RuntimeError(f"{method} {path} answered {status}: {text}")


def api_boot_once(vmm, index, args, kernel, initrd, guest_bytes, workdir, jails):
    """One --jailed row's boot: plain wisp over its API socket (with or without its
    filters), or wisp in a new jail."""
    if vmm == "wisp-jailed":
        jail = jails.new()

        def configure(process, deadline):
            # The jail root is there once the socket is: wait, link the files in (api_boot's
            # own wait then returns at once).
            api_sock_wait(process, jail.socket, deadline)
            api_boot(process, jail.socket, jail.put(kernel, "vmlinux"),
                     jail.put(initrd, "initrd"), args.mem_mib, deadline)
        boot = boot_once(vmm, index, jail.argv(), guest_bytes, args.timeout, configure)
        try:
            jail.clean_up()
        except OSError as err:
            boot.error = boot.error or str(err)
        return boot
    sock = os.path.join(workdir, "api.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    argv = [args.wisp, "--api-sock", sock] + (["--no-seccomp"] if vmm == API_BASE else [])
    return boot_once(vmm, index, argv, guest_bytes, args.timeout,
                     lambda process, deadline: api_boot(process, sock, kernel, initrd,
                                                        args.mem_mib, deadline))


def qemu_argv(args, kernel, initrd):
    return [args.qemu, "-M", "microvm,acpi=off", "-accel", "kvm", "-cpu", "host",
            "-m", str(args.mem_mib), "-smp", "1", "-nodefaults", "-no-user-config",
            "-nographic", "-no-reboot", "-serial", "stdio", "-display", "none",
            "-kernel", kernel, "-initrd", initrd,
            "-append", CMDLINE.format(reboot=QEMU_REBOOT)]


# --- summarising ----------------------------------------------------------------------

FIGURES = (  # key in Boot, label, how to format a median
    ("ms_to_marker", "time to marker", lambda v: f"{v:.0f} ms"),
    ("guest_uptime_ms", "guest uptime at marker", lambda v: f"{v:.0f} ms"),
    ("rss_kib", "RSS outside guest memory",
     lambda v: f"{v / 1024:.1f} MiB" if v >= 10240 else f"{v:.0f} KiB"),
    ("exits", "VM exits", lambda v: f"{v:.0f}"),
)


def summarise(boots):
    """{figure: {median, min, max, n}} over the boots that succeeded and have the figure."""
    summary = {}
    for key, _, _ in FIGURES:
        values = [getattr(b, key) for b in boots if b.ok and getattr(b, key) is not None]
        summary[key] = ({"median": round(statistics.median(values), 1), "min": min(values),
                         "max": max(values), "n": len(values)} if values else None)
    return summary


def ratios(summaries, vmm="wisp", base="qemu"):
    """Each figure's median under `vmm` over `base`'s."""
    out = {}
    for key, _, _ in FIGURES:
        wisp, other = summaries[vmm][key], summaries[base][key]
        out[key] = (round(wisp["median"] / other["median"], 3)
                    if wisp and other and other["median"] else None)
    return out


def ratio_columns(jailed):
    """(label, vmm, base) of each ratio column."""
    columns = [(f"{LABELS[v]}/QEMU", v, "qemu") for v in WISP_VMMS]
    if jailed:
        columns += [("filters/no-seccomp", "wisp-api", API_BASE),
                    ("jailed/no-seccomp", "wisp-jailed", API_BASE)]
    return columns


def describe_machine():
    """What this run ran on, so that the figures are read for what they are."""
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    except OSError:
        cpuinfo = ""
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.M)
    return {
        "in_harness_env": os.environ.get("WISP_IN_HARNESS") == "1",
        "cpu_hypervisor_flag": bool(flags and "hypervisor" in flags.group(1).split()),
        "cpu_model": model.group(1).strip() if model else "unknown",
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
    }


def where_line(machine):
    if machine["in_harness_env"]:
        where = "nested: inside ci/kvm-harness (WISP_IN_HARNESS=1), KVM under QEMU TCG"
    elif machine["cpu_hypervisor_flag"]:
        where = "in a VM: the CPU has the hypervisor flag (nested KVM, e.g. ci/kvm-harness)"
    else:
        where = "directly on this host: no hypervisor flag, WISP_IN_HARNESS unset"
    return (f"{where}; {machine['cpus']} CPUs ({machine['cpu_model']}), "
            f"kernel {machine['kernel']}")


def print_boot(boot):
    def figure(value, fmt):
        return fmt(value) if value is not None else "n/a"
    line = (f"  {LABELS[boot.vmm]:<16} #{boot.index + 1}: marker "
            f"{figure(boot.ms_to_marker, lambda v: f'{v:.0f} ms')}, uptime "
            f"{figure(boot.guest_uptime_ms, lambda v: f'{v:.0f} ms')}, RSS "
            f"{figure(boot.rss_kib, lambda v: f'{v:.0f} KiB')} (+ guest "
            f"{figure(boot.guest_rss_kib, lambda v: f'{v / 1024:.1f} MiB')}), exits "
            f"{figure(boot.exits, str)}")
    if not boot.ok:
        line += f"  FAILED: {boot.error}"
    print(line, flush=True)


def print_failure(boot):
    print(f"\n{LABELS[boot.vmm]} boot #{boot.index + 1} failed: {boot.error} "
          f"(exit status {boot.exit_status})")
    print("--- console (tail)\n" + (boot.console_tail or "(nothing)"))
    print("--- stderr (tail)\n" + (boot.stderr_tail or "(nothing)"))


def print_table(summaries, ratio, runs, exits_available):
    def cell(stats, key, fmt):
        if stats is None:
            return "-"
        if key == "ms_to_marker":  # the headline figure: show its spread too
            return f"{fmt(stats['median'])} ({stats['min']:.0f}-{stats['max']:.0f})"
        return fmt(stats["median"])

    vmms = list(summaries)
    head = ("",) + tuple(LABELS[v] for v in vmms) + tuple(ratio)
    rows = [head]
    for key, label, fmt in FIGURES:
        rows.append((label,) + tuple(cell(summaries[v][key], key, fmt) for v in vmms)
                    + tuple(f"{r[key]:.2f}" if r[key] is not None else "n/a"
                            for r in ratio.values()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    print(f"\nMedians over the successful boots of {runs} per VMM "
          "(time to marker: median (min-max)):")
    for row in rows:
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))))
    print("  time to marker: VMM spawn to the init's ready line read from the VMM's stdout")
    if API_BASE in summaries:
        print("  API rows: spawn to the marker, through the API socket's three requests "
              "(and, jailed, the jailer's set-up and the files' links)")
    print("  guest uptime: the guest's CLOCK_BOOTTIME in that line")
    print(f"  RSS: /proc/PID/smaps Rss, {RSS_SAMPLE_DELAY} s after the marker, "
          "without guest memory")
    if exits_available:
        print("  VM exits: the VM's debugfs exit counter, creation to end of the VM")
    else:
        print(f"  VM exits: n/a ({KVM_DEBUGFS} is not readable: not root or no debugfs)")


# --- main -----------------------------------------------------------------------------

def parse_args():
    kernel_dir = os.environ.get("WISP_KERNEL_DIR")
    default_kernel = os.environ.get("WISP_KERNEL") or (
        os.path.join(kernel_dir, "vmlinux") if kernel_dir else None)
    parser = argparse.ArgumentParser(
        description="Boot benchmark: wisp against QEMU microvm on the same guest.")
    parser.add_argument("--runs", type=int, default=10, help="boots per VMM (default 10)")
    parser.add_argument("--wisp", default=os.environ.get("WISP_BIN"),
                        help="wisp binary (default $WISP_BIN)")
    parser.add_argument("--kernel", default=default_kernel,
                        help="PVH vmlinux (default $WISP_KERNEL, else $WISP_KERNEL_DIR/vmlinux)")
    parser.add_argument("--initrd", default=os.environ.get("WISP_INITRD"),
                        help="initramfs with wisp's init (default $WISP_INITRD)")
    parser.add_argument("--mem-mib", type=int, default=128, help="guest memory (default 128)")
    parser.add_argument("--qemu", default="qemu-system-x86_64", help="QEMU binary")
    parser.add_argument("--timeout", type=float, default=120,
                        help="seconds per boot before it counts as failed (default 120)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--jailed", action="store_true",
                        help="also boot over the API: --no-seccomp, filters, and jailed")
    parser.add_argument("--jailer", default=os.environ.get("WISP_JAILER"),
                        help="wisp-jailer binary (default $WISP_JAILER)")
    args = parser.parse_args()
    problems = check_args(args)
    if problems:
        for problem in problems:
            print(f"bench_boot: {problem}", file=sys.stderr)
        sys.exit(2)
    return args


def check_args(args):
    problems = []
    for name, env in (("wisp", "WISP_BIN"), ("kernel", "WISP_KERNEL"),
                      ("initrd", "WISP_INITRD")):
        path = getattr(args, name)
        if not path:
            problems.append(f"--{name} not given and ${env} not set")
        elif not os.path.isfile(path):
            problems.append(f"--{name} {path}: no such file")
    if args.runs < 1:
        problems.append("--runs must be at least 1")
    qemu = shutil.which(args.qemu)
    if not qemu:
        problems.append(f"{args.qemu} not found (install qemu-system-x86)")
    else:
        args.qemu = qemu
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        problems.append("/dev/kvm is not usable here: run through ci/with-kvm.sh "
                        "or ci/kvm-harness")
    if args.jailed:
        problems += jailing.problems(args.jailer)
    return problems


def write_json(path, args, machine, boots, summaries, ratio):
    report = {
        "note": "one run on one machine; compare the ratios, not the absolute figures",
        "machine": machine,
        "config": {"runs": args.runs, "mem_mib": args.mem_mib, "vcpus": 1,
                   "kernel": args.kernel, "initrd": args.initrd, "wisp": args.wisp,
                   "qemu": args.qemu, "cmdline": CMDLINE.format(reboot=WISP_REBOOT),
                   "rss_sample_delay_s": RSS_SAMPLE_DELAY},
        "summary": summaries,
        "ratios": ratio,
        "failed_boots": sum(not b.ok for b in boots),
        "boots": [{k: v for k, v in asdict(b).items() if not k.endswith("_tail")}
                  for b in boots],
    }
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


def main():
    args = parse_args()
    machine = describe_machine()
    exits_available = VmExitCounter.available()
    guest_bytes = args.mem_mib << 20
    print(f"Boot benchmark, wisp (ACPI, and --no-acpi) vs QEMU microvm: boots per VMM: "
          f"{args.runs}, alternating; "
          f"1 vCPU, {args.mem_mib} MiB; figures from one run on this machine")
    print(f"  where: {where_line(machine)}")
    print(f"  guest: {args.kernel} + {args.initrd}")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="wisp-bench-", dir=shm) as workdir:
        kernel, initrd = stage_guest_images(args, workdir)
        print(f"         (both VMMs read copies of them in {workdir})", flush=True)
        jails = jailing.Jails(args.jailer, args.wisp, workdir) if args.jailed else None
        try:
            boots = run_boots(args, kernel, initrd, guest_bytes, workdir, jails)
        finally:
            if jails:
                jails.remove_parent()
    report(args, machine, boots, exits_available)
    return 1 if any(not b.ok for b in boots) else 0


def run_boots(args, kernel, initrd, guest_bytes, workdir, jails):
    """args.runs boots per VMM, alternating, so that drift on the host hits all alike."""
    argv = {"wisp": wisp_argv(args, kernel, initrd),
            "wisp-no-acpi": wisp_argv(args, kernel, initrd, acpi=False),
            "qemu": qemu_argv(args, kernel, initrd)}
    boots = []
    for index in range(args.runs):
        for vmm in VMMS + (API_VMMS if args.jailed else ()):
            if vmm in API_VMMS:
                boot = api_boot_once(vmm, index, args, kernel, initrd, guest_bytes, workdir,
                                     jails)
            else:
                boot = boot_once(vmm, index, argv[vmm], guest_bytes, args.timeout)
            print_boot(boot)
            boots.append(boot)
    return boots


def report(args, machine, boots, exits_available):
    vmms = VMMS + (API_VMMS if args.jailed else ())
    summaries = {vmm: summarise([b for b in boots if b.vmm == vmm]) for vmm in vmms}
    ratio = {label: ratios(summaries, vmm, base)
             for label, vmm, base in ratio_columns(args.jailed)}
    print_table(summaries, ratio, args.runs, exits_available)
    failed = [b for b in boots if not b.ok]
    for boot in failed:
        print_failure(boot)
    if args.json:
        write_json(args.json, args, machine, boots, summaries, ratio)
        print(f"\nFigures written to {args.json}")
    if failed:
        # On stdout, in order with the rest; the exit status says it to make.
        print(f"\n{len(failed)} of {len(boots)} boots FAILED (see above)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
