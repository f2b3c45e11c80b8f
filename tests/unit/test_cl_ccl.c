/* test_cl_ccl.c - OpenCL connected components (block union-find) against a
 * plain flood fill written here (raster numbering), on random volumes of
 * several densities, shapes, connectivities and label counts. */
#include "mp_cl.h"
#include "t.h"

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
	return bad ? 1 : 0;
}
