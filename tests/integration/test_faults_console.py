"""Fault injection on the console: a reader that stops reading wisp's stdout must cost
output, never the guest or the API.

wisp's stdout is a pipe the test stops reading for 30 s while the guest prints as fast as
it can. The guest also writes a progress counter to a disk, which the test reads from the
host side during the stall: it must keep growing (the guest runs). GET /, and PATCH /vm
Paused then Resumed, must answer during the stall (with the bug they hung for good: a vCPU
blocked in write() never acknowledges the pause), and the metrics must count the dropped
bytes (uart.missed_write_count). After the reader comes back, the console resumes."""
import json
import os
import re
import tempfile
import threading
import time

from apitest import ApiVm, guest_cmdline
from test_virtio import SCRATCH
from wisptest import check

STALL_SECONDS = 30
# A liveness bound, not a timing one: with the bug these requests never answer at all.
ANSWER_WITHIN = 10
LINE = re.compile(r"line-([0-9]+)-")
PROGRESS = re.compile(rb"progress-([0-9]+)")

# Busybox sh: long lines as fast as the UART goes, and every 8th line the counter on the
# disk (padded to one sector by conv=sync, fsync'd through to wisp).
PAD = "0123456789abcdefghijklmnopqrstuvwxyz" * 2
GUEST_COMMAND = (f"s={PAD}; i=0; while true; do i=$((i+1)); echo line-$i-$s-$s; "
                 "if [ $((i % 8)) = 0 ]; then echo progress-$i > /tmp/p; "
                 "dd if=/tmp/p of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null; fi; "
                 "done")


class StallableConsoleVm(ApiVm):
    """An ApiVm whose console reader can be stopped: its stdout pipe then fills up."""

    def __init__(self, env, **kwargs):
        self.reading = threading.Event()
        self.reading.set()
        super().__init__(env, **kwargs)

    def _pump(self, stream, buffer):
        if stream is not self.proc.stdout:
            return super()._pump(stream, buffer)
        while True:
            self.reading.wait()
            chunk = stream.read1(4096)
            if not chunk:
                return
            with self._lock:
                buffer.extend(chunk)


def _progress(disk):
    with open(disk, "rb") as f:
        match = PROGRESS.match(f.read(512))
    return int(match.group(1)) if match else 0


def _missed_writes(metrics_path):
    """uart.missed_write_count summed over the metrics lines (each line has deltas)."""
    if not os.path.exists(metrics_path):
        return 0
    with open(metrics_path) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    return sum(l.get("uart", {}).get("missed_write_count", 0) for l in lines)


def _answers(vm, method, path, body=None, expect=(200, 204)):
    start = time.monotonic()
    status, reply = vm.request(method, path, body, timeout=ANSWER_WITHIN)
    check(status in expect, f"{method} {path} during the stall gave {status}: {reply}\n"
          + vm.describe())
    return reply, time.monotonic() - start


def test_stalled_console_reader_costs_output_not_the_guest_or_the_api(env):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        disk = os.path.join(tmp, "progress.img")
        with open(disk, "wb") as f:
            f.truncate(1024 * 1024)
        metrics_path = os.path.join(tmp, "metrics.json")
        with StallableConsoleVm(env, name="stall") as vm:
            vm.ok("PUT", "/metrics", {"metrics_path": metrics_path})
            vm.ok("PUT", "/boot-source", {"kernel_image_path": env.vmlinux,
                                          "initrd_path": env.initrd_busybox,
                                          "boot_args": guest_cmdline(GUEST_COMMAND)})
            vm.ok("PUT", "/drives/progress", {"drive_id": "progress", "path_on_host": disk,
                                              "is_root_device": False,
                                              "is_read_only": False})
            vm.ok("PUT", "/actions", {"action_type": "InstanceStart"})
            vm.wait_for("line-8-", timeout=180)
            deadline = time.monotonic() + 120
            while _progress(disk) == 0:
                check(time.monotonic() < deadline,
                      "the guest's progress counter never reached the disk\n" + vm.describe())
                time.sleep(0.5)

            # The reader stops. Wait until the pipe and wisp's buffer are full and bytes
            # are being dropped (the metrics say so), then look at the guest and the API.
            vm.reading.clear()
            stall_start = time.monotonic()
            console_before = len(vm.console)
            missed = 0
            while missed == 0 and time.monotonic() < stall_start + STALL_SECONDS - 10:
                time.sleep(2)
                _answers(vm, "PUT", "/actions", {"action_type": "FlushMetrics"})
                missed = _missed_writes(metrics_path)
            progress_full = _progress(disk)

            # (Checked before the metrics: without a uart section, the old wisp would
            # fail here first, on a vCPU stuck in write() that never pauses.)
            info, get_seconds = _answers(vm, "GET", "/")
            check(info["state"] == "Running", f"GET / during the stall: {info}")
            _, pause_seconds = _answers(vm, "PATCH", "/vm", {"state": "Paused"})
            info, _ = _answers(vm, "GET", "/")
            check(info["state"] == "Paused", f"GET / paused during the stall: {info}")
            _, resume_seconds = _answers(vm, "PATCH", "/vm", {"state": "Resumed"})
            info, _ = _answers(vm, "GET", "/")
            check(info["state"] == "Running", f"GET / resumed during the stall: {info}")

            time.sleep(max(0, stall_start + STALL_SECONDS - time.monotonic()))
            progress_end = _progress(disk)
            _answers(vm, "PUT", "/actions", {"action_type": "FlushMetrics"})
            missed = _missed_writes(metrics_path)
            print(f"# stalled console: {missed} bytes dropped in {STALL_SECONDS} s; guest "
                  f"progress {progress_full} -> {progress_end} during it; GET / "
                  f"{get_seconds:.2f} s, pause {pause_seconds:.2f} s, resume "
                  f"{resume_seconds:.2f} s", flush=True)
            check(missed > 0, f"no dropped console bytes counted in uart.missed_write_count "
                  f"after {STALL_SECONDS} s of stall\n" + vm.describe())
            check(len(vm.console) - console_before <= 64 * 1024,
                  "the test's reader went on reading during the stall")
            check(progress_end > progress_full,
                  f"the guest made no progress while its console was full (counter "
                  f"{progress_full} -> {progress_end})\n" + vm.describe())

            # The reader comes back: the console resumes with lines written after the
            # stall (numbers beyond the counter the disk had at its end).
            vm.reading.set()
            deadline = time.monotonic() + 120
            while True:
                seen = [int(n) for n in LINE.findall(vm.console[console_before:])]
                if seen and max(seen) > progress_end:
                    break
                check(time.monotonic() < deadline,
                      f"the console did not resume after the stall (last line "
                      f"{max(seen) if seen else None}, disk counter {progress_end})\n"
                      + vm.describe())
                time.sleep(0.5)
            check(vm.proc.poll() is None, "wisp ended during the test\n" + vm.describe())
