/* resize.cl - separable in-plane resizing of a stack of slices, mirroring
 * libcommon/resize.c operation for operation: the 1-D tables (idx, w) are
 * made on the host by mp_rs_tab_make/mp_rs_tab_gauss (the same tables the C
 * path uses); apply_x / apply_y sum the taps in the same order as
 * mp_rs_apply_x / mp_rs_apply_y; bspline3 adds the per-slice min/max, the
 * double-precision B-spline prefilter along rows and columns (mirror
 * boundary, Unser's exact causal initialisation) and the final clip. */

/* rows: src rows of sn floats -> dst rows of dn floats; global (dn, rows) */
__kernel void
apply_x(__global const float *src, __global float *dst, __global const int *idx, __global const float *w,
        uint sn, uint dn, uint nt, uint rows)
{
	uint i = get_global_id(0), y = get_global_id(1);
	__global const float *s;
	if (i >= dn || y >= rows)
		return;
	s = src + (size_t)y * sn;
	if (nt == 2) {
		dst[(size_t)y * dn + i] = w[2 * i] * s[idx[2 * i]] + w[2 * i + 1] * s[idx[2 * i + 1]];
	} else if (nt == 4) {
		__global const int *ix = idx + 4 * i;
		__global const float *wt = w + 4 * i;
		dst[(size_t)y * dn + i] = wt[0] * s[ix[0]] + wt[1] * s[ix[1]] + wt[2] * s[ix[2]] + wt[3] * s[ix[3]];
	} else {
		float acc = 0;
		for (uint k = 0; k < nt; k++)
			acc += w[i * nt + k] * s[idx[i * nt + k]];
		dst[(size_t)y * dn + i] = acc;
	}
}

/* columns of each slice: src (width, sn rows) -> dst (width, dn rows); global (width, dn, slices) */
__kernel void
apply_y(__global const float *src, __global float *dst, __global const int *idx, __global const float *w,
        uint width, uint sn, uint dn, uint nt, uint slices)
{
	uint x = get_global_id(0), y = get_global_id(1), z = get_global_id(2);
	__global const float *s;
	__global const int *ix;
	__global const float *wt;
	float d;
	if (x >= width || y >= dn || z >= slices)
		return;
	s = src + (size_t)z * sn * width + x;
	ix = idx + y * nt;
	wt = w + y * nt;
	if (nt == 2) {
		d = wt[0] * s[(size_t)ix[0] * width] + wt[1] * s[(size_t)ix[1] * width];
	} else if (nt == 4) {
		d = wt[0] * s[(size_t)ix[0] * width] + wt[1] * s[(size_t)ix[1] * width]
		    + wt[2] * s[(size_t)ix[2] * width] + wt[3] * s[(size_t)ix[3] * width];
	} else {
		d = wt[0] * s[(size_t)ix[0] * width];
		for (uint k = 1; k < nt; k++) {
			if (wt[k] == 0)
				continue;
			d += wt[k] * s[(size_t)ix[k] * width];
		}
	}
	dst[((size_t)z * dn + y) * width + x] = d;
}

/* min and max of each row; global (rows) */
__kernel void
row_minmax(__global const float *src, __global float *mm, uint w, uint rows)
{
	uint y = get_global_id(0);
	float mn = INFINITY, mx = -INFINITY;
	if (y >= rows)
		return;
	for (uint x = 0; x < w; x++) {
		float v = src[(size_t)y * w + x];
		if (v < mn)
			mn = v;
		if (v > mx)
			mx = v;
	}
	mm[2 * y] = mn;
	mm[2 * y + 1] = mx;
}

/* clip every output voxel of slice z to the min/max of the input slice (its
 * rows' minima and maxima, combined in the same order the C loop meets them:
 * the result is the same since min/max are exact) */
__kernel void
clip(__global float *dst, __global const float *mm, uint dw, uint dh, uint sh, uint slices)
{
	uint x = get_global_id(0), y = get_global_id(1), z = get_global_id(2);
	float mn = INFINITY, mx = -INFINITY, v;
	size_t i;
	if (x >= dw || y >= dh || z >= slices)
		return;
	for (uint r = 0; r < sh; r++) {
		float a = mm[2 * ((size_t)z * sh + r)], b = mm[2 * ((size_t)z * sh + r) + 1];
		if (a < mn)
			mn = a;
		if (b > mx)
			mx = b;
	}
	i = ((size_t)z * dh + y) * dw + x;
	v = dst[i];
	dst[i] = v < mn ? mn : v > mx ? mx : v;
}

#if MP_FP64
/* mp_bspline_prefilter on n values at c[0], c[stride], ...: z, lambda and
 * zn = z^(n-1) come from the host (computed there exactly as the C code) */
inline void
prefilter(__global float *f, __global double *c, size_t stride, uint n, double z, double lambda, double zn)
{
	double sum, zi, zj;
	if (n < 2)
		return;
	for (uint i = 0; i < n; i++)
		c[i * stride] = (double)f[i * stride] * lambda;
	sum = c[0] + zn * c[(n - 1) * stride];
	zi = z;
	zj = zn * zn / z;
	for (uint i = 1; i + 1 < n; i++) {
		sum += (zi + zj) * c[i * stride];
		zi *= z;
		zj /= z;
	}
	c[0] = sum / (1 - zn * zn);
	for (uint i = 1; i < n; i++)
		c[i * stride] += z * c[(i - 1) * stride];
	c[(n - 1) * stride] = (z / (z * z - 1)) * (z * c[(n - 2) * stride] + c[(n - 1) * stride]);
	for (uint i = n - 1; i-- > 0;)
		c[i * stride] = z * (c[(i + 1) * stride] - c[i * stride]);
	for (uint i = 0; i < n; i++)
		f[i * stride] = (float)c[i * stride];
}

/* rows: global (rows) */
__kernel void
prefilter_rows(__global float *f, __global double *scratch, uint w, uint rows, double z, double lambda, double zn)
{
	uint y = get_global_id(0);
	if (y >= rows)
		return;
	prefilter(f + (size_t)y * w, scratch + (size_t)y * w, 1, w, z, lambda, zn);
}

/* columns: global (w, slices) */
__kernel void
prefilter_cols(__global float *f, __global double *scratch, uint w, uint h, uint slices, double z, double lambda, double zn)
{
	uint x = get_global_id(0), s = get_global_id(1);
	size_t o;
	if (x >= w || s >= slices)
		return;
	o = (size_t)s * w * h + x;
	prefilter(f + o, scratch + o, w, h, z, lambda, zn);
}
#endif

/* nearest neighbour of any element size (values copied): global (dw, dh, slices) */
__kernel void
nearest(__global const uchar *src, __global uchar *dst, uint sw, uint sh, uint dw, uint dh, uint es, uint slices)
{
	uint x = get_global_id(0), y = get_global_id(1), z = get_global_id(2);
	ulong sx, sy;
	__global const uchar *s;
	__global uchar *d;
	if (x >= dw || y >= dh || z >= slices)
		return;
	sx = ((2 * (ulong)x + 1) * sw) / (2 * (ulong)dw);
	sy = ((2 * (ulong)y + 1) * sh) / (2 * (ulong)dh);
	s = src + (((size_t)z * sh + sy) * sw + sx) * es;
	d = dst + (((size_t)z * dh + y) * dw + x) * es;
	for (uint b = 0; b < es; b++)
		d[b] = s[b];
}
