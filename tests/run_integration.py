#!/usr/bin/env python3
"""Runs the integration tests: every test_* function of tests/it/test_*.py,
each against a real gemini-looper started by the test, each bounded in time.
Prints one line per test and 'N passed, N failed' last; exits 1 on failure.

  python3 tests/run_integration.py --bin build/test/gemini-looper [-k name]
"""
import argparse
import importlib.util
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "it"))

import lib  # noqa: E402


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout("test took too long")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--plain-bin", default=os.path.join(
        os.path.dirname(HERE), "gemini-looper"),
        help="the build without sanitizers (memory measurements)")
    ap.add_argument("-k", default="")
    ap.add_argument("--timeout", type=int, default=120)
    args = ap.parse_args()
    lib.BIN = os.path.abspath(args.bin)
    lib.PLAIN_BIN = os.path.abspath(args.plain_bin)
    tests = []
    itdir = os.path.join(HERE, "it")
    for name in sorted(os.listdir(itdir)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(name[:-3],
                                                      os.path.join(itdir, name))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for attr in sorted(dir(mod)):
            if attr.startswith("test_") and callable(getattr(mod, attr)):
                full = "%s.%s" % (name[:-3], attr)
                if args.k in full:
                    tests.append((full, getattr(mod, attr)))
    signal.signal(signal.SIGALRM, _alarm)
    passed = failed = 0
    failures = []
    for full, fn in tests:
        t0 = time.monotonic()
        signal.alarm(args.timeout)
        try:
            fn()
            ok = True
        except BaseException as e:  # noqa: B902
            if isinstance(e, KeyboardInterrupt):
                raise
            ok = False
            failures.append((full, traceback.format_exc()))
        finally:
            signal.alarm(0)
            lib.cleanup()
        dt = time.monotonic() - t0
        print("%-60s %s (%.1fs)" % (full, "ok" if ok else "FAIL", dt),
              flush=True)
        if ok:
            passed += 1
        else:
            failed += 1
    for full, tb in failures:
        print("\n=== %s ===\n%s" % (full, tb))
    print("integration: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or not tests else 0)


if __name__ == "__main__":
    main()
