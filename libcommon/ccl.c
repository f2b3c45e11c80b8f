/* ccl.c - connected components of label volumes (3D 6/18/26, 2D 4/8 per
 * slice) and removal of small components (cc3d.dust's rule).
 *
 * One raster scan. For each foreground voxel the neighbours already scanned
 * (13 for 26-connectivity, 9 for 18, 3 for 6, 4 and 2 in 2D) are visited in
 * an order that puts the neighbour touching most of the others first (for 26
 * the voxel below, which touches all 12 others). Two earlier neighbours that
 * touch each other are already in one component (the later of them saw the
 * other when it was scanned), so once a neighbour of the voxel's class is
 * found, every neighbour touching it is skipped without being read: the
 * decision-tree idea (Wu, Otoo and Suzuki; Grana et al.) in table form, for
 * any connectivity. Provisional labels live in the output array; the
 * union-find keeps the smaller label as root, so a component's root is its
 * first voxel in raster order and the final numbering (one pass over the
 * equivalence table, one over the voxels) follows raster order.
 */
#include "mp_label.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct {
	int k;                  /* number of earlier neighbours */
	int dx[13], dy[13], dz[13];
	uint32_t adj[13];       /* earlier neighbours touching neighbour j (and j) */
	uint32_t all, need_xm, need_xp, need_ym, need_yp, need_zm;
	int witness;            /* 6 and 4: two neighbours found along different axes are
	                           already joined when the voxel diagonal to both is set */
	int face;               /* 6 or 4: the scan with the neighbours written out */
	int is2d;
} cclconn;

int
mp_ccl_conn_ok(int conn)
{
	return conn == 6 || conn == 18 || conn == 26 || conn == 4 || conn == 8;
}

static int
touches(int l1max, int ax, int ay, int az, int bx, int by, int bz)
{
	int x = abs(ax - bx), y = abs(ay - by), z = abs(az - bz);

	return x <= 1 && y <= 1 && z <= 1 && x + y + z <= l1max && x + y + z > 0;
}

static int
conn_setup(int conn, cclconn *c)
{
	int l1max, is2d = conn == 4 || conn == 8, n = 0;
	int cx[13], cy[13], cz[13], score[13], order[13];

	if (!mp_ccl_conn_ok(conn))
		return mp_seterr("connectivity %d: want 6, 18 or 26 (3D), 4 or 8 (2D)", conn);
	l1max = conn == 6 || conn == 4 ? 1 : conn == 18 || conn == 8 ? 2 : 3;
	for (int dz = -1; dz <= 0; dz++)
		for (int dy = -1; dy <= 1; dy++)
			for (int dx = -1; dx <= 1; dx++) {
				if (dz == 0 && (dy > 0 || (dy == 0 && dx >= 0)))
					continue;
				if (is2d && dz != 0)
					continue;
				if (abs(dx) + abs(dy) + abs(dz) > l1max)
					continue;
				cx[n] = dx, cy[n] = dy, cz[n] = dz, n++;
			}
	/* order: most touching first; among equals the nearest in memory first
	 * (x-1 before y-1 before z-1: the cache lines already at hand) */
	for (int i = 0; i < n; i++) {
		score[i] = 0;
		for (int j = 0; j < n; j++)
			score[i] += touches(l1max, cx[i], cy[i], cz[i], cx[j], cy[j], cz[j]);
		order[i] = i;
	}
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && (score[order[j]] > score[order[j - 1]] ||
		                          (score[order[j]] == score[order[j - 1]] && order[j] > order[j - 1])); j--) {
			int t = order[j];
			order[j] = order[j - 1], order[j - 1] = t;
		}
	memset(c, 0, sizeof *c);
	c->k = n;
	c->witness = conn == 6 || conn == 4;
	c->face = c->witness;
	c->is2d = is2d;
	for (int i = 0; i < n; i++) {
		int o = order[i];
		c->dx[i] = cx[o], c->dy[i] = cy[o], c->dz[i] = cz[o];
	}
	for (int i = 0; i < n; i++) {
		uint32_t b = 1u << i;
		c->adj[i] = b;
		for (int j = 0; j < n; j++)
			if (touches(l1max, c->dx[i], c->dy[i], c->dz[i], c->dx[j], c->dy[j], c->dz[j]))
				c->adj[i] |= 1u << j;
		c->all |= b;
		if (c->dx[i] < 0) c->need_xm |= b;
		if (c->dx[i] > 0) c->need_xp |= b;
		if (c->dy[i] < 0) c->need_ym |= b;
		if (c->dy[i] > 0) c->need_yp |= b;
		if (c->dz[i] < 0) c->need_zm |= b;
	}
	return 0;
}

/* helpers of CCL_SCAN (they use its locals: v, a, par, np, cap, nvox, lmax) */
#define CCL_SAME(w) (binary ? (w) != 0 : (w) == v)
#define CCL_UNION(L, A, B)                                                                     \
	do {                                                                                \
		L b_ = (B);                                                                 \
		if (b_ != (A)) {                                                            \
			while (par[A] != A) A = par[A] = par[par[A]];                       \
			while (par[b_] != b_) b_ = par[b_] = par[par[b_]];                  \
			if (A < b_) par[b_] = A;                                            \
			else if (b_ < A) { par[A] = b_; A = b_; }                           \
		}                                                                           \
	} while (0)
#define CCL_NEWLABEL(L)                                                                     \
	do {                                                                                \
		if (++np >= cap) {                                                          \
			L *t;                                                               \
			if ((uint64_t)np > lmax) {                                          \
				free(par);                                                  \
				return mp_seterr("connected components: more than %llu components; use 64-bit ids", (unsigned long long)lmax); \
			}                                                                   \
			cap = cap * 2 > nvox + 1 ? nvox + 1 : cap * 2;                      \
			t = realloc(par, cap * sizeof *par);                                \
			if (!t) {                                                           \
				free(par);                                                  \
				return mp_seterr("connected components: out of memory");   \
			}                                                                   \
			par = t;                                                            \
		}                                                                           \
		par[np] = (L)np;                                                            \
		a = (L)np;                                                                  \
	} while (0)

/* The neighbours of voxel i (value v) scanned before it: the first one of
 * v's class gives its label a, the others are joined to a, except that a
 * neighbour already joined through the voxel diagonal to it and the first
 * (6/4: the witness) is skipped. LAB(k): the label of neighbour k. */
#define CCL_NEIGHBOURS(T, L, LAB)                                                           \
	while (todo) {                                                                      \
		int k = __builtin_ctz(todo);                                                \
		T w = in[(ptrdiff_t)i + off[k]];                                            \
		todo &= todo - 1;                                                           \
		if (!CCL_SAME(w))                                                           \
			continue;                                                           \
		todo &= ~c->adj[k];                                                         \
		if (!a) {                                                                   \
			a = LAB(k);                                                         \
			k0 = k;                                                             \
			continue;                                                           \
		}                                                                           \
		if (c->witness && CCL_SAME(in[(ptrdiff_t)i + off[k0] + off[k]]))            \
			continue;                                                           \
		CCL_UNION(L, a, LAB(k));                                                    \
	}
#define CCL_OUT_AT(k) out[(ptrdiff_t)i + off[k]]
#define CCL_CUR_AT(k) cur[(ptrdiff_t)j + bo[k]]

/* The scan, for element type T and id type L. EQ(a): neighbour value a is in
 * the class of the current voxel v. */
#define CCL_SCAN(NAME, T, L)                                                                \
static int64_t                                                                              \
NAME(const T *in, size_t nx, size_t ny, size_t nz, const cclconn *c, int binary, L *out,    \
     uint64_t lmax, uint64_t **psizes, uint64_t **pfirst)                                   \
{                                                                                           \
	ptrdiff_t off[13];                                                                  \
	size_t cap = 4096, np = 0, nvox = nx * ny * nz;                                     \
	L *par;                                                                             \
	for (int k = 0; k < c->k; k++)                                                      \
		off[k] = (ptrdiff_t)c->dx[k] + (ptrdiff_t)c->dy[k] * (ptrdiff_t)nx          \
		       + (ptrdiff_t)c->dz[k] * (ptrdiff_t)(nx * ny);                         \
	par = malloc(cap * sizeof *par);                                                    \
	if (!par)                                                                           \
		return mp_seterr("connected components: out of memory");                    \
	par[0] = 0;                                                                         \
	if (c->face) {                                                                      \
		/* 6 (or 4): x-1, y-1, z-1 written out; same order and witness rule    \
		 * as the generic scan below, so the same labels come out */            \
		size_t sl = nx * ny;                                                        \
		for (size_t z = 0; z < nz; z++)                                             \
			for (size_t y = 0; y < ny; y++) {                                   \
				size_t base = (z * ny + y) * nx;                            \
				const T *r = in + base;                                     \
				L *o = out + base;                                          \
				int hy = y > 0, hz = z > 0 && !c->is2d;                     \
				for (size_t x = 0; x < nx; x++) {                           \
					T v = r[x];                                         \
					L a = 0;                                            \
					int k0 = -1;                                        \
					if (!v) {                                           \
						o[x] = 0;                                   \
						continue;                                   \
					}                                                   \
					if (x && CCL_SAME(r[x - 1])) {                      \
						a = o[x - 1];                               \
						k0 = 0;                                     \
					}                                                   \
					if (hy && CCL_SAME(r[x - nx])) {                    \
						if (!a) {                                   \
							a = o[x - nx];                      \
							k0 = 1;                             \
						} else if (!CCL_SAME(r[x - 1 - nx]))        \
							CCL_UNION(L, a, o[x - nx]);            \
					}                                                   \
					if (hz && CCL_SAME(r[x - sl])) {                    \
						if (!a)                                     \
							a = o[x - sl];                      \
						else if (!CCL_SAME(r[x - sl - (k0 == 0 ? 1 : nx)])) \
							CCL_UNION(L, a, o[x - sl]);            \
					}                                                   \
					if (!a)                                             \
						CCL_NEWLABEL(L);                            \
					o[x] = a;                                           \
				}                                                           \
			}                                                                   \
	} else {                                                                            \
	for (size_t z = 0; z < nz; z++)                                                     \
		for (size_t y = 0; y < ny; y++) {                                           \
			uint32_t row = c->all;                                              \
			size_t base = (z * ny + y) * nx;                                    \
			if (z == 0) row &= ~c->need_zm;                                     \
			if (y == 0) row &= ~c->need_ym;                                     \
			if (y == ny - 1) row &= ~c->need_yp;                                \
			for (size_t x = 0; x < nx; x++) {                                   \
				size_t i = base + x;                                        \
				T v = in[i];                                                \
				uint32_t todo = row;                                        \
				L a = 0;                                                    \
				int k0 = 0;                                                 \
				if (!v) {                                                   \
					out[i] = 0;                                         \
					continue;                                           \
				}                                                           \
				if (x == 0) todo &= ~c->need_xm;                            \
				if (x == nx - 1) todo &= ~c->need_xp;                       \
				CCL_NEIGHBOURS(T, L, CCL_OUT_AT);                   \
				if (!a)                                                     \
					CCL_NEWLABEL(L);                                    \
				out[i] = a;                                                 \
			}                                                                   \
		}                                                                           \
	} /* generic scan */                                                                \
	/* final ids in raster order of each root (the smallest label of its set) */       \
	uint64_t n = 0;                                                                     \
	for (size_t l = 1; l <= np; l++)                                                    \
		par[l] = par[l] == l ? (L)++n : par[par[l]];                                \
	if (!psizes) {                                                                      \
		for (size_t i = 0; i < nvox; i++)                                           \
			out[i] = par[out[i]];                                               \
		free(par);                                                                  \
		return (int64_t)n;                                                          \
	}                                                                                   \
	/* sizes (and first voxels) counted in the relabelling pass */                     \
	uint64_t *sz = calloc(n + 1, sizeof *sz), *fi = NULL;                               \
	if (pfirst)                                                                         \
		fi = malloc((n + 1) * sizeof *fi);                                          \
	if (!sz || (pfirst && !fi)) {                                                       \
		free(sz), free(fi), free(par);                                              \
		return mp_seterr("connected components: out of memory");                    \
	}                                                                                   \
	if (fi) {                                                                           \
		for (size_t i = 0; i < nvox; i++) {                                         \
			L id = par[out[i]];                                                 \
			out[i] = id;                                                        \
			if (!sz[id]++)                                                      \
				fi[id] = i;                                                 \
		}                                                                           \
	} else {                                                                            \
		for (size_t i = 0; i < nvox; i++) {                                         \
			L id = par[out[i]];                                                 \
			out[i] = id;                                                        \
			sz[id]++;                                                           \
		}                                                                           \
	}                                                                                   \
	*psizes = sz;                                                                       \
	if (pfirst)                                                                         \
		*pfirst = fi;                                                               \
	free(par);                                                                          \
	return (int64_t)n;                                                                  \
}

CCL_SCAN(scan_8_32, uint8_t, uint32_t)
CCL_SCAN(scan_16_32, uint16_t, uint32_t)
CCL_SCAN(scan_32_32, uint32_t, uint32_t)
CCL_SCAN(scan_64_32, uint64_t, uint32_t)
CCL_SCAN(scan_8_64, uint8_t, uint64_t)
CCL_SCAN(scan_16_64, uint16_t, uint64_t)
CCL_SCAN(scan_32_64, uint32_t, uint64_t)
CCL_SCAN(scan_64_64, uint64_t, uint64_t)

static int
ccl_args(size_t elsize, size_t nx, size_t ny, size_t nz, int conn, cclconn *c)
{
	size_t n;

	if (elsize != 1 && elsize != 2 && elsize != 4 && elsize != 8)
		return mp_seterr("connected components: element size %zu: want 1, 2, 4 or 8 bytes", elsize);
	if (mp_mulsize(nx, ny, &n) < 0 || mp_mulsize(n, nz, &n) < 0)
		return -1;
	if ((uint64_t)n >= UINT64_MAX / 2)
		return mp_seterr("connected components: volume too large");
	return conn_setup(conn, c);
}

static int64_t
ccl32_full(const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz, int conn, int binary, uint32_t *ids,
           uint64_t **sizes, uint64_t **first)
{
	cclconn c;

	if (ccl_args(elsize, nx, ny, nz, conn, &c) < 0)
		return -1;
	if (nx * ny * nz == 0)
		return 0;
	switch (elsize) {
	case 1: return scan_8_32(vol, nx, ny, nz, &c, binary, ids, UINT32_MAX - 1, sizes, first);
	case 2: return scan_16_32(vol, nx, ny, nz, &c, binary, ids, UINT32_MAX - 1, sizes, first);
	case 4: return scan_32_32(vol, nx, ny, nz, &c, binary, ids, UINT32_MAX - 1, sizes, first);
	default: return scan_64_32(vol, nx, ny, nz, &c, binary, ids, UINT32_MAX - 1, sizes, first);
	}
}

static int64_t
ccl64_full(const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz, int conn, int binary, uint64_t *ids,
           uint64_t **sizes, uint64_t **first)
{
	cclconn c;

	if (ccl_args(elsize, nx, ny, nz, conn, &c) < 0)
		return -1;
	if (nx * ny * nz == 0)
		return 0;
	switch (elsize) {
	case 1: return scan_8_64(vol, nx, ny, nz, &c, binary, ids, UINT64_MAX / 2, sizes, first);
	case 2: return scan_16_64(vol, nx, ny, nz, &c, binary, ids, UINT64_MAX / 2, sizes, first);
	case 4: return scan_32_64(vol, nx, ny, nz, &c, binary, ids, UINT64_MAX / 2, sizes, first);
	default: return scan_64_64(vol, nx, ny, nz, &c, binary, ids, UINT64_MAX / 2, sizes, first);
	}
}

int64_t
mp_ccl32(const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz, int conn, int binary, uint32_t *ids)
{
	return ccl32_full(vol, elsize, nx, ny, nz, conn, binary, ids, NULL, NULL);
}

int64_t
mp_ccl64(const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz, int conn, int binary, uint64_t *ids)
{
	return ccl64_full(vol, elsize, nx, ny, nz, conn, binary, ids, NULL, NULL);
}

void
mp_ccl_sizes32(const uint32_t *ids, size_t nvox, size_t n, uint64_t *sizes)
{
	memset(sizes, 0, (n + 1) * sizeof *sizes);
	for (size_t i = 0; i < nvox; i++)
		sizes[ids[i]]++;
}

void
mp_ccl_sizes64(const uint64_t *ids, size_t nvox, size_t n, uint64_t *sizes)
{
	memset(sizes, 0, (n + 1) * sizeof *sizes);
	for (size_t i = 0; i < nvox; i++)
		sizes[ids[i]]++;
}

/* ---------------------------------------------------------------- dust */

static uint64_t
val_at(const void *vol, size_t es, size_t i)
{
	const unsigned char *p = (const unsigned char *)vol + i * es;

	switch (es) {
	case 1: return *p;
	case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
	case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
	default: { uint64_t v; memcpy(&v, p, 8); return v; }
	}
}

typedef struct {
	uint64_t val, size, id;
} comp;

static int
comp_cmp(const void *pa, const void *pb)
{
	const comp *a = pa, *b = pb;

	if (a->val != b->val)
		return a->val < b->val ? -1 : 1;
	if (a->size != b->size)
		return a->size > b->size ? -1 : 1;
	return a->id < b->id ? -1 : a->id > b->id;
}

/* one slab (the whole volume for 3D, one slice for 2D) */
static int
dust_slab(unsigned char *vol, size_t es, size_t nx, size_t ny, size_t nz, int conn, int binary,
          double min, int keep_largest, void *ids, int wide, uint64_t *ncomp, uint64_t *nremoved)
{
	size_t nvox = nx * ny * nz;
	uint64_t *sizes = NULL, *first = NULL;
	int64_t n = wide ? ccl64_full(vol, es, nx, ny, nz, conn, binary, ids, &sizes, keep_largest ? &first : NULL)
	                 : ccl32_full(vol, es, nx, ny, nz, conn, binary, ids, &sizes, keep_largest ? &first : NULL);
	unsigned char *rm;
	uint64_t nrm = 0;

	if (n < 0)
		return -1;
	*ncomp += (uint64_t)n;
	if (n == 0) {
		free(sizes), free(first);
		return 0;
	}
	rm = calloc((size_t)n + 1, 1);
	if (!rm) {
		free(sizes), free(first);
		return mp_seterr("connected components: out of memory");
	}
	for (int64_t c = 1; c <= n; c++)
		if ((double)sizes[c] < min)
			rm[c] = 1;
	if (keep_largest) {
		comp *cs = malloc((size_t)n * sizeof *cs);
		if (!cs) {
			free(sizes), free(first), free(rm);
			return mp_seterr("connected components: out of memory");
		}
		for (int64_t c = 1; c <= n; c++) {
			cs[c - 1].val = binary ? 0 : val_at(vol, es, first[c]);
			cs[c - 1].size = sizes[c];
			cs[c - 1].id = (uint64_t)c;
		}
		qsort(cs, (size_t)n, sizeof *cs, comp_cmp);
		for (int64_t j = 1; j < n; j++)
			if (cs[j].val == cs[j - 1].val)
				rm[cs[j].id] = 1;
		free(cs);
	}
	for (int64_t c = 1; c <= n; c++)
		nrm += rm[c];
	if (nrm && wide) {
		const uint64_t *id = ids;
		for (size_t i = 0; i < nvox; i++)
			if (rm[id[i]])
				memset(vol + i * es, 0, es);
	} else if (nrm) {
		const uint32_t *id = ids;
		for (size_t i = 0; i < nvox; i++)
			if (rm[id[i]])
				memset(vol + i * es, 0, es);
	}
	*nremoved += nrm;
	free(sizes), free(first), free(rm);
	return 0;
}

/* Small-component removal in two scans with two slices of labels instead
 * of a label per voxel (26/18/6: neighbours reach back one slice only).
 * Scan 1 labels provisionally, joins, and counts voxels per provisional
 * label; then components get their final ids and sizes. Scan 2 repeats the
 * labelling without joins (a voxel takes the final id of any neighbour of its
 * class; a voxel that opened a new provisional label in scan 1 opens the same
 * one again, since the input is unchanged until then) and clears each slice
 * of removed components once the next slice has been scanned. */
#define DUST_SCAN(NAME, T)                                                                  \
static int                                                                                  \
NAME(T *in, size_t nx, size_t ny, size_t nz, const cclconn *c, int binary, double min,      \
     int keep_largest, uint64_t *ncomp, uint64_t *nremoved)                                 \
{                                                                                           \
	size_t nxy = nx * ny, cap = 4096, np = 0, np2 = 0;                                  \
	ptrdiff_t off[13], boff[2][13];                                                     \
	uint32_t *buf = malloc(2 * nxy * sizeof *buf), *par = malloc(cap * sizeof *par);    \
	uint64_t *cnt = malloc(cap * sizeof *cnt), *vals = NULL, *csize = NULL, *cval = NULL; \
	unsigned char *rm = NULL;                                                           \
	uint64_t n = 0, nrm = 0;                                                            \
	int r = -1;                                                                         \
	if (keep_largest)                                                                   \
		vals = malloc(cap * sizeof *vals);                                          \
	if (!buf || !par || !cnt || (keep_largest && !vals))                                \
		goto oom;                                                                   \
	for (int k = 0; k < c->k; k++) {                                                    \
		off[k] = (ptrdiff_t)c->dx[k] + (ptrdiff_t)c->dy[k] * (ptrdiff_t)nx          \
		       + (ptrdiff_t)c->dz[k] * (ptrdiff_t)nxy;                               \
		for (int p = 0; p < 2; p++)                                                 \
			boff[p][k] = (ptrdiff_t)c->dx[k] + (ptrdiff_t)c->dy[k] * (ptrdiff_t)nx \
			           + (c->dz[k] ? (p ? -(ptrdiff_t)nxy : (ptrdiff_t)nxy) : 0); \
	}                                                                                   \
	par[0] = 0;                                                                         \
	cnt[0] = 0;                                                                         \
	for (size_t z = 0; z < nz; z++) {                                                   \
		uint32_t *cur = buf + (z & 1) * nxy;                                        \
		const ptrdiff_t *bo = boff[z & 1];                                          \
		for (size_t y = 0; y < ny; y++) {                                           \
			uint32_t row = c->all;                                              \
			if (z == 0) row &= ~c->need_zm;                                     \
			if (y == 0) row &= ~c->need_ym;                                     \
			if (y == ny - 1) row &= ~c->need_yp;                                \
			for (size_t x = 0; x < nx; x++) {                                   \
				size_t j = y * nx + x, i = z * nxy + j;                     \
				T v = in[i];                                                \
				uint32_t todo = row, a = 0;                                 \
				int k0 = 0;                                                 \
				if (!v) {                                                   \
					cur[j] = 0;                                         \
					continue;                                           \
				}                                                           \
				if (x == 0) todo &= ~c->need_xm;                            \
				if (x == nx - 1) todo &= ~c->need_xp;                       \
				CCL_NEIGHBOURS(T, uint32_t, CCL_CUR_AT);            \
				if (!a) {                                                   \
					if (++np >= cap) {                                  \
						cap *= 2;                                   \
						uint32_t *t1 = realloc(par, cap * sizeof *par); \
						if (t1) par = t1;                           \
						uint64_t *t2 = realloc(cnt, cap * sizeof *cnt); \
						if (t2) cnt = t2;                           \
						uint64_t *t3 = vals ? realloc(vals, cap * sizeof *vals) : NULL; \
						if (t3) vals = t3;                          \
						if (!t1 || !t2 || (vals && !t3))            \
							goto oom;                           \
					}                                                   \
					par[np] = (uint32_t)np;                             \
					cnt[np] = 0;                                        \
					if (vals)                                           \
						vals[np] = (uint64_t)v;                     \
					a = (uint32_t)np;                                   \
				}                                                           \
				cur[j] = a;                                                 \
				cnt[a]++;                                                   \
			}                                                                   \
		}                                                                           \
	}                                                                                   \
	csize = calloc(np + 1, sizeof *csize);                                              \
	rm = calloc(np + 1, 1);                                                             \
	if (keep_largest)                                                                   \
		cval = malloc((np + 1) * sizeof *cval);                                     \
	if (!csize || !rm || (keep_largest && !cval))                                       \
		goto oom;                                                                   \
	for (size_t l = 1; l <= np; l++) {                                                  \
		if (par[l] == l) {                                                          \
			par[l] = (uint32_t)++n;                                             \
			if (cval)                                                           \
				cval[n] = binary ? 0 : vals[l];                             \
		} else {                                                                    \
			par[l] = par[par[l]];                                               \
		}                                                                           \
		csize[par[l]] += cnt[l];                                                    \
	}                                                                                   \
	for (uint64_t k = 1; k <= n; k++)                                                   \
		rm[k] = (double)csize[k] < min;                                             \
	if (keep_largest && n) {                                                            \
		comp *cs = malloc(n * sizeof *cs);                                          \
		if (!cs)                                                                    \
			goto oom;                                                           \
		for (uint64_t k = 1; k <= n; k++)                                           \
			cs[k - 1].val = cval[k], cs[k - 1].size = csize[k], cs[k - 1].id = k;   \
		qsort(cs, n, sizeof *cs, comp_cmp);                                         \
		for (uint64_t k = 1; k < n; k++)                                            \
			if (cs[k].val == cs[k - 1].val)                                     \
				rm[cs[k].id] = 1;                                           \
		free(cs);                                                                   \
	}                                                                                   \
	for (uint64_t k = 1; k <= n; k++)                                                   \
		nrm += rm[k];                                                               \
	if (nrm) {                                                                          \
		for (size_t z = 0; z < nz; z++) {                                           \
			uint32_t *cur = buf + (z & 1) * nxy;                                \
			const ptrdiff_t *bo = boff[z & 1];                                  \
			for (size_t y = 0; y < ny; y++) {                                   \
				uint32_t row = c->all;                                      \
				if (z == 0) row &= ~c->need_zm;                             \
				if (y == 0) row &= ~c->need_ym;                             \
				if (y == ny - 1) row &= ~c->need_yp;                        \
				for (size_t x = 0; x < nx; x++) {                           \
					size_t j = y * nx + x, i = z * nxy + j;             \
					T v = in[i];                                        \
					uint32_t todo = row, id = 0;                        \
					if (!v) {                                           \
						cur[j] = 0;                                 \
						continue;                                   \
					}                                                   \
					if (x == 0) todo &= ~c->need_xm;                    \
					if (x == nx - 1) todo &= ~c->need_xp;               \
					while (todo) {                                      \
						int k = __builtin_ctz(todo);                \
						T w = in[(ptrdiff_t)i + off[k]];            \
						todo &= todo - 1;                           \
						if (!CCL_SAME(w))               \
							continue;                           \
						id = cur[(ptrdiff_t)j + bo[k]];             \
						break;                                      \
					}                                                   \
					cur[j] = id ? id : par[++np2];                      \
				}                                                           \
			}                                                                   \
			if (z > 0) {                                                        \
				const uint32_t *prev = buf + ((z - 1) & 1) * nxy;           \
				T *s = in + (z - 1) * nxy;                                  \
				for (size_t j = 0; j < nxy; j++)                            \
					if (rm[prev[j]])                                    \
						s[j] = 0;                                   \
			}                                                                   \
		}                                                                           \
		{                                                                           \
			const uint32_t *last = buf + ((nz - 1) & 1) * nxy;                  \
			T *s = in + (nz - 1) * nxy;                                         \
			for (size_t j = 0; j < nxy; j++)                                    \
				if (rm[last[j]])                                            \
					s[j] = 0;                                           \
		}                                                                           \
	}                                                                                   \
	*ncomp += n;                                                                        \
	*nremoved += nrm;                                                                   \
	r = 0;                                                                              \
	if (0) {                                                                            \
oom:                                                                                        \
		mp_seterr("connected components: out of memory");                           \
	}                                                                                   \
	free(buf), free(par), free(cnt), free(vals), free(csize), free(cval), free(rm);     \
	return r;                                                                           \
}

DUST_SCAN(dust2_8, uint8_t)
DUST_SCAN(dust2_16, uint16_t)
DUST_SCAN(dust2_32, uint32_t)
DUST_SCAN(dust2_64, uint64_t)

int
mp_dust(void *vol, size_t es, size_t nx, size_t ny, size_t nz, int conn, int binary,
        double min, int keep_largest, uint64_t *ncomp, uint64_t *nremoved)
{
	int is2d = conn == 4 || conn == 8, wide;
	size_t slabz = is2d ? 1 : nz, nslab = is2d ? nz : 1, slab;
	uint64_t nc = 0, nr = 0;
	void *ids;
	cclconn c;

	if (ccl_args(es, nx, ny, nz, conn, &c) < 0)
		return -1;
	slab = nx * ny * slabz;
	if (slab == 0 || nslab == 0) {
		if (ncomp) *ncomp = 0;
		if (nremoved) *nremoved = 0;
		return 0;
	}
	const char *how = getenv("MEDPIPE_DUST");   /* "slices" / "full": force a method (tests) */
	int two = how && strcmp(how, "slices") == 0 ? 1 : how && strcmp(how, "full") == 0 ? 0
	        : !is2d && nx * ny * nz > ((size_t)1 << 28);
	if (two && nx * ny * nz < UINT32_MAX - 1) {
		/* two slices of labels, not one per voxel: for volumes whose ids
		 * would take more than 1 GiB (the one-pass method is ~20% faster) */
		int r;
		switch (es) {
		case 1: r = dust2_8(vol, nx, ny, nz, &c, binary, min, keep_largest, &nc, &nr); break;
		case 2: r = dust2_16(vol, nx, ny, nz, &c, binary, min, keep_largest, &nc, &nr); break;
		case 4: r = dust2_32(vol, nx, ny, nz, &c, binary, min, keep_largest, &nc, &nr); break;
		default: r = dust2_64(vol, nx, ny, nz, &c, binary, min, keep_largest, &nc, &nr); break;
		}
		if (r < 0)
			return -1;
		if (ncomp) *ncomp = nc;
		if (nremoved) *nremoved = nr;
		return 0;
	}
	wide = slab >= UINT32_MAX;
	ids = mp_alloc_big(slab * (wide ? 8 : 4));
	if (!ids)
		return mp_seterr("connected components: out of memory for %zu ids", slab);
	for (size_t s = 0; s < nslab; s++)
		if (dust_slab((unsigned char *)vol + s * slab * es, es, nx, ny, slabz, conn, binary,
		              min, keep_largest, ids, wide, &nc, &nr) < 0) {
			free(ids);
			return -1;
		}
	free(ids);
	if (ncomp) *ncomp = nc;
	if (nremoved) *nremoved = nr;
	return 0;
}
