"""Driving wisp through its Firecracker-compatible API, as a Firecracker client would:
curl --unix-socket for requests, the console read in the background."""
import json
import os
import signal
import subprocess
import threading
import time

from wisptest import BASE_CMDLINE, WispTimeout

# Unix sockets do not work on 9p: under ci/kvm-harness /tmp/wisp-run is a tmpfs.
SOCKET_DIR = "/tmp/wisp-run" if os.path.isdir("/tmp/wisp-run") else "/tmp"


def guest_cmdline(command=None, extra=""):
    """The guest command line as boot_args: wisp's default plus `command` for init."""
    cmdline = BASE_CMDLINE + (" " + extra if extra else "")
    if command is not None:
        assert '"' not in command, "guest commands cannot contain double quotes"
        cmdline += f' -- /bin/sh -c "{command}"'
    return cmdline


class ApiVm:
    """A wisp process started with --api-sock (and any other arguments)."""

    def __init__(self, env, args=(), name="api", prefix=(), stdin=subprocess.DEVNULL):
        self.socket = os.path.join(SOCKET_DIR, f"wisp-{name}-{os.getpid()}.sock")
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.proc = subprocess.Popen([*prefix, env.wisp, "--api-sock", self.socket, *args],
                                     stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self._console = bytearray()
        self._stderr = bytearray()
        self._lock = threading.Lock()
        self._readers = [threading.Thread(target=self._pump, args=(self.proc.stdout,
                                                                  self._console), daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr,
                                                                  self._stderr), daemon=True)]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"wisp did not create its API socket {self.socket}\n"
                                     + self.describe())
            time.sleep(0.02)

    def _pump(self, stream, buffer):
        while True:
            chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                return
            with self._lock:
                buffer.extend(chunk)

    @property
    def console(self):
        with self._lock:
            return self._console.decode(errors="replace")

    @property
    def stderr(self):
        with self._lock:
            return self._stderr.decode(errors="replace")

    def describe(self):
        tail = "\n".join(self.console.splitlines()[-25:])
        return f"--- console (tail)\n{tail}\n--- stderr\n{self.stderr[-3000:]}"

    def request(self, method, path, body=None, timeout=60):
        """curl --unix-socket, as in Firecracker's getting-started guide; returns
        (status, parsed JSON body or None)."""
        args = ["curl", "-sS", "--unix-socket", self.socket, "-X", method,
                "-o", "-", "-w", "\n%{http_code}", "--max-time", str(timeout),
                "-H", "Accept: application/json", f"http://localhost{path}"]
        if body is not None:
            data = body if isinstance(body, str) else json.dumps(body)
            args += ["-H", "Content-Type: application/json", "-d", data]
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 10)
        if done.returncode != 0:
            raise AssertionError(f"curl {method} {path} failed: {done.stderr}\n"
                                 + self.describe())
        text, _, code = done.stdout.rpartition("\n")
        return int(code), (json.loads(text) if text.strip() else None)

    def ok(self, method, path, body=None):
        status, reply = self.request(method, path, body)
        if status not in (200, 204):
            raise AssertionError(f"{method} {path} gave {status}: {reply}\n" + self.describe())
        return reply

    def wait_for(self, text, timeout=120):
        deadline = time.monotonic() + timeout
        while text not in self.console:
            if time.monotonic() > deadline:
                raise AssertionError(f"'{text}' did not appear within {timeout} s\n"
                                     + self.describe())
            if self.proc.poll() is not None and text not in self.console:
                time.sleep(0.2)  # let the readers drain the pipes
                if text not in self.console:
                    raise AssertionError(f"wisp ended (status {self.proc.returncode}) "
                                         f"before '{text}'\n" + self.describe())
            time.sleep(0.05)

    def wait(self, timeout=180):
        """Waits for wisp to end; returns its exit status."""
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise WispTimeout(f"wisp did not end within {timeout} s\n" + self.describe())
        for reader in self._readers:
            reader.join(timeout=5)
        return status

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
