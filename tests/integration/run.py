#!/usr/bin/env python3
"""Integration test runner: real KVM, the real guest kernel, real files.

Finds test_*.py beside this file and runs every `test_*` function in them, printing
`ok - integration/<module>/<test>` or `not ok - ...` with the reason. A test is a plain
function taking the shared `Env`; it fails by raising (AssertionError or anything else).
Usage: run.py [substring...]   (run only tests whose name contains one of them)

Inside ci/kvm-harness, WISP_HARNESS_PROGRESS names a file that outlives the emulated
machine: each test is written there as it starts and as it ends. When the machine dies and
the harness starts the job again, the tests that ended (passed or failed) are not run again
and their results stand; the test that was running when the machine died runs once more, and
if the machine dies during it a second time it is reported as failed.
"""
import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import wisptest  # noqa: E402


def discover(filters):
    for filename in sorted(os.listdir(HERE)):
        if not (filename.startswith("test_") and filename.endswith(".py")):
            continue
        name = filename[:-3]
        spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, filename))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for attr in sorted(vars(module)):
            func = getattr(module, attr)
            if attr.startswith("test_") and callable(func):
                full = f"integration/{name[5:]}/{attr[5:]}"
                if not filters or any(f in full for f in filters):
                    yield full, func


class Progress:
    """Lines "start NAME", "ok NAME", "failed NAME" in the harness's progress file."""

    def __init__(self, path):
        self.path = path
        self.starts, self.results = {}, {}
        if not path:
            return
        with open(path) as f:
            for line in f.read().splitlines():
                word, _, name = line.partition(" ")
                if word == "start":
                    self.starts[name] = self.starts.get(name, 0) + 1
                elif word in ("ok", "failed", "skipped"):
                    self.results[name] = word
        if self.starts or self.results:
            # The harness's output consumer (tests/run-all.sh) counts only what follows
            # its restart line, so the results that stand are printed again here.
            print(f"# resuming in a new emulated machine: {len(self.results)} tests ended "
                  f"before it and are not run again", flush=True)
            for name, result in self.results.items():
                prefix = {"ok": "ok", "skipped": "skip"}.get(result, "not ok")
                print(f"{prefix} - {name} (ended before the restart; its output is above)",
                      flush=True)

    def record(self, word, name):
        if self.path:
            with open(self.path, "a") as f:
                f.write(f"{word} {name}\n")
                f.flush()
                os.fsync(f.fileno())


def main():
    env = wisptest.Env.from_environment()
    print(f"# wisp {env.wisp}, kernel {env.kernel_dir}, /dev/kvm "
          f"{'present' if os.path.exists('/dev/kvm') else 'MISSING'}", flush=True)
    progress = Progress(os.environ.get("WISP_HARNESS_PROGRESS"))
    failures = sum(1 for result in progress.results.values() if result == "failed")
    skipped = sum(1 for result in progress.results.values() if result == "skipped")
    tests = list(discover(sys.argv[1:]))
    for name, func in tests:
        if name in progress.results:
            continue
        if progress.starts.get(name, 0) >= 2:
            failures += 1
            progress.record("failed", name)
            print(f"not ok - {name} (the emulated machine died during it in two attempts)",
                  flush=True)
            continue
        progress.record("start", name)
        start = time.monotonic()
        try:
            func(env)
        except wisptest.Skip as why:  # could not run here: never counted as passed
            progress.record("skipped", name)
            skipped += 1
            print(f"skip - {name} ({why})", flush=True)
        except Exception as exc:  # a test fails by raising anything
            failures += 1
            progress.record("failed", name)
            print(f"not ok - {name} ({time.monotonic() - start:.1f} s)", flush=True)
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            for line in detail.splitlines()[-40:]:
                print(f"    {line}", flush=True)
        else:
            progress.record("ok", name)
            print(f"ok - {name} ({time.monotonic() - start:.1f} s)", flush=True)
    print(f"# integration: {len(tests) - failures - skipped} passed, {failures} failed, "
          f"{skipped} skipped", flush=True)
    return 1 if failures or not tests else 0


if __name__ == "__main__":
    sys.exit(main())
