#!/usr/bin/env python3
"""Integration test runner: real KVM, the real guest kernel, real files.

Finds test_*.py beside this file and runs every `test_*` function in them, printing
`ok - integration/<module>/<test>` or `not ok - ...` with the reason. A test is a plain
function taking the shared `Env`; it fails by raising (AssertionError or anything else).
Usage: run.py [substring...]   (run only tests whose name contains one of them)
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


def main():
    env = wisptest.Env.from_environment()
    print(f"# wisp {env.wisp}, kernel {env.kernel_dir}, /dev/kvm "
          f"{'present' if os.path.exists('/dev/kvm') else 'MISSING'}", flush=True)
    failures = 0
    tests = list(discover(sys.argv[1:]))
    for name, func in tests:
        start = time.monotonic()
        try:
            func(env)
        except Exception as exc:  # a test fails by raising anything
            failures += 1
            print(f"not ok - {name} ({time.monotonic() - start:.1f} s)", flush=True)
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            for line in detail.splitlines()[-40:]:
                print(f"    {line}", flush=True)
        else:
            print(f"ok - {name} ({time.monotonic() - start:.1f} s)", flush=True)
    print(f"# integration: {len(tests) - failures} passed, {failures} failed", flush=True)
    return 1 if failures or not tests else 0


if __name__ == "__main__":
    sys.exit(main())
