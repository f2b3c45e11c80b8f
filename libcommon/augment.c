/* augment.c - seeded augmentation (see mp_augment.h) */
#include "mp.h"
#include "mp_augment.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* SplitMix64: one step of the sequence that seeds every generator here */
uint64_t
mp_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void
mp_rng_seed(mp_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = mp_splitmix64(&seed);
}

static uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t
mp_rng_next(mp_rng *r)
{
	uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

double
mp_rng_uniform(mp_rng *r, double lo, double hi)
{
	double u = (double)(mp_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
	return lo + (hi - lo) * u;
}

double
mp_rng_normal(mp_rng *r)
{
	double u1 = mp_rng_uniform(r, 0, 1), u2 = mp_rng_uniform(r, 0, 1);
	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t
mp_hash64(const void *buf, size_t n, uint64_t h)
{
	const unsigned char *p = buf;
	h ^= 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return mp_splitmix64(&h);
}

static void
matmul(double a[3][3], double b[3][3], double c[3][3])
{
	double t[3][3];
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			t[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
	memcpy(c, t, sizeof t);
}

int
mp_aug_draw(const mp_aug_ranges *r, uint64_t seed, const size_t dim[3], const double sp[3], mp_aug_xform *x)
{
	mp_rng g;
	memset(x, 0, sizeof *x);
	x->seed = seed;
	memcpy(x->dim, dim, sizeof x->dim);
	memcpy(x->sp, sp, sizeof x->sp);
	mp_rng_seed(&g, seed);
	/* every parameter is drawn, used or not, so that turning one step off
	 * does not change the others */
	for (int a = 0; a < 3; a++)
		x->rot[a] = mp_rng_uniform(&g, -r->rot[a], r->rot[a]);
	if (dim[2] == 1)
		x->rot[0] = x->rot[1] = 0;   /* 2D: in-plane only */
	x->scale = mp_rng_uniform(&g, r->scale_lo, r->scale_hi);
	if (!(x->scale > 0))
		x->scale = 1;
	for (int a = 0; a < 3; a++) {
		int f = mp_rng_uniform(&g, 0, 1) < 0.5;
		x->flip[a] = r->flip[a] && f && !(a == 2 && dim[2] == 1);
	}
	x->gamma = mp_rng_uniform(&g, r->gamma_lo, r->gamma_hi);
	x->contrast = mp_rng_uniform(&g, r->contrast_lo, r->contrast_hi);
	x->noise = r->noise;
	x->alpha = r->elastic_alpha;

	/* M = F * Sc^-1 * R^T: output offset (mm) -> source offset (mm) */
	double R[3][3] = { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } };
	for (int a = 0; a < 3; a++) {
		double t = x->rot[a] * M_PI / 180, c = cos(t), s = sin(t);
		double Q[3][3] = { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } };
		int i = (a + 1) % 3, j = (a + 2) % 3;
		Q[i][i] = c;
		Q[i][j] = -s;
		Q[j][i] = s;
		Q[j][j] = c;
		matmul(Q, R, R);
	}
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			x->M[i][j] = R[j][i] / x->scale * (x->flip[i] ? -1 : 1);

	if (x->alpha > 0 && r->elastic_sigma > 0) {
		size_t n = 1;
		for (int a = 0; a < 3; a++) {
			double ext = (double)dim[a] * sp[a];
			x->g[a] = dim[a] > 1 ? (size_t)ceil(ext / r->elastic_sigma) + 2 : 1;
			if (x->g[a] > 4096)
				return mp_seterr("augment: elastic control grid too fine (sigma %g mm)", r->elastic_sigma);
			x->gs[a] = x->g[a] > 1 ? ext / (double)(x->g[a] - 1) : 1;
			n *= x->g[a];
		}
		x->disp = malloc(n * 3 * sizeof *x->disp);
		if (!x->disp)
			return mp_seterr("augment: out of memory");
		for (size_t i = 0; i < n * 3; i++) {
			double v = mp_rng_normal(&g) * x->alpha;
			if (i % 3 == 2 && dim[2] == 1)
				v = 0;
			x->disp[i] = (float)v;
		}
	}
	return 0;
}

void
mp_aug_free(mp_aug_xform *x)
{
	free(x->disp);
	x->disp = NULL;
}

void
mp_aug_describe(const mp_aug_xform *x, char *buf, size_t n)
{
	snprintf(buf, n, "seed=%llu rot=%.3f,%.3f,%.3f scale=%.4f flip=%d,%d,%d elastic=%g gamma=%.4f contrast=%.4f noise=%g",
	         (unsigned long long)x->seed, x->rot[0], x->rot[1], x->rot[2], x->scale,
	         x->flip[0], x->flip[1], x->flip[2], x->disp ? x->alpha : 0.0, x->gamma, x->contrast, x->noise);
}

/* source position (voxel index units) of output voxel (i,j,k) */
static void
src_pos(const mp_aug_xform *x, size_t i, size_t j, size_t k, double s[3])
{
	double p[3] = { (double)i, (double)j, (double)k }, d[3];
	for (int a = 0; a < 3; a++)
		d[a] = (p[a] - ((double)x->dim[a] - 1) / 2) * x->sp[a];
	double q[3];
	for (int a = 0; a < 3; a++)
		q[a] = x->M[a][0] * d[0] + x->M[a][1] * d[1] + x->M[a][2] * d[2];
	if (x->disp) {
		/* trilinear interpolation of the control grid at the output point */
		double u[3];
		size_t i0[3];
		double f[3];
		for (int a = 0; a < 3; a++) {
			u[a] = x->g[a] > 1 ? p[a] * x->sp[a] / x->gs[a] : 0;
			double fl = floor(u[a]);
			if (fl > (double)x->g[a] - 2)
				fl = x->g[a] > 1 ? (double)x->g[a] - 2 : 0;
			if (fl < 0)
				fl = 0;
			i0[a] = (size_t)fl;
			f[a] = x->g[a] > 1 ? u[a] - fl : 0;
		}
		for (int c = 0; c < 8; c++) {
			size_t ci[3];
			double w = 1;
			for (int a = 0; a < 3; a++) {
				int b = (c >> a) & 1;
				ci[a] = i0[a] + (size_t)b;
				if (ci[a] >= x->g[a])
					ci[a] = x->g[a] - 1;   /* only when g == 1, where the weight is 0 */
				w *= b ? f[a] : 1 - f[a];
			}
			if (w == 0)
				continue;
			const float *dv = x->disp + 3 * ((ci[2] * x->g[1] + ci[1]) * x->g[0] + ci[0]);
			for (int a = 0; a < 3; a++)
				q[a] += w * dv[a];
		}
	}
	for (int a = 0; a < 3; a++)
		s[a] = q[a] / x->sp[a] + ((double)x->dim[a] - 1) / 2;
}

/* one trilinear warp per source type: the volume is read as it is, not
 * converted to float first (a 512x512x1000 int16 CT would need 1 GiB more) */
#define WARP_IMAGE(NAME, T)                                                                 \
static void                                                                                 \
NAME(const mp_aug_xform *x, const T *src, float *dst, float fill)                           \
{                                                                                           \
	const size_t *n = x->dim;                                                           \
	size_t o = 0;                                                                       \
	for (size_t k = 0; k < n[2]; k++)                                                   \
		for (size_t j = 0; j < n[1]; j++)                                           \
			for (size_t i = 0; i < n[0]; i++, o++) {                            \
				double s[3], f[3], v = 0;                                   \
				size_t i0[3], i1[3];                                        \
				int out = 0;                                                \
				src_pos(x, i, j, k, s);                                     \
				for (int a = 0; a < 3; a++)                                 \
					if (s[a] < -0.5 || s[a] > (double)n[a] - 0.5)       \
						out = 1;                                    \
				if (out) {                                                  \
					dst[o] = fill;                                      \
					continue;                                           \
				}                                                           \
				for (int a = 0; a < 3; a++) {                               \
					double c = s[a] < 0 ? 0 : s[a] > (double)n[a] - 1 ? (double)n[a] - 1 : s[a]; \
					double fl = floor(c);                               \
					i0[a] = (size_t)fl;                                 \
					i1[a] = i0[a] + 1 < n[a] ? i0[a] + 1 : i0[a];       \
					f[a] = c - fl;                                      \
				}                                                           \
				for (int c = 0; c < 8; c++) {                               \
					size_t ii = (c & 1) ? i1[0] : i0[0], jj = (c & 2) ? i1[1] : i0[1], kk = (c & 4) ? i1[2] : i0[2]; \
					double w = ((c & 1) ? f[0] : 1 - f[0]) * ((c & 2) ? f[1] : 1 - f[1]) * ((c & 4) ? f[2] : 1 - f[2]); \
					if (w != 0)                                         \
						v += w * (double)(float)src[(kk * n[1] + jj) * n[0] + ii]; \
				}                                                           \
				dst[o] = (float)v;                                          \
			}                                                                   \
}
WARP_IMAGE(warp_u8, uint8_t)
WARP_IMAGE(warp_i8, int8_t)
WARP_IMAGE(warp_u16, uint16_t)
WARP_IMAGE(warp_i16, int16_t)
WARP_IMAGE(warp_u32, uint32_t)
WARP_IMAGE(warp_i32, int32_t)
WARP_IMAGE(warp_u64, uint64_t)
WARP_IMAGE(warp_i64, int64_t)
WARP_IMAGE(warp_f32, float)
WARP_IMAGE(warp_f64, double)

void
mp_aug_warp_image(const mp_aug_xform *x, const void *src, mp_type st, float *dst, float fill)
{
	switch (st) {
	case MP_UINT8: warp_u8(x, src, dst, fill); break;
	case MP_INT8: warp_i8(x, src, dst, fill); break;
	case MP_UINT16: warp_u16(x, src, dst, fill); break;
	case MP_INT16: warp_i16(x, src, dst, fill); break;
	case MP_UINT32: warp_u32(x, src, dst, fill); break;
	case MP_INT32: warp_i32(x, src, dst, fill); break;
	case MP_UINT64: warp_u64(x, src, dst, fill); break;
	case MP_INT64: warp_i64(x, src, dst, fill); break;
	case MP_FLOAT64: warp_f64(x, src, dst, fill); break;
	default: warp_f32(x, src, dst, fill); break;
	}
}

void
mp_aug_warp_labels(const mp_aug_xform *x, const void *src, void *dst, size_t es)
{
	const size_t *n = x->dim;
	const unsigned char *sb = src;
	unsigned char *db = dst;
	size_t o = 0;
	for (size_t k = 0; k < n[2]; k++)
		for (size_t j = 0; j < n[1]; j++)
			for (size_t i = 0; i < n[0]; i++, o++) {
				double s[3];
				src_pos(x, i, j, k, s);
				long q[3];
				int out = 0;
				for (int a = 0; a < 3; a++) {
					q[a] = (long)floor(s[a] + 0.5);
					if (q[a] < 0 || q[a] >= (long)n[a])
						out = 1;
				}
				if (out)
					memset(db + o * es, 0, es);
				else
					memcpy(db + o * es, sb + (((size_t)q[2] * n[1] + (size_t)q[1]) * n[0] + (size_t)q[0]) * es, es);
			}
}

void
mp_aug_intensity(const mp_aug_xform *x, float *v, size_t n, double lo, double hi)
{
	mp_rng g;
	mp_rng_seed(&g, x->seed ^ 0x5bd1e995u);
	double span = hi - lo;
	if (x->gamma > 0 && x->gamma != 1 && span > 0)
		for (size_t i = 0; i < n; i++) {
			double t = (v[i] - lo) / span;
			t = t < 0 ? 0 : t > 1 ? 1 : t;
			v[i] = (float)(lo + span * pow(t, x->gamma));
		}
	if (x->contrast > 0 && x->contrast != 1) {
		double m = 0;
		for (size_t i = 0; i < n; i++)
			m += v[i];
		m /= n ? (double)n : 1;
		for (size_t i = 0; i < n; i++)
			v[i] = (float)(m + x->contrast * (v[i] - m));
	}
	if (x->noise > 0)
		for (size_t i = 0; i < n; i++)
			v[i] = (float)(v[i] + x->noise * mp_rng_normal(&g));
}
