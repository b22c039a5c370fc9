"""A kernel built from Firecracker's own guest configuration for 6.1 (make
firecracker-kernel: ../shared/reference/firecracker-guest-x86_64-6.1.config on Debian's
linux-source-6.1, cached like the guest kernel) under wisp. That configuration has neither
CONFIG_X86_MPPARSE nor CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES: the kernel finds its CPUs only
in ACPI's MADT and its virtio-mmio devices only in the DSDT, as a Firecracker user's kernel
does. With 4 vCPUs it must see all of them, read a disk, ping the host over a TAP, log no
table or CPUID complaint, and end wisp with 0 through ACPI's poweroff.

make builds it once (about 8 minutes on 2 cores) and passes its cache directory in
$WISP_FIRECRACKER_KERNEL_DIR; make test-firecracker-kernel runs this test alone."""
import os
import tempfile

from test_acpi import (ACPI_COMPLAINTS, CPUID_COMPLAINTS, DISK_TOKEN, GUEST_IP, HOST_IP,
                       TAP, complaints, host_tap)
from wisptest import Skip, check

# Only the log lines the checks read, then a second for the serial port to drain.
LOG_FILTER = ("dmesg | grep -v grep | grep -E 'Linux version|MADT|virtio_mmio|ACPI"
              "|XSAVE|Firmware Bug|WARNING|Call Trace|APIC id mismatch|llc-sibling|CPUID"
              "|Invalid checksum|failed to claim|processors activated'; sleep 1")


def firecracker_kernel():
    directory = os.environ.get("WISP_FIRECRACKER_KERNEL_DIR")
    if directory == "":  # make found no configuration file to build it from
        raise Skip("no Firecracker guest configuration (FIRECRACKER_GUEST_CONFIG) to build "
                   "the kernel from")
    path = os.path.join(directory or "", "vmlinux")
    check(directory and os.path.isfile(path),
          f"no Firecracker-configuration kernel at {path!r}: make firecracker-kernel builds "
          "it, and make integration or make test set WISP_FIRECRACKER_KERNEL_DIR")
    return path


def test_firecracker_config_kernel_sees_4_cpus_reads_a_disk_pings_and_powers_off(env):
    kernel = firecracker_kernel()
    with open(os.path.join(os.path.dirname(kernel), "config")) as config:
        built = config.read()
    # What makes this kernel depend on ACPI; olddefconfig must not have turned them on.
    for option in ("CONFIG_X86_MPPARSE", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES"):
        check(f"# {option} is not set" in built, f"the kernel was built with {option}")
    with tempfile.TemporaryDirectory() as tmp, host_tap():
        disk = os.path.join(tmp, "disk.img")
        with open(disk, "wb") as f:
            f.write(bytes(4096) + DISK_TOKEN + bytes(1024 * 1024 - 4096 - len(DISK_TOKEN)))
        command = ("echo cpus=$(nproc); "
                   "echo disk=$(dd if=/dev/vda bs=4096 skip=1 count=1 2>/dev/null "
                   "| head -c 25); "
                   f"ip addr add {GUEST_IP}/24 dev eth0; ip link set eth0 up; "
                   f"ping -c 2 -W 30 {HOST_IP} > /dev/null && echo ping-$((40 + 2)); "
                   f"{LOG_FILTER}; poweroff -f; sleep 30; echo not-$((40 + 2))-reached")
        result = env.boot(command=command, kernel=kernel, vcpus=4, mem_mib=256, timeout=600,
                          extra=["--drive", f"id=data,path={disk}",
                                 "--net", f"id=eth0,tap={TAP}", "--log-level", "info"])
    check("Linux version 6.1" in result.console, "the kernel's banner is missing", result)
    check("ACPI: Using ACPI (MADT) for SMP configuration" in result.console,
          "the CPUs should come from the MADT", result)
    check("cpus=4" in result.console, "the guest should see all 4 vCPUs", result)
    check(f"disk={DISK_TOKEN.decode()}" in result.console,
          "the guest did not read the disk the DSDT describes", result)
    check("ping-42" in result.console,
          "the guest did not reach the host over the network the DSDT describes", result)
    found = complaints(result.console, ACPI_COMPLAINTS + CPUID_COMPLAINTS)
    check(not found, f"the kernel complained: {found}", result)
    check("not-42-reached" not in result.console, "the guest kept running after poweroff",
          result)
    check("powered off through ACPI" in result.stderr,
          "the poweroff should come through the ACPI sleep registers", result)
    check(result.status == 0, "poweroff -f should end wisp with exit status 0", result)
