/* sam_train_ops.c - the operations of SAM's mask decoder with their backward
 * passes (see mp_train.h), written from the formulas of the modules. */
#include "mp_train.h"
#include "mp.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
		for (int j = 0; j < out; j++) {
			double s = 0;
			for (int r = 0; r < n; r++)
				s += dy[(size_t)r * out + j];
			db[j] += (float)s;
		}
}

void
mp_tr_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int n, int d,
                    float eps)
{
	for (int r = 0; r < n; r++) {
		const float *xr = x + (size_t)r * d;
		float *yr = y + (size_t)r * d;
		double s = 0, s2 = 0;
		for (int i = 0; i < d; i++)
			s += xr[i];
		double mu = s / d;
		for (int i = 0; i < d; i++)
			s2 += (xr[i] - mu) * (xr[i] - mu);
		double rs = 1.0 / sqrt(s2 / d + eps);
		for (int i = 0; i < d; i++)
			yr[i] = (float)((xr[i] - mu) * rs) * w[i] + b[i];
		mean[r] = (float)mu;
		rstd[r] = (float)rs;
	}
}

void
mp_tr_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *mean,
                    const float *rstd, const float *w, int n, int d)
{
	for (int r = 0; r < n; r++) {
		const float *xr = x + (size_t)r * d, *dyr = dy + (size_t)r * d;
		double mu = mean[r], rs = rstd[r], a = 0, bsum = 0;
		for (int i = 0; i < d; i++) {
			double xh = (xr[i] - mu) * rs, g = (double)dyr[i] * w[i];
			a += g;
			bsum += g * xh;
			if (dw)
				dw[i] += (float)(dyr[i] * xh);
			if (db)
				db[i] += dyr[i];
		}
		a /= d;
		bsum /= d;
		if (dx) {
			float *dxr = dx + (size_t)r * d;
			for (int i = 0; i < d; i++) {
				double xh = (xr[i] - mu) * rs, g = (double)dyr[i] * w[i];
				dxr[i] += (float)(rs * (g - a - xh * bsum));
			}
		}
	}
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
void
mp_tr_gelu_fwd(float *y, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void
mp_tr_gelu_bwd(float *dx, const float *dy, const float *x, size_t n)
{
	const float c = (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);   /* 1/sqrt(2 pi) */
	for (size_t i = 0; i < n; i++) {
		float v = x[i];
		float g = 0.5f * (1.0f + erff(v * (float)M_SQRT1_2)) + v * c * expf(-0.5f * v * v);
		dx[i] += dy[i] * g;
	}
}

void
mp_tr_softmax_rows(float *s, int rows, int n)
{
	for (int r = 0; r < rows; r++) {
		float *x = s + (size_t)r * n, mx = x[0];
		double sum = 0;
		for (int j = 1; j < n; j++)
			mx = x[j] > mx ? x[j] : mx;
		for (int j = 0; j < n; j++) {
			x[j] = expf(x[j] - mx);
			sum += x[j];
		}
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
		for (int o = 0; o < cout; o++) {
			double s = 0;
			for (size_t r = 0; r < (size_t)4 * h * w; r++)
				s += dy[r * cout + o];
			db[o] += (float)s;
		}
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

void
mp_tr_bilinear_fwd(float *dst, int dw, int dh, const float *src, int sw, int sh)
{
	for (int y = 0; y < dh; y++) {
		int y0, y1;
		float ly;
		src_index(y, dh, sh, &y0, &y1, &ly);
		for (int x = 0; x < dw; x++) {
			int x0, x1;
			float lx;
			src_index(x, dw, sw, &x0, &x1, &lx);
			const float *r0 = src + (size_t)y0 * sw, *r1 = src + (size_t)y1 * sw;
			dst[(size_t)y * dw + x] = (1 - ly) * ((1 - lx) * r0[x0] + lx * r0[x1]) + ly * ((1 - lx) * r1[x0] + lx * r1[x1]);
		}
	}
}

void
mp_tr_bilinear_bwd(float *dsrc, int sw, int sh, const float *ddst, int dw, int dh)
{
	for (int y = 0; y < dh; y++) {
		int y0, y1;
		float ly;
		src_index(y, dh, sh, &y0, &y1, &ly);
		for (int x = 0; x < dw; x++) {
			int x0, x1;
			float lx;
			src_index(x, dw, sw, &x0, &x1, &lx);
			float g = ddst[(size_t)y * dw + x];
			float *r0 = dsrc + (size_t)y0 * sw, *r1 = dsrc + (size_t)y1 * sw;
			r0[x0] += (1 - ly) * (1 - lx) * g;
			r0[x1] += (1 - ly) * lx * g;
			r1[x0] += ly * (1 - lx) * g;
			r1[x1] += ly * lx * g;
		}
	}
}

double
mp_tr_dice_bce(const float *x, const float *gt, size_t n, float *dx, double scale, double *dice, double *bce)
{
	const double sm = 1e-5;
	double inter = 0, pp = 0, gg = 0, b = 0;

	for (size_t i = 0; i < n; i++) {
		double v = x[i], g = gt[i], p = 1.0 / (1.0 + exp(-v));
		inter += p * g;
		pp += p * p;
		gg += g * g;
		b += (v > 0 ? v : 0) - v * g + log1p(exp(-fabs(v)));
	}
	double num = 2 * inter + sm, den = pp + gg + sm;
	double dl = 1.0 - num / den, bl = b / (double)n;
	if (dice)
		*dice = dl;
	if (bce)
		*bce = bl;
	if (dx)
		for (size_t i = 0; i < n; i++) {
			double v = x[i], g = gt[i], p = 1.0 / (1.0 + exp(-v));
			/* d(1 - num/den)/dp = -(2 g den - num 2 p) / den^2 */
			double dp = -(2 * g * den - num * 2 * p) / (den * den);
			dx[i] += (float)(scale * (dp * p * (1 - p) + (p - g) / (double)n));
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
mp_tr_attnbias_bwd(float *dqkv, const float *dout, const float *p, const float *qkv, int n, int d, int heads,
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
