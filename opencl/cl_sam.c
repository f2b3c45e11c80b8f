/* cl_sam.c - the SAM model's backend (mp_sam_backend, mp_sam.h) on an
 * OpenCL device, kernels in sam.cl.
 *
 * The model code is shared with the CPU backend and passes host pointers,
 * so every entry uploads its inputs, runs, and downloads its output; the ViT
 * encoder instead runs whole on the device (`encode`, cl_encode below: the
 * image up, the embedding down, nothing else per slice), and so does the
 * image side of the mask decoder when its attentions fold (`dec_*`: the
 * image tokens up once per embedding, the masks down; the prompt tokens'
 * side, a few rows, through the entries); the variable
 * MEDPIPE_SAM_CL_RESIDENT=0 sends both through the entries, for comparison.  Data
 * the model declares constant (the checkpoint's tensors, through the
 * backend's `constant` entry) crosses the bus once: one device buffer per
 * range, made on first use and kept until `forget`.  Other operands go
 * through scratch buffers that grow as needed and are kept.
 *
 * Attention on GPUs is one fused kernel (attn_fused in sam.cl: key tiles
 * through local memory, online softmax, the scores never stored; only the
 * relative-position terms, rows x (gh + gw) per head, are).  Elsewhere, and
 * for heads wider than 128, it is composed: for a chunk of batches (and, for long sequences,
 * of query rows) the scores S = scale Q K^T of every head by the batched
 * GEMM, the relative-position terms by a small kernel, row softmax (adding
 * TinyViT's learned attention bias when there is one), then
 * O = S V by the batched GEMM.  A chunk's scores are held at most
 * SAM_CL_SCORES bytes (32 MiB; ViT-B's global attention: 170 query rows of
 * 12 heads at a time).
 *
 * Errors: the entries cannot return one, so the first failure (a build
 * error, out of memory, a kernel that failed) is kept, the entries do
 * nothing until `status` reports it (-1 + mp_err) and clears it. */
#include "mp_cl.h"
#include "mp_sam.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SAM_CL_SCORES ((size_t)32 << 20)

typedef struct {
	const char *p;
	size_t n;
	cl_mem m;
} wconst;

/* scratch slots: operands A, B, V, C; scores; relative-position terms and
 * tables; the resident encoder's activations (cl_encode: tokens, normed
 * tokens, qkv, attention output, MLP hidden rows, im2col rows, image,
 * embedding) */
enum { SA, SB, SV, SC, SS, SRH, SRW, STH, STW, SBI, RX, RXN, RQKV, RAO, RHID, RCOLS, RIMG, REMB,
       /* the resident decoder (dec_*): the image slots MP_SAM_D* (keys0,
        * keys0 + pe, keys, keys + pe), scores, the host's operands F, M, c,
        * R, the upscaling's product and map, the hypernetwork vectors, the
        * low-resolution masks */
       DK0, DKPE0, DKEYS, DTK, DS, DF, DM, DC, DR, DY, DU, DH, DL,
       /* and without folding: image-side projections (q or k, v, output) */
       DP1, DP2, DP3, NSCR };

typedef struct {
	cl_mem m;
	size_t cap;
} scratch;

typedef struct clsam {
	mp_sam_backend be;
	mp_cl *c;
	wconst *w;
	size_t nw, capw;
	int sorted;
	scratch s[NSCR];
	int failed;
	char err[600];
	cl_kernel gemm[4], gemm_v[2], ln, gelu, rel, soft;
	cl_kernel fused, im2col, patchpos, bias, add, winpart, winadd, im2col3, chw;
	cl_kernel add3, softgrp, upshuf;
	const mp_sam *dec_owner;  /* whose image tokens the decoder's slots hold */
	int cpu;                 /* a CPU device: the vectorised NN/NT kernels */
} clsam;

/* an operand on the device: buffer and offset in floats */
typedef struct {
	cl_mem m;
	cl_ulong off;
} dop;

static int
fail(clsam *s)
{
	if (!s->failed) {
		s->failed = 1;
		snprintf(s->err, sizeof s->err, "%s", mp_err());
	}
	return -1;
}

static int
run(clsam *s, cl_kernel k, int dims, const size_t *g, const size_t *l)
{
	size_t gg[3];
	for (int i = 0; i < dims; i++) {
		if (g[i] == 0)
			return 0;
		gg[i] = l ? (g[i] + l[i] - 1) / l[i] * l[i] : g[i];
	}
	return mp_cl_enqueue(s->c, k, dims, gg, l);
}

/* ---------------------------------------------------------------- buffers */
static int
wcmp(const void *a, const void *b)
{
	const char *x = ((const wconst *)a)->p, *y = ((const wconst *)b)->p;
	return x < y ? -1 : x > y;
}

static void
cl_constant(void *ctx, const void *p, size_t n)
{
	clsam *s = ctx;
	if (!p || !n)
		return;
	if (s->nw == s->capw) {
		s->capw = s->capw ? 2 * s->capw : 256;
		s->w = mp_xrealloc(s->w, s->capw * sizeof *s->w);
	}
	s->w[s->nw].p = p;
	s->w[s->nw].n = n;
	s->w[s->nw].m = NULL;
	s->nw++;
	s->sorted = 0;
}

static void
cl_forget(void *ctx)
{
	clsam *s = ctx;
	for (size_t i = 0; i < s->nw; i++)
		if (s->w[i].m)
			clReleaseMemObject(s->w[i].m);
	s->nw = 0;
}

/* the constant range holding [p, p + n), or NULL */
static wconst *
find_const(clsam *s, const void *vp, size_t n)
{
	const char *p = vp;
	size_t lo = 0, hi = s->nw;

	if (!s->sorted) {
		if (s->nw > 1)      /* qsort wants a real array even for 0 elements */
			qsort(s->w, s->nw, sizeof *s->w, wcmp);
		s->sorted = 1;
	}
	while (lo < hi) {            /* the first range starting after p */
		size_t mid = (lo + hi) / 2;
		if (s->w[mid].p <= p)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	wconst *w = &s->w[lo - 1];
	return p >= w->p && (size_t)(p - w->p) + n <= w->n ? w : NULL;
}

/* scratch buffer i of at least n bytes */
static cl_mem
scr(clsam *s, int i, size_t n)
{
	scratch *b = &s->s[i];
	if (n < 4)
		n = 4;
	if (b->cap < n) {
		if (b->m)
			clReleaseMemObject(b->m);
		b->cap = 0;
		size_t want = n + n / 4;
		if (want > mp_cl_info(s->c)->max_alloc)
			want = n;
		if (!(b->m = mp_cl_buffer(s->c, CL_MEM_READ_WRITE, want, NULL)))
			return NULL;
		b->cap = want;
	}
	return b->m;
}

/* floats spanned by rows x cols at leading dimension ld */
static size_t
span(size_t rows, size_t cols, size_t ld)
{
	return rows && cols ? (rows - 1) * ld + cols : 0;
}

/* the operand at host p spanning nf floats: a constant's buffer, or scratch
 * slot i (uploaded when up != 0) */
static int
operand(clsam *s, const float *p, size_t nf, int i, int up, dop *o)
{
	wconst *w = find_const(s, p, nf * sizeof(float));

	if (w) {
		if (!w->m) {
			if (!(w->m = mp_cl_hostbuf(s->c, CL_MEM_READ_ONLY, w->n, (void *)w->p)))
				return -1;
			mp_cl_count_constant(s->c, w->n);
		}
		o->m = w->m;
		o->off = (cl_ulong)((const char *)p - w->p) / sizeof(float);
		return 0;
	}
	if (nf * sizeof(float) > mp_cl_piece(s->c))
		return mp_seterr("opencl: %s: out of memory: an operand of %zu bytes exceeds the allocation limit (%zu bytes)",
		                 mp_cl_info(s->c)->name, nf * sizeof(float), mp_cl_piece(s->c));
	if (!(o->m = scr(s, i, nf * sizeof(float))))
		return -1;
	o->off = 0;
	return up ? mp_cl_write(s->c, o->m, 0, nf * sizeof(float), p) : 0;
}

/* ---------------------------------------------------------------- GEMM */
typedef struct {
	dop d;
	int ld;
	cl_ulong s1, s2;
} gop;

/* batched product on device operands; nz batches, zdiv as in sam.cl */
static int
dgemm(clsam *s, int ta, int tb, int m, int n, int k, float alpha, const gop *a, const gop *b, float beta,
      const gop *c, int nz, int zdiv)
{
	cl_kernel kn = s->gemm[(ta ? 2 : 0) + (tb ? 1 : 0)];
	size_t g[3] = { (size_t)(n + 63) / 64 * 16, (size_t)(m + 63) / 64 * 16, (size_t)nz }, l[3] = { 16, 16, 1 };
	const size_t *lp = l;
	const char *e = getenv("MEDPIPE_SAM_CL_TILED");

	if (s->cpu && !ta && !(e && *e && strcmp(e, "0") != 0)) {
		kn = s->gemm_v[tb];
		g[0] = tb ? (size_t)(n + 3) / 4 : (size_t)(n + 15) / 16;
		g[1] = tb ? (size_t)(m + 3) / 4 : (size_t)(m + 7) / 8;
		lp = NULL;
	}

	if (mp_cl_args(kn, sizeof m, &m, sizeof n, &n, sizeof k, &k, sizeof alpha, &alpha, sizeof beta, &beta,
	               sizeof(cl_mem), &a->d.m, sizeof(cl_ulong), &a->d.off, sizeof(int), &a->ld,
	               sizeof(cl_ulong), &a->s1, sizeof(cl_ulong), &a->s2,
	               sizeof(cl_mem), &b->d.m, sizeof(cl_ulong), &b->d.off, sizeof(int), &b->ld,
	               sizeof(cl_ulong), &b->s1, sizeof(cl_ulong), &b->s2,
	               sizeof(cl_mem), &c->d.m, sizeof(cl_ulong), &c->d.off, sizeof(int), &c->ld,
	               sizeof(cl_ulong), &c->s1, sizeof(cl_ulong), &c->s2, sizeof zdiv, &zdiv, (size_t)0))
		return -1;
	return run(s, kn, 3, g, lp);
}

static int
gemm_part(clsam *s, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
          int ldb, float beta, float *c, int ldc)
{
	gop A = { { NULL, 0 }, lda, 0, 0 }, B = { { NULL, 0 }, ldb, 0, 0 }, C = { { NULL, 0 }, ldc, 0, 0 };
	size_t na = ta ? span((size_t)k, (size_t)m, (size_t)lda) : span((size_t)m, (size_t)k, (size_t)lda);
	size_t nb = tb ? span((size_t)n, (size_t)k, (size_t)ldb) : span((size_t)k, (size_t)n, (size_t)ldb);
	size_t nc = span((size_t)m, (size_t)n, (size_t)ldc);

	/* C is uploaded when it is read (beta != 0) or has gaps that must keep
	 * the host's values when the whole span is read back */
	if (operand(s, a, na, SA, 1, &A.d) || operand(s, b, nb, SB, 1, &B.d) ||
	    operand(s, c, nc, SC, beta != 0.0f || (ldc != n && m > 1), &C.d) ||
	    dgemm(s, ta, tb, m, n, k, alpha, &A, &B, beta, &C, 1, 1))
		return -1;
	return mp_cl_read(s->c, C.d.m, 0, nc * sizeof(float), c);
}

static void
cl_gemm(void *ctx, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
        int ldb, float beta, float *c, int ldc)
{
	clsam *s = ctx;
	size_t piece = mp_cl_piece(s->c) / sizeof(float);
	int mc = m;

	if (s->failed || m <= 0 || n <= 0)
		return;
	if (k <= 0) {            /* C = beta C */
		for (int i = 0; i < m; i++)
			for (int j = 0; j < n; j++)
				c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
		return;
	}
	/* split along m so that op(A)'s and C's rows fit the allocation limit */
	while (mc > 1 && ((ta ? span((size_t)k, (size_t)mc, (size_t)lda) : span((size_t)mc, (size_t)k, (size_t)lda)) > piece
	                  || span((size_t)mc, (size_t)n, (size_t)ldc) > piece))
		mc = (mc + 1) / 2;
	for (int i0 = 0; i0 < m; i0 += mc) {
		int mm = m - i0 < mc ? m - i0 : mc;
		const float *ap = ta ? a + i0 : a + (size_t)i0 * lda;
		if (gemm_part(s, ta, tb, mm, n, k, alpha, ap, lda, b, ldb, beta, c + (size_t)i0 * ldc, ldc)) {
			fail(s);
			return;
		}
	}
}

/* ---------------------------------------------------------------- rows */
static void
cl_layernorm(void *ctx, float *y, const float *x, size_t rows, size_t d, const float *w, const float *b, float eps)
{
	clsam *s = ctx;
	dop X, Y, W, B;
	int di = (int)d;
	size_t g = rows * 64, l = 64;

	if (s->failed || rows == 0 || d == 0)
		return;
	if (operand(s, x, rows * d, SA, 1, &X) || operand(s, w, d, SB, 1, &W) || operand(s, b, d, SC, 1, &B))
		goto bad;
	Y = X;
	if (y != x && operand(s, y, rows * d, SS, 0, &Y))
		goto bad;
	if (mp_cl_args(s->ln, sizeof(cl_mem), &Y.m, sizeof(cl_ulong), &Y.off, sizeof(cl_mem), &X.m,
	               sizeof(cl_ulong), &X.off, sizeof di, &di, sizeof(cl_mem), &W.m, sizeof(cl_ulong), &W.off,
	               sizeof(cl_mem), &B.m, sizeof(cl_ulong), &B.off, sizeof eps, &eps, (size_t)0) ||
	    run(s, s->ln, 1, &g, &l) || mp_cl_read(s->c, Y.m, Y.off * sizeof(float), rows * d * sizeof(float), y))
		goto bad;
	return;
bad:
	fail(s);
}

static void
cl_gelu(void *ctx, float *x, size_t n)
{
	clsam *s = ctx;
	dop X;
	cl_ulong un = n;
	size_t g = n;

	if (s->failed || n == 0)
		return;
	if (operand(s, x, n, SA, 1, &X) ||
	    mp_cl_args(s->gelu, sizeof(cl_mem), &X.m, sizeof(cl_ulong), &X.off, sizeof un, &un, (size_t)0) ||
	    run(s, s->gelu, 1, &g, NULL) || mp_cl_read(s->c, X.m, X.off * sizeof(float), n * sizeof(float), x))
		fail(s);
}

/* ---------------------------------------------------------------- attention */
static size_t
att_span(int nb, size_t bs, int n, int ld, int width)
{
	return (size_t)(nb - 1) * bs + span((size_t)n, (size_t)width, (size_t)ld);
}

static int attention_dev(clsam *s, const mp_sam_attn *a, const dop *in, dop O, dop RH, dop RW, dop BI);

/* the fused kernel (attn_fused in sam.cl: work-groups of SAM_CL_FQ query
 * rows, heads of at most SAM_CL_HDMAX values) on GPUs and accelerators; on
 * CPU devices the composed path, whose products run through the vectorised
 * GEMMs (PoCL: the fused kernel about 1.5x the CPU time, tests/bench/sam_cl.sh).
 * MEDPIPE_SAM_CL_ATTN=fused or composed chooses for every device. */
#define SAM_CL_FQ 32
#define SAM_CL_HDMAX 128
static int
use_fused(const clsam *s, int hd)
{
	const char *e = getenv("MEDPIPE_SAM_CL_ATTN");
	int want = e && strcmp(e, "fused") == 0 ? 1 : e && strcmp(e, "composed") == 0 ? 0 : !s->cpu;
	return want && hd <= SAM_CL_HDMAX;
}

static int
attention(clsam *s, const mp_sam_attn *a)
{
	int H = a->heads, hd = a->hd, W = H * hd, rel = a->rph != NULL;
	const float *p[3] = { a->q, a->k, a->v };
	size_t n[3] = { att_span(a->nb, a->bsq, a->nq, a->ldq, W), att_span(a->nb, a->bsk, a->nk, a->ldk, W),
	                att_span(a->nb, a->bsv, a->nk, a->ldv, W) };
	size_t no = att_span(a->nb, a->bso, a->nq, a->ldo, W);
	dop in[3], O, RH = { NULL, 0 }, RW = { NULL, 0 }, BI = { NULL, 0 };

	/* q, k, v: one upload of their union when they share memory (the
	 * encoder's qkv rows), else one each */
	uintptr_t lo = (uintptr_t)p[0], hi = lo + n[0] * sizeof(float);
	for (int i = 1; i < 3; i++) {
		uintptr_t a0 = (uintptr_t)p[i], a1 = a0 + n[i] * sizeof(float);
		lo = a0 < lo ? a0 : lo;
		hi = a1 > hi ? a1 : hi;
	}
	if ((hi - lo) / sizeof(float) <= n[0] + n[1] + n[2]) {
		dop u;
		const float *base = p[0] - ((uintptr_t)p[0] - lo) / sizeof(float);
		if (operand(s, base, (hi - lo) / sizeof(float), SA, 1, &u))
			return -1;
		for (int i = 0; i < 3; i++) {
			in[i] = u;
			in[i].off += (cl_ulong)(((uintptr_t)p[i] - lo) / sizeof(float));
		}
	} else {
		for (int i = 0; i < 3; i++)
			if (operand(s, p[i], n[i], i == 0 ? SA : i == 1 ? SB : SV, 1, &in[i]))
				return -1;
	}
	int gaps = a->ldo != W || (a->nb > 1 && a->bso != (size_t)a->nq * a->ldo);
	if (operand(s, a->o, no, SC, gaps, &O))
		return -1;
	if (rel && (operand(s, a->rph, (size_t)(2 * a->gh - 1) * hd, STH, 1, &RH) ||
	            operand(s, a->rpw, (size_t)(2 * a->gw - 1) * hd, STW, 1, &RW)))
		return -1;
	if (a->bias && operand(s, a->bias, (size_t)H * a->nq * a->nk, SBI, 1, &BI))
		return -1;
	if (attention_dev(s, a, in, O, RH, RW, BI))
		return -1;
	return mp_cl_read(s->c, O.m, O.off * sizeof(float), no * sizeof(float), a->o);
}

/* attention on device operands: q, k, v at in[0..2], the output at O, the
 * relative-position tables at RH, RW (a->rph != NULL), the bias at BI
 * (a->bias != NULL); a's pointers are not read */
static int
attention_dev(clsam *s, const mp_sam_attn *a, const dop *in, dop O, dop RH, dop RW, dop BI)
{
	int H = a->heads, hd = a->hd, rel = a->rph != NULL, hasb = a->bias != NULL, fused = use_fused(s, hd);
	cl_mem S;

	/* chunks: whole batches when one batch's scores (fused: its relative-
	 * position terms) fit, else query rows */
	size_t per_row = fused ? (size_t)H * (rel ? a->gh + a->gw : 1) * sizeof(float) : (size_t)H * a->nk * sizeof(float);
	size_t cap = SAM_CL_SCORES;
	if (cap > mp_cl_piece(s->c))
		cap = mp_cl_piece(s->c);
	int bch = 1, qb = a->nq;
	if (per_row * a->nq <= cap) {
		size_t nbf = cap / (per_row * a->nq);
		bch = nbf > (size_t)a->nb ? a->nb : (int)nbf;
	} else {
		size_t r = cap / per_row;
		qb = r < 1 ? 1 : (int)r;
	}
	size_t smax = (size_t)bch * per_row * qb;
	if (!(S = scr(s, SS, fused ? 4 : smax)))
		return -1;
	for (int b0 = 0; b0 < a->nb; b0 += bch) {
		int nbc = a->nb - b0 < bch ? a->nb - b0 : bch, zn = nbc * H;
		for (int i0 = 0; i0 < a->nq; i0 += qb) {
			int nqb = a->nq - i0 < qb ? a->nq - i0 : qb;
			cl_mem rh = S, rw = S;
			cl_ulong qoff = in[0].off + (cl_ulong)b0 * a->bsq;
			if (rel) {
				size_t nrel = (size_t)zn * nqb;
				if (!(rh = scr(s, SRH, nrel * a->gh * sizeof(float))) ||
				    !(rw = scr(s, SRW, nrel * a->gw * sizeof(float))))
					return -1;
				for (int ax = 0; ax < 2; ax++) {
					int g = ax ? a->gw : a->gh;
					cl_ulong bsq = a->bsq;
					size_t gs[3] = { (size_t)g, (size_t)nqb, (size_t)zn };
					const dop *R = ax ? &RW : &RH;
					cl_mem out = ax ? rw : rh;
					if (mp_cl_args(s->rel, sizeof(cl_mem), &in[0].m, sizeof qoff, &qoff, sizeof(int), &a->ldq,
					               sizeof bsq, &bsq, sizeof(int), &H, sizeof(int), &hd, sizeof nqb, &nqb,
					               sizeof i0, &i0, sizeof(int), &a->gw, sizeof(cl_mem), &R->m,
					               sizeof(cl_ulong), &R->off, sizeof g, &g, sizeof ax, &ax, sizeof out, &out,
					               (size_t)0) ||
					    run(s, s->rel, 3, gs, NULL))
						return -1;
				}
			}
			if (fused) {
				cl_ulong ko = in[1].off + (cl_ulong)b0 * a->bsk, vo = in[2].off + (cl_ulong)b0 * a->bsv;
				cl_ulong oo = O.off + (cl_ulong)b0 * a->bso, bsq = a->bsq, bsk = a->bsk, bsv = a->bsv, bso = a->bso;
				size_t gf[2] = { ((size_t)nqb + SAM_CL_FQ - 1) / SAM_CL_FQ * SAM_CL_FQ, (size_t)zn }, lf[2] = { SAM_CL_FQ, 1 };
				if (mp_cl_args(s->fused, sizeof(cl_mem), &in[0].m, sizeof qoff, &qoff, sizeof(int), &a->ldq, sizeof bsq, &bsq,
				               sizeof(cl_mem), &in[1].m, sizeof ko, &ko, sizeof(int), &a->ldk, sizeof bsk, &bsk,
				               sizeof(cl_mem), &in[2].m, sizeof vo, &vo, sizeof(int), &a->ldv, sizeof bsv, &bsv,
				               sizeof(cl_mem), &O.m, sizeof oo, &oo, sizeof(int), &a->ldo, sizeof bso, &bso,
				               sizeof(int), &a->nq, sizeof(int), &a->nk, sizeof H, &H, sizeof hd, &hd,
				               sizeof(float), &a->scale, sizeof i0, &i0, sizeof nqb, &nqb, sizeof rh, &rh, sizeof rw, &rw,
				               sizeof(int), &a->gh, sizeof(int), &a->gw, sizeof rel, &rel,
				               sizeof(cl_mem), hasb ? &BI.m : &S, sizeof(cl_ulong), &BI.off, sizeof hasb, &hasb,
				               (size_t)0) ||
				    run(s, s->fused, 2, gf, lf))
					return -1;
				continue;
			}
			size_t sz = (size_t)nqb * a->nk;
			gop Q = { { in[0].m, qoff + (cl_ulong)i0 * a->ldq }, a->ldq, a->bsq, (cl_ulong)hd };
			gop K = { { in[1].m, in[1].off + (cl_ulong)b0 * a->bsk }, a->ldk, a->bsk, (cl_ulong)hd };
			gop V = { { in[2].m, in[2].off + (cl_ulong)b0 * a->bsv }, a->ldv, a->bsv, (cl_ulong)hd };
			gop Sg = { { S, 0 }, a->nk, (cl_ulong)H * sz, sz };
			gop Og = { { O.m, O.off + (cl_ulong)b0 * a->bso + (cl_ulong)i0 * a->ldo }, a->ldo, a->bso, (cl_ulong)hd };
			size_t rows = (size_t)zn * nqb, g = rows * 64, l = 64;
			if (dgemm(s, 0, 1, nqb, a->nk, hd, a->scale, &Q, &K, 0.0f, &Sg, zn, H) ||
			    mp_cl_args(s->soft, sizeof S, &S, sizeof(int), &a->nk, sizeof rh, &rh, sizeof rw, &rw,
			               sizeof(int), &a->gh, sizeof(int), &a->gw, sizeof rel, &rel,
			               sizeof(cl_mem), hasb ? &BI.m : &S, sizeof(cl_ulong), &BI.off, sizeof hasb, &hasb,
			               sizeof H, &H, sizeof nqb, &nqb, sizeof(int), &a->nq, sizeof i0, &i0, (size_t)0) ||
			    run(s, s->soft, 1, &g, &l) ||
			    dgemm(s, 0, 0, nqb, hd, a->nk, 1.0f, &Sg, &V, 0.0f, &Og, zn, H))
				return -1;
		}
	}
	return 0;
}

static void
cl_attention(void *ctx, const mp_sam_attn *a)
{
	clsam *s = ctx;
	if (s->failed || a->nb <= 0 || a->nq <= 0 || a->heads <= 0 || a->hd <= 0)
		return;
	if (a->nk <= 0 || (a->rph && (a->gh <= 0 || a->gw <= 0 || a->gh * a->gw != a->nk || a->nq != a->nk))) {
		mp_seterr("opencl: SAM attention: bad shape (%d queries, %d keys, grid %dx%d)", a->nq, a->nk, a->gh, a->gw);
		fail(s);
		return;
	}
	if (attention(s, a))
		fail(s);
}

static int
cl_status(void *ctx)
{
	clsam *s = ctx;
	if (!s->failed)
		return 0;
	s->failed = 0;
	return mp_seterr("%s", s->err);
}


/* ---------------------------------------------------------------- the resident encoder
 * mp_sam_encode's ViT on device buffers: the image goes up, the embedding
 * comes down, and every step between (im2col, bias and position adds, the
 * windows, residual adds, the neck) runs as a kernel on activations that
 * stay in the scratch slots RX.. (grown once to the model's and input's
 * sizes, kept).  The same kernels and order of operations as the model code
 * through the entries above, so the results are the same. */

/* the device copy of weight p (nf floats): 0, 1 when p is not a declared
 * constant (the encoder then runs through the entries), -1 + mp_err */
static int
wop(clsam *s, const float *p, size_t nf, dop *o)
{
	if (!p || !find_const(s, p, nf * sizeof(float)))
		return 1;
	return operand(s, p, nf, SA, 0, o);
}

static dop
at(cl_mem m, size_t off)
{
	dop d = { m, (cl_ulong)off };
	return d;
}

/* C (m x n, ldc) = alpha A (m x k, lda) B^T (n x k, ldb) + beta C */
static int
gemm_nt(clsam *s, int m, int n, int k, float alpha, dop A, int lda, dop B, int ldb, float beta, dop C, int ldc)
{
	gop a = { A, lda, 0, 0 }, b = { B, ldb, 0, 0 }, c = { C, ldc, 0, 0 };
	return dgemm(s, 0, 1, m, n, k, alpha, &a, &b, beta, &c, 1, 1);
}

/* y (rows x n) += alpha b */
static int
bias_dev(clsam *s, dop Y, int rows, int n, const float *b, float alpha)
{
	dop B;
	int r = wop(s, b, (size_t)n, &B);
	cl_ulong tot = (cl_ulong)rows * n;
	size_t g = (size_t)tot;
	if (r)
		return r;
	if (mp_cl_args(s->bias, sizeof(cl_mem), &Y.m, sizeof Y.off, &Y.off, sizeof n, &n, sizeof tot, &tot,
	               sizeof(cl_mem), &B.m, sizeof B.off, &B.off, sizeof alpha, &alpha, (size_t)0) ||
	    run(s, s->bias, 1, &g, NULL))
		return -1;
	return 0;
}

/* y = x W^T + b (the model's `linear`) */
static int
lin_dev(clsam *s, const mp_sam_lin *L, dop X, int rows, dop Y)
{
	dop W;
	int r = wop(s, L->w, (size_t)L->out * L->in, &W);
	if (r)
		return r;
	if (gemm_nt(s, rows, L->out, L->in, 1.0f, X, L->in, W, L->in, 0.0f, Y, L->out))
		return -1;
	return L->b ? bias_dev(s, Y, rows, L->out, L->b, 1.0f) : 0;
}

static int
ln_dev(clsam *s, dop Y, dop X, size_t rows, int d, const mp_sam_norm *n, float eps)
{
	dop W, B;
	int r;
	size_t g = rows * 64, l = 64;
	if ((r = wop(s, n->w, (size_t)d, &W)) || (r = wop(s, n->b, (size_t)d, &B)))
		return r;
	if (mp_cl_args(s->ln, sizeof(cl_mem), &Y.m, sizeof Y.off, &Y.off, sizeof(cl_mem), &X.m, sizeof X.off, &X.off,
	               sizeof d, &d, sizeof(cl_mem), &W.m, sizeof W.off, &W.off, sizeof(cl_mem), &B.m, sizeof B.off, &B.off,
	               sizeof eps, &eps, (size_t)0) ||
	    run(s, s->ln, 1, &g, &l))
		return -1;
	return 0;
}

static int
gelu_dev(clsam *s, dop X, size_t n)
{
	cl_ulong un = n;
	size_t g = n;
	if (mp_cl_args(s->gelu, sizeof(cl_mem), &X.m, sizeof X.off, &X.off, sizeof un, &un, (size_t)0) ||
	    run(s, s->gelu, 1, &g, NULL))
		return -1;
	return 0;
}

/* an adapter on rows [r0, r0 + nr) of Y: Y += alpha (a2(gelu(a1(X))) + b2) */
static int
adapter_dev(clsam *s, const mp_sam_lin *a1, const mp_sam_lin *a2, dop X, dop Y, dop HID, int nr, int E, float alpha)
{
	dop W2;
	int r, H = a1->out;
	if ((r = lin_dev(s, a1, X, nr, HID)) || (r = wop(s, a2->w, (size_t)E * H, &W2)))
		return r;
	if (gelu_dev(s, HID, (size_t)nr * H) || gemm_nt(s, nr, E, H, alpha, HID, H, W2, H, 1.0f, Y, E))
		return -1;
	return bias_dev(s, Y, nr, E, a2->b, alpha);
}

/* activation slot i of n bytes, within the allocation limit as operands are */
static cl_mem
rscr(clsam *s, int i, size_t n)
{
	if (n > mp_cl_piece(s->c))
		return mp_seterr("opencl: %s: out of memory: an activation of %zu bytes exceeds the allocation limit (%zu bytes)",
		                 mp_cl_info(s->c)->name, n, mp_cl_piece(s->c)), NULL;
	return scr(s, i, n);
}

static int
encode_dev(clsam *s, const mp_sam *m, const float *img, float *emb)
{
	const mp_sam_config *c = &m->cfg;
	int G = c->grid, E = c->embed, P = c->patch, S = c->img_size, C = c->out_chans;
	int T = G * G, ws = c->window ? c->window : 1;
	int nwx = (G + ws - 1) / ws, Np = nwx * nwx * ws * ws;
	int rows = Np > T ? Np : T, K = 3 * P * P, MC = 1024, r;
	int EW = E > C ? E : C, HW = c->mlp > 9 * C ? c->mlp : 9 * C;
	size_t f = sizeof(float);
	cl_mem x, xn, qkv, ao, hid, cols, im, em;
	dop W, B;

	for (int bi = 0; bi < c->depth; bi++) {
		const mp_sam_block *b = &m->blk[bi];
		HW = b->sa1.w && b->sa1.out > HW ? b->sa1.out : HW;
		HW = b->ma1.w && b->ma1.out > HW ? b->ma1.out : HW;
	}
	if (!(x = rscr(s, RX, (size_t)T * E * f)) || !(xn = rscr(s, RXN, (size_t)rows * EW * f)) ||
	    !(qkv = rscr(s, RQKV, (size_t)rows * 3 * E * f)) || !(ao = rscr(s, RAO, (size_t)rows * EW * f)) ||
	    !(hid = rscr(s, RHID, (size_t)MC * HW * f)) ||
	    !(cols = rscr(s, RCOLS, (size_t)T * (K > 9 * C ? K : 9 * C) * f)) ||
	    !(im = rscr(s, RIMG, (size_t)3 * S * S * f)) || !(em = rscr(s, REMB, (size_t)C * T * f)))
		return -1;

	/* patch embedding */
	if (mp_cl_write(s->c, im, 0, (size_t)3 * S * S * f, img))
		return -1;
	{
		size_t g[2] = { (size_t)3 * P, (size_t)T };
		cl_ulong n = (cl_ulong)T * E;
		size_t gn = (size_t)n;
		dop PB, PS;
		if ((r = wop(s, m->patch_w, (size_t)E * K, &W)) || (r = wop(s, m->patch_b, (size_t)E, &PB)) ||
		    (r = wop(s, m->pos, (size_t)T * E, &PS)))
			return r;
		if (mp_cl_args(s->im2col, sizeof cols, &cols, sizeof im, &im, sizeof S, &S, sizeof P, &P, sizeof G, &G,
		               (size_t)0) ||
		    run(s, s->im2col, 2, g, NULL) || gemm_nt(s, T, E, K, 1.0f, at(cols, 0), K, W, K, 0.0f, at(x, 0), E) ||
		    mp_cl_args(s->patchpos, sizeof x, &x, sizeof(cl_mem), &PB.m, sizeof PB.off, &PB.off, sizeof(cl_mem),
		               &PS.m, sizeof PS.off, &PS.off, sizeof E, &E, sizeof n, &n, (size_t)0) ||
		    run(s, s->patchpos, 1, &gn, NULL))
			return -1;
	}

	for (int bi = 0; bi < c->depth; bi++) {
		const mp_sam_block *b = &m->blk[bi];
		int N = b->window ? Np : T, w = b->window;
		if (b->window) {
			size_t g[2] = { (size_t)E, (size_t)Np };
			if ((r = ln_dev(s, at(ao, 0), at(x, 0), (size_t)T, E, &b->n1, 1e-6f)))
				return r;
			if (mp_cl_args(s->winpart, sizeof xn, &xn, sizeof ao, &ao, sizeof G, &G, sizeof w, &w, sizeof nwx, &nwx,
			               sizeof E, &E, (size_t)0) ||
			    run(s, s->winpart, 2, g, NULL))
				return -1;
		} else if ((r = ln_dev(s, at(xn, 0), at(x, 0), (size_t)T, E, &b->n1, 1e-6f)))
			return r;
		if ((r = lin_dev(s, &b->qkv, at(xn, 0), N, at(qkv, 0))))
			return r;
		mp_sam_attn a;
		mp_sam_block_attn(c, b, nwx, &a);
		dop in[3] = { at(qkv, 0), at(qkv, (size_t)E), at(qkv, (size_t)2 * E) }, RH = { NULL, 0 }, RW = { NULL, 0 };
		if (a.rph && ((r = wop(s, a.rph, (size_t)(2 * a.gh - 1) * c->hd, &RH)) ||
		              (r = wop(s, a.rpw, (size_t)(2 * a.gw - 1) * c->hd, &RW))))
			return r;
		if (a.nk <= 0 || (a.rph && (a.gh * a.gw != a.nk || a.nq != a.nk)))
			return 1;
		if (attention_dev(s, &a, in, at(ao, 0), RH, RW, RH))
			return -1;
		if ((r = lin_dev(s, &b->proj, at(ao, 0), N, at(xn, 0))))
			return r;
		if (b->sa1.w)
			for (int r0 = 0; r0 < N; r0 += MC) {
				int nr = N - r0 < MC ? N - r0 : MC;
				dop a0 = at(xn, (size_t)r0 * E);
				if ((r = adapter_dev(s, &b->sa1, &b->sa2, a0, a0, at(hid, 0), nr, E, 1.0f)))
					return r;
			}
		if (b->window) {
			size_t g[2] = { (size_t)E, (size_t)T };
			if (mp_cl_args(s->winadd, sizeof x, &x, sizeof xn, &xn, sizeof G, &G, sizeof w, &w, sizeof nwx, &nwx,
			               sizeof E, &E, (size_t)0) ||
			    run(s, s->winadd, 2, g, NULL))
				return -1;
		} else {
			cl_ulong n = (cl_ulong)T * E;
			size_t g = (size_t)n;
			if (mp_cl_args(s->add, sizeof x, &x, sizeof xn, &xn, sizeof n, &n, (size_t)0) || run(s, s->add, 1, &g, NULL))
				return -1;
		}
		if ((r = ln_dev(s, at(xn, 0), at(x, 0), (size_t)T, E, &b->n2, 1e-6f)) ||
		    (r = wop(s, b->lin2.w, (size_t)E * c->mlp, &W)))
			return r;
		for (int r0 = 0; r0 < T; r0 += MC) {
			int nr = T - r0 < MC ? T - r0 : MC;
			dop xr = at(x, (size_t)r0 * E), xnr = at(xn, (size_t)r0 * E);
			if ((r = lin_dev(s, &b->lin1, xnr, nr, at(hid, 0))))
				return r;
			if (gelu_dev(s, at(hid, 0), (size_t)nr * c->mlp) ||
			    gemm_nt(s, nr, E, c->mlp, 1.0f, at(hid, 0), c->mlp, W, c->mlp, 1.0f, xr, E))
				return -1;
			if ((r = bias_dev(s, xr, nr, E, b->lin2.b, 1.0f)))
				return r;
			if (b->ma1.w && (r = adapter_dev(s, &b->ma1, &b->ma2, xnr, xr, at(hid, 0), nr, E, 0.5f)))
				return r;
		}
	}

	/* neck */
	{
		size_t g[2] = { (size_t)C, (size_t)T }, gt[2] = { (size_t)T, (size_t)C };
		if ((r = wop(s, m->neck0, (size_t)C * E, &W)) || (r = wop(s, m->neck2, (size_t)C * 9 * C, &B)))
			return r;
		if (gemm_nt(s, T, C, E, 1.0f, at(x, 0), E, W, E, 0.0f, at(ao, 0), C))
			return -1;
		if ((r = ln_dev(s, at(ao, 0), at(ao, 0), (size_t)T, C, &m->neck1, 1e-6f)))
			return r;
		if (mp_cl_args(s->im2col3, sizeof cols, &cols, sizeof ao, &ao, sizeof G, &G, sizeof C, &C, (size_t)0) ||
		    run(s, s->im2col3, 2, g, NULL) ||
		    gemm_nt(s, T, C, 9 * C, 1.0f, at(cols, 0), 9 * C, B, 9 * C, 0.0f, at(xn, 0), C))
			return -1;
		if ((r = ln_dev(s, at(xn, 0), at(xn, 0), (size_t)T, C, &m->neck3, 1e-6f)))
			return r;
		if (mp_cl_args(s->chw, sizeof em, &em, sizeof xn, &xn, sizeof T, &T, sizeof C, &C, (size_t)0) ||
		    run(s, s->chw, 2, gt, NULL))
			return -1;
	}
	return mp_cl_read(s->c, em, 0, (size_t)C * T * f, emb);
}

static int
cl_encode(void *ctx, const mp_sam *m, const float *img, float *emb)
{
	clsam *s = ctx;
	const char *e = getenv("MEDPIPE_SAM_CL_RESIDENT");

	if (s->failed)
		return cl_status(s);
	if (e && strcmp(e, "0") == 0)
		return 1;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = encode_dev(s, m, img, emb);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (r == 0)   /* the line tests/bench/sam.sh reads ("encoder: neck", "total X s") */
		mp_note("encoder: neck and %d blocks resident on the device; total %.3f s", m->cfg.depth,
		        (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
	return r;
}

/* ---------------------------------------------------------------- the resident decoder
 * The image side of mp_sam_decode's attentions (folded: dec_t2i, dec_i2t;
 * unfolded: dec_t2i_attn, dec_i2t_attn) and its upscaling (dec_masks) on
 * device buffers (mp_sam_backend's dec_* entries; sam.c keeps the prompt
 * tokens' side): per embedding the image tokens go up once (dec_begin), per
 * prompt the token operands (a few heads x tokens rows of C, or the tokens'
 * projections) go up, the attentions' token-side results and the
 * low-resolution masks come down. */
static const int dslot[MP_SAM_DSLOTS] = { DK0, DKPE0, DKEYS, DTK };

/* y (slot) = a (slot) + the model's dense positional encoding */
static int
add_pe(clsam *s, const mp_sam *m, cl_mem y, cl_mem a)
{
	size_t T = (size_t)m->cfg.grid * m->cfg.grid, n = T * (size_t)m->cfg.out_chans, g = n;
	cl_ulong un = n;
	dop P;
	int r = wop(s, m->dense_pe, n, &P);

	if (r)
		return r > 0 ? mp_seterr("opencl: the decoder's positional encoding is not on the device") : -1;
	if (mp_cl_args(s->add3, sizeof y, &y, sizeof a, &a, sizeof(cl_mem), &P.m, sizeof P.off, &P.off, sizeof un, &un,
	               (size_t)0) ||
	    run(s, s->add3, 1, &g, NULL))
		return -1;
	return 0;
}

/* 0: the image tokens on the device; 1: the decoder goes through the entries */
static int
cl_dec_begin(void *ctx, const mp_sam *m, const float *keys0, int fresh)
{
	clsam *s = ctx;
	size_t n = (size_t)m->cfg.grid * m->cfg.grid * m->cfg.out_chans * sizeof(float);
	const char *e = getenv("MEDPIPE_SAM_CL_RESIDENT");
	cl_mem k0, kpe0;

	if (s->failed)
		return cl_status(s);
	if ((e && strcmp(e, "0") == 0) || !find_const(s, m->dense_pe, n))
		return 1;
	if (!fresh && s->dec_owner == m)
		return 0;
	s->dec_owner = NULL;
	if (!(k0 = rscr(s, DK0, n)) || !(kpe0 = rscr(s, DKPE0, n)) || !rscr(s, DKEYS, n) || !rscr(s, DTK, n) ||
	    mp_cl_write(s->c, k0, 0, n, keys0) || add_pe(s, m, kpe0, k0)) {
		fail(s);
		return cl_status(s);
	}
	s->dec_owner = m;
	return 0;
}

static void
cl_dec_t2i(void *ctx, const mp_sam *m, int ks, int vs, const float *F, int HN, float sc, float *R)
{
	clsam *s = ctx;
	int C = m->cfg.out_chans, T = m->cfg.grid * m->cfg.grid;
	size_t nf = (size_t)HN * C, rows = (size_t)HN * 64, l = 64;
	cl_mem S, f, r;
	int zero = 0;

	if (s->failed)
		return;
	if (!(S = rscr(s, DS, (size_t)HN * T * sizeof(float))) || !(f = rscr(s, DF, nf * sizeof(float))) ||
	    !(r = rscr(s, DR, nf * sizeof(float))) || mp_cl_write(s->c, f, 0, nf * sizeof(float), F) ||
	    gemm_nt(s, HN, T, C, sc, at(f, 0), C, at(s->s[dslot[ks]].m, 0), C, 0.0f, at(S, 0), T) ||
	    mp_cl_args(s->soft, sizeof S, &S, sizeof T, &T, sizeof(cl_mem), &S, sizeof(cl_mem), &S, sizeof zero, &zero,
	               sizeof zero, &zero, sizeof zero, &zero, sizeof(cl_mem), &S, sizeof(cl_ulong), &(cl_ulong){ 0 },
	               sizeof zero, &zero, sizeof zero, &zero, sizeof zero, &zero, sizeof zero, &zero, sizeof zero,
	               &zero, (size_t)0) ||
	    run(s, s->soft, 1, &rows, &l)) {
		fail(s);
		return;
	}
	gop a = { at(S, 0), T, 0, 0 }, b = { at(s->s[dslot[vs]].m, 0), C, 0, 0 }, c = { at(r, 0), C, 0, 0 };
	if (dgemm(s, 0, 0, HN, C, T, 1.0f, &a, &b, 0.0f, &c, 1, 1) || mp_cl_read(s->c, r, 0, nf * sizeof(float), R))
		fail(s);
}

static void
cl_dec_i2t(void *ctx, const mp_sam *m, int qs, int rs, const float *F, const float *cb, const float *M, int HN,
           int nk, float sc, const float *lnw, const float *lnb)
{
	clsam *s = ctx;
	int C = m->cfg.out_chans, T = m->cfg.grid * m->cfg.grid, H = HN / nk;
	size_t nf = (size_t)HN * C, ng[2] = { (size_t)T, (size_t)H }, g = (size_t)T * C;
	mp_sam_norm ln = { lnw, lnb };
	cl_mem S, f, mm, c, keys = s->s[DKEYS].m, res = s->s[dslot[rs]].m;
	cl_ulong un = g;

	if (s->failed)
		return;
	if (!(S = rscr(s, DS, (size_t)HN * T * sizeof(float))) || !(f = rscr(s, DF, nf * sizeof(float))) ||
	    !(mm = rscr(s, DM, nf * sizeof(float))) || !(c = rscr(s, DC, (size_t)HN * sizeof(float))) ||
	    mp_cl_write(s->c, f, 0, nf * sizeof(float), F) || mp_cl_write(s->c, mm, 0, nf * sizeof(float), M) ||
	    mp_cl_write(s->c, c, 0, (size_t)HN * sizeof(float), cb) ||
	    gemm_nt(s, T, HN, C, sc, at(s->s[dslot[qs]].m, 0), C, at(f, 0), C, 0.0f, at(S, 0), HN) ||
	    mp_cl_args(s->softgrp, sizeof S, &S, sizeof nk, &nk, sizeof T, &T, sizeof H, &H, sizeof c, &c, (size_t)0) ||
	    run(s, s->softgrp, 2, ng, NULL))
		goto bad;
	/* the scores image token by token (T x HN: both products of the CPU
	 * kernels' kind, no transposed operand); keys = S M + res (one
	 * rounding, as the host's product onto res) */
	gop a = { at(S, 0), HN, 0, 0 }, b = { at(mm, 0), C, 0, 0 }, o = { at(keys, 0), C, 0, 0 };
	if (dgemm(s, 0, 0, T, C, HN, 1.0f, &a, &b, res == keys ? 1.0f : 0.0f, &o, 1, 1) ||
	    (res != keys && (mp_cl_args(s->add, sizeof keys, &keys, sizeof res, &res, sizeof un, &un, (size_t)0) ||
	                     run(s, s->add, 1, &g, NULL))) ||
	    ln_dev(s, at(keys, 0), at(keys, 0), (size_t)T, C, &ln, 1e-5f) || add_pe(s, m, s->s[DTK].m, keys))
		goto bad;
	return;
bad:
	fail(s);
}

/* an attention of the decoder on device operands (as attn_core's) */
static int
dec_attn(clsam *s, const mp_sam *m, int I, int nq, int nk, dop Q, dop K, dop V, dop O)
{
	mp_sam_attn a;
	dop in[3] = { Q, K, V }, none = { NULL, 0 };

	memset(&a, 0, sizeof a);
	a.nb = 1, a.nq = nq, a.nk = nk, a.heads = m->cfg.dec_heads, a.hd = I / a.heads;
	a.ldq = a.ldk = a.ldv = a.ldo = I;
	a.scale = 1.0f / sqrtf((float)a.hd);
	return attention_dev(s, &a, in, O, none, none, none);
}

static void
cl_dec_t2i_attn(void *ctx, const mp_sam *m, const mp_sam_tattn *A, int ks, int vs, const float *Q, int nq, float *O)
{
	clsam *s = ctx;
	int T = m->cfg.grid * m->cfg.grid, I = A->q.out;
	size_t nf = (size_t)nq * I * sizeof(float);
	cl_mem q, k, v, o;

	if (s->failed)
		return;
	if (!(q = rscr(s, DF, nf)) || !(o = rscr(s, DR, nf)) || !(k = rscr(s, DP1, (size_t)T * I * sizeof(float))) ||
	    !(v = rscr(s, DP2, (size_t)T * I * sizeof(float))) || mp_cl_write(s->c, q, 0, nf, Q) ||
	    lin_dev(s, &A->k, at(s->s[dslot[ks]].m, 0), T, at(k, 0)) ||
	    lin_dev(s, &A->v, at(s->s[dslot[vs]].m, 0), T, at(v, 0)) ||
	    dec_attn(s, m, I, nq, T, at(q, 0), at(k, 0), at(v, 0), at(o, 0)) || mp_cl_read(s->c, o, 0, nf, O))
		fail(s);
}

static void
cl_dec_i2t_attn(void *ctx, const mp_sam *m, const mp_sam_tattn *A, int qs, int rs, const float *K, const float *V,
                int nk, const float *lnw, const float *lnb)
{
	clsam *s = ctx;
	int T = m->cfg.grid * m->cfg.grid, I = A->q.out, C = m->cfg.out_chans;
	size_t nf = (size_t)nk * I * sizeof(float), n = (size_t)T * C;
	mp_sam_norm ln = { lnw, lnb };
	cl_mem k, v, q, o, y, keys = s->s[DKEYS].m, res = s->s[dslot[rs]].m;
	cl_ulong un = n, z = 0;
	size_t g = n;

	if (s->failed)
		return;
	if (!(k = rscr(s, DF, nf)) || !(v = rscr(s, DM, nf)) || !(q = rscr(s, DP1, (size_t)T * I * sizeof(float))) ||
	    !(o = rscr(s, DP2, (size_t)T * I * sizeof(float))) || !(y = rscr(s, DP3, n * sizeof(float))) ||
	    mp_cl_write(s->c, k, 0, nf, K) || mp_cl_write(s->c, v, 0, nf, V) ||
	    lin_dev(s, &A->q, at(s->s[dslot[qs]].m, 0), T, at(q, 0)) ||
	    dec_attn(s, m, I, T, nk, at(q, 0), at(k, 0), at(v, 0), at(o, 0)) || lin_dev(s, &A->o, at(o, 0), T, at(y, 0)) ||
	    mp_cl_args(s->add3, sizeof keys, &keys, sizeof res, &res, sizeof y, &y, sizeof z, &z, sizeof un, &un,
	               (size_t)0) ||
	    run(s, s->add3, 1, &g, NULL) || ln_dev(s, at(keys, 0), at(keys, 0), (size_t)T, C, &ln, 1e-5f) ||
	    add_pe(s, m, s->s[DTK].m, keys))
		fail(s);
}

/* the upscaling of KEYS and the masks' products with the hypernetwork's
 * vectors: the steps of mp_sam_decode's host code, on the device */
static void
cl_dec_masks(void *ctx, const mp_sam *m, const float *wt, const float *hyper, int NM, float *lowres)
{
	clsam *s = ctx;
	const mp_sam_config *cf = &m->cfg;
	int C = cf->out_chans, G = cf->grid, T = G * G, C4 = C / 4, C8 = C / 8, G2 = 2 * G, G4 = 4 * G;
	size_t f = sizeof(float), nl = (size_t)NM * G4 * G4;
	size_t g1[3] = { (size_t)C4, 4, (size_t)T }, g2[3] = { (size_t)C8, 4, (size_t)G2 * G2 };
	cl_mem y, u, h, low, keys = s->s[DKEYS].m;
	dop W0, W3, B0, B3;
	int r;

	if (s->failed)
		return;
	if ((r = wop(s, wt, (size_t)C * C4 * 4 + (size_t)C4 * C8 * 4, &W0)) || (r = wop(s, m->up0_b, (size_t)C4, &B0)) ||
	    (r = wop(s, m->up3_b, (size_t)C8, &B3))) {
		if (r > 0)
			mp_seterr("opencl: the decoder's upscaling weights are not on the device");
		goto bad;
	}
	W3 = at(W0.m, (size_t)W0.off + (size_t)C * C4 * 4);
	if (!(y = rscr(s, DY, (size_t)G2 * G2 * C8 * 4 * f)) || !(u = rscr(s, DU, (size_t)G4 * G4 * C8 * f)) ||
	    !(h = rscr(s, DH, (size_t)NM * C8 * f)) || !(low = rscr(s, DL, nl * f)) ||
	    mp_cl_write(s->c, h, 0, (size_t)NM * C8 * f, hyper))
		goto bad;
	gop a = { at(keys, 0), C, 0, 0 }, b = { W0, C4 * 4, 0, 0 }, o = { at(y, 0), C4 * 4, 0, 0 };
	if (dgemm(s, 0, 0, T, C4 * 4, C, 1.0f, &a, &b, 0.0f, &o, 1, 1) ||
	    mp_cl_args(s->upshuf, sizeof u, &u, sizeof y, &y, sizeof(cl_mem), &B0.m, sizeof B0.off, &B0.off, sizeof G,
	               &G, sizeof C4, &C4, (size_t)0) ||
	    run(s, s->upshuf, 3, g1, NULL) || ln_dev(s, at(u, 0), at(u, 0), (size_t)G2 * G2, C4, &m->up1, 1e-6f) ||
	    gelu_dev(s, at(u, 0), (size_t)G2 * G2 * C4))
		goto bad;
	gop a2 = { at(u, 0), C4, 0, 0 }, b2 = { W3, C8 * 4, 0, 0 }, o2 = { at(y, 0), C8 * 4, 0, 0 };
	if (dgemm(s, 0, 0, G2 * G2, C8 * 4, C4, 1.0f, &a2, &b2, 0.0f, &o2, 1, 1) ||
	    mp_cl_args(s->upshuf, sizeof u, &u, sizeof y, &y, sizeof(cl_mem), &B3.m, sizeof B3.off, &B3.off, sizeof G2,
	               &G2, sizeof C8, &C8, (size_t)0) ||
	    run(s, s->upshuf, 3, g2, NULL) || gelu_dev(s, at(u, 0), (size_t)G4 * G4 * C8) ||
	    gemm_nt(s, NM, G4 * G4, C8, 1.0f, at(h, 0), C8, at(u, 0), C8, 0.0f, at(low, 0), G4 * G4) ||
	    mp_cl_read(s->c, low, 0, nl * f, lowres))
		goto bad;
	return;
bad:
	fail(s);
}

/* ---------------------------------------------------------------- setup */
static void
release(void *v)
{
	clsam *s = v;
	cl_forget(s);
	free(s->w);
	for (int i = 0; i < NSCR; i++)
		if (s->s[i].m)
			clReleaseMemObject(s->s[i].m);
	free(s);
}

const mp_sam_backend *
mp_cl_sam_backend(mp_cl *c)
{
	void **slot = mp_cl_slot(c, MP_CL_SLOT_SAM, release);
	static const char *gn[4] = { "gemm_nn", "gemm_nt", "gemm_tn", "gemm_tt" };
	clsam *s;

	if (*slot)
		return &((clsam *)*slot)->be;
	if (mp_cl_info(c)->max_wg < 256)
		return mp_seterr("opencl: %s: SAM needs work-groups of 256 items (the device allows %zu)",
		                 mp_cl_info(c)->name, mp_cl_info(c)->max_wg), NULL;
	s = mp_xcalloc(1, sizeof *s);
	s->c = c;
	for (int i = 0; i < 4; i++)
		if (!(s->gemm[i] = mp_cl_kernel(c, "sam", gn[i])))
			goto bad;
	s->cpu = mp_cl_info(c)->type == MP_CL_CPU;
	if (!(s->gemm_v[0] = mp_cl_kernel(c, "sam", "gemm_nn_v")) || !(s->gemm_v[1] = mp_cl_kernel(c, "sam", "gemm_nt_v")) ||
	    !(s->ln = mp_cl_kernel(c, "sam", "layernorm")) || !(s->gelu = mp_cl_kernel(c, "sam", "gelu")) ||
	    !(s->rel = mp_cl_kernel(c, "sam", "relpos")) || !(s->soft = mp_cl_kernel(c, "sam", "softmax_rel")) ||
	    !(s->im2col = mp_cl_kernel(c, "sam", "patch_im2col")) || !(s->patchpos = mp_cl_kernel(c, "sam", "patch_pos")) ||
	    !(s->bias = mp_cl_kernel(c, "sam", "bias_rows")) || !(s->add = mp_cl_kernel(c, "sam", "add_to")) ||
	    !(s->winpart = mp_cl_kernel(c, "sam", "win_part")) || !(s->winadd = mp_cl_kernel(c, "sam", "win_unpart_add")) ||
	    !(s->im2col3 = mp_cl_kernel(c, "sam", "im2col3")) || !(s->chw = mp_cl_kernel(c, "sam", "to_chw")) ||
	    !(s->fused = mp_cl_kernel(c, "sam", "attn_fused")) || !(s->add3 = mp_cl_kernel(c, "sam", "add3")) ||
	    !(s->softgrp = mp_cl_kernel(c, "sam", "softmax_groups")) || !(s->upshuf = mp_cl_kernel(c, "sam", "up_shuffle")))
		goto bad;
	s->be.name = "opencl";
	s->be.ctx = s;
	s->be.gemm = cl_gemm;
	s->be.layernorm = cl_layernorm;
	s->be.gelu = cl_gelu;
	s->be.attention = cl_attention;
	s->be.constant = cl_constant;
	s->be.forget = cl_forget;
	s->be.status = cl_status;
	s->be.encode = cl_encode;
	s->be.dec_begin = cl_dec_begin;
	s->be.dec_t2i = cl_dec_t2i;
	s->be.dec_i2t = cl_dec_i2t;
	s->be.dec_masks = cl_dec_masks;
	s->be.dec_t2i_attn = cl_dec_t2i_attn;
	s->be.dec_i2t_attn = cl_dec_i2t_attn;
	*slot = s;
	return &s->be;
bad:
	free(s);
	return NULL;
}
