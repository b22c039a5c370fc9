"""A small soak (issue 9; `make soak` is the full one, tests/soak/soak.py): wisp processes
started and ended one after another leave nothing behind, and API requests against one
process grow neither its fds nor its threads. Figures are printed, not asserted on."""
import importlib.util
import os
import statistics

from wisptest import check

_SPEC = importlib.util.spec_from_file_location(
    "soak", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "soak", "soak.py"))
soak = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(soak)


def test_ten_processes_one_after_another_leave_nothing_behind(env):
    times, problems = soak.boot_cycle(env, 10)
    if times:
        print(f"# soak: {len(times)} boots, median {statistics.median(times):.2f} s",
              flush=True)
    check(not problems, "\n".join(problems))
    check(len(times) == 10, f"only {len(times)} of 10 boots ran")


def test_thousand_api_requests_grow_neither_fds_nor_threads(env):
    samples, seconds, problems = soak.api_soak(env, 1000)
    if samples:
        print(f"# soak: 1000 requests in {seconds:.1f} s; fds, threads, RSS KiB: "
              + ", ".join(f"{s[0]} {s[1]}/{s[2]}/{s[3]}" for s in samples), flush=True)
    check(not problems, "\n".join(problems))
    check(len(samples) == 3, f"{len(samples)} samples instead of 3")
