/* sam_train_lora.c - the SAM image encoder with LoRA on the q and v
 * projections: forward keeping what the backward needs, and the backward
 * from the embedding's gradient to the LoRA matrices (mp_train.h). The
 * encoder's own weights are frozen: no gradient is formed for them.
 *
 * Memory: a block's attention probabilities (windows x heads x tokens^2
 * floats) are kept when they fit in t->attn_keep bytes (ViT-B at 1024: the
 * windowed blocks, 46 MB each); otherwise (the global blocks, 805 MB each)
 * only each row's max and 1/sum are kept and the backward recomputes the
 * probabilities of one head at a time from q and k, with the same
 * operations as the forward, so that they are the same floats. A block's
 * layer-norm outputs, attention output and GELU output are kept only where
 * a gradient of a weight needs them (--mode full; the MLP_Adapter's fc1 the
 * second norm's), else they are one scratch buffer shared by the blocks. */
#include "mp_train.h"
#include "mp.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	float *xin, *mu1, *rs1, *xn1, *xw, *xaq, *xav, *qkv, *P, *O, *x1, *mu2, *rs2, *xn2, *hpre, *hg;
	float *rmax, *rinv;         /* P not kept: each softmax row's max and 1/sum (windows x heads x nq) */
	float *aq, *bq, *av, *bv, *gaq, *gbq, *gav, *gbv;
	/* --mode full: gradients of the block's tensors (NULL: frozen) */
	float *gn1w, *gn1b, *gn2w, *gn2b, *gqkvw, *gqkvb, *gprojw, *gprojb, *gl1w, *gl1b, *gl2w, *gl2b, *grph, *grpw;
	/* --mode adapter: Space_Adapter (s) and MLP_Adapter (m): weights and
	 * biases of fc1, fc2, their gradients; activations */
	float *ad[8], *gad[8], *ytok, *sah, *sag, *mah, *mag;
	int N, nb, nq, g;           /* rows (padded), windows, tokens per window, grid side per window */
} blk_act;

struct mp_lora {
	int T, E, C, G, np, nwx, mlp, heads, hd, r;
	blk_act b[MP_SAM_MAXDEPTH];
	int H;                      /* adapter width (0: none) */
	float *gpw, *gpb, *gpos, *gnk0, *gnk1w, *gnk1b, *gnk2, *gnk3w, *gnk3b;   /* --mode full */
	float *x0, *xout, *n0, *mu5, *rs5, *n1, *cols, *n2, *mu6, *rs6, *emb, *demb;
	/* scratch */
	float *dx, *dx1, *dxn, *dxw, *dqkv, *dO, *dy, *dh, *ws, *wsr, *dxa, *dn;
	float *wp;                  /* one head's probabilities (blocks whose P is not kept) */
	float *sh[4];               /* the blocks' xn1, O, xn2, hg where not kept */
};

void mp_lora_free(struct mp_lora *l);

void
mp_lora_free(struct mp_lora *l)
{
	if (!l)
		return;
	float **all[] = { &l->x0, &l->n0, &l->mu5, &l->rs5, &l->n1, &l->cols, &l->n2, &l->mu6, &l->rs6, &l->emb, &l->demb,
	                  &l->dx, &l->dx1, &l->dxn, &l->dxw, &l->dqkv, &l->dO, &l->dy, &l->dh, &l->ws, &l->wsr, &l->dxa, &l->dn, &l->wp };
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		free(*all[i]);
	for (int i = 0; i < MP_SAM_MAXDEPTH; i++) {
		blk_act *a = &l->b[i];
		float **f[] = { &a->xin, &a->mu1, &a->rs1, &a->xn1, &a->xw, &a->xaq, &a->xav, &a->qkv, &a->P, &a->O, &a->x1,
		                &a->mu2, &a->rs2, &a->xn2, &a->hpre, &a->hg, &a->ytok, &a->sah, &a->sag, &a->mah, &a->mag,
		                &a->rmax, &a->rinv };
		for (size_t k = 0; k < sizeof f / sizeof *f; k++)
			if (*f[k] != l->sh[0] && *f[k] != l->sh[1] && *f[k] != l->sh[2] && *f[k] != l->sh[3])
				free(*f[k]);
	}
	for (int k = 0; k < 4; k++)
		free(l->sh[k]);
	free(l);
}

static float *
z(size_t n)
{
	return mp_xcalloc(n ? n : 1, sizeof(float));
}

static float *
tv(mp_sam_tune *t, float *base, int b, const char *suf)
{
	return mp_tune_tensor(t, base, "image_encoder.blocks.%d.attn.qkv.%s", b, suf);
}

static float *
nv(mp_sam_tune *t, float *base, const char *fmt, int b, const char *suf)
{
	return mp_tune_tensor(t, base, fmt, b, suf);
}

static const char *adsuf[8] = { "Space_Adapter.D_fc1.weight", "Space_Adapter.D_fc1.bias", "Space_Adapter.D_fc2.weight",
	                            "Space_Adapter.D_fc2.bias",   "MLP_Adapter.D_fc1.weight",   "MLP_Adapter.D_fc1.bias",
	                            "MLP_Adapter.D_fc2.weight",   "MLP_Adapter.D_fc2.bias" };

static int
lora_setup(mp_sam_tune *t)
{
	const mp_sam *m = t->m;
	const mp_sam_config *c = &m->cfg;
	struct mp_lora *l = mp_xcalloc(1, sizeof *l);
	int G = c->grid, T = G * G, E = c->embed, ws = c->window ? c->window : 1;

	l->T = T, l->E = E, l->C = c->out_chans, l->G = G, l->mlp = c->mlp, l->heads = c->heads, l->hd = c->hd;
	l->r = t->lora_rank;
	l->nwx = (G + ws - 1) / ws;
	l->np = l->nwx * l->nwx * ws * ws;
	size_t maxN = (size_t)(l->np > T ? l->np : T), maxP = 0, maxR = 0;
	/* xn1 is never needed by the backward; O, xn2, hg only for weight gradients */
	l->sh[0] = z((size_t)T * E);
	if (!t->full) {
		l->sh[1] = z(maxN * E), l->sh[3] = z((size_t)T * l->mlp);
		if (!t->adapter)
			l->sh[2] = z((size_t)T * E);
	}
	for (int i = 0; i < c->depth; i++) {
		blk_act *a = &l->b[i];
		int w = m->blk[i].window;
		a->N = w ? l->np : T;
		a->nb = w ? l->nwx * l->nwx : 1;
		a->nq = w ? w * w : T;
		a->g = w ? w : G;
		a->xin = z((size_t)T * E), a->mu1 = z((size_t)T), a->rs1 = z((size_t)T), a->xn1 = l->sh[0];
		a->xw = z((size_t)a->N * E), a->xaq = z((size_t)a->N * l->r), a->xav = z((size_t)a->N * l->r);
		a->qkv = z((size_t)a->N * 3 * E), a->O = l->sh[1] ? l->sh[1] : z((size_t)a->N * E);
		size_t np_ = (size_t)a->nb * l->heads * a->nq * a->nq;
		if (np_ <= t->attn_keep / sizeof(float))
			a->P = z(np_);
		else {
			a->rmax = z((size_t)a->nb * l->heads * a->nq), a->rinv = z((size_t)a->nb * l->heads * a->nq);
			if ((size_t)a->nq * a->nq > maxR)
				maxR = (size_t)a->nq * a->nq;
		}
		a->x1 = z((size_t)T * E), a->mu2 = z((size_t)T), a->rs2 = z((size_t)T);
		a->xn2 = l->sh[2] ? l->sh[2] : z((size_t)T * E);
		a->hpre = z((size_t)T * l->mlp), a->hg = l->sh[3] ? l->sh[3] : z((size_t)T * l->mlp);
		a->aq = tv(t, t->p, i, "lora_A_q"), a->bq = tv(t, t->p, i, "lora_B_q");
		a->av = tv(t, t->p, i, "lora_A_v"), a->bv = tv(t, t->p, i, "lora_B_v");
		a->gaq = tv(t, t->g, i, "lora_A_q"), a->gbq = tv(t, t->g, i, "lora_B_q");
		a->gav = tv(t, t->g, i, "lora_A_v"), a->gbv = tv(t, t->g, i, "lora_B_v");
		if ((size_t)a->nq * a->nq > maxP)
			maxP = (size_t)a->nq * a->nq;
		if (t->full) {
			const char *f = "image_encoder.blocks.%d.%s";
			float **gp[14] = { &a->gn1w, &a->gn1b, &a->gn2w, &a->gn2b, &a->gqkvw, &a->gqkvb, &a->gprojw,
			                   &a->gprojb, &a->gl1w, &a->gl1b, &a->gl2w, &a->gl2b, &a->grph, &a->grpw };
			static const char *gs[14] = { "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
			                              "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
			                              "mlp.lin1.weight", "mlp.lin1.bias", "mlp.lin2.weight", "mlp.lin2.bias",
			                              "attn.rel_pos_h", "attn.rel_pos_w" };
			for (int k = 0; k < 14; k++)
				*gp[k] = nv(t, t->g, f, i, gs[k]);
		}
		if (t->adapter) {
			l->H = t->adapter;
			for (int k = 0; k < 8; k++) {
				a->ad[k] = nv(t, t->p, "image_encoder.blocks.%d.%s", i, adsuf[k]);
				a->gad[k] = nv(t, t->g, "image_encoder.blocks.%d.%s", i, adsuf[k]);
				if (!a->ad[k]) {
					mp_lora_free(l);
					return mp_seterr("adapter tensors missing (mp_tune_add_adapter)");
				}
			}
			a->ytok = z((size_t)T * E), a->sah = z((size_t)T * l->H), a->sag = z((size_t)T * l->H);
			a->mah = z((size_t)T * l->H), a->mag = z((size_t)T * l->H);
		}
		if (l->r && (!a->aq || !a->gbv)) {
			mp_lora_free(l);
			return mp_seterr("LoRA tensors missing (mp_tune_add_lora)");
		}
	}
	if (t->full) {
		float **gp[9] = { &l->gpw, &l->gpb, &l->gpos, &l->gnk0, &l->gnk1w, &l->gnk1b, &l->gnk2, &l->gnk3w, &l->gnk3b };
		static const char *gs[9] = { "patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed", "neck.0.weight",
		                             "neck.1.weight", "neck.1.bias", "neck.2.weight", "neck.3.weight", "neck.3.bias" };
		for (int k = 0; k < 9; k++)
			*gp[k] = nv(t, t->g, "image_encoder.%.0d%s", 0, gs[k]);
	}
	size_t C = (size_t)l->C;
	l->x0 = z((size_t)T * (3 * c->patch * c->patch > E ? 3 * c->patch * c->patch : E));
	l->n0 = z((size_t)T * C), l->mu5 = z((size_t)T), l->rs5 = z((size_t)T), l->n1 = z((size_t)T * C);
	l->cols = z((size_t)T * 9 * C), l->n2 = z((size_t)T * C), l->mu6 = z((size_t)T), l->rs6 = z((size_t)T);
	l->emb = z((size_t)T * C), l->demb = z((size_t)T * C);
	l->dx = z((size_t)T * E), l->dx1 = z((size_t)T * E), l->dxn = z((size_t)T * E);
	l->dxw = z(maxN * E), l->dqkv = z(maxN * 3 * E), l->dO = z(maxN * E), l->dy = z(maxN * E);
	l->dh = z((size_t)T * (l->mlp > 9 * l->C ? l->mlp : 9 * l->C));
	l->ws = z(maxP), l->wp = maxR ? z(maxR) : NULL, l->wsr = z((size_t)T * 4 * (2 * G)), l->dxa = z(maxN * l->r), l->dn = z((size_t)T * C);
	t->lora = l;
	return 0;
}

/* the scores of head h of window b (scale q k^T + the decomposed relative
 * positions) into S (nq x nq); ch, cw: 2 nq (2g-1) floats of scratch */
static void
relattn_scores(const struct mp_lora *l, const mp_sam_block *B, const blk_act *a, int b, int h, float *S, float *ch)
{
	int E = l->E, hd = l->hd, nq = a->nq, g = a->g, lr = 2 * g - 1;
	float scale = 1.0f / sqrtf((float)hd), *cw = ch + (size_t)nq * lr;
	const float *q = a->qkv + (size_t)b * nq * 3 * E + h * hd, *k = q + E;

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nq, hd, scale, q, 3 * E, k, 3 * E, 0.0f, S, nq);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, lr, hd, 1.0f, q, 3 * E, B->rph, hd, 0.0f, ch, lr);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, lr, hd, 1.0f, q, 3 * E, B->rpw, hd, 0.0f, cw, lr);
	for (int i = 0; i < nq; i++) {
		int qh = i / g, qw = i % g;
		float *r = S + (size_t)i * nq;
		for (int kh = 0; kh < g; kh++)
			for (int kw = 0; kw < g; kw++)
				r[kh * g + kw] += ch[(size_t)i * lr + qh - kh + g - 1] + cw[(size_t)i * lr + qw - kw + g - 1];
	}
}

/* the largest of r[0..n-1] (8 running maxima: the same value in any order,
 * and a loop the compiler vectorises) */
static float
rowmax(const float *r, int n)
{
	float m8[8], mx = r[0];
	int j = 0;
	for (int k = 0; k < 8; k++)
		m8[k] = r[0];
	for (; j + 8 <= n; j += 8)
		for (int k = 0; k < 8; k++)
			m8[k] = r[j + k] > m8[k] ? r[j + k] : m8[k];
	for (; j < n; j++)
		mx = r[j] > mx ? r[j] : mx;
	for (int k = 0; k < 8; k++)
		mx = m8[k] > mx ? m8[k] : mx;
	return mx;
}

/* attention with decomposed relative positions over the windows of a block
 * (q, k, v in qkv rows of 3E): the forward keeps P, or (a->rmax) each row's
 * max and 1/sum */
static void
relattn_fwd(const struct mp_lora *l, const mp_sam_block *B, blk_act *a)
{
	int E = l->E, hd = l->hd, nq = a->nq;

	for (int b = 0; b < a->nb; b++)
		for (int h = 0; h < l->heads; h++) {
			const float *v = a->qkv + (size_t)b * nq * 3 * E + h * hd + 2 * E;
			size_t bh = (size_t)b * l->heads + h;
			float *P = a->P ? a->P + bh * nq * nq : l->ws;
			relattn_scores(l, B, a, b, h, P, l->wsr);
			for (int i = 0; i < nq; i++) {
				float *S = P + (size_t)i * nq;
				float mx = rowmax(S, nq);
				double sum = mp_tr_exp_sub(S, nq, mx);
				float inv = (float)(1.0 / sum);
				int j = 0;
				for (; j + 8 <= nq; j += 8)   /* in blocks of 8: vectorised */
					for (int k = 0; k < 8; k++)
						S[j + k] *= inv;
				for (; j < nq; j++)
					S[j] *= inv;
				if (a->rmax)
					a->rmax[bh * nq + i] = mx, a->rinv[bh * nq + i] = inv;
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nq, 1.0f, P, nq, v, 3 * E, 0.0f,
			            a->O + (size_t)b * nq * E + h * hd, E);
		}
}

/* dqkv (rows of 3E) = the gradient of q, k, v from dO */
static void
relattn_bwd(const struct mp_lora *l, const mp_sam_block *B, const blk_act *a, const float *dO, float *dqkv)
{
	int E = l->E, hd = l->hd, nq = a->nq, g = a->g, lr = 2 * g - 1;
	float scale = 1.0f / sqrtf((float)hd);
	float *dS = l->ws, *dch = l->wsr, *dcw = l->wsr + (size_t)nq * lr;

	for (int b = 0; b < a->nb; b++)
		for (int h = 0; h < l->heads; h++) {
			size_t ro = (size_t)b * nq * 3 * E + (size_t)h * hd;
			const float *q = a->qkv + ro, *k = q + E, *v = q + 2 * E;
			float *dq = dqkv + ro, *dk = dq + E, *dv = dq + 2 * E;
			size_t bh = (size_t)b * l->heads + h;
			const float *P = a->P ? a->P + bh * nq * nq : l->wp, *d = dO + (size_t)b * nq * E + h * hd;
			if (!a->P) {   /* recompute as the forward did (dch: scratch until it is cleared) */
				relattn_scores(l, B, a, b, h, l->wp, dch);
				for (int i = 0; i < nq; i++) {
					float *S = l->wp + (size_t)i * nq, mx = a->rmax[bh * nq + i], inv = a->rinv[bh * nq + i];
					mp_tr_exp_sub(S, nq, mx);
					for (int j = 0; j < nq; j++)
						S[j] *= inv;
				}
			}
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nq, hd, nq, 1.0f, P, nq, d, E, 1.0f, dv, 3 * E);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nq, hd, 1.0f, d, E, v, 3 * E, 0.0f, dS, nq);
			memset(dch, 0, (size_t)2 * nq * lr * sizeof(float));
			for (int i = 0; i < nq; i++) {
				const float *pr = P + (size_t)i * nq;
				float *dr = dS + (size_t)i * nq;
				/* sum_j P dP in 8 float lanes (the loop vectorises), double across them */
				float s8[8] = { 0 };
				int j = 0;
				for (; j + 8 <= nq; j += 8)
					for (int k = 0; k < 8; k++)
						s8[k] += pr[j + k] * dr[j + k];
				double s = 0;
				for (int k = 0; k < 8; k++)
					s += s8[k];
				for (; j < nq; j++)
					s += (double)pr[j] * dr[j];
				float sf = (float)s;
				for (j = 0; j < nq; j++)
					dr[j] = pr[j] * (dr[j] - sf);
				/* key j = (kh, kw): dch[i][qh - kh + g-1], dcw[i][qw - kw + g-1] += dS[i][j] */
				float *hr = dch + (size_t)i * lr + i / g + g - 1, *wr = dcw + (size_t)i * lr + i % g + g - 1;
				float *wacc = dcw + (size_t)nq * lr;   /* l->wsr holds 8 T G floats, dch and dcw 2 nq lr */
				memset(wacc, 0, (size_t)g * sizeof(float));
				for (int kh = 0; kh < g; kh++) {
					const float *dj = dr + (size_t)kh * g;
					float a8[8] = { 0 }, acc = 0;
					int kw = 0;
					for (; kw + 8 <= g; kw += 8)
						for (int k = 0; k < 8; k++)
							a8[k] += dj[kw + k];
					for (; kw < g; kw++)
						acc += dj[kw];
					for (int k = 0; k < 8; k++)
						acc += a8[k];
					hr[-kh] += acc;
					for (kw = 0; kw < g; kw++)
						wacc[kw] += dj[kw];
				}
				for (int kw = 0; kw < g; kw++)
					wr[-kw] += wacc[kw];
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nq, scale, dS, nq, k, 3 * E, 1.0f, dq, 3 * E);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, lr, 1.0f, dch, lr, B->rph, hd, 1.0f, dq, 3 * E);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, lr, 1.0f, dcw, lr, B->rpw, hd, 1.0f, dq, 3 * E);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nq, hd, nq, scale, dS, nq, q, 3 * E, 1.0f, dk, 3 * E);
			/* --mode full: rel_pos_h/w (lr x hd) += dch^T q, dcw^T q */
			if (a->grph) {
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, lr, hd, nq, 1.0f, dch, lr, q, 3 * E, 1.0f, a->grph, hd);
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, lr, hd, nq, 1.0f, dcw, lr, q, 3 * E, 1.0f, a->grpw, hd);
			}
		}
}

/* token (gy, gx) of the grid <-> row of the padded window layout */
static size_t
wrow(const struct mp_lora *l, const blk_act *a, int gy, int gx)
{
	if (a->nb == 1)
		return (size_t)gy * l->G + gx;
	int w = a->g;
	return ((size_t)((gy / w) * l->nwx + gx / w)) * w * w + (size_t)(gy % w) * w + gx % w;
}

static void
encoder_fwd(mp_sam_tune *t, const float *img)
{
	struct mp_lora *l = t->lora;
	const mp_sam *m = t->m;
	const mp_sam_config *c = &m->cfg;
	int G = l->G, T = l->T, E = l->E, P = c->patch, S = c->img_size, K = 3 * P * P, r = l->r, C = l->C;
	float s = (float)t->lora_scale;

	/* patch embedding (frozen); x0 is big enough for its columns */
	float *cols = l->x0;
	for (int ty = 0; ty < G; ty++)
		for (int tx = 0; tx < G; tx++) {
			float *row = cols + ((size_t)ty * G + tx) * K;
			for (int ch = 0; ch < 3; ch++)
				for (int kh = 0; kh < P; kh++)
					memcpy(row + (ch * P + kh) * P, img + ((size_t)ch * S + (size_t)ty * P + kh) * S + (size_t)tx * P,
					       (size_t)P * sizeof(float));
		}
	float *x = l->b[0].xin;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, E, K, 1.0f, cols, K, m->patch_w, K, 0.0f, x, E);
	for (int i = 0; i < T; i++)
		for (int e = 0; e < E; e++)
			x[(size_t)i * E + e] += m->patch_b[e] + m->pos[(size_t)i * E + e];
	for (int bi = 0; bi < c->depth; bi++) {
		const mp_sam_block *B = &m->blk[bi];
		blk_act *a = &l->b[bi];
		mp_tr_layernorm_fwd(a->xn1, a->mu1, a->rs1, a->xin, B->n1.w, B->n1.b, T, E, 1e-6f);
		memset(a->xw, 0, (size_t)a->N * E * sizeof(float));
		for (int gy = 0; gy < G; gy++)
			for (int gx = 0; gx < G; gx++)
				memcpy(a->xw + wrow(l, a, gy, gx) * E, a->xn1 + ((size_t)gy * G + gx) * E, (size_t)E * sizeof(float));
		mp_tr_linear_fwd(a->qkv, a->xw, B->qkv.w, B->qkv.b, a->N, E, 3 * E);
		if (r) {
			mp_tr_linear_fwd(a->xaq, a->xw, a->aq, NULL, a->N, E, r);
			mp_tr_linear_fwd(a->xav, a->xw, a->av, NULL, a->N, E, r);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a->N, E, r, s, a->xaq, r, a->bq, r, 1.0f, a->qkv, 3 * E);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a->N, E, r, s, a->xav, r, a->bv, r, 1.0f,
			            a->qkv + 2 * E, 3 * E);
		}
		relattn_fwd(l, B, a);
		float *y = l->dy;   /* scratch for the projection's output */
		mp_tr_linear_fwd(y, a->O, B->proj.w, B->proj.b, a->N, E, E);
		for (int gy = 0; gy < G; gy++)
			for (int gx = 0; gx < G; gx++) {
				size_t ti = (size_t)gy * G + gx;
				const float *sr = y + wrow(l, a, gy, gx) * E;
				for (int e = 0; e < E; e++)
					a->x1[ti * E + e] = a->xin[ti * E + e] + sr[e];
				if (l->H)
					memcpy(a->ytok + ti * E, sr, (size_t)E * sizeof(float));
			}
		if (l->H) {   /* Space_Adapter: x1 += fc2(gelu(fc1(attn))) */
			float *o = l->dxn;
			mp_tr_linear_fwd(a->sah, a->ytok, a->ad[0], a->ad[1], T, E, l->H);
			mp_tr_gelu_fwd(a->sag, a->sah, (size_t)T * l->H);
			mp_tr_linear_fwd(o, a->sag, a->ad[2], a->ad[3], T, l->H, E);
			for (size_t i = 0; i < (size_t)T * E; i++)
				a->x1[i] += o[i];
		}
		mp_tr_layernorm_fwd(a->xn2, a->mu2, a->rs2, a->x1, B->n2.w, B->n2.b, T, E, 1e-6f);
		mp_tr_linear_fwd(a->hpre, a->xn2, B->lin1.w, B->lin1.b, T, E, l->mlp);
		mp_tr_gelu_fwd(a->hg, a->hpre, (size_t)T * l->mlp);
		float *xo = bi + 1 < c->depth ? l->b[bi + 1].xin : l->x0;
		mp_tr_linear_fwd(xo, a->hg, B->lin2.w, B->lin2.b, T, l->mlp, E);
		for (size_t i = 0; i < (size_t)T * E; i++)
			xo[i] += a->x1[i];
		if (l->H) {   /* MLP_Adapter beside the MLP: += 0.5 fc2(gelu(fc1(LN2(x1)))) */
			float *o = l->dxn;
			mp_tr_linear_fwd(a->mah, a->xn2, a->ad[4], a->ad[5], T, E, l->H);
			mp_tr_gelu_fwd(a->mag, a->mah, (size_t)T * l->H);
			mp_tr_linear_fwd(o, a->mag, a->ad[6], a->ad[7], T, l->H, E);
			for (size_t i = 0; i < (size_t)T * E; i++)
				xo[i] += 0.5f * o[i];
		}
	}
	/* neck: 1x1 conv, LayerNorm2d, 3x3 conv (pad 1), LayerNorm2d */
	mp_tr_linear_fwd(l->n0, l->x0, m->neck0, NULL, T, E, C);
	mp_tr_layernorm_fwd(l->n1, l->mu5, l->rs5, l->n0, m->neck1.w, m->neck1.b, T, C, 1e-6f);
	mp_tr_im2col3(l->cols, l->n1, G, C);
	mp_tr_linear_fwd(l->n2, l->cols, m->neck2, NULL, T, 9 * C, C);
	float *e = l->dn;
	mp_tr_layernorm_fwd(e, l->mu6, l->rs6, l->n2, m->neck3.w, m->neck3.b, T, C, 1e-6f);
	for (int i = 0; i < T; i++)
		for (int ch = 0; ch < C; ch++)
			l->emb[(size_t)ch * T + i] = e[(size_t)i * C + ch];
}

static void
encoder_bwd(mp_sam_tune *t, const float *img)
{
	struct mp_lora *l = t->lora;
	const mp_sam *m = t->m;
	const mp_sam_config *c = &m->cfg;
	int G = l->G, T = l->T, E = l->E, r = l->r, C = l->C;
	float s = (float)t->lora_scale;
	size_t TE = (size_t)T * E, TC = (size_t)T * C;

	/* neck */
	float *de = l->dn, *dn2 = l->dx1, *dcols = l->dh, *dn1 = l->dxn, *dn0 = l->dy;
	for (int i = 0; i < T; i++)
		for (int ch = 0; ch < C; ch++)
			de[(size_t)i * C + ch] = l->demb[(size_t)ch * T + i];
	memset(dn2, 0, TC * sizeof(float));
	mp_tr_layernorm_bwd(dn2, l->gnk3w, l->gnk3b, de, l->n2, l->mu6, l->rs6, m->neck3.w, T, C);
	memset(dcols, 0, TC * 9 * sizeof(float));
	mp_tr_linear_bwd(dcols, l->gnk2, NULL, dn2, l->cols, m->neck2, T, 9 * C, C);
	memset(dn1, 0, TC * sizeof(float));
	mp_tr_col2im3(dn1, dcols, G, C);
	memset(dn0, 0, TC * sizeof(float));
	mp_tr_layernorm_bwd(dn0, l->gnk1w, l->gnk1b, dn1, l->n0, l->mu5, l->rs5, m->neck1.w, T, C);
	float *dx = l->dx;
	memset(dx, 0, TE * sizeof(float));
	mp_tr_linear_bwd(dx, l->gnk0, NULL, dn0, l->x0, m->neck0, T, E, C);

	for (int bi = c->depth - 1; bi >= 0; bi--) {
		const mp_sam_block *B = &m->blk[bi];
		blk_act *a = &l->b[bi];
		/* x2 = x1 + lin2(gelu(lin1(LN2(x1)))) */
		float *dx1 = l->dx1, *dh = l->dh;
		memcpy(dx1, dx, TE * sizeof(float));
		memset(dh, 0, (size_t)T * l->mlp * sizeof(float));
		mp_tr_linear_bwd(dh, a->gl2w, a->gl2b, dx, a->hg, B->lin2.w, T, l->mlp, E);
		mp_tr_gelu_bwd_mul(dh, a->hpre, (size_t)T * l->mlp);
		float *dxn = l->dxn;
		memset(dxn, 0, TE * sizeof(float));
		mp_tr_linear_bwd(dxn, a->gl1w, a->gl1b, dh, a->xn2, B->lin1.w, T, E, l->mlp);
		float *dy = l->dy, *dO = l->dO, *dqkv = l->dqkv, *dxw = l->dxw;
		if (l->H) {   /* MLP_Adapter: dh is free; its first T*H for fc2's input, the next for fc1's output */
			size_t TH = (size_t)T * l->H;
			float *dg = dh, *dp = dh + TH;
			for (size_t i = 0; i < TE; i++)
				dy[i] = 0.5f * dx[i];
			memset(dh, 0, 2 * TH * sizeof(float));
			mp_tr_linear_bwd(dg, a->gad[6], a->gad[7], dy, a->mag, a->ad[6], T, l->H, E);
			mp_tr_gelu_bwd(dp, dg, a->mah, TH);
			mp_tr_linear_bwd(dxn, a->gad[4], a->gad[5], dp, a->xn2, a->ad[4], T, E, l->H);
		}
		mp_tr_layernorm_bwd(dx1, a->gn2w, a->gn2b, dxn, a->x1, a->mu2, a->rs2, B->n2.w, T, E);
		/* x1 = xin + unpartition(proj(attn(qkv(partition(LN1(xin)))))) (+ its Space_Adapter) */
		memcpy(dx, dx1, TE * sizeof(float));
		const float *dya = dx1;
		if (l->H) {
			size_t TH = (size_t)T * l->H;
			float *dg = dh, *dp = dh + TH;
			memset(dh, 0, 2 * TH * sizeof(float));
			mp_tr_linear_bwd(dg, a->gad[2], a->gad[3], dx1, a->sag, a->ad[2], T, l->H, E);
			mp_tr_gelu_bwd(dp, dg, a->sah, TH);
			memcpy(dxn, dx1, TE * sizeof(float));
			mp_tr_linear_bwd(dxn, a->gad[0], a->gad[1], dp, a->ytok, a->ad[0], T, E, l->H);
			dya = dxn;
		}
		memset(dy, 0, (size_t)a->N * E * sizeof(float));
		for (int gy = 0; gy < G; gy++)
			for (int gx = 0; gx < G; gx++)
				memcpy(dy + wrow(l, a, gy, gx) * E, dya + ((size_t)gy * G + gx) * E, (size_t)E * sizeof(float));
		memset(dO, 0, (size_t)a->N * E * sizeof(float));
		mp_tr_linear_bwd(dO, a->gprojw, a->gprojb, dy, a->O, B->proj.w, a->N, E, E);
		memset(dqkv, 0, (size_t)a->N * 3 * E * sizeof(float));
		relattn_bwd(l, B, a, dO, dqkv);
		/* LoRA: q += s (xw A_q^T) B_q^T; v likewise */
		memset(dxw, 0, (size_t)a->N * E * sizeof(float));
		for (int k = 0; k < 2 && r; k++) {
			const float *dpart = dqkv + (k ? 2 * E : 0), *xa = k ? a->xav : a->xaq, *A = k ? a->av : a->aq;
			const float *Bm = k ? a->bv : a->bq;
			float *gA = k ? a->gav : a->gaq, *gB = k ? a->gbv : a->gbq, *dxa = l->dxa;
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, E, r, a->N, s, dpart, 3 * E, xa, r, 1.0f, gB, r);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->N, r, E, s, dpart, 3 * E, Bm, r, 0.0f, dxa, r);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, E, a->N, 1.0f, dxa, r, a->xw, E, 1.0f, gA, E);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->N, E, r, 1.0f, dxa, r, A, E, 1.0f, dxw, E);
		}
		mp_tr_linear_bwd(dxw, a->gqkvw, a->gqkvb, dqkv, a->xw, B->qkv.w, a->N, E, 3 * E);
		for (int gy = 0; gy < G; gy++)
			for (int gx = 0; gx < G; gx++)
				memcpy(dxn + ((size_t)gy * G + gx) * E, dxw + wrow(l, a, gy, gx) * E, (size_t)E * sizeof(float));
		mp_tr_layernorm_bwd(dx, a->gn1w, a->gn1b, dxn, a->xin, a->mu1, a->rs1, B->n1.w, T, E);
	}
	/* --mode full: x = patches W^T + b + pos */
	if (l->gpw) {
		int P = c->patch, S = c->img_size, K = 3 * P * P;
		float *cols = l->x0;
		for (int ty = 0; ty < G; ty++)
			for (int tx = 0; tx < G; tx++) {
				float *row = cols + ((size_t)ty * G + tx) * K;
				for (int ch = 0; ch < 3; ch++)
					for (int kh = 0; kh < P; kh++)
						memcpy(row + (ch * P + kh) * P, img + ((size_t)ch * S + (size_t)ty * P + kh) * S + (size_t)tx * P,
						       (size_t)P * sizeof(float));
			}
		mp_tr_linear_bwd(NULL, l->gpw, l->gpb, dx, cols, m->patch_w, T, K, E);
		for (size_t i = 0; i < TE; i++)
			l->gpos[i] += dx[i];
	}
}

int mp_tvlora_sample_image(mp_sam_tune *t, const float *img, const float box[4], const float *gt, double gscale,
                           double *loss, double *dice, double *bce);
int mp_tvlora_encode(mp_sam_tune *t, const float *img, float *emb);

int
mp_tune_sample_image(mp_sam_tune *t, const float *img, const float box[4], const float *gt, double gscale,
                     double *loss, double *dice, double *bce)
{
	if (!t->lora_rank && !t->full && !t->adapter)
		return mp_seterr("image samples need LoRA, adapters or --mode full (mp_tune_add_lora, mp_train_peft.h)");
	if (t->m->tv)
		return mp_tvlora_sample_image(t, img, box, gt, gscale, loss, dice, bce);
	if (!t->lora && lora_setup(t))
		return -1;
	struct mp_lora *l = t->lora;
	encoder_fwd(t, img);
	memset(l->demb, 0, (size_t)l->T * l->C * sizeof(float));
	if (mp_tune_sample(t, l->emb, box, gt, gscale, loss, dice, bce, NULL, l->demb))
		return -1;
	encoder_bwd(t, img);
	return 0;
}

int
mp_tune_encode(mp_sam_tune *t, const float *img, float *emb)
{
	if (!t->lora_rank && !t->full && !t->adapter)   /* the frozen encoder */
		return mp_sam_encode(t->m, img, emb);
	if (t->m->tv)
		return mp_tvlora_encode(t, img, emb);
	if (!t->lora && lora_setup(t))
		return -1;
	encoder_fwd(t, img);
	memcpy(emb, t->lora->emb, (size_t)t->lora->T * t->lora->C * sizeof(float));
	return 0;
}
