/* sam_cpu.c - the CPU backend of the SAM model: CBLAS (OpenBLAS) matrix
 * products, threaded attention, layer norms and GELU. */
#include "mp_sam.h"
#include "mp.h"
#include "sam_ld.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

static int nthr = 1;
/* set in the workers of mp_sam_cpu_parfor: the ops below stay on their thread */
static _Thread_local int inworker;

int
mp_sam_threads(void)
{
	return nthr;
}

/* ---------------------------------------------------------------- parallel for */
typedef struct {
	void (*fn)(void *ctx, size_t i, int tid);
	void *ctx;
	size_t n;
	size_t next;
	pthread_mutex_t mu;
	int tid;
} pfor;

typedef struct {
	pfor *p;
	int tid;
} pfor_arg;

static void *
pfor_run(void *arg)
{
	pfor_arg *a = arg;
	pfor *p = a->p;

	for (;;) {
		pthread_mutex_lock(&p->mu);
		size_t i = p->next++;
		pthread_mutex_unlock(&p->mu);
		if (i >= p->n)
			break;
		p->fn(p->ctx, i, a->tid);
	}
	return NULL;
}

static void
parfor(size_t n, void (*fn)(void *, size_t, int), void *ctx)
{
	int nt = nthr;
	pfor p = { fn, ctx, n, 0, PTHREAD_MUTEX_INITIALIZER, 0 };
	pthread_t th[64];
	pfor_arg args[64];
	int started = 0;

	if (nt > 64)
		nt = 64;
	if ((size_t)nt > n)
		nt = (int)n;
	if (inworker)
		nt = 1;
	for (int t = 1; t < nt; t++) {
		args[t].p = &p;
		args[t].tid = t;
		if (pthread_create(&th[t], NULL, pfor_run, &args[t]) != 0)
			break;
		started = t;
	}
	args[0].p = &p;
	args[0].tid = 0;
	pfor_run(&args[0]);
	for (int t = 1; t <= started; t++)
		pthread_join(th[t], NULL);
	pthread_mutex_destroy(&p.mu);
}

/* ---------------------------------------------------------------- fast exp / erf
 * exp: 2^n * p(r), r in [-ln2/2, ln2/2], degree-6 polynomial (rel. error
 * about 2e-7); written as plain loops that the compiler vectorises. */
static inline float
fexp(float x)
{
	x = x < -87.0f ? -87.0f : x;
	x = x > 88.0f ? 88.0f : x;
	/* round to nearest without a libm call (vectorisable) */
	float n = (x * 1.44269504089f + 12582912.0f) - 12582912.0f;
	float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
	float p = 1.0f / 720;
	p = p * r + 1.0f / 120;
	p = p * r + 1.0f / 24;
	p = p * r + 1.0f / 6;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	int32_t e = ((int32_t)n + 127) << 23;
	float s;
	memcpy(&s, &e, 4);
	return p * s;
}

/* Abramowitz & Stegun 7.1.26 refined: erf with |error| < 1.5e-7 */
static inline float
ferf(float x)
{
	float a = fabsf(x);
	float t = 1.0f / (1.0f + 0.3275911f * a);
	float y = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
	float r = 1.0f - y * fexp(-a * a);
	return x < 0 ? -r : r;
}

#ifdef __SSE2__
/* four lanes of fexp / ferf, the same formulas */
static inline __m128
vexp(__m128 x)
{
	x = _mm_min_ps(_mm_max_ps(x, _mm_set1_ps(-87.0f)), _mm_set1_ps(88.0f));
	__m128i ni = _mm_cvtps_epi32(_mm_mul_ps(x, _mm_set1_ps(1.44269504089f)));
	__m128 n = _mm_cvtepi32_ps(ni);
	__m128 r = _mm_sub_ps(_mm_sub_ps(x, _mm_mul_ps(n, _mm_set1_ps(0.693145751953125f))),
	                      _mm_mul_ps(n, _mm_set1_ps(1.428606765330187e-06f)));
	__m128 p = _mm_set1_ps(1.0f / 720);
	p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f / 120));
	p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f / 24));
	p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f / 6));
	p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(0.5f));
	p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f));
	p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f));
	__m128 sc = _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(ni, _mm_set1_epi32(127)), 23));
	return _mm_mul_ps(p, sc);
}

static inline __m128
vgelu(__m128 x)
{
	const __m128 sign = _mm_set1_ps(-0.0f);
	__m128 z = _mm_mul_ps(x, _mm_set1_ps(0.70710678118654752f));
	__m128 a = _mm_andnot_ps(sign, z);
	__m128 t = _mm_div_ps(_mm_set1_ps(1.0f), _mm_add_ps(_mm_set1_ps(1.0f), _mm_mul_ps(_mm_set1_ps(0.3275911f), a)));
	__m128 y = _mm_set1_ps(1.061405429f);
	y = _mm_add_ps(_mm_mul_ps(y, t), _mm_set1_ps(-1.453152027f));
	y = _mm_add_ps(_mm_mul_ps(y, t), _mm_set1_ps(1.421413741f));
	y = _mm_add_ps(_mm_mul_ps(y, t), _mm_set1_ps(-0.284496736f));
	y = _mm_add_ps(_mm_mul_ps(y, t), _mm_set1_ps(0.254829592f));
	y = _mm_mul_ps(y, t);
	__m128 e = _mm_sub_ps(_mm_set1_ps(1.0f), _mm_mul_ps(y, vexp(_mm_sub_ps(_mm_setzero_ps(), _mm_mul_ps(a, a)))));
	e = _mm_or_ps(e, _mm_and_ps(sign, z));
	return _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(0.5f), x), _mm_add_ps(_mm_set1_ps(1.0f), e));
}
#endif

#ifdef HAVE_AVX2_PATH
/* eight lanes of vexp / vgelu with fused multiply-adds, for CPUs with AVX2
 * and FMA (chosen at run time): the same polynomials, rounded once per step */
__attribute__((target("avx2,fma"))) static inline __m256
vexp8(__m256 x)
{
	x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
	__m256i ni = _mm256_cvtps_epi32(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)));
	__m256 n = _mm256_cvtepi32_ps(ni);
	__m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
	__m256 p = _mm256_set1_ps(1.0f / 720);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
	__m256 sc = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
	return _mm256_mul_ps(p, sc);
}

__attribute__((target("avx2,fma"))) static inline __m256
vgelu8(__m256 v)
{
	const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
	__m256 z = _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f));
	__m256 a = _mm256_andnot_ps(sign, z);
	__m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a, one));
	__m256 y = _mm256_set1_ps(1.061405429f);
	y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(-1.453152027f));
	y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(1.421413741f));
	y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(-0.284496736f));
	y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(0.254829592f));
	y = _mm256_mul_ps(y, t);
	__m256 e = _mm256_fnmadd_ps(y, vexp8(_mm256_mul_ps(_mm256_xor_ps(a, sign), a)), one);
	e = _mm256_or_ps(e, _mm256_and_ps(sign, z));
	return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), _mm256_add_ps(one, e));
}

/* rows of d values: x = gelu(x + b) (b NULL: none); d a multiple of 8 */
__attribute__((target("avx2,fma"))) static void
bias_gelu8(float *x, size_t rows, size_t d, const float *b)
{
	for (size_t r = 0; r < rows; r++, x += d)
		for (size_t i = 0; i < d; i += 8) {
			__m256 v = _mm256_loadu_ps(x + i);
			if (b)
				v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
			_mm256_storeu_ps(x + i, vgelu8(v));
		}
}

__attribute__((target("avx2,fma"))) static void
gelu8(float *x, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(x + i, vgelu8(_mm256_loadu_ps(x + i)));
	for (; i < n; i++)
		x[i] = 0.5f * x[i] * (1.0f + ferf(x[i] * 0.70710678118654752f));
}

static int avx2, avx512;   /* set by mp_sam_cpu_backend */
#define have_avx2() avx2

/* x[i] = exp(x[i] - sub[i]), acc[i] += it, for the first n/8*8; returns that count */
__attribute__((target("avx2,fma"))) static size_t
expsub8(float *x, const float *sub, float *acc, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 e = vexp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(sub + i)));
		_mm256_storeu_ps(x + i, e);
		_mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), e));
	}
	return i;
}

__attribute__((target("avx2,fma"))) static inline float
hsum8(__m256 v)
{
	float t[8];
	_mm256_storeu_ps(t, v);
	return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

/* one row of the layer norm */
__attribute__((target("avx2,fma"))) static void
ln_row8(float *y, const float *x, size_t d, const float *w, const float *b, float eps)
{
	size_t i = 0;
	__m256 a = _mm256_setzero_ps();
	for (; i + 8 <= d; i += 8)
		a = _mm256_add_ps(a, _mm256_loadu_ps(x + i));
	float s = hsum8(a);
	for (; i < d; i++)
		s += x[i];
	float mean = s / (float)d;
	__m256 vm = _mm256_set1_ps(mean);
	a = _mm256_setzero_ps();
	for (i = 0; i + 8 <= d; i += 8) {
		__m256 u = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
		a = _mm256_fmadd_ps(u, u, a);
	}
	float s2 = hsum8(a);
	for (; i < d; i++)
		s2 += (x[i] - mean) * (x[i] - mean);
	float inv = 1.0f / sqrtf(s2 / (float)d + eps);
	__m256 vi = _mm256_set1_ps(inv);
	for (i = 0; i + 8 <= d; i += 8) {
		__m256 u = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vi);
		_mm256_storeu_ps(y + i, _mm256_fmadd_ps(u, _mm256_loadu_ps(w + i), _mm256_loadu_ps(b + i)));
	}
	for (; i < d; i++)
		y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

__attribute__((target("avx2,fma"))) static void
add8(float *d, const float *a, const float *b, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(d + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
	for (; i < n; i++)
		d[i] = a[i] + b[i];
}

/* exp(r[j] - mx) for j < n, in place; returns the sum of the first n/8*8 */
__attribute__((target("avx2,fma"))) static float
expsum8(float *r, int n, float mx)
{
	__m256 vm = _mm256_set1_ps(mx), vs = _mm256_setzero_ps();
	for (int j = 0; j + 8 <= n; j += 8) {
		__m256 e = vexp8(_mm256_sub_ps(_mm256_loadu_ps(r + j), vm));
		_mm256_storeu_ps(r + j, e);
		vs = _mm256_add_ps(vs, e);
	}
	float t[8];
	_mm256_storeu_ps(t, vs);
	return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}
#endif

/* softmax of one row in place */
static void
softmax_row(float *r, int n)
{
	int j = 0;
	float mx = r[0], sum = 0;
#ifdef __SSE2__
	if (n >= 8) {
		__m128 m = _mm_loadu_ps(r);
		for (j = 4; j + 4 <= n; j += 4)
			m = _mm_max_ps(m, _mm_loadu_ps(r + j));
		float t[4];
		_mm_storeu_ps(t, m);
		mx = t[0];
		for (int k = 1; k < 4; k++)
			mx = t[k] > mx ? t[k] : mx;
	}
#endif
	for (; j < n; j++)
		mx = r[j] > mx ? r[j] : mx;
	j = 0;
#ifdef HAVE_AVX2_PATH
	if (have_avx2()) {
		sum = expsum8(r, n, mx);
		j = n / 8 * 8;
	} else
#endif
#ifdef __SSE2__
	{
		__m128 vm = _mm_set1_ps(mx), vs = _mm_setzero_ps();
		for (; j + 4 <= n; j += 4) {
			__m128 e = vexp(_mm_sub_ps(_mm_loadu_ps(r + j), vm));
			_mm_storeu_ps(r + j, e);
			vs = _mm_add_ps(vs, e);
		}
		float t[4];
		_mm_storeu_ps(t, vs);
		sum = (t[0] + t[1]) + (t[2] + t[3]);
	}
#endif
	for (; j < n; j++) {
		r[j] = fexp(r[j] - mx);
		sum += r[j];
	}
	float inv = 1.0f / sum;
	for (j = 0; j < n; j++)
		r[j] *= inv;
}

int
mp_sam_cpu_avx512(void)
{
#ifdef HAVE_AVX2_PATH
	return avx512;
#else
	return 0;
#endif
}

int
mp_sam_cpu_avx2(void)
{
#ifdef HAVE_AVX2_PATH
	return have_avx2();
#else
	return 0;
#endif
}

float
mp_sam_cpu_exp_row(float *r, size_t n, float mx)
{
	size_t j = 0;
	float sum = 0;
#ifdef HAVE_AVX2_PATH
	if (have_avx2()) {
		sum = expsum8(r, (int)n, mx);
		j = n / 8 * 8;
	}
#endif
	for (; j < n; j++) {
		r[j] = fexp(r[j] - mx);
		sum += r[j];
	}
	return sum;
}

/* ---------------------------------------------------------------- ops */
static void
cpu_gemm(void *ctx, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
         const float *b, int ldb, float beta, float *c, int ldc)
{
	(void)ctx;
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
	            m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

typedef struct {
	float *y;
	const float *x, *w, *b;
	size_t rows, d;
	float eps;
} ln_ctx;

static void
ln_rows(void *vc, size_t chunk, int tid)
{
	ln_ctx *c = vc;
	size_t r0 = chunk * 64, r1 = r0 + 64 < c->rows ? r0 + 64 : c->rows;

	(void)tid;
#ifdef HAVE_AVX2_PATH
	if (have_avx2()) {
		for (size_t r = r0; r < r1; r++)
			ln_row8(c->y + r * c->d, c->x + r * c->d, c->d, c->w, c->b, c->eps);
		return;
	}
#endif
	for (size_t r = r0; r < r1; r++) {
		const float *x = c->x + r * c->d;
		float *y = c->y + r * c->d;
		size_t d = c->d, i = 0;
		float s = 0, s2 = 0;
#ifdef __SSE2__
		__m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps();
		for (; i + 8 <= d; i += 8) {
			a0 = _mm_add_ps(a0, _mm_loadu_ps(x + i));
			a1 = _mm_add_ps(a1, _mm_loadu_ps(x + i + 4));
		}
		float t4[4];
		_mm_storeu_ps(t4, _mm_add_ps(a0, a1));
		s = (t4[0] + t4[1]) + (t4[2] + t4[3]);
#endif
		for (; i < d; i++)
			s += x[i];
		float mean = s / (float)d;
		i = 0;
#ifdef __SSE2__
		__m128 vm = _mm_set1_ps(mean);
		a0 = _mm_setzero_ps();
		a1 = _mm_setzero_ps();
		for (; i + 8 <= d; i += 8) {
			__m128 u = _mm_sub_ps(_mm_loadu_ps(x + i), vm), v = _mm_sub_ps(_mm_loadu_ps(x + i + 4), vm);
			a0 = _mm_add_ps(a0, _mm_mul_ps(u, u));
			a1 = _mm_add_ps(a1, _mm_mul_ps(v, v));
		}
		_mm_storeu_ps(t4, _mm_add_ps(a0, a1));
		s2 = (t4[0] + t4[1]) + (t4[2] + t4[3]);
#endif
		for (; i < d; i++)
			s2 += (x[i] - mean) * (x[i] - mean);
		float inv = 1.0f / sqrtf(s2 / (float)d + c->eps);
		for (i = 0; i < d; i++)
			y[i] = (x[i] - mean) * inv * c->w[i] + c->b[i];
	}
}

static void
cpu_layernorm(void *ctx, float *y, const float *x, size_t rows, size_t d, const float *w,
              const float *b, float eps)
{
	ln_ctx c = { y, x, w, b, rows, d, eps };

	(void)ctx;
	if (rows * d < 65536) {
		for (size_t i = 0; i < (rows + 63) / 64; i++)
			ln_rows(&c, i, 0);
	} else
		parfor((rows + 63) / 64, ln_rows, &c);
}

typedef struct {
	float *x;
	size_t n;
} gelu_ctx;

#define GELU_CHUNK 16384
static void
gelu_chunk(void *vc, size_t chunk, int tid)
{
	gelu_ctx *c = vc;
	size_t i0 = chunk * GELU_CHUNK, i1 = i0 + GELU_CHUNK < c->n ? i0 + GELU_CHUNK : c->n;
	float *x = c->x;

	(void)tid;
#ifdef HAVE_AVX2_PATH
	if (have_avx2()) {
		gelu8(x + i0, i1 - i0);
		return;
	}
#endif
#ifdef __SSE2__
	for (; i0 + 4 <= i1; i0 += 4)
		_mm_storeu_ps(x + i0, vgelu(_mm_loadu_ps(x + i0)));
#endif
	for (size_t i = i0; i < i1; i++)
		x[i] = 0.5f * x[i] * (1.0f + ferf(x[i] * 0.70710678118654752f));
}

static void
cpu_gelu(void *ctx, float *x, size_t n)
{
	gelu_ctx c = { x, n };

	(void)ctx;
	if (n < GELU_CHUNK * 2) {
		for (size_t i = 0; i < (n + GELU_CHUNK - 1) / GELU_CHUNK; i++)
			gelu_chunk(&c, i, 0);
	} else
		parfor((n + GELU_CHUNK - 1) / GELU_CHUNK, gelu_chunk, &c);
}

/* attention: tasks over (batch, head, block of query rows) */
#define ATT_BQ 64
typedef struct {
	const mp_sam_attn *a;
	int nqb;
	float *ws[64];           /* per thread: ATT_BQ x nk scores + rel pos */
} att_ctx;

static void
att_task(void *vc, size_t task, int tid)
{
	att_ctx *c = vc;
	const mp_sam_attn *a = c->a;
	int qb = (int)(task % (size_t)c->nqb);
	int h = (int)(task / (size_t)c->nqb % (size_t)a->heads);
	int b = (int)(task / (size_t)c->nqb / (size_t)a->heads);
	int i0 = qb * ATT_BQ, nq = a->nq - i0 < ATT_BQ ? a->nq - i0 : ATT_BQ;
	const float *q = a->q + (size_t)b * a->bsq + (size_t)i0 * a->ldq + (size_t)h * a->hd;
	const float *k = a->k + (size_t)b * a->bsk + (size_t)h * a->hd;
	const float *v = a->v + (size_t)b * a->bsv + (size_t)h * a->hd;
	float *o = a->o + (size_t)b * a->bso + (size_t)i0 * a->ldo + (size_t)h * a->hd;
	float *S = c->ws[tid];
	int nk = a->nk, hd = a->hd;
	double pt = mp_sam_prof_thread();

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, a->scale, q, a->ldq, k, a->ldk,
	            0.0f, S, nk);
	mp_sam_prof_tadd(tid, MP_SP_QK, &pt);
	if (a->rph) {
		/* every q . R[r] by two products, then picked per query */
		int lh = 2 * a->gh - 1, lw = 2 * a->gw - 1;
		float *ch = S + (size_t)ATT_BQ * nk, *cw = ch + (size_t)ATT_BQ * lh;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, lh, hd, 1.0f, q, a->ldq, a->rph, hd, 0.0f, ch, lh);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, lw, hd, 1.0f, q, a->ldq, a->rpw, hd, 0.0f, cw, lw);
		for (int i = 0; i < nq; i++) {
			int qi = i0 + i, qh = qi / a->gw, qw = qi % a->gw;
			const float *rh = ch + (size_t)i * lh + qh + a->gh - 1, *rw = cw + (size_t)i * lw + qw + a->gw - 1;
			float *Sr = S + (size_t)i * nk;
			for (int kh = 0; kh < a->gh; kh++) {
				float h = rh[-kh];
				float *Srow = Sr + kh * a->gw;
				for (int kw = 0; kw < a->gw; kw++)
					Srow[kw] += h + rw[-kw];
			}
		}
	}
	mp_sam_prof_tadd(tid, MP_SP_RP, &pt);
	if (a->bias)
		for (int i = 0; i < nq; i++) {
			const float *br = a->bias + ((size_t)h * a->nq + (size_t)(i0 + i)) * nk;
			float *Sr = S + (size_t)i * nk;
			for (int j = 0; j < nk; j++)
				Sr[j] += br[j];
		}
	for (int i = 0; i < nq; i++)
		softmax_row(S + (size_t)i * nk, nk);
	mp_sam_prof_tadd(tid, MP_SP_SM, &pt);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, S, nk, v, a->ldv, 0.0f, o,
	            a->ldo);
	mp_sam_prof_tadd(tid, MP_SP_AV, &pt);
}

static void
cpu_attention(void *ctx, const mp_sam_attn *a)
{
	att_ctx c;
	int nt = nthr > 64 ? 64 : nthr;
	size_t ws = (size_t)ATT_BQ * ((size_t)a->nk + 2 * (size_t)a->gh + 2 * (size_t)a->gw) + 16;

	(void)ctx;
	memset(&c, 0, sizeof c);
	c.a = a;
	c.nqb = (a->nq + ATT_BQ - 1) / ATT_BQ;
	size_t ntask = (size_t)a->nb * (size_t)a->heads * (size_t)c.nqb;
	double work = (double)a->nb * a->heads * a->nq * a->nk * a->hd;
	if (work < 3e7 || inworker)
		nt = 1;   /* small (the decoder's): one thread, no switching of BLAS threads */
	for (int t = 0; t < nt; t++)
		c.ws[t] = mp_xmalloc(ws * sizeof(float));
	if (nt == 1) {
		for (size_t i = 0; i < ntask; i++)
			att_task(&c, i, 0);
	} else {
		mp_sam_cpu_blas_one(1);
		parfor(ntask, att_task, &c);
		mp_sam_cpu_blas_one(0);
	}
	for (int t = 0; t < nt; t++)
		free(c.ws[t]);
}

/* ---------------------------------------------------------------- for sam.c */
typedef struct {
	void (*fn)(void *, size_t, int);
	void *ctx;
} wrk_ctx;

static void
wrk_run(void *vc, size_t i, int tid)
{
	wrk_ctx *w = vc;
	int was = inworker;

	inworker = 1;
	w->fn(w->ctx, i, tid);
	inworker = was;
}

/* OpenBLAS's thread count is one setting for the whole process: the
 * sections that run on their own threads hold it at 1, holds counted
 * (nested, or from several threads at once: one device's decoder beside
 * another's), and the count from before the first hold comes back after
 * the last */
static pthread_mutex_t blas_mu = PTHREAD_MUTEX_INITIALIZER;
static int blas_holds, blas_saved;

void
mp_sam_cpu_blas_one(int hold)
{
	pthread_mutex_lock(&blas_mu);
	if (hold && blas_holds++ == 0) {
		blas_saved = openblas_get_num_threads();
		openblas_set_num_threads(1);
	} else if (!hold && blas_holds > 0 && --blas_holds == 0) {
		openblas_set_num_threads(blas_saved);
	}
	pthread_mutex_unlock(&blas_mu);
}

void
mp_sam_cpu_parfor(size_t n, void (*fn)(void *ctx, size_t i, int tid), void *ctx)
{
	wrk_ctx w = { fn, ctx };

	if (inworker || nthr == 1 || n < 2) {
		for (size_t i = 0; i < n; i++)
			fn(ctx, i, 0);
		return;
	}
	mp_sam_cpu_blas_one(1);
	parfor(n, wrk_run, &w);
	mp_sam_cpu_blas_one(0);
}

void
mp_sam_cpu_gelu1(float *x, size_t n)
{
	gelu_ctx c = { x, n };

	for (size_t i = 0; i < (n + GELU_CHUNK - 1) / GELU_CHUNK; i++)
		gelu_chunk(&c, i, 0);
}

void
mp_sam_cpu_bias_gelu1(float *x, size_t rows, size_t d, const float *b)
{
#ifdef HAVE_AVX2_PATH
	if (have_avx2() && d % 8 == 0) {
		bias_gelu8(x, rows, d, b);
		return;
	}
#endif
	if (b)
		for (size_t r = 0; r < rows; r++)
			mp_sam_add(x + r * d, x + r * d, b, d);
	mp_sam_cpu_gelu1(x, rows * d);
}

void
mp_sam_cpu_ln1(float *y, const float *x, size_t rows, size_t d, const float *w, const float *b, float eps)
{
	ln_ctx c = { y, x, w, b, rows, d, eps };

	for (size_t i = 0; i < (rows + 63) / 64; i++)
		ln_rows(&c, i, 0);
}

void
mp_sam_softmax_rows(float *s, size_t rows, size_t n, size_t ld)
{
	for (size_t r = 0; r < rows; r++)
		softmax_row(s + r * ld, (int)n);
}

/* x[i] = exp(x[i] - sub[i]) in place; acc[i] += the result */
static void
expsub_acc(float *x, const float *sub, float *acc, size_t n)
{
	size_t i = 0;
#ifdef HAVE_AVX2_PATH
	if (have_avx2()) {
		i = expsub8(x, sub, acc, n);
	} else
#endif
	{
#ifdef __SSE2__
		for (; i + 4 <= n; i += 4) {
			__m128 e = vexp(_mm_sub_ps(_mm_loadu_ps(x + i), _mm_loadu_ps(sub + i)));
			_mm_storeu_ps(x + i, e);
			_mm_storeu_ps(acc + i, _mm_add_ps(_mm_loadu_ps(acc + i), e));
		}
#endif
	}
	for (; i < n; i++) {
		x[i] = fexp(x[i] - sub[i]);
		acc[i] += x[i];
	}
}

void
mp_sam_softmax_cols(float *s, size_t rows, size_t n, size_t ld, const float *add, float *tmp)
{
	float *mx = tmp, *sum = tmp + n;

	if (add)
		for (size_t r = 0; r < rows; r++) {
			float *x = s + r * ld, a = add[r];
			for (size_t i = 0; i < n; i++)
				x[i] += a;
		}
	memcpy(mx, s, n * sizeof(float));
	for (size_t r = 1; r < rows; r++) {
		const float *x = s + r * ld;
		for (size_t i = 0; i < n; i++)
			mx[i] = x[i] > mx[i] ? x[i] : mx[i];
	}
	memset(sum, 0, n * sizeof(float));
	for (size_t r = 0; r < rows; r++)
		expsub_acc(s + r * ld, mx, sum, n);
	for (size_t i = 0; i < n; i++)
		sum[i] = 1.0f / sum[i];
	for (size_t r = 0; r < rows; r++) {
		float *x = s + r * ld;
		for (size_t i = 0; i < n; i++)
			x[i] *= sum[i];
	}
}

void
mp_sam_add(float *d, const float *a, const float *b, size_t n)
{
	size_t i = 0;
#ifdef HAVE_AVX2_PATH
	if (have_avx2()) {
		add8(d, a, b, n);
		return;
	}
#endif
#ifdef __SSE2__
	for (; i + 4 <= n; i += 4)
		_mm_storeu_ps(d + i, _mm_add_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)));
#endif
	for (; i < n; i++)
		d[i] = a[i] + b[i];
}

int
mp_sam_is_cpu(const mp_sam_backend *be)
{
	return be && be->gemm == cpu_gemm;
}

static mp_sam_backend cpu_be = { .name = "cpu", .gemm = cpu_gemm, .layernorm = cpu_layernorm, .gelu = cpu_gelu,
                                 .attention = cpu_attention };

const mp_sam_backend *
mp_sam_cpu_backend(int nthreads)
{
	if (nthreads <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		nthreads = n > 0 ? (int)n : 1;
	}
	nthr = nthreads > 64 ? 64 : nthreads;
	openblas_set_num_threads(nthr);
#ifdef HAVE_AVX2_PATH
	avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	/* the ViT attention's 16-float kernels (sam_vitatt.c); MEDPIPE_SAM_AVX512=0
	 * keeps the 8-float ones (for comparison) */
	const char *e = getenv("MEDPIPE_SAM_AVX512");
	avx512 = avx2 && __builtin_cpu_supports("avx512f") && !(e && strcmp(e, "0") == 0);
#endif
	return &cpu_be;
}
