"""Host-side faults under a running guest (issue 9): each costs that one VM a clear,
counted error, never a hung or dead VMM, a silent API or a lost write.

- the disk's file system fills up (a small tmpfs mounted by the test): the guest's writes
  fail with an I/O error, counted as block `execute_fails`; earlier data stays; once space
  is freed writes work again (both I/O engines);
- the image is truncated under the guest: reads past the new end fail with an I/O error
  (counted); replaced by a rename: wisp keeps writing to the file it opened;
- the TAP is deleted while traffic flows: wisp stops watching it (no busy loop on the dead
  fd), counts the guest's frames it cannot send as `tx_fails`, the guest and the API live on;
- SIGTERM during disk and network traffic: exit status 143, and every record the guest
  saw written is in the image.

These tests mount a tmpfs and create TAPs and network namespaces: they need root (as
ci/kvm-harness runs them).
"""
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import tempfile
import time

from apitest import SOCKET_DIR, ApiVm, guest_cmdline
from wisptest import check

SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None
NETNS = f"wisp-faults-{os.getpid()}"
TAP = "wispfault0"
HOST_IP, GUEST_IP = "172.30.78.1", "172.30.78.2"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class FaultVm(ApiVm):
    """wisp booted at once from a Firecracker config file, with the API on a socket, the
    console's input on a pipe (the guest waits for the host with `read`) and metrics in
    a file."""

    def __init__(self, env, directory, drives=(), nets=(), command=None, prefix=(),
                 mem_mib=128):
        self.metrics_path = os.path.join(directory, "metrics.json")
        config = {
            "boot-source": {"kernel_image_path": env.vmlinux,
                            "initrd_path": env.initrd_busybox,
                            "boot_args": guest_cmdline(command)},
            "drives": list(drives),
            "network-interfaces": list(nets),
            "machine-config": {"vcpu_count": 1, "mem_size_mib": mem_mib},
            "metrics": {"metrics_path": self.metrics_path},
        }
        path = os.path.join(directory, "config.json")
        with open(path, "w") as f:
            json.dump(config, f)
        super().__init__(env, args=("--config-file", path), name="faults", prefix=prefix,
                         stdin=subprocess.PIPE)

    def send(self, line):
        """A line typed on the guest's console."""
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def metric(self, section, field):
        """The counter's total so far (each metrics line holds what changed since the
        previous one), after a flush through the API."""
        self.ok("PUT", "/actions", {"action_type": "FlushMetrics"})
        total = 0
        with open(self.metrics_path) as f:
            for line in f:
                if line.strip():
                    total += json.loads(line).get(section, {}).get(field, 0)
        return total

    def check_alive(self, what):
        """wisp still runs and its API answers."""
        check_vm(self.proc.poll() is None, f"wisp ended after {what}", self)
        status, reply = self.request("GET", "/")
        check_vm(status == 200 and reply.get("state") == "Running",
                 f"after {what} GET / gave {status} {reply}", self)


def check_vm(condition, message, vm):
    if not condition:
        raise AssertionError(message + "\n" + vm.describe())


@contextlib.contextmanager
def small_tmpfs(size_kib):
    """A tmpfs of size_kib, mounted for the test alone."""
    directory = tempfile.mkdtemp(prefix="wisp-full-", dir=SOCKET_DIR)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700",
                    "wisp-faults", directory], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", directory], check=False)
        os.rmdir(directory)


def fill(directory):
    """Writes a file until the file system is full; returns its path."""
    path = os.path.join(directory, "filler")
    chunk = b"\xee" * 65536
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as err:
            if err.errno != 28:  # ENOSPC
                raise
    return path


def _disk_full(env, engine):
    earlier = os.urandom(512 * 1024)
    # The guest writes 1 MiB at 8 MiB: the sparse image needs new blocks for it.
    command = ("head -c 1048576 /dev/urandom > /tmp/new; md5sum /tmp/new; "
               "dd if=/tmp/new of=/dev/vda bs=65536 seek=128 oflag=direct "
               "&& echo first-write-ok || echo first-write-failed; "
               "echo earlier $(dd if=/dev/vda bs=65536 count=8 iflag=direct 2>/dev/null "
               "| md5sum); echo waiting-for-space; read go; "
               "dd if=/tmp/new of=/dev/vda bs=65536 seek=128 oflag=direct "
               "&& echo second-write-ok || echo second-write-failed; "
               "dd if=/dev/vda of=/tmp/back bs=65536 skip=128 count=16 iflag=direct; "
               "cmp /tmp/new /tmp/back && echo read-back-same; echo guest-done")
    with small_tmpfs(4096) as fs, tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        image = os.path.join(fs, "disk.img")
        with open(image, "wb") as f:
            f.write(earlier)
            f.truncate(32 * 1024 * 1024)
        filler = fill(fs)
        drive = {"drive_id": "data", "path_on_host": image, "is_root_device": False,
                 "is_read_only": False, "io_engine": engine}
        with FaultVm(env, tmp, drives=[drive], command=command) as vm:
            vm.wait_for("waiting-for-space", timeout=240)
            check_vm("first-write-failed" in vm.console and "first-write-ok" not in vm.console,
                     f"{engine}: a write to a full file system should fail in the guest", vm)
            check_vm(f"earlier {hashlib.md5(earlier).hexdigest()}" in vm.console,
                     f"{engine}: the data written before the disk filled up changed", vm)
            vm.check_alive("the write failures")
            fails = vm.metric("block_data", "execute_fails")
            check_vm(fails >= 1, f"{engine}: block execute_fails is {fails}", vm)
            check_vm("No space left on device" in vm.stderr,
                     f"{engine}: wisp should log why the write failed", vm)
            os.unlink(filler)
            vm.send("go")
            vm.wait_for("guest-done", timeout=120)
            check_vm("second-write-ok" in vm.console and "read-back-same" in vm.console,
                     f"{engine}: writing after space was freed failed", vm)
            status = vm.wait(timeout=120)
            check_vm(status == 0, f"{engine}: wisp should exit 0 when the guest ends, got "
                     f"{status}", vm)
            with open(image, "rb") as f:
                data = f.read(512 * 1024)
                f.seek(8 * 1024 * 1024)
                written = hashlib.md5(f.read(1024 * 1024)).hexdigest()
            check_vm(data == earlier, f"{engine}: the image's earlier data changed", vm)
            check_vm(f"{written}  /tmp/new" in vm.console,
                     f"{engine}: the image does not hold the guest's second write", vm)
            print(f"# disk full, {engine}: {fails} failed requests counted", flush=True)


def test_full_file_system_fails_writes_with_io_error_until_space_is_freed_async(env):
    _disk_full(env, "Async")


def test_full_file_system_fails_writes_with_io_error_until_space_is_freed_sync(env):
    _disk_full(env, "Sync")


def test_truncated_image_fails_reads_past_its_end_and_replaced_image_keeps_the_open_file(env):
    size = 8 * 1024 * 1024
    content = os.urandom(size)
    command = ("dd if=/dev/vda of=/dev/null bs=65536 skip=64 count=1 iflag=direct "
               "&& echo read-before-ok; echo truncate-now; read go; "
               "dd if=/dev/vda of=/dev/null bs=65536 skip=64 count=1 iflag=direct "
               "&& echo read-past-end-ok || echo read-past-end-failed; "
               "echo low $(dd if=/dev/vda bs=65536 count=1 iflag=direct 2>/dev/null "
               "| md5sum); "
               "echo replace-now; read go; "
               "echo WISP-AFTER-REPLACE | dd of=/dev/vda bs=4096 seek=1 conv=sync oflag=direct "
               "&& echo write-after-replace-ok; echo guest-done")
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        image = os.path.join(tmp, "disk.img")
        with open(image, "wb") as f:
            f.write(content)
        drive = {"drive_id": "data", "path_on_host": image, "is_root_device": False,
                 "is_read_only": False}
        with FaultVm(env, tmp, drives=[drive], command=command) as vm:
            vm.wait_for("truncate-now", timeout=240)
            check_vm("read-before-ok" in vm.console, "reading at 4 MiB failed at first", vm)
            os.truncate(image, 1024 * 1024)
            vm.send("go")
            vm.wait_for("replace-now", timeout=120)
            check_vm("read-past-end-failed" in vm.console
                     and "read-past-end-ok" not in vm.console,
                     "a read past the truncated image's end should fail in the guest", vm)
            check_vm(f"low {hashlib.md5(content[:65536]).hexdigest()}" in vm.console,
                     "a read inside the truncated image gave the wrong data", vm)
            vm.check_alive("the truncation")
            fails = vm.metric("block_data", "execute_fails")
            check_vm(fails >= 1, f"block execute_fails is {fails} after a failed read", vm)
            # Replaced by a rename, as a careless host script would: wisp's file is now
            # only reachable through the open fds (this one and wisp's).
            with open(image, "rb") as old:
                with open(image + ".new", "wb") as f:
                    f.truncate(size)
                os.replace(image + ".new", image)
                vm.check_alive("the rename")
                vm.send("go")
                vm.wait_for("guest-done", timeout=120)
                check_vm("write-after-replace-ok" in vm.console,
                         "the write after the rename failed", vm)
                status = vm.wait(timeout=120)
                check_vm(status == 0, f"wisp should exit 0 when the guest ends, got {status}",
                         vm)
                old.seek(4096)
                check_vm(old.read(19) == b"WISP-AFTER-REPLACE\n",
                         "the write did not reach the file wisp opened", vm)
            with open(image, "rb") as new:
                new.seek(4096)
                check_vm(new.read(19) == bytes(19), "the file renamed in was written", vm)
            print(f"# truncated image: {fails} failed requests counted", flush=True)


def _netns(*args, check=True):
    return subprocess.run(["ip", "netns", "exec", NETNS, *args], check=check,
                          capture_output=True, text=True)


@contextlib.contextmanager
def tap_in_netns():
    """A network namespace with TAP up at HOST_IP and a TCP sink on port 7001."""
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    sink = None
    try:
        _netns("ip", "link", "set", "lo", "up")
        _netns("ip", "tuntap", "add", "dev", TAP, "mode", "tap")
        _netns("ip", "addr", "add", f"{HOST_IP}/24", "dev", TAP)
        _netns("ip", "link", "set", TAP, "up")
        sink = subprocess.Popen(["ip", "netns", "exec", NETNS, "python3", "-c", SINK, HOST_IP],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        check(sink.stdout.readline().strip() == b"ready", "the TCP sink did not start")
        yield
    finally:
        if sink:
            sink.kill()
            sink.wait()
        subprocess.run(["ip", "netns", "delete", NETNS], check=False)


# Accepts connections on 7001 and reads them to the end, each in its own thread.
SINK = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7001)); s.listen(8)
print("ready", flush=True)
def drain(c):
    while c.recv(1 << 16): pass
while True:
    c, _ = s.accept(); threading.Thread(target=drain, args=(c,), daemon=True).start()
"""

GUEST_NET = (f"ip addr add {GUEST_IP}/24 dev eth0; ip link set eth0 up; "
             f"ping -c 2 -W 30 {HOST_IP} > /dev/null && echo ping-ok; "
             f"nc {HOST_IP} 7001 < /dev/zero & "
             f"ping -A -q -s 1400 {HOST_IP} > /dev/null & ")


def wisp_pid(vm):
    """wisp's pid (`ip netns exec` execs it, so normally the pid started)."""
    with open(f"/proc/{vm.proc.pid}/comm") as f:
        comm = f.read().strip()
    check_vm(comm == "wisp", f"process {vm.proc.pid} is {comm!r}, not wisp", vm)
    return vm.proc.pid


def vmm_thread_ticks(pid):
    """CPU time (user + system, clock ticks) of wisp's VMM thread: the main thread."""
    with open(f"/proc/{pid}/task/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_deleted_tap_is_dropped_counted_and_does_not_spin(env):
    command = (GUEST_NET + "echo traffic-flowing; read go; "
               "kill $(pidof nc) $(pidof ping); echo quiet; read go; echo guest-done")
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp, tap_in_netns():
        net = {"iface_id": "eth0", "host_dev_name": TAP}
        with FaultVm(env, tmp, nets=[net], command=command,
                     prefix=("ip", "netns", "exec", NETNS)) as vm:
            vm.wait_for("traffic-flowing", timeout=240)
            check_vm("ping-ok" in vm.console, "the guest could not reach the host", vm)
            deadline = time.monotonic() + 120
            while vm.metric("net_eth0", "tx_bytes_count") < 1024 * 1024:
                check_vm(time.monotonic() < deadline, "no traffic from the guest", vm)
                time.sleep(0.5)
            _netns("ip", "link", "del", TAP)
            # The guest goes on sending (TCP retransmissions, pings) into the dead TAP.
            deadline = time.monotonic() + 120
            while vm.metric("net_eth0", "tx_fails") == 0:
                check_vm(time.monotonic() < deadline,
                         "the guest's frames to the deleted TAP were not counted", vm)
                time.sleep(0.5)
            tap_fails = vm.metric("net_eth0", "tap_write_fails")
            check_vm(tap_fails >= 1, f"net tap_write_fails is {tap_fails}", vm)
            check_vm(f"TAP {TAP} hung up or went away" in vm.stderr,
                     "wisp should log that the TAP went away", vm)
            vm.check_alive("the TAP's deletion")
            vm.send("go")
            vm.wait_for("quiet", timeout=120)
            pid = wisp_pid(vm)
            before, start = vmm_thread_ticks(pid), time.monotonic()
            time.sleep(3)
            used = (vmm_thread_ticks(pid) - before) / CLK_TCK
            wall = time.monotonic() - start
            print(f"# deleted TAP: the VMM thread used {used:.2f} s of CPU in {wall:.1f} s "
                  f"with the guest quiet; tx_fails {vm.metric('net_eth0', 'tx_fails')}",
                  flush=True)
            check_vm(used < wall / 2, f"the VMM thread used {used:.2f} s of CPU in "
                     f"{wall:.1f} s: it spins on the dead TAP", vm)
            vm.check_alive("the TAP's deletion, with the guest quiet")
            vm.send("go")
            vm.wait_for("guest-done", timeout=120)
            status = vm.wait(timeout=120)
            check_vm(status == 0, f"wisp should exit 0 when the guest ends, got {status}", vm)


RECORD = re.compile(r"wrote-([0-9]+)\r?\n")


def test_sigterm_during_disk_and_network_traffic_keeps_every_completed_write(env):
    # Records in 4 KiB blocks 1, 2, ...: each is announced after its O_DIRECT write
    # returned, while a background writer keeps 1 MiB requests in flight and the network
    # is busy. (4 KiB: busybox dd's buffer is page aligned only from a page up; below,
    # O_DIRECT fails and dd quietly writes through the guest's page cache.)
    command = (GUEST_NET +
               "(while true; do dd if=/dev/zero of=/dev/vda bs=1048576 seek=32 count=16 "
               "oflag=direct 2>/dev/null; done) & "
               "i=0; while [ $i -lt 7000 ]; do i=$((i+1)); "
               "echo REC$i | dd of=/dev/vda bs=4096 seek=$i conv=sync oflag=direct "
               "2>/dev/null && echo wrote-$i; done; echo records-ended")
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp, tap_in_netns():
        image = os.path.join(tmp, "disk.img")
        with open(image, "wb") as f:
            f.truncate(64 * 1024 * 1024)
        drive = {"drive_id": "data", "path_on_host": image, "is_root_device": False,
                 "is_read_only": False}
        net = {"iface_id": "eth0", "host_dev_name": TAP}
        with FaultVm(env, tmp, drives=[drive], nets=[net], command=command,
                     prefix=("ip", "netns", "exec", NETNS)) as vm:
            vm.wait_for("wrote-100", timeout=300)
            check_vm("ping-ok" in vm.console, "the guest could not reach the host", vm)
            vm.proc.send_signal(signal.SIGTERM)
            status = vm.wait(timeout=120)
            check_vm(status == 128 + signal.SIGTERM,
                     f"wisp should exit {128 + signal.SIGTERM} on SIGTERM, got {status}", vm)
            check_vm("received signal 15" in vm.stderr, "wisp should log the signal", vm)
            records = [int(n) for n in RECORD.findall(vm.console)]
            missing = []
            with open(image, "rb") as f:
                for n in records:
                    f.seek(n * 4096)
                    if not f.read(4096).startswith(f"REC{n}\n".encode()):
                        missing.append(n)
            print(f"# SIGTERM: {len(records)} records reported written, the last {records[-1]}",
                  flush=True)
            if missing:
                with open(image, "rb") as f:
                    f.seek(missing[0] * 4096)
                    found = f.read(4096)
                    f.seek(0)
                    head = f.read(1 << 20)
                where = head.find(f"REC{missing[0]}\n".encode())
                check_vm(False, f"records the guest saw written are not in the image: "
                         f"{missing[:20]}; block {missing[0]} holds {found[:16]!r}, the "
                         f"record is at byte {where}", vm)
