/* sam_tinyvit.c - the TinyViT image encoder of LiteMedSAM (256x256 input)
 * and MobileSAM (1024x1024), see mp_sam.h and sam_ld.h. Written from the
 * structure of the official model (TinyViT as adapted by MobileSAM and
 * LiteMedSAM), worked out from the checkpoint's tensor names and shapes:
 *
 *   stem        two convolutions with batch norm, GELU between: 1x1 stride 1
 *               (LiteMedSAM) or 3x3 stride 2 (MobileSAM)
 *   stage 0     MBConv blocks: 1x1 conv, GELU, depthwise 3x3, GELU, 1x1 conv,
 *               + input, GELU (every conv with batch norm)
 *   stages 1..  TinyViT blocks: x += windowed attention (layer norm inside,
 *               learned bias per head and (|dy|,|dx|) offset, zero padding of
 *               the un-normalised tokens to whole windows); x = depthwise 3x3
 *               conv + batch norm (x); x += MLP (layer norm, fc1, GELU, fc2)
 *   merging     after every stage but the last: 1x1 conv, GELU, depthwise 3x3
 *               of stride 2 (1 when the output width is 320, 448 or 576, as
 *               the official code), GELU, 1x1 conv
 *   neck        as SAM's: 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d
 *
 * Batch norms are folded into their convolutions at load time (in double).
 * Activations are channels-last (token-major): rows of pixels, C floats
 * each. Matrix products, layer norms, GELU and attention go through the
 * backend (mp_sam_backend); the depthwise convolutions, window partitioning
 * and im2col run here, threaded. */
#include "mp_sam.h"
#include "mp.h"
#include "sam_ld.h"
#include "sam_tvit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BN_EPS 1e-5
#define LN_EPS 1e-5f

/* ================================================================ loading */
#define S1(a) (const int64_t[]){ (a) }
#define S2(a, b) (const int64_t[]){ (a), (b) }
#define S4(a, b, c, d) (const int64_t[]){ (a), (b), (c), (d) }

static float *
own(struct mp_tvit *t, size_t n)
{
	t->own = mp_xrealloc(t->own, (t->nown + 1) * sizeof *t->own);
	t->ownsz = mp_xrealloc(t->ownsz, (t->nown + 1) * sizeof *t->ownsz);
	t->own[t->nown] = mp_xcalloc(n ? n : 1, sizeof(float));
	t->ownsz[t->nown] = n;
	return t->own[t->nown++];
}

/* Conv2d_BN: PREFIX.c.weight and PREFIX.bn.{weight,bias,running_mean,running_var} */
static void
conv_bn(mp_sam_ld *l, struct mp_tvit *t, tconv *c, int out, int in, int k, int stride, int dw, const char *prefix)
{
	const float *w = mp_sam_ld_req(l, 4, S4(out, dw ? 1 : in, k, k), "%s.c.weight", prefix);
	const float *g = mp_sam_ld_req(l, 1, S1(out), "%s.bn.weight", prefix);
	const float *b = mp_sam_ld_req(l, 1, S1(out), "%s.bn.bias", prefix);
	const float *mu = mp_sam_ld_req(l, 1, S1(out), "%s.bn.running_mean", prefix);
	const float *var = mp_sam_ld_req(l, 1, S1(out), "%s.bn.running_var", prefix);
	mp_tensor *nb;
	char name[256];

	snprintf(name, sizeof name, "%s.bn.num_batches_tracked", prefix);
	if ((nb = mp_sam_ld_find(l, name)) != NULL)
		l->used[nb - l->m->td.t] = 1;
	c->out = out;
	c->in = in;
	c->k = k;
	c->stride = stride;
	c->dw = dw;
	if (l->err)
		return;
	size_t per = (size_t)(dw ? 1 : in) * k * k;
	c->w = own(t, (size_t)out * per);
	c->b = own(t, (size_t)out);
	for (int o = 0; o < out; o++) {
		double s = (double)g[o] / sqrt((double)var[o] + BN_EPS);
		c->b[o] = (float)((double)b[o] - (double)mu[o] * s);
		for (size_t j = 0; j < per; j++) {
			float v = (float)((double)w[(size_t)o * per + j] * s);
			if (dw)
				c->w[j * (size_t)out + (size_t)o] = v;   /* k x k x out */
			else
				c->w[(size_t)o * per + j] = v;
		}
	}
}

static void
lin(mp_sam_ld *l, mp_sam_lin *L, int out, int in, const char *fmt, int a, int b)
{
	char p[200];

	snprintf(p, sizeof p, fmt, a, b);
	mp_sam_ld_lin(l, L, out, in, p);
}

#define norm_p mp_sam_ld_norm

static void
norm(mp_sam_ld *l, mp_sam_norm *n, int d, const char *fmt, int a, int b)
{
	char p[200];

	snprintf(p, sizeof p, fmt, a, b);
	norm_p(l, n, d, p);
}

static int
exists(mp_sam_ld *l, const char *fmt, int a, int b)
{
	char p[200];

	snprintf(p, sizeof p, fmt, a, b);
	return mp_sam_ld_find(l, p) != NULL;
}

/* stage i, MBConv or TinyViT block j */
static void
load_block(mp_sam_ld *l, struct mp_tvit *t, tstage *s, int i, int j)
{
	char p[200];
	int C = s->dim;

	if (s->conv) {
		tmb *b = &s->mb[j];
		snprintf(p, sizeof p, "image_encoder.layers.%d.blocks.%d.conv1", i, j);
		conv_bn(l, t, &b->c1, s->hidden, C, 1, 1, 0, p);
		snprintf(p, sizeof p, "image_encoder.layers.%d.blocks.%d.conv2", i, j);
		conv_bn(l, t, &b->c2, s->hidden, s->hidden, 3, 1, 1, p);
		snprintf(p, sizeof p, "image_encoder.layers.%d.blocks.%d.conv3", i, j);
		conv_bn(l, t, &b->c3, C, s->hidden, 1, 1, 0, p);
		return;
	}
	tblk *b = &s->bk[j];
	int H = s->heads, kd = C / H, ws = s->window, N = ws * ws;
	const float *ab = mp_sam_ld_req(l, 2, S2(H, N), "image_encoder.layers.%d.blocks.%d.attn.attention_biases", i, j);
	norm(l, &b->an, C, "image_encoder.layers.%d.blocks.%d.attn.norm", i, j);
	lin(l, &b->qkv, 3 * C, C, "image_encoder.layers.%d.blocks.%d.attn.qkv", i, j);
	lin(l, &b->proj, C, C, "image_encoder.layers.%d.blocks.%d.attn.proj", i, j);
	norm(l, &b->mn, C, "image_encoder.layers.%d.blocks.%d.mlp.norm", i, j);
	lin(l, &b->fc1, s->hidden, C, "image_encoder.layers.%d.blocks.%d.mlp.fc1", i, j);
	lin(l, &b->fc2, C, s->hidden, "image_encoder.layers.%d.blocks.%d.mlp.fc2", i, j);
	int lk = 3;
	snprintf(p, sizeof p, "image_encoder.layers.%d.blocks.%d.local_conv.c.weight", i, j);
	mp_tensor *lt = mp_sam_ld_find(l, p);
	if (lt && lt->ndim == 4 && lt->shape[2] >= 1 && lt->shape[2] <= 7 && lt->shape[2] % 2 == 1)
		lk = (int)lt->shape[2];
	snprintf(p, sizeof p, "image_encoder.layers.%d.blocks.%d.local_conv", i, j);
	conv_bn(l, t, &b->lc, C, C, lk, 1, 1, p);
	if (l->err)
		return;
	/* qkv: the official layout is per head [q (kd) k (kd) v (kd)]; reorder
	 * the rows to [q of every head | k | v] for the backend's attention */
	float *w = own(t, (size_t)3 * C * C), *bb = own(t, (size_t)3 * C);
	for (int h = 0; h < H; h++)
		for (int part = 0; part < 3; part++)
			for (int e = 0; e < kd; e++) {
				size_t src = (size_t)h * 3 * kd + (size_t)part * kd + e, dst = (size_t)part * C + (size_t)h * kd + e;
				memcpy(w + dst * C, b->qkv.w + src * C, (size_t)C * sizeof(float));
				bb[dst] = b->qkv.b[src];
			}
	b->qkv.w = w;
	b->qkv.b = bb;
	/* bias of query i and key j: the head's entry for offset (|dy|, |dx|),
	 * numbered |dy| * ws + |dx| (the order the official code meets them) */
	b->bias = own(t, (size_t)H * N * N);
	for (int h = 0; h < H; h++)
		for (int qi = 0; qi < N; qi++)
			for (int ki = 0; ki < N; ki++) {
				int dy = abs(qi / ws - ki / ws), dx = abs(qi % ws - ki % ws);
				b->bias[((size_t)h * N + qi) * N + ki] = ab[(size_t)h * N + (size_t)dy * ws + dx];
			}
}

int
mp_sam_tvit_load(mp_sam_ld *l)
{
	mp_sam *m = l->m;
	mp_sam_config *c = &m->cfg;
	struct mp_tvit *t = mp_xcalloc(1, sizeof *t);
	char p[200];

	m->tv = t;
	int n2 = (int)mp_sam_ld_dim(l, "image_encoder.patch_embed.seq.0.c.weight", 4, 0);
	int k = (int)mp_sam_ld_dim(l, "image_encoder.patch_embed.seq.0.c.weight", 4, 2);
	int n = (int)mp_sam_ld_dim(l, "image_encoder.patch_embed.seq.2.c.weight", 4, 0);
	if (l->err)
		return -1;
	if ((k != 1 && k != 3) || n2 < 1 || n < 1 || n > 4096 || n2 > 4096)
		return mp_seterr("tensor image_encoder.patch_embed.seq.0.c.weight: a %dx%d stem of width %d (TinyViT: 1x1 or 3x3)",
		                 k, k, n2);
	int st = k == 1 ? 1 : 2;
	conv_bn(l, t, &t->stem[0], n2, 3, k, st, 0, "image_encoder.patch_embed.seq.0");
	conv_bn(l, t, &t->stem[1], n, n2, k, st, 0, "image_encoder.patch_embed.seq.2");
	int stride = st * st, dim = n, depth = 0;
	for (int i = 0;; i++) {
		int conv = exists(l, "image_encoder.layers.%d.blocks.%d.conv1.c.weight", i, 0);
		int att = exists(l, "image_encoder.layers.%d.blocks.%d.attn.qkv.weight", i, 0);
		if (!conv && !att)
			break;
		if (i == TV_MAXSTAGE)
			return mp_seterr("more than %d TinyViT stages", TV_MAXSTAGE);
		tstage *s = &t->st[t->nstage++];
		s->dim = dim;
		s->conv = conv;
		char f[100];
		snprintf(f, sizeof f, conv ? "image_encoder.layers.%d.blocks.%%d.conv1.c.weight" :
		                             "image_encoder.layers.%d.blocks.%%d.attn.qkv.weight", i);
		s->depth = mp_sam_ld_count(l, f);
		if (s->depth > TV_MAXDEPTH)
			return mp_seterr("stage %d: %d blocks, at most %d", i, s->depth, TV_MAXDEPTH);
		snprintf(p, sizeof p, conv ? "image_encoder.layers.%d.blocks.0.conv1.c.weight" :
		                             "image_encoder.layers.%d.blocks.0.mlp.fc1.weight", i);
		s->hidden = (int)mp_sam_ld_dim(l, p, conv ? 4 : 2, 0);
		if (!conv) {
			snprintf(p, sizeof p, "image_encoder.layers.%d.blocks.0.attn.attention_biases", i);
			s->heads = (int)mp_sam_ld_dim(l, p, 2, 0);
			int no = (int)mp_sam_ld_dim(l, p, 2, 1);
			s->window = (int)lround(sqrt((double)no));
			if (l->err)
				return -1;
			if (s->heads < 1 || dim % s->heads || s->window < 1 || s->window > 64 || s->window * s->window != no)
				return mp_seterr("tensor %s: %d heads for width %d, %d offsets (not a square window)", p,
				                 s->heads, dim, no);
		}
		if (l->err)
			return -1;
		if (s->hidden < 1 || s->hidden > 65536)
			return mp_seterr("stage %d: hidden width %d", i, s->hidden);
		for (int j = 0; j < s->depth; j++)
			load_block(l, t, s, i, j);
		depth += s->depth;
		snprintf(p, sizeof p, "image_encoder.layers.%d.downsample.conv1.c.weight", i);
		s->down = mp_sam_ld_find(l, p) != NULL;
		s->out_dim = dim;
		if (s->down) {
			snprintf(p, sizeof p, "image_encoder.layers.%d.downsample.conv1.c.weight", i);
			int od = (int)mp_sam_ld_dim(l, p, 4, 0);
			if (l->err)
				return -1;
			if (od < 1 || od > 4096)
				return mp_seterr("tensor %s: width %d", p, od);
			int ps = od == 320 || od == 448 || od == 576 ? 1 : 2;
			snprintf(p, sizeof p, "image_encoder.layers.%d.downsample.conv1", i);
			conv_bn(l, t, &s->pm.c1, od, dim, 1, 1, 0, p);
			snprintf(p, sizeof p, "image_encoder.layers.%d.downsample.conv2", i);
			conv_bn(l, t, &s->pm.c2, od, od, 3, ps, 1, p);
			snprintf(p, sizeof p, "image_encoder.layers.%d.downsample.conv3", i);
			conv_bn(l, t, &s->pm.c3, od, od, 1, 1, 0, p);
			s->out_dim = od;
			stride *= ps;
		}
		dim = s->out_dim;
		if (l->err)
			return -1;
	}
	if (t->nstage < 2 || !t->st[0].conv)
		return mp_seterr("TinyViT: %d stages (an MBConv stage, then attention stages, expected)", t->nstage);
	for (int i = 1; i < t->nstage; i++)
		if (t->st[i].conv)
			return mp_seterr("TinyViT: stage %d of MBConv blocks after an attention stage", i);
	if (t->st[t->nstage - 1].down)
		return mp_seterr("TinyViT: the last stage has a downsampling layer");
	/* the official models end on a 64x64 grid (their forward hard-codes it):
	 * the input size is 64 times the strides */
	c->grid = 64;
	c->img_size = 64 * stride;
	c->patch = stride;
	int R = c->img_size;
	for (int i = 0; i < 2; i++)
		R = (R + 2 * (k / 2) - k) / st + 1;
	for (int i = 0; i < t->nstage; i++) {
		tstage *s = &t->st[i];
		s->res = R;
		if (s->down)
			R = (R + 2 - 3) / s->pm.c2.stride + 1;
		s->out_res = R;
	}
	if (R != c->grid)
		return mp_seterr("TinyViT: the last stage's grid is %d, not %d", R, c->grid);
	c->embed = dim;
	c->depth = depth;
	c->out_chans = (int)mp_sam_ld_dim(l, "image_encoder.neck.0.weight", 4, 0);
	if (l->err)
		return -1;
	int C = c->out_chans;
	if (C < 16 || C % 16)
		return mp_seterr("tensor image_encoder.neck.0.weight: %d output channels", C);
	t->neck0 = mp_sam_ld_req(l, 4, S4(C, dim, 1, 1), "image_encoder.neck.0.weight");
	norm_p(l, &t->neck1, C, "image_encoder.neck.1");
	t->neck2 = mp_sam_ld_req(l, 4, S4(C, C, 3, 3), "image_encoder.neck.2.weight");
	norm_p(l, &t->neck3, C, "image_encoder.neck.3");
	/* MobileSAM's TinyViT keeps an unused classifier head */
	for (size_t i = 0; i < m->td.n; i++)
		if (strncmp(m->td.t[i].name, "image_encoder.norm_head.", 24) == 0 ||
		    strncmp(m->td.t[i].name, "image_encoder.head.", 19) == 0)
			l->used[i] = 1;
	snprintf(c->arch, sizeof c->arch, "tinyvit_%d", c->img_size);
	c->heads = t->st[t->nstage - 1].heads;
	c->hd = dim / c->heads;
	c->mlp = t->st[t->nstage - 1].hidden;
	c->window = t->st[t->nstage - 1].window;
	c->nglobal = 0;
	return l->err ? -1 : 0;
}

void
mp_sam_tvit_free(mp_sam *m)
{
	struct mp_tvit *t = m->tv;

	if (!t)
		return;
	for (size_t i = 0; i < t->nown; i++)
		free(t->own[i]);
	free(t->own);
	free(t->ownsz);
	free(t);
	m->tv = NULL;
}

void
mp_sam_tvit_constant(mp_sam *m)
{
	struct mp_tvit *t = m->tv;

	if (!t || !m->be->constant)
		return;
	for (size_t i = 0; i < t->nown; i++)
		m->be->constant(m->be->ctx, t->own[i], t->ownsz[i] * sizeof(float));
}

void
mp_sam_tvit_describe(const mp_sam *m, char *buf, size_t n)
{
	const struct mp_tvit *t = m->tv;
	const mp_sam_config *c = &m->cfg;
	size_t p = (size_t)snprintf(buf, n, "%s (TinyViT, %s; %dx%d stem; widths", c->arch,
	                            c->img_size == 256 ? "LiteMedSAM" : c->img_size == 1024 ? "MobileSAM" : "other",
	                            t->stem[0].k, t->stem[0].k);
	for (int i = 0; i < t->nstage && p < n; i++)
		p += (size_t)snprintf(buf + p, n - p, "%s%d", i ? "," : " ", t->st[i].dim);
	if (p < n)
		p += (size_t)snprintf(buf + p, n - p, ", depths");
	for (int i = 0; i < t->nstage && p < n; i++)
		p += (size_t)snprintf(buf + p, n - p, "%s%d", i ? "," : " ", t->st[i].depth);
	if (p < n)
		snprintf(buf + p, n - p, "; image %d, embedding %dx%dx%d)", c->img_size, c->out_chans, c->grid, c->grid);
}

static void
add_bias(float *y, size_t rows, int n, const float *b)
{
	for (size_t r = 0; r < rows; r++) {
		float *yr = y + r * (size_t)n;
		for (int j = 0; j < n; j++)
			yr[j] += b[j];
	}
}

/* y (rows x out) = x (rows x in) W^T + b */
static void
linear(const mp_sam *m, const float *w, const float *b, int out, int in, const float *x, size_t rows, float *y)
{
	m->be->gemm(m->be->ctx, 0, 1, (int)rows, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
	if (b)
		add_bias(y, rows, out, b);
}

/* rows in parallel (pthreads; the backend's CPU thread count) */
typedef struct {
	void (*fn)(void *ctx, size_t r0, size_t r1);
	void *ctx;
	size_t r0, r1;
} prange;

static void *
prange_run(void *a)
{
	prange *p = a;
	p->fn(p->ctx, p->r0, p->r1);
	return NULL;
}

static void
prows(size_t n, void (*fn)(void *, size_t, size_t), void *ctx)
{
	int nt = mp_sam_threads();
	pthread_t th[64];
	prange pr[64];
	int started[64] = { 0 };

	if (nt > 64)
		nt = 64;
	if ((size_t)nt > n / 4)
		nt = (int)(n / 4);
	if (nt <= 1) {
		fn(ctx, 0, n);
		return;
	}
	for (int i = 0; i < nt; i++) {
		pr[i].fn = fn;
		pr[i].ctx = ctx;
		pr[i].r0 = n * (size_t)i / (size_t)nt;
		pr[i].r1 = n * (size_t)(i + 1) / (size_t)nt;
	}
	for (int i = 1; i < nt; i++)
		started[i] = pthread_create(&th[i], NULL, prange_run, &pr[i]) == 0;
	prange_run(&pr[0]);
	for (int i = 1; i < nt; i++) {
		if (started[i])
			pthread_join(th[i], NULL);
		else
			prange_run(&pr[i]);
	}
}

/* depthwise k x k convolution (pad k/2), channels-last, + folded bias */
typedef struct {
	const tconv *c;
	const float *x;
	float *y;
	int R, Ro;
} dw_ctx;

static void
dw_rows(void *vc, size_t r0, size_t r1)
{
	dw_ctx *d = vc;
	const tconv *c = d->c;
	int C = c->out, k = c->k, p = k / 2, s = c->stride, R = d->R, Ro = d->Ro;

	for (size_t oy = r0; oy < r1; oy++)
		for (int ox = 0; ox < Ro; ox++) {
			float *y = d->y + ((size_t)oy * Ro + ox) * C;
			memcpy(y, c->b, (size_t)C * sizeof(float));
			for (int kh = 0; kh < k; kh++) {
				int iy = (int)oy * s + kh - p;
				if (iy < 0 || iy >= R)
					continue;
				for (int kw = 0; kw < k; kw++) {
					int ix = ox * s + kw - p;
					if (ix < 0 || ix >= R)
						continue;
					const float *x = d->x + ((size_t)iy * R + ix) * C, *w = c->w + (size_t)(kh * k + kw) * C;
					for (int ch = 0; ch < C; ch++)
						y[ch] += x[ch] * w[ch];
				}
			}
		}
}

static int
conv_out(const tconv *c, int R)
{
	return (R + 2 * (c->k / 2) - c->k) / c->stride + 1;
}

static void
dwconv(const tconv *c, const float *x, int R, float *y)
{
	dw_ctx d = { c, x, y, R, conv_out(c, R) };
	prows((size_t)d.Ro, dw_rows, &d);
}

/* im2col of a channels-last R x R x Ci image for a k x k conv (stride s,
 * pad k/2): rows (oy, ox), columns (ci, kh, kw) as torch's weights */
typedef struct {
	const float *x;
	float *cols;
	int R, Ro, Ci, k, s;
} im_ctx;

static void
im_rows(void *vc, size_t r0, size_t r1)
{
	im_ctx *d = vc;
	int k = d->k, p = k / 2, K = d->Ci * k * k;

	for (size_t oy = r0; oy < r1; oy++)
		for (int ox = 0; ox < d->Ro; ox++) {
			float *r = d->cols + ((size_t)oy * d->Ro + ox) * K;
			for (int kh = 0; kh < k; kh++)
				for (int kw = 0; kw < k; kw++) {
					int iy = (int)oy * d->s + kh - p, ix = ox * d->s + kw - p;
					int in = iy >= 0 && iy < d->R && ix >= 0 && ix < d->R;
					const float *x = in ? d->x + ((size_t)iy * d->R + ix) * d->Ci : NULL;
					for (int ci = 0; ci < d->Ci; ci++)
						r[(ci * k + kh) * k + kw] = in ? x[ci] : 0.0f;
				}
		}
}

/* dense conv (weights out x in x k x k) of a channels-last image; y gets
 * Ro x Ro x out. -1 on memory. */
static int
conv_dense(const mp_sam *m, const float *w, const float *b, int out, int in, int k, int s, const float *x, int R,
           float *y)
{
	int Ro = (R + 2 * (k / 2) - k) / s + 1;
	size_t rows = (size_t)Ro * Ro;

	if (k == 1 && s == 1) {
		linear(m, w, b, out, in, x, rows, y);
		return 0;
	}
	int K = in * k * k;
	float *cols = malloc(rows * (size_t)K * sizeof(float));
	if (!cols)
		return -1;
	im_ctx d = { x, cols, R, Ro, in, k, s };
	prows((size_t)Ro, im_rows, &d);
	linear(m, w, b, out, K, cols, rows, y);
	free(cols);
	return 0;
}

/* ================================================================ encoder */
typedef struct {
	float *a, *b, *c;       /* work buffers, each `cap` floats */
	size_t cap;
} bufs;

static int
mbconv(const mp_sam *m, const tmb *mb, float **x, int R, bufs *w)
{
	const mp_sam_backend *be = m->be;
	size_t T = (size_t)R * R;
	float *h = w->a, *h2 = w->b;

	linear(m, mb->c1.w, mb->c1.b, mb->c1.out, mb->c1.in, *x, T, h);
	be->gelu(be->ctx, h, T * (size_t)mb->c1.out);
	dwconv(&mb->c2, h, R, h2);
	be->gelu(be->ctx, h2, T * (size_t)mb->c2.out);
	/* y = conv3(h2) + x, then GELU */
	float *y = w->a;
	memcpy(y, *x, T * (size_t)mb->c3.out * sizeof(float));
	be->gemm(be->ctx, 0, 1, (int)T, mb->c3.out, mb->c3.in, 1.0f, h2, mb->c3.in, mb->c3.w, mb->c3.in, 1.0f, y,
	         mb->c3.out);
	add_bias(y, T, mb->c3.out, mb->c3.b);
	be->gelu(be->ctx, y, T * (size_t)mb->c3.out);
	/* x keeps to its own (small) buffer: fewer pages touched */
	memcpy(*x, y, T * (size_t)mb->c3.out * sizeof(float));
	return 0;
}

static int
merge(const mp_sam *m, const tmb *pm, float **x, int R, bufs *w)
{
	const mp_sam_backend *be = m->be;
	size_t T = (size_t)R * R;
	int Ro = conv_out(&pm->c2, R);
	size_t To = (size_t)Ro * Ro;

	linear(m, pm->c1.w, pm->c1.b, pm->c1.out, pm->c1.in, *x, T, w->a);
	be->gelu(be->ctx, w->a, T * (size_t)pm->c1.out);
	dwconv(&pm->c2, w->a, R, w->b);
	be->gelu(be->ctx, w->b, To * (size_t)pm->c2.out);
	linear(m, pm->c3.w, pm->c3.b, pm->c3.out, pm->c3.in, w->b, To, *x);
	return 0;
}

/* one TinyViT block on x (R x R x C) */
static int
tvblock(const mp_sam *m, const tstage *s, const tblk *b, float **xp, int R, bufs *w)
{
	const mp_sam_backend *be = m->be;
	int C = s->dim, ws = s->window, N = ws * ws, H = s->heads, kd = C / H;
	int nw = (R + ws - 1) / ws, nb = nw * nw;
	size_t T = (size_t)R * R, rows = (size_t)nb * N;
	float *x = *xp, *xw = w->a, *qkv = w->b, *ao = w->c;

	/* windows of the un-normalised tokens, zero padded (then normalised:
	 * a padded token becomes the norm's bias, as in the official code) */
	if (nw == 1 && R == ws)
		memcpy(xw, x, T * (size_t)C * sizeof(float));
	else {
		memset(xw, 0, rows * (size_t)C * sizeof(float));
		for (int gy = 0; gy < R; gy++)
			for (int gx = 0; gx < R; gx++) {
				size_t wi = (size_t)(gy / ws) * nw + (size_t)(gx / ws), ti = (size_t)(gy % ws) * ws + (size_t)(gx % ws);
				memcpy(xw + (wi * N + ti) * C, x + ((size_t)gy * R + gx) * C, (size_t)C * sizeof(float));
			}
	}
	be->layernorm(be->ctx, xw, xw, rows, (size_t)C, b->an.w, b->an.b, LN_EPS);
	linear(m, b->qkv.w, b->qkv.b, 3 * C, C, xw, rows, qkv);
	mp_sam_attn a;
	memset(&a, 0, sizeof a);
	a.nb = nb;
	a.nq = a.nk = N;
	a.heads = H;
	a.hd = kd;
	a.q = qkv;
	a.k = qkv + C;
	a.v = qkv + 2 * C;
	a.ldq = a.ldk = a.ldv = 3 * C;
	a.bsq = a.bsk = a.bsv = (size_t)N * 3 * C;
	a.o = ao;
	a.ldo = C;
	a.bso = (size_t)N * C;
	a.scale = 1.0f / sqrtf((float)kd);
	a.bias = b->bias;
	be->attention(be->ctx, &a);
	linear(m, b->proj.w, b->proj.b, C, C, ao, rows, xw);
	for (int gy = 0; gy < R; gy++)
		for (int gx = 0; gx < R; gx++) {
			size_t wi = (size_t)(gy / ws) * nw + (size_t)(gx / ws), ti = (size_t)(gy % ws) * ws + (size_t)(gx % ws);
			const float *sr = xw + (wi * N + ti) * C;
			float *d = x + ((size_t)gy * R + gx) * C;
			for (int e = 0; e < C; e++)
				d[e] += sr[e];
		}
	/* local depthwise conv (no residual) */
	dwconv(&b->lc, x, R, w->c);
	memcpy(x, w->c, T * (size_t)C * sizeof(float));
	/* x += fc2(GELU(fc1(LN(x)))) in chunks of rows */
	float *xn = w->a, *hid = w->b;
	be->layernorm(be->ctx, xn, x, T, (size_t)C, b->mn.w, b->mn.b, LN_EPS);
	size_t MC = w->cap / (size_t)s->hidden;
	if (MC > T)
		MC = T;
	for (size_t r0 = 0; r0 < T; r0 += MC) {
		size_t nr = T - r0 < MC ? T - r0 : MC;
		linear(m, b->fc1.w, b->fc1.b, s->hidden, C, xn + r0 * C, nr, hid);
		be->gelu(be->ctx, hid, nr * (size_t)s->hidden);
		be->gemm(be->ctx, 0, 1, (int)nr, C, s->hidden, 1.0f, hid, s->hidden, b->fc2.w, s->hidden, 1.0f, x + r0 * C, C);
		add_bias(x + r0 * C, nr, C, b->fc2.b);
	}
	return 0;
}

/* the encoder; with front != NULL it stops at the first attention stage
 * (mp_sam_tvit_front) */
static int
tvit_run(mp_sam *m, const float *img, float *emb, float *front)
{
	const struct mp_tvit *t = m->tv;
	const mp_sam_backend *be = m->be;
	const mp_sam_config *c = &m->cfg;
	int S = c->img_size, G = c->grid, C = c->out_chans, E = c->embed;
	size_t cap = (size_t)G * G * 9 * C;   /* the neck's im2col */
	bufs w = { NULL, NULL, NULL, 0 };
	float *x = NULL;
	double t0 = mp_clock(), t1;
	int rc = -1;

	/* the largest activation: rows x width over every step */
	int R = S;
	for (int i = 0; i < 2; i++) {
		R = conv_out(&t->stem[i], R);
		size_t v = (size_t)R * R * (size_t)t->stem[i].out;
		cap = v > cap ? v : cap;
	}
	for (int i = 0; i < t->nstage; i++) {
		const tstage *s = &t->st[i];
		size_t T = (size_t)s->res * s->res;
		size_t v = T * (size_t)(s->hidden > s->dim ? s->hidden : s->dim);
		if (!s->conv) {
			int nw = (s->res + s->window - 1) / s->window;
			size_t rows = (size_t)nw * nw * s->window * s->window;
			v = rows * 3 * (size_t)s->dim;
			/* the MLP's hidden rows go in chunks; at least 1024 rows */
			size_t h = (size_t)1024 * s->hidden;
			v = h > v ? h : v;
		}
		cap = v > cap ? v : cap;
		if (s->down) {
			v = T * (size_t)s->out_dim;
			cap = v > cap ? v : cap;
		}
	}
	w.cap = cap;
	w.a = malloc(cap * sizeof(float));
	w.b = malloc(cap * sizeof(float));
	w.c = malloc(cap * sizeof(float));
	x = malloc(cap * sizeof(float));
	float *in = malloc((size_t)S * S * 3 * sizeof(float));
	if (!w.a || !w.b || !w.c || !x || !in) {
		free(in);
		mp_seterr("image encoder: out of memory");
		goto out;
	}
	/* channels-last input, then the stem */
	for (size_t i = 0; i < (size_t)S * S; i++)
		for (int ch = 0; ch < 3; ch++)
			in[i * 3 + ch] = img[(size_t)ch * S * S + i];
	R = S;
	const tconv *s0 = &t->stem[0], *s1 = &t->stem[1];
	int e1 = conv_dense(m, s0->w, s0->b, s0->out, 3, s0->k, s0->stride, in, R, w.a);
	free(in);
	R = conv_out(s0, R);
	be->gelu(be->ctx, w.a, (size_t)R * R * s0->out);
	if (e1 || conv_dense(m, s1->w, s1->b, s1->out, s1->in, s1->k, s1->stride, w.a, R, x)) {
		mp_seterr("image encoder: out of memory");
		goto out;
	}
	R = conv_out(s1, R);
	t1 = mp_clock();
	mp_note("encoder: stem %.3f s", t1 - t0);
	for (int i = 0; i < t->nstage; i++) {
		const tstage *s = &t->st[i];
		double ts = mp_clock();
		if (front && !s->conv) {
			memcpy(front, x, (size_t)R * R * (size_t)s->dim * sizeof(float));
			rc = i;
			goto out;
		}
		for (int j = 0; j < s->depth; j++)
			if (s->conv ? mbconv(m, &s->mb[j], &x, R, &w) : tvblock(m, s, &s->bk[j], &x, R, &w))
				goto out;
		if (s->down) {
			merge(m, &s->pm, &x, R, &w);
			R = s->out_res;
		}
		mp_note("encoder: stage %d (%s, %d blocks, width %d, %dx%d) %.3f s", i, s->conv ? "MBConv" : "attention",
		        s->depth, s->dim, s->res, s->res, mp_clock() - ts);
	}
	t1 = mp_clock();
	/* neck: 1x1 conv, LayerNorm2d, 3x3 conv (pad 1), LayerNorm2d */
	size_t T = (size_t)G * G;
	be->gemm(be->ctx, 0, 1, (int)T, C, E, 1.0f, x, E, t->neck0, E, 0.0f, w.a, C);
	be->layernorm(be->ctx, w.a, w.a, T, (size_t)C, t->neck1.w, t->neck1.b, 1e-6f);
	im_ctx d = { w.a, w.c, G, G, C, 3, 1 };
	prows((size_t)G, im_rows, &d);
	be->gemm(be->ctx, 0, 1, (int)T, C, 9 * C, 1.0f, w.c, 9 * C, t->neck2, 9 * C, 0.0f, w.b, C);
	be->layernorm(be->ctx, w.b, w.b, T, (size_t)C, t->neck3.w, t->neck3.b, 1e-6f);
	for (size_t tk = 0; tk < T; tk++)
		for (int ch = 0; ch < C; ch++)
			emb[(size_t)ch * T + tk] = w.b[tk * C + ch];
	if (be->status && be->status(be->ctx)) {
		mp_preerr("image encoder");
		goto out;
	}
	mp_note("encoder: neck %.3f s; total %.3f s", mp_clock() - t1, mp_clock() - t0);
	rc = 0;
out:
	free(x);
	free(w.a);
	free(w.b);
	free(w.c);
	return rc;
}

int
mp_sam_tvit_encode(mp_sam *m, const float *img, float *emb)
{
	return tvit_run(m, img, emb, NULL);
}

int
mp_sam_tvit_front(mp_sam *m, const float *img, float *x)
{
	return tvit_run(m, img, NULL, x);
}
