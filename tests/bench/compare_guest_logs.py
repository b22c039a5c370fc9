#!/usr/bin/env python3
"""Guest log comparison: the same kernel and initramfs under wisp and under QEMU microvm.

Boots each kernel once per VMM in the same run, with the same vCPUs, memory, a virtio
disk holding a known block and a virtio-net interface on a TAP the host answers on, and
has the guest print its whole kernel log (`dmesg -r`, with the levels) before it
reboots. Then prints, per kernel, the kernel's warning and error lines (level warning or
worse, or a line that says warning, error, fail, bug, problem, mismatch or invalid) that
appear under wisp and not under QEMU, and the other way round, after taking out what
differs between any two boots (timestamps, numbers, addresses).

Kernels:
  stock     Debian's cloud kernel (the one ci/kvm-harness caches, with its virtio
            modules loaded from the initramfs), wisp with ACPI (its default) against
            QEMU `-M microvm,acpi=on`
  stripped  wisp's own guest kernel (no ACPI, no modules), wisp's default against
            QEMU `-M microvm,acpi=off` (the MP table and command-line devices)

Needs /dev/kvm and root (TAP devices): run it through ci/with-kvm.sh, as
`make compare-guest-logs` does. Exits 1 if a boot failed (no log), else 0: the
differences are for a person to read, not a verdict.

Usage: tests/bench/compare_guest_logs.py [--vcpus 2] [--kernels stock,stripped]
                                         [--show-all] [--json FILE]
"""
import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MKCPIO = os.path.join(HERE, "..", "..", "guest", "mkcpio.py")
# Dependency order (the kernel's modules.dep): each after what it needs.
STOCK_MODULES = ["kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko",
                 "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
                 "kernel/drivers/virtio/virtio_mmio.ko", "kernel/drivers/block/virtio_blk.ko",
                 "kernel/drivers/net/virtio_net.ko"]
DISK_TOKEN = "WISP-LOGCMP-DISK-0123456"
HOST_IP, GUEST_IP = "10.0.77.1", "10.0.77.2"
TAP = "wlogcmp0"
BASE_CMDLINE = "console=ttyS0 panic=-1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd quiet"
# A kernel log line as `dmesg -r` prints it: <level>[ seconds] text
RAW_LINE = re.compile(r"^<(\d+)>(?:\[\s*[0-9.]+\]\s?)?(.*)$")
WORDS = re.compile(r"warn|error|fail|bug|problem|mismatch|invalid", re.I)


def guest_command(load_modules):
    steps = []
    if load_modules:
        steps.append("for m in " + " ".join(os.path.basename(m)[:-3] for m in STOCK_MODULES)
                     + "; do insmod /lib/modules/$m.ko; done; sleep 1")
    steps += ["echo cpus=$(nproc)",
              "echo disk=$(head -c 24 /dev/vda)",
              f"ip addr add {GUEST_IP}/24 dev eth0", "ip link set eth0 up",
              f"ping -c 1 -W 10 {HOST_IP} >/dev/null && echo ping-$((6 * 7))-ok",
              # Markers the shell builds: the kernel's log has the command line's text.
              "echo log-$((6 * 7))-begin", "dmesg -r", "echo log-$((6 * 7))-end", "reboot -f"]
    return "; ".join(steps)


def stock_kernel():
    cache = os.path.join(os.environ.get("WISP_CACHE", os.path.expanduser("~/.cache/wisp")),
                         "harness")
    with open(os.path.join(cache, "kernel-version")) as f:
        version = f.read().strip()
    root = os.path.join(cache, "unpacked")
    return (os.path.join(root, "boot", f"vmlinuz-{version}"),
            os.path.join(root, "lib", "modules", version), version)


def initrd_with_modules(busybox_initrd, moddir, path):
    lines = ["dir /lib 0755 0 0", "dir /lib/modules 0755 0 0"]
    for module in STOCK_MODULES:
        lines.append(f"file /lib/modules/{os.path.basename(module)} "
                     f"{os.path.join(moddir, module)} 0644 0 0")
    cpio = subprocess.run(["python3", MKCPIO], input="\n".join(lines).encode(),
                          stdout=subprocess.PIPE, check=True).stdout
    with open(busybox_initrd, "rb") as base, open(path, "wb") as out:
        out.write(base.read())
        out.write(gzip.compress(cpio, mtime=0))
    return path


def run(argv, timeout):
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)
        return proc.returncode, proc.stdout.decode(errors="replace"), \
            proc.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        return None, (e.stdout or b"").decode(errors="replace"), \
            (e.stderr or b"").decode(errors="replace")


def boot(vmm, args, kernel, initrd, disk, load_modules, acpi, qemu_mmio=None):
    command = guest_command(load_modules)
    base = " ".join(p for p in BASE_CMDLINE.split() if p not in args.drop_param)
    if vmm == "wisp":
        cmdline = f'{base} reboot=k -- /bin/sh -c "{command}"'
        argv = [args.wisp, "--kernel", kernel, "--initrd", initrd, "--vcpus", str(args.vcpus),
                "--mem-mib", str(args.mem_mib), "--cmdline", cmdline,
                "--drive", f"id=data,path={disk}", "--net", f"id=eth0,tap={TAP}"]
    else:
        # Without ACPI, QEMU microvm appends its virtio_mmio.device= parameters to the
        # command line, after ` -- ` where the kernel gives them to init: they are then
        # taken from a first boot and put before it, with auto-kernel-cmdline=off.
        machine = "microvm,acpi=on" if acpi else "microvm,acpi=off"
        if qemu_mmio:
            base += " " + " ".join(qemu_mmio)
            machine += ",auto-kernel-cmdline=off"
        cmdline = f'{base} reboot=t -- /bin/sh -c "{command}"'
        argv = [args.qemu, "-M", machine, "-accel", "kvm",
                "-cpu", "host", "-m", str(args.mem_mib), "-smp", str(args.vcpus),
                "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
                "-serial", "stdio", "-display", "none", "-kernel", kernel, "-initrd", initrd,
                "-append", cmdline,
                "-drive", f"id=data,file={disk},format=raw,if=none",
                "-device", "virtio-blk-device,drive=data",
                "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no,vhost=off",
                "-device", "virtio-net-device,netdev=n0"]
    status, console, stderr = run(argv, args.timeout)
    if vmm == "qemu" and not acpi and not qemu_mmio:
        line = re.search(r"Kernel command line: ([^\r\n]*)", console)
        params = re.findall(r"virtio_mmio\.device=\S+", line.group(1).split(" -- ")[-1]) \
            if line and " -- " in line.group(1) else []
        if params:
            return boot(vmm, args, kernel, initrd, disk, load_modules, acpi, params)
    log = console.split("log-42-begin", 1)[-1].split("log-42-end", 1)[0] \
        if "log-42-end" in console else ""
    return {"vmm": vmm, "status": status, "console": console, "stderr": stderr[-3000:],
            "log": log, "cpus": re.search(r"cpus=(\d+)", console),
            "disk": f"disk={DISK_TOKEN}" in console, "ping": "ping-42-ok" in console}


def normalise(text):
    text = re.sub(r"0x[0-9a-fA-F]+", "0x#", text)
    text = re.sub(r"\b[0-9a-fA-F]{8,}\b", "#", text)
    text = re.sub(r"\d+", "#", text)
    return text.strip()


def notable(log):
    """{normalised line: first original line} of the warnings and errors in a raw log."""
    out = {}
    for line in log.splitlines():
        match = RAW_LINE.match(line.strip())
        if not match:
            continue
        level, text = int(match.group(1)) & 7, match.group(2)
        # The command line and init's arguments (debug level) hold the guest's command,
        # whose module names (failover) are no complaint.
        if level == 7 or "ommand line:" in text:
            continue
        if level <= 4 or WORDS.search(text):
            out.setdefault(normalise(text), f"<{level}> {text}")
    return out


def setup_tap():
    subprocess.run(["ip", "link", "del", TAP], stderr=subprocess.DEVNULL)
    for cmd in (["ip", "tuntap", "add", "dev", TAP, "mode", "tap"],
                ["ip", "addr", "add", f"{HOST_IP}/24", "dev", TAP],
                ["ip", "link", "set", TAP, "up"]):
        subprocess.run(cmd, check=True)


def compare(name, results, show_all):
    wisp, qemu = results["wisp"], results["qemu"]
    print(f"\n=== {name}: wisp vs QEMU microvm")
    for r in (wisp, qemu):
        cpus = r["cpus"].group(1) if r["cpus"] else "?"
        print(f"  {r['vmm']:<5} exit status {r['status']}, cpus={cpus}, disk read "
              f"{'ok' if r['disk'] else 'FAILED'}, ping {'ok' if r['ping'] else 'FAILED'}, "
              f"log {len(r['log'].splitlines())} lines")
    if not wisp["log"] or not qemu["log"] or not all(r["disk"] and r["ping"] for r in (wisp, qemu)):
        for r in (wisp, qemu):
            if not r["log"] or not r["disk"] or not r["ping"]:
                tail = "\n".join(r["console"].splitlines()[-20:])
                print(f"  {r['vmm']}: no kernel log, disk or ping; console tail:\n{tail}\n"
                      f"  stderr:\n{r['stderr']}")
    if not wisp["log"] or not qemu["log"]:
        return None
    w, q = notable(wisp["log"]), notable(qemu["log"])
    only_wisp = [w[k] for k in w if k not in q]
    only_qemu = [q[k] for k in q if k not in w]
    print(f"  warning/error lines under wisp and not under QEMU ({len(only_wisp)}):")
    for line in only_wisp or ["(none)"]:
        print(f"    {line}")
    print(f"  warning/error lines under QEMU and not under wisp ({len(only_qemu)}):")
    for line in only_qemu or ["(none)"]:
        print(f"    {line}")
    both = [w[k] for k in w if k in q]
    print(f"  under both ({len(both)}):")
    for line in both or ["(none)"]:
        print(f"    {line}")
    if show_all:
        for r in (wisp, qemu):
            print(f"--- {r['vmm']} kernel log\n{r['log']}")
    return {"only_wisp": only_wisp, "only_qemu": only_qemu, "both": both,
            "boots": {k: {x: v[x] for x in ("status", "disk", "ping", "log")}
                      for k, v in results.items()}}


def main():
    kernel_dir = os.environ.get("WISP_KERNEL_DIR")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vcpus", type=int, default=2)
    parser.add_argument("--mem-mib", type=int, default=256)
    parser.add_argument("--kernels", default="stock,stripped")
    parser.add_argument("--wisp", default=os.environ.get("WISP_BIN"))
    parser.add_argument("--vmlinux", default=os.path.join(kernel_dir, "vmlinux")
                        if kernel_dir else None)
    parser.add_argument("--initrd-busybox", default=os.environ.get("WISP_INITRD_BUSYBOX"))
    parser.add_argument("--qemu", default="qemu-system-x86_64")
    parser.add_argument("--timeout", type=float, default=400)
    parser.add_argument("--show-all", action="store_true", help="print the whole logs too")
    parser.add_argument("--drop-param", action="append", default=[], metavar="PARAM",
                        help="leave PARAM (e.g. i8042.nopnp) out of the command line")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    for name in ("wisp", "vmlinux", "initrd_busybox"):
        if not getattr(args, name) or not os.path.isfile(getattr(args, name)):
            sys.exit(f"compare_guest_logs: --{name.replace('_', '-')} missing "
                     "(run it through make compare-guest-logs)")
    if not shutil.which(args.qemu):
        sys.exit(f"compare_guest_logs: {args.qemu} not found")

    report, failed = {}, False
    setup_tap()
    try:
        with tempfile.TemporaryDirectory(prefix="wisp-logcmp-") as tmp:
            disk = os.path.join(tmp, "disk.img")
            with open(disk, "wb") as f:
                f.write(DISK_TOKEN.encode() + b"\0" * (1024 * 1024 - len(DISK_TOKEN)))
            for name in args.kernels.split(","):
                if name == "stock":
                    kernel, moddir, version = stock_kernel()
                    initrd = initrd_with_modules(args.initrd_busybox, moddir,
                                                 os.path.join(tmp, "initrd-stock.gz"))
                    label, load, acpi = f"Debian {version}, {args.vcpus} vCPUs", True, True
                elif name == "stripped":
                    kernel, initrd = args.vmlinux, args.initrd_busybox
                    label, load, acpi = f"stripped guest, {args.vcpus} vCPUs", False, False
                else:
                    sys.exit(f"compare_guest_logs: unknown kernel {name!r}")
                results = {vmm: boot(vmm, args, kernel, initrd, disk, load, acpi)
                           for vmm in ("wisp", "qemu")}
                report[name] = compare(label, results, args.show_all)
                failed |= report[name] is None
    finally:
        subprocess.run(["ip", "link", "del", TAP], stderr=subprocess.DEVNULL)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
