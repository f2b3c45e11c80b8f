"""mptest.py - what the Python tests share: one line per test case, counted
by tests/run.sh (PASS name | FAIL name: why | SKIP name: why), and the exit
status at the end.

    sys.path.insert(0, "tests"); import mptest
    mptest.ok("name", cond, "why it failed")
    mptest.skip("name", "why")
    mptest.skip_ref("name", "why")   # a missing reference: FAIL under CI=true
    mptest.bad(a, b, tol)  # True unless |a-b| <= tol (NaN is bad)
    sys.exit(mptest.status())
"""
import math
import os
import sys

fails = 0


def ok(name, cond, why=""):
    """PASS when cond holds, else FAIL with why"""
    global fails
    if cond:
        print("PASS", name, flush=True)
    else:
        fails += 1
        print("FAIL %s: %s" % (name, why), flush=True)


def skip(name, why):
    print("SKIP %s: %s" % (name, why), flush=True)


def skip_ref(name, why):
    """a reference package or program the comparison needs is missing: SKIP,
    but FAIL under CI=true, where tests/deps.sh installs every reference"""
    global fails
    if os.environ.get("CI") == "true":
        fails += 1
        print("FAIL %s: %s (a missing reference fails under CI=true; run tests/deps.sh)" % (name, why), flush=True)
    else:
        print("SKIP %s: %s" % (name, why), flush=True)


def bad(a, b, tol):
    """True unless |a - b| <= tol: a NaN on either side is bad (a NaN-aware
    `abs(a - b) > tol`)"""
    return not (abs(a - b) <= tol)


def worse(acc, x):
    """max(acc, x) where a NaN wins (Python's max drops a NaN after the first)"""
    return math.inf if (acc != acc or x != x) else max(acc, x)


def status():
    """the exit status: 1 when any case failed"""
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit("mptest.py is a module for the tests")
