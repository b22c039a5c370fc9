#!/usr/bin/env python3
"""Soak (issue 9): many wisp processes one after another, many API requests against one.

Processes: COUNT wisps, one after another, each with an API socket, a drive and a TAP (in
a network namespace of its own), boots to the init's marker and ends (the guest reboots).
Each must exit 0 and remove its socket; afterwards nothing may be left: no wisp process,
no socket or file in the socket directory, the TAP free for the next (it refuses a second
user) and no other link in the namespace. Prints the time per boot.

API: one wisp with an idle guest takes REQUESTS requests, one connection each, of every
kind a client sends after boot (GET /, /machine-config, /vm/config; PATCH /drives; PUT
/actions FlushMetrics; pause and resume; refused ones: a bad path, bad JSON, pre-boot only
resources). Its fds, threads and RSS outside guest memory are sampled at the start (after
one round of each kind), the middle and the end; fds and threads must not grow, RSS not by
more than RSS_SLACK_KIB.

    tests/soak/soak.py [--count N] [--requests N]    (make soak COUNT=N REQUESTS=N)
Exits 1 if something grew or was left behind. Needs root (TAPs, namespaces) and /dev/kvm
(ci/with-kvm.sh); the paths come from the environment `make soak` sets.
"""
import argparse
import ctypes
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from wisptest import BASE_CMDLINE, READY, Env  # noqa: E402

SOCKET_DIR = "/tmp/wisp-run" if os.path.isdir("/tmp/wisp-run") else "/tmp"
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None
NETNS = f"wisp-soak-{os.getpid()}"
TAP = "wispsoak0"
MEM_MIB = 128
RSS_SLACK_KIB = 512


CLONE_NEWNET = 0x40000000


def _enter_netns(fd):
    """For preexec_fn: the child joins the namespace open as fd (Python 3.11 has no
    os.setns, and `ip netns exec` costs seconds per start under emulation)."""
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def _netns(*args):
    return subprocess.run(["ip", "netns", "exec", NETNS, *args], check=True,
                          capture_output=True, text=True).stdout


def _links():
    return sorted(line.split(":")[1].strip().split("@")[0]
                  for line in _netns("ip", "-o", "link", "show").splitlines())


def _wisp_processes(binary):
    """Pids of running processes whose executable is `binary`."""
    target = os.path.realpath(binary)
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.path.realpath(f"/proc/{entry}/exe") == target:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _listing(directory):
    return set(os.listdir(directory)) if directory and os.path.isdir(directory) else set()


def boot_cycle(env, count, log=print):
    """Starts and ends `count` wisps one after another; returns (seconds per boot,
    problems)."""
    problems, times = [], []
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        _netns("ip", "tuntap", "add", "dev", TAP, "mode", "tap")
        _netns("ip", "link", "set", TAP, "up")
        links_before = _links()
        sockets_before = _listing(SOCKET_DIR)
        scratch_before = _listing(SCRATCH)
        netns_fd = os.open(f"/run/netns/{NETNS}", os.O_RDONLY)
        with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
            image = os.path.join(tmp, "disk.img")
            with open(image, "wb") as f:
                f.truncate(4 * 1024 * 1024)
            # Read from memory, not from wherever the build is (9p under ci/kvm-harness).
            kernel = shutil.copy(env.vmlinux, os.path.join(tmp, "vmlinux"))
            initrd = shutil.copy(env.initrd, os.path.join(tmp, "initrd.gz"))
            sock = os.path.join(SOCKET_DIR, f"wisp-soak-{os.getpid()}.sock")
            args = [env.wisp, "--api-sock", sock, "--kernel", kernel, "--initrd", initrd,
                    "--mem-mib", str(MEM_MIB), "--cmdline", BASE_CMDLINE,
                    "--drive", f"id=data,path={image}", "--net", f"id=eth0,tap={TAP}"]
            for i in range(count):
                start = time.monotonic()
                try:
                    done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True,
                                          timeout=300,
                                          preexec_fn=lambda: _enter_netns(netns_fd))
                except subprocess.TimeoutExpired:
                    problems.append(f"boot {i + 1}: wisp did not end within 300 s")
                    break
                times.append(time.monotonic() - start)
                console = done.stdout.decode(errors="replace")
                if done.returncode != 0 or not READY.search(console):
                    tail = done.stderr.decode(errors="replace")[-1500:]
                    problems.append(f"boot {i + 1}: exit status {done.returncode}, marker "
                                    f"{'seen' if READY.search(console) else 'missing'}; "
                                    f"stderr: {tail}")
                    break
                if os.path.exists(sock):
                    problems.append(f"boot {i + 1}: wisp left its API socket {sock}")
                    os.unlink(sock)
                if (i + 1) % 50 == 0:
                    log(f"# soak: {i + 1} of {count} boots, median "
                        f"{statistics.median(times):.2f} s")
        os.close(netns_fd)
        left = _wisp_processes(env.wisp)
        if left:
            problems.append(f"wisp processes still running: {left}")
        if _links() != links_before:
            problems.append(f"links in the namespace were {links_before}, now {_links()}")
        for name, before, directory in (("socket directory", sockets_before, SOCKET_DIR),
                                        ("scratch directory", scratch_before, SCRATCH)):
            extra = _listing(directory) - before
            if extra:
                problems.append(f"left in the {name} {directory}: {sorted(extra)}")
    finally:
        subprocess.run(["ip", "netns", "delete", NETNS], check=False)
    return times, problems


def _request(path, method, url, body=None):
    """One HTTP/1.1 request on a connection of its own; returns the status code."""
    data = b"" if body is None else (body if isinstance(body, bytes) else
                                     json.dumps(body).encode())
    head = (f"{method} {url} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(60)
        conn.connect(path)
        conn.sendall(head.encode() + data)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
        header, _, rest = reply.partition(b"\r\n\r\n")
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(header.split(b" ", 2)[1]) if header.startswith(b"HTTP/1.1 ") else -1


# What a client sends after boot, and the status each must get.
LIMITED = {"drive_id": "data", "rate_limiter": {"ops": {"size": 100000, "refill_time": 100}}}
REQUESTS = [
    ("GET", "/", None, 200),
    ("GET", "/machine-config", None, 200),
    ("GET", "/vm/config", None, 200),
    ("PATCH", "/drives/data", LIMITED, 204),
    ("PUT", "/actions", {"action_type": "FlushMetrics"}, 204),
    ("PATCH", "/vm", {"state": "Paused"}, 204),
    ("PATCH", "/vm", {"state": "Resumed"}, 204),
    ("GET", "/no-such-resource", None, 400),
    ("PUT", "/machine-config", b"{not json", 400),
    ("PUT", "/boot-source", {"kernel_image_path": "/x"}, 400),
]


def _sample(pid):
    """(open fds, threads, RSS outside guest memory in KiB) of process pid."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    rss, in_guest = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                start, end = (int(x, 16) for x in first.split("-"))
                in_guest = end - start >= MEM_MIB << 20
            elif first == "Rss:" and not in_guest:
                rss += int(line.split()[1])
    return fds, threads, rss


def _settled_sample(pid):
    """_sample once the server has seen the last client go: a connection it ends with an
    error lingers until it reads the client's EOF, so right after a request its fd can
    still be open. The lowest of readings over half a second; a leaked fd is in all."""
    readings = []
    for _ in range(10):
        readings.append(_sample(pid))
        time.sleep(0.05)
    return min(readings)


def api_soak(env, count, log=print):
    """`count` API requests against one wisp; returns (samples [(label, fds, threads,
    rss_kib)], seconds, problems)."""
    problems, samples, seconds = [], [], 0.0
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        image = os.path.join(tmp, "disk.img")
        with open(image, "wb") as f:
            f.truncate(4 * 1024 * 1024)
        sock = os.path.join(SOCKET_DIR, f"wisp-soak-api-{os.getpid()}.sock")
        config = {"boot-source": {"kernel_image_path": env.vmlinux, "initrd_path": env.initrd,
                                  "boot_args": BASE_CMDLINE + " wisp.halt=1"},
                  "drives": [{"drive_id": "data", "path_on_host": image,
                              "is_root_device": False, "is_read_only": False}],
                  "machine-config": {"vcpu_count": 1, "mem_size_mib": MEM_MIB},
                  "metrics": {"metrics_path": os.path.join(tmp, "metrics.json")}}
        config_path = os.path.join(tmp, "config.json")
        with open(config_path, "w") as f:
            json.dump(config, f)
        console = open(os.path.join(tmp, "console.txt"), "wb+")
        errors = open(os.path.join(tmp, "stderr.txt"), "wb+")
        proc = subprocess.Popen([env.wisp, "--api-sock", sock, "--config-file", config_path],
                                stdin=subprocess.DEVNULL, stdout=console, stderr=errors)
        try:
            deadline = time.monotonic() + 300
            while True:
                console.seek(0)
                if READY.search(console.read().decode(errors="replace")):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    errors.seek(0)
                    return samples, 0, [f"the API soak's guest did not boot (status "
                                        f"{proc.poll()}): {errors.read()[-1500:]!r}"]
                time.sleep(0.1)
            start = time.monotonic()
            for i in range(max(count, len(REQUESTS))):
                method, url, body, expected = REQUESTS[i % len(REQUESTS)]
                status = _request(sock, method, url, body)
                if status != expected:
                    problems.append(f"request {i + 1}: {method} {url} gave {status}, "
                                    f"expected {expected}")
                    break
                # After one round of each kind (lazy allocations), halfway and at the end.
                if i + 1 in (len(REQUESTS), count // 2, count):
                    label = {len(REQUESTS): "start", count // 2: "middle"}.get(i + 1, "end")
                    samples.append((label, *_settled_sample(proc.pid)))
                    log(f"# soak: after {i + 1} requests: fds {samples[-1][1]}, threads "
                        f"{samples[-1][2]}, RSS outside guest memory {samples[-1][3]} KiB")
            seconds = time.monotonic() - start
            if proc.poll() is not None:
                problems.append(f"wisp ended during the API soak (status {proc.returncode})")
        finally:
            proc.kill()
            proc.wait()
            console.close()
            errors.close()
            if os.path.exists(sock):
                os.unlink(sock)
    if len(samples) >= 2 and not problems:
        first, last = samples[0], samples[-1]
        if last[1] > first[1]:
            problems.append(f"open fds grew from {first[1]} to {last[1]}")
        if last[2] > first[2]:
            problems.append(f"threads grew from {first[2]} to {last[2]}")
    return samples, seconds, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="processes (default 300)")
    parser.add_argument("--requests", type=int, default=10000,
                        help="API requests (default 10000)")
    opts = parser.parse_args()
    env = Env.from_environment()
    problems = []

    times, found = boot_cycle(env, opts.count, log=lambda s: print(s, flush=True))
    problems += found
    if times:
        print(f"# processes: {len(times)} started and ended, {sum(times):.0f} s; per boot "
              f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, max "
              f"{max(times):.2f} s; first 10 median {statistics.median(times[:10]):.2f} s, "
              f"last 10 median {statistics.median(times[-10:]):.2f} s", flush=True)
    print(f"# processes: left behind: {'nothing' if not found else len(found)}", flush=True)

    samples, seconds, found = api_soak(env, opts.requests, log=lambda s: print(s, flush=True))
    problems += found
    if samples:
        first, last = samples[0], samples[-1]
        grew = last[3] - first[3]
        print(f"# api: {opts.requests} requests in {seconds:.0f} s; fds "
              f"{' -> '.join(str(s[1]) for s in samples)}, threads "
              f"{' -> '.join(str(s[2]) for s in samples)}, RSS outside guest memory "
              f"{' -> '.join(str(s[3]) for s in samples)} KiB", flush=True)
        if grew > RSS_SLACK_KIB:
            problems.append(f"RSS outside guest memory grew by {grew} KiB "
                            f"(more than {RSS_SLACK_KIB})")
    for problem in problems:
        print(f"soak: FAILED: {problem}", flush=True)
    print(f"# soak: {'FAILED' if problems else 'passed'}", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
