/* sam_vitatt.c - the ViT image encoder's attention on the CPU (AVX2 + FMA,
 * chosen at run time), read straight from the rows of the qkv product in the
 * token grid's raster order and written straight into the output rows, so
 * that no window partition, padding or unpartition copy is made (see
 * mp_sam_vitatt in sam_ld.h).
 *
 * Per (window, head): K and V (bias added; padded tokens of the window are
 * the bias alone, as in the official model, whose padding is zeros before
 * the qkv layer) are packed once: K in panels of 16 keys (hd x 16), V row by
 * row. Per block of queries (the real tokens of a window only: the padded
 * queries' outputs are dropped by the official model): Q (bias added) is
 * packed; the relative-position products Q Rh^T and Q Rw^T and the scores
 * scale Q K^T come from one register-tiled kernel (6 queries x 16 keys);
 * the decomposed relative positions are added and the row maximum taken in
 * one pass, exp and the row sum in a second; P V comes from a second kernel
 * (6 queries x 16 channels) and is divided by the row sums on the way out.
 * Blocks of queries and windows run on the backend's threads. */
#include "sam_ld.h"
#include "mp.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VA_AVX2 1
#endif

#define QT 6      /* query rows of a kernel tile */
#define GBQ 48    /* queries per block of global attention */
#define PVJ 128   /* keys per step of the P V kernel */

static size_t
up(size_t n, size_t m)
{
	return (n + m - 1) / m * m;
}

typedef struct {
	const mp_sam_vitatt *a;
	int g, nwx, nk, nkp, L, Lp, nqb, nqt;
	size_t kvsz, wsz;
	float *RhP, *RwP;      /* the position tables in panels (Rw reversed) */
	float *kv;             /* global: K panels and V of every head */
	float *ws[64];         /* per thread */
	int wide;              /* AVX-512F: tiles_qk16, tiles_pv16 */
} va_ctx;

/* the grid row of key/query t of window b, or -1 for padding */
static long
tok(const va_ctx *c, int b, int t)
{
	int g = c->g, G = c->a->G;
	int gy = b / c->nwx * g + t / g, gx = b % c->nwx * g + t % g;
	return gy < G && gx < G ? (long)gy * G + gx : -1;
}

#ifdef VA_AVX2
/* S[i][p*16 + j] = scale * sum_d Q[i][d] B[p][d][j] for the nqt*6 rows of Q
 * (row stride hd) and np panels of B (hd x 16 each) */
__attribute__((target("avx2,fma"))) static void
tiles_qk(const float *Q, int nqt, int hd, const float *B, int np, float scale, float *S, size_t lds)
{
	__m256 sc = _mm256_set1_ps(scale);

	for (int p = 0; p < np; p++) {
		const float *bp = B + (size_t)p * hd * 16;
		for (int t = 0; t < nqt; t++) {
			const float *q = Q + (size_t)t * QT * hd;
			__m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
			__m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
			for (int d = 0; d < hd; d++) {
				__m256 b0 = _mm256_loadu_ps(bp + d * 16), b1 = _mm256_loadu_ps(bp + d * 16 + 8), x;
				x = _mm256_broadcast_ss(q + d);
				c00 = _mm256_fmadd_ps(x, b0, c00);
				c01 = _mm256_fmadd_ps(x, b1, c01);
				x = _mm256_broadcast_ss(q + hd + d);
				c10 = _mm256_fmadd_ps(x, b0, c10);
				c11 = _mm256_fmadd_ps(x, b1, c11);
				x = _mm256_broadcast_ss(q + 2 * hd + d);
				c20 = _mm256_fmadd_ps(x, b0, c20);
				c21 = _mm256_fmadd_ps(x, b1, c21);
				x = _mm256_broadcast_ss(q + 3 * hd + d);
				c30 = _mm256_fmadd_ps(x, b0, c30);
				c31 = _mm256_fmadd_ps(x, b1, c31);
				x = _mm256_broadcast_ss(q + 4 * hd + d);
				c40 = _mm256_fmadd_ps(x, b0, c40);
				c41 = _mm256_fmadd_ps(x, b1, c41);
				x = _mm256_broadcast_ss(q + 5 * hd + d);
				c50 = _mm256_fmadd_ps(x, b0, c50);
				c51 = _mm256_fmadd_ps(x, b1, c51);
			}
			float *s = S + (size_t)t * QT * lds + (size_t)p * 16;
			_mm256_storeu_ps(s, _mm256_mul_ps(c00, sc));
			_mm256_storeu_ps(s + 8, _mm256_mul_ps(c01, sc));
			s += lds;
			_mm256_storeu_ps(s, _mm256_mul_ps(c10, sc));
			_mm256_storeu_ps(s + 8, _mm256_mul_ps(c11, sc));
			s += lds;
			_mm256_storeu_ps(s, _mm256_mul_ps(c20, sc));
			_mm256_storeu_ps(s + 8, _mm256_mul_ps(c21, sc));
			s += lds;
			_mm256_storeu_ps(s, _mm256_mul_ps(c30, sc));
			_mm256_storeu_ps(s + 8, _mm256_mul_ps(c31, sc));
			s += lds;
			_mm256_storeu_ps(s, _mm256_mul_ps(c40, sc));
			_mm256_storeu_ps(s + 8, _mm256_mul_ps(c41, sc));
			s += lds;
			_mm256_storeu_ps(s, _mm256_mul_ps(c50, sc));
			_mm256_storeu_ps(s + 8, _mm256_mul_ps(c51, sc));
		}
	}
}

/* A[i][c] += sum_{j < nk} P[i][j] V[j][c] for the nqt*6 rows of P (stride
 * ldp) and A (stride hd), V nk x hd, hd a multiple of 16 */
__attribute__((target("avx2,fma"))) static void
tiles_pv(const float *P, size_t ldp, int nqt, const float *V, int nk, int hd, float *A)
{
	for (int j0 = 0; j0 < nk; j0 += PVJ) {
		int j1 = j0 + PVJ < nk ? j0 + PVJ : nk;
		for (int cc = 0; cc < hd; cc += 16)
			for (int t = 0; t < nqt; t++) {
				const float *p = P + (size_t)t * QT * ldp;
				float *a = A + (size_t)t * QT * hd + cc;
				__m256 c00 = _mm256_loadu_ps(a), c01 = _mm256_loadu_ps(a + 8);
				__m256 c10 = _mm256_loadu_ps(a + hd), c11 = _mm256_loadu_ps(a + hd + 8);
				__m256 c20 = _mm256_loadu_ps(a + 2 * hd), c21 = _mm256_loadu_ps(a + 2 * hd + 8);
				__m256 c30 = _mm256_loadu_ps(a + 3 * hd), c31 = _mm256_loadu_ps(a + 3 * hd + 8);
				__m256 c40 = _mm256_loadu_ps(a + 4 * hd), c41 = _mm256_loadu_ps(a + 4 * hd + 8);
				__m256 c50 = _mm256_loadu_ps(a + 5 * hd), c51 = _mm256_loadu_ps(a + 5 * hd + 8);
				for (int j = j0; j < j1; j++) {
					const float *v = V + (size_t)j * hd + cc;
					__m256 b0 = _mm256_loadu_ps(v), b1 = _mm256_loadu_ps(v + 8), x;
					x = _mm256_broadcast_ss(p + j);
					c00 = _mm256_fmadd_ps(x, b0, c00);
					c01 = _mm256_fmadd_ps(x, b1, c01);
					x = _mm256_broadcast_ss(p + ldp + j);
					c10 = _mm256_fmadd_ps(x, b0, c10);
					c11 = _mm256_fmadd_ps(x, b1, c11);
					x = _mm256_broadcast_ss(p + 2 * ldp + j);
					c20 = _mm256_fmadd_ps(x, b0, c20);
					c21 = _mm256_fmadd_ps(x, b1, c21);
					x = _mm256_broadcast_ss(p + 3 * ldp + j);
					c30 = _mm256_fmadd_ps(x, b0, c30);
					c31 = _mm256_fmadd_ps(x, b1, c31);
					x = _mm256_broadcast_ss(p + 4 * ldp + j);
					c40 = _mm256_fmadd_ps(x, b0, c40);
					c41 = _mm256_fmadd_ps(x, b1, c41);
					x = _mm256_broadcast_ss(p + 5 * ldp + j);
					c50 = _mm256_fmadd_ps(x, b0, c50);
					c51 = _mm256_fmadd_ps(x, b1, c51);
				}
				_mm256_storeu_ps(a, c00);
				_mm256_storeu_ps(a + 8, c01);
				_mm256_storeu_ps(a + hd, c10);
				_mm256_storeu_ps(a + hd + 8, c11);
				_mm256_storeu_ps(a + 2 * hd, c20);
				_mm256_storeu_ps(a + 2 * hd + 8, c21);
				_mm256_storeu_ps(a + 3 * hd, c30);
				_mm256_storeu_ps(a + 3 * hd + 8, c31);
				_mm256_storeu_ps(a + 4 * hd, c40);
				_mm256_storeu_ps(a + 4 * hd + 8, c41);
				_mm256_storeu_ps(a + 5 * hd, c50);
				_mm256_storeu_ps(a + 5 * hd + 8, c51);
			}
	}
}

/* The same two kernels with 16-float registers (AVX-512F), chosen at run
 * time where the CPU has it (va_ctx.wide): tiles_qk on two panels of 16
 * keys at once, tiles_pv on 32 channels at once (hd a multiple of 32), the
 * last panel or the last 16 channels alone; 12 accumulators of 16 floats.
 * The sums are made in the same order as above (d, then j, ascending), so
 * the results are the same to the bit. The loops over the 6 rows are
 * unrolled so that the accumulators stay in registers. */
/* the micro-kernel of both: c[r][h] += sum_{k0 <= k < k1} x[r ldx + k]
 * b[k ldb + h off] for the QT rows, h < 2 (two) or h = 0 */
__attribute__((target("avx512f"), always_inline)) static inline void
fma_rows16(__m512 c[QT][2], const float *x, size_t ldx, const float *b, size_t ldb, size_t off, int k0, int k1,
           int two)
{
	if (two)
		for (int k = k0; k < k1; k++) {
			__m512 b0 = _mm512_loadu_ps(b + (size_t)k * ldb), b1 = _mm512_loadu_ps(b + (size_t)k * ldb + off);
#pragma GCC unroll 6
			for (int r = 0; r < QT; r++) {
				__m512 v = _mm512_set1_ps(x[(size_t)r * ldx + k]);
				c[r][0] = _mm512_fmadd_ps(v, b0, c[r][0]);
				c[r][1] = _mm512_fmadd_ps(v, b1, c[r][1]);
			}
		}
	else
		for (int k = k0; k < k1; k++) {
			__m512 b0 = _mm512_loadu_ps(b + (size_t)k * ldb);
#pragma GCC unroll 6
			for (int r = 0; r < QT; r++)
				c[r][0] = _mm512_fmadd_ps(_mm512_set1_ps(x[(size_t)r * ldx + k]), b0, c[r][0]);
		}
}

__attribute__((target("avx512f"))) static void
tiles_qk16(const float *Q, int nqt, int hd, const float *B, int np, float scale, float *S, size_t lds)
{
	__m512 sc = _mm512_set1_ps(scale);

	for (int p = 0; p < np; p += 2) {
		int two = p + 1 < np;
		for (int t = 0; t < nqt; t++) {
			__m512 c[QT][2];
#pragma GCC unroll 6
			for (int r = 0; r < QT; r++)
				c[r][0] = c[r][1] = _mm512_setzero_ps();
			fma_rows16(c, Q + (size_t)t * QT * hd, (size_t)hd, B + (size_t)p * hd * 16, 16, (size_t)hd * 16, 0, hd, two);
			float *s = S + (size_t)t * QT * lds + (size_t)p * 16;
#pragma GCC unroll 6
			for (int r = 0; r < QT; r++, s += lds) {
				_mm512_storeu_ps(s, _mm512_mul_ps(c[r][0], sc));
				if (two)
					_mm512_storeu_ps(s + 16, _mm512_mul_ps(c[r][1], sc));
			}
		}
	}
}

__attribute__((target("avx512f"))) static void
tiles_pv16(const float *P, size_t ldp, int nqt, const float *V, int nk, int hd, float *A)
{
	for (int j0 = 0; j0 < nk; j0 += PVJ) {
		int j1 = j0 + PVJ < nk ? j0 + PVJ : nk;
		for (int cc = 0; cc < hd; cc += 32) {
			int two = cc + 32 <= hd;
			for (int t = 0; t < nqt; t++) {
				float *a = A + (size_t)t * QT * hd + cc;
				__m512 c[QT][2];
#pragma GCC unroll 6
				for (int r = 0; r < QT; r++) {
					c[r][0] = _mm512_loadu_ps(a + (size_t)r * hd);
					c[r][1] = two ? _mm512_loadu_ps(a + (size_t)r * hd + 16) : c[r][0];
				}
				fma_rows16(c, P + (size_t)t * QT * ldp, ldp, V + cc, (size_t)hd, 16, j0, j1, two);
#pragma GCC unroll 6
				for (int r = 0; r < QT; r++) {
					_mm512_storeu_ps(a + (size_t)r * hd, c[r][0]);
					if (two)
						_mm512_storeu_ps(a + (size_t)r * hd + 16, c[r][1]);
				}
			}
		}
	}
}

/* s[kh*g + kw] += h[g-1-kh] + w[kw] for kh, kw < g (h: the row's products
 * with Rh from index qh, w: with the reversed Rw from index g-1-qw);
 * returns the maximum of s */
__attribute__((target("avx2,fma"))) static float
relpos_max(float *s, int g, const float *h, const float *w)
{
	__m256 mx = _mm256_set1_ps(-3.0e38f);
	float m = -3.0e38f;
	int g8 = g / 8 * 8;

	for (int kh = 0; kh < g; kh++) {
		float hv = h[g - 1 - kh];
		__m256 vh = _mm256_set1_ps(hv);
		float *r = s + (size_t)kh * g;
		int kw = 0;
		for (; kw < g8; kw += 8) {
			__m256 x = _mm256_add_ps(_mm256_loadu_ps(r + kw), _mm256_add_ps(vh, _mm256_loadu_ps(w + kw)));
			_mm256_storeu_ps(r + kw, x);
			mx = _mm256_max_ps(mx, x);
		}
		for (; kw < g; kw++) {
			r[kw] += hv + w[kw];
			m = r[kw] > m ? r[kw] : m;
		}
	}
	float t[8];
	_mm256_storeu_ps(t, mx);
	for (int i = 0; i < 8; i++)
		m = t[i] > m ? t[i] : m;
	return m;
}

/* o[c] = a[c] * f, n a multiple of 8 */
__attribute__((target("avx2,fma"))) static void
scale_out(float *o, const float *a, float f, int n)
{
	__m256 vf = _mm256_set1_ps(f);
	for (int c = 0; c < n; c += 8)
		_mm256_storeu_ps(o + c, _mm256_mul_ps(_mm256_loadu_ps(a + c), vf));
}

/* y[c] = x[c] + b[c] (x NULL: b), n a multiple of 8 */
__attribute__((target("avx2,fma"))) static void
addb(float *y, const float *x, const float *b, int n)
{
	for (int c = 0; c < n; c += 8)
		_mm256_storeu_ps(y + c, x ? _mm256_add_ps(_mm256_loadu_ps(x + c), _mm256_loadu_ps(b + c)) : _mm256_loadu_ps(b + c));
}

/* K of (window b, head h) in panels of 16 keys, V row by row */
__attribute__((target("avx2,fma"))) static void
pack_kv(const va_ctx *c, int b, int h, float *Kp, float *Vp)
{
	const mp_sam_vitatt *a = c->a;
	int hd = a->hd, E = a->heads * hd;
	const float *bk = a->bqkv + E + (size_t)h * hd, *bv = a->bqkv + 2 * E + (size_t)h * hd;

	for (int j = 0; j < c->nkp; j++) {
		float *kp = Kp + (size_t)(j / 16) * hd * 16 + j % 16;
		if (j >= c->nk) {
			for (int d = 0; d < hd; d++)
				kp[d * 16] = 0;
			continue;
		}
		long r = tok(c, b, j);
		const float *k = r < 0 ? NULL : a->qkv + (size_t)r * a->ld + E + (size_t)h * hd;
		for (int d = 0; d < hd; d++)
			kp[d * 16] = k ? k[d] + bk[d] : bk[d];
		addb(Vp + (size_t)j * hd, r < 0 ? NULL : k + E, bv, hd);
	}
}

/* the table R ((2g-1) x hd) in panels of 16 rows, reversed when rev */
static void
pack_rel(const float *R, int L, int Lp, int hd, int rev, float *P)
{
	for (int i = 0; i < Lp; i++) {
		float *p = P + (size_t)(i / 16) * hd * 16 + i % 16;
		const float *r = i < L ? R + (size_t)(rev ? L - 1 - i : i) * hd : NULL;
		for (int d = 0; d < hd; d++)
			p[d * 16] = r ? r[d] : 0.0f;
	}
}

static void
pack_task(void *vc, size_t i, int tid)
{
	va_ctx *c = vc;
	float *Kp = c->kv + i * c->kvsz;

	(void)tid;
	pack_kv(c, 0, (int)i, Kp, Kp + (size_t)c->nkp * c->a->hd);
}

/* one task: a block of queries of (window b, head h) */
__attribute__((target("avx2,fma"))) static void
att_task(void *vc, size_t task, int tid)
{
	va_ctx *c = vc;
	const mp_sam_vitatt *a = c->a;
	int hd = a->hd, g = c->g, nk = c->nk, nkp = c->nkp, Lp = c->Lp;
	int qb = (int)(task % (size_t)c->nqb), h = (int)(task / (size_t)c->nqb % (size_t)a->heads);
	int b = (int)(task / (size_t)c->nqb / (size_t)a->heads);
	int bq = c->nqt * QT, nqt;
	float *w = c->ws[tid];
	float *Q = w, *RH = Q + (size_t)bq * hd, *RW = RH + (size_t)bq * Lp, *S = RW + (size_t)bq * Lp;
	float *A = S + (size_t)bq * nkp, *Kp, *Vp;
	long *rows = (long *)(void *)(A + (size_t)bq * hd);
	int *qi = (int *)(rows + bq);
	const float *bq_ = a->bqkv + (size_t)h * hd;
	double pt = mp_sam_prof_thread();

	if (c->kv) {
		Kp = c->kv + (size_t)h * c->kvsz;
		Vp = Kp + (size_t)nkp * hd;
	} else {
		Kp = (float *)(void *)(qi + bq) + bq;
		Vp = Kp + (size_t)nkp * hd;
		pack_kv(c, b, h, Kp, Vp);
	}
	/* the block's real queries */
	int n = 0;
	for (int t = qb * bq; t < nk && n < bq; t++) {
		long r = tok(c, b, t);
		if (r < 0)
			continue;
		rows[n] = r;
		qi[n++] = t;
	}
	nqt = (n + QT - 1) / QT;
	for (int i = 0; i < nqt * QT; i++) {
		if (i < n)
			addb(Q + (size_t)i * hd, a->qkv + (size_t)rows[i] * a->ld + (size_t)h * hd, bq_, hd);
		else
			memset(Q + (size_t)i * hd, 0, (size_t)hd * sizeof(float));
	}
	mp_sam_prof_tadd(tid, MP_SP_QKP, &pt);
	void (*qk)(const float *, int, int, const float *, int, float, float *, size_t) = c->wide ? tiles_qk16 : tiles_qk;
	qk(Q, nqt, hd, c->RhP, Lp / 16, 1.0f, RH, (size_t)Lp);
	qk(Q, nqt, hd, c->RwP, Lp / 16, 1.0f, RW, (size_t)Lp);
	mp_sam_prof_tadd(tid, MP_SP_RP, &pt);
	qk(Q, nqt, hd, Kp, nkp / 16, a->scale, S, (size_t)nkp);
	mp_sam_prof_tadd(tid, MP_SP_QK, &pt);
	float *inv = (float *)(void *)(qi + bq);
	for (int i = 0; i < n; i++) {
		int qh = qi[i] / g, qw = qi[i] % g;
		float *s = S + (size_t)i * nkp;
		float mx = relpos_max(s, g, RH + (size_t)i * Lp + qh, RW + (size_t)i * Lp + (g - 1 - qw));
		inv[i] = 1.0f / mp_sam_cpu_exp_row(s, (size_t)nk, mx);
	}
	mp_sam_prof_tadd(tid, MP_SP_SM, &pt);
	memset(A, 0, (size_t)nqt * QT * hd * sizeof(float));
	(c->wide ? tiles_pv16 : tiles_pv)(S, (size_t)nkp, nqt, Vp, nk, hd, A);
	for (int i = 0; i < n; i++)
		scale_out(a->o + (size_t)rows[i] * a->ldo + (size_t)h * hd, A + (size_t)i * hd, inv[i], hd);
	mp_sam_prof_tadd(tid, MP_SP_AV, &pt);
}
#endif

int
mp_sam_vitatt_ok(int hd, int g)
{
#ifdef VA_AVX2
	return mp_sam_cpu_avx2() && hd % 16 == 0 && hd <= 1024 && g >= 1 && g <= 1024;
#else
	(void)hd;
	(void)g;
	return 0;
#endif
}

void
mp_sam_vitatt_run(const mp_sam_vitatt *a)
{
#ifdef VA_AVX2
	va_ctx c;
	int hd = a->hd;

	memset(&c, 0, sizeof c);
	c.a = a;
	c.wide = mp_sam_cpu_avx512();
	c.g = a->w ? a->w : a->G;
	c.nwx = a->w ? (a->G + a->w - 1) / a->w : 1;
	c.nk = c.g * c.g;
	c.nkp = (int)up((size_t)c.nk, 16);
	c.L = 2 * c.g - 1;
	c.Lp = (int)up((size_t)c.L, 16);
	/* global: blocks of GBQ queries, K and V packed once per head; windows:
	 * a window's queries at once, K and V packed in the task */
	int bq = a->w ? (int)up((size_t)c.nk, QT) : GBQ;
	c.nqt = bq / QT;
	c.nqb = (c.nk + bq - 1) / bq;
	c.kvsz = (size_t)(c.nkp + c.nk) * hd;
	c.wsz = (size_t)bq * (hd + 2 * (size_t)c.Lp + (size_t)c.nkp + hd + 1) + (size_t)bq * (sizeof(long) + sizeof(int)) / 4 +
	        (a->w ? c.kvsz : 0) + 16;
	c.RhP = mp_xmalloc((size_t)c.Lp * hd * 2 * sizeof(float));
	c.RwP = c.RhP + (size_t)c.Lp * hd;
	pack_rel(a->rph, c.L, c.Lp, hd, 0, c.RhP);
	pack_rel(a->rpw, c.L, c.Lp, hd, 1, c.RwP);
	int nt = mp_sam_threads();
	nt = nt > 64 ? 64 : nt < 1 ? 1 : nt;
	for (int t = 0; t < nt; t++)
		c.ws[t] = mp_xmalloc(c.wsz * sizeof(float));
	if (!a->w) {
		c.kv = mp_xmalloc(c.kvsz * (size_t)a->heads * sizeof(float));
		mp_sam_cpu_parfor((size_t)a->heads, pack_task, &c);
	}
	size_t nb = (size_t)c.nwx * c.nwx;
	mp_sam_cpu_parfor(nb * (size_t)a->heads * (size_t)c.nqb, att_task, &c);
	for (int t = 0; t < nt; t++)
		free(c.ws[t]);
	free(c.kv);
	free(c.RhP);
#else
	(void)a;
#endif
}
