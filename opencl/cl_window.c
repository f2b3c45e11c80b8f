/* cl_window.c - mp_window_apply on an OpenCL device (window.cl) */
#include "mp_cl.h"
#include "mp_filter.h"

int
mp_cl_window_apply(mp_cl *c, void *dst, mp_type dt, const void *src, mp_type st, size_t n,
                   const mp_winmap *m)
{
	int single = m->single && st == MP_FLOAT32;
	size_t ss = mp_type_size(st), ds = mp_type_size(dt), big = ss > ds ? ss : ds, chunk, cap;
	cl_int dti = (cl_int)dt, sti = (cl_int)st, kz = m->keep_zero, tr = m->trunc;
	cl_int u8 = dt == MP_UINT8 && m->trunc, f32 = dt == MP_FLOAT32;
	cl_kernel k;
	cl_mem a = NULL, b = NULL;
	int rc = -1;
	double dp[6];
	float fp[6];
	size_t psz;
	void *pp;

	/* the float path reads only float input; the double path needs fp64 */
	if (!mp_cl_type_ok(c, st) || !mp_cl_type_ok(c, dt) || (!single && !mp_cl_info(c)->fp64))
		return MP_CL_UNSUPPORTED;
	if (n == 0)
		return 0;
	if (single) {
		fp[0] = (float)m->clip_lo;
		fp[1] = (float)m->clip_hi;
		fp[2] = (float)m->in_lo;
		fp[3] = (float)m->in_hi - (float)m->in_lo;
		fp[4] = (float)m->out_lo;
		fp[5] = (float)m->out_hi - (float)m->out_lo;
		psz = sizeof(float);
		pp = fp;
	} else {
		dp[0] = m->clip_lo;
		dp[1] = m->clip_hi;
		dp[2] = m->in_lo;
		dp[3] = m->in_hi - m->in_lo;
		dp[4] = m->out_lo;
		dp[5] = m->out_hi - m->out_lo;
		psz = sizeof(double);
		pp = dp;
	}
	if (!(k = mp_cl_kernel(c, "window", single ? "win_f" : "win_d")))
		return -1;
	cap = mp_cl_piece(c) / big;
	chunk = n < cap ? n : cap;
	if (!(a = mp_cl_buffer(c, CL_MEM_READ_ONLY, chunk * ss, NULL))
	    || !(b = mp_cl_buffer(c, CL_MEM_WRITE_ONLY, chunk * ds, NULL)))
		goto out;
	for (size_t o = 0; o < n; o += chunk) {
		size_t mm = n - o < chunk ? n - o : chunk;
		cl_ulong un = mm;
		char *q = pp;
		if (mp_cl_write(c, a, 0, mm * ss, (const char *)src + o * ss)
		    || mp_cl_args(k, sizeof a, &a, sizeof sti, &sti, sizeof b, &b, sizeof dti, &dti, sizeof un, &un,
		                  psz, q, psz, q + psz, psz, q + 2 * psz, psz, q + 3 * psz, psz, q + 4 * psz,
		                  psz, q + 5 * psz, sizeof kz, &kz, sizeof tr, &tr, sizeof u8, &u8, sizeof f32, &f32,
		                  (size_t)0)
		    || mp_cl_run(c, k, 1, &mm, 0)
		    || mp_cl_read(c, b, 0, mm * ds, (char *)dst + o * ds))
			goto out;
	}
	rc = 0;
out:
	if (a) clReleaseMemObject(a);
	if (b) clReleaseMemObject(b);
	return rc;
}
