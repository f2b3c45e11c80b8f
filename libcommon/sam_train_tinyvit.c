/* sam_train_tinyvit.c - LoRA through the TinyViT image encoder (LiteMedSAM,
 * MobileSAM): the forward from the first attention stage to the neck keeping
 * what the backward needs, and the backward from the embedding's gradient
 * to the LoRA matrices of every attention block (mp_train.h). The encoder's
 * own weights are frozen (batch norms folded, eval mode, as sam_tinyvit.c
 * loads them); the stem, the MBConv stage and its merging layer have nothing
 * trainable before them and run without gradients (mp_sam_tvit_front).
 *
 * Block (sam_tvit.h): x1 = x + crop(proj(attn(qkv(LN(pad-partition(x))))));
 * x2 = dwconv+BN(x1); x3 = x2 + fc2(GELU(fc1(LN(x2)))). LoRA: the q and v
 * parts of qkv (rows 0..C-1 and 2C..3C-1 as loaded, which are the per-head q
 * and v rows of the official fused layout) get s (xn A^T) B^T. Merging
 * between stages: 1x1+BN, GELU, depthwise 3x3 (stride 2 or 1)+BN, GELU,
 * 1x1+BN. Neck as SAM's. */
#include "mp_train.h"
#include "mp.h"
#include "sam_tvit.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	const tstage *s;
	const tblk *b;
	int R, C, H, ws, N, nw, nb, hidden;
	size_t T, rows;
	float *xw, *mu1, *rs1, *xn, *xaq, *xav, *qkv, *P, *x2, *mu2, *rs2, *hpre;
	float *aq, *bq, *av, *bv, *gaq, *gbq, *gav, *gbv;
} tvb;

typedef struct {
	const tmb *pm;
	int R, Ro, Ci, Co;
	float *a, *b;
} tvm;

struct mp_tvlora {
	int first, nb, nm, r, G, E, C;
	tvb b[TV_MAXSTAGE * TV_MAXDEPTH];
	tvm mg[TV_MAXSTAGE];
	int mg_after[TV_MAXSTAGE];          /* merge index after stage i, or -1 */
	float *x, *n0, *mu5, *rs5, *n2, *mu6, *rs6, *emb, *demb;
	float *s1, *s2, *s3, *s4, *dxa, *ws;
	size_t cap;
};

void mp_tvlora_free(struct mp_tvlora *l);

void
mp_tvlora_free(struct mp_tvlora *l)
{
	if (!l)
		return;
	float **all[] = { &l->x, &l->n0, &l->mu5, &l->rs5, &l->n2, &l->mu6, &l->rs6, &l->emb, &l->demb,
	                  &l->s1, &l->s2, &l->s3, &l->s4, &l->dxa, &l->ws };
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		free(*all[i]);
	for (int i = 0; i < l->nb; i++) {
		tvb *a = &l->b[i];
		float **f[] = { &a->xw, &a->mu1, &a->rs1, &a->xn, &a->xaq, &a->xav, &a->qkv, &a->P,
		                &a->x2, &a->mu2, &a->rs2, &a->hpre };
		for (size_t k = 0; k < sizeof f / sizeof *f; k++)
			free(*f[k]);
	}
	for (int i = 0; i < l->nm; i++)
		free(l->mg[i].a), free(l->mg[i].b);
	free(l);
}

static float *
z(size_t n)
{
	return mp_xcalloc(n ? n : 1, sizeof(float));
}

static size_t
mx(size_t a, size_t b)
{
	return a > b ? a : b;
}

int
mp_tune_tvit_blocks(const mp_sam *m, int *stage, int *blk, int *dim, int max)
{
	const struct mp_tvit *t = m->tv;
	int n = 0;

	for (int i = 0; t && i < t->nstage; i++)
		if (!t->st[i].conv)
			for (int j = 0; j < t->st[i].depth; j++) {
				if (n < max)
					stage[n] = i, blk[n] = j, dim[n] = t->st[i].dim;
				n++;
			}
	return n;
}

static float *
lv(mp_sam_tune *t, float *base, int st, int b, const char *suf)
{
	char name[200];
	snprintf(name, sizeof name, "image_encoder.layers.%d.blocks.%d.attn.qkv.%s", st, b, suf);
	for (size_t i = 0; i < t->nt; i++)
		if (strcmp(t->t[i].name, name) == 0)
			return base + t->t[i].off;
	return NULL;
}

static int
setup(mp_sam_tune *t)
{
	const mp_sam *m = t->m;
	const struct mp_tvit *tv = m->tv;
	struct mp_tvlora *l = mp_xcalloc(1, sizeof *l);
	int r = t->lora_rank;
	size_t cap = 0, maxP = 1;

	l->r = r;
	l->G = m->cfg.grid, l->E = m->cfg.embed, l->C = m->cfg.out_chans;
	l->first = -1;
	for (int i = 0; i < tv->nstage; i++)
		if (!tv->st[i].conv && l->first < 0)
			l->first = i;
	for (int i = 0; i < tv->nstage; i++)
		l->mg_after[i] = -1;
	for (int i = l->first; i < tv->nstage; i++) {
		const tstage *s = &tv->st[i];
		int R = s->res, C = s->dim;
		size_t T = (size_t)R * R;
		cap = mx(cap, T * C);
		for (int j = 0; j < s->depth; j++) {
			tvb *a = &l->b[l->nb++];
			a->s = s, a->b = &s->bk[j];
			a->R = R, a->C = C, a->H = s->heads, a->ws = s->window, a->N = s->window * s->window;
			a->nw = (R + s->window - 1) / s->window, a->nb = a->nw * a->nw;
			a->hidden = s->hidden;
			a->T = T, a->rows = (size_t)a->nb * a->N;
			a->xw = z(a->rows * C), a->mu1 = z(a->rows), a->rs1 = z(a->rows), a->xn = z(a->rows * C);
			a->xaq = z(a->rows * r), a->xav = z(a->rows * r), a->qkv = z(a->rows * 3 * C);
			a->P = z(a->rows * a->H * a->N);
			a->x2 = z(T * C), a->mu2 = z(T), a->rs2 = z(T), a->hpre = z(T * s->hidden);
			a->aq = lv(t, t->p, i, j, "lora_A_q"), a->bq = lv(t, t->p, i, j, "lora_B_q");
			a->av = lv(t, t->p, i, j, "lora_A_v"), a->bv = lv(t, t->p, i, j, "lora_B_v");
			a->gaq = lv(t, t->g, i, j, "lora_A_q"), a->gbq = lv(t, t->g, i, j, "lora_B_q");
			a->gav = lv(t, t->g, i, j, "lora_A_v"), a->gbv = lv(t, t->g, i, j, "lora_B_v");
			if (!a->aq || !a->bq || !a->av || !a->bv || !a->gaq || !a->gbv) {
				mp_tvlora_free(l);
				return mp_seterr("LoRA tensors missing (mp_tune_add_lora)");
			}
			cap = mx(cap, a->rows * 3 * C);
			cap = mx(cap, T * s->hidden);
			maxP = mx(maxP, (size_t)a->N * a->N);
		}
		if (s->down) {
			tvm *g = &l->mg[l->nm];
			l->mg_after[i] = l->nm++;
			g->pm = &s->pm, g->R = R, g->Ro = s->out_res, g->Ci = C, g->Co = s->out_dim;
			g->a = z(T * g->Co), g->b = z((size_t)g->Ro * g->Ro * g->Co);
			cap = mx(cap, T * g->Co);
		}
	}
	size_t TG = (size_t)l->G * l->G, C = (size_t)l->C;
	cap = mx(cap, TG * 9 * C);
	cap = mx(cap, TG * (size_t)l->E);
	l->cap = cap;
	l->x = z(cap), l->s1 = z(cap), l->s2 = z(cap), l->s3 = z(cap), l->s4 = z(cap);
	size_t maxrows = 0;
	for (int i = 0; i < l->nb; i++)
		maxrows = mx(maxrows, l->b[i].rows);
	l->dxa = z(maxrows * r), l->ws = z(maxP);
	l->n0 = z(TG * C), l->mu5 = z(TG), l->rs5 = z(TG), l->n2 = z(TG * C), l->mu6 = z(TG), l->rs6 = z(TG);
	l->emb = z(TG * C), l->demb = z(TG * C);
	t->tvl = l;
	return 0;
}

/* token (gy, gx) of the R x R grid -> its row in the padded windows */
static size_t
wrow(const tvb *a, int gy, int gx)
{
	return ((size_t)(gy / a->ws) * a->nw + (size_t)(gx / a->ws)) * a->N + (size_t)(gy % a->ws) * a->ws +
	       (size_t)(gx % a->ws);
}

/* x (T x C) -> x3 in place */
static void
block_fwd(const mp_sam_tune *t, const struct mp_tvlora *l, tvb *a, float *x)
{
	const tblk *b = a->b;
	int C = a->C, R = a->R, r = l->r;
	size_t T = a->T;
	float s = (float)t->lora_scale, *y = l->s1, *g = l->s2, *O = l->s3;

	memset(a->xw, 0, a->rows * C * sizeof(float));
	for (int gy = 0; gy < R; gy++)
		for (int gx = 0; gx < R; gx++)
			memcpy(a->xw + wrow(a, gy, gx) * C, x + ((size_t)gy * R + gx) * C, (size_t)C * sizeof(float));
	mp_tr_layernorm_fwd(a->xn, a->mu1, a->rs1, a->xw, b->an.w, b->an.b, (int)a->rows, C, 1e-5f);
	mp_tr_linear_fwd(a->qkv, a->xn, b->qkv.w, b->qkv.b, (int)a->rows, C, 3 * C);
	mp_tr_linear_fwd(a->xaq, a->xn, a->aq, NULL, (int)a->rows, C, r);
	mp_tr_linear_fwd(a->xav, a->xn, a->av, NULL, (int)a->rows, C, r);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->rows, C, r, s, a->xaq, r, a->bq, r, 1.0f, a->qkv,
	            3 * C);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->rows, C, r, s, a->xav, r, a->bv, r, 1.0f,
	            a->qkv + 2 * C, 3 * C);
	for (int w = 0; w < a->nb; w++)
		mp_tr_attnbias_fwd(O + (size_t)w * a->N * C, a->P + (size_t)w * a->H * a->N * a->N,
		                   a->qkv + (size_t)w * a->N * 3 * C, b->bias, a->N, C, a->H);
	mp_tr_linear_fwd(y, O, b->proj.w, b->proj.b, (int)a->rows, C, C);
	for (int gy = 0; gy < R; gy++)
		for (int gx = 0; gx < R; gx++) {
			float *d = x + ((size_t)gy * R + gx) * C;
			const float *sr = y + wrow(a, gy, gx) * C;
			for (int e = 0; e < C; e++)
				d[e] += sr[e];
		}
	mp_tr_dwconv_fwd(a->x2, x, b->lc.w, b->lc.b, R, C, b->lc.k, 1);
	float *xn2 = l->s1;
	mp_tr_layernorm_fwd(xn2, a->mu2, a->rs2, a->x2, b->mn.w, b->mn.b, (int)T, C, 1e-5f);
	mp_tr_linear_fwd(a->hpre, xn2, b->fc1.w, b->fc1.b, (int)T, C, a->hidden);
	mp_tr_gelu_fwd(g, a->hpre, T * a->hidden);
	mp_tr_linear_fwd(x, g, b->fc2.w, b->fc2.b, (int)T, a->hidden, C);
	for (size_t i = 0; i < T * C; i++)
		x[i] += a->x2[i];
}

/* d (T x C): the gradient of x3 in, of x out */
static void
block_bwd(const mp_sam_tune *t, const struct mp_tvlora *l, const tvb *a, float *d)
{
	const tblk *b = a->b;
	int C = a->C, R = a->R, r = l->r, n = (int)a->rows;
	size_t T = a->T, TC = T * C;
	float s = (float)t->lora_scale;
	float *dx2 = l->s1, *dg = l->s2, *dh = l->s3, *dxn2 = l->s4;

	/* MLP */
	memcpy(dx2, d, TC * sizeof(float));
	memset(dg, 0, T * a->hidden * sizeof(float));
	mp_tr_linear_bwd(dg, NULL, NULL, d, NULL, b->fc2.w, (int)T, a->hidden, C);
	memset(dh, 0, T * a->hidden * sizeof(float));
	mp_tr_gelu_bwd(dh, dg, a->hpre, T * a->hidden);
	memset(dxn2, 0, TC * sizeof(float));
	mp_tr_linear_bwd(dxn2, NULL, NULL, dh, NULL, b->fc1.w, (int)T, C, a->hidden);
	mp_tr_layernorm_bwd(dx2, NULL, NULL, dxn2, a->x2, a->mu2, a->rs2, b->mn.w, (int)T, C);
	/* local conv: d = dx1 */
	memset(d, 0, TC * sizeof(float));
	mp_tr_dwconv_bwd(d, NULL, dx2, NULL, b->lc.w, R, C, b->lc.k, 1);
	/* attention */
	float *dy = l->s2, *dO = l->s3, *dqkv = l->s4, *dxn = l->s2, *dxw = l->s1;
	memset(dy, 0, (size_t)n * C * sizeof(float));
	for (int gy = 0; gy < R; gy++)
		for (int gx = 0; gx < R; gx++)
			memcpy(dy + wrow(a, gy, gx) * C, d + ((size_t)gy * R + gx) * C, (size_t)C * sizeof(float));
	memset(dO, 0, (size_t)n * C * sizeof(float));
	mp_tr_linear_bwd(dO, NULL, NULL, dy, NULL, b->proj.w, n, C, C);
	memset(dqkv, 0, (size_t)n * 3 * C * sizeof(float));
	for (int w = 0; w < a->nb; w++)
		mp_tr_attnbias_bwd(dqkv + (size_t)w * a->N * 3 * C, dO + (size_t)w * a->N * C,
		                   a->P + (size_t)w * a->H * a->N * a->N, a->qkv + (size_t)w * a->N * 3 * C, a->N, C, a->H,
		                   l->ws);
	memset(dxn, 0, (size_t)n * C * sizeof(float));
	for (int k = 0; k < 2; k++) {
		const float *dpart = dqkv + (k ? 2 * C : 0), *xa = k ? a->xav : a->xaq, *A = k ? a->av : a->aq;
		const float *Bm = k ? a->bv : a->bq;
		float *gA = k ? a->gav : a->gaq, *gB = k ? a->gbv : a->gbq, *dxa = l->dxa;
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, r, n, s, dpart, 3 * C, xa, r, 1.0f, gB, r);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, C, s, dpart, 3 * C, Bm, r, 0.0f, dxa, r);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, C, n, 1.0f, dxa, r, a->xn, C, 1.0f, gA, C);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, C, r, 1.0f, dxa, r, A, C, 1.0f, dxn, C);
	}
	mp_tr_linear_bwd(dxn, NULL, NULL, dqkv, NULL, b->qkv.w, n, C, 3 * C);
	memset(dxw, 0, (size_t)n * C * sizeof(float));
	mp_tr_layernorm_bwd(dxw, NULL, NULL, dxn, a->xw, a->mu1, a->rs1, b->an.w, n, C);
	for (int gy = 0; gy < R; gy++)
		for (int gx = 0; gx < R; gx++) {
			float *dd = d + ((size_t)gy * R + gx) * C;
			const float *sr = dxw + wrow(a, gy, gx) * C;
			for (int e = 0; e < C; e++)
				dd[e] += sr[e];
		}
}

/* x (R x R x Ci) -> (Ro x Ro x Co) in place (x holds cap floats) */
static void
merge_fwd(const struct mp_tvlora *l, tvm *g, float *x)
{
	const tmb *pm = g->pm;
	size_t T = (size_t)g->R * g->R, To = (size_t)g->Ro * g->Ro;

	mp_tr_linear_fwd(g->a, x, pm->c1.w, pm->c1.b, (int)T, g->Ci, g->Co);
	mp_tr_gelu_fwd(l->s1, g->a, T * g->Co);
	mp_tr_dwconv_fwd(g->b, l->s1, pm->c2.w, pm->c2.b, g->R, g->Co, pm->c2.k, pm->c2.stride);
	mp_tr_gelu_fwd(l->s2, g->b, To * g->Co);
	mp_tr_linear_fwd(x, l->s2, pm->c3.w, pm->c3.b, (int)To, g->Co, g->Co);
}

static void
merge_bwd(const struct mp_tvlora *l, const tvm *g, float *d)
{
	const tmb *pm = g->pm;
	size_t T = (size_t)g->R * g->R, To = (size_t)g->Ro * g->Ro;
	float *dgb = l->s1, *db = l->s2, *dga = l->s3, *da = l->s4;

	memset(dgb, 0, To * g->Co * sizeof(float));
	mp_tr_linear_bwd(dgb, NULL, NULL, d, NULL, pm->c3.w, (int)To, g->Co, g->Co);
	memset(db, 0, To * g->Co * sizeof(float));
	mp_tr_gelu_bwd(db, dgb, g->b, To * g->Co);
	memset(dga, 0, T * g->Co * sizeof(float));
	mp_tr_dwconv_bwd(dga, NULL, db, NULL, pm->c2.w, g->R, g->Co, pm->c2.k, pm->c2.stride);
	memset(da, 0, T * g->Co * sizeof(float));
	mp_tr_gelu_bwd(da, dga, g->a, T * g->Co);
	memset(d, 0, T * g->Ci * sizeof(float));
	mp_tr_linear_bwd(d, NULL, NULL, da, NULL, pm->c1.w, (int)T, g->Ci, g->Co);
}

static int
encoder_fwd(mp_sam_tune *t, const float *img)
{
	struct mp_tvlora *l = t->tvl;
	const struct mp_tvit *tv = t->m->tv;
	float *x = l->x;

	if (mp_sam_tvit_front(t->m, img, x) != l->first)
		return -1;
	int bi = 0;
	for (int i = l->first; i < tv->nstage; i++) {
		for (int j = 0; j < tv->st[i].depth; j++)
			block_fwd(t, l, &l->b[bi++], x);
		if (l->mg_after[i] >= 0)
			merge_fwd(l, &l->mg[l->mg_after[i]], x);
	}
	/* neck: 1x1 conv, LayerNorm2d, 3x3 conv (pad 1), LayerNorm2d */
	int G = l->G, T = G * G, C = l->C, E = l->E;
	float *n1 = l->s1, *cols = l->s2, *e = l->s3;
	mp_tr_linear_fwd(l->n0, x, tv->neck0, NULL, T, E, C);
	mp_tr_layernorm_fwd(n1, l->mu5, l->rs5, l->n0, tv->neck1.w, tv->neck1.b, T, C, 1e-6f);
	mp_tr_im2col3(cols, n1, G, C);
	mp_tr_linear_fwd(l->n2, cols, tv->neck2, NULL, T, 9 * C, C);
	mp_tr_layernorm_fwd(e, l->mu6, l->rs6, l->n2, tv->neck3.w, tv->neck3.b, T, C, 1e-6f);
	for (int i = 0; i < T; i++)
		for (int ch = 0; ch < C; ch++)
			l->emb[(size_t)ch * T + i] = e[(size_t)i * C + ch];
	return 0;
}

static void
encoder_bwd(mp_sam_tune *t)
{
	struct mp_tvlora *l = t->tvl;
	const struct mp_tvit *tv = t->m->tv;
	int G = l->G, T = G * G, C = l->C, E = l->E;
	size_t TC = (size_t)T * C;
	float *de = l->s1, *dn2 = l->s2, *dcols = l->s3, *dn1 = l->s4, *dn0 = l->s1, *d = l->x;

	for (int i = 0; i < T; i++)
		for (int ch = 0; ch < C; ch++)
			de[(size_t)i * C + ch] = l->demb[(size_t)ch * T + i];
	memset(dn2, 0, TC * sizeof(float));
	mp_tr_layernorm_bwd(dn2, NULL, NULL, de, l->n2, l->mu6, l->rs6, tv->neck3.w, T, C);
	memset(dcols, 0, TC * 9 * sizeof(float));
	mp_tr_linear_bwd(dcols, NULL, NULL, dn2, NULL, tv->neck2, T, 9 * C, C);
	memset(dn1, 0, TC * sizeof(float));
	mp_tr_col2im3(dn1, dcols, G, C);
	memset(dn0, 0, TC * sizeof(float));
	mp_tr_layernorm_bwd(dn0, NULL, NULL, dn1, l->n0, l->mu5, l->rs5, tv->neck1.w, T, C);
	memset(d, 0, (size_t)T * E * sizeof(float));
	mp_tr_linear_bwd(d, NULL, NULL, dn0, NULL, tv->neck0, T, E, C);
	int bi = l->nb;
	for (int i = tv->nstage - 1; i >= l->first; i--) {
		if (l->mg_after[i] >= 0)
			merge_bwd(l, &l->mg[l->mg_after[i]], d);
		for (int j = tv->st[i].depth - 1; j >= 0; j--)
			block_bwd(t, l, &l->b[--bi], d);
	}
}

int mp_tvlora_sample_image(mp_sam_tune *t, const float *img, const float box[4], const float *gt, double gscale,
                           double *loss, double *dice, double *bce);
int mp_tvlora_encode(mp_sam_tune *t, const float *img, float *emb);

int
mp_tvlora_sample_image(mp_sam_tune *t, const float *img, const float box[4], const float *gt, double gscale,
                       double *loss, double *dice, double *bce)
{
	if (!t->tvl && setup(t))
		return -1;
	struct mp_tvlora *l = t->tvl;
	if (encoder_fwd(t, img))
		return -1;
	memset(l->demb, 0, (size_t)l->G * l->G * l->C * sizeof(float));
	if (mp_tune_sample(t, l->emb, box, gt, gscale, loss, dice, bce, NULL, l->demb))
		return -1;
	encoder_bwd(t);
	return 0;
}

int
mp_tvlora_encode(mp_sam_tune *t, const float *img, float *emb)
{
	if (!t->tvl && setup(t))
		return -1;
	if (encoder_fwd(t, img))
		return -1;
	memcpy(emb, t->tvl->emb, (size_t)t->tvl->G * t->tvl->G * t->tvl->C * sizeof(float));
	return 0;
}
