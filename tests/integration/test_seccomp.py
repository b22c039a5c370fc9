"""seccomp (README "Seccomp"): each thread kind dies with status 148 and a log line naming it
and the call when it makes a forbidden system call; --seccomp-filter files are used per
thread kind; --no-seccomp turns the filters off. The rest of the suite runs with wisp's
default filters on, so a call missing from a list fails the test that needed it.

The forbidden calls come from build/wisp-seccomp-test (WISP_SECCOMP_TEST_BIN), a test-only
build in which WISP_SECCOMP_SELFTEST=vmm|api|vcpu makes that thread call socket(AF_INET)
right after installing its filter. The release binary has no such hook."""
import os
import struct
import subprocess
import tempfile

from apitest import SOCKET_DIR
from wisptest import BASE_CMDLINE

SOCKET = 41  # __NR_socket on x86_64
KINDS = ("vmm", "api", "vcpu")

# Classic BPF, as struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}.
LD_NR = (0x20, 0, 0, 0)  # BPF_LD|BPF_W|BPF_ABS, offsetof(seccomp_data, nr)
RET_ALLOW = (0x06, 0, 0, 0x7fff0000)
RET_TRAP = (0x06, 0, 0, 0x00030000)


def expect(condition, message, detail=""):
    if not condition:
        raise AssertionError(message + ("\n" + detail if detail else ""))


def trap_only(nr):
    """A program that traps system call nr and allows everything else."""
    return [LD_NR, (0x15, 0, 1, nr), RET_TRAP, RET_ALLOW]


def filter_file(path, programs):
    """Writes a --seccomp-filter file (vmm/seccomp_filter.h) from {kind: [instructions]}."""
    with open(path, "wb") as out:
        out.write(b"WISPBPF1")
        for kind, program in programs.items():
            out.write(kind.encode().ljust(8, b"\0") + struct.pack("<II", len(program), 0))
            for insn in program:
                out.write(struct.pack("<HBBI", *insn))


def selftest_binary():
    path = os.environ.get("WISP_SECCOMP_TEST_BIN")
    if not path or not os.path.exists(path):
        raise AssertionError("WISP_SECCOMP_TEST_BIN (build/wisp-seccomp-test) is missing: run "
                             "the tests through make")
    return path


def run(env, binary, extra, selftest=None, timeout=180):
    """wisp with a booting guest (the busybox initrd running `command`) and an API socket,
    so that all three thread kinds exist; returns (status, stderr, console)."""
    socket = os.path.join(SOCKET_DIR, f"wisp-seccomp-{os.getpid()}.sock")
    if os.path.exists(socket):
        os.unlink(socket)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("WISP_SECCOMP")}
    if selftest:
        child_env["WISP_SECCOMP_SELFTEST"] = selftest
    cmdline = BASE_CMDLINE + ' -- /bin/sh -c "echo seccomp-guest-ran"'
    args = [binary, "--kernel", env.vmlinux, "--initrd", env.initrd_busybox, "--cmdline",
            cmdline, "--api-sock", socket, *extra]
    try:
        done = subprocess.run(args, env=child_env, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    finally:
        if os.path.exists(socket):
            os.unlink(socket)
    return done.returncode, done.stderr.decode(errors="replace"), \
        done.stdout.decode(errors="replace")


def describe(status, stderr, console):
    tail = "\n".join(console.splitlines()[-15:])
    return f"exit status {status}\n--- stderr\n{stderr[-2000:]}\n--- console (tail)\n{tail}"


def test_each_thread_kind_dies_with_148_naming_the_call(env):
    binary = selftest_binary()
    for kind in KINDS:
        status, stderr, console = run(env, binary, [], selftest=kind)
        line = (f"wisp: seccomp: the {kind} thread made the forbidden system call "
                f"{SOCKET} (socket); exiting with status 148")
        expect(status == 148, f"{kind}: wisp should exit with 148",
              describe(status, stderr, console))
        expect(line in stderr, f"{kind}: no line '{line}'", describe(status, stderr, console))
        expect("seccomp-guest-ran" not in console or kind != "vcpu",
              "the vCPU thread's forbidden call comes before the guest runs",
              describe(status, stderr, console))


def test_the_forbidden_call_goes_through_with_no_seccomp(env):
    """The same call with --no-seccomp: the process lives (so 148 above is the filter's),
    and the filters being off is logged as a warning."""
    status, stderr, console = run(env, selftest_binary(), ["--no-seccomp"], selftest="vcpu")
    expect(status == 0 and "seccomp-guest-ran" in console,
          "with --no-seccomp the guest should run its command and end", describe(status, stderr,
                                                                       console))
    expect("socket(AF_INET) in the vcpu thread returned" in stderr,
          "the self-test call should have returned", describe(status, stderr, console))
    expect("WARN" in stderr and "system call filters are OFF (--no-seccomp)" in stderr,
          "--no-seccomp should be logged as a warning", describe(status, stderr, console))


def test_default_filters_dumped_to_a_file_boot_the_guest(env):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "wisp.bpf")
        done = subprocess.run([env.wisp, "seccomp-filter-dump", path], capture_output=True,
                              text=True, timeout=60)
        expect(done.returncode == 0, f"seccomp-filter-dump failed: {done.stderr}")
        with open(path, "rb") as f:
            expect(f.read(8) == b"WISPBPF1", "the dump should start with WISPBPF1")
        status, stderr, console = run(env, env.wisp, ["--seccomp-filter", path])
        expect(status == 0 and "seccomp-guest-ran" in console,
              "the dumped default filters should boot the guest to its end",
              describe(status, stderr, console))
        expect("forbidden system call" not in stderr, "no call may be forbidden",
              describe(status, stderr, console))


def test_a_filter_file_applies_per_thread_kind(env):
    """A file whose vCPU program traps socket() only and whose other programs allow all:
    the vCPU thread dies on it, the API thread's same call goes through."""
    binary = selftest_binary()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "custom.bpf")
        filter_file(path, {"vcpu": trap_only(SOCKET), "api": [RET_ALLOW],
                           "vmm": [RET_ALLOW]})
        status, stderr, console = run(env, binary, ["--seccomp-filter", path],
                                      selftest="vcpu")
        expect(status == 148 and "the vcpu thread made the forbidden system call 41 (socket)"
              in stderr, "the file's vCPU program should trap socket()",
              describe(status, stderr, console))
        status, stderr, console = run(env, binary, ["--seccomp-filter", path],
                                      selftest="api")
        expect(status == 0 and "socket(AF_INET) in the api thread returned" in stderr,
              "the file's API program allows socket(): the guest should run to its end",
              describe(status, stderr, console))


def test_bad_filter_files_are_refused_at_start(env):
    with tempfile.TemporaryDirectory() as tmp:
        missing = os.path.join(tmp, "missing.bpf")
        cut = os.path.join(tmp, "cut.bpf")
        filter_file(cut, {"vcpu": [RET_ALLOW], "api": [RET_ALLOW]})
        for path, why in ((missing, "cannot open: No such file or directory"),
                          (cut, "no section for the vmm thread")):
            done = subprocess.run([env.wisp, "--kernel", env.vmlinux, "--seccomp-filter",
                                   path], capture_output=True, text=True, timeout=60)
            expect(done.returncode == 2, f"{path}: exit status {done.returncode}, not 2: "
                  f"{done.stderr}")
            expect(f"--seccomp-filter {path}: {why}" in done.stderr,
                  f"{path}: the message should name the file and say '{why}': "
                  f"{done.stderr}")


def test_the_release_binary_has_no_self_test(env):
    with open(env.wisp, "rb") as f:
        data = f.read()
    expect(b"WISP_SECCOMP_SELFTEST" not in data,
          f"{env.wisp} holds the self-test hook: it must only be in wisp-seccomp-test")
    with open(selftest_binary(), "rb") as f:
        expect(b"WISP_SECCOMP_SELFTEST" in f.read(), "the test binary should hold the hook")
