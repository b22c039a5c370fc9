"""ACPI on real KVM: Debian's stock kernel (the one ci/kvm-harness caches, built with ACPI
and without virtio_mmio.device= support) finds its CPUs through the MADT and its disk
through the DSDT, and powers off and reboots through the FADT's registers; with --no-acpi
or acpi=off it falls back to the MP table. With 2 and 4 vCPUs it reads a disk and pings
the host over a TAP, and logs no CPUID complaint (XSAVE sizes, topology, WARN splats).
The stripped guest kernel (no ACPI) boots either way, its CPUID as consistent."""
import contextlib
import gzip
import os
import subprocess
import tempfile

from wisptest import check

# Loaded in dependency order (modules.dep): virtio_ring, virtio, then the transport and disk.
MODULES = ["kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
           "kernel/drivers/virtio/virtio_mmio.ko", "kernel/drivers/block/virtio_blk.ko"]
DISK_TOKEN = b"WISP-ACPI-DISK-0123456789"
# With virtio_net and what it needs (modules.dep), for the tests that use a TAP.
NET_MODULES = MODULES + ["kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko",
                         "kernel/drivers/net/virtio_net.ko"]
TAP, HOST_IP, GUEST_IP = "wacpi0", "10.0.78.1", "10.0.78.2"
# Lines a kernel prints when the CPUID it was given disagrees with itself (leaf 0xd's
# sizes, the topology leaves) or with the firmware's tables, and any WARN splat.
CPUID_COMPLAINTS = ("XSAVE consistency problem", "[Firmware Bug]", "WARNING:", "Call Trace",
                    "APIC id mismatch", "llc-sibling", "CPUID[")
# Lines the kernel prints when it disagrees with a table.
ACPI_COMPLAINTS = ("ACPI Error", "ACPI BIOS Error", "ACPI Warning", "ACPI BIOS Warning",
                   "Invalid checksum", "failed to claim resource")


def stock_kernel():
    """Debian's kernel and its module tree, as ci/kvm-harness unpacked them."""
    cache = os.path.join(os.environ.get("WISP_CACHE", os.path.expanduser("~/.cache/wisp")),
                         "harness")
    try:
        with open(os.path.join(cache, "kernel-version")) as f:
            version = f.read().strip()
    except OSError as e:
        raise AssertionError(f"Debian's kernel is not cached in {cache} ({e}): run any "
                             "command under ci/kvm-harness once to fetch it") from e
    root = os.path.join(cache, "unpacked")
    return (os.path.join(root, "boot", f"vmlinuz-{version}"),
            os.path.join(root, "lib", "modules", version))


def initrd_with_modules(env, moddir, workdir, modules=MODULES):
    """The busybox initramfs followed by a second archive holding the virtio modules in
    /lib/modules (the kernel unpacks concatenated archives one after the other)."""
    lines = ["dir /lib 0755 0 0", "dir /lib/modules 0755 0 0"]
    for module in modules:
        lines.append(f"file /lib/modules/{os.path.basename(module)} "
                     f"{os.path.join(moddir, module)} 0644 0 0")
    mkcpio = os.path.join(os.path.dirname(__file__), "..", "..", "guest", "mkcpio.py")
    cpio = subprocess.run(["python3", mkcpio], input="\n".join(lines).encode(),
                          stdout=subprocess.PIPE, check=True).stdout
    path = os.path.join(workdir, "initrd-modules.cpio.gz")
    with open(env.initrd_busybox, "rb") as base, open(path, "wb") as out:
        out.write(base.read())
        # Compressed too: the kernel takes an uncompressed archive after a compressed one
        # only at an offset that is a multiple of 4.
        out.write(gzip.compress(cpio, mtime=0))
    return path


def load_modules_command(modules=MODULES):
    return " && ".join(f"insmod /lib/modules/{os.path.basename(m)}" for m in modules)


def complaints(console, words=ACPI_COMPLAINTS):
    return [line for line in console.splitlines() if any(c in line for c in words)]


def check_cpuid_consistent(result, vcpus, what):
    """The guest's log (dmesg on the console) shows a CPUID it took as it is: XSAVE in
    use with the size leaf 0xd gives, one package of `vcpus` CPUs, no warning."""
    check(not complaints(result.console, CPUID_COMPLAINTS),
          f"{what}: the kernel complained about its CPUID: "
          f"{complaints(result.console, CPUID_COMPLAINTS)}", result)
    check("x86/fpu: Enabled xstate features" in result.console,
          f"{what}: the guest did not enable XSAVE", result)
    check("smpboot: Max logical packages: 1" in result.console,
          f"{what}: the topology leaves should make one package", result)
    check(f"Total of {vcpus} processors activated" in result.console,
          f"{what}: not all {vcpus} vCPUs came up", result)


@contextlib.contextmanager
def host_tap():
    """TAP, up at HOST_IP (an address no other test uses), removed afterwards."""
    subprocess.run(["ip", "link", "del", TAP], check=False, capture_output=True)
    try:
        for args in (["ip", "tuntap", "add", "dev", TAP, "mode", "tap"],
                     ["ip", "addr", "add", f"{HOST_IP}/24", "dev", TAP],
                     ["ip", "link", "set", TAP, "up"]):
            subprocess.run(args, check=True)
        yield
    finally:
        subprocess.run(["ip", "link", "del", TAP], check=False, capture_output=True)


# The guest prints only these lines of its log: a whole dmesg on the serial console is
# still being written out when init reboots, and its end is lost. Lines holding "grep"
# are the command's own (the command line, init's arguments).
CPUID_LOG_FILTER = ("dmesg | grep -v grep | grep -E 'XSAVE|Firmware Bug|WARNING|Call Trace"
                    "|APIC id mismatch|llc-sibling|CPUID.0d|Enabled xstate|Max logical packages"
                    "|processors activated|ACPI (Error|Warning|BIOS)|Invalid checksum"
                    "|failed to claim'; sleep 1")


# As CPUID_LOG_FILTER: only the lines the ACPI checks read (the MADT line and every
# complaint word), then a second for the serial port to drain before the poweroff.
ACPI_LOG_FILTER = ("dmesg | grep -v grep | grep -E 'MADT|ACPI|Invalid checksum"
                   "|failed to claim'; sleep 1")


def test_stock_kernel_finds_2_cpus_and_a_disk_through_acpi_and_powers_off(env):
    kernel, moddir = stock_kernel()
    with tempfile.TemporaryDirectory() as tmp:
        disk = os.path.join(tmp, "disk.img")
        with open(disk, "wb") as f:
            f.write(DISK_TOKEN + b"\0" * (1024 * 1024 - len(DISK_TOKEN)))
        command = (f"{load_modules_command()}; sleep 1; echo cpus=$(nproc); "
                   "ls /sys/bus/acpi/devices; "
                   "echo disk=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 25); "
                   f"{ACPI_LOG_FILTER}; poweroff -f; sleep 30; echo not-$((40 + 2))-reached")
        result = env.boot(command=command, kernel=kernel,
                          initrd=initrd_with_modules(env, moddir, tmp), vcpus=2, mem_mib=256,
                          extra=["--drive", f"id=data,path={disk}", "--log-level", "info"],
                          timeout=400)
    check("cpus=2" in result.console, "the guest should see both vCPUs", result)
    check("ACPI: Using ACPI (MADT) for SMP configuration" in result.console,
          "the CPUs should come from the MADT", result)
    for device in ("LNRO0005:00", "PNP0501:00", "PNP0303:00"):
        check(device in result.console, f"the DSDT's {device} is missing in the guest", result)
    check(f"disk={DISK_TOKEN.decode()}" in result.console,
          "the guest did not read the disk the DSDT describes", result)
    check(not complaints(result.console),
          f"the kernel complained about the tables: {complaints(result.console)}", result)
    # Built by the shell: the kernel echoes init's arguments, the literal text included.
    check("not-42-reached" not in result.console, "the guest kept running after poweroff",
          result)
    check("powered off through ACPI" in result.stderr,
          "the poweroff should come through the ACPI sleep registers", result)
    check(result.status == 0, "an ACPI poweroff should end wisp with exit status 0", result)


def test_stock_kernel_sees_4_cpus_and_reboots_through_the_acpi_reset_register(env):
    # wisp's test command line says reboot=k (for kernels without ACPI); the later
    # reboot=acpi wins.
    kernel, _ = stock_kernel()
    result = env.boot(command="echo cpus=$(nproc); reboot -f; sleep 30; echo not-$((40 + 2))-reached",
                      kernel=kernel, vcpus=4, mem_mib=256, extra=["--log-level", "info"],
                      cmdline_extra="reboot=acpi", timeout=400)
    check("cpus=4" in result.console, "the guest should see all 4 vCPUs", result)
    check("not-42-reached" not in result.console, "the guest kept running after reboot", result)
    check("ACPI reset register" in result.stderr,
          "the reboot should come through the FADT's reset register", result)
    check(result.status == 0, "an ACPI reset should end wisp with exit status 0", result)


def test_stock_kernel_with_no_acpi_falls_back_to_the_mp_table(env):
    kernel, _ = stock_kernel()
    result = env.boot(command="echo cpus=$(nproc); dmesg; reboot -f", kernel=kernel,
                      vcpus=2, mem_mib=256, extra=["--no-acpi", "--log-level", "info"],
                      timeout=400)
    check("cpus=2" in result.console, "the MP table should give the guest both vCPUs",
          result)
    check("Using ACPI (MADT)" not in result.console,
          "with --no-acpi the guest found ACPI tables", result)
    check("i8042 reset" in result.stderr,
          "without ACPI the reboot should come through the i8042", result)
    check(result.status == 0, "exit status should be 0", result)


def test_stripped_guest_boots_with_and_without_acpi(env):
    for extra in ([], ["--no-acpi"]):
        result = env.boot(command="echo cpus=$(nproc)", vcpus=2, extra=extra)
        check("cpus=2" in result.console, f"the guest should see 2 vCPUs ({extra})", result)
        check(result.status == 0, f"exit status should be 0 ({extra})", result)


def test_stock_kernel_with_2_and_4_cpus_reads_its_disk_pings_the_host_and_powers_off(env):
    """Through the DSDT's disk and network, with the CPUID consistent: no warning."""
    kernel, moddir = stock_kernel()
    for vcpus in (2, 4):
        with tempfile.TemporaryDirectory() as tmp, host_tap():
            disk = os.path.join(tmp, "disk.img")
            with open(disk, "wb") as f:
                f.write(bytes(4096) + DISK_TOKEN + bytes(1024 * 1024 - 4096 - len(DISK_TOKEN)))
            command = (f"{load_modules_command(NET_MODULES)}; sleep 1; echo cpus=$(nproc); "
                       "echo disk=$(dd if=/dev/vda bs=4096 skip=1 count=1 2>/dev/null "
                       "| head -c 25); "
                       f"ip addr add {GUEST_IP}/24 dev eth0; ip link set eth0 up; "
                       f"ping -c 2 -W 30 {HOST_IP} > /dev/null && echo ping-$((40 + 2)); "
                       f"{CPUID_LOG_FILTER}; poweroff -f; sleep 30; "
                       "echo not-$((40 + 2))-reached")
            result = env.boot(
                command=command, kernel=kernel,
                initrd=initrd_with_modules(env, moddir, tmp, NET_MODULES), vcpus=vcpus,
                mem_mib=256, timeout=400,
                extra=["--drive", f"id=data,path={disk}", "--net", f"id=eth0,tap={TAP}",
                       "--log-level", "info"])
        what = f"{vcpus} vCPUs"
        check(f"cpus={vcpus}" in result.console, f"{what}: the guest should see them all",
              result)
        check(f"disk={DISK_TOKEN.decode()}" in result.console,
              f"{what}: the guest did not read the disk's second block", result)
        check("ping-42" in result.console, f"{what}: the guest did not reach the host", result)
        check_cpuid_consistent(result, vcpus, what)
        check(not complaints(result.console),
              f"{what}: the kernel complained about the tables: {complaints(result.console)}",
              result)
        check("not-42-reached" not in result.console,
              f"{what}: the guest kept running after poweroff", result)
        check(result.status == 0, f"{what}: poweroff -f should end wisp with 0", result)


def test_stripped_guest_cpuid_is_consistent_on_both_paths(env):
    for extra in ([], ["--no-acpi"]):
        result = env.boot(command=f"echo cpus=$(nproc); {CPUID_LOG_FILTER}", vcpus=2,
                          extra=extra)
        check("cpus=2" in result.console, f"the guest should see 2 vCPUs ({extra})", result)
        check_cpuid_consistent(result, 2, f"stripped guest {extra}")
        check(result.status == 0, f"exit status should be 0 ({extra})", result)


def test_stock_kernel_given_acpi_off_falls_back_to_the_mp_table(env):
    """wisp offers the tables; the guest told not to use them finds its CPUs in the MP
    table (Debian's kernel has the parser) and reboots through the i8042."""
    kernel, _ = stock_kernel()
    result = env.boot(command="echo cpus=$(nproc); dmesg; reboot -f", kernel=kernel, vcpus=2,
                      mem_mib=256, cmdline_extra="acpi=off",
                      extra=["--log-level", "info"], timeout=400)
    check("cpus=2" in result.console, "the MP table should give the guest both vCPUs", result)
    check("Using ACPI (MADT)" not in result.console, "acpi=off: the guest used the MADT",
          result)
    check("i8042 reset" in result.stderr, "acpi=off: the reboot should come through the i8042",
          result)
    check(result.status == 0, "exit status should be 0", result)
