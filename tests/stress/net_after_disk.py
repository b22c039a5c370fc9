#!/usr/bin/env python3
"""Reproducer for a stall seen in make bench-io (issue 3): boots wisp again and again
(through the API) with a data drive and a TAP in a network namespace; the guest does some
O_DIRECT disk I/O, then sends 16 MiB over TCP to the host. A boot that does not finish
within 150 s is a stall: the script prints the device's metrics, the virtqueue state and
the threads' stacks (gdb), the interrupt controllers and the guest's stack, then goes on
(WISP_STRESS_TIMEOUT=S changes the 150 s, to try the dump). Under nested KVM about one
wisp boot in 15 fails: the guest is resumed with the L1 kernel's own rip, rsp and CR3
(README, "I/O benchmark"); the dump says so when the rip is an L1 kernel symbol. Not part
of make test.

    WISP_BIN=... WISP_KERNEL_DIR=... (as make test sets them) \
        ci/with-kvm.sh python3 tests/stress/net_after_disk.py [BOOTS] [wisp|qemu|both]

With `qemu` the same guest runs under QEMU microvm (the peer) instead, `both` alternates
the two in the same machine; a stall under QEMU dumps its view of the vCPU and local APIC
through its monitor.
"""
import json, os, socket, subprocess, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from apitest import ApiVm, guest_cmdline
from wisptest import Env
env = Env.from_environment()
NS = "wisp-stress"
HOST, GUEST = "172.30.79.1", "172.30.79.2"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10
MODE = sys.argv[2] if len(sys.argv) > 2 else "wisp"  # wisp, qemu, or both (alternating)
assert MODE in ("wisp", "qemu", "both"), MODE
subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
subprocess.run(["ip", "netns", "add", NS], check=True)
def ns(*a): subprocess.run(["ip", "netns", "exec", NS, *a], check=True)
ns("ip", "link", "set", "lo", "up"); ns("ip", "tuntap", "add", "dev", "st0", "mode", "tap")
ns("ip", "addr", "add", f"{HOST}/24", "dev", "st0"); ns("ip", "link", "set", "st0", "up")
server = subprocess.Popen(["ip", "netns", "exec", NS, "python3", "-c", r"""
import socket, sys, threading, time
# A thread per connection, with a timeout: the connection of a guest that died mid-way
# never ends, and must not hold up the next boot's.
def serve(c):
    n = 0; t = time.monotonic(); c.settimeout(120)
    try:
        while True:
            b = c.recv(1 << 20)
            if not b: break
            n += len(b)
    except OSError as e:
        print(f"connection dropped after {n} bytes: {e}", flush=True)
    print(f"got {n} in {time.monotonic()-t:.2f}s", flush=True); c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7001)); s.listen(4)
print("ready", flush=True)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
""", HOST], stdout=subprocess.PIPE, text=True)
assert server.stdout.readline().strip() == "ready"
def pump():
    for line in server.stdout: print("host:", line.strip(), flush=True)
threading.Thread(target=pump, daemon=True).start()
data = "/dev/shm/stress-data.img"
with open(data, "wb") as f:
    f.write(bytes(16 * 1024 * 1024))
# Each step only if the one before worked: a guest without its devices must not look fine.
cmd = ("dd if=/dev/zero of=/dev/vda bs=4096 count=2048 oflag=direct 2>/dev/null && "
       "dd if=/dev/vda of=/dev/null bs=4096 count=2048 iflag=direct 2>/dev/null && echo disk-done && "
       f"ip addr add {GUEST}/24 dev eth0 && ip link set eth0 up && "
       f"dd if=/dev/zero bs=1048576 count=16 2>/dev/null | nc {HOST} 7001 && echo done-net")
# WISP_STRESS_WORKLOAD=disk: no network at all, the disk phase ten times instead (does the
# guest fail without virtio-net?).
if os.environ.get("WISP_STRESS_WORKLOAD") == "disk":
    cmd = ("for i in 1 2 3 4 5 6 7 8 9 10; do "
           "dd if=/dev/zero of=/dev/vda bs=4096 count=2048 oflag=direct 2>/dev/null && "
           "dd if=/dev/vda of=/dev/null bs=4096 count=2048 iflag=direct 2>/dev/null || exit 1; "
           "done && echo disk-done && echo done-net")
# WISP_STRESS_TRY_DUMP=1: the guest sleeps first and the boot counts as stalled after 10 s,
# to try the dump on a live guest.
TIMEOUT = 600 if os.environ.get("WISP_STRESS_WORKLOAD") == "disk" else 150
if os.environ.get("WISP_STRESS_TRY_DUMP"):
    cmd, TIMEOUT = "sleep 600; " + cmd, 10
metrics = "/tmp/wisp-run/stress-metrics.json"


def symbols(lines):
    """The text symbols of `nm -n` or /proc/kallsyms output, as sorted (address, name,
    module) tuples (module: kallsyms' "[kvm_amd]", or "")."""
    table = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "tTwW" and int(parts[0], 16):
            table.append((int(parts[0], 16), parts[2], " ".join(parts[3:])))
    return sorted(table)


def symbolize(table, addr, reach=None):
    """`addr` as "symbol+0xoffset [module]", or "?" if no symbol precedes it (within
    `reach` bytes, when given)."""
    import bisect
    i = bisect.bisect_right(table, (addr, "~")) - 1
    if i < 0 or (reach is not None and addr - table[i][0] >= reach):
        return "?"
    start, name, module = table[i]
    return f"{name}+0x{addr - start:x}" + (f" {module}" if module else "")


def guest_walk(pid, text):
    """Reads the stalled guest's memory through /proc/PID/mem: the stack under rsp (kernel
    text addresses symbolized) and the IDT's page-fault gate."""
    import re, struct
    host, size = map(int, re.search(r"MEM (\d+) (\d+)", text).groups())
    rip, rsp, rbp = map(int, re.search(r"REGS (\d+) (\d+) (\d+)", text).groups())
    cr2, cr3, idt = map(int, re.search(r"SREGS (\d+) (\d+) (\d+)", text).groups())
    mem = open(f"/proc/{pid}/mem", "rb")
    def phys(gpa, n):
        assert gpa + n <= size, hex(gpa)
        mem.seek(host + gpa)
        return mem.read(n)
    def q(gpa):
        return struct.unpack("<Q", phys(gpa, 8))[0]
    def virt(va):
        table = cr3 & ~0xfff
        for level, shift in ((4, 39), (3, 30), (2, 21), (1, 12)):
            entry = q(table + ((va >> shift) & 511) * 8)
            if not entry & 1:
                return None
            if level in (3, 2) and entry & 0x80:
                return (entry & ((1 << 52) - 1) & ~((1 << shift) - 1)) + (va & ((1 << shift) - 1))
            table = entry & 0x000ffffffffff000
        return table + (va & 0xfff)
    # A guest register holding an address of the machine this script runs in (the L1
    # kernel and its modules) came from the L1 kernel's own state: the guest cannot know
    # those addresses.
    with open("/proc/kallsyms") as kallsyms:
        l1_rip = symbolize(symbols(kallsyms), rip, reach=0x10000)
    if l1_rip != "?" or cr3 + 4096 > size:
        print(f"NOT THE GUEST'S STATE: rip 0x{rip:x} is {l1_rip} in this (L1) machine's "
              f"kernel, cr3 0x{cr3:x} is {'outside' if cr3 + 4096 > size else 'inside'} "
              f"the guest's {size >> 20} MiB", flush=True)
        return
    table = symbols(subprocess.run(["nm", "-n", env.vmlinux], capture_output=True,
                                   text=True).stdout.splitlines())
    print(f"rip 0x{rip:x} ({symbolize(table, rip)}) rsp 0x{rsp:x} rbp 0x{rbp:x} cr2 0x{cr2:x} "
          f"cr3 0x{cr3:x} idt 0x{idt:x}; rip maps to {virt(rip)}", flush=True)
    gate = virt(idt + 14 * 16)
    if gate is not None:
        lo, hi = struct.unpack("<QQ", phys(gate, 16))
        handler = (lo & 0xffff) | ((lo >> 32) & 0xffff0000) | ((hi & 0xffffffff) << 32)
        print(f"#PF gate -> 0x{handler:x} ({symbolize(table, handler)})", flush=True)
    for k in range(64):
        pa = virt(rsp + 8 * k)
        if pa is None:
            print(f"stack 0x{rsp + 8 * k:x} not mapped", flush=True)
            break
        word = q(pa)
        if 0xffffffff81000000 <= word < 0xffffffff83000000:
            print(f"  [rsp+0x{8 * k:x}] 0x{word:x} {symbolize(table, word)}", flush=True)


def host_side():
    """The TAP's counters and the host end of the TCP connection (window, retransmits)."""
    for argv in (["ip", "-s", "link", "show", "st0"], ["ss", "-tnie"]):
        done = subprocess.run(["ip", "netns", "exec", NS, *argv], capture_output=True, text=True)
        print(done.stdout, done.stderr, flush=True)


def qemu_devices():
    return ["-drive", f"id=data,file={data},format=raw,if=none,cache=writeback,aio=io_uring",
            "-device", "virtio-blk-device,drive=data",
            "-netdev", "tap,id=n0,ifname=st0,script=no,downscript=no,vhost=off",
            "-device", "virtio-net-device,netdev=n0"]


QEMU_BASE = ["ip", "netns", "exec", NS, "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host",
             "-m", "512", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
             "-no-reboot", "-serial", "stdio", "-display", "none"]


def qemu_mmio_params():
    """microvm appends its virtio_mmio.device= parameters after ` -- `, where the kernel
    hands them to init: they are read from a probe boot's kernel command line and given
    before ` -- ` instead, with auto-kernel-cmdline=off (as tests/bench/bench_io.py does)."""
    proc = subprocess.Popen(QEMU_BASE + ["-M", "microvm,acpi=off", "-kernel", env.vmlinux,
                                         "-append", "console=ttyS0 reboot=t panic=-1"] + qemu_devices(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = b""
    while b"Kernel command line:" not in out or not out.split(b"Kernel command line:")[1].count(b"\n"):
        chunk = proc.stdout.read1(4096)
        if not chunk:
            break
        out += chunk
    proc.kill()
    proc.wait()
    line = out.split(b"Kernel command line:")[1].split(b"\n")[0].decode()
    params = [p for p in line.split() if p.startswith("virtio_mmio.device=")]
    assert len(params) == 2, line
    return " ".join(params)


def qemu_boot(i):
    monitor = "/tmp/wisp-run/stress-monitor.sock"
    if os.path.exists(monitor):
        os.unlink(monitor)
    cmdline = guest_cmdline(cmd, extra=MMIO).replace("reboot=k", "reboot=t")
    proc = subprocess.Popen(QEMU_BASE + ["-M", "microvm,acpi=off,auto-kernel-cmdline=off",
                                         "-monitor", f"unix:{monitor},server,nowait",
                                         "-kernel", env.vmlinux, "-initrd", env.initrd_busybox,
                                         "-append", cmdline] + qemu_devices(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = bytearray()
    def read():
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            out.extend(chunk)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 150
    while b"done-net" not in out and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if b"done-net" in out:
        proc.wait(timeout=60)
        print(f"boot {i} ok", flush=True)
        return
    print(f"STALL at boot {i} (rc {proc.poll()}): {bytes(out[-800:]).decode(errors='replace')}", flush=True)
    host_side()
    if proc.poll() is None:
        with socket.socket(socket.AF_UNIX) as mon:
            mon.connect(monitor)
            for command in ("stop", "info registers", "info lapic", "info pic", "x/4i $pc"):
                mon.sendall(command.encode() + b"\n")
                time.sleep(1)
            mon.settimeout(2)
            text = b""
            try:
                while True:
                    chunk = mon.recv(65536)
                    if not chunk:
                        break
                    text += chunk
            except socket.timeout:
                pass
            print(text.decode(errors="replace")[-8000:], flush=True)
        proc.kill()
    proc.wait()


MMIO = qemu_mmio_params() if MODE != "wisp" else ""
print("QEMU's devices:", MMIO, flush=True)
for i in range(1, N + 1):
    print(time.strftime("%H:%M:%S"), end=" ", flush=True)
    if MODE == "qemu" or (MODE == "both" and i % 2 == 0):
        print("qemu:", end=" ", flush=True)
        qemu_boot(i)
        continue
    print("wisp:", end=" ", flush=True)
    if os.path.exists(metrics):
        os.unlink(metrics)
    with ApiVm(env, args=("--log-level", "info"), prefix=("ip", "netns", "exec", NS), name="stress") as vm:
        vm.ok("PUT", "/metrics", {"metrics_path": metrics})
        vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux, "initrd_path": env.initrd_busybox,
                                      "boot_args": guest_cmdline(cmd)})
        vm.ok("PUT", "/drives/data", {"drive_id": "data", "path_on_host": data, "is_root_device": False})
        vm.ok("PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "st0"})
        vm.ok("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 512})
        vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})
        try:
            vm.wait_for("done-net", timeout=TIMEOUT)
            vm.wait(timeout=60)
            print(f"boot {i} ok", flush=True)
        except AssertionError as e:
            # What the host (L1) kernel said about it, if anything.
            print("dmesg:", subprocess.run(["dmesg"], capture_output=True, text=True).stdout[-3000:],
                  flush=True)
            if vm.proc.poll() is not None:
                print(f"ENDED at boot {i} (status {vm.proc.returncode}): {vm.stderr[-1500:]}"
                      f"console: {vm.console[-300:]}", flush=True)
                continue
            print(f"STALL at boot {i}: {vm.stderr[-500:]}", flush=True)
            vm.ok("PUT", "/actions", {"action_type": "FlushMetrics"})
            lines = [json.loads(l) for l in open(metrics)]
            tot = {}
            for l in lines:
                for k, v in l.get("net_eth0", {}).items(): tot[k] = tot.get(k, 0) + v
            print("net_eth0 totals:", tot, flush=True)
            pid = vm.proc.pid
            print(vm.describe()[-3000:], flush=True)
            # The net device's queues: our state, then the ring indices in guest memory.
            gdb = ["gdb", "-p", str(pid), "-batch", "-ex", "set print pretty on",
                   "-ex", "set $m = (char *)'main'::ctl.vm.mem.regions[0].host"]
            for q, name in ((0, "rx"), (1, "tx")):
                state = f"'main'::ctl.vm.nets[0]->vdev.queues[{q}].state"
                gdb += ["-ex", f"p {state}", "-ex", f"set $q = &{state}",
                        "-ex", f"printf \"{name} avail.idx %u used_event %u used.idx %u avail_event %u\\n\", "
                        "*(unsigned short *)($m + $q->avail_gpa + 2), "
                        "*(unsigned short *)($m + $q->avail_gpa + 4 + 2 * $q->size), "
                        "*(unsigned short *)($m + $q->used_gpa + 2), "
                        "*(unsigned short *)($m + $q->used_gpa + 4 + 8 * $q->size)"]
            gdb += ["-ex", "p 'main'::ctl.vm.nets[0]->vdev.interrupt_status",
                    "-ex", "thread apply all bt 6"]
            g = subprocess.run(gdb, capture_output=True, text=True)
            print(g.stdout[-15000:], g.stderr[-2000:], flush=True)
            host_side()
            # Does the vCPU still leave KVM_RUN? Its exit counters 2 s apart.
            for _ in range(2):
                g = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex",
                                    "p 'main'::ctl.vm.vcpus[0].exits"], capture_output=True, text=True)
                print("vcpu exits:", [l for l in g.stdout.splitlines() if l.startswith("$")], flush=True)
                time.sleep(2)
            # The interrupt path, with the vCPU out of KVM_RUN: IOAPIC redirection entries
            # (mask bit 16, remote IRR bit 14), the LAPIC's ISR (0x100..) and IRR (0x200..),
            # the registers, pending events and sregs; MEM, REGS and SREGS lines for
            # guest_walk().
            vm.ok("PATCH", "/vm", {"state": "Paused"})
            fd = "'main'::ctl.vm.vcpus[0].fd"
            gdb = ["gdb", "-p", str(pid), "-batch", "-ex", "set $b = (unsigned char *)malloc(4096)",
                   "-ex", "p 'main'::ctl.vm.virtio", "-ex", "set *(unsigned int *)$b = 2",
                   "-ex", "p (int)ioctl('main'::ctl.vm.kvm.vm_fd, 0xC208AE62, $b)",
                   "-ex", "x/wx $b+24", "-ex", "x/24gx $b+32",
                   "-ex", f"p (int)ioctl({fd}, 0x8400AE8E, $b)", "-ex", "x/64wx $b+0x100",
                   "-ex", "x/32wx $b+0x200",
                   "-ex", f"p (int)ioctl({fd}, 0x8090AE81, $b)", "-ex", "x/18gx $b",
                   "-ex", "printf \"REGS %lu %lu %lu\\n\", *(unsigned long *)($b+128), "
                          "*(unsigned long *)($b+48), *(unsigned long *)($b+56)",
                   "-ex", f"p (int)ioctl({fd}, 0x8040AE9F, $b)", "-ex", "x/16wx $b",
                   "-ex", f"p (int)ioctl({fd}, 0x8138AE83, $b)", "-ex", "x/10gx $b+0xc0",
                   "-ex", "printf \"SREGS %lu %lu %lu\\n\", *(unsigned long *)($b+0xe8), "
                          "*(unsigned long *)($b+0xf0), *(unsigned long *)($b+0xd0)",
                   "-ex", "printf \"MEM %lu %lu\\n\", 'main'::ctl.vm.mem.regions[0].host, "
                          "'main'::ctl.vm.mem.regions[0].size"]
            g = subprocess.run(gdb, capture_output=True, text=True)
            print(g.stdout[-15000:], g.stderr[-2000:], flush=True)
            try:
                guest_walk(pid, g.stdout)
            except Exception as e:  # a diagnostic: never stop the loop
                print("guest walk failed:", repr(e), flush=True)
subprocess.run(["ip", "netns", "del", NS])
server.kill()
