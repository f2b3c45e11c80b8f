/* cl_convert.c - mp_convert on an OpenCL device (convert.cl) */
#include "mp_cl.h"

#include <stdlib.h>

size_t
mp_cl_piece(const mp_cl *c)
{
	size_t lim = (size_t)1 << 30;
	const char *s = getenv("MEDPIPE_CL_PIECE");
	size_t m = mp_cl_info(c)->max_alloc;

	if (s && *s)
		lim = (size_t)strtoull(s, NULL, 10);
	if (lim < 4096)
		lim = 4096;
	return m && m < lim ? m : lim;
}

/* can a kernel read/write type t on this device */
int
mp_cl_type_ok(const mp_cl *c, mp_type t)
{
	if (t == MP_FLOAT64 || t == MP_INT32 || t == MP_UINT32)
		return mp_cl_info(c)->fp64;
	return t >= MP_INT8 && t <= MP_FLOAT32 && t != MP_INT64 && t != MP_UINT64;
}

int
mp_cl_convert(mp_cl *c, void *dst, mp_type dt, const void *src, mp_type st, size_t n)
{
	size_t ss = mp_type_size(st), ds = mp_type_size(dt), big = ss > ds ? ss : ds;
	size_t chunk, cap;
	cl_kernel k;
	cl_mem a = NULL, b = NULL;
	int rc = -1, sti = (int)st, dti = (int)dt;

	if (!mp_cl_type_ok(c, st) || !mp_cl_type_ok(c, dt))
		return MP_CL_UNSUPPORTED;
	if (n == 0)
		return 0;
	if (!(k = mp_cl_kernel(c, "convert", "convert")))
		return -1;
	cap = mp_cl_piece(c) / big;
	chunk = n < cap ? n : cap;
	if (!(a = mp_cl_buffer(c, CL_MEM_READ_ONLY, chunk * ss, NULL))
	    || !(b = mp_cl_buffer(c, CL_MEM_WRITE_ONLY, chunk * ds, NULL)))
		goto out;
	for (size_t o = 0; o < n; o += chunk) {
		size_t m = n - o < chunk ? n - o : chunk;
		cl_ulong mm = m;
		if (mp_cl_write(c, a, 0, m * ss, (const char *)src + o * ss)
		    || mp_cl_args(k, sizeof a, &a, sizeof sti, &sti, sizeof b, &b, sizeof dti, &dti,
		                  sizeof mm, &mm, (size_t)0)
		    || mp_cl_run(c, k, 1, &m, 0)
		    || mp_cl_read(c, b, 0, m * ds, (char *)dst + o * ds))
			goto out;
	}
	rc = 0;
out:
	if (a) clReleaseMemObject(a);
	if (b) clReleaseMemObject(b);
	return rc;
}
