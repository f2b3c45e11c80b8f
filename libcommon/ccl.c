/* ccl.c - connected components of label volumes (3D 6/18/26, 2D 4/8 per
 * slice) and removal of small components (cc3d.dust's rule).
 *
 * Labelling and removal go by runs (RUN_SCAN below): each row is cut into
 * maximal runs of one class, a run is joined to the runs of its class it
 * touches in the (at most 4) rows scanned before it, and the union-find keeps
 * the smaller provisional label as root, so a component's root is the run
 * holding its first voxel in raster order and the final numbering follows
 * raster order. Removal needs no label per voxel: sizes are summed per run
 * and the removed runs cleared in a second pass over the input.
 *
 * The older voxel scan survives in DUST_SCAN (MEDPIPE_DUST=slices, a second
 * implementation for the tests): for each foreground voxel the neighbours
 * already scanned are visited in an order that puts the neighbour touching
 * most of the others first; once a neighbour of the voxel's class is found,
 * every neighbour touching it is skipped without being read (the
 * decision-tree idea of Wu, Otoo and Suzuki and Grana et al., in table form).
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
	int nrow;               /* run scan: the earlier rows a run may touch */
	int rdy[4], rdz[4], rslack[4];  /* row offset; 1: diagonal steps reach x-1, x+1 */
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
	for (int dz = -1; dz <= 0; dz++)
		for (int dy = -1; dy <= 1; dy++) {
			int d = abs(dy) + abs(dz);
			if ((dz == 0 && dy >= 0) || (is2d && dz) || d > l1max)
				continue;
			c->rdy[c->nrow] = dy, c->rdz[c->nrow] = dz;
			c->rslack[c->nrow++] = d + 1 <= l1max;
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
#define CCL_CUR_AT(k) cur[(ptrdiff_t)j + bo[k]]

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

/* ------------------------------------------------------------ the run scan */

/* the next run of row r at or after x: a maximal segment of one class
 * [x0, x1] (one value, or any non-zero value when binary); x ends past it,
 * or at n when the row has no more foreground. Bytes go 8 at a time. */
#define CCL_NEXT_RUN(T, r, n, x, x0, x1, v)                                                 \
	{                                                                                   \
		if (sizeof(T) == 1) {                                                       \
			uint64_t w_;                                                        \
			while (x + 8 <= n && (memcpy(&w_, r + x, 8), w_ == 0))              \
				x += 8;                                                     \
		}                                                                           \
		while (x < n && !r[x])                                                      \
			x++;                                                                \
		if (x == n)                                                                 \
			break;                                                              \
		x0 = x;                                                                     \
		v = r[x++];                                                                 \
		if (binary) {                                                               \
			while (x < n && r[x])                                               \
				x++;                                                        \
		} else {                                                                    \
			if (sizeof(T) == 1) {                                               \
				uint64_t w_, p_ = (uint64_t)v * 0x0101010101010101ull;      \
				while (x + 8 <= n && (memcpy(&w_, r + x, 8), w_ == p_))     \
					x += 8;                                             \
			}                                                                   \
			while (x < n && r[x] == v)                                          \
				x++;                                                        \
		}                                                                           \
		x1 = x - 1;                                                                 \
	}

/* Labelling by runs (the class of the run-based methods of He, Chao and
 * Suzuki): each row is cut into runs; a run joins the runs of its class in
 * the rows scanned before it that it touches (up to 4 rows: y-1 in its slice,
 * y-1, y, y+1 in the slice below; slack 1 where the diagonal step is within
 * the connectivity), so one union per touching run instead of a neighbour
 * test per voxel, and background is skipped 8 bytes at a time. A run with
 * no such neighbour opens a provisional label; those open in raster order of
 * the runs' first voxels, and the union-find keeps the smaller label as root,
 * so a component's root is the run holding its first voxel and the final
 * numbering follows raster order (the same ids as any correct labelling).
 * ids mode (out): the scan writes provisional labels, then only the runs
 * whose label changed are rewritten (the runs found again in the input).
 * dust mode (wr, out NULL): sizes are summed per provisional label, the label
 * of each run is kept in a list, and the removed runs are cleared in a second
 * pass over the input; no label per voxel at all. */
#define RUN_SCAN(NAME, T, L)                                                                \
static int64_t                                                                              \
NAME(const T *in, T *wr, size_t nx, size_t ny, size_t nz, const cclconn *c, int binary,     \
     L *out, uint64_t lmax, double min, int keep_largest, uint64_t *nremoved)               \
{                                                                                           \
	typedef struct { size_t x0, x1; L lab; T v; } run_t;                                \
	size_t nxy = nx * ny, np = 0, cap = 4096, rcap[2] = { 1024, 1024 }, rlcap = 4096, nrl = 0; \
	run_t *rb[2] = { malloc(rcap[0] * sizeof(run_t)), malloc(rcap[1] * sizeof(run_t)) }; \
	size_t *rowi[2] = { malloc((ny + 1) * sizeof(size_t)), malloc((ny + 1) * sizeof(size_t)) }; \
	L *par = malloc(cap * sizeof *par), *cnt = NULL, *rl = NULL;                        \
	T *vals = NULL;                                                                     \
	uint64_t *csize = NULL, n = 0, nrm = 0;                                             \
	unsigned char *rm = NULL;                                                           \
	int64_t ret = -1;                                                                   \
	int dust = wr != NULL, ident = 1;                                                   \
	if (dust) {                                                                         \
		cnt = malloc(cap * sizeof *cnt), rl = malloc(rlcap * sizeof *rl);           \
		if (keep_largest)                                                           \
			vals = malloc(cap * sizeof *vals);                                  \
	}                                                                                   \
	if (!rb[0] || !rb[1] || !rowi[0] || !rowi[1] || !par || (dust && (!cnt || !rl)) || \
	    (keep_largest && dust && !vals))                                                \
		goto oom;                                                                   \
	par[0] = 0;                                                                         \
	for (size_t z = 0; z < nz; z++) {                                                   \
		int s = (int)(z & 1);                                                       \
		size_t nr = 0;                                                              \
		for (size_t y = 0; y < ny; y++) {                                           \
			const T *r = in + z * nxy + y * nx;                                 \
			L *o = out ? out + z * nxy + y * nx : NULL;                         \
			size_t p[4], e[4], sl[4], x = 0, xo = 0;                            \
			int cur[4], m = 0;                                                  \
			rowi[s][y] = nr;                                                    \
			for (int k = 0; k < c->nrow; k++) {                                 \
				ptrdiff_t yy = (ptrdiff_t)y + c->rdy[k];                    \
				if (yy < 0 || yy >= (ptrdiff_t)ny || (c->rdz[k] && z == 0)) \
					continue;                                           \
				cur[m] = !c->rdz[k];                                        \
				p[m] = rowi[cur[m] ? s : !s][yy];                           \
				e[m] = rowi[cur[m] ? s : !s][yy + 1];                       \
				sl[m] = (size_t)c->rslack[k];                               \
				m++;                                                        \
			}                                                                   \
			for (;;) {                                                          \
				size_t x0, x1;                                              \
				T v;                                                        \
				L a = 0;                                                    \
				CCL_NEXT_RUN(T, r, nx, x, x0, x1, v);                       \
				for (int k = 0; k < m; k++) {                               \
					const run_t *q = rb[cur[k] ? s : !s];               \
					while (p[k] < e[k] && q[p[k]].x1 + sl[k] < x0)      \
						p[k]++;                                     \
					for (size_t j = p[k]; j < e[k] && q[j].x0 <= x1 + sl[k]; j++) \
						if (binary || q[j].v == v) {                \
							if (!a)                             \
								a = q[j].lab;               \
							else                                \
								CCL_UNION(L, a, q[j].lab);  \
						}                                           \
				}                                                           \
				if (!a) {                                                   \
					if ((uint64_t)++np > lmax) {                        \
						mp_seterr("connected components: more than %llu components; use 64-bit ids", \
						          (unsigned long long)lmax);        \
						goto fail;                                  \
					}                                                   \
					if (np >= cap) {                                    \
						cap *= 2;                                   \
						L *t1 = realloc(par, cap * sizeof *par);    \
						if (t1) par = t1;                           \
						L *t2 = cnt ? realloc(cnt, cap * sizeof *cnt) : NULL; \
						if (t2) cnt = t2;                           \
						T *t3 = vals ? realloc(vals, cap * sizeof *vals) : NULL; \
						if (t3) vals = t3;                          \
						if (!t1 || (cnt && !t2) || (vals && !t3))   \
							goto oom;                           \
					}                                                   \
					par[np] = (L)np;                                    \
					a = (L)np;                                          \
					if (dust) {                                         \
						cnt[np] = 0;                                \
						if (vals)                                   \
							vals[np] = binary ? 0 : v;          \
					}                                                   \
				}                                                           \
				if (nr == rcap[s]) {                                        \
					run_t *t = realloc(rb[s], 2 * rcap[s] * sizeof *t); \
					if (!t)                                             \
						goto oom;                                   \
					rb[s] = t, rcap[s] *= 2;                            \
				}                                                           \
				rb[s][nr].x0 = x0, rb[s][nr].x1 = x1, rb[s][nr].lab = a, rb[s][nr].v = v; \
				nr++;                                                       \
				if (dust) {                                                 \
					cnt[a] += (L)(x1 - x0 + 1);                         \
					if (nrl == rlcap) {                                 \
						L *t = realloc(rl, 2 * rlcap * sizeof *t);  \
						if (!t)                                     \
							goto oom;                           \
						rl = t, rlcap *= 2;                         \
					}                                                   \
					rl[nrl++] = a;                                      \
				} else {                                                    \
					for (; xo < x0; xo++)                               \
						o[xo] = 0;                                  \
					for (; xo <= x1; xo++)                              \
						o[xo] = a;                                  \
				}                                                           \
			}                                                                   \
			if (o)                                                              \
				for (; xo < nx; xo++)                                       \
					o[xo] = 0;                                          \
		}                                                                           \
		rowi[s][ny] = nr;                                                           \
	}                                                                                   \
	/* final ids in raster order of each root (the smallest label of its set) */       \
	for (size_t l = 1; l <= np; l++) {                                                  \
		if (par[l] == l) {                                                          \
			par[l] = (L)++n;                                                    \
			if (vals)                                                           \
				vals[n] = vals[l]; /* n <= l: a value per final id */       \
		} else {                                                                    \
			par[l] = par[par[l]];                                               \
		}                                                                           \
		ident &= par[l] == l;                                                       \
	}                                                                                   \
	if (!dust) {                                                                        \
		if (!ident)                                                                 \
			for (size_t z = 0; z < nz; z++)                                     \
				for (size_t y = 0; y < ny; y++) {                           \
					const T *r = in + z * nxy + y * nx;                 \
					L *o = out + z * nxy + y * nx;                      \
					size_t x = 0;                                       \
					for (;;) {                                          \
						size_t x0, x1;                              \
						T v;                                        \
						CCL_NEXT_RUN(T, r, nx, x, x0, x1, v);       \
						(void)v;                                    \
						L a = o[x0], f = par[a];                    \
						if (f != a)                                 \
							for (size_t i = x0; i <= x1; i++)   \
								o[i] = f;                   \
					}                                                   \
				}                                                           \
		ret = (int64_t)n;                                                           \
		goto fail;                                                                  \
	}                                                                                   \
	/* dust: sizes per component, then the runs of removed ones cleared */             \
	csize = calloc(n + 1, sizeof *csize);                                               \
	rm = calloc(n + 1, 1);                                                              \
	if (!csize || !rm)                                                                  \
		goto oom;                                                                   \
	for (size_t l = 1; l <= np; l++)                                                    \
		csize[par[l]] += cnt[l];                                                    \
	for (uint64_t k = 1; k <= n; k++)                                                   \
		rm[k] = (double)csize[k] < min;                                             \
	if (keep_largest && n) {                                                            \
		comp *cs = malloc(n * sizeof *cs);                                          \
		if (!cs)                                                                    \
			goto oom;                                                           \
		for (uint64_t k = 1; k <= n; k++)                                           \
			cs[k - 1].val = (uint64_t)vals[k], cs[k - 1].size = csize[k], cs[k - 1].id = k; \
		qsort(cs, n, sizeof *cs, comp_cmp);                                         \
		for (uint64_t k = 1; k < n; k++)                                            \
			if (cs[k].val == cs[k - 1].val)                                     \
				rm[cs[k].id] = 1;                                           \
		free(cs);                                                                   \
	}                                                                                   \
	for (uint64_t k = 1; k <= n; k++)                                                   \
		nrm += rm[k];                                                               \
	if (nrm) {                                                                          \
		size_t k = 0;                                                               \
		for (size_t z = 0; z < nz; z++)                                             \
			for (size_t y = 0; y < ny; y++) {                                   \
				T *r = wr + z * nxy + y * nx;                               \
				size_t x = 0;                                               \
				for (;;) {                                                  \
					size_t x0, x1;                                      \
					T v;                                                \
					CCL_NEXT_RUN(T, r, nx, x, x0, x1, v);               \
					(void)v;                                            \
					if (rm[par[rl[k++]]])                               \
						for (size_t i = x0; i <= x1; i++)           \
							r[i] = 0;                           \
				}                                                           \
			}                                                                   \
	}                                                                                   \
	*nremoved += nrm;                                                                   \
	ret = (int64_t)n;                                                                   \
	goto fail;                                                                          \
oom:                                                                                        \
	mp_seterr("connected components: out of memory");                                   \
fail:                                                                                       \
	free(rb[0]), free(rb[1]), free(rowi[0]), free(rowi[1]), free(par), free(cnt);      \
	free(rl), free(vals), free(csize), free(rm);                                        \
	return ret;                                                                         \
}

RUN_SCAN(runs_8_32, uint8_t, uint32_t)
RUN_SCAN(runs_16_32, uint16_t, uint32_t)
RUN_SCAN(runs_32_32, uint32_t, uint32_t)
RUN_SCAN(runs_64_32, uint64_t, uint32_t)
RUN_SCAN(runs_8_64, uint8_t, uint64_t)
RUN_SCAN(runs_16_64, uint16_t, uint64_t)
RUN_SCAN(runs_32_64, uint32_t, uint64_t)
RUN_SCAN(runs_64_64, uint64_t, uint64_t)

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
ccl32_full(const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz, int conn, int binary, uint32_t *ids)
{
	cclconn c;
	uint64_t lm = UINT32_MAX - 1;

	if (ccl_args(elsize, nx, ny, nz, conn, &c) < 0)
		return -1;
	if (nx * ny * nz == 0)
		return 0;
	switch (elsize) {
	case 1: return runs_8_32(vol, NULL, nx, ny, nz, &c, binary, ids, lm, 0, 0, NULL);
	case 2: return runs_16_32(vol, NULL, nx, ny, nz, &c, binary, ids, lm, 0, 0, NULL);
	case 4: return runs_32_32(vol, NULL, nx, ny, nz, &c, binary, ids, lm, 0, 0, NULL);
	default: return runs_64_32(vol, NULL, nx, ny, nz, &c, binary, ids, lm, 0, 0, NULL);
	}
}

static int64_t
ccl64_full(const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz, int conn, int binary, uint64_t *ids)
{
	cclconn c;
	uint64_t lm = UINT64_MAX / 2;

	if (ccl_args(elsize, nx, ny, nz, conn, &c) < 0)
		return -1;
	if (nx * ny * nz == 0)
		return 0;
	switch (elsize) {
	case 1: return runs_8_64(vol, NULL, nx, ny, nz, &c, binary, ids, lm, 0, 0, NULL);
	case 2: return runs_16_64(vol, NULL, nx, ny, nz, &c, binary, ids, lm, 0, 0, NULL);
	case 4: return runs_32_64(vol, NULL, nx, ny, nz, &c, binary, ids, lm, 0, 0, NULL);
	default: return runs_64_64(vol, NULL, nx, ny, nz, &c, binary, ids, lm, 0, 0, NULL);
	}
}

int64_t
mp_ccl32(const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz, int conn, int binary, uint32_t *ids)
{
	return ccl32_full(vol, elsize, nx, ny, nz, conn, binary, ids);
}

int64_t
mp_ccl64(const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz, int conn, int binary, uint64_t *ids)
{
	return ccl64_full(vol, elsize, nx, ny, nz, conn, binary, ids);
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

/* one slab (the whole volume for 3D, one slice for 2D): the run scan in
 * dust mode, no label per voxel */
static int
dust_slab(unsigned char *vol, size_t es, size_t nx, size_t ny, size_t nz, const cclconn *c, int binary,
          double min, int keep_largest, uint64_t *ncomp, uint64_t *nremoved)
{
	int64_t n;

	if (nx * ny * nz < UINT32_MAX - 1) {
		uint64_t lm = UINT32_MAX - 1;
		switch (es) {
		case 1: n = runs_8_32((void *)vol, (void *)vol, nx, ny, nz, c, binary, NULL, lm, min, keep_largest, nremoved); break;
		case 2: n = runs_16_32((void *)vol, (void *)vol, nx, ny, nz, c, binary, NULL, lm, min, keep_largest, nremoved); break;
		case 4: n = runs_32_32((void *)vol, (void *)vol, nx, ny, nz, c, binary, NULL, lm, min, keep_largest, nremoved); break;
		default: n = runs_64_32((void *)vol, (void *)vol, nx, ny, nz, c, binary, NULL, lm, min, keep_largest, nremoved); break;
		}
	} else {
		uint64_t lm = UINT64_MAX / 2;
		switch (es) {
		case 1: n = runs_8_64((void *)vol, (void *)vol, nx, ny, nz, c, binary, NULL, lm, min, keep_largest, nremoved); break;
		case 2: n = runs_16_64((void *)vol, (void *)vol, nx, ny, nz, c, binary, NULL, lm, min, keep_largest, nremoved); break;
		case 4: n = runs_32_64((void *)vol, (void *)vol, nx, ny, nz, c, binary, NULL, lm, min, keep_largest, nremoved); break;
		default: n = runs_64_64((void *)vol, (void *)vol, nx, ny, nz, c, binary, NULL, lm, min, keep_largest, nremoved); break;
		}
	}
	if (n < 0)
		return -1;
	*ncomp += (uint64_t)n;
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
	int is2d = conn == 4 || conn == 8;
	size_t slabz = is2d ? 1 : nz, nslab = is2d ? nz : 1, slab;
	uint64_t nc = 0, nr = 0;
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
	int two = how && strcmp(how, "slices") == 0;
	if (two && nx * ny * nz < UINT32_MAX - 1) {
		/* two slices of labels and two voxel scans: the method before the
		 * run scan (whose memory is a label per run, not per voxel), kept
		 * as a second implementation the tests compare with */
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
	for (size_t s = 0; s < nslab; s++)
		if (dust_slab((unsigned char *)vol + s * slab * es, es, nx, ny, slabz, &c, binary,
		              min, keep_largest, &nc, &nr) < 0)
			return -1;
	if (ncomp) *ncomp = nc;
	if (nremoved) *nremoved = nr;
	return 0;
}
