"""A small soak (issue 9; `make soak` is the full one, tests/soak/soak.py): API requests
against one process grow neither its fds nor its threads. Figures are printed, not
asserted on. The boot cycle (wisps started and ended one after another in a network
namespace) is only in `make soak`: in `make test` the emulated machine of ci/kvm-harness
froze during its 10 boots in each of the last three suite runs that reached it."""
import importlib.util
import os

from wisptest import check

_SPEC = importlib.util.spec_from_file_location(
    "soak", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "soak", "soak.py"))
soak = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(soak)


def test_thousand_api_requests_grow_neither_fds_nor_threads(env):
    samples, seconds, problems = soak.api_soak(env, 1000)
    if samples:
        print(f"# soak: 1000 requests in {seconds:.1f} s; fds, threads, RSS KiB: "
              + ", ".join(f"{s[0]} {s[1]}/{s[2]}/{s[3]}" for s in samples), flush=True)
    check(not problems, "\n".join(problems))
    check(len(samples) == 3, f"{len(samples)} samples instead of 3")
