"""Helpers shared by the integration tests: run wisp, read its console, check markers."""
import os
import re
import select
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

class Skip(Exception):
    """A test that cannot run here (something it needs is not on this machine): run.py
    prints "skip - NAME (why)", counted as skipped, never as passed."""


class WispTimeout(AssertionError):
    """wisp did not end in time (and was killed): a hung guest or VMM."""


READY = re.compile(r"wisp-init: ready uptime=([0-9.]+) cpus=([0-9]+)")
COMMAND_STATUS = re.compile(r"wisp-init: command exit status ([0-9]+)")
# The guest's default command line, as wisp's own default plus `quiet` (serial output is
# slow under emulation) and what the test asks for.
BASE_CMDLINE = ("console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux "
                "i8042.nopnp i8042.dumbkbd quiet")


@dataclass
class Result:
    status: int
    console: str
    stderr: str
    seconds: float

    def ready(self):
        """(uptime, cpus) from the init's marker, or None if the guest never got there."""
        match = READY.search(self.console)
        return (float(match.group(1)), int(match.group(2))) if match else None

    def command_status(self):
        match = COMMAND_STATUS.search(self.console)
        return int(match.group(1)) if match else None

    def describe(self):
        tail = "\n".join(self.console.splitlines()[-25:])
        return (f"exit status {self.status} after {self.seconds:.1f} s\n--- console (tail)\n"
                f"{tail}\n--- stderr\n{self.stderr[-2000:]}")


@dataclass
class Env:
    wisp: str
    kernel_dir: str
    initrd: str
    initrd_busybox: str
    init_binary: str
    hostile_guest: str

    @classmethod
    def from_environment(cls):
        def need(name):
            value = os.environ.get(name)
            if not value:
                raise SystemExit(f"run.py: {name} is not set (run the tests with make test)")
            return value
        return cls(need("WISP_BIN"), need("WISP_KERNEL_DIR"), need("WISP_INITRD"),
                   need("WISP_INITRD_BUSYBOX"), need("WISP_INIT"), need("WISP_HOSTILE_GUEST"))

    @property
    def vmlinux(self):
        return os.path.join(self.kernel_dir, "vmlinux")

    @property
    def bzimage(self):
        return os.path.join(self.kernel_dir, "bzImage")

    def run(self, args, stdin_data=None, timeout=180, reply=None):
        """Runs wisp with `args`; returns its Result. Kills it (and fails) on timeout.
        `reply` = (expected, answer): once `expected` appears on the console, `answer` is
        written to wisp's stdin."""
        start = time.monotonic()
        proc = subprocess.Popen([self.wisp] + args, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        early = b""
        if reply:
            early = wait_for_output(proc, reply[0], start + timeout)
            stdin_data = reply[1]
        try:
            out, err = proc.communicate(input=stdin_data,
                                        timeout=max(1, start + timeout - time.monotonic()))
            out = early + out
        except subprocess.TimeoutExpired:
            stuck = kernel_wait_channels(proc.pid)
            proc.send_signal(signal.SIGKILL)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                # Unkillable: stuck in the kernel. Leave it and say where, so that one
                # hung VM fails one test instead of the whole run.
                out, err = b"", b"(wisp survived SIGKILL for 30 s)"
            raise WispTimeout(
                f"wisp did not end within {timeout} s; its threads were waiting in: "
                f"{stuck}\n"
                + Result(-1, (early + out).decode(errors="replace"),
                         err.decode(errors="replace"),
                         timeout).describe())
        return Result(proc.returncode, out.decode(errors="replace"),
                      err.decode(errors="replace"), time.monotonic() - start)

    def boot(self, command=None, kernel=None, initrd=None, vcpus=1, mem_mib=128, extra=None,
             cmdline_extra="", timeout=180, stdin_data=None, reply=None):
        """Boots the guest; `command` (a shell string) runs under busybox sh."""
        cmdline = BASE_CMDLINE + (" " + cmdline_extra if cmdline_extra else "")
        if command is not None:
            # The kernel only knows double quotes: the command must not contain any.
            assert '"' not in command, "guest commands cannot contain double quotes"
            cmdline += f' -- /bin/sh -c "{command}"'
            initrd = self.initrd_busybox if initrd is None else initrd
        args = ["--kernel", kernel or self.vmlinux]
        if initrd != "":
            args += ["--initrd", initrd or self.initrd]
        args += ["--vcpus", str(vcpus), "--mem-mib", str(mem_mib), "--cmdline", cmdline]
        return self.run(args + (extra or []), stdin_data=stdin_data, timeout=timeout,
                        reply=reply)


def kernel_wait_channels(pid):
    """Where each thread of `pid` waits in the kernel, e.g. "1234:kvm_vcpu_block"."""
    channels = []
    try:
        for tid in sorted(os.listdir(f"/proc/{pid}/task")):
            try:
                with open(f"/proc/{pid}/task/{tid}/wchan") as wchan:
                    channels.append(f"{tid}:{wchan.read().strip() or '-'}")
            except OSError:
                continue
    except OSError:
        return "(gone)"
    return " ".join(channels)


def _in_netns(env, netns):
    """An Env whose wisp runs inside network namespace `netns`."""
    wrapper = tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False)
    wrapper.write(f'#!/bin/sh\nexec ip netns exec {netns} {env.wisp} "$@"\n')
    wrapper.close()
    os.chmod(wrapper.name, 0o755)
    return Env(wrapper.name, env.kernel_dir, env.initrd, env.initrd_busybox, env.init_binary,
               env.hostile_guest), wrapper.name


def run_in_netns(env, netns, command, extra, **kwargs):
    inner, path = _in_netns(env, netns)
    try:
        return inner.boot(command=command, extra=extra, **kwargs)
    finally:
        os.unlink(path)


Env.run_in_netns = run_in_netns


def wait_for_output(proc, expected, deadline):
    """Reads proc's stdout until `expected` shows up; returns what was read."""
    seen = b""
    fd = proc.stdout.fileno()
    while expected not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        seen += chunk
    return seen


def check(condition, message, result=None):
    if not condition:
        raise AssertionError(message + ("\n" + result.describe() if result else ""))


def start_uffd_handler(handler, sock, mem, extra=()):
    """Starts a Uffd handler (build/wisp-uffd-handler) serving `mem` on `sock` and waits
    until it listens; returns its process (output on stdout, stderr merged)."""
    if os.path.exists(sock):
        os.unlink(sock)
    proc = subprocess.Popen([handler, sock, mem, *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() >= deadline:
            proc.kill()
            proc.wait()
            check(False, f"the Uffd handler did not listen on {sock}")
        time.sleep(0.05)
    return proc
