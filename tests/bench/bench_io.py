#!/usr/bin/env python3
"""I/O benchmark: virtio-blk and virtio-net throughput, wisp against QEMU's microvm machine,
same guest, same host, same images and TAP setup.

Each boot (one per VMM and run, alternating wisp and QEMU) starts the same vmlinux on an
ext4 root image (busybox, wisp's init at /sbin/init, a small static helper at /bin/iobench)
plus a raw data disk, with a TAP device in a network namespace made by this script, and
runs one guest shell command (after ` -- ` on the kernel command line) that measures:

  blk write/read 1M, 4K   sequential O_DIRECT writes then reads of /dev/vdb (the data disk)
                          in 1 MiB and in 4 KiB requests, timed in the guest
                          (CLOCK_MONOTONIC, tests/bench/guest_iobench.c); a write's time
                          includes its closing fsync (a virtio-blk flush)
  net guest->host         busybox `head -c N /dev/zero | nc HOST PORT`; timed by the host's
                          receiver from the first to the last byte
  net host->guest         the host sends N bytes to busybox `nc HOST PORT >/dev/null`; timed
                          by the host from the first byte sent to the guest's close (the
                          guest's nc closes once it has read the host's end of stream)

Both VMMs get 1 vCPU and 512 MiB. Their disk images sit on an ext4 file system loop-mounted
from /dev/shm (memory, and O_DIRECT works there, unlike on tmpfs or 9p): wisp opens them as
direct=on drives (O_DIRECT, io_uring engine), QEMU with cache=none,aio=io_uring.
Neither uses vhost. QEMU's microvm appends its virtio-mmio devices to the end of the kernel
command line, where the kernel would hand them to init (they would follow ` -- `), so QEMU
runs with auto-kernel-cmdline=off and the same virtio_mmio.device= parameters before
` -- `, learnt by a short probe boot of QEMU with the same devices.

Needs root (network namespace, loop mount), /dev/kvm (run it through ci/with-kvm.sh), a C
compiler with a static libc (for the guest helper), mkfs.ext4, ip, and a static
/bin/busybox. Under ci/kvm-harness everything runs emulated: keep the sizes small and
compare the ratios, not the absolute figures.

Usage:
  tests/bench/bench_io.py [--disk-mib 256] [--disk-4k-mib 32] [--net-mib 256] [--runs 1]
                          [--wisp PATH] [--kernel VMLINUX] [--init PATH] [--qemu BINARY]
                          [--timeout S] [--json FILE]
--disk-4k-mib defaults to an eighth of --disk-mib: under ci/kvm-harness a 4 KiB request
costs milliseconds (about 1 MB/s), so 256 MiB of them would take most of an hour.
The paths default to $WISP_BIN, $WISP_KERNEL (else $WISP_KERNEL_DIR/vmlinux) and $WISP_INIT.
Exits 1 if a VMM did not produce every figure, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ next to the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_boot import describe_machine, tail, where_line  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
HELPER_SOURCE = os.path.join(HERE, "guest_iobench.c")
MEM_MIB = 512
# wisp's default command line plus `quiet` (serial output is slow, more so emulated), as in
# the boot benchmark; wisp adds root=/dev/vda rw and its virtio_mmio.device= parameters
# itself (vm_build_cmdline), QEMU gets them written out.
CMDLINE = ("console=ttyS0 reboot={reboot} panic=-1 i8042.noaux i8042.nomux "
           "i8042.nopnp i8042.dumbkbd quiet")
WISP_REBOOT, QEMU_REBOOT = "k", "t"  # see bench_boot.py
QEMU_ROOT = " root=/dev/vda rw"
CMDLINE_MAX = 2047  # Linux's COMMAND_LINE_SIZE on x86, without the NUL
NETNS = f"wisp-bench-io-{os.getpid()}"
TAP = "wbiotap0"
HOST_IP, GUEST_IP = "172.30.78.1", "172.30.78.2"
G2H_PORT, H2G_PORT = 7101, 7102
MIB = 1 << 20
VMMS = ("wisp", "qemu")
LABELS = {"wisp": "wisp", "qemu": "QEMU microvm"}
BUSYBOX_APPLETS = ["sh", "cat", "echo", "head", "nc", "ip", "sleep", "[", "test", "wc", "dd",
                   "sync", "mount", "ls"]

FIGURES = (  # key, label; every figure is a rate in MB/s (10^6 bytes per second)
    ("blk_write_1m", "blk seq write 1 MiB"),
    ("blk_read_1m", "blk seq read 1 MiB"),
    ("blk_write_4k", "blk seq write 4 KiB"),
    ("blk_read_4k", "blk seq read 4 KiB"),
    ("net_g2h", "TCP guest->host"),
    ("net_h2g", "TCP host->guest"),
)
BLK_LINE = re.compile(r"BENCH blk op=(write|read) bs=([0-9]+) bytes=([0-9]+) ns=([0-9]+) "
                      r"fsync_ns=([0-9]+)")
NET_LINE = re.compile(r"BENCH net dir=(g2h|h2g) rc=([0-9]+) t0=([0-9]+) t1=([0-9]+)")
ERROR_LINE = re.compile(r"BENCH-ERROR [^\r\n]*")
READY = re.compile(r"wisp-init: ready uptime=([0-9.]+)")
COMMAND_STATUS = re.compile(r"wisp-init: command exit status ([0-9]+)")


# --- the guest ------------------------------------------------------------------------

def guest_command(args, data_sectors):
    """The one shell command the guest runs. The kernel only knows double quotes, so the
    command has none; every result is a BENCH line on the console."""
    io = "/bin/iobench"
    steps = [
        # Never write to anything but the data disk: check that vdb is the size it should be.
        f"s=$(cat /sys/block/vdb/size); [ $s = {data_sectors} ] || "
        f"{{ echo BENCH-ERROR /dev/vdb has $s sectors, the data disk {data_sectors}; exit 1; }}",
    ]
    for block, mib in ((MIB, args.disk_mib), (4096, args.disk_4k_mib)):
        for op in ("write", "read"):
            steps.append(f"{io} blk {op} /dev/vdb {block} {mib * MIB}")
    net_bytes = args.net_mib * MIB
    steps += [
        f"ip addr add {GUEST_IP}/24 dev eth0", "ip link set eth0 up",
        f"t0=$({io} now); head -c {net_bytes} /dev/zero | nc {HOST_IP} {G2H_PORT}; r=$?; "
        f"t1=$({io} now); echo BENCH net dir=g2h rc=$r t0=$t0 t1=$t1",
        f"t0=$({io} now); nc {HOST_IP} {H2G_PORT} </dev/null >/dev/null; r=$?; "
        f"t1=$({io} now); echo BENCH net dir=h2g rc=$r t0=$t0 t1=$t1",
    ]
    command = "; ".join(steps)
    assert '"' not in command
    return f' -- /bin/sh -c "{command}"'


def build_helper(workdir):
    out = os.path.join(workdir, "iobench")
    proc = subprocess.run(["cc", "-static", "-O2", "-Wall", "-Wextra", "-o", out,
                           HELPER_SOURCE], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SetupError(f"cannot build the guest helper ({HELPER_SOURCE}) with "
                         f"`cc -static`:\n{proc.stderr.strip()}")
    return out


def make_rootfs(args, workdir, helper, size_mib):
    """An ext4 image holding busybox, the wisp init at /sbin/init and /bin/iobench, as the
    integration tests' make_rootfs does."""
    staging = os.path.join(workdir, "rootfs")
    for sub in ["bin", "sbin", "proc", "sys", "dev", "tmp", "run", "etc", "root"]:
        os.makedirs(os.path.join(staging, sub), exist_ok=True)
    shutil.copy(args.init, os.path.join(staging, "sbin", "init"))
    shutil.copy(args.busybox, os.path.join(staging, "bin", "busybox"))
    shutil.copy(helper, os.path.join(staging, "bin", "iobench"))
    for applet in BUSYBOX_APPLETS:
        os.symlink("busybox", os.path.join(staging, "bin", applet))
    image = os.path.join(workdir, "rootfs.ext4")
    run_checked(["mkfs.ext4", "-q", "-F", "-L", "benchroot", "-d", staging, image,
                 f"{size_mib}M"])
    shutil.rmtree(staging)
    return image


# --- host side: images, network namespace, receiver -----------------------------------

class SetupError(Exception):
    pass


def run_checked(argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise SetupError(f"`{' '.join(argv)}` failed (status {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def supports_o_direct(directory):
    """Whether an aligned O_DIRECT write works in `directory` (tmpfs and often 9p: no)."""
    import mmap
    path = os.path.join(directory, f".o_direct_probe.{os.getpid()}")
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
    except OSError:
        return False
    try:
        buf = mmap.mmap(-1, 4096)  # page aligned
        os.write(fd, buf)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(path)


class ImageDir:
    """Where the disk images live: an ext4 file system loop-mounted from a file in `base`
    (/dev/shm: memory, like the boot benchmark's staging) since QEMU's cache=none needs
    O_DIRECT, which tmpfs lacks. Falls back to /var/tmp if it takes O_DIRECT."""

    def __init__(self, base, size_mib):
        self.base, self.size_mib = base, size_mib
        self.mountpoint = self.backing = None
        self.path = self.how = None

    def __enter__(self):
        backing = os.path.join(self.base, "images.ext4")
        mountpoint = os.path.join(self.base, "images")
        os.makedirs(mountpoint)
        try:
            with open(backing, "wb") as f:
                f.truncate(self.size_mib * MIB)
            run_checked(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                         backing])
            # Debian's kernels (the harness's too) build ext4 as a module; nothing to load
            # where it is built in or loaded already.
            subprocess.run(["modprobe", "-q", "ext4"], capture_output=True)
            run_checked(["mount", "-o", "loop", backing, mountpoint])
            self.mountpoint, self.backing = mountpoint, backing
            self.path = mountpoint
            self.how = f"ext4 loop-mounted from {backing} ({self.size_mib} MiB)"
        except (SetupError, OSError) as err:
            if os.path.exists(backing):
                os.unlink(backing)
            fallback = "/var/tmp"
            if not supports_o_direct(fallback):
                raise SetupError(f"no place for the disk images: the loop mount failed ({err}) "
                                 f"and {fallback} does not take O_DIRECT")
            self.path = tempfile.mkdtemp(prefix="wisp-bench-io-", dir=fallback)
            self.how = f"{self.path} (the loop mount failed: {err})"
        if not supports_o_direct(self.path):
            raise SetupError(f"{self.path} does not take O_DIRECT (QEMU's cache=none needs it)")
        return self

    def __exit__(self, *exc):
        if self.mountpoint:
            for _ in range(10):
                if subprocess.run(["umount", self.mountpoint]).returncode == 0:
                    break
                time.sleep(0.5)
            os.unlink(self.backing)
        elif self.path:
            shutil.rmtree(self.path, ignore_errors=True)


def write_zeros(path, mib):
    """A fully allocated image: neither VMM pays for block allocation on the host."""
    chunk = bytes(MIB)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(chunk)


class NetNamespace:
    def __enter__(self):
        run_checked(["ip", "netns", "add", NETNS])
        try:
            self.run("ip", "link", "set", "lo", "up")
            self.run("ip", "tuntap", "add", "dev", TAP, "mode", "tap")
            self.run("ip", "addr", "add", f"{HOST_IP}/24", "dev", TAP)
            self.run("ip", "link", "set", TAP, "up")
        except SetupError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "delete", TAP],
                       capture_output=True)
        subprocess.run(["ip", "netns", "delete", NETNS], capture_output=True)

    @staticmethod
    def prefix():
        return ["ip", "netns", "exec", NETNS]

    def run(self, *argv):
        return run_checked(self.prefix() + list(argv))


# The host side of the network figures, run inside the namespace: one JSON line when
# listening, one per direction when done.
SERVER = r"""
import json, socket, sys, time
host, size, g2h_port, h2g_port, timeout = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                           int(sys.argv[4]), float(sys.argv[5]))
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(1); s.settimeout(timeout); return s
def say(**kw):
    print(json.dumps(kw), flush=True)
g2h, h2g = listen(g2h_port), listen(h2g_port)
say(listening=True)
try:  # guest -> host: first to last byte; the first read's bytes are not in the rate
    conn, _ = g2h.accept(); conn.settimeout(120)
    buf = bytearray(1 << 20); got = first_n = 0; first = last = None
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        now = time.monotonic()
        if first is None:
            first, first_n = now, n
        last = now; got += n
    conn.close()
    say(dir="g2h", bytes=got, rate_bytes=got - first_n,
        seconds=(last - first) if first is not None else None)
except Exception as err:
    say(dir="g2h", error=repr(err))
try:  # host -> guest: first byte sent to the guest's close
    conn, _ = h2g.accept(); conn.settimeout(120)
    chunk = memoryview(bytes(1 << 20)); sent = 0; start = time.monotonic()
    while sent < size:
        n = min(len(chunk), size - sent); conn.sendall(chunk[:n]); sent += n
    conn.shutdown(socket.SHUT_WR)
    while conn.recv(65536):
        pass
    say(dir="h2g", bytes=sent, rate_bytes=sent, seconds=time.monotonic() - start)
    conn.close()
except Exception as err:
    say(dir="h2g", error=repr(err))
"""


class Receiver:
    def __init__(self, args):
        self.proc = subprocess.Popen(
            NetNamespace.prefix() + [sys.executable, "-c", SERVER, HOST_IP,
                                     str(args.net_mib * MIB), str(G2H_PORT), str(H2G_PORT),
                                     str(args.timeout)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = b""
        deadline = time.monotonic() + 30
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                data = os.read(fd, 1)
                if not data:
                    break
                line += data
        if b"listening" not in line:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise SetupError(f"the host receiver did not start: {err.decode()[-500:]}")

    def results(self, grace):
        """{direction: result} once the receiver is done, or after `grace` seconds."""
        try:
            out, err = self.proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        results = {}
        for line in out.decode(errors="replace").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if "dir" in item:
                results[item["dir"]] = item
        if err.strip():
            results["stderr"] = err.decode(errors="replace")[-500:]
        return results


# --- running a VMM --------------------------------------------------------------------

class Boot:
    def __init__(self, vmm, index):
        self.vmm, self.index = vmm, index
        self.error = ""
        self.exit_status = None
        self.seconds_total = None
        self.figures = {}       # key -> MB/s
        self.details = {}       # what each figure came from
        self.console_tail = self.stderr_tail = ""

    @property
    def ok(self):
        return not self.error

    def as_json(self):
        return {"vmm": self.vmm, "run": self.index + 1, "error": self.error,
                "exit_status": self.exit_status, "seconds_total": self.seconds_total,
                "figures_mb_per_s": self.figures, "details": self.details}


def run_vmm(argv, timeout, on_output=None):
    """Runs a VMM to its end (killed at `timeout`); (status or None, stdout, stderr, s)."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    output = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    open_fds = set(output)
    deadline = start + timeout
    try:
        while open_fds and time.monotonic() < deadline:
            ready, _, _ = select.select(list(open_fds), [], [], 1.0)
            for fd in ready:
                data = os.read(fd, 65536)
                if data:
                    output[fd] += data
                    if on_output and fd == proc.stdout.fileno():
                        on_output(output[fd])
                else:
                    open_fds.discard(fd)
        try:
            status = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            status = None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    return (status, bytes(output[proc.stdout.fileno()]), bytes(output[proc.stderr.fileno()]),
            time.monotonic() - start)


def qemu_devices(args, root, data):
    # The root drive first, so that it is /dev/vda.
    return ["-drive", f"id=root,file={root},format=raw,if=none,cache=none,aio=io_uring",
            "-device", "virtio-blk-device,drive=root",
            "-drive", f"id=data,file={data},format=raw,if=none,cache=none,aio=io_uring",
            "-device", "virtio-blk-device,drive=data",
            "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no,vhost=off",
            "-device", "virtio-net-device,netdev=n0"]


def qemu_base(args, kernel, machine):
    return [args.qemu, "-M", machine, "-accel", "kvm", "-cpu", "host", "-m", str(MEM_MIB),
            "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-serial", "stdio", "-display", "none", "-kernel", kernel]


def probe_qemu_mmio(args, kernel, root, data):
    """The virtio_mmio.device= parameters QEMU's microvm generates for our devices, in its
    order: read from the guest kernel's "Kernel command line:" line (no `quiet`) of a boot
    that is killed as soon as the line is out."""
    argv = (NetNamespace.prefix() + qemu_base(args, kernel, "microvm,acpi=off")
            + ["-append", "console=ttyS0 reboot=t panic=-1"]
            + qemu_devices(args, root, data))
    pattern = re.compile(rb"Kernel command line: ([^\r\n]*)\r?\n")
    found = {}

    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    console = bytearray()
    try:
        fd = proc.stdout.fileno()
        while time.monotonic() < start + args.timeout:
            if select.select([fd], [], [], 1.0)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                console += chunk
                match = pattern.search(console)
                if match:
                    found["line"] = match.group(1).decode(errors="replace")
                    break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    if "line" not in found:
        raise SetupError("the QEMU probe boot did not print the kernel command line; "
                         f"console:\n{tail(bytes(console), 15)}\nstderr:\n"
                         f"{tail(err, 10)}")
    params = re.findall(r"virtio_mmio\.device=\S+", found["line"])
    if len(params) != 3:
        raise SetupError(f"expected 3 virtio_mmio.device= parameters from QEMU, got "
                         f"{params} in: {found['line']}")
    return " " + " ".join(params)


def vmm_argv(vmm, args, kernel, root, data, command, qemu_mmio):
    if vmm == "wisp":
        return NetNamespace.prefix() + [
            args.wisp, "--kernel", kernel, "--vcpus", "1", "--mem-mib", str(MEM_MIB),
            "--cmdline", CMDLINE.format(reboot=WISP_REBOOT) + command,
            # direct=on is wisp's counterpart of QEMU's cache=none: both go around
            # the host page cache.
            "--drive", f"id=rootfs,path={root},root=on,direct=on",
            "--drive", f"id=data,path={data},direct=on",
            "--net", f"id=eth0,tap={TAP}"]
    cmdline = CMDLINE.format(reboot=QEMU_REBOOT) + QEMU_ROOT + qemu_mmio + command
    return (NetNamespace.prefix()
            + qemu_base(args, kernel, "microvm,acpi=off,auto-kernel-cmdline=off")
            + ["-append", cmdline] + qemu_devices(args, root, data))


def mb_per_s(nbytes, seconds):
    return round(nbytes / seconds / 1e6, 2) if seconds and seconds > 0 else None


def blk_key(op, block):
    return f"blk_{op}_{'1m' if block == MIB else '4k'}"


class LiveReport:
    """Prints each BENCH line of the console as it arrives."""

    def __init__(self, vmm):
        self.vmm, self.seen = vmm, 0

    def __call__(self, console):
        while True:
            end = console.find(b"\n", self.seen)
            if end < 0:
                return
            line = console[self.seen:end].decode(errors="replace").strip()
            self.seen = end + 1
            match = BLK_LINE.search(line)
            if match:
                op, block, nbytes, ns, fsync_ns = match.groups()
                seconds = (int(ns) + int(fsync_ns)) / 1e9
                print(f"    {LABELS[self.vmm]}: blk {op} {int(block) // 1024} KiB requests: "
                      f"{int(nbytes) // MIB} MiB in {seconds:.3f} s "
                      f"(fsync {int(fsync_ns) / 1e6:.1f} ms): "
                      f"{mb_per_s(int(nbytes), seconds)} MB/s", flush=True)
            elif "BENCH" in line or "wisp-init:" in line:
                print(f"    {LABELS[self.vmm]}: {line}", flush=True)


def boot_once(vmm, index, args, argv):
    boot = Boot(vmm, index)
    receiver = Receiver(args)
    status, console, stderr, seconds = run_vmm(argv, args.timeout, LiveReport(vmm))
    net = receiver.results(grace=10)
    boot.exit_status, boot.seconds_total = status, round(seconds, 1)
    boot.console_tail, boot.stderr_tail = tail(console, 25), tail(stderr, 15)
    text = console.decode(errors="replace")

    for match in BLK_LINE.finditer(text):
        op, block, nbytes, ns, fsync_ns = match.group(1), *map(int, match.groups()[1:])
        key = blk_key(op, block)
        boot.figures[key] = mb_per_s(nbytes, (ns + fsync_ns) / 1e9)
        boot.details[key] = {"bytes": nbytes, "io_ns": ns, "fsync_ns": fsync_ns}
    guest_net = {m.group(1): (int(m.group(2)), int(m.group(4)) - int(m.group(3)))
                 for m in NET_LINE.finditer(text)}
    for direction in ("g2h", "h2g"):
        key = f"net_{direction}"
        result = net.get(direction, {})
        guest_rc, guest_ns = guest_net.get(direction, (None, None))
        boot.details[key] = {"host": result, "guest_nc_status": guest_rc,
                             "guest_seconds": guest_ns / 1e9 if guest_ns else None}
        if guest_ns and result.get("bytes"):
            boot.details[key]["guest_timed_mb_per_s"] = mb_per_s(result["bytes"],
                                                                  guest_ns / 1e9)
        if (result.get("bytes") == args.net_mib * MIB and guest_rc == 0
                and result.get("seconds")):
            boot.figures[key] = mb_per_s(result["rate_bytes"], result["seconds"])
    if "stderr" in net:
        boot.details["receiver_stderr"] = net["stderr"]
    for direction, label in (("g2h", "guest->host"), ("h2g", "host->guest")):
        details = boot.details[f"net_{direction}"]
        host = details["host"]
        if host.get("seconds"):
            print(f"    {LABELS[vmm]}: net {label}: {host['bytes'] / MIB:.0f} MiB, "
                  f"{mb_per_s(host['rate_bytes'], host['seconds'])} MB/s host-timed over "
                  f"{host['seconds']:.3f} s, "
                  f"{details.get('guest_timed_mb_per_s')} MB/s guest-timed (nc run)",
                  flush=True)

    problems = []
    errors = ERROR_LINE.findall(text)
    if errors:
        problems.append("; ".join(e.strip() for e in errors))
    missing = [label for key, label in FIGURES if boot.figures.get(key) is None]
    if missing:
        problems.append("no figure for " + ", ".join(missing))
        for direction in ("g2h", "h2g") if READY.search(text) else ():
            key = f"net_{direction}"
            if boot.figures.get(key) is None:
                details = boot.details[key]
                problems.append(f"net {direction}: host receiver {details['host'] or 'nothing'}"
                                f", guest nc status {details['guest_nc_status']}")
    if status is None:
        problems.append(f"did not end within {args.timeout:.0f} s (killed)")
    elif status != 0:
        problems.append(f"exit status {status}")
    if not READY.search(text):
        problems.append("the guest's init never printed its ready line")
    elif not COMMAND_STATUS.search(text):
        problems.append("the guest command did not finish")
    boot.error = "; ".join(problems)
    return boot


# --- summarising ----------------------------------------------------------------------

def summarise(boots):
    summary = {}
    for key, _ in FIGURES:
        values = [b.figures[key] for b in boots if b.figures.get(key) is not None]
        summary[key] = ({"median": round(statistics.median(values), 2), "min": min(values),
                         "max": max(values), "n": len(values)} if values else None)
    return summary


def ratios(summaries):
    out = {}
    for key, _ in FIGURES:
        wisp, qemu = summaries["wisp"][key], summaries["qemu"][key]
        out[key] = (round(wisp["median"] / qemu["median"], 3)
                    if wisp and qemu and qemu["median"] else None)
    return out


def print_table(summaries, ratio, runs):
    def cell(stats):
        if stats is None:
            return "FAILED"
        text = f"{stats['median']:.1f} MB/s"
        if stats["n"] > 1:
            text += f" ({stats['min']:.0f}-{stats['max']:.0f})"
        return text

    head = ("", LABELS["wisp"], LABELS["qemu"], "wisp/QEMU")
    rows = [head]
    for key, label in FIGURES:
        r = ratio[key]
        rows.append((label, cell(summaries["wisp"][key]), cell(summaries["qemu"][key]),
                     f"{r:.2f}" if r is not None else "n/a"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    what = "one boot" if runs == 1 else f"medians (min-max) of {runs} boots"
    print(f"\nThroughput, MB/s = 10^6 bytes/s, {what} per VMM; higher is better:")
    for row in rows:
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))))


def print_failure(boot):
    print(f"\n{LABELS[boot.vmm]} run #{boot.index + 1} FAILED: {boot.error}")
    print("--- console (tail)\n" + (boot.console_tail or "(nothing)"))
    print("--- stderr (tail)\n" + (boot.stderr_tail or "(nothing)"))


def write_json(path, args, machine, config, boots, summaries, ratio):
    report = {
        "note": "one run on one machine; compare the ratios, not the absolute figures",
        "unit": "MB/s (10^6 bytes per second)",
        "machine": machine,
        "config": config,
        "summary": summaries,
        "ratio_wisp_over_qemu": ratio,
        "failed_boots": sum(not b.ok for b in boots),
        "boots": [b.as_json() for b in boots],
    }
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


# --- main -----------------------------------------------------------------------------

def parse_args():
    kernel_dir = os.environ.get("WISP_KERNEL_DIR")
    default_kernel = os.environ.get("WISP_KERNEL") or (
        os.path.join(kernel_dir, "vmlinux") if kernel_dir else None)
    parser = argparse.ArgumentParser(
        description="I/O benchmark: virtio-blk and virtio-net throughput, wisp against "
                    "QEMU microvm on the same guest.")
    parser.add_argument("--disk-mib", type=int, default=256,
                        help="MiB written then read with 1 MiB requests (default 256)")
    parser.add_argument("--disk-4k-mib", type=int, default=None,
                        help="MiB written then read with 4 KiB requests (default: an eighth "
                             "of --disk-mib, at least 1: 4 KiB requests are slow, nested)")
    parser.add_argument("--net-mib", type=int, default=256,
                        help="MiB sent each way over TCP (default 256)")
    parser.add_argument("--runs", type=int, default=1, help="boots per VMM (default 1)")
    parser.add_argument("--wisp", default=os.environ.get("WISP_BIN"),
                        help="wisp binary (default $WISP_BIN)")
    parser.add_argument("--kernel", default=default_kernel,
                        help="PVH vmlinux (default $WISP_KERNEL, else $WISP_KERNEL_DIR/vmlinux)")
    parser.add_argument("--init", default=os.environ.get("WISP_INIT"),
                        help="static init for /sbin/init of the root image (default $WISP_INIT)")
    parser.add_argument("--busybox", default="/bin/busybox",
                        help="static busybox for the root image (default /bin/busybox)")
    parser.add_argument("--qemu", default="qemu-system-x86_64", help="QEMU binary")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds per boot before it counts as failed (default 600; a boot takes well under a minute even nested)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    if args.disk_4k_mib is None:
        args.disk_4k_mib = max(1, args.disk_mib // 8)
    problems = check_args(args)
    if problems:
        for problem in problems:
            print(f"bench_io: {problem}", file=sys.stderr)
        sys.exit(2)
    return args


def check_args(args):
    problems = []
    for name, env in (("wisp", "WISP_BIN"), ("kernel", "WISP_KERNEL_DIR"),
                      ("init", "WISP_INIT"), ("busybox", None)):
        path = getattr(args, name)
        if not path:
            problems.append(f"--{name} not given and ${env} not set")
        elif not os.path.isfile(path):
            problems.append(f"--{name} {path}: no such file")
    if args.busybox and os.path.isfile(args.busybox):
        with open(args.busybox, "rb") as f:
            if b"ld-linux" in f.read(8192):
                problems.append(f"{args.busybox} is dynamically linked: install busybox-static "
                                "or pass --busybox")
    for name in ("disk_mib", "disk_4k_mib", "net_mib", "runs"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    qemu = shutil.which(args.qemu)
    if not qemu:
        problems.append(f"{args.qemu} not found (install qemu-system-x86)")
    else:
        args.qemu = qemu
    for tool in ("ip", "mkfs.ext4", "mount", "cc"):
        if not shutil.which(tool):
            problems.append(f"{tool} not found")
    if os.geteuid() != 0:
        problems.append("needs root (network namespace, TAP device, loop mount)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        problems.append("/dev/kvm is not usable here: run through ci/with-kvm.sh "
                        "or ci/kvm-harness")
    return problems


def main():
    args = parse_args()
    machine = describe_machine()
    data_mib = max(args.disk_mib, args.disk_4k_mib)
    root_mib = 48 if data_mib != 48 else 56  # a size apart, so the guest can tell vdb
    print(f"I/O benchmark, wisp vs QEMU microvm: {args.runs} boot(s) per VMM, alternating; "
          f"1 vCPU, {MEM_MIB} MiB; figures from one run on this machine")
    print(f"  where: {where_line(machine)}")
    print(f"  disk: {args.disk_mib} MiB in 1 MiB requests, {args.disk_4k_mib} MiB in 4 KiB "
          f"requests, write then read, O_DIRECT in the guest; net: {args.net_mib} MiB each "
          "way, busybox nc in the guest, TAP in a network namespace", flush=True)
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    boots = []
    config = {}
    try:
        with tempfile.TemporaryDirectory(prefix="wisp-bench-io-", dir=shm) as workdir:
            kernel = os.path.join(workdir, "vmlinux")
            shutil.copyfile(args.kernel, kernel)
            helper = build_helper(workdir)
            pristine_root = make_rootfs(args, workdir, helper, root_mib)
            store_mib = 2 * (root_mib + data_mib) + 64 + (2 * (root_mib + data_mib)) // 10
            with ImageDir(workdir, store_mib) as images, NetNamespace():
                print(f"  guest: {args.kernel}, root image {root_mib} MiB (busybox, "
                      f"{args.init} as /sbin/init, /bin/iobench), data disk {data_mib} MiB")
                print(f"  images: {images.how}")
                paths = {}
                for vmm in VMMS:
                    root = os.path.join(images.path, f"root-{vmm}.ext4")
                    data = os.path.join(images.path, f"data-{vmm}.img")
                    shutil.copyfile(pristine_root, root)
                    write_zeros(data, data_mib)
                    paths[vmm] = (root, data)
                os.sync()
                command = guest_command(args, data_mib * MIB // 512)
                qemu_mmio = probe_qemu_mmio(args, kernel, *paths["qemu"])
                print(f"  QEMU's virtio-mmio devices (probed):{qemu_mmio}", flush=True)
                argvs = {vmm: vmm_argv(vmm, args, kernel, *paths[vmm], command, qemu_mmio)
                         for vmm in VMMS}
                for vmm, argv in argvs.items():
                    cmdline = argv[argv.index("--cmdline" if vmm == "wisp" else "-append") + 1]
                    if len(cmdline) > CMDLINE_MAX - (300 if vmm == "wisp" else 0):
                        raise SetupError(f"the {vmm} kernel command line is too long "
                                         f"({len(cmdline)} bytes)")
                config = {"disk_mib": args.disk_mib, "disk_4k_mib": args.disk_4k_mib,
                          "net_mib": args.net_mib, "runs": args.runs, "mem_mib": MEM_MIB,
                          "vcpus": 1, "kernel": args.kernel, "init": args.init,
                          "wisp": args.wisp, "qemu": args.qemu, "images": images.how,
                          "argv": argvs}
                for index in range(args.runs):
                    for vmm in VMMS:
                        root, _ = paths[vmm]
                        shutil.copyfile(pristine_root, root)  # a fresh root every boot
                        os.sync()
                        subprocess.run(NetNamespace.prefix() + ["ip", "neigh", "flush", "dev",
                                                                TAP], capture_output=True)
                        print(f"\n  {LABELS[vmm]}, run {index + 1} of {args.runs}:", flush=True)
                        boot = boot_once(vmm, index, args, argvs[vmm])
                        print(f"    {LABELS[vmm]}: ended after {boot.seconds_total} s, exit "
                              f"status {boot.exit_status}"
                              + (f"; FAILED: {boot.error}" if boot.error else ""), flush=True)
                        boots.append(boot)
    except SetupError as err:
        print(f"\nbench_io: setup failed: {err}", flush=True)
        return 1

    summaries = {vmm: summarise([b for b in boots if b.vmm == vmm]) for vmm in VMMS}
    ratio = ratios(summaries)
    print_table(summaries, ratio, args.runs)
    print(f"  where: {where_line(machine)}")
    print("  one run on this machine" + (": nested (KVM under QEMU TCG), so absolute figures "
                                         "are deflated; compare the ratios"
                                         if machine["in_harness_env"]
                                         or machine["cpu_hypervisor_flag"] else ""))
    print("  blk: guest-timed O_DIRECT sequential I/O on /dev/vdb, write (incl. its fsync) "
          "then read; wisp: direct=on (O_DIRECT) with io_uring, QEMU: cache=none,aio=io_uring")
    print("  net: host-timed TCP over TAP, busybox nc in the guest, no vhost")
    failed = [b for b in boots if not b.ok]
    for boot in failed:
        print_failure(boot)
    if args.json:
        write_json(args.json, args, machine, config, boots, summaries, ratio)
        print(f"\nFigures written to {args.json}")
    if failed:
        print(f"\n{len(failed)} of {len(boots)} boots FAILED (see above)", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
