/* cl_resize.c - in-plane resizing of a stack of slices on an OpenCL device
 * (resize.cl), with the tables of the C resizer (mp_filter.h) */
#include "mp_cl.h"
#include "mp_filter.h"

#include <math.h>

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

int
mp_cl_resize(mp_cl *c, const mp_resizer *r, const float *src, float *dst, size_t nslices)
{
	size_t sw = r->sw, sh = r->sh, dw = r->dw, dh = r->dh, wmax = sw > dw ? sw : dw;
	int bs = r->m == MP_RS_BSPLINE3;
	size_t per, nb;
	cl_mem a = NULL, b = NULL, o = NULL, scratch = NULL, mm = NULL;
	devtab tx = { 0 }, ty = { 0 }, gx = { 0 }, gy = { 0 };
	int rc = -1;

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
	if (!(a = mp_cl_buffer(c, CL_MEM_READ_WRITE, wmax * sh * nb * 4, NULL))
	    || !(b = mp_cl_buffer(c, CL_MEM_READ_WRITE, wmax * sh * nb * 4, NULL))
	    || !(o = mp_cl_buffer(c, CL_MEM_READ_WRITE, dw * dh * nb * 4, NULL))
	    || tab_up(c, &tx, &r->tx) || tab_up(c, &ty, &r->ty))
		goto out;
	if (bs && (!(scratch = mp_cl_buffer(c, CL_MEM_READ_WRITE, sw * sh * nb * 8, NULL))
	           || !(mm = mp_cl_buffer(c, CL_MEM_READ_WRITE, sh * nb * 2 * 4, NULL))
	           || tab_up(c, &gx, &r->gx) || tab_up(c, &gy, &r->gy)))
		goto out;
	for (size_t z0 = 0; z0 < nslices; z0 += nb) {
		cl_uint m = (cl_uint)(nslices - z0 < nb ? nslices - z0 : nb);
		cl_uint rows = (cl_uint)(sh * m), usw = (cl_uint)sw, ush = (cl_uint)sh, udw = (cl_uint)dw, udh = (cl_uint)dh;
		if (mp_cl_write(c, a, 0, sw * sh * m * 4, src + z0 * sw * sh))
			goto out;
		if (!bs) {
			if (run_x(c, a, b, &tx, rows) || run_y(c, b, o, &ty, udw, m))
				goto out;
		} else {
			cl_mem cur = a, other = b, t;
			double z, lam, zn;
			cl_kernel k;
			size_t g1 = rows, g2[2] = { sw, m }, g3[3] = { dw, dh, m };
			if (!(k = mp_cl_kernel(c, "resize", "row_minmax"))
			    || mp_cl_args(k, sizeof a, &a, sizeof mm, &mm, 4, &usw, 4, &rows, (size_t)0)
			    || mp_cl_run(c, k, 1, &g1, 0))
				goto out;
			if (r->gx.ntap > 1) {
				if (run_x(c, cur, other, &gx, rows))
					goto out;
				t = cur, cur = other, other = t;
			}
			if (r->gy.ntap > 1) {
				if (run_y(c, cur, other, &gy, usw, m))
					goto out;
				t = cur, cur = other, other = t;
			}
			bspline_consts(sw, &z, &lam, &zn);
			if (!(k = mp_cl_kernel(c, "resize", "prefilter_rows"))
			    || mp_cl_args(k, sizeof cur, &cur, sizeof scratch, &scratch, 4, &usw, 4, &rows,
			                  sizeof z, &z, sizeof lam, &lam, sizeof zn, &zn, (size_t)0)
			    || mp_cl_run(c, k, 1, &g1, 0))
				goto out;
			bspline_consts(sh, &z, &lam, &zn);
			if (!(k = mp_cl_kernel(c, "resize", "prefilter_cols"))
			    || mp_cl_args(k, sizeof cur, &cur, sizeof scratch, &scratch, 4, &usw, 4, &ush, 4, &m,
			                  sizeof z, &z, sizeof lam, &lam, sizeof zn, &zn, (size_t)0)
			    || mp_cl_run(c, k, 2, g2, 0))
				goto out;
			if (run_x(c, cur, other, &tx, rows) || run_y(c, other, o, &ty, udw, m))
				goto out;
			if (!(k = mp_cl_kernel(c, "resize", "clip"))
			    || mp_cl_args(k, sizeof o, &o, sizeof mm, &mm, 4, &udw, 4, &udh, 4, &ush, 4, &m, (size_t)0)
			    || mp_cl_run(c, k, 3, g3, 0))
				goto out;
		}
		if (mp_cl_read(c, o, 0, dw * dh * m * 4, dst + z0 * dw * dh))
			goto out;
	}
	rc = 0;
out:
	tab_free(&tx);
	tab_free(&ty);
	tab_free(&gx);
	tab_free(&gy);
	if (a) clReleaseMemObject(a);
	if (b) clReleaseMemObject(b);
	if (o) clReleaseMemObject(o);
	if (scratch) clReleaseMemObject(scratch);
	if (mm) clReleaseMemObject(mm);
	return rc;
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
