/* test_cl_ccl.c - OpenCL connected components (block union-find) against a
 * plain flood fill written here (raster numbering), on random volumes of
 * several densities, shapes, connectivities and label counts. */
#include "mp_cl.h"
#include "mp_label.h"
#include "mp_device.h"
#include "t.h"
#include "test_cl_data.h"
#include <time.h>

#include <stdlib.h>
#include <string.h>

static unsigned long long rs = 0x9e3779b97f4a7c15ULL;
static unsigned
rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return (unsigned)(rs >> 11);
}

/* reference: flood fill from each unlabelled voxel in raster order */
static long
ref_ccl(const uint8_t *v, size_t nx, size_t ny, size_t nz, int conn, size_t minsize, uint32_t *out)
{
	size_t n = nx * ny * nz, *stack = malloc(n * sizeof *stack), *memb = malloc(n * sizeof *memb);
	uint32_t *tmp = calloc(n, 4);
	long next = 0, kept = 0;
	int twod = conn == 4 || conn == 8;

	memset(out, 0, n * 4);
	for (size_t s = 0; s < n; s++) {
		size_t sp = 0, nm = 0;
		if (!v[s] || tmp[s])
			continue;
		tmp[s] = (uint32_t)++next;
		stack[sp++] = s;
		while (sp) {
			size_t i = stack[--sp], x = i % nx, y = i / nx % ny, z = i / nx / ny;
			memb[nm++] = i;
			for (int dz = twod ? 0 : -1; dz <= (twod ? 0 : 1); dz++)
				for (int dy = -1; dy <= 1; dy++)
					for (int dx = -1; dx <= 1; dx++) {
						int d = (dx != 0) + (dy != 0) + (dz != 0);
						long xx = (long)x + dx, yy = (long)y + dy, zz = (long)z + dz;
						size_t j;
						if (!d || ((conn == 6 || conn == 4) && d > 1) || (conn == 18 && d > 2))
							continue;
						if (xx < 0 || yy < 0 || zz < 0 || xx >= (long)nx || yy >= (long)ny || zz >= (long)nz)
							continue;
						j = ((size_t)zz * ny + (size_t)yy) * nx + (size_t)xx;
						if (v[j] == v[s] && !tmp[j]) {
							tmp[j] = (uint32_t)next;
							stack[sp++] = j;
						}
					}
		}
		if (nm >= minsize) {
			kept++;
			for (size_t k = 0; k < nm; k++)
				out[memb[k]] = (uint32_t)kept;
		}
	}
	free(stack);
	free(memb);
	free(tmp);
	return kept;
}

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* mp_cl_ccl and mp_cl_dust against mp_ccl32 and mp_dust on one volume */
static int
vs_c(mp_cl *c, const char *what, const void *vol, size_t es, size_t nx, size_t ny, size_t nz, int quiet)
{
	static const int conns[] = { 6, 18, 26, 4, 8 };
	size_t n = nx * ny * nz;
	uint32_t *a = malloc(n * 4), *b = malloc(n * 4);
	void *va = malloc(n * es), *vb = malloc(n * es);
	int bad = 0;
	double tc = 0, tl = 0, t0;

	for (size_t k = 0; k < sizeof conns / sizeof *conns; k++)
		for (int binary = 0; binary <= 1; binary++) {
			int64_t na, nb;
			t0 = now();
			na = mp_ccl32(vol, es, nx, ny, nz, conns[k], binary, a);
			tc += now() - t0;
			t0 = now();
			nb = mp_cl_ccl(c, vol, es, nx, ny, nz, conns[k], binary, 0, b);
			tl += now() - t0;
			if (na < 0 || nb != na || memcmp(a, b, n * 4)) {
				size_t i = 0;
				while (i < n && a[i] == b[i])
					i++;
				T_FAIL("cl ccl vs mp_ccl32", "%s conn %d binary %d: %lld vs %lld components, first difference at %zu (%s)",
				       what, conns[k], binary, (long long)na, (long long)nb, i, nb < 0 ? mp_err() : "");
				bad++;
			}
			for (int kl = 0; kl <= 1; kl++) {
				uint64_t c1 = 0, r1 = 0, c2 = 1, r2 = 1;
				double mn = kl ? 0 : 3 + (double)k;
				memcpy(va, vol, n * es);
				memcpy(vb, vol, n * es);
				if (mp_dust(va, es, nx, ny, nz, conns[k], binary, mn, kl, &c1, &r1)
				    || mp_cl_dust(c, vb, es, nx, ny, nz, conns[k], binary, mn, kl, &c2, &r2)
				    || c1 != c2 || r1 != r2 || memcmp(va, vb, n * es)) {
					T_FAIL("cl dust vs mp_dust", "%s conn %d binary %d min %g keep-largest %d: %llu/%llu vs %llu/%llu",
					       what, conns[k], binary, mn, kl, (unsigned long long)c1, (unsigned long long)r1,
					       (unsigned long long)c2, (unsigned long long)r2);
					bad++;
				}
			}
		}
	if (!bad && !quiet)
		printf("PASS cl ccl+dust = C on %s (10 ccl runs: C %.3f s, OpenCL %.3f s)\n", what, tc, tl);
	free(a);
	free(b);
	free(va);
	free(vb);
	return bad;
}

int
main(void)
{
	static const int conns[] = { 6, 18, 26, 4, 8 };
	static const size_t shapes[][3] = { { 1, 1, 1 }, { 17, 13, 11 }, { 64, 48, 20 }, { 5, 200, 3 }, { 128, 128, 1 }, { 33, 1, 40 } };
	static const unsigned dens[] = { 10, 45, 60, 90 };
	mp_cl *c;
	int bad = 0, cases = 0;

	mp_init("test_cl_ccl");
	if (mp_cl_devices(NULL) <= 0 || !(c = mp_cl_open(-1))) {
		T_SKIP("cl ccl", mp_err());
		return 0;
	}
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
		for (size_t d = 0; d < sizeof dens / sizeof *dens; d++)
			for (int labels = 1; labels <= 3; labels += 2)
				for (size_t k = 0; k < sizeof conns / sizeof *conns; k++)
					for (size_t minsize = 0; minsize <= 3; minsize += 3) {
						size_t nx = shapes[s][0], ny = shapes[s][1], nz = shapes[s][2], n = nx * ny * nz;
						uint8_t *v = malloc(n);
						uint32_t *a = malloc(n * 4), *b = malloc(n * 4);
						long na, nb;
						char name[160];

						for (size_t i = 0; i < n; i++)
							v[i] = rnd() % 100 < dens[d] ? (uint8_t)(1 + rnd() % (unsigned)labels) : 0;
						na = ref_ccl(v, nx, ny, nz, conns[k], minsize, a);
						nb = mp_cl_ccl(c, v, 1, nx, ny, nz, conns[k], 0, minsize, b);
						snprintf(name, sizeof name, "cl ccl %zux%zux%zu density %u%% labels %d conn %d min %zu",
						         nx, ny, nz, dens[d], labels, conns[k], minsize);
						cases++;
						if (nb < 0) {
							T_FAIL(name, "%s", mp_err());
							bad++;
						} else if (na != nb || memcmp(a, b, n * 4)) {
							size_t i = 0;
							while (i < n && a[i] == b[i])
								i++;
							T_FAIL(name, "%ld vs %ld components; first difference at %zu: %u vs %u", na, nb, i,
							       i < n ? a[i] : 0, i < n ? b[i] : 0);
							bad++;
						}
						free(v);
						free(a);
						free(b);
					}
	if (!bad)
		printf("PASS cl ccl: %d random cases bit-identical to the flood-fill reference\n", cases);
	mp_cl_close(c);

	/* in slabs: a small piece size forces the host-side join */
	setenv("MEDPIPE_CL_PIECE", "40000", 1);
	c = mp_cl_open(-1);
	bad = 0;
	for (size_t k = 0; k < sizeof conns / sizeof *conns; k++)
		for (unsigned dd = 0; dd < 3; dd++) {
			size_t nx = 37, ny = 29, nz = 41, n = nx * ny * nz;
			uint8_t *v = malloc(n);
			uint32_t *a = malloc(n * 4), *b = malloc(n * 4);
			long na, nb;
			unsigned den = 30 + 15 * dd;
			for (size_t i = 0; i < n; i++)
				v[i] = rnd() % 100 < den ? (uint8_t)(1 + (dd == 2 ? rnd() % 2 : 0)) : 0;
			na = ref_ccl(v, nx, ny, nz, conns[k], 2, a);
			nb = mp_cl_ccl(c, v, 1, nx, ny, nz, conns[k], 0, 2, b);
			if (nb < 0 || na != nb || memcmp(a, b, n * 4)) {
				T_FAIL("cl ccl in slabs", "conn %d density %u: %ld vs %ld (%s)", conns[k], den, na, nb, nb < 0 ? mp_err() : "");
				bad++;
			}
			free(v);
			free(a);
			free(b);
		}
	if (!bad)
		T_PASS("cl ccl: in slabs (40 kB pieces), joined on the host");
	mp_cl_close(c);
	unsetenv("MEDPIPE_CL_PIECE");

	/* against the C implementation: random volumes of each element size */
	c = mp_cl_open(-1);
	{
		static const size_t ess[] = { 1, 2, 4, 8 };
		int nb = 0;
		for (size_t e = 0; e < 4; e++)
			for (int r = 0; r < 3; r++) {
				size_t nx = 23 + (size_t)r * 9, ny = 19, nz = 7 + (size_t)r, n = nx * ny * nz;
				unsigned char *v = calloc(n, ess[e]);
				char what[64];
				for (size_t i = 0; i < n; i++)
					if (rnd() % 100 < 40 + 15u * (unsigned)r) {
						unsigned long long x = 1 + rnd() % (r == 0 ? 1 : r == 1 ? 3 : 200);
						if (r == 2 && ess[e] == 8)
							x |= (unsigned long long)(rnd() % 2) << 40;   /* high bits matter */
						memcpy(v + i * ess[e], &x, ess[e]);
					}
				snprintf(what, sizeof what, "random %zux%zux%zu, %zu-byte values", nx, ny, nz, ess[e]);
				nb += vs_c(c, what, v, ess[e], nx, ny, nz, 1);
				free(v);
			}
		if (!nb)
			T_PASS("cl ccl+dust = C on 12 random volumes (1/2/4/8-byte values, 1/3/200 labels)");
		bad += nb;
	}
	/* real label maps */
	{
		size_t dim[3];
		mp_type t;
		void *seg = td_nifti("nifti/totalseg/example_seg.nii.gz", dim, &t);
		if (!seg) {
			T_SKIP("cl ccl on example_seg.nii.gz", "no ../shared/data/nifti/totalseg");
		} else {
			bad += vs_c(c, "TotalSegmentator example_seg (41 labels)", seg, mp_type_size(t), dim[0], dim[1], dim[2], 0);
			free(seg);
		}
		if (getenv("MEDPIPE_SLOW") && atoi(getenv("MEDPIPE_SLOW"))) {
			uint8_t *frog = td_frog(dim);
			if (!frog)
				T_SKIP("cl ccl on the frog", "no ../shared/data/meta/frog");
			else {
				bad += vs_c(c, "frog tissue 500x470x136 (26 labels)", frog, 1, dim[0], dim[1], dim[2], 0);
				free(frog);
			}
		} else {
			T_SKIP("cl ccl on the frog (32M voxels)", "set MEDPIPE_SLOW=1");
		}
	}
	mp_cl_close(c);
	return bad ? 1 : 0;
}
