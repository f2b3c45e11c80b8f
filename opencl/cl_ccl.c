/* cl_ccl.c - connected components on an OpenCL device (ccl.cl): host side */
#include "mp_cl.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK 4096u

/* one nonzero value at most: blocks may be used as union-find nodes */
static int
one_value(const void *vol, size_t es, size_t n)
{
	const unsigned char *p = vol;
	unsigned char z[8] = {0}, v[8];
	size_t i = 0;

	while (i < n && !memcmp(p + i * es, z, es))
		i++;
	if (i == n)
		return 1;
	memcpy(v, p + i * es, es);
	for (; i < n; i++)
		if (memcmp(p + i * es, z, es) && memcmp(p + i * es, v, es))
			return 0;
	return 1;
}

/* the work-group of the scan kernel: 64 items, fewer on small devices */
static size_t
c_wg(const mp_cl *c)
{
	size_t m = mp_cl_info(c)->max_wg;

	return m < 64 ? (m ? m : 1) : 64;
}

static long
ccl_slab(mp_cl *c, const void *vol, size_t es, size_t nx, size_t ny, size_t nz, int conn,
         int binary, size_t minsize, uint32_t *out)
{
	size_t n = nx * ny * nz, nnodes, nchunks, g3[3] = { nx, ny, nz }, gn, gc;
	cl_uint bx = 1, by = 1, bz = 1, nbx, nby, nbz, ux = (cl_uint)nx, uy = (cl_uint)ny, uz = (cl_uint)nz;
	cl_uint un, uch = CHUNK, umin, nnu;
	cl_int tc = (cl_int)es, cn = conn, bin = binary;
	cl_mem vb = NULL, par = NULL, first = NULL, size = NULL, cnt = NULL, num = NULL, ob = NULL;
	cl_kernel kinit, kmerge, kflat, kstats, kcount, kscan, knum, kfinal;
	cl_uint ntot = 0, unch;
	size_t wg;
	long total = -1;

	if (n == 0)
		return 0;
	if ((conn == 26 || conn == 8) && (binary || one_value(vol, es, n))) {
		bx = by = 2;
		bz = conn == 26 ? 2 : 1;
	}
	nbx = (ux + bx - 1) / bx;
	nby = (uy + by - 1) / by;
	nbz = (uz + bz - 1) / bz;
	nnodes = (size_t)nbx * nby * nbz;
	nchunks = (n + CHUNK - 1) / CHUNK;
	un = (cl_uint)n;
	nnu = (cl_uint)nnodes;
	unch = (cl_uint)nchunks;
	umin = minsize > 0xffffffffu ? 0xffffffffu : (cl_uint)minsize;
	if (!(kinit = mp_cl_kernel(c, "ccl", "init")) || !(kmerge = mp_cl_kernel(c, "ccl", "merge"))
	    || !(kflat = mp_cl_kernel(c, "ccl", "flatten")) || !(kstats = mp_cl_kernel(c, "ccl", "stats"))
	    || !(kcount = mp_cl_kernel(c, "ccl", "count")) || !(kscan = mp_cl_kernel(c, "ccl", "scan"))
	    || !(knum = mp_cl_kernel(c, "ccl", "number"))
	    || !(kfinal = mp_cl_kernel(c, "ccl", "final")))
		return -1;
	if (!(vb = mp_cl_hostbuf(c, CL_MEM_READ_ONLY, n * es, (void *)vol))
	    || !(par = mp_cl_buffer(c, CL_MEM_READ_WRITE, nnodes * 4, NULL))
	    || !(first = mp_cl_buffer(c, CL_MEM_READ_WRITE, nnodes * 4, NULL))
	    || !(size = mp_cl_buffer(c, CL_MEM_READ_WRITE, nnodes * 4, NULL))
	    || !(num = mp_cl_buffer(c, CL_MEM_READ_WRITE, nnodes * 4, NULL))
	    || !(cnt = mp_cl_buffer(c, CL_MEM_READ_WRITE, (nchunks + 1) * 4, NULL))
	    || !(ob = mp_cl_hostbuf(c, CL_MEM_WRITE_ONLY, n * 4, out)))
		goto out;
	{
		cl_uint ff = 0xffffffffu;
		cl_int e = clEnqueueFillBuffer(mp_cl_queue(c), first, &ff, 4, 0, nnodes * 4, 0, NULL, NULL);
		if (e != CL_SUCCESS) {
			mp_cl_fail(e, "ccl: clearing");
			goto out;
		}
	}
	gn = nnodes;
	gc = nchunks;
	if (mp_cl_fill0(c, size, nnodes * 4) || mp_cl_fill0(c, num, nnodes * 4)
	    || mp_cl_args(kinit, sizeof par, &par, sizeof nnu, &nnu, (size_t)0)
	    || mp_cl_run(c, kinit, 1, &gn, 0)
	    || mp_cl_args(kmerge, sizeof vb, &vb, sizeof tc, &tc, sizeof bin, &bin, sizeof par, &par, 4, &ux, 4, &uy, 4, &uz,
	                  4, &bx, 4, &by, 4, &bz, 4, &nbx, 4, &nby, sizeof cn, &cn, (size_t)0)
	    || mp_cl_run(c, kmerge, 3, g3, 0)
	    || mp_cl_args(kflat, sizeof par, &par, sizeof nnu, &nnu, (size_t)0)
	    || mp_cl_run(c, kflat, 1, &gn, 0)
	    || (!(bx * by * bz == 1 && umin <= 1)
	        && (mp_cl_args(kstats, sizeof vb, &vb, sizeof tc, &tc, sizeof bin, &bin, sizeof par, &par, sizeof first, &first,
	                       sizeof size, &size, 4, &ux, 4, &uy, 4, &uz, 4, &bx, 4, &by, 4, &bz, 4, &nbx, 4, &nby,
	                       4, &umin, (size_t)0)
	            || mp_cl_run(c, kstats, 3, g3, 0)))
	    || mp_cl_args(kcount, sizeof vb, &vb, sizeof tc, &tc, sizeof bin, &bin, sizeof par, &par, sizeof first, &first,
	                  sizeof size, &size, sizeof cnt, &cnt, 4, &un, 4, &uch, 4, &ux, 4, &uy,
	                  4, &bx, 4, &by, 4, &bz, 4, &nbx, 4, &nby, 4, &umin, (size_t)0)
	    || mp_cl_run(c, kcount, 1, &gc, 0))
		goto out;
	/* the prefix sums on the device: nothing crosses the bus between the
	 * kernels; the component count (4 bytes) comes back at the end */
	wg = c_wg(c);
	if (mp_cl_args(kscan, sizeof cnt, &cnt, 4, &unch, (size_t)0)
	    || mp_cl_enqueue(c, kscan, 1, &wg, &wg) < 0
	    || mp_cl_args(knum, sizeof vb, &vb, sizeof tc, &tc, sizeof bin, &bin, sizeof par, &par, sizeof first, &first,
	                  sizeof size, &size, sizeof cnt, &cnt, sizeof num, &num, 4, &un, 4, &uch, 4, &ux, 4, &uy,
	                  4, &bx, 4, &by, 4, &bz, 4, &nbx, 4, &nby, 4, &umin, (size_t)0)
	    || mp_cl_run(c, knum, 1, &gc, 0)
	    || mp_cl_args(kfinal, sizeof vb, &vb, sizeof tc, &tc, sizeof bin, &bin, sizeof par, &par, sizeof num, &num,
	                  sizeof ob, &ob, 4, &ux, 4, &uy, 4, &uz, 4, &bx, 4, &by, 4, &bz, 4, &nbx, 4, &nby, (size_t)0)
	    || mp_cl_run(c, kfinal, 3, g3, 0)
	    || mp_cl_hostread(c, ob, n * 4, out)
	    || mp_cl_read(c, cnt, nchunks * 4, 4, &ntot))
		goto out;
	total = ntot;
out:
	if (vb) clReleaseMemObject(vb);
	if (par) clReleaseMemObject(par);
	if (first) clReleaseMemObject(first);
	if (size) clReleaseMemObject(size);
	if (num) clReleaseMemObject(num);
	if (cnt) clReleaseMemObject(cnt);
	if (ob) clReleaseMemObject(ob);
	return total;
}

/* host union-find over provisional labels */
static uint32_t
uf_find(uint32_t *p, uint32_t x)
{
	while (p[x] != x) {
		p[x] = p[p[x]];
		x = p[x];
	}
	return x;
}

static void
uf_union(uint32_t *p, uint32_t a, uint32_t b)
{
	a = uf_find(p, a);
	b = uf_find(p, b);
	if (a < b)
		p[b] = a;
	else if (b < a)
		p[a] = b;
}

/* Volumes whose buffers exceed the device's piece size run slab by slab
 * (whole slices): each slab is labelled on the device in raster order, the
 * labels are made unique, slabs are joined across their boundary planes on
 * the host with a union-find, and the components renumbered in raster order
 * (a component's first voxel lies in its smallest provisional label, since
 * provisional labels grow in raster order). */
int64_t
mp_cl_ccl(mp_cl *c, const void *vol, size_t es, size_t nx, size_t ny, size_t nz, int conn,
          int binary, size_t minsize, uint32_t *out)
{
	size_t plane = nx * ny, n = plane * nz, piece = mp_cl_piece(c);
	size_t slab, per = es + 4 + 16;             /* bytes per voxel on the device (worst case) */
	uint32_t *par = NULL, *map = NULL;
	size_t *sizes = NULL;
	uint64_t total = 0;
	long kept = 0;
	int twod = conn == 4 || conn == 8;

	if (es != 1 && es != 2 && es != 4 && es != 8)
		return mp_seterr("ccl: element size %zu (1, 2, 4 or 8)", es);
	if (conn != 4 && conn != 8 && conn != 6 && conn != 18 && conn != 26)
		return mp_seterr("connectivity %d (4, 8, 6, 18 or 26)", conn);
	if (n == 0)
		return 0;
	if (plane * per > piece || plane >= 0xffffffffu)
		return MP_CL_UNSUPPORTED;           /* not even one slice fits */
	slab = piece / (plane * per);
	if (slab >= nz && n < 0xffffffffu)
		return ccl_slab(c, vol, es, nx, ny, nz, conn, binary, minsize, out);
	if (slab * plane >= 0xffffffffu)
		slab = 0xfffffffeu / plane;
	mp_note("opencl: ccl: %zu slices in slabs of %zu", nz, slab);
	/* label each slab; offset its labels */
	for (size_t z0 = 0; z0 < nz; z0 += slab) {
		size_t m = nz - z0 < slab ? nz - z0 : slab;
		long k = ccl_slab(c, (const char *)vol + z0 * plane * es, es, nx, ny, m, conn, binary, 0, out + z0 * plane);
		if (k < 0)
			return k;
		if (total + (uint64_t)k >= 0xffffffffu)
			return MP_CL_UNSUPPORTED;
		if (total)
			for (size_t i = z0 * plane; i < (z0 + m) * plane; i++)
				if (out[i])
					out[i] += (uint32_t)total;
		total += (uint64_t)k;
	}
	par = mp_xmalloc((size_t)(total + 1) * 4);
	for (uint32_t i = 0; i <= total; i++)
		par[i] = i;
	/* join across boundaries: plane z0 with its backward neighbours in z0-1 */
	for (size_t z0 = slab; z0 < nz && !twod; z0 += slab)
		for (size_t y = 0; y < ny; y++)
			for (size_t x = 0; x < nx; x++) {
				size_t i = (z0 * ny + y) * nx + x;
				if (!out[i])
					continue;
				for (int dy = -1; dy <= 1; dy++)
					for (int dx = -1; dx <= 1; dx++) {
						int d = 1 + (dx != 0) + (dy != 0);
						long xx = (long)x + dx, yy = (long)y + dy;
						size_t j;
						if ((conn == 6 && d > 1) || (conn == 18 && d > 2))
							continue;
						if (xx < 0 || yy < 0 || xx >= (long)nx || yy >= (long)ny)
							continue;
						j = ((z0 - 1) * ny + (size_t)yy) * nx + (size_t)xx;
						if (out[j] && (binary || !memcmp((const char *)vol + i * es, (const char *)vol + j * es, es)))
							uf_union(par, out[i], out[j]);
					}
			}
	sizes = mp_xcalloc((size_t)total + 1, sizeof *sizes);
	for (size_t i = 0; i < n; i++)
		if (out[i])
			sizes[uf_find(par, out[i])]++;
	map = mp_xcalloc((size_t)total + 1, 4);
	for (uint32_t l = 1; l <= total; l++)
		if (uf_find(par, l) == l && sizes[l] >= minsize && sizes[l] > 0)
			map[l] = (uint32_t)++kept;
	for (size_t i = 0; i < n; i++)
		if (out[i])
			out[i] = map[uf_find(par, out[i])];
	free(par);
	free(map);
	free(sizes);
	return kept;
}

typedef struct { uint64_t slice, val, size; uint32_t id; } compinfo;

static int
cmp_comp(const void *a, const void *b)
{
	const compinfo *x = a, *y = b;
	if (x->slice != y->slice)
		return x->slice < y->slice ? -1 : 1;
	if (x->val != y->val)
		return x->val < y->val ? -1 : 1;
	if (x->size != y->size)
		return x->size > y->size ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static uint64_t
getv(const void *vol, size_t es, size_t i)
{
	switch (es) {
	case 1: return ((const uint8_t *)vol)[i];
	case 2: return ((const uint16_t *)vol)[i];
	case 4: return ((const uint32_t *)vol)[i];
	default: return ((const uint64_t *)vol)[i];
	}
}

int
mp_cl_dust(mp_cl *c, void *vol, size_t es, size_t nx, size_t ny, size_t nz, int conn,
           int binary, double min, int keep_largest, uint64_t *ncomp, uint64_t *nremoved)
{
	size_t n = nx * ny * nz;
	uint32_t *ids;
	uint8_t *drop;
	compinfo *ci;
	uint64_t removed = 0;
	int64_t nc;

	if (n == 0) {
		if (ncomp) *ncomp = 0;
		if (nremoved) *nremoved = 0;
		return 0;
	}
	ids = malloc(n * sizeof *ids);
	if (!ids)
		return mp_seterr("ccl: out of memory for %zu voxels", n);
	nc = mp_cl_ccl(c, vol, es, nx, ny, nz, conn, binary, 0, ids);
	if (nc < 0) {
		free(ids);
		return (int)nc;
	}
	ci = mp_xcalloc((size_t)nc + 1, sizeof *ci);
	drop = mp_xcalloc((size_t)nc + 1, 1);
	for (size_t i = 0; i < n; i++) {
		uint32_t k = ids[i];
		if (!k)
			continue;
		if (!ci[k].size) {
			ci[k].id = k;
			ci[k].val = binary ? 1 : getv(vol, es, i);
			/* 2D: keep-largest acts per slice, as mp_dust does */
			ci[k].slice = (conn == 4 || conn == 8) ? i / (nx * ny) : 0;
		}
		ci[k].size++;
	}
	for (int64_t k = 1; k <= nc; k++)
		if ((double)ci[k].size < min)
			drop[k] = 1;
	if (keep_largest && nc > 0) {
		qsort(ci + 1, (size_t)nc, sizeof *ci, cmp_comp);
		for (int64_t k = 1; k <= nc; k++)
			if (k > 1 && ci[k].val == ci[k - 1].val && ci[k].slice == ci[k - 1].slice)
				drop[ci[k].id] = 1;
	}
	for (int64_t k = 1; k <= nc; k++)
		removed += drop[k];
	if (removed)
		for (size_t i = 0; i < n; i++)
			if (ids[i] && drop[ids[i]])
				memset((char *)vol + i * es, 0, es);
	if (ncomp) *ncomp = (uint64_t)nc;
	if (nremoved) *nremoved = removed;
	free(ids);
	free(ci);
	free(drop);
	return 0;
}
