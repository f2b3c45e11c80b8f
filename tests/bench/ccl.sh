#!/bin/sh
# ccl-clean vs cc3d and scipy.ndimage.label on a CT-sized label volume
# (512x512x300 uint8: TotalSegmentator's example label map enlarged with
# nearest neighbour, 41 labels; random blobs when ../shared/data is absent).
# medpipe: the whole program (read the frame, label, write), best of 3.
# Peers: the library call alone on an array in memory, best of 3.
# Repeat: BENCH=ccl make bench
cd "$(dirname "$0")/../.." || exit 1
VPY=${VPY:-.venv/bin/python3}; [ -x "$VPY" ] || VPY=/usr/bin/python3
DATA=${DATA:-../shared/data}
# the library call alone (no I/O), to compare with the peers' library calls
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cat > "$T/b.c" <<'EOF'
#include "mp_label.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
	size_t nx = strtoul(argv[2], 0, 10), ny = strtoul(argv[3], 0, 10), nz = strtoul(argv[4], 0, 10), n = nx * ny * nz;
	unsigned char *v = malloc(n), *w = malloc(n);
	uint32_t *ids = mp_alloc_big(n * 4);
	FILE *fp = fopen(argv[1], "rb");
	if (!fp || fread(v, 1, n, fp) != n) return 1;
	for (int c = 0; c < 5; c++) {
		int conn = c < 2 ? (c ? 6 : 26) : c < 4 ? (c == 2 ? 26 : 6) : 0;
		double best = 1e9;
		for (int r = 0; r < 3; r++) {
			double t = now();
			if (c < 4) mp_ccl32(v, 1, nx, ny, nz, conn, c >= 2, ids);
			else { memcpy(w, v, n); mp_dust(w, 1, nx, ny, nz, 26, 0, 1000, 0, 0, 0); mp_dust(w, 1, nx, ny, nz, 8, 0, 100, 0, 0, 0); }
			t = now() - t;
			if (t < best) best = t;
		}
		printf("%.4f\n", best);
	}
	return 0;
}
EOF
cc -O2 -std=c11 -D_GNU_SOURCE -Ilibcommon -o "$T/b" "$T/b.c" build/libmedpipe.a -lz -lm -pthread || exit 1
BENCHBIN="$T/b" exec "$VPY" - "$DATA" <<'EOF'
import os, resource, subprocess, sys, tempfile, time
sys.path.insert(0, "tests/bench")
from benchlib import best, ratio  # noqa: E402,F401
import numpy as np
import scipy.ndimage as ndi
try:
    import cc3d
except ImportError:
    cc3d = None

seg = os.path.join(sys.argv[1], "nifti/totalseg/example_seg.nii.gz")
shape = (300, 512, 512)
if os.path.exists(seg):
    import nibabel as nib
    s = np.asanyarray(nib.load(seg).dataobj).astype(np.uint8).transpose(2, 1, 0)
    lab = ndi.zoom(s, [a / b for a, b in zip(shape, s.shape)], order=0)
    what = "TotalSegmentator example_seg enlarged"
else:
    rng = np.random.default_rng(0)
    lab = (ndi.gaussian_filter(rng.random((75, 128, 128)), 3) > 0.5).astype(np.uint8)
    lab = ndi.zoom(lab * rng.integers(1, 20, lab.shape).astype(np.uint8), 4, order=0)
    what = "random blobs"
lab = np.ascontiguousarray(lab)
z, y, x = lab.shape
T = tempfile.mkdtemp()
path = os.path.join(T, "lab.nrrd")
lab.tofile(os.path.join(T, "lab.raw"))
lib = [float(v) for v in subprocess.run([os.environ["BENCHBIN"], os.path.join(T, "lab.raw"), str(x), str(y), str(z)],
                                        capture_output=True, text=True, check=True).stdout.split()]
with open(path, "wb") as fp:
    fp.write(("NRRD0004\ntype: uint8\ndimension: 3\nspace: left-posterior-superior\nsizes: %d %d %d\n"
              "space directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (0,0,0)\nendian: little\n"
              "encoding: raw\nmedpipe.role:=label\n\n" % (x, y, z)).encode())
    fp.write(lab.tobytes())


def tool(*args):
    return best(lambda: subprocess.run(["bin/ccl-clean"] + list(args) + [path], stdout=subprocess.DEVNULL, check=True))


def cmp(name, ours, peer, pname):
    return "%s medpipe %.3f s (cpu %.3f)  %s %.3f s (cpu %.3f)  ratio %.2fx (cpu %.2fx)" % (
        name, ours[0], ours[1], pname, peer[0], peer[1], peer[0] / ours[0], peer[1] / ours[1])


print("ccl: %s, %dx%dx%d uint8, %d labels" % (what, x, y, z, len(np.unique(lab)) - 1))
print("ccl: load average %.1f on %d cores (wall times suffer on a busy machine; cpu = user+sys)" % (os.getloadavg()[0], os.cpu_count()))
print("ccl: library calls, no I/O, CPU seconds (best of 3):")
pk = {}
if cc3d:
    pk[0] = best(lambda: cc3d.connected_components(lab, connectivity=26))[1]
    pk[1] = best(lambda: cc3d.connected_components(lab, connectivity=6))[1]
pk[2] = best(lambda: ndi.label(lab > 0, structure=ndi.generate_binary_structure(3, 3)))[1]
pk[3] = best(lambda: ndi.label(lab > 0, structure=ndi.generate_binary_structure(3, 1)))[1]


def dust_py():
    g = cc3d.dust(lab.copy(), threshold=1000, connectivity=26, in_place=True)
    for i in range(g.shape[0]):
        g[i] = cc3d.dust(g[i], threshold=100, connectivity=8, in_place=True)


if cc3d:
    pk[4] = best(dust_py)[1]
names = ("multi-label 26-conn vs cc3d", "multi-label 6-conn vs cc3d", "binary 26-conn vs scipy.ndimage.label",
         "binary 6-conn vs scipy.ndimage.label", "MedSAM dust 1000/26 + 100/8 per slice vs cc3d.dust")
goals = {0: 2.0, 4: 4.0}   # issue 17
for k, nm in enumerate(names):
    if k in pk:
        g = pk[k] / lib[k]
        print("ccl:   %-52s medpipe %.3f s  peer %.3f s  ratio %.2fx%s" % (
            nm, lib[k], pk[k], g, "  (goal >= %.0fx: %s)" % (goals[k], "met" if g >= goals[k] else "NOT met") if k in goals else ""))
print("ccl: whole program (read frame, label, write) vs the peer's library call:")
ours = tool("--ids-only", "--connectivity", "26")
if cc3d:
    print("ccl:   " + cmp("ids 26-conn:", ours, best(lambda: cc3d.connected_components(lab, connectivity=26)), "cc3d"))
ours = tool("--min", "1000", "--min2d", "100")
if cc3d:
    print("ccl:   " + cmp("MedSAM dust:", ours, best(dust_py), "cc3d.dust"))
subprocess.run(["rm", "-rf", T])
EOF
