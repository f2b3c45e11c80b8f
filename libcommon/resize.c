/* resize.c - separable 2-D resizing of slices (nearest, linear, Keys cubic,
 * area, cubic B-spline with Gaussian anti-aliasing) and the 1-D tables they
 * use. Conventions follow OpenCV's cv::resize (linear, cubic, area) and
 * scikit-image's transform.resize (bspline3); written from their documented
 * behaviour (half-pixel centres, replicated or mirrored borders). */
#include "mp_filter.h"

/* the hot loops below are plain C written to vectorise; -O2 alone does not */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <math.h>
#include <pthread.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const char *const rs_names[] = { "nearest", "linear", "cubic", "area", "bspline3" };

const char *
mp_rs_name(mp_rs_method m)
{
	return (unsigned)m < 5 ? rs_names[m] : "?";
}

int
mp_rs_parse(const char *s, mp_rs_method *m)
{
	for (int i = 0; i < 5; i++)
		if (strcmp(s, rs_names[i]) == 0) {
			*m = (mp_rs_method)i;
			return 0;
		}
	if (strcmp(s, "bspline") == 0 || strcmp(s, "order3") == 0 || strcmp(s, "skimage") == 0) {
		*m = MP_RS_BSPLINE3;
		return 0;
	}
	return mp_seterr("unknown interpolation '%s' (nearest, linear, cubic, area, bspline3)", s);
}

void
mp_rs_tab_free(mp_rs_tab *t)
{
	free(t->idx);
	free(t->w);
	memset(t, 0, sizeof *t);
}

static int
tab_alloc(mp_rs_tab *t, size_t sn, size_t dn, size_t ntap)
{
	memset(t, 0, sizeof *t);
	if (sn == 0 || dn == 0 || sn > INT32_MAX || dn > INT32_MAX)
		return mp_seterr("bad resize sizes %zu -> %zu", sn, dn);
	t->sn = sn;
	t->dn = dn;
	t->ntap = ntap;
	t->idx = calloc(dn * ntap, sizeof *t->idx);
	t->w = calloc(dn * ntap, sizeof *t->w);
	if (!t->idx || !t->w) {
		mp_rs_tab_free(t);
		return mp_seterr("out of memory for a resize table");
	}
	return 0;
}

static inline long
clampi(long i, long n)
{
	return i < 0 ? 0 : i >= n ? n - 1 : i;
}

/* mirror about the edge samples (d c b | a b c d | c b a): scipy's 'mirror' */
static inline long
mirror(long i, long n)
{
	if (n == 1)
		return 0;
	long p = 2 * (n - 1);
	i %= p;
	if (i < 0)
		i += p;
	return i < n ? i : p - i;
}

static void
keys_coeffs(double a, float x, float c[4])
{
	/* Keys' cubic convolution kernel at distances 1+x, x, 1-x, 2-x */
	float A = (float)a;
	c[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
	c[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
	c[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
	c[3] = 1.f - c[0] - c[1] - c[2];
}

static int
area_tab(mp_rs_tab *t, size_t sn, size_t dn, int shrink)
{
	double scale = (double)sn / (double)dn, inv = (double)dn / (double)sn;
	long n = (long)sn;

	if (!shrink) {
		/* OpenCV's INTER_AREA when enlarging: linear with area-derived weights */
		if (tab_alloc(t, sn, dn, 2) < 0)
			return -1;
		for (size_t i = 0; i < dn; i++) {
			long sx = (long)floor((double)i * scale);
			float fx = (float)((double)(i + 1) - (double)(sx + 1) * inv);
			fx = fx <= 0 ? 0.f : fx - floorf(fx);
			if (sx >= n - 1) {
				fx = 0;
				sx = n - 1;
			}
			t->idx[2 * i] = (int32_t)sx;
			t->idx[2 * i + 1] = (int32_t)clampi(sx + 1, n);
			t->w[2 * i] = 1.f - fx;
			t->w[2 * i + 1] = fx;
		}
		return 0;
	}
	size_t ntap = (size_t)ceil(scale) + 2;
	if (tab_alloc(t, sn, dn, ntap) < 0)
		return -1;
	for (size_t i = 0; i < dn; i++) {
		double f1 = (double)i * scale, f2 = f1 + scale;
		double cell = scale < (double)sn - f1 ? scale : (double)sn - f1;
		long s1 = (long)ceil(f1), s2 = (long)floor(f2);
		size_t k = 0;
		if (s2 > n - 1)
			s2 = n - 1;
		if (s1 > s2)
			s1 = s2;
		int32_t *ix = t->idx + i * ntap;
		float *w = t->w + i * ntap;
		if ((double)s1 - f1 > 1e-3) {
			ix[k] = (int32_t)(s1 - 1);
			w[k++] = (float)(((double)s1 - f1) / cell);
		}
		for (long s = s1; s < s2 && k < ntap; s++) {
			ix[k] = (int32_t)s;
			w[k++] = (float)(1.0 / cell);
		}
		if (f2 - (double)s2 > 1e-3 && k < ntap) {
			double r = f2 - (double)s2;
			if (r > 1)
				r = 1;
			if (r > cell)
				r = cell;
			ix[k] = (int32_t)s2;
			w[k++] = (float)(r / cell);
		}
		for (; k < ntap; k++) {
			ix[k] = ix[k ? k - 1 : 0];
			w[k] = 0;
		}
	}
	return 0;
}

static int bs_tab(mp_rs_tab *t, size_t sn, size_t dn, size_t pad);

static int
tab_make(mp_rs_tab *t, mp_rs_method m, size_t sn, size_t dn, double cubic_a, int area_shrink)
{
	double scale = (double)sn / (double)dn;
	long n = (long)sn;

	switch (m) {
	case MP_RS_NEAREST:
		if (tab_alloc(t, sn, dn, 1) < 0)
			return -1;
		for (size_t i = 0; i < dn; i++) {
			t->idx[i] = (int32_t)(((2 * (uint64_t)i + 1) * sn) / (2 * (uint64_t)dn));
			t->w[i] = 1;
		}
		return 0;
	case MP_RS_LINEAR:
		if (tab_alloc(t, sn, dn, 2) < 0)
			return -1;
		for (size_t i = 0; i < dn; i++) {
			float fx = (float)(((double)i + 0.5) * scale - 0.5);
			long sx = (long)floorf(fx);
			fx -= (float)sx;
			if (sx < 0)
				fx = 0, sx = 0;
			if (sx >= n - 1)
				fx = 0, sx = n - 1;
			t->idx[2 * i] = (int32_t)sx;
			t->idx[2 * i + 1] = (int32_t)clampi(sx + 1, n);
			t->w[2 * i] = 1.f - fx;
			t->w[2 * i + 1] = fx;
		}
		return 0;
	case MP_RS_CUBIC:
		if (tab_alloc(t, sn, dn, 4) < 0)
			return -1;
		for (size_t i = 0; i < dn; i++) {
			float fx = (float)(((double)i + 0.5) * scale - 0.5), c[4];
			long sx = (long)floorf(fx);
			fx -= (float)sx;
			keys_coeffs(cubic_a, fx, c);
			for (int k = 0; k < 4; k++) {
				t->idx[4 * i + k] = (int32_t)clampi(sx - 1 + k, n);
				t->w[4 * i + k] = c[k];
			}
		}
		return 0;
	case MP_RS_AREA:
		return area_tab(t, sn, dn, area_shrink);
	case MP_RS_BSPLINE3:
		return bs_tab(t, sn, dn, 0);
	}
	return mp_seterr("unknown interpolation %d", (int)m);
}

int
mp_rs_tab_make(mp_rs_tab *t, mp_rs_method m, size_t sn, size_t dn, double cubic_a)
{
	return tab_make(t, m, sn, dn, cubic_a, sn >= dn);
}

static int
gauss_tab(mp_rs_tab *t, size_t n, double sigma, int zero_border)
{
	if (sigma <= 0) {
		if (tab_alloc(t, n, n, 1) < 0)
			return -1;
		for (size_t i = 0; i < n; i++) {
			t->idx[i] = (int32_t)i;
			t->w[i] = 1;
		}
		return 0;
	}
	long r = (long)(4.0 * sigma + 0.5);
	size_t ntap = (size_t)(2 * r + 1);
	double *g = mp_xmalloc(ntap * sizeof *g), sum = 0;
	for (long k = -r; k <= r; k++)
		sum += g[k + r] = exp(-0.5 / (sigma * sigma) * (double)(k * k));
	if (tab_alloc(t, n, n, ntap) < 0) {
		free(g);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		for (long k = -r; k <= r; k++) {
			long j = (long)i + k;
			int out = j < 0 || j >= (long)n;
			t->idx[i * ntap + (size_t)(k + r)] = (int32_t)(out && zero_border ? (long)i : mirror(j, (long)n));
			t->w[i * ntap + (size_t)(k + r)] = out && zero_border ? 0.f : (float)(g[k + r] / sum);
		}
	free(g);
	return 0;
}

int
mp_rs_tab_gauss(mp_rs_tab *t, size_t n, double sigma)
{
	return gauss_tab(t, n, sigma, 0);
}

/* the B-spline interpolation table on coefficients of a signal padded by pad
 * samples on both sides (pad 0: mirror border) */
static int
bs_tab(mp_rs_tab *t, size_t sn, size_t dn, size_t pad)
{
	double scale = (double)sn / (double)dn;
	long n = (long)(sn + 2 * pad);

	if (tab_alloc(t, sn + 2 * pad, dn, 4) < 0)
		return -1;
	for (size_t i = 0; i < dn; i++) {
		double x = ((double)i + 0.5) * scale - 0.5 + (double)pad, fl = floor(x), u = x - fl, v = 1 - u;
		long sx = (long)fl;
		double c[4] = { v * v * v / 6, (4 - 6 * u * u + 3 * u * u * u) / 6,
			        (4 - 6 * v * v + 3 * v * v * v) / 6, u * u * u / 6 };
		for (int k = 0; k < 4; k++) {
			t->idx[4 * i + k] = (int32_t)mirror(sx - 1 + k, n);
			t->w[4 * i + k] = (float)c[k];
		}
	}
	return 0;
}

int
mp_rs_tab_aligned(mp_rs_tab *t, int nearest, size_t sn, size_t dn, double step)
{
	long n = (long)sn;

	if (tab_alloc(t, sn, dn, nearest ? 1 : 2) < 0)
		return -1;
	for (size_t i = 0; i < dn; i++) {
		double c = (double)i * step;
		if (nearest) {
			t->idx[i] = (int32_t)clampi((long)floor(c + 0.5), n);
			t->w[i] = 1;
			continue;
		}
		long s0 = (long)floor(c);
		double f = c - (double)s0;
		if (s0 >= n - 1)
			s0 = n - 1, f = 0;
		if (s0 < 0)
			s0 = 0, f = 0;
		t->idx[2 * i] = (int32_t)s0;
		t->idx[2 * i + 1] = (int32_t)clampi(s0 + 1, n);
		t->w[2 * i] = (float)(1 - f);
		t->w[2 * i + 1] = (float)f;
	}
	return 0;
}

/* weights of the exact mirror-boundary causal initialisation (Unser 1999):
 * c+[0] = sum_i w[i] c[i] / (1 - z^(2n-2)), w[0] = 1, w[n-1] = z^(n-1),
 * w[i] = z^i + z^(2n-2-i); returns the index ranges where w is not negligible
 * (below 1e-30 relative: far under double rounding of the sum) */
#define BS_Z (-0.26794919243112270) /* sqrt(3) - 2 */
static void
bs_weights(size_t n, double *w, size_t *k1, size_t *k2)
{
	double *p = mp_xmalloc(n * sizeof *p), zi = 1, zn;

	for (size_t i = 0; i < n; i++) {
		p[i] = zi;          /* z^i */
		zi *= BS_Z;
	}
	zn = p[n - 1];
	w[0] = 1;
	for (size_t i = 1; i + 1 < n; i++)
		w[i] = p[i] + zn * p[n - 1 - i];   /* z^i + z^(2n-2-i) */
	if (n >= 2)
		w[n - 1] = zn;
	free(p);
	/* [0, k1) and [k2, n) hold the weights that matter */
	*k1 = n;
	for (size_t i = 0; i < n; i++)
		if (fabs(w[i]) < 1e-30) {
			*k1 = i;
			break;
		}
	*k2 = n;
	while (*k2 > *k1 && fabs(w[*k2 - 1]) >= 1e-30)
		(*k2)--;
}

void
mp_bspline_prefilter(double *c, size_t n)
{
	const double z = BS_Z, lambda = (1 - z) * (1 - 1 / z);

	if (n < 2)
		return;
	double *w = mp_xmalloc(n * sizeof *w), zn, sum = 0;
	size_t k1, k2;
	bs_weights(n, w, &k1, &k2);
	zn = w[n - 1];
	for (size_t i = 0; i < n; i++)
		c[i] *= lambda;
	for (size_t i = 0; i < k1; i++)
		sum += w[i] * c[i];
	for (size_t i = k2; i < n; i++)
		sum += w[i] * c[i];
	c[0] = sum / (1 - zn * zn);
	for (size_t i = 1; i < n; i++)
		c[i] += z * c[i - 1];
	c[n - 1] = (z / (z * z - 1)) * (z * c[n - 2] + c[n - 1]);
	for (size_t i = n - 1; i-- > 0;)
		c[i] = z * (c[i + 1] - c[i]);
	free(w);
}

/* a parallel for over [0, n) in nt contiguous ranges */
typedef void (*range_fn)(void *ctx, size_t a, size_t b);
typedef struct { range_fn fn; void *ctx; size_t a, b; } par_job;

static void *
par_work(void *arg)
{
	par_job *j = arg;
	j->fn(j->ctx, j->a, j->b);
	return NULL;
}

static void
par_for(int nt, size_t n, range_fn fn, void *ctx)
{
	par_job job[16];
	pthread_t th[16];
	int started = 0;

	if (nt < 1)
		nt = 1;
	if (nt > 16)
		nt = 16;
	if ((size_t)nt > n)
		nt = n ? (int)n : 1;
	for (int k = 0; k < nt; k++)
		job[k] = (par_job){ fn, ctx, n * (size_t)k / (size_t)nt, n * (size_t)(k + 1) / (size_t)nt };
	for (int k = 1; k < nt; k++) {
		if (pthread_create(&th[k], NULL, par_work, &job[k]) != 0)
			break;
		started = k;
	}
	par_work(&job[0]);
	for (int k = 1; k <= started; k++)
		pthread_join(th[k], NULL);
	for (int k = started + 1; k < nt; k++)
		par_work(&job[k]);
}

/* the prefilter along x (each row) and y (columns side by side, row by row) of a
 * w x h image of doubles; rows and column ranges are independent (threads) */
typedef struct {
	double *im, *wx, *wy;
	size_t w, h, kx1, kx2, ky1, ky2;
	float *out;        /* the coefficients as floats, written by the y pass */
} pf_ctx;

static void
pf_rows(void *arg, size_t y0, size_t y1)
{
	const pf_ctx *p = arg;
	const double z = BS_Z, lambda = (1 - z) * (1 - 1 / z), g = z / (z * z - 1);
	size_t w = p->w;
	const double *wt = p->wx;
	double den = 1 - wt[w - 1] * wt[w - 1];

	for (size_t y = y0; y < y1; y++) {
		double *c = p->im + y * w, sum = 0;
		/* the gain lambda is applied where each sample is first read
		 * (the same products as a pass of its own) */
		for (size_t i = 0; i < p->kx1; i++)
			sum += wt[i] * (c[i] * lambda);
		for (size_t i = p->kx2; i < w; i++)
			sum += wt[i] * (c[i] * lambda);
		c[0] = sum / den;
	}
	/* the recursions, eight rows at a time (independent chains run side by
	 * side and hide the latency of each step) */
	size_t y = y0;
	for (; y + 8 <= y1; y += 8) {
		double *c0 = p->im + y * w, *c1 = c0 + w, *c2 = c1 + w, *c3 = c2 + w;
		double *c4 = c3 + w, *c5 = c4 + w, *c6 = c5 + w, *c7 = c6 + w;
		for (size_t i = 1; i < w; i++) {
			c0[i] = c0[i] * lambda + z * c0[i - 1];
			c1[i] = c1[i] * lambda + z * c1[i - 1];
			c2[i] = c2[i] * lambda + z * c2[i - 1];
			c3[i] = c3[i] * lambda + z * c3[i - 1];
			c4[i] = c4[i] * lambda + z * c4[i - 1];
			c5[i] = c5[i] * lambda + z * c5[i - 1];
			c6[i] = c6[i] * lambda + z * c6[i - 1];
			c7[i] = c7[i] * lambda + z * c7[i - 1];
		}
		c0[w - 1] = g * (z * c0[w - 2] + c0[w - 1]);
		c1[w - 1] = g * (z * c1[w - 2] + c1[w - 1]);
		c2[w - 1] = g * (z * c2[w - 2] + c2[w - 1]);
		c3[w - 1] = g * (z * c3[w - 2] + c3[w - 1]);
		c4[w - 1] = g * (z * c4[w - 2] + c4[w - 1]);
		c5[w - 1] = g * (z * c5[w - 2] + c5[w - 1]);
		c6[w - 1] = g * (z * c6[w - 2] + c6[w - 1]);
		c7[w - 1] = g * (z * c7[w - 2] + c7[w - 1]);
		for (size_t i = w - 1; i-- > 0;) {
			c0[i] = z * (c0[i + 1] - c0[i]);
			c1[i] = z * (c1[i + 1] - c1[i]);
			c2[i] = z * (c2[i + 1] - c2[i]);
			c3[i] = z * (c3[i + 1] - c3[i]);
			c4[i] = z * (c4[i + 1] - c4[i]);
			c5[i] = z * (c5[i + 1] - c5[i]);
			c6[i] = z * (c6[i + 1] - c6[i]);
			c7[i] = z * (c7[i + 1] - c7[i]);
		}
	}
	for (; y < y1; y++) {
		double *c = p->im + y * w;
		for (size_t i = 1; i < w; i++)
			c[i] = c[i] * lambda + z * c[i - 1];
		c[w - 1] = g * (z * c[w - 2] + c[w - 1]);
		for (size_t i = w - 1; i-- > 0;)
			c[i] = z * (c[i + 1] - c[i]);
	}
}

static void
pf_cols(void *arg, size_t x0, size_t x1)
{
	const pf_ctx *p = arg;
	const double z = BS_Z, lambda = (1 - z) * (1 - 1 / z), g = z / (z * z - 1);
	size_t w = p->w, h = p->h, n = x1 - x0;
	const double *wt = p->wy;
	double den = 1 - wt[h - 1] * wt[h - 1], *im = p->im;
	double *s = mp_xcalloc(n ? n : 1, sizeof *s);

	/* lambda applied where each sample is first read, and the results
	 * written as floats by the last recursion (the same values as separate
	 * passes) */
	for (size_t y = 0; y < h; y++) {
		if (y >= p->ky1 && y < p->ky2)
			continue;
		const double *r = im + y * w + x0;
		double wy = wt[y];
		for (size_t x = 0; x < n; x++)
			s[x] += wy * (r[x] * lambda);
	}
	for (size_t x = 0; x < n; x++)
		im[x0 + x] = s[x] / den;
	for (size_t y = 1; y < h; y++) {
		double *r = im + y * w;
		const double *q = r - w;
		for (size_t x = x0; x < x1; x++)
			r[x] = r[x] * lambda + z * q[x];
	}
	double *last = im + (h - 1) * w, *prev = last - w;
	float *of = p->out + (h - 1) * w;
	for (size_t x = x0; x < x1; x++)
		of[x] = (float)(last[x] = g * (z * prev[x] + last[x]));
	for (size_t y = h - 1; y-- > 0;) {
		double *r = im + y * w;
		const double *nx = r + w;
		float *o = p->out + y * w;
		for (size_t x = x0; x < x1; x++)
			o[x] = (float)(r[x] = z * (nx[x] - r[x]));
	}
	free(s);
}

static void
bspline_prefilter2d(double *im, size_t w, size_t h, int nt, float *out)
{
	pf_ctx p = { im, mp_xmalloc(w * sizeof(double)), mp_xmalloc(h * sizeof(double)), w, h, 0, 0, 0, 0, out };

	if (w >= 2) {
		bs_weights(w, p.wx, &p.kx1, &p.kx2);
		par_for(nt, h, pf_rows, &p);
	}
	if (h >= 2) {
		bs_weights(h, p.wy, &p.ky1, &p.ky2);
		par_for(nt, w, pf_cols, &p);
	} else {
		for (size_t i = 0; i < w * h; i++)
			out[i] = (float)im[i];
	}
	free(p.wx);
	free(p.wy);
}

/* the 4 taps at ix are ix[0], ix[0]+1, ix[0]+2, ix[0]+3, all in [0, sn) */
static int
taps_adjacent(const int32_t *ix, size_t sn)
{
	return ix[0] >= 0 && (size_t)ix[0] + 3 < sn && ix[1] == ix[0] + 1 && ix[2] == ix[0] + 2 && ix[3] == ix[0] + 3;
}

void
mp_rs_apply_x(const mp_rs_tab *t, const float *src, size_t h, float *dst)
{
	size_t sn = t->sn, dn = t->dn, nt = t->ntap;
	const int32_t *restrict idx = t->idx;
	const float *restrict wt = t->w;

	size_t lo4 = 0, hi4 = 0;   /* [lo4, hi4): groups of 4 outputs whose 4 taps are neighbours */
	if (nt == 4) {
		while (lo4 < dn && !taps_adjacent(idx + 4 * lo4, sn))
			lo4++;
		hi4 = lo4;
		while (hi4 + 4 <= dn && taps_adjacent(idx + 4 * hi4, sn) && taps_adjacent(idx + 4 * hi4 + 4, sn) &&
		       taps_adjacent(idx + 4 * hi4 + 8, sn) && taps_adjacent(idx + 4 * hi4 + 12, sn))
			hi4 += 4;
	}
	(void)hi4;
#ifdef __SSE2__
	/* their weights transposed once: per group, tap 0 of the 4 outputs, tap 1, ... */
	float *wq = NULL;
	if (hi4 > lo4) {
		wq = malloc((hi4 - lo4) * 4 * sizeof *wq);
		if (!wq)
			hi4 = lo4;
		for (size_t i = lo4; i < hi4; i += 4)
			for (int k = 0; k < 4; k++)
				for (int j = 0; j < 4; j++)
					wq[(i - lo4) * 4 + 4 * (size_t)k + (size_t)j] = wt[4 * (i + (size_t)j) + (size_t)k];
	}
#endif
	for (size_t y = 0; y < h; y++) {
		const float *restrict s = src + y * sn;
		float *restrict d = dst + y * dn;
		if (nt == 2) {
			for (size_t i = 0; i < dn; i++)
				d[i] = wt[2 * i] * s[idx[2 * i]] + wt[2 * i + 1] * s[idx[2 * i + 1]];
			continue;
		}
		if (nt == 4) {
			size_t i = 0;
#ifdef __SSE2__
			/* four outputs at once where their taps are 4 neighbours
			 * (all but the mirrored border): 4 unaligned loads
			 * transposed into tap vectors; the same products and the
			 * same order of sums as the scalar loop, so the same bits */
			for (; i < lo4; i++) {
				const int32_t *ix = idx + 4 * i;
				const float *w = wt + 4 * i;
				d[i] = w[0] * s[ix[0]] + w[1] * s[ix[1]] + w[2] * s[ix[2]] + w[3] * s[ix[3]];
			}
			for (; i < hi4; i += 4) {
				const int32_t *ix = idx + 4 * i;
				__m128 s0 = _mm_loadu_ps(s + ix[0]), s1 = _mm_loadu_ps(s + ix[4]);
				__m128 s2 = _mm_loadu_ps(s + ix[8]), s3 = _mm_loadu_ps(s + ix[12]);
				const float *q = wq + (i - lo4) * 4;
				__m128 w0 = _mm_loadu_ps(q), w1 = _mm_loadu_ps(q + 4);
				__m128 w2 = _mm_loadu_ps(q + 8), w3 = _mm_loadu_ps(q + 12);
				_MM_TRANSPOSE4_PS(s0, s1, s2, s3);
				__m128 acc = _mm_add_ps(_mm_add_ps(_mm_add_ps(_mm_mul_ps(w0, s0), _mm_mul_ps(w1, s1)),
				                                   _mm_mul_ps(w2, s2)), _mm_mul_ps(w3, s3));
				_mm_storeu_ps(d + i, acc);
			}
#endif
			for (; i < dn; i++) {
				const int32_t *ix = idx + 4 * i;
				const float *w = wt + 4 * i;
				d[i] = w[0] * s[ix[0]] + w[1] * s[ix[1]] + w[2] * s[ix[2]] + w[3] * s[ix[3]];
			}
			continue;
		}
		for (size_t i = 0; i < dn; i++) {
			float acc = 0;
			for (size_t k = 0; k < nt; k++)
				acc += wt[i * nt + k] * s[idx[i * nt + k]];
			d[i] = acc;
		}
	}
#ifdef __SSE2__
	free(wq);
#endif
}

static void
apply_y_rows(const mp_rs_tab *t, const float *src, size_t w, float *dst, size_t y0, size_t y1)
{
	size_t nt = t->ntap;

	for (size_t y = y0; y < y1; y++) {
		float *d = dst + y * w;
		const int32_t *ix = t->idx + y * nt;
		const float *wt = t->w + y * nt;
		if (nt == 2) {
			const float *a = src + (size_t)ix[0] * w, *b = src + (size_t)ix[1] * w;
			float wa = wt[0], wb = wt[1];
			for (size_t x = 0; x < w; x++)
				d[x] = wa * a[x] + wb * b[x];
			continue;
		}
		if (nt == 4) {
			const float *a = src + (size_t)ix[0] * w, *b = src + (size_t)ix[1] * w;
			const float *c = src + (size_t)ix[2] * w, *e = src + (size_t)ix[3] * w;
			float wa = wt[0], wb = wt[1], wc = wt[2], we = wt[3];
			for (size_t x = 0; x < w; x++)
				d[x] = wa * a[x] + wb * b[x] + wc * c[x] + we * e[x];
			continue;
		}
		const float *a = src + (size_t)ix[0] * w;
		float wa = wt[0];
		for (size_t x = 0; x < w; x++)
			d[x] = wa * a[x];
		for (size_t k = 1; k < nt; k++) {
			if (wt[k] == 0)
				continue;
			a = src + (size_t)ix[k] * w;
			wa = wt[k];
			for (size_t x = 0; x < w; x++)
				d[x] += wa * a[x];
		}
	}
}

void
mp_rs_apply_y(const mp_rs_tab *t, const float *src, size_t w, float *dst)
{
	apply_y_rows(t, src, w, dst, 0, t->dn);
}

/* clip to [lo, hi]; NaN stays NaN (as numpy.clip) */
static void
clip_f(float *d, size_t n, float lo, float hi)
{
	size_t i = 0;
#ifdef __SSE2__
	__m128 vl = _mm_set1_ps(lo), vh = _mm_set1_ps(hi);
	for (; i + 4 <= n; i += 4) {
		/* maxps/minps return the second operand when unordered: NaN passes */
		__m128 v = _mm_max_ps(vl, _mm_loadu_ps(d + i));
		_mm_storeu_ps(d + i, _mm_min_ps(vh, v));
	}
#endif
	for (; i < n; i++)
		d[i] = d[i] < lo ? lo : d[i] > hi ? hi : d[i];
}

/* min and max of n floats, NaNs ignored (all NaN: +inf, -inf) */
static void
minmax_f(const float *s, size_t n, float *mn, float *mx)
{
	float a = INFINITY, b = -INFINITY;
	size_t i = 0;
#ifdef __SSE2__
	__m128 va = _mm_set1_ps(INFINITY), vb = _mm_set1_ps(-INFINITY);
	for (; i + 4 <= n; i += 4) {
		__m128 v = _mm_loadu_ps(s + i);
		va = _mm_min_ps(v, va);   /* NaN in v: keeps va */
		vb = _mm_max_ps(v, vb);
	}
	float ta[4], tb[4];
	_mm_storeu_ps(ta, va);
	_mm_storeu_ps(tb, vb);
	for (int k = 0; k < 4; k++) {
		if (ta[k] < a)
			a = ta[k];
		if (tb[k] > b)
			b = tb[k];
	}
#endif
	for (; i < n; i++) {
		if (s[i] < a)
			a = s[i];
		if (s[i] > b)
			b = s[i];
	}
	*mn = a;
	*mx = b;
}

/* the two passes of a resize split by rows between threads; the y pass writes
 * floats, or (typed output) converts each row while it is in cache, after
 * clipping it to [clo, chi] when clip is set */
typedef struct {
	const mp_rs_tab *tx, *ty;
	const float *src;
	float *tmp, *dst;
	void *tdst;
	mp_type dt;
	int clip;
	float clo, chi;
	size_t sw, sh, dw;
	size_t r0, r1;     /* rows of the x pass (source rows) */
	size_t y0, y1;     /* rows of the y pass (output rows) */
	int phase;
} rs_job;

static void *
rs_work(void *arg)
{
	rs_job *j = arg;

	if (j->phase == 0) {
		mp_rs_apply_x(j->tx, j->src + j->r0 * j->sw, j->r1 - j->r0, j->tmp + j->r0 * j->dw);
		return NULL;
	}
	if (!j->tdst) {
		apply_y_rows(j->ty, j->tmp, j->dw, j->dst, j->y0, j->y1);
		if (j->clip)
			clip_f(j->dst + j->y0 * j->dw, (j->y1 - j->y0) * j->dw, j->clo, j->chi);
		return NULL;
	}
	/* one output row at a time through a small float buffer */
	float *row = malloc(j->dw * sizeof *row);
	size_t el = mp_type_size(j->dt);
	if (!row)
		return (void *)1;
	for (size_t y = j->y0; y < j->y1; y++) {
		apply_y_rows(j->ty, j->tmp, j->dw, row - y * j->dw, y, y + 1);
		if (j->clip)
			clip_f(row, j->dw, j->clo, j->chi);
		mp_from_float((unsigned char *)j->tdst + y * j->dw * el, j->dt, row, j->dw);
	}
	free(row);
	return NULL;
}

static int
run_passes(const mp_resizer *r, const float *src, float *tmp, float *dst, void *tdst, mp_type dt,
           int clip, float clo, float chi)
{
	int nt = r->nthreads < 1 ? 1 : r->nthreads > 16 ? 16 : r->nthreads;
	size_t sh = r->ty.sn, dh = r->dh;
	int bad = 0;

	if ((size_t)nt > sh || (size_t)nt > dh || r->dw * dh < 65536)
		nt = 1;
	rs_job job[16] = { { 0 } };
	pthread_t th[16];
	for (int phase = 0; phase < 2; phase++) {
		int started = 0;
		for (int k = 0; k < nt; k++) {
			job[k] = (rs_job){ &r->tx, &r->ty, src, tmp, dst, tdst, dt, clip, clo, chi, r->tx.sn, sh, r->dw,
			                   sh * (size_t)k / (size_t)nt, sh * (size_t)(k + 1) / (size_t)nt,
			                   dh * (size_t)k / (size_t)nt, dh * (size_t)(k + 1) / (size_t)nt, phase };
		}
		for (int k = 1; k < nt; k++) {
			if (pthread_create(&th[k], NULL, rs_work, &job[k]) != 0)
				break;
			started = k;
		}
		bad |= rs_work(&job[0]) != NULL;
		for (int k = 1; k <= started; k++) {
			void *rv = NULL;
			pthread_join(th[k], &rv);
			bad |= rv != NULL;
		}
		for (int k = started + 1; k < nt; k++)   /* threads that could not start */
			bad |= rs_work(&job[k]) != NULL;
	}
	return bad ? mp_seterr("out of memory in resize") : 0;
}

/* a work buffer; from 1 MiB on in whole transparent huge pages (where the
 * kernel grants them on request): a few faults instead of one per 4 KiB,
 * which for one 512x512 slice cost as much as a quarter of the resize */
static void *
buf_alloc(size_t n)
{
	size_t hp = (size_t)2 << 20;

	if (n < ((size_t)1 << 20))
		return malloc(n ? n : 1);
	void *p = aligned_alloc(hp, (n + hp - 1) / hp * hp);
#ifdef MADV_HUGEPAGE
	if (p)
		madvise(p, (n + hp - 1) / hp * hp, MADV_HUGEPAGE);
#endif
	return p;
}

int
mp_resizer_init_border(mp_resizer *r, mp_rs_method m, size_t sw, size_t sh, size_t dw, size_t dh,
                       double cubic_a, int zero_border)
{
	size_t big, pw, ph, pad;

	memset(r, 0, sizeof *r);
	r->m = m;
	r->sw = sw;
	r->sh = sh;
	r->dw = dw;
	r->dh = dh;
	/* scikit-image mode='constant' is scipy's 'grid-constant': the signal padded
	 * with 12 zeros on every side before the (mirror) prefilter */
	pad = m == MP_RS_BSPLINE3 && zero_border ? 12 : 0;
	r->zero_border = m == MP_RS_BSPLINE3 && zero_border;
	r->pad = pad;
	pw = sw + 2 * pad;
	ph = sh + 2 * pad;
	int shrink = sw >= dw && sh >= dh;
	if (m == MP_RS_BSPLINE3) {
		if (bs_tab(&r->tx, sw, dw, pad) < 0 || bs_tab(&r->ty, sh, dh, pad) < 0)
			goto fail;
		double fx = (double)sw / (double)dw, fy = (double)sh / (double)dh;
		if (gauss_tab(&r->gx, sw, fx > 1 ? (fx - 1) / 2 : 0, r->zero_border) < 0 ||
		    gauss_tab(&r->gy, sh, fy > 1 ? (fy - 1) / 2 : 0, r->zero_border) < 0)
			goto fail;
	} else if (tab_make(&r->tx, m, sw, dw, cubic_a, shrink) < 0 || tab_make(&r->ty, m, sh, dh, cubic_a, shrink) < 0) {
		goto fail;
	}
	big = pw * ph > dw * ph ? pw * ph : dw * ph;
	r->tmp = buf_alloc(big * sizeof(float));
	r->tmp2 = buf_alloc(big * sizeof(float));
	r->line = malloc((pw > ph ? pw : ph) * sizeof(double));
	if (m == MP_RS_BSPLINE3)
		r->dimg = buf_alloc(pw * ph * sizeof(double));
	if (!r->tmp || !r->tmp2 || !r->line || (m == MP_RS_BSPLINE3 && !r->dimg)) {
		mp_seterr("out of memory for resize buffers");
		goto fail;
	}
	return 0;
fail:
	mp_resizer_free(r);
	return -1;
}

int
mp_resizer_init(mp_resizer *r, mp_rs_method m, size_t sw, size_t sh, size_t dw, size_t dh, double cubic_a)
{
	return mp_resizer_init_border(r, m, sw, sh, dw, dh, cubic_a, 0);
}

void
mp_resizer_free(mp_resizer *r)
{
	mp_rs_tab_free(&r->tx);
	mp_rs_tab_free(&r->ty);
	mp_rs_tab_free(&r->gx);
	mp_rs_tab_free(&r->gy);
	free(r->tmp);
	free(r->tmp2);
	free(r->line);
	free(r->dimg);
	memset(r, 0, sizeof *r);
}

static int
resizer_run(mp_resizer *r, const float *src, float *dst, void *tdst, mp_type dt)
{
	size_t sw = r->sw, sh = r->sh;

	if (r->m != MP_RS_BSPLINE3)
		return run_passes(r, src, r->tmp, dst, tdst, dt, 0, 0, 0);
	/* scikit-image: Gaussian (when shrinking), spline prefilter, interpolation, clip */
	float mn, mx;
	minmax_f(src, sw * sh, &mn, &mx);
	const float *cur = src;
	if (r->gx.ntap > 1) {
		mp_rs_apply_x(&r->gx, cur, sh, r->tmp2);
		cur = r->tmp2;
	}
	if (r->gy.ntap > 1) {
		mp_rs_apply_y(&r->gy, cur, sw, r->tmp);
		cur = r->tmp;
	}
	/* prefilter rows and columns in double precision (padded with zeros for
	 * the constant border), then back to floats in tmp */
	size_t pad = r->pad, pw = sw + 2 * pad, ph = sh + 2 * pad;
	double *im = r->dimg;
	if (pad)
		memset(im, 0, pw * ph * sizeof *im);
	for (size_t y = 0; y < sh; y++)
		for (size_t x = 0; x < sw; x++)
			im[(y + pad) * pw + x + pad] = cur[y * sw + x];
	bspline_prefilter2d(im, pw, ph, r->nthreads, r->tmp);
	return run_passes(r, r->tmp, r->tmp2, dst, tdst, dt, 1, mn, mx);
}

void
mp_resizer_run(mp_resizer *r, const float *src, float *dst)
{
	(void)resizer_run(r, src, dst, NULL, MP_FLOAT32);
}

int
mp_resizer_run_to(mp_resizer *r, const float *src, void *dst, mp_type dt)
{
	if (dt == MP_FLOAT32) {
		mp_resizer_run(r, src, dst);
		return 0;
	}
	return resizer_run(r, src, NULL, dst, dt);
}

void
mp_resize_nearest(void *dst, size_t dw, size_t dh, const void *src, size_t sw, size_t sh, size_t elsize)
{
	int32_t *xi = mp_xmalloc(dw * sizeof *xi), *yi = mp_xmalloc(dh * sizeof *yi);

	for (size_t i = 0; i < dw; i++)
		xi[i] = (int32_t)(((2 * (uint64_t)i + 1) * sw) / (2 * (uint64_t)dw));
	for (size_t i = 0; i < dh; i++)
		yi[i] = (int32_t)(((2 * (uint64_t)i + 1) * sh) / (2 * (uint64_t)dh));
	mp_gather2d(dst, dw, dh, src, sw, xi, yi, elsize);
	free(xi);
	free(yi);
}

void
mp_longest_side(size_t w, size_t h, size_t n, size_t *nw, size_t *nh)
{
	double scale = (double)n / (double)(w > h ? w : h);

	*nw = (size_t)((double)w * scale + 0.5);
	*nh = (size_t)((double)h * scale + 0.5);
	if (*nw < 1)
		*nw = 1;
	if (*nh < 1)
		*nh = 1;
}

void
mp_gather2d(void *dst, size_t dw, size_t dh, const void *src, size_t sw,
            const int32_t *xi, const int32_t *yi, size_t elsize)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	for (size_t y = 0; y < dh; y++) {
		const unsigned char *row = s + (size_t)yi[y] * sw * elsize;
		unsigned char *o = d + y * dw * elsize;
		switch (elsize) {
		case 1:
			for (size_t i = 0; i < dw; i++)
				o[i] = row[xi[i]];
			break;
		case 2:
			for (size_t i = 0; i < dw; i++)
				memcpy(o + 2 * i, row + 2 * (size_t)xi[i], 2);
			break;
		case 4:
			for (size_t i = 0; i < dw; i++)
				memcpy(o + 4 * i, row + 4 * (size_t)xi[i], 4);
			break;
		default:
			for (size_t i = 0; i < dw; i++)
				memcpy(o + i * elsize, row + (size_t)xi[i] * elsize, elsize);
		}
	}
}

void
mp_blend(float *dst, const float *a, const float *b, float f, size_t n)
{
	float g = 1.f - f;

	for (size_t i = 0; i < n; i++)
		dst[i] = g * a[i] + f * b[i];
}

#define TOF(T) { const T *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float)s[i]; } break
void
mp_to_float(float *dst, const void *src, mp_type st, size_t n)
{
	switch (st) {
	case MP_INT8: TOF(int8_t);
	case MP_UINT8: TOF(uint8_t);
	case MP_INT16: TOF(int16_t);
	case MP_UINT16: TOF(uint16_t);
	case MP_INT32: TOF(int32_t);
	case MP_UINT32: TOF(uint32_t);
	case MP_FLOAT32: memcpy(dst, src, n * sizeof *dst); break;
	case MP_FLOAT64: TOF(double);
	default: mp_convert(dst, MP_FLOAT32, src, st, n);
	}
}
#undef TOF

/* round half away from zero, exactly (float arithmetic: r and v - r are exact),
 * clamp; NaN -> 0. Written so that the compiler can vectorise it. */
#define FROMF(T, LO, HI) { T *d = dst; for (size_t i = 0; i < n; i++) { \
	float v = src[i]; \
	v = v == v ? v : 0.f; \
	v = v < (float)(LO) ? (float)(LO) : v; \
	v = v > (float)(HI) ? (float)(HI) : v; \
	int32_t r = (int32_t)v; \
	float fr = v - (float)r; \
	r += (fr >= 0.5f) - (fr <= -0.5f); \
	d[i] = (T)r; } } break
#define FROMF64(T, LO, HI) { T *d = dst; for (size_t i = 0; i < n; i++) { \
	double v = (double)src[i]; \
	v = v != v ? 0 : v <= (LO) ? (LO) : v >= (HI) ? (HI) : v; \
	d[i] = (T)(int64_t)(v >= 0 ? v + 0.5 : v - 0.5); } } break
#ifdef __SSE2__
/* 4 floats -> 4 int32, rounded half away from zero, clamped to [lo, hi], NaN -> 0
 * (the same results as the scalar FROMF) */
static inline __m128i
round4(__m128 v, __m128 lo, __m128 hi)
{
	v = _mm_and_ps(v, _mm_cmpord_ps(v, v));
	v = _mm_min_ps(_mm_max_ps(v, lo), hi);
	__m128i r = _mm_cvttps_epi32(v);
	__m128 fr = _mm_sub_ps(v, _mm_cvtepi32_ps(r));
	__m128i up = _mm_castps_si128(_mm_cmpge_ps(fr, _mm_set1_ps(0.5f)));
	__m128i dn = _mm_castps_si128(_mm_cmple_ps(fr, _mm_set1_ps(-0.5f)));
	return _mm_add_epi32(_mm_sub_epi32(r, up), dn);
}

/* 8-at-a-time conversions for the common integer outputs; returns how many were done */
static size_t
from_float_sse(void *dst, mp_type dt, const float *src, size_t n)
{
	size_t i = 0;

	if (dt == MP_INT16) {
		__m128 lo = _mm_set1_ps(-32768.f), hi = _mm_set1_ps(32767.f);
		for (; i + 8 <= n; i += 8) {
			__m128i a = round4(_mm_loadu_ps(src + i), lo, hi), b = round4(_mm_loadu_ps(src + i + 4), lo, hi);
			_mm_storeu_si128((__m128i *)(void *)((int16_t *)dst + i), _mm_packs_epi32(a, b));
		}
	} else if (dt == MP_UINT16) {
		__m128 lo = _mm_set1_ps(0.f), hi = _mm_set1_ps(65535.f);
		__m128i bias = _mm_set1_epi32(32768), flip = _mm_set1_epi16((short)0x8000);
		for (; i + 8 <= n; i += 8) {
			__m128i a = _mm_sub_epi32(round4(_mm_loadu_ps(src + i), lo, hi), bias);
			__m128i b = _mm_sub_epi32(round4(_mm_loadu_ps(src + i + 4), lo, hi), bias);
			_mm_storeu_si128((__m128i *)(void *)((uint16_t *)dst + i), _mm_xor_si128(_mm_packs_epi32(a, b), flip));
		}
	} else if (dt == MP_UINT8) {
		__m128 lo = _mm_set1_ps(0.f), hi = _mm_set1_ps(255.f);
		for (; i + 16 <= n; i += 16) {
			__m128i a = round4(_mm_loadu_ps(src + i), lo, hi), b = round4(_mm_loadu_ps(src + i + 4), lo, hi);
			__m128i c = round4(_mm_loadu_ps(src + i + 8), lo, hi), e = round4(_mm_loadu_ps(src + i + 12), lo, hi);
			__m128i ab = _mm_packs_epi32(a, b), ce = _mm_packs_epi32(c, e);
			_mm_storeu_si128((__m128i *)(void *)((uint8_t *)dst + i), _mm_packus_epi16(ab, ce));
		}
	}
	return i;
}
#endif

void
mp_from_float(void *dst, mp_type dt, const float *src, size_t n)
{
#ifdef __SSE2__
	size_t done = from_float_sse(dst, dt, src, n);
	if (done) {
		dst = (unsigned char *)dst + done * mp_type_size(dt);
		src += done;
		n -= done;
	}
#endif
	switch (dt) {
	case MP_INT8: FROMF(int8_t, -128, 127);
	case MP_UINT8: FROMF(uint8_t, 0, 255);
	case MP_INT16: FROMF(int16_t, -32768, 32767);
	case MP_UINT16: FROMF(uint16_t, 0, 65535);
	case MP_INT32: FROMF64(int32_t, -2147483648.0, 2147483647.0);
	case MP_UINT32: FROMF64(uint32_t, 0.0, 4294967295.0);
	case MP_FLOAT32: memcpy(dst, src, n * sizeof *src); break;
	case MP_FLOAT64: { double *d = dst; for (size_t i = 0; i < n; i++) d[i] = src[i]; } break;
	default: mp_convert(dst, dt, src, MP_FLOAT32, n);
	}
}
#undef FROMF
#undef FROMF64

/* ---------------------------------------------------------------- to a spacing */
void
mp_resample_plan(const mp_frame *f, const size_t s[3], const double target[3], size_t d[3], double step[3])
{
	for (int a = 0; a < 3; a++) {
		double sp = mp_spacing(f, a);
		if (a == 2 && f->dim == 2) {
			step[a] = 1;
			d[a] = 1;
			continue;
		}
		if (target[a] <= 0) {
			step[a] = 1;
			d[a] = s[a];
			continue;
		}
		double n = floor((double)s[a] * sp / target[a] + 0.5);
		d[a] = n < 1 ? 1 : (size_t)n;
		step[a] = target[a] / sp;
	}
}

int
mp_resample_stream(mp_in *in, mp_out *o, int near, mp_type st, mp_type dt, const size_t s[3], const size_t d[3],
                   const double step[3])
{
	size_t sel = mp_type_size(st), del = mp_type_size(dt);
	mp_rs_tab tx, ty;
	int rc = -1;

	if (mp_rs_tab_aligned(&tx, near, s[0], d[0], step[0]) < 0)
		return -1;
	if (mp_rs_tab_aligned(&ty, near, s[1], d[1], step[1]) < 0) {
		mp_rs_tab_free(&tx);
		return -1;
	}
	size_t sn = s[0] * s[1], dn = d[0] * d[1];
	unsigned char *sbuf = mp_xmalloc(sn * sel), *dbuf = mp_xmalloc(dn * (del > 4 ? del : 4));
	/* two cached slices (in-plane resampled), by slice index parity */
	void *cache[2] = { mp_xmalloc(dn * (near ? sel : sizeof(float))), mp_xmalloc(dn * (near ? sel : sizeof(float))) };
	long have[2] = { -1, -1 };
	float *fs = near ? NULL : mp_xmalloc(sn * sizeof(float)), *tmp = near ? NULL : mp_xmalloc(d[0] * s[1] * sizeof(float));
	float *blend = near ? NULL : mp_xmalloc(dn * sizeof(float));
	size_t next = 0;   /* next input slice to read */

	for (size_t k = 0; k < d[2]; k++) {
		double zc = (double)k * step[2];
		long z0, z1;
		float fz = 0;
		if (near) {
			z0 = z1 = (long)floor(zc + 0.5);
		} else {
			z0 = (long)floor(zc);
			fz = (float)(zc - (double)z0);
			z1 = z0 + 1;
		}
		if (z0 > (long)s[2] - 1)
			z0 = (long)s[2] - 1, fz = 0;
		if (z1 > (long)s[2] - 1)
			z1 = (long)s[2] - 1;
		/* read up to z1, keeping slices z1-1 and z1 */
		while ((long)next <= z1) {
			if (mp_in_data(in, sbuf, sn * sel) < 0)
				goto done;
			if ((long)next >= z0) {
				int slot = (int)(next & 1);
				if (near) {
					mp_gather2d(cache[slot], d[0], d[1], sbuf, s[0], tx.idx, ty.idx, sel);
				} else {
					mp_to_float(fs, sbuf, st, sn);
					mp_rs_apply_x(&tx, fs, s[1], tmp);
					mp_rs_apply_y(&ty, tmp, d[0], cache[slot]);
				}
				have[slot] = (long)next;
			}
			next++;
		}
		int s0 = (int)(z0 & 1), s1 = (int)(z1 & 1);
		if (have[s0] != z0 || have[s1] != z1) {
			mp_seterr("%s: frame %d: internal error: slice cache", mp_in_name(in), mp_in_frameno(in));
			goto done;
		}
		if (near) {
			if (mp_out_data(o, cache[s0], dn * del) < 0)
				goto done;
			continue;
		}
		mp_blend(blend, cache[s0], cache[s1], fz, dn);
		mp_from_float(dbuf, dt, blend, dn);
		if (mp_out_data(o, dbuf, dn * del) < 0)
			goto done;
	}
	if (mp_in_skipdata(in) < 0)
		goto done;
	rc = 0;
done:
	mp_rs_tab_free(&tx);
	mp_rs_tab_free(&ty);
	free(sbuf);
	free(dbuf);
	free(cache[0]);
	free(cache[1]);
	free(fs);
	free(tmp);
	free(blend);
	return rc;
}
