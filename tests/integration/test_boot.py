"""Booting the guest on real KVM: PVH and bzImage entries, SMP, and how the VM ends."""
import os
import tempfile

from wisptest import check


def test_pvh_vmlinux_boots_to_init_marker_and_reboot_ends_vm_with_0(env):
    result = env.boot()
    check(result.ready() is not None, "the init marker never appeared", result)
    check(result.ready()[1] == 1, "the guest should report 1 CPU", result)
    check(result.status == 0, "the guest's reboot should end wisp with exit status 0", result)


def test_bzimage_boots_to_init_marker(env):
    result = env.boot(kernel=env.bzimage)
    check(result.ready() is not None, "the init marker never appeared (bzImage)", result)
    check(result.status == 0, "bzImage guest's reboot should end wisp with 0", result)


def test_four_vcpus_are_all_online(env):
    result = env.boot(command="nproc; grep -c ^processor /proc/cpuinfo", vcpus=4,
                      mem_mib=256)
    check(result.ready() is not None and result.ready()[1] == 4,
          "the init marker should report cpus=4", result)
    lines = [line.strip() for line in result.console.splitlines()]
    check(lines.count("4") >= 2, "nproc and /proc/cpuinfo should both say 4", result)
    check(result.status == 0, "exit status should be 0", result)


def test_guest_command_runs_and_its_output_comes_back(env):
    token = f"wisp-token-{os.getpid()}"
    result = env.boot(command=f"echo {token} $((6*7)); uname -r; exit 3")
    check(f"{token} 42" in result.console, "the command's output did not come back", result)
    check("-wisp" in result.console, "uname -r should show the wisp guest kernel", result)
    check(result.command_status() == 3, "init should report the command's exit status 3",
          result)
    check(result.status == 0, "exit status should be 0", result)


def test_console_input_reaches_the_guest(env):
    # Typed only once the guest's shell has the console open: the 8250 driver clears
    # the UART's FIFO when the port is opened, as on real hardware.
    result = env.boot(command="echo waiting-for-input; read line; echo got:$line",
                      reply=(b"waiting-for-input", b"typed-by-host\n"))
    check("got:typed-by-host" in result.console, "stdin did not reach the guest's UART",
          result)


def test_reboot_from_guest_shell_ends_vm_with_0(env):
    result = env.boot(command="echo about-to-reboot; reboot -f; sleep 30; echo not-reached")
    check("about-to-reboot" in result.console, "the command did not start", result)
    check("not-reached" not in result.console, "the guest kept running after reboot", result)
    check(result.command_status() is None, "init should not have seen the command end",
          result)
    check(result.status == 0, "a guest reboot should end wisp with exit status 0", result)


def test_triple_fault_reset_ends_vm_with_0(env):
    # reboot=t makes the guest reset itself with a triple fault (KVM_EXIT_SHUTDOWN).
    result = env.boot(cmdline_extra="reboot=t")
    check(result.ready() is not None, "the init marker never appeared", result)
    check(result.status == 0, "a triple fault should end wisp with exit status 0", result)
    check("i8042 reset" not in result.stderr, "the reset should not come from the i8042",
          result)


def test_kernel_panic_reboots_without_marker(env):
    # No init at this path: the kernel panics, and panic=-1 reboots at once. The exit
    # status alone (0) cannot tell this from success: the missing marker does.
    result = env.boot(cmdline_extra="rdinit=/no/such/init")
    check(result.ready() is None, "there should be no init marker", result)
    check("Kernel panic" in result.console, "the guest should have panicked", result)
    check(result.status == 0, "panic=-1 reboots, which ends wisp with 0", result)


def test_bad_kernel_file_is_a_clear_error(env):
    with tempfile.NamedTemporaryFile(suffix=".img") as junk:
        junk.write(b"this is not a kernel\n" * 100)
        junk.flush()
        result = env.run(["--kernel", junk.name])
    check(result.status == 2, "a non-kernel should give exit status 2", result)
    check("not a bootable x86_64 kernel" in result.stderr and junk.name in result.stderr,
          "the error should name the file and the problem", result)


def test_truncated_vmlinux_is_a_clear_error(env):
    with open(env.vmlinux, "rb") as kernel, tempfile.NamedTemporaryFile() as cut:
        cut.write(kernel.read(4096))
        cut.flush()
        result = env.run(["--kernel", cut.name])
    check(result.status == 2, "a truncated kernel should give exit status 2", result)
    check("outside the file" in result.stderr, "the error should say what is wrong", result)


def test_missing_kernel_file_is_a_clear_error(env):
    result = env.run(["--kernel", "/no/such/vmlinux"])
    check(result.status == 2, "a missing kernel should give exit status 2", result)
    check("/no/such/vmlinux" in result.stderr and "No such file" in result.stderr,
          "the error should name the missing file", result)


def test_too_little_memory_for_the_kernel_is_a_clear_error(env):
    result = env.boot(mem_mib=16)
    check(result.status == 2, "a kernel that does not fit should give exit status 2", result)
    check("more memory" in result.stderr, "the error should say to give more memory", result)


def test_bad_command_line_values_give_exit_2(env):
    for args, words in [(["--vcpus", "0"], "--vcpus"), (["--vcpus", "33"], "--vcpus"),
                        (["--mem-mib", "999999999"], "--mem-mib"),
                        (["--mem-mib", "1000000"], "host"),
                        (["--mem-mib", "12x"], "--mem-mib"), (["--bogus"], "--bogus"),
                        ([], "--kernel")]:
        args = ["--kernel", env.vmlinux] + args if args and words != "--kernel" else args
        result = env.run(args)
        check(result.status == 2, f"{args} should give exit status 2", result)
        check(words in result.stderr, f"{args}: the error should mention {words}", result)


def test_bad_drive_image_gives_exit_2_naming_it(env):
    # The user's image: exit 2 whatever its errno (a directory is EISDIR, a missing file
    # ENOENT), with the drive and the path named.
    with tempfile.TemporaryDirectory() as tmp:
        for path, words in [(os.path.join(tmp, "no-such.img"), "No such file"),
                            (tmp, "Is a directory")]:
            result = env.run(["--kernel", env.vmlinux, "--drive", f"id=data,path={path}"])
            check(result.status == 2, f"--drive path={path} should give exit status 2", result)
            check(f"drive 'data': cannot open {path}: {words}" in result.stderr,
                  "the error should name the drive, the path and the problem", result)
            check(result.stderr.count(path) == 1, "the cause should be said once", result)


def test_help_describes_every_option(env):
    result = env.run(["--help"])
    check(result.status == 0, "--help should succeed", result)
    for option in ["--kernel", "--initrd", "--cmdline", "--vcpus", "--mem-mib",
                   "--log-level", "--drive", "direct=on", "io_engine", "--net", "Exit status"]:
        check(option in result.console, f"--help should describe {option}", result)
