#!/usr/bin/python3
"""tests/mutants/run.py - `make mutants`: do the tests catch deliberate bugs?

Each line of tests/mutants/list is one bug:

    NAME @@ FILE @@ TEST[,TEST...] @@ OLD @@ NEW

OLD must occur exactly once in FILE.  The working tree (tracked and untracked,
not ignored files, plus build/ and bin/ so that only the changed file is
recompiled) is copied to build/mutants/tree; for each bug FILE is edited
there, `make all` rebuilds, and the named tests (file names as tests/run.sh
knows them) run one after the other until one fails.  A bug is "caught" when
a test fails, "MISSED" when all pass.  First the named tests run once on the
unchanged copy: they must pass, or a catch would mean nothing.

    python3 tests/mutants/run.py [--tests-from REV] [--list FILE] [NAME...]

--tests-from REV runs the tests/ of an older commit against the same bugs
(the before/after table of issue 18).  Logs: build/mutants/logs/
(MUTANTS_DIR=DIR: another folder; MUTANTS_NO_BASELINE=1: no baseline run;
MUTANTS_NO_VENV=1: the copy has no .venv, as a machine without PyPI).  Exit 1
when a bug is missed, the build of a bug fails, or the baseline fails.
"""
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
WORK = os.path.abspath(os.environ.get("MUTANTS_DIR", os.path.join(ROOT, "build", "mutants")))
TREE = os.path.join(WORK, "tree")
LOGS = os.path.join(WORK, "logs")


def parse(path):
    out = []
    for n, line in enumerate(open(path), 1):
        line = line.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        f = [x.strip(" ") for x in line.split(" @@ ")]   # tabs kept: they may anchor OLD
        if len(f) != 5:
            sys.exit("%s:%d: expected NAME @@ FILE @@ TESTS @@ OLD @@ NEW" % (path, n))
        out.append({"name": f[0], "file": f[1], "tests": f[2].split(","), "old": f[3], "new": f[4]})
    return out


def copy_tree(tests_from):
    if os.path.exists(TREE):
        shutil.rmtree(TREE)
    os.makedirs(TREE)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.split(b"\0")
    files = [f.decode() for f in files if f and os.path.lexists(os.path.join(ROOT, f.decode()))]
    if os.environ.get("MUTANTS_NO_VENV") != "1":   # 1: as on a machine without the PyPI references
        files += [".venv"] if os.path.lexists(os.path.join(ROOT, ".venv")) else []
    subprocess.run(["tar", "-cf", os.path.join(WORK, "src.tar"), "--", *files], cwd=ROOT, check=True)
    subprocess.run(["tar", "-cf", os.path.join(WORK, "build.tar"), "--exclude=build/mutants*",
                    "--exclude=build/test-logs", "build", "bin"], cwd=ROOT, check=True)
    for t in ("build.tar", "src.tar"):   # sources last: newer than the objects only when edited
        subprocess.run(["tar", "-xpf", os.path.join(WORK, t)], cwd=TREE, check=True)
        os.remove(os.path.join(WORK, t))
    if tests_from:
        shutil.rmtree(os.path.join(TREE, "tests"))
        a = subprocess.run(["git", "archive", tests_from, "tests"], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-xf", "-"], cwd=TREE, input=a, check=True)


def make(log):
    with open(log, "ab") as f:
        return subprocess.run(["make", "-j2", "all"], cwd=TREE, stdout=f, stderr=subprocess.STDOUT).returncode == 0


def run_test(t, log):
    env = dict(os.environ, TESTS=t, DATA=os.path.abspath(os.environ.get("DATA", os.path.join(ROOT, "..", "shared", "data"))))
    with open(log, "ab") as f:
        f.write(("\n==== TESTS=%s\n" % t).encode())
        f.flush()
        r = subprocess.run(["sh", "tests/run.sh"], cwd=TREE, env=env, stdout=f, stderr=subprocess.STDOUT)
    return r.returncode == 0


def main():
    args = sys.argv[1:]
    tests_from, lst, only = None, os.path.join(ROOT, "tests", "mutants", "list"), []
    while args:
        a = args.pop(0)
        if a == "--tests-from":
            tests_from = args.pop(0)
        elif a == "--list":
            lst = args.pop(0)
        elif a.startswith("-"):
            sys.exit(__doc__)
        else:
            only.append(a)
    muts = parse(lst)
    if only:
        muts = [m for m in muts if m["name"] in only]
    os.makedirs(LOGS, exist_ok=True)
    for m in muts:
        src = open(os.path.join(ROOT, m["file"])).read()
        if src.count(m["old"]) != 1:
            sys.exit("mutants: %s: '%s' occurs %d times in %s (must be once)" % (m["name"], m["old"], src.count(m["old"]), m["file"]))
    print("mutants: copying the tree to %s%s" % (TREE, " with tests/ from " + tests_from if tests_from else ""), flush=True)
    copy_tree(tests_from)
    bad = 0
    if not make(os.path.join(LOGS, "baseline.log")):
        sys.exit("mutants: the unchanged copy does not build (see build/mutants/logs/baseline.log)")
    if os.environ.get("MUTANTS_NO_BASELINE") != "1":
        for t in sorted({t for m in muts for t in m["tests"]}):
            if not run_test(t, os.path.join(LOGS, "baseline.log")):
                print("mutants: baseline: %s fails on the unchanged tree (see build/mutants/logs/baseline.log)" % t)
                bad += 1
        if bad:
            return 1
    rows = []
    for m in muts:
        t0 = time.time()
        path = os.path.join(TREE, m["file"])
        orig = open(path).read()
        log = os.path.join(LOGS, m["name"] + ".log")
        if os.path.exists(log):
            os.remove(log)
        open(path, "w").write(orig.replace(m["old"], m["new"], 1))
        try:
            if not make(log):
                res = "BUILD-FAILED"
            else:
                res = "MISSED"
                for t in m["tests"]:
                    if not run_test(t, log):
                        res = "caught by " + t
                        break
        finally:
            open(path, "w").write(orig)
        bad += not res.startswith("caught")
        rows.append((m["name"], res, time.time() - t0))
        print("%-28s %-34s %4.0fs" % rows[-1], flush=True)
    make(os.path.join(LOGS, "restore.log"))
    c = sum(r[1].startswith("caught") for r in rows)
    print("mutants: %d caught, %d missed or broken, of %d" % (c, len(rows) - c, len(rows)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
