#!/usr/bin/env python3
"""Snapshot benchmark: wisp's snapshot create and restore (File and Uffd backends) against
its own cold boot and against QEMU's save/restore (migrate to a file, -incoming from it) of
the same guest, for a 1 vCPU / 128 MiB and a 1 vCPU / 2 GiB guest, in one run.

The guest is the same PVH vmlinux with the busybox initramfs plus tests/guest/snapguest
(appended as a second cpio archive), which the init runs as its command: it prints a short
tick line "t<n>" every TICK_MS ms. "Running" means the first complete tick line on the
VMM's stdout (the serial console): for a cold boot the first one, for a restore the first
one the new process prints (the guest can only print it after it runs again). The tick
period is the marker's own latency: at most TICK_MS ms in every figure below.

Per guest size it measures (median, min-max over --runs; one run of the script):
  wisp create        PATCH /vm Paused, then PUT /snapshot/create (Full): request to its 204
                     (on one booted VM, resumed between runs); memory file size: allocated
                     (st_blocks * 512) and apparent (st_size)
  wisp load          a new wisp process: PUT /snapshot/load (File backend, resume_vm) from
                     sending to the 204
  wisp restore       process start to the first tick line, File backend
  wisp uffd          the same with backend Uffd and build/wisp-uffd-handler serving the
                     memory file (started, and listening, before wisp: not counted), without
                     and with --prefetch of the pages a first --record run faulted in
  wisp cold boot     process start to the first tick line of a fresh boot
  QEMU save          QMP stop, then migrate "exec:cat > FILE": command to "completed"
                     (max-bandwidth raised so QEMU's 32 MiB/s default does not throttle it)
  QEMU restore       process start (same command line plus -incoming "exec:cat FILE") to
                     the first tick line; the saving QEMU runs with
                     migration.store-global-state=off so the loaded VM starts by itself
  QEMU cold boot     process start to the first tick line
Snapshot and QEMU state files live in a tmpfs (/dev/shm): restores read from memory, as a
host restoring the same function again and again does from its page cache. So do copies of
wisp and its Uffd handler, which are run from there: inside ci/kvm-harness the build
directory is on a 9p share that is read again at every exec (about 60 ms of each wisp
start there, nothing on a host's local disk). QEMU runs from /usr/bin, whose binary and
libraries are on the same share: its restores, seconds long, carry that too.

With --jailed (make bench-snapshot JAILED=1) the File restore runs twice more: in a wisp
with --no-seccomp, and in a wisp started by wisp-jailer (with its default filters; the
state and memory files hard-linked into the jail root once its socket is up,
tests/bench/jailing.py); the ratios to the plain restore are the filters' and the jail's
cost.

Inside ci/kvm-harness, whose emulated machine sometimes dies and is started again, the
figures of each size's wisp part and QEMU part are kept in $WISP_HARNESS_PROGRESS once
measured, and a restarted run measures only the parts still missing (it says so).

Then the ratios the issue names as targets: wisp restore / wisp cold boot (<= 0.05), wisp
restore 2 GiB / 128 MiB (<= 1.2), QEMU restore / wisp restore at 2 GiB (>= 10).

Usage:
  tests/bench/bench_snapshot.py [--runs N] [--sizes 128,2048] [--only wisp|qemu] [--no-uffd]
                                [--wisp PATH] [--kernel VMLINUX] [--initrd BUSYBOX_INITRD]
                                [--snapguest PATH] [--uffd-handler PATH] [--qemu BIN]
                                [--timeout S] [--json FILE] [--jailed [--jailer PATH]]
Paths default to $WISP_BIN, $WISP_KERNEL_DIR/vmlinux, $WISP_INITRD_BUSYBOX and, beside
$WISP_BIN, tests/snapguest and wisp-uffd-handler. Needs /dev/kvm (ci/with-kvm.sh). Exits 1
if any measurement failed, 2 on bad input.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_boot import describe_machine, stage_binaries, where_line  # noqa: E402
import jailing  # noqa: E402

TICK_MS = 5
CMDLINE = ("console=ttyS0 reboot={reboot} panic=-1 i8042.noaux i8042.nomux "
           "i8042.nopnp i8042.dumbkbd quiet -- /bin/snapguest -s -i " + str(TICK_MS))
# A whole tick line: after a restore the first bytes may be the rest of a line begun
# before the snapshot, which must not count.
TICK = re.compile(rb"(?:^|\n)t([0-9]+)\r?\n")
SETTLE_TICKS = 40  # ticks a booted guest prints before it is snapshotted


# --- processes and their consoles ----------------------------------------------------

class Vmm:
    """A VMM process whose stdout (the guest's console) and stderr are read as they come."""

    def __init__(self, argv, start=None):
        self.start = start if start is not None else time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self.out = {self.proc.stdout.fileno(): bytearray(),
                    self.proc.stderr.fileno(): bytearray()}
        self.open_fds = set(self.out)

    @property
    def console(self):
        return self.out[self.proc.stdout.fileno()]

    @property
    def stderr(self):
        return self.out[self.proc.stderr.fileno()]

    def pump(self, timeout=0.0):
        """Reads whatever is there within timeout seconds."""
        if not self.open_fds:
            time.sleep(timeout)
            return
        ready, _, _ = select.select(list(self.open_fds), [], [], timeout)
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                self.out[fd] += data
            else:
                self.open_fds.discard(fd)

    def wait_ticks(self, count, deadline, after=0):
        """Waits for `count` complete tick lines in the console from offset `after`; returns
        the monotonic time the count-th was read, or raises."""
        while True:
            if len(TICK.findall(self.console, after)) >= count:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise BenchError(f"no {count} tick lines within the time limit")
            if not self.open_fds and self.proc.poll() is not None:
                raise BenchError(f"the VMM ended (status {self.proc.returncode}) before "
                                 f"{count} tick lines")
            self.pump(0.002)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        end = time.monotonic() + 1
        while self.open_fds and time.monotonic() < end:
            self.pump(0.05)

    def tail(self):
        def last(data):
            return "\n".join(data.decode(errors="replace").splitlines()[-8:])
        return f"--- console\n{last(self.console)}\n--- stderr\n{last(self.stderr)}"


class BenchError(Exception):
    pass


def wait_for_path(path, deadline, proc=None):
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise BenchError(f"{path} did not appear")
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"the process ended (status {proc.returncode}) before "
                             f"creating {path}")
        time.sleep(0.001)


def http(sock_path, method, path, body=None, timeout=60):
    """One HTTP/1.1 request on the API's Unix socket: (status, body text). Plain sockets,
    not curl: a spawned curl would be in the timings."""
    data = json.dumps(body).encode() if body is not None else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        # The socket's file appears at bind(), a moment before listen(): a client that
        # waits for the file can come in between (seen with a jailed wisp), so it retries.
        for attempt in range(200):
            try:
                s.connect(sock_path)
                break
            except ConnectionRefusedError:
                if attempt == 199:
                    raise
                time.sleep(0.005)
        s.sendall(head.encode() + data)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        header, _, rest = reply.partition(b"\r\n\r\n")
        match = re.search(rb"content-length:\s*([0-9]+)", header, re.I)
        want = int(match.group(1)) if match else 0
        while len(rest) < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    status = int(header.split(b" ", 2)[1]) if header.startswith(b"HTTP/") else 0
    return status, rest.decode(errors="replace")


def api_ok(sock_path, method, path, body=None):
    status, text = http(sock_path, method, path, body)
    if status not in (200, 204):
        raise BenchError(f"{method} {path} answered {status}: {text}")
    return text


class Qmp:
    """QEMU's monitor protocol on a Unix socket: commands in, their returns out."""

    def __init__(self, path, deadline, proc):
        wait_for_path(path, deadline, proc)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(120)
        self.sock.connect(path)
        self.buf = b""
        self._message()  # the greeting
        self.execute("qmp_capabilities")

    def _message(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BenchError("QMP connection closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def execute(self, command, **arguments):
        message = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        while True:
            reply = self._message()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise BenchError(f"QMP {command}: {reply['error']}")
            # an event: skip

    def close(self):
        self.sock.close()


# --- the guest ------------------------------------------------------------------------

def make_initrd(busybox_initrd, snapguest, workdir):
    """The busybox initramfs with a second archive appended that adds /bin/snapguest (the
    kernel unpacks concatenated archives in order)."""
    mkcpio = os.path.join(HERE, "..", "..", "guest", "mkcpio.py")
    listing = f"dir /bin 0755 0 0\nfile /bin/snapguest {snapguest} 0755 0 0\n"
    extra = subprocess.run([sys.executable, mkcpio], input=listing.encode(),
                           capture_output=True, check=True).stdout
    path = os.path.join(workdir, "initrd-snap")
    with open(busybox_initrd, "rb") as f:
        base = f.read()
    with open(path, "wb") as f:
        f.write(base + gzip.compress(extra, mtime=0))
    return path


def wisp_boot_argv(args, kernel, initrd, mem_mib, api_sock=None):
    argv = [args.wisp]
    if api_sock:
        argv += ["--api-sock", api_sock]
    return argv + ["--kernel", kernel, "--initrd", initrd, "--vcpus", "1",
                   "--mem-mib", str(mem_mib), "--cmdline", CMDLINE.format(reboot="k")]


def microvm_argv(qemu, kernel, initrd, mem_mib, cmdline, qmp=None, incoming=None):
    """QEMU microvm with KVM, 1 vCPU, the console on stdout; a QMP socket and an
    -incoming source when given (bench_density.py's peers use it too)."""
    argv = [qemu, "-M", "microvm,acpi=off", "-accel", "kvm", "-cpu", "host",
            "-m", str(mem_mib), "-smp", "1", "-nodefaults", "-no-user-config",
            "-nographic", "-no-reboot", "-serial", "stdio", "-display", "none",
            "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
            "-global", "migration.store-global-state=off"]
    if qmp:
        argv += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    if incoming:
        argv += ["-incoming", incoming]
    return argv


def qemu_argv(args, kernel, initrd, mem_mib, qmp=None, incoming=None):
    return microvm_argv(args.qemu, kernel, initrd, mem_mib, CMDLINE.format(reboot="t"),
                        qmp=qmp, incoming=incoming)


# --- measurements ---------------------------------------------------------------------

class Figures:
    """Named lists of values (ms, bytes) and the failures met on the way."""

    def __init__(self):
        self.values = {}
        self.errors = []

    def add(self, key, value):
        self.values.setdefault(key, []).append(value)

    def fail(self, what, err, vmm=None):
        detail = f"{what}: {err}"
        if vmm is not None:
            detail += "\n" + vmm.tail()
        self.errors.append(detail)
        print(f"  FAILED {detail}", flush=True)

    def summary(self, key):
        values = self.values.get(key)
        if not values:
            return None
        return {"median": statistics.median(values), "min": min(values), "max": max(values),
                "n": len(values)}


def ms_since(start):
    return (time.monotonic() - start) * 1000


def allocated_and_apparent(path):
    st = os.stat(path)
    return st.st_blocks * 512, st.st_size


def cold_boot(figs, key, argv, timeout):
    vmm = Vmm(argv)
    try:
        figs.add(key, (vmm.wait_ticks(1, vmm.start + timeout) - vmm.start) * 1000)
    except BenchError as err:
        figs.fail(key, err, vmm)
    finally:
        vmm.kill()


def wisp_create_snapshots(args, figs, kernel, initrd, mem_mib, workdir):
    """Boots one wisp, then args.runs times: pause, create a Full snapshot, resume. Keeps
    the last snapshot for the restores; returns (state, mem) or None."""
    sock = os.path.join(workdir, "create.sock")
    if os.path.exists(sock):  # a killed wisp leaves its socket behind
        os.unlink(sock)
    vmm = Vmm(wisp_boot_argv(args, kernel, initrd, mem_mib, api_sock=sock))
    kept = None
    try:
        vmm.wait_ticks(SETTLE_TICKS, vmm.start + args.timeout)
        for run in range(args.runs):
            state = os.path.join(workdir, f"wisp-{run}.state")
            mem = os.path.join(workdir, f"wisp-{run}.mem")
            api_ok(sock, "PATCH", "/vm", {"state": "Paused"})
            start = time.monotonic()
            api_ok(sock, "PUT", "/snapshot/create", {"snapshot_type": "Full",
                                                     "snapshot_path": state,
                                                     "mem_file_path": mem})
            figs.add("wisp_create_ms", ms_since(start))
            allocated, apparent = allocated_and_apparent(mem)
            figs.add("wisp_mem_allocated", allocated)
            figs.add("wisp_mem_apparent", apparent)
            figs.add("wisp_state_bytes", os.path.getsize(state))
            api_ok(sock, "PATCH", "/vm", {"state": "Resumed"})
            if kept:
                for path in kept:
                    os.unlink(path)
            kept = (state, mem)
            after = len(vmm.console)
            vmm.wait_ticks(2, time.monotonic() + args.timeout, after)
    except (BenchError, OSError) as err:
        figs.fail("wisp snapshot create", err, vmm)
    finally:
        vmm.kill()
    return kept


def wisp_restore(args, figs, key, state, mem, workdir, uffd=None, jail=None,
                 no_seccomp=False):
    """One restore in a new wisp process; uffd = (handler argv extras) or None for File;
    jail: a jailing.Jail to start wisp in (File backend only)."""
    sock = jail.socket if jail else os.path.join(workdir, "restore.sock")
    handler = None
    backend = {"backend_type": "File", "backend_path": mem}
    try:
        if uffd is not None:
            uffd_sock = os.path.join(workdir, "uffd.sock")
            if os.path.exists(uffd_sock):
                os.unlink(uffd_sock)
            handler = subprocess.Popen([args.uffd_handler, uffd_sock, mem, *uffd],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)
            wait_for_path(uffd_sock, time.monotonic() + 30, handler)
            backend = {"backend_type": "Uffd", "backend_path": uffd_sock}
        if os.path.exists(sock):
            os.unlink(sock)
        vmm = Vmm(jail.argv() if jail else
                  [args.wisp, "--api-sock", sock] + (["--no-seccomp"] if no_seccomp else []))
    except (BenchError, OSError) as err:
        figs.fail(key, err)
        if handler:
            handler.kill()
        return
    try:
        wait_for_path(sock, vmm.start + 30, vmm.proc)
        if jail:
            state, mem = jail.put(state, "vm.state"), jail.put(mem, "vm.mem")
            backend["backend_path"] = mem
        start = time.monotonic()
        if key == "wisp_restore":
            # Where the time to running goes, for the File backend: process start to the
            # API socket, the load itself, and its 204 to the guest's first tick line.
            figs.add(key + "_socket_ms", (start - vmm.start) * 1000)
        api_ok(sock, "PUT", "/snapshot/load", {"snapshot_path": state, "mem_backend": backend,
                                               "resume_vm": True})
        loaded = time.monotonic()
        figs.add(key + "_load_ms", (loaded - start) * 1000)
        running = vmm.wait_ticks(1, vmm.start + args.timeout)
        figs.add(key + "_ms", (running - vmm.start) * 1000)
        if key == "wisp_restore":
            figs.add(key + "_first_tick_ms", (running - loaded) * 1000)
    except (BenchError, OSError) as err:
        figs.fail(key, err, vmm)
    finally:
        vmm.kill()
        if jail:
            try:
                jail.clean_up()
            except OSError as err:
                figs.fail(key, err)
        if handler:
            # wisp is gone: a recording handler sees its end and writes its --record file.
            try:
                handler.wait(timeout=10 if "--record" in uffd else 0.01)
            except subprocess.TimeoutExpired:
                handler.kill()
                handler.wait()


def qemu_save_and_restores(args, figs, kernel, initrd, mem_mib, workdir):
    qmp_path = os.path.join(workdir, "qmp.sock")
    state = os.path.join(workdir, "qemu.state")
    vmm = Vmm(qemu_argv(args, kernel, initrd, mem_mib, qmp=qmp_path))
    saved = False
    try:
        vmm.wait_ticks(SETTLE_TICKS, vmm.start + args.timeout)
        qmp = Qmp(qmp_path, vmm.start + 30, vmm.proc)
        qmp.execute("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        for run in range(args.runs):
            if os.path.exists(state):
                os.unlink(state)
            qmp.execute("stop")
            start = time.monotonic()
            qmp.execute("migrate", uri=f"exec:cat > {state}")
            while True:
                info = qmp.execute("query-migrate")
                if info.get("status") == "completed":
                    break
                if info.get("status") in ("failed", "cancelled"):
                    raise BenchError(f"QEMU migrate: {info}")
                time.sleep(0.001)
            figs.add("qemu_save_ms", ms_since(start))
            allocated, apparent = allocated_and_apparent(state)
            figs.add("qemu_state_allocated", allocated)
            figs.add("qemu_state_apparent", apparent)
            saved = True
            qmp.execute("cont")
            after = len(vmm.console)
            vmm.wait_ticks(2, time.monotonic() + args.timeout, after)
        qmp.close()
    except (BenchError, OSError) as err:
        figs.fail("QEMU save", err, vmm)
    finally:
        vmm.kill()
    if not saved:
        return
    for run in range(args.runs):
        vmm = Vmm(qemu_argv(args, kernel, initrd, mem_mib, incoming=f"exec:cat {state}"))
        try:
            figs.add("qemu_restore_ms",
                     (vmm.wait_ticks(1, vmm.start + args.timeout) - vmm.start) * 1000)
        except BenchError as err:
            figs.fail("QEMU restore", err, vmm)
        finally:
            vmm.kill()


def bench_size(args, kernel, initrd, mem_mib, workdir, part):
    """One part ("wisp" or "qemu") of one guest size's figures."""
    figs = Figures()
    if part == "wisp":
        print("  wisp: cold boots", flush=True)
        for _ in range(args.runs):
            cold_boot(figs, "wisp_boot_ms", wisp_boot_argv(args, kernel, initrd, mem_mib),
                      args.timeout)
        print("  wisp: snapshot create", flush=True)
        snap = wisp_create_snapshots(args, figs, kernel, initrd, mem_mib, workdir)
        if snap:
            state, mem = snap
            print("  wisp: restores (File)", flush=True)
            for _ in range(args.runs):
                wisp_restore(args, figs, "wisp_restore", state, mem, workdir)
            if args.jailed:
                print("  wisp: restores (File), --no-seccomp and jailed", flush=True)
                jails = jailing.Jails(args.jailer, args.wisp, workdir)
                try:
                    for _ in range(args.runs):
                        wisp_restore(args, figs, "wisp_restore_no_seccomp", state, mem,
                                     workdir, no_seccomp=True)
                        wisp_restore(args, figs, "wisp_restore_jailed", state, mem, workdir,
                                     jail=jails.new())
                finally:
                    jails.remove_parent()
            print("  wisp: restores (File, command line: no API socket)", flush=True)
            for _ in range(args.runs):
                cold_boot(figs, "wisp_cli_restore_ms",
                          [args.wisp, "--restore", state, "--mem-file", mem, "--resume"],
                          args.timeout)
            if args.no_uffd:
                pass
            elif os.access(args.uffd_handler, os.X_OK):
                record = os.path.join(workdir, "uffd.record")
                print("  wisp: restores (Uffd, no prefetch; the first records)", flush=True)
                for run in range(args.runs):
                    wisp_restore(args, figs, "wisp_uffd", state, mem, workdir,
                                 uffd=["--record", record] if run == 0 else [])
                if os.path.exists(record):
                    print("  wisp: restores (Uffd, prefetch)", flush=True)
                    for _ in range(args.runs):
                        wisp_restore(args, figs, "wisp_uffd_prefetch", state, mem, workdir,
                                     uffd=["--prefetch", record])
                else:
                    figs.fail("Uffd prefetch", f"the --record run left no {record}")
            else:
                figs.fail("Uffd restores", f"no uffd handler at {args.uffd_handler}")
            for path in snap:
                os.unlink(path)
    else:
        print("  QEMU: cold boots", flush=True)
        for _ in range(args.runs):
            cold_boot(figs, "qemu_boot_ms", qemu_argv(args, kernel, initrd, mem_mib),
                      args.timeout)
        print("  QEMU: save and restores", flush=True)
        qemu_save_and_restores(args, figs, kernel, initrd, mem_mib, workdir)
    return figs


# --- report ---------------------------------------------------------------------------

ROWS = (  # key, label, unit
    ("wisp_create_ms", "wisp snapshot create (PUT to 204)", "ms"),
    ("wisp_mem_allocated", "wisp memory file, allocated", "MiB"),
    ("wisp_mem_apparent", "wisp memory file, apparent size", "MiB"),
    ("wisp_state_bytes", "wisp state file", "KiB"),
    ("wisp_restore_socket_ms", "wisp process start to API socket (File)", "ms"),
    ("wisp_restore_load_ms", "wisp PUT /snapshot/load to 204 (File)", "ms"),
    ("wisp_restore_first_tick_ms", "wisp 204 to the first tick line (File)", "ms"),
    ("wisp_restore_ms", "wisp restore to running (File)", "ms"),
    ("wisp_restore_no_seccomp_load_ms", "wisp PUT /snapshot/load to 204, --no-seccomp", "ms"),
    ("wisp_restore_no_seccomp_ms", "wisp restore to running, --no-seccomp", "ms"),
    ("wisp_restore_jailed_load_ms", "wisp PUT /snapshot/load to 204, jailed", "ms"),
    ("wisp_restore_jailed_ms", "wisp restore to running, jailed (filters)", "ms"),
    ("wisp_cli_restore_ms", "wisp --restore --resume to running (File)", "ms"),
    ("wisp_uffd_load_ms", "wisp PUT /snapshot/load to 204 (Uffd)", "ms"),
    ("wisp_uffd_ms", "wisp restore to running (Uffd)", "ms"),
    ("wisp_uffd_prefetch_load_ms", "wisp PUT /snapshot/load to 204 (Uffd+prefetch)", "ms"),
    ("wisp_uffd_prefetch_ms", "wisp restore to running (Uffd+prefetch)", "ms"),
    ("wisp_boot_ms", "wisp cold boot to running", "ms"),
    ("qemu_save_ms", "QEMU save (stop, migrate to file)", "ms"),
    ("qemu_state_allocated", "QEMU state file, allocated", "MiB"),
    ("qemu_restore_ms", "QEMU restore to running (-incoming)", "ms"),
    ("qemu_boot_ms", "QEMU cold boot to running", "ms"),
)


def fmt(value, unit):
    if unit == "MiB":
        return f"{value / (1 << 20):.1f} MiB"
    if unit == "KiB":
        return f"{value / 1024:.1f} KiB"
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def cell(stats, unit):
    if stats is None:
        return "-"
    if unit == "ms":
        return (f"{fmt(stats['median'], unit)} ({stats['min']:.0f}-{stats['max']:.0f})"
                if stats["max"] >= 10 else
                f"{fmt(stats['median'], unit)} ({stats['min']:.1f}-{stats['max']:.1f})")
    if stats["min"] == stats["max"]:
        return fmt(stats["median"], unit)
    return f"{fmt(stats['median'], unit)} ({fmt(stats['min'], unit)}-{fmt(stats['max'], unit)})"


def median(figs, key):
    stats = figs.summary(key)
    return stats["median"] if stats else None


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def report(args, sizes, results):
    head = ["figure"] + [f"{m} MiB" for m in sizes]
    rows = [head]
    for key, label, unit in ROWS:
        if all(results[m].summary(key) is None for m in sizes):
            continue
        rows.append([label] + [cell(results[m].summary(key), unit) for m in sizes])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    print(f"\nMedian (min-max) of {args.runs} runs each; marker: the guest's tick line "
          f"(every {TICK_MS} ms)")
    for r in rows:
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
    small, big = sizes[0], sizes[-1]
    targets = []
    for m in sizes:
        targets.append((f"wisp restore / wisp cold boot, {m} MiB (target <= 0.05)",
                        ratio(median(results[m], "wisp_restore_ms"),
                              median(results[m], "wisp_boot_ms"))))
        targets.append((f"wisp --restore (command line) / wisp cold boot, {m} MiB",
                        ratio(median(results[m], "wisp_cli_restore_ms"),
                              median(results[m], "wisp_boot_ms"))))
    if big != small:
        targets.append((f"wisp restore {big} MiB / {small} MiB (target <= 1.2)",
                        ratio(median(results[big], "wisp_restore_ms"),
                              median(results[small], "wisp_restore_ms"))))
    for m in sizes:
        for label, key in (("with filters", "wisp_restore_ms"),
                           ("jailed", "wisp_restore_jailed_ms")) if args.jailed else ():
            targets.append((f"wisp restore {label} / --no-seccomp, {m} MiB",
                            ratio(median(results[m], key),
                                  median(results[m], "wisp_restore_no_seccomp_ms"))))
        targets.append((f"QEMU restore / wisp restore, {m} MiB (target >= 10 at 2 GiB)",
                        ratio(median(results[m], "qemu_restore_ms"),
                              median(results[m], "wisp_restore_ms"))))
        targets.append((f"QEMU cold boot / wisp cold boot, {m} MiB",
                        ratio(median(results[m], "qemu_boot_ms"),
                              median(results[m], "wisp_boot_ms"))))
    print("\nRatios of medians:")
    for label, value in targets:
        print(f"  {label}: {value if value is not None else 'n/a'}")
    return targets


def parse_args():
    kernel_dir = os.environ.get("WISP_KERNEL_DIR")
    wisp = os.environ.get("WISP_BIN")
    build = os.path.dirname(wisp) if wisp else "build"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--sizes", default="128,2048", help="guest sizes in MiB")
    parser.add_argument("--only", choices=("wisp", "qemu"))
    parser.add_argument("--no-uffd", action="store_true", help="skip the Uffd restores")
    parser.add_argument("--wisp", default=wisp)
    parser.add_argument("--kernel", default=os.path.join(kernel_dir, "vmlinux")
                        if kernel_dir else None)
    parser.add_argument("--initrd", default=os.environ.get("WISP_INITRD_BUSYBOX"))
    parser.add_argument("--snapguest", default=os.path.join(build, "tests", "snapguest"))
    parser.add_argument("--uffd-handler", default=os.path.join(build, "wisp-uffd-handler"))
    parser.add_argument("--qemu", default="qemu-system-x86_64")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--json")
    parser.add_argument("--jailed", action="store_true",
                        help="also restore with --no-seccomp and under wisp-jailer")
    parser.add_argument("--jailer", default=os.environ.get("WISP_JAILER"))
    args = parser.parse_args()
    problems = []
    for name in ("wisp", "kernel", "initrd", "snapguest"):
        path = getattr(args, name)
        if not path or not os.path.isfile(path):
            problems.append(f"--{name}: {path!r} is not a file")
    args.qemu = shutil.which(args.qemu) or args.qemu
    if args.only != "wisp" and not os.access(args.qemu, os.X_OK):
        problems.append(f"{args.qemu} not found (install qemu-system-x86)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        problems.append("/dev/kvm is not usable: run through ci/with-kvm.sh")
    if args.runs < 1:
        problems.append("--runs must be at least 1")
    if args.jailed:
        problems += jailing.problems(args.jailer)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        problems.append(f"--sizes {args.sizes!r}: MiB numbers separated by commas")
    for problem in problems:
        print(f"bench_snapshot: {problem}", file=sys.stderr)
    if problems:
        sys.exit(2)
    return args


def progress_key(args, mem_mib, part):
    """What a part's figures were measured with: a restarted run reuses only the same."""
    return json.dumps({"mem_mib": mem_mib, "part": part, "runs": args.runs,
                       "no_uffd": args.no_uffd, "jailed": args.jailed})


def parts_measured_before(args):
    """{progress key: Figures} from the harness's progress file (earlier emulated
    machines of this job)."""
    path = os.environ.get("WISP_HARNESS_PROGRESS")
    found = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and "key" in entry:
                    figs = Figures()
                    figs.values, figs.errors = entry["values"], entry["errors"]
                    found[entry["key"]] = figs
    return found


def keep_part(key, figs):
    path = os.environ.get("WISP_HARNESS_PROGRESS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"key": key, "values": figs.values,
                                "errors": figs.errors}) + "\n")
            f.flush()
            os.fsync(f.fileno())


def measure_size(args, kernel, initrd, mem_mib, workdir, before):
    """Both parts of one size (or the --only one), each measured or taken from before."""
    figs = Figures()
    print(f"\n== 1 vCPU, {mem_mib} MiB", flush=True)
    for part in ("wisp", "qemu"):
        if args.only not in (None, part):
            continue
        key = progress_key(args, mem_mib, part)
        if key in before:
            print(f"  {part}: measured before the emulated machine was restarted (kept in "
                  "$WISP_HARNESS_PROGRESS)", flush=True)
            done = before[key]
        else:
            done = bench_size(args, kernel, initrd, mem_mib, workdir, part)
            keep_part(key, done)
            # Now, not only in the final table: a run that never ends still shows them.
            for row_key, label, unit in ROWS:
                if done.summary(row_key):
                    print(f"    {label}: {cell(done.summary(row_key), unit)}", flush=True)
        for name, values in done.values.items():
            figs.values.setdefault(name, []).extend(values)
        figs.errors += done.errors
    return figs


def main():
    args = parse_args()
    machine = describe_machine()
    print(f"Snapshot benchmark: wisp create/restore vs cold boot vs QEMU migrate-to-file; "
          f"{args.runs} runs each; one run on this machine")
    print(f"  where: {where_line(machine)}", flush=True)
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    results = {}
    with tempfile.TemporaryDirectory(prefix="wisp-bench-snap-", dir=shm) as workdir:
        kernel = os.path.join(workdir, "vmlinux")
        shutil.copyfile(args.kernel, kernel)
        stage_binaries(args, [n for n in ("wisp", "uffd_handler")
                              if os.path.isfile(getattr(args, n))], workdir)
        initrd = make_initrd(args.initrd, args.snapguest, workdir)
        before = parts_measured_before(args)
        for mem_mib in args.sizes:
            results[mem_mib] = measure_size(args, kernel, initrd, mem_mib, workdir, before)
    targets = report(args, args.sizes, results)
    errors = [e for m in args.sizes for e in results[m].errors]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "runs": args.runs, "tick_ms": TICK_MS,
                       "values": {m: results[m].values for m in args.sizes},
                       "summary": {m: {k: results[m].summary(k) for k, _, _ in ROWS}
                                   for m in args.sizes},
                       "ratios": dict(targets), "errors": errors}, f, indent=2)
            f.write("\n")
        print(f"\nFigures written to {args.json}")
    if errors:
        print(f"\n{len(errors)} measurement(s) FAILED (see above)", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
