/* test_cl_sam.c - the SAM model's OpenCL backend (opencl/cl_sam.c) entry by
 * entry: GEMM against a double-precision product (every transpose, sizes
 * that are not multiples of the tiles, padded leading dimensions whose gaps
 * must stay untouched, alpha/beta, beta != 0, k = 0, operands inside a
 * constant range, products split along m); layer norm, GELU and attention
 * (windows with relative positions, the decoder's shapes, global attention
 * in chunks of query rows) against the CPU backend; errors reported by
 * status.  Tolerances: GEMM |error| <= 1e-5 * (|alpha| sum |a||b| + |beta c|)
 * elementwise (float accumulation over k, in another order); the rest within
 * 1e-5 of the largest value (the CPU's exp/erf approximations are within
 * 2e-7 relative). */
#include "mp_cl.h"
#include "mp_device.h"
#include "mp_sam.h"
#include "t.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long rs = 0x9E3779B97F4A7C15ULL;
static float
frand(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return (float)((double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *
rnd(size_t n)
{
	float *p = malloc((n ? n : 1) * sizeof *p);
	for (size_t i = 0; i < n; i++)
		p[i] = frand();
	return p;
}

/* one GEMM case; bconst: B lies inside a range declared constant */
static int
gemm_case(const mp_sam_backend *be, int ta, int tb, int m, int n, int k, int pa, int pb, int pc, float alpha,
          float beta, int bconst)
{
	int lda = (ta ? m : k) + pa, ldb = (tb ? k : n) + pb, ldc = n + pc;
	size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
	float *a = rnd(na), *bbig = rnd(nb + 1000), *b = bbig + 517, *c = rnd(nc), *c0 = malloc((nc ? nc : 1) * 4);
	int bad = 0;

	memcpy(c0, c, nc * 4);
	if (bconst)
		be->constant(be->ctx, bbig, (nb + 1000) * sizeof(float));
	be->gemm(be->ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	if (be->status(be->ctx)) {
		T_FAIL("cl sam gemm", "%s", mp_err());
		bad = 1;
	}
	for (int i = 0; i < m && !bad; i++)
		for (int j = 0; j < ldc && !bad; j++) {
			size_t ci = (size_t)i * ldc + j;
			if (j >= n) {
				if (memcmp(&c[ci], &c0[ci], 4)) {
					T_FAIL("cl sam gemm", "ta %d tb %d %dx%dx%d: gap at (%d,%d) overwritten", ta, tb, m, n, k, i, j);
					bad = 1;
				}
				continue;
			}
			double s = 0, sa = 0;
			for (int p = 0; p < k; p++) {
				double x = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
				double y = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
				s += x * y;
				sa += fabs(x * y);
			}
			double ref = alpha * s + (beta != 0 ? beta * (double)c0[ci] : 0);
			double tol = 1e-5 * (fabs(alpha) * sa + fabs(beta * c0[ci])) + 1e-30;
			if (!(fabs(c[ci] - ref) <= tol)) {
				T_FAIL("cl sam gemm", "ta %d tb %d %dx%dx%d alpha %g beta %g: (%d,%d) %.9g, want %.9g (tol %.3g)", ta,
				       tb, m, n, k, alpha, beta, i, j, c[ci], ref, tol);
				bad = 1;
			}
		}
	if (bconst)
		be->forget(be->ctx);
	free(a);
	free(bbig);
	free(c);
	free(c0);
	return bad;
}

static double
maxdiff(const float *x, const float *y, size_t n, double *scale)
{
	double d = 0, s = 0;
	for (size_t i = 0; i < n; i++) {
		double e = fabs((double)x[i] - y[i]);
		d = e > d || e != e ? e : d;
		s = fabs(y[i]) > s ? fabs(y[i]) : s;
	}
	*scale = s;
	return d;
}

/* attention on both backends; qkv interleaved (the encoder's layout) or
 * separate; with TinyViT's learned bias (heads x nq x nk) when att_bias */
static int att_bias;
static int
att_case(const mp_sam_backend *be, const mp_sam_backend *cpu, const char *name, int nb, int nq, int nk, int heads,
         int hd, int g, int inter)
{
	int W = heads * hd;
	mp_sam_attn a;
	float *qkv = NULL, *q = NULL, *k = NULL, *v = NULL, *rh = NULL, *rw = NULL, *bias = NULL;
	size_t no = (size_t)nb * nq * W;
	float *o1 = calloc(no, 4), *o2 = calloc(no, 4);
	double sc, d;

	memset(&a, 0, sizeof a);
	a.nb = nb;
	a.nq = nq;
	a.nk = nk;
	a.heads = heads;
	a.hd = hd;
	if (inter) {
		qkv = rnd((size_t)nb * nq * 3 * W);
		a.q = qkv;
		a.k = qkv + W;
		a.v = qkv + 2 * W;
		a.ldq = a.ldk = a.ldv = 3 * W;
		a.bsq = a.bsk = a.bsv = (size_t)nq * 3 * W;
	} else {
		a.q = q = rnd((size_t)nb * nq * W);
		a.k = k = rnd((size_t)nb * nk * W);
		a.v = v = rnd((size_t)nb * nk * W);
		a.ldq = a.ldk = a.ldv = W;
		a.bsq = (size_t)nq * W;
		a.bsk = a.bsv = (size_t)nk * W;
	}
	a.ldo = W;
	a.bso = (size_t)nq * W;
	a.scale = 1.0f / sqrtf((float)hd);
	if (g) {
		a.gh = a.gw = g;
		a.rph = rh = rnd((size_t)(2 * g - 1) * hd);
		a.rpw = rw = rnd((size_t)(2 * g - 1) * hd);
		be->constant(be->ctx, rh, (size_t)(2 * g - 1) * hd * 4);
	}
	if (att_bias)
		a.bias = bias = rnd((size_t)heads * nq * nk);
	a.o = o1;
	cpu->attention(cpu->ctx, &a);
	a.o = o2;
	be->attention(be->ctx, &a);
	int st = be->status(be->ctx);
	d = maxdiff(o2, o1, no, &sc);
	if (st)
		T_FAIL(name, "%s", mp_err());
	else if (!(d <= 1e-5 * sc))
		T_FAIL(name, "max abs diff %.3g (largest value %.3g)", d, sc);
	else
		printf("PASS %s: max abs diff %.2g of %.2g\n", name, d, sc);
	if (g)
		be->forget(be->ctx);
	free(qkv);
	free(q);
	free(k);
	free(v);
	free(rh);
	free(rw);
	free(bias);
	free(o1);
	free(o2);
	return st || !(d <= 1e-5 * sc);
}

int
main(void)
{
	mp_cl *c;
	const mp_sam_backend *be, *cpu;
	int bad = 0, cases = 0;

	mp_init("test_cl_sam");
	if (mp_cl_devices(NULL) <= 0 || !(c = mp_cl_open(-1))) {
		T_SKIP("cl sam", mp_err());
		return 0;
	}
	if (!(be = mp_cl_sam_backend(c))) {
		T_FAIL("cl sam backend", "%s", mp_err());
		mp_cl_close(c);
		return 1;
	}
	cpu = mp_sam_cpu_backend(1);

	/* GEMM: all transposes, odd sizes, padding, alpha/beta, constants; on
	 * CPU devices both the vectorised kernels and the tiled one */
	static const int sz[][3] = { { 1, 1, 1 }, { 7, 13, 5 }, { 64, 64, 16 }, { 65, 63, 17 }, { 130, 70, 200 },
	                             { 7, 256, 768 }, { 300, 33, 1 }, { 3, 4096, 16 } };
	for (int tiled = 0; tiled < 2; tiled++) {
		int b0 = bad;
		cases = 0;
		if (tiled)
			setenv("MEDPIPE_SAM_CL_TILED", "1", 1);
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++)
				for (size_t s = 0; s < sizeof sz / sizeof *sz; s++) {
					int i = (int)s;
					bad += gemm_case(be, ta, tb, sz[s][0], sz[s][1], sz[s][2], i % 3, (i + 1) % 4, i % 2 ? 5 : 0,
					                 i % 4 == 3 ? -0.75f : 1.0f, i % 3 == 1 ? 0.5f : i % 3 == 2 ? 1.0f : 0.0f,
					                 i % 2);
					cases++;
				}
		bad += gemm_case(be, 0, 1, 5, 6, 0, 1, 1, 2, 1.0f, 0.5f, 0);     /* k = 0: C = beta C */
		cases++;
		unsetenv("MEDPIPE_SAM_CL_TILED");
		if (bad == b0)
			printf("PASS cl sam gemm%s: %d cases (transposes, odd sizes, padded leading dims, alpha/beta, constants)\n",
			       tiled ? " (tiled kernel forced)" : "", cases);
	}

	/* layer norm (in place and not), GELU */
	{
		size_t rows = 37, d = 100;
		float *x = rnd(rows * d), *w = rnd(d), *b = rnd(d), *y1 = malloc(rows * d * 4), *y2 = malloc(rows * d * 4);
		double sc, e1, e2;
		for (size_t i = 0; i < rows * d; i++)
			x[i] = x[i] * 3 + (float)(i / d);
		cpu->layernorm(cpu->ctx, y1, x, rows, d, w, b, 1e-6f);
		be->layernorm(be->ctx, y2, x, rows, d, w, b, 1e-6f);
		e1 = maxdiff(y2, y1, rows * d, &sc);
		memcpy(y2, x, rows * d * 4);
		be->layernorm(be->ctx, y2, y2, rows, d, w, b, 1e-6f);
		e2 = maxdiff(y2, y1, rows * d, &sc);
		int st = be->status(be->ctx);
		T_OK(!st && e1 <= 1e-5 * sc && e2 <= 1e-5 * sc, "cl sam layernorm (and in place) = CPU within 1e-5");
		bad += st || !(e1 <= 1e-5 * sc && e2 <= 1e-5 * sc);
		size_t n = 10007;
		float *g = rnd(n), *g2 = malloc(n * 4);
		for (size_t i = 0; i < n; i++)
			g[i] *= 6;
		memcpy(g2, g, n * 4);
		cpu->gelu(cpu->ctx, g, n);
		be->gelu(be->ctx, g2, n);
		e1 = maxdiff(g2, g, n, &sc);
		st = be->status(be->ctx);
		T_OK(!st && e1 <= 1e-6 * sc, "cl sam gelu = CPU within 1e-6");
		bad += st || !(e1 <= 1e-6 * sc);
		free(x);
		free(w);
		free(b);
		free(y1);
		free(y2);
		free(g);
		free(g2);
	}

	/* attention: the fused kernel (the default) and the composed path
	 * (MEDPIPE_SAM_CL_ATTN=composed), both against the CPU */
	for (int mode = 0; mode < 2; mode++) {
		char nm[6][120];
		const char *mn = mode ? "composed" : "fused";
		setenv("MEDPIPE_SAM_CL_ATTN", mn, 1);
		snprintf(nm[0], sizeof nm[0], "cl sam attention (%s): windows 5x5, rel pos, qkv interleaved", mn);
		snprintf(nm[1], sizeof nm[1], "cl sam attention (%s): decoder tokens to image", mn);
		snprintf(nm[2], sizeof nm[2], "cl sam attention (%s): decoder image to tokens", mn);
		snprintf(nm[3], sizeof nm[3], "cl sam attention (%s): TinyViT bias, 7x7 windows, 49 keys: tiles of 16 and a rest", mn);
		snprintf(nm[4], sizeof nm[4], "cl sam attention (%s): 14x14 windows, 2 heads of 64, rel pos", mn);
		snprintf(nm[5], sizeof nm[5], "cl sam attention (%s): heads of 128 and of 136 (beyond the fused kernel's)", mn);
		bad += att_case(be, cpu, nm[0], 4, 25, 25, 3, 8, 5, 1);
		bad += att_case(be, cpu, nm[1], 1, 7, 1024, 8, 16, 0, 0);
		bad += att_case(be, cpu, nm[2], 1, 1024, 7, 8, 16, 0, 0);
		att_bias = 1;
		bad += att_case(be, cpu, nm[3], 3, 49, 49, 2, 32, 0, 0);
		att_bias = 0;
		bad += att_case(be, cpu, nm[4], 2, 196, 196, 2, 64, 14, 1);
		bad += att_case(be, cpu, nm[5], 1, 50, 37, 1, 128, 0, 0) + att_case(be, cpu, nm[5], 1, 50, 37, 1, 136, 0, 0);
	}
	unsetenv("MEDPIPE_SAM_CL_ATTN");

	/* small pieces: GEMM split along m (64 KiB), global attention in chunks
	 * of query rows (256 KiB: 81 rows of 400 keys, 2 heads), and an operand
	 * too large for a piece reported by status */
	setenv("MEDPIPE_CL_PIECE", "65536", 1);
	{
		int b1 = gemm_case(be, 0, 1, 1000, 40, 30, 1, 0, 3, 1.0f, 0.5f, 1);
		int b2 = gemm_case(be, 1, 0, 900, 20, 16, 0, 2, 0, 2.0f, 0.0f, 1);
		T_OK(!b1 && !b2, "cl sam gemm split along m (64 KiB pieces)");
		bad += b1 + b2;
		setenv("MEDPIPE_CL_PIECE", "262144", 1);
		bad += att_case(be, cpu, "cl sam attention: global 20x20, rel pos, chunks of query rows", 1, 400, 400, 2, 16,
		                20, 1);
		setenv("MEDPIPE_CL_PIECE", "100000", 1);   /* fused: the rel. position terms of 312 rows at a time */
		bad += att_case(be, cpu, "cl sam attention: global 20x20, rel pos, fused in chunks of query rows", 1, 400, 400,
		                2, 8, 20, 1);
		setenv("MEDPIPE_CL_PIECE", "65536", 1);
		float *a = rnd(20000), *b = rnd(20000), *cc = rnd(20000);
		be->gemm(be->ctx, 0, 0, 1, 20000, 1, 1.0f, a, 1, b, 20000, 0.0f, cc, 20000);
		int st = be->status(be->ctx);
		T_OK(st == -1 && strstr(mp_err(), "allocation limit") && be->status(be->ctx) == 0,
		     "cl sam: an operand beyond the allocation limit is reported once by status");
		bad += !(st == -1);
		free(a);
		free(b);
		free(cc);
	}
	unsetenv("MEDPIPE_CL_PIECE");

	/* the dispatcher */
	{
		mp_dev *d = mp_dev_open("cpu");
		const mp_sam_backend *b1 = mp_dev_sam_backend(d, 1);
		mp_dev_close(d);
		d = mp_dev_open("opencl");
		const mp_sam_backend *b2 = d ? mp_dev_sam_backend(d, 1) : NULL;
		T_OK(b1 && !strcmp(b1->name, "cpu") && b2 && !strcmp(b2->name, "opencl"),
		     "mp_dev_sam_backend: cpu -> CPU backend, opencl -> OpenCL backend");
		mp_dev_close(d);
	}
	mp_cl_close(c);
	return bad || t_failed ? 1 : 0;
}
