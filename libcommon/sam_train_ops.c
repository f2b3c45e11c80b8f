/* sam_train_ops.c - the operations of SAM's mask decoder with their backward
 * passes (see mp_train.h), written from the formulas of the modules. */
#include "mp_train.h"
#include "mp.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the element loops below in an AVX2 build beside the plain one, chosen
 * at load time (the same operations in the same order: no FMA contraction
 * under -std=c11, so the same results) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define VEC __attribute__((target_clones("avx2", "default")))
#else
#define VEC
#endif

/* exp for float lanes (the loops below vectorize; libm's expf does not):
 * 2^n e^r, |r| <= ln2/2, Taylor to r^7 (relative error < 1e-8 before
 * rounding); x clamped to [-87, 88] (e^-87 ~ 1.6e-38 stands for 0) */
static inline float
fexp(float x)
{
	x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
	float t = x * 1.44269504088896341f + 12582912.0f;   /* 1.5 * 2^23: rint in the low bits */
	float nf = t - 12582912.0f;
	int32_t ti, n;
	memcpy(&ti, &t, 4);
	n = ti - 0x4B400000;
	float r = x - nf * 0.693145751953125f - nf * 1.428606765330187045e-06f;
	float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 +
	          r * (1.0f / 5040.0f)))))));
	int32_t sc = (n + 127) << 23;
	float s;
	memcpy(&s, &sc, 4);
	return p * s;
}

/* Phi(x) = 0.5 (1 + erf(x / sqrt 2)) and e^(-x^2/2), from one exp
 * (Abramowitz and Stegun 7.1.26: |erf error| <= 1.5e-7) */
static inline float
fphi(float x, float *e2)
{
	float z = fabsf(x) * 0.70710678118654752f, t = 1.0f / (1.0f + 0.3275911f * z);
	float e = fexp(-0.5f * x * x);
	float q = 0.5f * t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f +
	          t * 1.061405429f)))) * e;
	*e2 = e;
	return x >= 0 ? 1.0f - q : q;
}

/* log(1 + e) for e in [0, 1]: 2 atanh(s), s = e / (2 + e) in [0, 1/3],
 * the series to s^17 (error < 2e-10) */
static inline float
flog1p01(float e)
{
	float s = e / (2.0f + e), s2 = s * s;
	float p = 1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9 + s2 * (1.0f / 11 +
	          s2 * (1.0f / 13 + s2 * (1.0f / 15 + s2 * (1.0f / 17))))))));
	return 2.0f * s * p;
}

/* d[j] += sum over rows of x[r][j] (rows x n): float within blocks of 64
 * rows, double across blocks, rows read in order */
static void
colsums(float *d, const float *x, size_t rows, int n)
{
	enum { CW = 512, RB = 64 };
	float acc[CW];
	double tot[CW];
	for (int j0 = 0; j0 < n; j0 += CW) {
		int m = n - j0 < CW ? n - j0 : CW;
		for (int j = 0; j < m; j++)
			tot[j] = 0;
		for (size_t r0 = 0; r0 < rows; r0 += RB) {
			size_t r1 = r0 + RB < rows ? r0 + RB : rows;
			memset(acc, 0, (size_t)m * sizeof(float));
			for (size_t r = r0; r < r1; r++) {
				const float *xr = x + r * n + j0;
				for (int j = 0; j < m; j++)
					acc[j] += xr[j];
			}
			for (int j = 0; j < m; j++)
				tot[j] += acc[j];
		}
		for (int j = 0; j < m; j++)
			d[j0 + j] += (float)tot[j];
	}
}

void
mp_tr_linear_fwd(float *y, const float *x, const float *w, const float *b, int n, int in, int out)
{
	if (b)
		for (int r = 0; r < n; r++)
			memcpy(y + (size_t)r * out, b, (size_t)out * sizeof(float));
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, b ? 1.0f : 0.0f, y, out);
}

void
mp_tr_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int n, int in,
                 int out)
{
	if (dx)   /* dx (n x in) += dy (n x out) w (out x in) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
	if (dw)   /* dw (out x in) += dy^T x */
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in);
	if (db)
		colsums(db, dy, n, out);
}

/* float lanes within a row (8 partial sums), double across them */
static inline double
rsum(const float *x, int d)
{
	float a[8] = { 0 };
	int i = 0;
	for (; i + 8 <= d; i += 8)
		for (int k = 0; k < 8; k++)
			a[k] += x[i + k];
	double s = 0;
	for (int k = 0; k < 8; k++)
		s += a[k];
	for (; i < d; i++)
		s += x[i];
	return s;
}

VEC void
mp_tr_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int n, int d,
                    float eps)
{
	for (int r = 0; r < n; r++) {
		const float *xr = x + (size_t)r * d;
		float *yr = y + (size_t)r * d;
		float mu = (float)(rsum(xr, d) / d), a[8] = { 0 };
		int i = 0;
		for (; i + 8 <= d; i += 8)
			for (int k = 0; k < 8; k++)
				a[k] += (xr[i + k] - mu) * (xr[i + k] - mu);
		double s2 = 0;
		for (int k = 0; k < 8; k++)
			s2 += a[k];
		for (; i < d; i++)
			s2 += (xr[i] - mu) * (xr[i] - mu);
		float rs = (float)(1.0 / sqrt(s2 / d + eps));
		for (i = 0; i < d; i++)
			yr[i] = (xr[i] - mu) * rs * w[i] + b[i];
		mean[r] = mu;
		rstd[r] = rs;
	}
}

VEC void
mp_tr_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *mean,
                    const float *rstd, const float *w, int n, int d)
{
	float *xh = mp_xmalloc((size_t)2 * d * sizeof(float)), *g = xh + d;
	for (int r = 0; r < n; r++) {
		const float *xr = x + (size_t)r * d, *dyr = dy + (size_t)r * d;
		float mu = mean[r], rs = rstd[r];
		for (int i = 0; i < d; i++) {
			xh[i] = (xr[i] - mu) * rs;
			g[i] = dyr[i] * w[i];
		}
		if (dw)
			for (int i = 0; i < d; i++)
				dw[i] += dyr[i] * xh[i];
		if (db)
			for (int i = 0; i < d; i++)
				db[i] += dyr[i];
		if (!dx)
			continue;
		float a[8] = { 0 }, c[8] = { 0 };
		int i = 0;
		for (; i + 8 <= d; i += 8)
			for (int k = 0; k < 8; k++) {
				a[k] += g[i + k];
				c[k] += g[i + k] * xh[i + k];
			}
		double as = 0, bs = 0;
		for (int k = 0; k < 8; k++)
			as += a[k], bs += c[k];
		for (; i < d; i++)
			as += g[i], bs += g[i] * xh[i];
		float am = (float)(as / d), bm = (float)(bs / d);
		float *dxr = dx + (size_t)r * d;
		for (i = 0; i < d; i++)
			dxr[i] += rs * (g[i] - am - xh[i] * bm);
	}
	free(xh);
}

void
mp_tr_relu_fwd(float *y, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = x[i] > 0 ? x[i] : 0;
}

void
mp_tr_relu_bwd(float *dx, const float *dy, const float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (y[i] > 0)
			dx[i] += dy[i];
}

/* libm's erff and expf (within an ulp or two): float is enough here */
VEC void
mp_tr_gelu_fwd(float *y, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		float e, v = x[i];
		y[i] = v * fphi(v, &e);
	}
}

VEC void
mp_tr_gelu_bwd(float *dx, const float *dy, const float *x, size_t n)
{
	const float c = (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);   /* 1/sqrt(2 pi) */
	for (size_t i = 0; i < n; i++) {
		float e, v = x[i];
		float g = fphi(v, &e) + v * c * e;
		dx[i] += dy[i] * g;
	}
}

VEC double
mp_tr_exp_sub(float *x, int n, float mx)
{
	for (int j = 0; j < n; j++)
		x[j] = fexp(x[j] - mx);
	return rsum(x, n);
}

VEC void
mp_tr_gelu_bwd_mul(float *d, const float *x, size_t n)
{
	const float c = (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);
	for (size_t i = 0; i < n; i++) {
		float e, v = x[i];
		d[i] *= fphi(v, &e) + v * c * e;
	}
}

VEC void
mp_tr_softmax_rows(float *s, int rows, int n)
{
	for (int r = 0; r < rows; r++) {
		float *x = s + (size_t)r * n, mx = x[0];
		double sum = 0;
		for (int j = 1; j < n; j++)
			mx = x[j] > mx ? x[j] : mx;
		for (int j = 0; j < n; j++)
			x[j] = fexp(x[j] - mx);
		sum = rsum(x, n);
		float inv = (float)(1.0 / sum);
		for (int j = 0; j < n; j++)
			x[j] *= inv;
	}
}

void
mp_tr_attn_fwd(float *o, float *p, const float *q, const float *k, const float *v, int nq, int nk, int d, int heads)
{
	int hd = d / heads;
	float scale = 1.0f / sqrtf((float)hd);

	for (int h = 0; h < heads; h++) {
		float *P = p + (size_t)h * nq * nk;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, q + h * hd, d, k + h * hd, d, 0.0f,
		            P, nk);
		mp_tr_softmax_rows(P, nq, nk);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, P, nk, v + h * hd, d, 0.0f,
		            o + h * hd, d);
	}
}

void
mp_tr_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *p, const float *q, const float *k,
               const float *v, int nq, int nk, int d, int heads, float *ws)
{
	int hd = d / heads;
	float scale = 1.0f / sqrtf((float)hd);

	for (int h = 0; h < heads; h++) {
		const float *P = p + (size_t)h * nq * nk, *dO = dout + h * hd;
		/* dV += P^T dO */
		if (dv)
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, P, nk, dO, d, 1.0f, dv + h * hd, d);
		/* dP = dO V^T, then dS = P (dP - sum_j P dP) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f, dO, d, v + h * hd, d, 0.0f, ws, nk);
		for (int i = 0; i < nq; i++) {
			const float *pr = P + (size_t)i * nk;
			float *dr = ws + (size_t)i * nk;
			double s = 0;
			for (int j = 0; j < nk; j++)
				s += (double)pr[j] * dr[j];
			for (int j = 0; j < nk; j++)
				dr[j] = (float)(pr[j] * (dr[j] - s));
		}
		if (dq)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, scale, ws, nk, k + h * hd, d, 1.0f,
			            dq + h * hd, d);
		if (dk)
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, scale, ws, nk, q + h * hd, d, 1.0f,
			            dk + h * hd, d);
	}
}

void
mp_tr_convt2_fwd(float *y, const float *x, const float *wt, const float *b, int h, int w, int cin, int cout, float *ws)
{
	int n4 = 4 * cout, W2 = 2 * w;

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, h * w, n4, cin, 1.0f, x, cin, wt, n4, 0.0f, ws, n4);
	for (int i = 0; i < h; i++)
		for (int j = 0; j < w; j++) {
			const float *s = ws + ((size_t)i * w + j) * n4;
			for (int kh = 0; kh < 2; kh++)
				for (int kw = 0; kw < 2; kw++) {
					float *d = y + ((size_t)(2 * i + kh) * W2 + 2 * j + kw) * cout;
					for (int o = 0; o < cout; o++)
						d[o] = s[o * 4 + kh * 2 + kw] + b[o];
				}
		}
}

void
mp_tr_convt2_bwd(float *dx, float *dwt, float *db, const float *dy, const float *x, const float *wt, int h, int w,
                 int cin, int cout, float *ws)
{
	int n4 = 4 * cout, W2 = 2 * w;

	for (int i = 0; i < h; i++)
		for (int j = 0; j < w; j++) {
			float *s = ws + ((size_t)i * w + j) * n4;
			for (int kh = 0; kh < 2; kh++)
				for (int kw = 0; kw < 2; kw++) {
					const float *d = dy + ((size_t)(2 * i + kh) * W2 + 2 * j + kw) * cout;
					for (int o = 0; o < cout; o++)
						s[o * 4 + kh * 2 + kw] = d[o];
				}
		}
	if (db)
		colsums(db, dy, (size_t)4 * h * w, cout);
	if (dwt)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cin, n4, h * w, 1.0f, x, cin, ws, n4, 1.0f, dwt, n4);
	if (dx)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, h * w, cin, n4, 1.0f, ws, n4, wt, n4, 1.0f, dx, cin);
}

/* torch's source index for align_corners=False: i0, i1 and the weight of i1 */
static void
src_index(int d, int dn, int sn, int *i0, int *i1, float *l1)
{
	float scale = (float)sn / (float)dn;
	float s = scale * ((float)d + 0.5f) - 0.5f;
	if (s < 0)
		s = 0;
	int a = (int)s;
	*i0 = a;
	*i1 = a < sn - 1 ? a + 1 : a;
	*l1 = s - (float)a;
}

/* the source indices and weights of every destination column */
static void
src_table(int dn, int sn, int *i0, int *i1, float *l1)
{
	for (int d = 0; d < dn; d++)
		src_index(d, dn, sn, i0 + d, i1 + d, l1 + d);
}

/* separable: every source row interpolated along x once (hr: sh x dw),
 * then each destination row from two of them; the same products and sums
 * as the 2-D formula (1-ly)((1-lx) a + lx b) + ly ((1-lx) c + lx d) */
void
mp_tr_bilinear_fwd(float *dst, int dw, int dh, const float *src, int sw, int sh)
{
	int *x0 = mp_xmalloc((size_t)dw * 2 * sizeof(int)), *x1 = x0 + dw;
	float *lx = mp_xmalloc(((size_t)dw + (size_t)sh * dw) * sizeof(float)), *hr = lx + dw;

	src_table(dw, sw, x0, x1, lx);
	for (int y = 0; y < sh; y++) {
		const float *r = src + (size_t)y * sw;
		float *o = hr + (size_t)y * dw;
		for (int x = 0; x < dw; x++)
			o[x] = (1 - lx[x]) * r[x0[x]] + lx[x] * r[x1[x]];
	}
	for (int y = 0; y < dh; y++) {
		int y0, y1;
		float ly;
		src_index(y, dh, sh, &y0, &y1, &ly);
		const float *r0 = hr + (size_t)y0 * dw, *r1 = hr + (size_t)y1 * dw;
		float *o = dst + (size_t)y * dw;
		for (int x = 0; x < dw; x++)
			o[x] = (1 - ly) * r0[x] + ly * r1[x];
	}
	free(x0);
	free(lx);
}

/* the adjoint, separable likewise: destination rows into per-source-row
 * sums along y (hr), then each along x */
void
mp_tr_bilinear_bwd(float *dsrc, int sw, int sh, const float *ddst, int dw, int dh)
{
	int *x0 = mp_xmalloc((size_t)dw * 2 * sizeof(int)), *x1 = x0 + dw;
	float *lx = mp_xmalloc(((size_t)dw + (size_t)sh * dw) * sizeof(float)), *hr = lx + dw;

	src_table(dw, sw, x0, x1, lx);
	memset(hr, 0, (size_t)sh * dw * sizeof(float));
	for (int y = 0; y < dh; y++) {
		int y0, y1;
		float ly;
		src_index(y, dh, sh, &y0, &y1, &ly);
		const float *g = ddst + (size_t)y * dw;
		float *r0 = hr + (size_t)y0 * dw, *r1 = hr + (size_t)y1 * dw;
		for (int x = 0; x < dw; x++)
			r0[x] += (1 - ly) * g[x];
		for (int x = 0; x < dw; x++)
			r1[x] += ly * g[x];
	}
	for (int y = 0; y < sh; y++) {
		const float *g = hr + (size_t)y * dw;
		float *r = dsrc + (size_t)y * sw;
		for (int x = 0; x < dw; x++) {
			r[x0[x]] += (1 - lx[x]) * g[x];
			r[x1[x]] += lx[x] * g[x];
		}
	}
	free(x0);
	free(lx);
}

/* per pixel in float (one exp: p and the BCE's log1p(e^-|v|) from e^-|v|),
 * sums in float over blocks of 1024 pixels and in double across them */
VEC double
mp_tr_dice_bce(const float *x, const float *gt, size_t n, float *dx, double scale, double *dice, double *bce)
{
	const double sm = 1e-5;
	double inter = 0, pp = 0, gg = 0, b = 0;

	for (size_t i0 = 0; i0 < n; i0 += 1024) {
		size_t i1 = i0 + 1024 < n ? i0 + 1024 : n, i = i0;
		float si[8] = { 0 }, sp[8] = { 0 }, sg[8] = { 0 }, sb[8] = { 0 };
		for (; i + 8 <= i1; i += 8)
			for (int k = 0; k < 8; k++) {
				float v = x[i + k], g = gt[i + k], e = fexp(-fabsf(v)), q = 1.0f / (1.0f + e);
				float p = v >= 0 ? q : e * q;
				si[k] += p * g;
				sp[k] += p * p;
				sg[k] += g * g;
				sb[k] += (v > 0 ? v : 0) - v * g + flog1p01(e);
			}
		for (int k = 1; k < 8; k++)
			si[0] += si[k], sp[0] += sp[k], sg[0] += sg[k], sb[0] += sb[k];
		for (; i < i1; i++) {
			float v = x[i], g = gt[i], e = fexp(-fabsf(v)), q = 1.0f / (1.0f + e), p = v >= 0 ? q : e * q;
			si[0] += p * g;
			sp[0] += p * p;
			sg[0] += g * g;
			sb[0] += (v > 0 ? v : 0) - v * g + flog1p01(e);
		}
		inter += si[0], pp += sp[0], gg += sg[0], b += sb[0];
	}
	double num = 2 * inter + sm, den = pp + gg + sm;
	double dl = 1.0 - num / den, bl = b / (double)n;
	if (dice)
		*dice = dl;
	if (bce)
		*bce = bl;
	if (dx) {
		/* d(1 - num/den)/dp = (2 num p - 2 g den) / den^2 */
		float c1 = (float)(scale * 2 * num / (den * den)), c2 = (float)(scale * 2 / den), c3 = (float)(scale / (double)n);
		for (size_t i = 0; i < n; i++) {
			float v = x[i], g = gt[i], e = fexp(-fabsf(v)), q = 1.0f / (1.0f + e), p = v >= 0 ? q : e * q;
			float dp = c1 * p - c2 * g;
			dx[i] += dp * p * (1 - p) + (p - g) * c3;
		}
	}
	return dl + bl;
}

static int
dw_out(int R, int k, int s)
{
	return (R + 2 * (k / 2) - k) / s + 1;
}

void
mp_tr_dwconv_fwd(float *y, const float *x, const float *w, const float *b, int R, int C, int k, int s)
{
	int p = k / 2, Ro = dw_out(R, k, s);

	for (int oy = 0; oy < Ro; oy++)
		for (int ox = 0; ox < Ro; ox++) {
			float *yr = y + ((size_t)oy * Ro + ox) * C;
			if (b)
				memcpy(yr, b, (size_t)C * sizeof(float));
			else
				memset(yr, 0, (size_t)C * sizeof(float));
			for (int kh = 0; kh < k; kh++) {
				int iy = oy * s + kh - p;
				if (iy < 0 || iy >= R)
					continue;
				for (int kw = 0; kw < k; kw++) {
					int ix = ox * s + kw - p;
					if (ix < 0 || ix >= R)
						continue;
					const float *xr = x + ((size_t)iy * R + ix) * C, *wr = w + (size_t)(kh * k + kw) * C;
					for (int c = 0; c < C; c++)
						yr[c] += xr[c] * wr[c];
				}
			}
		}
}

void
mp_tr_dwconv_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, int R, int C, int k, int s)
{
	int p = k / 2, Ro = dw_out(R, k, s);

	for (int oy = 0; oy < Ro; oy++)
		for (int ox = 0; ox < Ro; ox++) {
			const float *dr = dy + ((size_t)oy * Ro + ox) * C;
			for (int kh = 0; kh < k; kh++) {
				int iy = oy * s + kh - p;
				if (iy < 0 || iy >= R)
					continue;
				for (int kw = 0; kw < k; kw++) {
					int ix = ox * s + kw - p;
					if (ix < 0 || ix >= R)
						continue;
					size_t xo = ((size_t)iy * R + ix) * C, wo = (size_t)(kh * k + kw) * C;
					if (dx)
						for (int c = 0; c < C; c++)
							dx[xo + c] += dr[c] * w[wo + c];
					if (dw)
						for (int c = 0; c < C; c++)
							dw[wo + c] += dr[c] * x[xo + c];
				}
			}
		}
}

void
mp_tr_attnbias_fwd(float *o, float *p, const float *qkv, const float *bias, int n, int d, int heads)
{
	int hd = d / heads;
	float scale = 1.0f / sqrtf((float)hd);

	for (int h = 0; h < heads; h++) {
		float *P = p + (size_t)h * n * n;
		const float *q = qkv + h * hd, *k = q + d, *v = q + 2 * d;
		memcpy(P, bias + (size_t)h * n * n, (size_t)n * n * sizeof(float));
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, hd, scale, q, 3 * d, k, 3 * d, 1.0f, P, n);
		mp_tr_softmax_rows(P, n, n);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, n, 1.0f, P, n, v, 3 * d, 0.0f, o + h * hd, d);
	}
}

void
mp_tr_attnbias_bwd(float *dqkv, float *dbias, const float *dout, const float *p, const float *qkv, int n, int d, int heads,
                   float *ws)
{
	int hd = d / heads;
	float scale = 1.0f / sqrtf((float)hd);

	for (int h = 0; h < heads; h++) {
		const float *P = p + (size_t)h * n * n, *dO = dout + h * hd;
		const float *q = qkv + h * hd, *k = q + d, *v = q + 2 * d;
		float *dq = dqkv + h * hd, *dk = dq + d, *dv = dq + 2 * d;
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, n, 1.0f, P, n, dO, d, 1.0f, dv, 3 * d);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, hd, 1.0f, dO, d, v, 3 * d, 0.0f, ws, n);
		for (int i = 0; i < n; i++) {
			const float *pr = P + (size_t)i * n;
			float *dr = ws + (size_t)i * n;
			double s = 0;
			for (int j = 0; j < n; j++)
				s += (double)pr[j] * dr[j];
			for (int j = 0; j < n; j++)
				dr[j] = (float)(pr[j] * (dr[j] - s));
			if (dbias) {
				float *db = dbias + ((size_t)h * n + i) * n;
				for (int j = 0; j < n; j++)
					db[j] += dr[j];
			}
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, n, scale, ws, n, k, 3 * d, 1.0f, dq, 3 * d);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, n, scale, ws, n, q, 3 * d, 1.0f, dk, 3 * d);
	}
}

void
mp_tr_im2col3(float *cols, const float *x, int G, int C)
{
	for (int yy = 0; yy < G; yy++)
		for (int xx = 0; xx < G; xx++) {
			float *row = cols + ((size_t)yy * G + xx) * 9 * C;
			for (int ch = 0; ch < C; ch++)
				for (int kh = 0; kh < 3; kh++)
					for (int kw = 0; kw < 3; kw++) {
						int sy = yy + kh - 1, sx = xx + kw - 1;
						row[ch * 9 + kh * 3 + kw] = sy < 0 || sy >= G || sx < 0 || sx >= G ? 0.0f :
						                            x[((size_t)sy * G + sx) * C + ch];
					}
		}
}

void
mp_tr_col2im3(float *dx, const float *dcols, int G, int C)
{
	for (int yy = 0; yy < G; yy++)
		for (int xx = 0; xx < G; xx++) {
			const float *row = dcols + ((size_t)yy * G + xx) * 9 * C;
			for (int ch = 0; ch < C; ch++)
				for (int kh = 0; kh < 3; kh++)
					for (int kw = 0; kw < 3; kw++) {
						int sy = yy + kh - 1, sx = xx + kw - 1;
						if (sy >= 0 && sy < G && sx >= 0 && sx < G)
							dx[((size_t)sy * G + sx) * C + ch] += row[ch * 9 + kh * 3 + kw];
					}
		}
}
