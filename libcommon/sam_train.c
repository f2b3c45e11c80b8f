/* sam_train.c - training SAM's mask decoder (see mp_train.h): the forward
 * pass of segment_anything's MaskDecoder (TwoWayTransformer, output
 * upscaling, hypernetwork MLP of the single-mask output) keeping what the
 * backward pass needs, the backward pass, MedSAM's loss, AdamW, and the
 * outputs (checkpoint, optimizer state). */
#include "mp_train.h"
#include "sam_tvit.h"
#include "mp.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---------------------------------------------------------------- views */
typedef struct { float *w, *b; } tlin;
typedef struct { float *w, *b; } tnorm;
typedef struct { tlin q, k, v, o; } tatt;
typedef struct {
	tatt sa, t2i, i2t;
	tnorm n1, n2, n3, n4;
	tlin l1, l2;
} tlay;
typedef struct {
	tlay L[8];
	tatt fa;
	tnorm nf;
	float *iou_token, *mask_tokens, *up0w, *up0b, *up3w, *up3b;
	tnorm up1;
	tlin hyper[3];              /* the single-mask output's (hypernetwork 0) */
} tdec;

/* saved activations of one attention (after the projections); X: the
 * factored forms of a cross attention (att_fwd) */
typedef struct { float *in_q, *Q, *K, *V, *P, *O, *X; } aact;
typedef struct {
	float *qin, *sain;
	aact sa;
	float *r1, *mu1, *rs1, *q1, *tq, *kk;
	aact ti;
	float *r2, *mu2, *rs2, *q2, *h;
	float *r3, *mu3, *rs3, *q3, *tq3;
	aact it;
	float *kin, *r4, *mu4, *rs4, *kout;
} lact;

struct mp_tune {
	tdec w, gw;
	int C, T, G, NT, NM, NI, DM, H, C4, C8, depth, S, LR;
	float *tok, *sparse;
	lact la[8];
	float *tqf, *kkf, *rf, *muf, *rsf, *hs;
	aact fa;
	float *y1, *mu5, *rs5, *u1n, *u1g, *y2, *u2g;
	float *a1, *a2, *hv, *low, *up;
	/* gradients of activations and scratch */
	float *dq, *dq2, *dtmp, *dtok, *dk, *dk2, *dkk, *dQ, *dK, *dV, *dO, *ws, *dy1, *du1, *dy2, *du2, *dlow, *gup;
	void **allocs;
	size_t nalloc;
};

static float *
al(mp_tune *w, size_t n)
{
	float *p = mp_xcalloc(n ? n : 1, sizeof(float));
	w->allocs = mp_xrealloc(w->allocs, (w->nalloc + 1) * sizeof *w->allocs);
	w->allocs[w->nalloc++] = p;
	return p;
}

float *
mp_tune_tensor(const mp_sam_tune *t, float *base, const char *fmt, ...)
{
	char name[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < t->nt; i++)
		if (strcmp(t->t[i].name, name) == 0)
			return base + t->t[i].off;
	return NULL;
}

static int
views(mp_sam_tune *t, float *base, tdec *d)
{
	int ok = 1;
#define V(dst, ...) do { (dst) = mp_tune_tensor(t, base, __VA_ARGS__); ok &= (dst) != NULL; } while (0)
#define LIN(l, ...) do { char pre_[256]; snprintf(pre_, sizeof pre_, __VA_ARGS__); \
		V((l).w, "%s.weight", pre_); V((l).b, "%s.bias", pre_); } while (0)
#define ATT(a, ...) do { char pa_[160]; snprintf(pa_, sizeof pa_, __VA_ARGS__); \
		LIN((a).q, "%s.q_proj", pa_); LIN((a).k, "%s.k_proj", pa_); LIN((a).v, "%s.v_proj", pa_); \
		LIN((a).o, "%s.out_proj", pa_); } while (0)
	for (int i = 0; i < t->m->cfg.dec_depth; i++) {
		tlay *L = &d->L[i];
		const char *p = "mask_decoder.transformer.layers";
		ATT(L->sa, "%s.%d.self_attn", p, i);
		ATT(L->t2i, "%s.%d.cross_attn_token_to_image", p, i);
		ATT(L->i2t, "%s.%d.cross_attn_image_to_token", p, i);
		LIN(L->n1, "%s.%d.norm1", p, i);
		LIN(L->n2, "%s.%d.norm2", p, i);
		LIN(L->n3, "%s.%d.norm3", p, i);
		LIN(L->n4, "%s.%d.norm4", p, i);
		LIN(L->l1, "%s.%d.mlp.lin1", p, i);
		LIN(L->l2, "%s.%d.mlp.lin2", p, i);
	}
	ATT(d->fa, "mask_decoder.transformer.final_attn_token_to_image");
	LIN(d->nf, "mask_decoder.transformer.norm_final_attn");
	V(d->iou_token, "mask_decoder.iou_token.weight");
	V(d->mask_tokens, "mask_decoder.mask_tokens.weight");
	V(d->up0w, "mask_decoder.output_upscaling.0.weight");
	V(d->up0b, "mask_decoder.output_upscaling.0.bias");
	LIN(d->up1, "mask_decoder.output_upscaling.1");
	V(d->up3w, "mask_decoder.output_upscaling.3.weight");
	V(d->up3b, "mask_decoder.output_upscaling.3.bias");
	for (int j = 0; j < 3; j++)
		LIN(d->hyper[j], "mask_decoder.output_hypernetworks_mlps.0.layers.%d", j);
#undef ATT
#undef LIN
#undef V
	return ok ? 0 : mp_seterr("mask decoder tensors missing");
}

static void
aact_alloc(mp_tune *w, aact *a, int nq, int nk, int d)
{
	a->Q = al(w, (size_t)nq * d);
	a->K = al(w, (size_t)nk * d);
	a->V = al(w, (size_t)nk * d);
	a->O = al(w, (size_t)nq * d);
	a->P = al(w, (size_t)w->H * nq * nk);
	int n = nq < nk ? nq : nk;
	a->X = nq != nk ? al(w, (size_t)w->H * n * (2 * (size_t)w->C + 1)) : NULL;
}

int
mp_tune_init(mp_sam_tune *t, mp_sam *m, int loss_res)
{
	const mp_sam_config *c = &m->cfg;
	mp_tune *w;

	memset(t, 0, sizeof *t);
	t->m = m;
	t->loss_res = loss_res ? loss_res : c->img_size;
	if (t->loss_res != c->img_size && t->loss_res != 4 * c->grid)
		return mp_seterr("loss resolution %d: want %d (the low-resolution logits) or %d (the input size)",
		                 t->loss_res, 4 * c->grid, c->img_size);
	if (c->out_chans > 1024)
		return mp_seterr("mask decoder width %d: at most 1024", c->out_chans);
	t->opt = (mp_tr_opt){ 1e-4, 0.01, 0.9, 0.999, 1e-8 };
	t->attn_keep = MP_TUNE_ATTN_KEEP;
	/* the parameter buffer: every mask_decoder.* tensor in checkpoint order */
	t->t = mp_xcalloc(m->td.n + 1, sizeof *t->t);
	for (size_t i = 0; i < m->td.n; i++) {
		const mp_tensor *x = &m->td.t[i];
		if (strncmp(x->name, "mask_decoder.", 13) != 0)
			continue;
		mp_tr_tensor *d = &t->t[t->nt++];
		d->name = x->name;
		d->off = t->np;
		d->n = x->n;
		/* MedSAM trains with multimask_output=False: the IoU head is not
		 * in the loss's graph (torch: grad None, skipped by AdamW); the
		 * hypernetworks of masks 1.. are, through a slice (torch: zero
		 * gradients, so AdamW still applies weight decay) */
		d->train = strncmp(x->name, "mask_decoder.iou_prediction_head.", 33) != 0;
		t->np += (x->n + 15) & ~(size_t)15;
	}
	t->p = mp_xcalloc(t->np, sizeof(float));
	t->g = mp_xcalloc(t->np, sizeof(float));
	t->m1 = mp_xcalloc(t->np, sizeof(float));
	t->m2 = mp_xcalloc(t->np, sizeof(float));
	for (size_t i = 0, j = 0; i < m->td.n; i++)
		if (strncmp(m->td.t[i].name, "mask_decoder.", 13) == 0) {
			memcpy(t->p + t->t[j].off, m->td.t[i].data, t->t[j].n * sizeof(float));
			j++;
		}
	w = t->w = mp_xcalloc(1, sizeof *w);
	if (views(t, t->p, &w->w) || views(t, t->g, &w->gw)) {
		mp_tune_free(t);
		return -1;
	}
	w->C = c->out_chans;
	w->G = c->grid;
	w->T = c->grid * c->grid;
	w->NM = c->nmask;
	w->NT = 1 + c->nmask + 2;
	w->NI = c->dec_internal;
	w->DM = c->dec_mlp;
	w->H = c->dec_heads;
	w->C4 = w->C / 4;
	w->C8 = w->C / 8;
	w->depth = c->dec_depth;
	w->S = c->img_size;
	w->LR = t->loss_res;
	size_t C = (size_t)w->C, T = (size_t)w->T, NT = (size_t)w->NT, NI = (size_t)w->NI;
	w->tok = al(w, NT * C);
	for (int l = 0; l < w->depth; l++) {
		lact *a = &w->la[l];
		a->qin = al(w, NT * C);
		a->sain = al(w, NT * C);
		aact_alloc(w, &a->sa, w->NT, w->NT, w->C);
		a->r1 = al(w, NT * C), a->mu1 = al(w, NT), a->rs1 = al(w, NT), a->q1 = al(w, NT * C);
		a->tq = al(w, NT * C);
		a->kk = al(w, T * C);
		aact_alloc(w, &a->ti, w->NT, w->T, w->NI);
		a->r2 = al(w, NT * C), a->mu2 = al(w, NT), a->rs2 = al(w, NT), a->q2 = al(w, NT * C);
		a->h = al(w, NT * w->DM);
		a->r3 = al(w, NT * C), a->mu3 = al(w, NT), a->rs3 = al(w, NT), a->q3 = al(w, NT * C);
		a->tq3 = al(w, NT * C);
		aact_alloc(w, &a->it, w->T, w->NT, w->NI);
		a->kin = l ? w->la[l - 1].kout : al(w, T * C);
		a->r4 = al(w, T * C), a->mu4 = al(w, T), a->rs4 = al(w, T), a->kout = al(w, T * C);
	}
	w->tqf = al(w, NT * C), w->kkf = al(w, T * C), w->rf = al(w, NT * C), w->muf = al(w, NT), w->rsf = al(w, NT);
	w->hs = al(w, NT * C);
	aact_alloc(w, &w->fa, w->NT, w->T, w->NI);
	size_t T4 = 4 * T, T16 = 16 * T;
	w->y1 = al(w, T4 * w->C4), w->mu5 = al(w, T4), w->rs5 = al(w, T4), w->u1n = al(w, T4 * w->C4);
	w->u1g = al(w, T4 * w->C4), w->y2 = al(w, T16 * w->C8), w->u2g = al(w, T16 * w->C8);
	w->a1 = al(w, C), w->a2 = al(w, C), w->hv = al(w, (size_t)w->C8), w->low = al(w, T16);
	w->up = w->LR != 4 * w->G ? al(w, (size_t)w->LR * w->LR) : NULL;
	w->dq = al(w, NT * C), w->dq2 = al(w, NT * C), w->dtmp = al(w, NT * (C > (size_t)w->DM ? C : (size_t)w->DM));
	w->dtok = al(w, NT * C);
	w->dk = al(w, T * C), w->dk2 = al(w, T * C), w->dkk = al(w, T * C);
	size_t big = T * (NI > C ? NI : C);
	w->dQ = al(w, big), w->dK = al(w, big), w->dV = al(w, big), w->dO = al(w, big);
	size_t nws = NT * T;
	nws = nws > T16 * w->C8 ? nws : T16 * w->C8;
	nws = nws > T4 * w->C4 ? nws : T4 * w->C4;
	nws = nws > (size_t)w->H * NT * (T + 1) ? nws : (size_t)w->H * NT * (T + 1);   /* a factored attention's dP, dc */
	w->ws = al(w, nws);
	w->dy1 = al(w, T4 * w->C4), w->du1 = al(w, T4 * w->C4), w->dy2 = al(w, T16 * w->C8);
	w->du2 = al(w, T16 * w->C8);
	w->dlow = al(w, T16);
	w->gup = w->LR != 4 * w->G ? al(w, (size_t)w->LR * w->LR) : NULL;
	w->sparse = al(w, 2 * C);
	return 0;
}

void mp_lora_free(struct mp_lora *l);
void mp_tvlora_free(struct mp_tvlora *l);

int
mp_tune_add_lora(mp_sam_tune *t, int rank, double alpha, uint64_t seed)
{
	const mp_sam_config *c = &t->m->cfg;
	size_t np0 = t->np;
	char name[160];
	static const char *suf[4] = { "lora_A_q", "lora_B_q", "lora_A_v", "lora_B_v" };
	int nb = c->depth, minw = c->embed;
	int *st = mp_xcalloc((size_t)nb + 1, sizeof *st), *bk = mp_xcalloc((size_t)nb + 1, sizeof *bk);
	int *wd = mp_xcalloc((size_t)nb + 1, sizeof *wd);

	if (t->m->tv)   /* TinyViT: the attention blocks of stages 1.. (sam_train_tinyvit.c) */
		nb = mp_tune_tvit_blocks(t->m, st, bk, wd, nb);
	else
		for (int b = 0; b < nb; b++)
			bk[b] = b, wd[b] = c->embed;
	for (int b = 0; b < nb; b++)
		minw = wd[b] < minw ? wd[b] : minw;
	if (nb < 1 || rank < 1 || rank > minw) {
		free(st), free(bk), free(wd);
		return mp_seterr("LoRA rank %d: want 1..%d", rank, minw);
	}
	t->lora_rank = rank;
	t->lora_scale = alpha / rank;
	size_t add = 0;
	t->t = mp_xrealloc(t->t, (t->nt + (size_t)nb * 4 + 1) * sizeof *t->t);
	for (int b = 0; b < nb; b++)
		for (int k = 0; k < 4; k++) {
			size_t per = (size_t)rank * wd[b];
			mp_tr_tensor *d = &t->t[t->nt++];
			if (t->m->tv)
				snprintf(name, sizeof name, "image_encoder.layers.%d.blocks.%d.attn.qkv.%s", st[b], bk[b], suf[k]);
			else
				snprintf(name, sizeof name, "image_encoder.blocks.%d.attn.qkv.%s", b, suf[k]);
			d->name = mp_xstrdup(name);
			d->off = t->np;
			d->n = per;
			d->train = 1;
			d->owned = 1;
			t->np += (per + 15) & ~(size_t)15;
			add += (per + 15) & ~(size_t)15;
		}
	float **bufs[4] = { &t->p, &t->g, &t->m1, &t->m2 };
	for (int k = 0; k < 4; k++) {
		*bufs[k] = mp_xrealloc(*bufs[k], t->np * sizeof(float));
		memset(*bufs[k] + np0, 0, add * sizeof(float));
	}
	/* A: kaiming_uniform_(a=sqrt(5)) of nn.Linear, U(-1/sqrt(in), 1/sqrt(in)) */
	uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 12345;
	for (size_t i = t->nt - (size_t)nb * 4; i < t->nt; i++)
		if (strstr(t->t[i].name, "lora_A")) {
			int in = wd[(i - (t->nt - (size_t)nb * 4)) / 4];
			for (size_t j = 0; j < t->t[i].n; j++) {
				s ^= s << 13, s ^= s >> 7, s ^= s << 17;
				double u = (double)(s >> 11) / 9007199254740992.0;
				t->p[t->t[i].off + j] = (float)((2 * u - 1) / sqrt((double)in));
			}
		}
	free(st), free(bk), free(wd);
	return views(t, t->p, &t->w->w) || views(t, t->g, &t->w->gw) ? -1 : 0;
}

/* the decoder's views after the buffers moved (mp_train_peft.h) */
int mp_tune_rebind(mp_sam_tune *t);
int
mp_tune_rebind(mp_sam_tune *t)
{
	return views(t, t->p, &t->w->w) || views(t, t->g, &t->w->gw) ? -1 : 0;
}

void mp_tune_full_unbind(mp_sam_tune *t);

void
mp_tune_free(mp_sam_tune *t)
{
	if (t->full)
		mp_tune_full_unbind(t);
	if (t->lora)
		mp_lora_free(t->lora);
	if (t->tvl)
		mp_tvlora_free(t->tvl);
	for (size_t i = 0; t->t && i < t->nt; i++)
		if (t->t[i].owned)
			free((char *)t->t[i].name);
	if (t->w) {
		for (size_t i = 0; i < t->w->nalloc; i++)
			free(t->w->allocs[i]);
		free(t->w->allocs);
		free(t->w);
	}
	free(t->t);
	free(t->p);
	free(t->g);
	free(t->m1);
	free(t->m2);
	memset(t, 0, sizeof *t);
}

void
mp_tune_zero_grad(mp_sam_tune *t)
{
	memset(t->g, 0, t->np * sizeof(float));
}

/* ---------------------------------------------------------------- forward */
static void
addv(float *d, const float *a, const float *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] = a[i] + b[i];
}

static void
accv(float *d, const float *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] += a[i];
}

static void
zero(float *d, size_t n)
{
	memset(d, 0, n * sizeof(float));
}

/* The cross attentions between the few tokens and the T image tokens are
 * computed in factored form, so that no product with T rows has the
 * attention's width NI: with n tokens and H heads every such product has
 * H*n columns or rows instead (SAM: 56 against 128), and the projected keys
 * and values of the image are never formed. The same function of the same
 * weights (the scores of a head are q_h . (W_k,h x + b_k,h), and so on);
 * k_proj's bias of the tokens-to-image attention drops out of the scores
 * (a shift of a whole softmax row) and gets its exact gradient, zero.
 *
 * Few queries (nq < nk; queries qin: nq x C, keys kin, values vin: nk x C):
 *   A_h = scale Q_h W_k,h (n x C), S = A kin^T (H n x nk), P = softmax(S),
 *   Z = P vin (H n x C), O_h = Z_h W_v,h^T + b_v,h, out = O W_o^T + b_o.
 *   Kept: Q, P, X = [A | Z].
 * Few keys (nq > nk; keys and values: nk x C):
 *   K, V projected; M_h = scale W_q,h^T K_h^T (C x n), c_h = scale K_h b_q,h;
 *   S = qin M + c (nq x H n: the heads' rows of n side by side), P = softmax
 *   of each head's n; U_h = V_h W_o,h^T (n x C), out = P U + b_o.
 *   Kept: K, V, P, X = [M | U | c]. */
static void
att_fwd_fq(mp_tune *w, const tatt *A, aact *a, const float *qin, int n, const float *kin, const float *vin, int nk,
           int C, int NI, float *out)
{
	int H = w->H, hd = NI / H, Hn = H * n;
	float scale = 1.0f / sqrtf((float)hd), *Am = a->X, *Z = a->X + (size_t)Hn * C;

	mp_tr_linear_fwd(a->Q, qin, A->q.w, A->q.b, n, C, NI);
	for (int h = 0; h < H; h++)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, C, hd, scale, a->Q + h * hd, NI,
		            A->k.w + (size_t)h * hd * C, C, 0.0f, Am + (size_t)h * n * C, C);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Hn, nk, C, 1.0f, Am, C, kin, C, 0.0f, a->P, nk);
	mp_tr_softmax_rows(a->P, Hn, nk);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Hn, C, nk, 1.0f, a->P, nk, vin, C, 0.0f, Z, C);
	for (int i = 0; i < n; i++)
		memcpy(a->O + (size_t)i * NI, A->v.b, (size_t)NI * sizeof(float));
	for (int h = 0; h < H; h++)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, hd, C, 1.0f, Z + (size_t)h * n * C, C,
		            A->v.w + (size_t)h * hd * C, C, 1.0f, a->O + h * hd, NI);
	mp_tr_linear_fwd(out, a->O, A->o.w, A->o.b, n, NI, C);
}

static void
att_fwd_fk(mp_tune *w, const tatt *A, aact *a, const float *qin, int nq, const float *kin, const float *vin, int n,
           int C, int NI, float *out)
{
	int H = w->H, hd = NI / H, Hn = H * n;
	float scale = 1.0f / sqrtf((float)hd), *M = a->X, *U = a->X + (size_t)Hn * C, *c = U + (size_t)Hn * C;

	mp_tr_linear_fwd(a->K, kin, A->k.w, A->k.b, n, C, NI);
	mp_tr_linear_fwd(a->V, vin, A->v.w, A->v.b, n, C, NI);
	for (int h = 0; h < H; h++) {
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, C, n, hd, scale, A->q.w + (size_t)h * hd * C, C,
		            a->K + h * hd, NI, 0.0f, M + h * n, Hn);
		for (int j = 0; j < n; j++) {
			float s = 0;
			for (int e = 0; e < hd; e++)
				s += A->q.b[h * hd + e] * a->K[(size_t)j * NI + h * hd + e];
			c[h * n + j] = scale * s;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, C, hd, 1.0f, a->V + h * hd, NI, A->o.w + h * hd, NI,
		            0.0f, U + (size_t)h * n * C, C);
	}
	for (int i = 0; i < nq; i++)
		memcpy(a->P + (size_t)i * Hn, c, (size_t)Hn * sizeof(float));
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, Hn, C, 1.0f, qin, C, M, Hn, 1.0f, a->P, Hn);
	mp_tr_softmax_rows(a->P, nq * H, n);
	for (int i = 0; i < nq; i++)
		memcpy(out + (size_t)i * C, A->o.b, (size_t)C * sizeof(float));
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, C, Hn, 1.0f, a->P, Hn, U, C, 1.0f, out, C);
}

/* ds = p (dp - sum_j p dp) over rows of n */
static void
softmax_bwd_rows(float *ds, const float *p, int rows, int n)
{
	for (int i = 0; i < rows; i++) {
		const float *pr = p + (size_t)i * n;
		float *dr = ds + (size_t)i * n;
		double s = 0;
		for (int j = 0; j < n; j++)
			s += (double)pr[j] * dr[j];
		float sf = (float)s;
		for (int j = 0; j < n; j++)
			dr[j] = pr[j] * (dr[j] - sf);
	}
}

static void
colsum_add(float *d, const float *x, int rows, int n)
{
	float acc[1024];
	for (int j0 = 0; j0 < n; j0 += 1024) {
		int m = n - j0 < 1024 ? n - j0 : 1024;
		memset(acc, 0, (size_t)m * sizeof(float));
		for (int r = 0; r < rows; r++) {
			const float *xr = x + (size_t)r * n + j0;
			for (int j = 0; j < m; j++)
				acc[j] += xr[j];
		}
		for (int j = 0; j < m; j++)
			d[j0 + j] += acc[j];
	}
}

static void
att_bwd_fq(mp_tune *w, const tatt *A, const tatt *G, const aact *a, const float *qin, int n, const float *kin,
           const float *vin, int nk, int C, int NI, const float *dout, float *dqin, float *dkin, float *dvin)
{
	int H = w->H, hd = NI / H, Hn = H * n;
	float scale = 1.0f / sqrtf((float)hd), *dO = w->dO, *dQ = w->dQ, *dZ = w->dK, *dA = w->dV, *ws = w->ws;
	const float *Am = a->X, *Z = a->X + (size_t)Hn * C;

	zero(dO, (size_t)n * NI);
	mp_tr_linear_bwd(dO, G->o.w, G->o.b, dout, a->O, A->o.w, n, NI, C);
	for (int h = 0; h < H; h++) {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, C, hd, 1.0f, dO + h * hd, NI,
		            A->v.w + (size_t)h * hd * C, C, 0.0f, dZ + (size_t)h * n * C, C);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hd, C, n, 1.0f, dO + h * hd, NI, Z + (size_t)h * n * C, C,
		            1.0f, G->v.w + (size_t)h * hd * C, C);
	}
	colsum_add(G->v.b, dO, n, NI);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Hn, nk, C, 1.0f, dZ, C, vin, C, 0.0f, ws, nk);
	if (dvin)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, C, Hn, 1.0f, a->P, nk, dZ, C, 1.0f, dvin, C);
	softmax_bwd_rows(ws, a->P, Hn, nk);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Hn, C, nk, 1.0f, ws, nk, kin, C, 0.0f, dA, C);
	if (dkin)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, C, Hn, 1.0f, ws, nk, Am, C, 1.0f, dkin, C);
	for (int h = 0; h < H; h++) {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, hd, C, scale, dA + (size_t)h * n * C, C,
		            A->k.w + (size_t)h * hd * C, C, 0.0f, dQ + h * hd, NI);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hd, C, n, scale, a->Q + h * hd, NI,
		            dA + (size_t)h * n * C, C, 1.0f, G->k.w + (size_t)h * hd * C, C);
	}
	mp_tr_linear_bwd(dqin, G->q.w, G->q.b, dQ, qin, A->q.w, n, C, NI);
}

static void
att_bwd_fk(mp_tune *w, const tatt *A, const tatt *G, const aact *a, const float *qin, int nq, const float *kin,
           const float *vin, int n, int C, int NI, const float *dout, float *dqin, float *dkin, float *dvin)
{
	int H = w->H, hd = NI / H, Hn = H * n;
	float scale = 1.0f / sqrtf((float)hd), *dK = w->dK, *dV = w->dV, *dU = w->dQ, *dM = w->dO, *ws = w->ws;
	const float *M = a->X, *U = a->X + (size_t)Hn * C;
	float *dc = ws + (size_t)nq * Hn;

	colsum_add(G->o.b, dout, nq, C);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Hn, C, nq, 1.0f, a->P, Hn, dout, C, 0.0f, dU, C);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, Hn, C, 1.0f, dout, C, U, C, 0.0f, ws, Hn);
	for (int h = 0; h < H; h++) {
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, hd, n, 1.0f, dU + (size_t)h * n * C, C, a->V + h * hd,
		            NI, 1.0f, G->o.w + h * hd, NI);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, C, 1.0f, dU + (size_t)h * n * C, C,
		            A->o.w + h * hd, NI, 0.0f, dV + h * hd, NI);
	}
	softmax_bwd_rows(ws, a->P, nq * H, n);
	if (dqin)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, C, Hn, 1.0f, ws, Hn, M, Hn, 1.0f, dqin, C);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, Hn, nq, 1.0f, qin, C, ws, Hn, 0.0f, dM, Hn);
	memset(dc, 0, (size_t)Hn * sizeof(float));
	colsum_add(dc, ws, nq, Hn);
	for (int h = 0; h < H; h++) {
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, hd, C, n, scale, a->K + h * hd, NI, dM + h * n, Hn, 1.0f,
		            G->q.w + (size_t)h * hd * C, C);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, n, hd, C, scale, dM + h * n, Hn,
		            A->q.w + (size_t)h * hd * C, C, 0.0f, dK + h * hd, NI);
		for (int j = 0; j < n; j++)
			for (int e = 0; e < hd; e++) {
				float g = scale * dc[h * n + j];
				G->q.b[h * hd + e] += g * a->K[(size_t)j * NI + h * hd + e];
				dK[(size_t)j * NI + h * hd + e] += g * A->q.b[h * hd + e];
			}
	}
	mp_tr_linear_bwd(dkin, G->k.w, G->k.b, dK, kin, A->k.w, n, C, NI);
	mp_tr_linear_bwd(dvin, G->v.w, G->v.b, dV, vin, A->v.w, n, C, NI);
}

/* out = out_proj(attn(q(qin), k(kin), v(vin))), activations kept in a */
static void
att_fwd(mp_tune *w, const tatt *A, aact *a, const float *qin, int nq, const float *kin, const float *vin, int nk,
        int C, int NI, float *out)
{
	if (nq < nk) {
		att_fwd_fq(w, A, a, qin, nq, kin, vin, nk, C, NI, out);
		return;
	}
	if (nq > nk) {
		att_fwd_fk(w, A, a, qin, nq, kin, vin, nk, C, NI, out);
		return;
	}
	mp_tr_linear_fwd(a->Q, qin, A->q.w, A->q.b, nq, C, NI);
	mp_tr_linear_fwd(a->K, kin, A->k.w, A->k.b, nk, C, NI);
	mp_tr_linear_fwd(a->V, vin, A->v.w, A->v.b, nk, C, NI);
	mp_tr_attn_fwd(a->O, a->P, a->Q, a->K, a->V, nq, nk, NI, w->H);
	mp_tr_linear_fwd(out, a->O, A->o.w, A->o.b, nq, NI, C);
}

/* the backward of att_fwd: dqin, dkin, dvin (any may alias; NULL: not
 * wanted, for the two of the factored sides) += */
static void
att_bwd(mp_tune *w, const tatt *A, const tatt *G, const aact *a, const float *qin, int nq, const float *kin,
        const float *vin, int nk, int C, int NI, const float *dout, float *dqin, float *dkin, float *dvin)
{
	float *dO = w->dO, *dQ = w->dQ, *dK = w->dK, *dV = w->dV;

	if (nq < nk) {
		att_bwd_fq(w, A, G, a, qin, nq, kin, vin, nk, C, NI, dout, dqin, dkin, dvin);
		return;
	}
	if (nq > nk) {
		att_bwd_fk(w, A, G, a, qin, nq, kin, vin, nk, C, NI, dout, dqin, dkin, dvin);
		return;
	}
	zero(dO, (size_t)nq * NI);
	mp_tr_linear_bwd(dO, G->o.w, G->o.b, dout, a->O, A->o.w, nq, NI, C);
	zero(dQ, (size_t)nq * NI);
	zero(dK, (size_t)nk * NI);
	zero(dV, (size_t)nk * NI);
	mp_tr_attn_bwd(dQ, dK, dV, dO, a->P, a->Q, a->K, a->V, nq, nk, NI, w->H, w->ws);
	mp_tr_linear_bwd(dqin, G->q.w, G->q.b, dQ, qin, A->q.w, nq, C, NI);
	mp_tr_linear_bwd(dkin, G->k.w, G->k.b, dK, kin, A->k.w, nk, C, NI);
	mp_tr_linear_bwd(dvin, G->v.w, G->v.b, dV, vin, A->v.w, nk, C, NI);
}

static void
forward(mp_sam_tune *t, const float *emb, const float box[4])
{
	mp_tune *w = t->w;
	const mp_sam *m = t->m;
	const tdec *D = &w->w;
	int C = w->C, T = w->T, NT = w->NT, NI = w->NI;
	size_t nq = (size_t)NT * C, nk = (size_t)T * C;
	const float *kpe = m->dense_pe;

	/* tokens: iou, mask tokens, the two box corners */
	memcpy(w->tok, D->iou_token, (size_t)C * sizeof(float));
	memcpy(w->tok + C, D->mask_tokens, (size_t)w->NM * C * sizeof(float));
	for (int k = 0; k < 2; k++) {
		float *e = w->tok + (size_t)(1 + w->NM + k) * C;
		mp_sam_pe_coords(m, box[2 * k] + 0.5f, box[2 * k + 1] + 0.5f, e);
		for (int j = 0; j < C; j++)
			e[j] += m->point_emb[2 + k][j];
	}
	float *k0 = w->la[0].kin;
	for (int t0 = 0; t0 < T; t0 += 32)   /* transposed in tiles of 32 x 32 */
		for (int c0 = 0; c0 < C; c0 += 32)
			for (int tt = t0; tt < T && tt < t0 + 32; tt++)
				for (int ch = c0; ch < C && ch < c0 + 32; ch++)
					k0[(size_t)tt * C + ch] = emb[(size_t)ch * T + tt] + m->no_mask[ch];
	const float *q = w->tok;
	for (int l = 0; l < w->depth; l++) {
		const tlay *L = &D->L[l];
		lact *a = &w->la[l];
		memcpy(a->qin, q, nq * sizeof(float));
		if (l == 0) {
			memcpy(a->sain, a->qin, nq * sizeof(float));
			att_fwd(w, &L->sa, &a->sa, a->sain, NT, a->sain, a->qin, NT, C, C, a->r1);
		} else {
			addv(a->sain, a->qin, w->tok, nq);
			att_fwd(w, &L->sa, &a->sa, a->sain, NT, a->sain, a->qin, NT, C, C, a->r1);
			accv(a->r1, a->qin, nq);
		}
		mp_tr_layernorm_fwd(a->q1, a->mu1, a->rs1, a->r1, L->n1.w, L->n1.b, NT, C, 1e-5f);
		addv(a->tq, a->q1, w->tok, nq);
		addv(a->kk, a->kin, kpe, nk);
		att_fwd(w, &L->t2i, &a->ti, a->tq, NT, a->kk, a->kin, T, C, NI, a->r2);
		accv(a->r2, a->q1, nq);
		mp_tr_layernorm_fwd(a->q2, a->mu2, a->rs2, a->r2, L->n2.w, L->n2.b, NT, C, 1e-5f);
		mp_tr_linear_fwd(a->h, a->q2, L->l1.w, L->l1.b, NT, C, w->DM);
		mp_tr_relu_fwd(a->h, a->h, (size_t)NT * w->DM);
		mp_tr_linear_fwd(a->r3, a->h, L->l2.w, L->l2.b, NT, w->DM, C);
		accv(a->r3, a->q2, nq);
		mp_tr_layernorm_fwd(a->q3, a->mu3, a->rs3, a->r3, L->n3.w, L->n3.b, NT, C, 1e-5f);
		addv(a->tq3, a->q3, w->tok, nq);
		att_fwd(w, &L->i2t, &a->it, a->kk, T, a->tq3, a->q3, NT, C, NI, a->r4);
		accv(a->r4, a->kin, nk);
		mp_tr_layernorm_fwd(a->kout, a->mu4, a->rs4, a->r4, L->n4.w, L->n4.b, T, C, 1e-5f);
		q = a->q3;
	}
	const float *keys = w->la[w->depth - 1].kout;
	addv(w->tqf, q, w->tok, nq);
	addv(w->kkf, keys, kpe, nk);
	att_fwd(w, &D->fa, &w->fa, w->tqf, NT, w->kkf, keys, T, C, NI, w->rf);
	accv(w->rf, q, nq);
	mp_tr_layernorm_fwd(w->hs, w->muf, w->rsf, w->rf, D->nf.w, D->nf.b, NT, C, 1e-5f);

	/* upscaling */
	int G = w->G, G2 = 2 * G, C4 = w->C4, C8 = w->C8;
	mp_tr_convt2_fwd(w->y1, keys, D->up0w, D->up0b, G, G, C, C4, w->ws);
	mp_tr_layernorm_fwd(w->u1n, w->mu5, w->rs5, w->y1, D->up1.w, D->up1.b, G2 * G2, C4, 1e-6f);
	mp_tr_gelu_fwd(w->u1g, w->u1n, (size_t)G2 * G2 * C4);
	mp_tr_convt2_fwd(w->y2, w->u1g, D->up3w, D->up3b, G2, G2, C4, C8, w->ws);
	mp_tr_gelu_fwd(w->u2g, w->y2, (size_t)16 * T * C8);
	/* hypernetwork of mask 0 and the mask */
	mp_tr_linear_fwd(w->a1, w->hs + C, D->hyper[0].w, D->hyper[0].b, 1, C, C);
	mp_tr_relu_fwd(w->a1, w->a1, (size_t)C);
	mp_tr_linear_fwd(w->a2, w->a1, D->hyper[1].w, D->hyper[1].b, 1, C, C);
	mp_tr_relu_fwd(w->a2, w->a2, (size_t)C);
	mp_tr_linear_fwd(w->hv, w->a2, D->hyper[2].w, D->hyper[2].b, 1, C, C8);
	cblas_sgemv(CblasRowMajor, CblasNoTrans, 16 * T, C8, 1.0f, w->u2g, C8, w->hv, 1, 0.0f, w->low, 1);
}

/* ---------------------------------------------------------------- backward */
static void
backward(mp_sam_tune *t, const float *dlow, float *demb, double gscale)
{
	mp_tune *w = t->w;
	const mp_sam *m = t->m;
	const tdec *D = &w->w, *Gd = &w->gw;
	int C = w->C, T = w->T, NT = w->NT, NI = w->NI, G = w->G, G2 = 2 * G, C4 = w->C4, C8 = w->C8;
	size_t nq = (size_t)NT * C, nk = (size_t)T * C;
	float *dq = w->dq, *dk = w->dk, *dtok = w->dtok;

	(void)m;
	zero(dtok, nq);
	/* mask = u2g . hv */
	float dhv[1024], da2[1024], da1[1024];
	zero(dhv, (size_t)C8);
	cblas_sgemv(CblasRowMajor, CblasTrans, 16 * T, C8, 1.0f, w->u2g, C8, dlow, 1, 0.0f, dhv, 1);
	float *du2 = w->du2;
	zero(du2, (size_t)16 * T * C8);
	cblas_sger(CblasRowMajor, 16 * T, C8, 1.0f, dlow, 1, w->hv, 1, du2, C8);
	/* hypernetwork */
	zero(dq, nq);
	zero(da2, (size_t)C);
	mp_tr_linear_bwd(da2, Gd->hyper[2].w, Gd->hyper[2].b, dhv, w->a2, D->hyper[2].w, 1, C, C8);
	zero(da1, (size_t)C);
	for (int j = 0; j < C; j++)
		da2[j] = w->a2[j] > 0 ? da2[j] : 0;
	mp_tr_linear_bwd(da1, Gd->hyper[1].w, Gd->hyper[1].b, da2, w->a1, D->hyper[1].w, 1, C, C);
	for (int j = 0; j < C; j++)
		da1[j] = w->a1[j] > 0 ? da1[j] : 0;
	mp_tr_linear_bwd(dq + C, Gd->hyper[0].w, Gd->hyper[0].b, da1, w->hs + C, D->hyper[0].w, 1, C, C);
	/* upscaling */
	float *dy2 = w->dy2;
	zero(dy2, (size_t)16 * T * C8);
	mp_tr_gelu_bwd(dy2, du2, w->y2, (size_t)16 * T * C8);
	float *du1 = w->du1, *dy1 = w->dy1;
	zero(du1, (size_t)4 * T * C4);
	mp_tr_convt2_bwd(du1, Gd->up3w, Gd->up3b, dy2, w->u1g, D->up3w, G2, G2, C4, C8, w->ws);
	zero(dy1, (size_t)4 * T * C4);
	{
		/* through GELU into dy1 (as a temporary), then layer norm */
		float *dn = w->ws;
		size_t n = (size_t)4 * T * C4;
		zero(dn, n);
		mp_tr_gelu_bwd(dn, du1, w->u1n, n);
		mp_tr_layernorm_bwd(dy1, Gd->up1.w, Gd->up1.b, dn, w->y1, w->mu5, w->rs5, D->up1.w, G2 * G2, C4);
	}
	zero(dk, nk);
	mp_tr_convt2_bwd(dk, Gd->up0w, Gd->up0b, dy1, w->la[w->depth - 1].kout, D->up0w, G, G, C, C4, w->ws);

	/* final attention: rf = q + fa(q + tok, keys + kpe, keys); hs = LN(rf) */
	const float *keys = w->la[w->depth - 1].kout;
	float *drf = w->dq2;
	zero(drf, nq);
	mp_tr_layernorm_bwd(drf, Gd->nf.w, Gd->nf.b, dq, w->rf, w->muf, w->rsf, D->nf.w, NT, C);
	/* dq := drf (residual) */
	memcpy(dq, drf, nq * sizeof(float));
	float *dtq = w->dtmp, *dkk = w->dkk;
	zero(dtq, nq);
	zero(dkk, nk);
	att_bwd(w, &D->fa, &Gd->fa, &w->fa, w->tqf, NT, w->kkf, keys, T, C, NI, drf, dtq, dkk, dk);
	accv(dq, dtq, nq);
	accv(dtok, dtq, nq);
	accv(dk, dkk, nk);

	for (int l = w->depth - 1; l >= 0; l--) {
		const tlay *L = &D->L[l];
		const tlay *GL = &Gd->L[l];
		lact *a = &w->la[l];
		float *dr = w->dq2, *dkin = w->dk2;
		/* keys = LN4(kin + i2t(kk, tq3, q3)) */
		zero(dkin, nk);
		mp_tr_layernorm_bwd(dkin, GL->n4.w, GL->n4.b, dk, a->r4, a->mu4, a->rs4, L->n4.w, T, C);
		/* dkin now holds dr4: the residual's share stays, the attention's goes below */
		zero(dkk, nk);
		zero(dtq, nq);
		/* layer 0 without demb: the image side's gradient is not wanted */
		int img = l > 0 || demb;
		att_bwd(w, &L->i2t, &GL->i2t, &a->it, a->kk, T, a->tq3, a->q3, NT, C, NI, dkin, img ? dkk : NULL, dtq, dq);
		accv(dq, dtq, nq);
		accv(dtok, dtq, nq);
		/* q3 = LN3(q2 + mlp(q2)) */
		zero(dr, nq);
		mp_tr_layernorm_bwd(dr, GL->n3.w, GL->n3.b, dq, a->r3, a->mu3, a->rs3, L->n3.w, NT, C);
		memcpy(dq, dr, nq * sizeof(float));
		{
			float *dh = w->dtmp;
			zero(dh, (size_t)NT * w->DM);
			mp_tr_linear_bwd(dh, GL->l2.w, GL->l2.b, dr, a->h, L->l2.w, NT, w->DM, C);
			for (size_t i = 0; i < (size_t)NT * w->DM; i++)
				dh[i] = a->h[i] > 0 ? dh[i] : 0;
			mp_tr_linear_bwd(dq, GL->l1.w, GL->l1.b, dh, a->q2, L->l1.w, NT, C, w->DM);
		}
		/* q2 = LN2(q1 + t2i(q1 + tok, kin + kpe, kin)) */
		zero(dr, nq);
		mp_tr_layernorm_bwd(dr, GL->n2.w, GL->n2.b, dq, a->r2, a->mu2, a->rs2, L->n2.w, NT, C);
		memcpy(dq, dr, nq * sizeof(float));
		zero(dtq, nq);
		att_bwd(w, &L->t2i, &GL->t2i, &a->ti, a->tq, NT, a->kk, a->kin, T, C, NI, dr, dtq, img ? dkk : NULL,
		        img ? dkin : NULL);
		accv(dq, dtq, nq);
		accv(dtok, dtq, nq);
		if (img)
			accv(dkin, dkk, nk);
		/* q1 = LN1(qin + sa(qin + tok, qin + tok, qin)), or LN1(sa(qin, qin, qin)) in layer 0 */
		zero(dr, nq);
		mp_tr_layernorm_bwd(dr, GL->n1.w, GL->n1.b, dq, a->r1, a->mu1, a->rs1, L->n1.w, NT, C);
		zero(dq, nq);
		if (l == 0) {
			att_bwd(w, &L->sa, &GL->sa, &a->sa, a->sain, NT, a->sain, a->qin, NT, C, C, dr, dq, dq, dq);
		} else {
			memcpy(dq, dr, nq * sizeof(float));
			zero(dtq, nq);
			att_bwd(w, &L->sa, &GL->sa, &a->sa, a->sain, NT, a->sain, a->qin, NT, C, C, dr, dtq, dtq, dq);
			accv(dq, dtq, nq);
			accv(dtok, dtq, nq);
		}
		if (img)
			memcpy(dk, dkin, nk * sizeof(float));
	}
	/* the queries start as the tokens */
	accv(dtok, dq, nq);
	accv(Gd->iou_token, dtok, (size_t)C);
	accv(Gd->mask_tokens, dtok + C, (size_t)w->NM * C);
	if (demb)
		for (int tt = 0; tt < T; tt++)
			for (int ch = 0; ch < C; ch++)
				demb[(size_t)ch * T + tt] += (float)(gscale * dk[(size_t)tt * C + ch]);
}

int
mp_tune_sample(mp_sam_tune *t, const float *emb, const float box[4], const float *gt, double gscale, double *loss,
               double *dice, double *bce, float *lowres, float *demb)
{
	mp_tune *w = t->w;
	int L4 = 4 * w->G, LR = w->LR;
	size_t nl = (size_t)L4 * L4;
	double d, b, l;

	forward(t, emb, box);
	if (lowres)
		memcpy(lowres, w->low, nl * sizeof(float));
	/* the loss's gradient is taken with scale 1 and gscale applied to the
	 * parameter gradients by scaling dlow (the whole backward is linear in it) */
	float *dlow = w->dlow;
	zero(dlow, nl);
	if (LR == L4) {
		l = mp_tr_dice_bce(w->low, gt, nl, dlow, gscale, &d, &b);
	} else {
		size_t nu = (size_t)LR * LR;
		mp_tr_bilinear_fwd(w->up, LR, LR, w->low, L4, L4);
		zero(w->gup, nu);
		l = mp_tr_dice_bce(w->up, gt, nu, w->gup, gscale, &d, &b);
		mp_tr_bilinear_bwd(dlow, L4, L4, w->gup, LR, LR);
	}
	backward(t, dlow, demb, 1.0);
	if (loss)
		*loss = l;
	if (dice)
		*dice = d;
	if (bce)
		*bce = b;
	return 0;
}

/* ---------------------------------------------------------------- AdamW */
void
mp_tune_adamw(mp_sam_tune *t, double lr)
{
	const mp_tr_opt *o = &t->opt;

	t->step++;
	double bc1 = 1.0 - pow(o->beta1, (double)t->step), bc2 = 1.0 - pow(o->beta2, (double)t->step);
	float decay = (float)(1.0 - lr * o->wd), b1 = (float)o->beta1, b2 = (float)o->beta2;
	float ob1 = (float)(1.0 - o->beta1), ob2 = (float)(1.0 - o->beta2);
	float step_size = (float)(lr / bc1), bc2s = (float)sqrt(bc2), eps = (float)o->eps;
	(void)b1;
	for (size_t i = 0; i < t->nt; i++) {
		const mp_tr_tensor *x = &t->t[i];
		if (!x->train)
			continue;
		float *p = t->p + x->off, *g = t->g + x->off, *m = t->m1 + x->off, *v = t->m2 + x->off;
		for (size_t j = 0; j < x->n; j++) {
			p[j] *= decay;
			m[j] += ob1 * (g[j] - m[j]);
			v[j] = v[j] * b2 + ob2 * g[j] * g[j];
			float den = sqrtf(v[j]) / bc2s + eps;
			p[j] -= step_size * (m[j] / den);
		}
	}
}

/* ---------------------------------------------------------------- outputs */
int
mp_tune_save(const mp_sam_tune *t, const char *path)
{
	const mp_tdict *td = &t->m->td;
	size_t n = 0, j = 0;
	const char **names = mp_xcalloc(td->n + 1, sizeof *names);
	int *nd = mp_xcalloc(td->n + 1, sizeof *nd);
	const int64_t **sh = mp_xcalloc(td->n + 1, sizeof *sh);
	const float **data = mp_xcalloc(td->n + 1, sizeof *data);
	const int64_t **idata = mp_xcalloc(td->n + 1, sizeof *idata);
	float **merged = mp_xcalloc(td->n + 1, sizeof *merged);
	size_t nmerged = 0;
	int rc = -1;

	for (size_t i = 0; i < td->n; i++) {
		const mp_tensor *x = &td->t[i];
		int dec = strncmp(x->name, "mask_decoder.", 13) == 0;
		const float *d = dec ? t->p + t->t[j++].off : x->data;
		if (t->full && strncmp(x->name, "image_encoder.", 14) == 0 && mp_tune_tensor((mp_sam_tune *)t, t->p, "%s", x->name))
			d = mp_tune_tensor((mp_sam_tune *)t, t->p, "%s", x->name);   /* --mode full: the trained encoder */
		int blk;
		char tail[32];
		if (t->lora_rank && sscanf(x->name, "image_encoder.blocks.%d.attn.qkv.%31s", &blk, tail) == 2 &&
		    strcmp(tail, "weight") == 0 && d) {
			/* merged: W[0:E] += s B_q A_q, W[2E:3E] += s B_v A_v */
			int E = t->m->cfg.embed, r = t->lora_rank;
			float *mw = mp_xmalloc(x->n * sizeof(float));
			memcpy(mw, d, x->n * sizeof(float));
			const float *aq = mp_tune_tensor((mp_sam_tune *)t, t->p, "image_encoder.blocks.%d.attn.qkv.lora_A_q", blk);
			const float *bq = mp_tune_tensor((mp_sam_tune *)t, t->p, "image_encoder.blocks.%d.attn.qkv.lora_B_q", blk);
			const float *av = mp_tune_tensor((mp_sam_tune *)t, t->p, "image_encoder.blocks.%d.attn.qkv.lora_A_v", blk);
			const float *bv = mp_tune_tensor((mp_sam_tune *)t, t->p, "image_encoder.blocks.%d.attn.qkv.lora_B_v", blk);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, E, E, r, (float)t->lora_scale, bq, r, aq, E, 1.0f,
			            mw, E);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, E, E, r, (float)t->lora_scale, bv, r, av, E, 1.0f,
			            mw + (size_t)2 * E * E, E);
			merged[nmerged++] = mw;
			d = mw;
		}
		int ts;
		if (t->lora_rank && t->m->tv &&
		    sscanf(x->name, "image_encoder.layers.%d.blocks.%d.attn.qkv.%31s", &ts, &blk, tail) == 3 &&
		    strcmp(tail, "weight") == 0 && d && ts >= 0 && ts < t->m->tv->nstage) {
			/* merged into the official per-head layout [q k v] of each head:
			 * row h*3kd + e += s (B_q A_q)[h*kd + e], row h*3kd + 2kd + e likewise for v */
			int C = t->m->tv->st[ts].dim, H = t->m->tv->st[ts].heads, kd = C / H, r = t->lora_rank;
			float *mw = mp_xmalloc(x->n * sizeof(float)), *dq = mp_xmalloc((size_t)C * C * sizeof(float));
			memcpy(mw, d, x->n * sizeof(float));
			for (int k = 0; k < 2; k++) {
				const float *A = mp_tune_tensor((mp_sam_tune *)t, t->p, "image_encoder.layers.%d.blocks.%d.attn.qkv.lora_A_%c", ts,
				                    blk, k ? 'v' : 'q');
				const float *Bm = mp_tune_tensor((mp_sam_tune *)t, t->p, "image_encoder.layers.%d.blocks.%d.attn.qkv.lora_B_%c", ts,
				                     blk, k ? 'v' : 'q');
				if (!A || !Bm)
					continue;
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, C, r, (float)t->lora_scale, Bm, r, A, C, 0.0f,
				            dq, C);
				for (int h = 0; h < H; h++)
					for (int e = 0; e < kd; e++) {
						float *row = mw + ((size_t)h * 3 * kd + (size_t)k * 2 * kd + e) * C;
						const float *src = dq + ((size_t)h * kd + e) * C;
						for (int j = 0; j < C; j++)
							row[j] += src[j];
					}
			}
			free(dq);
			merged[nmerged++] = mw;
			d = mw;
		}
		/* buffers registered with persistent=False are not in SAM's state dict */
		if (strcmp(x->name, "pixel_mean") == 0 || strcmp(x->name, "pixel_std") == 0)
			continue;
		if (!d && !x->idata) {
			mp_seterr("%s: tensor %s is neither floating point nor a small integer tensor", path, x->name);
			goto out;
		}
		names[n] = x->name;
		nd[n] = x->ndim;
		sh[n] = x->shape;
		data[n] = d;
		idata[n] = d ? NULL : x->idata;   /* batch norms' num_batches_tracked (TinyViT) */
		n++;
	}
	rc = mp_torch_save_mixed(path, n, names, nd, sh, data, idata);
out:
	for (size_t i = 0; i < nmerged; i++)
		free(merged[i]);
	free(merged);
	free(names);
	free(nd);
	free(sh);
	free(data);
	free(idata);
	return rc;
}

/* the state file: "MPTUNE01", then little-endian u64 np, step, user, the
 * CRC-32 of the tensor names, then p, m1, m2 (np floats each), then the
 * CRC-32 of everything before it */
static uint32_t
names_crc(const mp_sam_tune *t)
{
	uLong c = crc32(0L, Z_NULL, 0);
	for (size_t i = 0; i < t->nt; i++)
		c = crc32(c, (const Bytef *)t->t[i].name, (uInt)strlen(t->t[i].name) + 1);
	return (uint32_t)c;
}

int
mp_tune_save_state(const mp_sam_tune *t, const char *path, uint64_t user)
{
	mp_afile *a = mp_afile_open(path);
	uint64_t h[4] = { (uint64_t)t->np, (uint64_t)t->step, user, names_crc(t) };
	uLong c = crc32(0L, Z_NULL, 0);
	const float *arr[3] = { t->p, t->m1, t->m2 };

	if (!a)
		return -1;
	fwrite("MPTUNE01", 1, 8, a->fp);
	fwrite(h, sizeof h, 1, a->fp);
	c = crc32(c, (const Bytef *)"MPTUNE01", 8);
	c = crc32(c, (const Bytef *)h, sizeof h);
	for (int k = 0; k < 3; k++) {
		fwrite(arr[k], sizeof(float), t->np, a->fp);
		c = crc32_z(c, (const Bytef *)arr[k], t->np * sizeof(float));
	}
	uint32_t c32 = (uint32_t)c;
	fwrite(&c32, 4, 1, a->fp);
	return mp_afile_commit(a);
}

int
mp_tune_load_state(mp_sam_tune *t, const char *path, uint64_t *user)
{
	FILE *fp = fopen(path, "rb");
	char magic[8];
	uint64_t h[4];
	uint32_t c32;
	uLong c = crc32(0L, Z_NULL, 0);
	float *arr[3];

	if (!fp)
		return mp_seterr("%s: cannot open", path);
	if (fread(magic, 1, 8, fp) != 8 || memcmp(magic, "MPTUNE01", 8) != 0 || fread(h, sizeof h, 1, fp) != 1) {
		fclose(fp);
		return mp_seterr("%s: not a sam-tune state file", path);
	}
	if (h[0] != t->np || h[3] != names_crc(t)) {
		fclose(fp);
		return mp_seterr("%s: the state is of another model or mode (its tensors differ from those of --weights and --mode)", path);
	}
	c = crc32(c, (const Bytef *)magic, 8);
	c = crc32(c, (const Bytef *)h, sizeof h);
	for (int k = 0; k < 3; k++)
		arr[k] = mp_xmalloc(t->np * sizeof(float) + 1);
	int bad = 0;
	for (int k = 0; k < 3 && !bad; k++) {
		bad = fread(arr[k], sizeof(float), t->np, fp) != t->np;
		if (!bad)
			c = crc32_z(c, (const Bytef *)arr[k], t->np * sizeof(float));
	}
	bad = bad || fread(&c32, 4, 1, fp) != 1 || c32 != (uint32_t)c || fgetc(fp) != EOF;
	fclose(fp);
	if (bad) {
		for (int k = 0; k < 3; k++)
			free(arr[k]);
		return mp_seterr("%s: truncated or damaged state file", path);
	}
	memcpy(t->p, arr[0], t->np * sizeof(float));
	memcpy(t->m1, arr[1], t->np * sizeof(float));
	memcpy(t->m2, arr[2], t->np * sizeof(float));
	for (int k = 0; k < 3; k++)
		free(arr[k]);
	t->step = (long)h[1];
	if (user)
		*user = h[2];
	return 0;
}

int
mp_tune_predict(mp_sam_tune *t, const float *emb, const float box[4], float *lowres)
{
	mp_tune *w = t->w;
	forward(t, emb, box);
	memcpy(lowres, w->low, (size_t)16 * w->G * w->G * sizeof(float));
	return 0;
}
