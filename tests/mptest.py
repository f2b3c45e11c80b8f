"""mptest.py - what the Python tests share: one line per test case, counted
by tests/run.sh (PASS name | FAIL name: why | SKIP name: why), and the exit
status at the end.

    sys.path.insert(0, "tests"); import mptest
    mptest.ok("name", cond, "why it failed")
    mptest.skip("name", "why")
    sys.exit(mptest.status())
"""
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


def status():
    """the exit status: 1 when any case failed"""
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit("mptest.py is a module for the tests")
