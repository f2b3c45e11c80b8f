/* cl_resize.c - in-plane resizing of a stack of slices on an OpenCL device
 * (resize.cl), with the tables of the C resizer (mp_filter.h) */
#include "mp_cl.h"
#include "mp_filter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	cl_mem idx, w;
	cl_uint sn, dn, nt;
} devtab;

static int
tab_up(mp_cl *c, devtab *d, const mp_rs_tab *t)
{
	d->idx = d->w = NULL;
	d->sn = (cl_uint)t->sn;
	d->dn = (cl_uint)t->dn;
	d->nt = (cl_uint)t->ntap;
	if (t->ntap == 0)
		return 0;
	if (!(d->idx = mp_cl_buffer(c, CL_MEM_READ_ONLY, t->dn * t->ntap * sizeof *t->idx, t->idx))
	    || !(d->w = mp_cl_buffer(c, CL_MEM_READ_ONLY, t->dn * t->ntap * sizeof *t->w, t->w)))
		return -1;
	return 0;
}

static void
tab_free(devtab *d)
{
	if (d->idx) clReleaseMemObject(d->idx);
	if (d->w) clReleaseMemObject(d->w);
}

static int
run_x(mp_cl *c, cl_mem src, cl_mem dst, const devtab *t, cl_uint rows)
{
	cl_kernel k = mp_cl_kernel(c, "resize", "apply_x");
	size_t g[2] = { t->dn, rows };
	if (!k || mp_cl_args(k, sizeof src, &src, sizeof dst, &dst, sizeof t->idx, &t->idx, sizeof t->w, &t->w,
	                     4, &t->sn, 4, &t->dn, 4, &t->nt, 4, &rows, (size_t)0))
		return -1;
	return mp_cl_run(c, k, 2, g, 0);
}

static int
run_y(mp_cl *c, cl_mem src, cl_mem dst, const devtab *t, cl_uint width, cl_uint slices)
{
	cl_kernel k = mp_cl_kernel(c, "resize", "apply_y");
	size_t g[3] = { width, t->dn, slices };
	if (!k || mp_cl_args(k, sizeof src, &src, sizeof dst, &dst, sizeof t->idx, &t->idx, sizeof t->w, &t->w,
	                     4, &width, 4, &t->sn, 4, &t->dn, 4, &t->nt, 4, &slices, (size_t)0))
		return -1;
	return mp_cl_run(c, k, 3, g, 0);
}

static void
bspline_consts(size_t n, double *z, double *lambda, double *zn)
{
	*z = sqrt(3.0) - 2.0;
	*lambda = (1 - *z) * (1 - 1 / *z);
	*zn = pow(*z, (double)(n - 1));
}

/* device state kept between calls for the same resizer (a tool resizing a
 * stream slice by slice): tables and buffers, in the device's slot */
typedef struct {
	mp_rs_method m;
	size_t sw, sh, dw, dh, nb;
	mp_rs_tab h[4];             /* host copies of tx, ty, gx, gy (to compare) */
	devtab t[4];
	cl_mem a, b, o, scratch, mm;
} rcache;

static void
rcache_free(void *p)
{
	rcache *k = p;
	for (int i = 0; i < 4; i++) {
		tab_free(&k->t[i]);
		free(k->h[i].idx);
		free(k->h[i].w);
	}
	if (k->a) clReleaseMemObject(k->a);
	if (k->b) clReleaseMemObject(k->b);
	if (k->o) clReleaseMemObject(k->o);
	if (k->scratch) clReleaseMemObject(k->scratch);
	if (k->mm) clReleaseMemObject(k->mm);
	free(k);
}

static int
tab_same(const mp_rs_tab *a, const mp_rs_tab *b)
{
	size_t n = a->dn * a->ntap;
	return a->sn == b->sn && a->dn == b->dn && a->ntap == b->ntap
	       && (n == 0 || (!memcmp(a->idx, b->idx, n * sizeof *a->idx) && !memcmp(a->w, b->w, n * sizeof *a->w)));
}

static int
tab_copy(mp_rs_tab *d, const mp_rs_tab *t)
{
	size_t n = t->dn * t->ntap;
	*d = *t;
	d->idx = NULL;
	d->w = NULL;
	if (n == 0)
		return 0;
	d->idx = malloc(n * sizeof *d->idx);
	d->w = malloc(n * sizeof *d->w);
	if (!d->idx || !d->w)
		return mp_seterr("out of memory");
	memcpy(d->idx, t->idx, n * sizeof *d->idx);
	memcpy(d->w, t->w, n * sizeof *d->w);
	return 0;
}

static rcache *
rcache_get(mp_cl *c, const mp_resizer *r, size_t nb)
{
	void **slot = mp_cl_slot(c, MP_CL_SLOT_RESIZE, rcache_free);
	rcache *k = *slot;
	const mp_rs_tab *tabs[4] = { &r->tx, &r->ty, &r->gx, &r->gy };
	int bs = r->m == MP_RS_BSPLINE3, ntab = bs ? 4 : 2;
	size_t sw = r->sw, sh = r->sh, dw = r->dw, dh = r->dh, wmax = sw > dw ? sw : dw;

	if (k && k->m == r->m && k->sw == sw && k->sh == sh && k->dw == dw && k->dh == dh && k->nb >= nb) {
		int same = 1;
		for (int i = 0; i < ntab && same; i++)
			same = tab_same(&k->h[i], tabs[i]);
		if (same)
			return k;
	}
	if (k)
		rcache_free(k);
	*slot = NULL;
	k = mp_xcalloc(1, sizeof *k);
	k->m = r->m;
	k->sw = sw, k->sh = sh, k->dw = dw, k->dh = dh, k->nb = nb;
	for (int i = 0; i < ntab; i++)
		if (tab_copy(&k->h[i], tabs[i]) || tab_up(c, &k->t[i], tabs[i]))
			goto fail;
	if (!(k->a = mp_cl_buffer(c, CL_MEM_READ_WRITE, wmax * sh * nb * 4, NULL))
	    || !(k->b = mp_cl_buffer(c, CL_MEM_READ_WRITE, wmax * sh * nb * 4, NULL))
	    || !(k->o = mp_cl_buffer(c, CL_MEM_READ_WRITE, dw * dh * nb * 4, NULL)))
		goto fail;
	if (bs && (!(k->scratch = mp_cl_buffer(c, CL_MEM_READ_WRITE, sw * sh * nb * 8, NULL))
	           || !(k->mm = mp_cl_buffer(c, CL_MEM_READ_WRITE, sh * nb * 2 * 4, NULL))))
		goto fail;
	*slot = k;
	return k;
fail:
	rcache_free(k);
	return NULL;
}

int
mp_cl_resize(mp_cl *c, const mp_resizer *r, const float *src, float *dst, size_t nslices)
{
	size_t sw = r->sw, sh = r->sh, dw = r->dw, dh = r->dh, wmax = sw > dw ? sw : dw;
	int bs = r->m == MP_RS_BSPLINE3;
	size_t per, nb;
	cl_mem a, b, o, scratch, mm;
	rcache *k0;
	const devtab *tx, *ty, *gx, *gy;

	if (bs && !mp_cl_info(c)->fp64)
		return MP_CL_UNSUPPORTED;
	if (nslices == 0 || sw == 0 || sh == 0 || dw == 0 || dh == 0)
		return 0;
	per = wmax * sh * 4;
	if (dw * dh * 4 > per) per = dw * dh * 4;
	if (bs && sw * sh * 8 > per) per = sw * sh * 8;
	if (per > mp_cl_piece(c) || wmax * sh * nslices >= 0xffffffffu)
		return MP_CL_UNSUPPORTED;
	nb = mp_cl_piece(c) / per;
	if (nb > nslices)
		nb = nslices;
	if (!(k0 = rcache_get(c, r, nb)))
		return -1;
	a = k0->a, b = k0->b, o = k0->o, scratch = k0->scratch, mm = k0->mm;
	tx = &k0->t[0], ty = &k0->t[1], gx = &k0->t[2], gy = &k0->t[3];
	for (size_t z0 = 0; z0 < nslices; z0 += nb) {
		cl_uint m = (cl_uint)(nslices - z0 < nb ? nslices - z0 : nb);
		cl_uint rows = (cl_uint)(sh * m), usw = (cl_uint)sw, ush = (cl_uint)sh, udw = (cl_uint)dw, udh = (cl_uint)dh;
		if (mp_cl_write(c, a, 0, sw * sh * m * 4, src + z0 * sw * sh))
			goto fail;
		if (!bs) {
			if (run_x(c, a, b, tx, rows) || run_y(c, b, o, ty, udw, m))
				goto fail;
		} else {
			cl_mem cur = a, other = b, t;
			double z, lam, zn;
			cl_kernel k;
			size_t g1 = rows, g2[2] = { sw, m }, g3[3] = { dw, dh, m };
			if (!(k = mp_cl_kernel(c, "resize", "row_minmax"))
			    || mp_cl_args(k, sizeof a, &a, sizeof mm, &mm, 4, &usw, 4, &rows, (size_t)0)
			    || mp_cl_run(c, k, 1, &g1, 0))
				goto fail;
			if (r->gx.ntap > 1) {
				if (run_x(c, cur, other, gx, rows))
					goto fail;
				t = cur, cur = other, other = t;
			}
			if (r->gy.ntap > 1) {
				if (run_y(c, cur, other, gy, usw, m))
					goto fail;
				t = cur, cur = other, other = t;
			}
			bspline_consts(sw, &z, &lam, &zn);
			if (!(k = mp_cl_kernel(c, "resize", "prefilter_rows"))
			    || mp_cl_args(k, sizeof cur, &cur, sizeof scratch, &scratch, 4, &usw, 4, &rows,
			                  sizeof z, &z, sizeof lam, &lam, sizeof zn, &zn, (size_t)0)
			    || mp_cl_run(c, k, 1, &g1, 0))
				goto fail;
			bspline_consts(sh, &z, &lam, &zn);
			if (!(k = mp_cl_kernel(c, "resize", "prefilter_cols"))
			    || mp_cl_args(k, sizeof cur, &cur, sizeof scratch, &scratch, 4, &usw, 4, &ush, 4, &m,
			                  sizeof z, &z, sizeof lam, &lam, sizeof zn, &zn, (size_t)0)
			    || mp_cl_run(c, k, 2, g2, 0))
				goto fail;
			if (run_x(c, cur, other, tx, rows) || run_y(c, other, o, ty, udw, m))
				goto fail;
			if (!(k = mp_cl_kernel(c, "resize", "clip"))
			    || mp_cl_args(k, sizeof o, &o, sizeof mm, &mm, 4, &udw, 4, &udh, 4, &ush, 4, &m, (size_t)0)
			    || mp_cl_run(c, k, 3, g3, 0))
				goto fail;
		}
		if (mp_cl_read(c, o, 0, dw * dh * m * 4, dst + z0 * dw * dh))
			goto fail;
	}
	return 0;
fail:
	/* drop the kept state after a failure */
	rcache_free(k0);
	*mp_cl_slot(c, MP_CL_SLOT_RESIZE, rcache_free) = NULL;
	return -1;
}

int
mp_cl_resize_nearest(mp_cl *c, void *dst, size_t dw, size_t dh, const void *src, size_t sw, size_t sh,
                     size_t es, size_t nslices)
{
	size_t per = (sw * sh > dw * dh ? sw * sh : dw * dh) * es, nb;
	cl_mem a = NULL, b = NULL;
	cl_kernel k;
	cl_uint usw = (cl_uint)sw, ush = (cl_uint)sh, udw = (cl_uint)dw, udh = (cl_uint)dh, ues = (cl_uint)es;
	int rc = -1;

	if (nslices == 0 || sw == 0 || sh == 0 || dw == 0 || dh == 0)
		return 0;
	if (per > mp_cl_piece(c) || sw > 0xffffffffu || sh > 0xffffffffu || dw > 0xffffffffu || dh > 0xffffffffu)
		return MP_CL_UNSUPPORTED;
	nb = mp_cl_piece(c) / per;
	if (nb > nslices)
		nb = nslices;
	if (!(k = mp_cl_kernel(c, "resize", "nearest"))
	    || !(a = mp_cl_buffer(c, CL_MEM_READ_ONLY, sw * sh * es * nb, NULL))
	    || !(b = mp_cl_buffer(c, CL_MEM_WRITE_ONLY, dw * dh * es * nb, NULL)))
		goto out;
	for (size_t z0 = 0; z0 < nslices; z0 += nb) {
		cl_uint m = (cl_uint)(nslices - z0 < nb ? nslices - z0 : nb);
		size_t g[3] = { dw, dh, m };
		if (mp_cl_write(c, a, 0, sw * sh * es * m, (const char *)src + z0 * sw * sh * es)
		    || mp_cl_args(k, sizeof a, &a, sizeof b, &b, 4, &usw, 4, &ush, 4, &udw, 4, &udh, 4, &ues, 4, &m, (size_t)0)
		    || mp_cl_run(c, k, 3, g, 0)
		    || mp_cl_read(c, b, 0, dw * dh * es * m, (char *)dst + z0 * dw * dh * es))
			goto out;
	}
	rc = 0;
out:
	if (a) clReleaseMemObject(a);
	if (b) clReleaseMemObject(b);
	return rc;
}
