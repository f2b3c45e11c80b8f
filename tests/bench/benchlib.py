"""benchlib.py - what the Python benchmarks share (run from the project root:
sys.path.insert(0, "tests/bench")).

best(fn, n): the best wall time and the best CPU time (this process and its
children, user + system, from getrusage: microseconds, not 10 ms ticks) of n
runs of fn(). ratio(...): one line with both sides and peer/medpipe."""
import resource
import time


def best(fn, n=3):
    t = []
    for _ in range(n):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        w = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t.append((w, time.process_time() - c0 + (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)))
    return min(a for a, b in t), min(b for a, b in t)


def ratio(what, a, b, nb):
    """a: medpipe (wall, cpu), b: the peer nb (wall, cpu)"""
    print("%s: medpipe %.3f s (cpu %.3f s), %s %.3f s (cpu %.3f s), ratio %s/medpipe %.2fx wall, %.2fx cpu"
          % (what, a[0], a[1], nb, b[0], b[1], nb, b[0] / a[0], b[1] / a[1]), flush=True)
