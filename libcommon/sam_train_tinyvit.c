/* sam_train_tinyvit.c - LoRA and full fine-tuning through the TinyViT image
 * encoder (LiteMedSAM, MobileSAM): the forward keeping what the backward
 * needs, and the backward from the embedding's gradient.
 *
 * LoRA (mp_tune_add_lora): the encoder's own weights are frozen (batch norms
 * folded, eval mode, as sam_tinyvit.c loads them); the pass runs from the
 * first attention stage (the stem, the MBConv stage and its merging layer
 * have nothing trainable before them and run without gradients:
 * mp_sam_tvit_front); gradients of the LoRA matrices only.
 *
 * Full (mp_tune_add_full): every image_encoder.* parameter trained, from the
 * stem on. Batch norms stay in eval mode: the running statistics are frozen
 * buffers (LiteMedSAM's own training, train_one_gpu.py, runs the model in
 * train mode, batch statistics; a per-sample pass cannot, and MedSAM's
 * recipe for a pretrained model at batch 2 gains nothing from them), their
 * affine weight and bias are trained. Before every pass the convolutions are
 * folded again from the trained tensors into the model's own buffers (so the
 * forward is the inference one's), the qkv rows reordered and the attention
 * bias tables spread; the backward gives the gradients of the folded
 * weights, turned into those of the conv weight, the BN weight and bias, the
 * official qkv layout and the bias table (attention_biases) per sample.
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
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* a Conv2d_BN trained in full mode: the model's folded tconv, the trained
 * tensors (t->p), their gradients (t->g), the checkpoint's (to restore the
 * model at the end), the frozen running statistics, and the gradients of
 * the folded weight and bias (c's layout) of the current sample */
typedef struct {
	tconv *c;
	const float *mu, *var, *W0, *gam0, *bet0;
	float *W, *gam, *bet, *gW, *ggam, *gbet;
	float *dwf, *dbf;
} tcb;

/* the full-mode gradients of an attention block (t->g, official layouts) */
typedef struct {
	float *an_w, *an_b, *mn_w, *mn_b, *proj_w, *proj_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
	float *qw, *qb, *ab;                 /* qkv (per head [q k v]) and attention_biases, gradients */
	const float *pqw, *pqb, *pab;        /* the same, trained values */
	const float *oqw, *oqb, *oab;        /* the checkpoint's */
	float *dqw, *dqb, *dbias;            /* scratch: reordered qkv, heads x N x N */
	int lc;                              /* its local conv in cb[] */
} tvf;

typedef struct {
	const tstage *s;
	const tblk *b;
	int R, C, H, ws, N, nw, nb, hidden;
	size_t T, rows;
	float *xw, *mu1, *rs1, *xn, *xaq, *xav, *qkv, *P, *x2, *mu2, *rs2, *hpre;
	float *aq, *bq, *av, *bv, *gaq, *gbq, *gav, *gbv;
	float *x1, *O;                       /* full: the local conv's input, the attention output */
	tvf f;
} tvb;

typedef struct {
	const tmb *pm;
	int R, Ro, Ci, Co;
	float *a, *b, *xin;                  /* xin: full mode */
	int c[3];                            /* full: its convs in cb[] */
} tvm;

/* an MBConv block in full mode: input, and the three pre-GELU activations */
typedef struct {
	const tmb *mb;
	int R, C, Hd;
	float *x, *a1, *a2, *a3;
	int c[3];
} tvc;

struct mp_tvlora {
	int first, nb, nm, r, G, E, C;
	tvb b[TV_MAXSTAGE * TV_MAXDEPTH];
	tvm mg[TV_MAXSTAGE];
	int mg_after[TV_MAXSTAGE];          /* merge index after stage i, or -1 */
	float *x, *n0, *mu5, *rs5, *n2, *mu6, *rs6, *emb, *demb;
	float *s1, *s2, *s3, *s4, *dxa, *ws;
	size_t cap;
	/* full mode */
	int full, ncb, nc;
	struct mp_tvit *tv;
	tcb *cb;
	tvc mc[TV_MAXDEPTH];
	int stem[2];
	float *img, *sa, *s5, *cols, *dcols, *xe, *n1;
	float *g_n0, *g_n1w, *g_n1b, *g_n2, *g_n3w, *g_n3b;
	size_t ncols;
	const float **slot[10 * TV_MAXSTAGE * TV_MAXDEPTH + 8];
	const float *orig[10 * TV_MAXSTAGE * TV_MAXDEPTH + 8];
	int nslot;
};

static void refold(struct mp_tvlora *l, int trained);

void mp_tvlora_free(struct mp_tvlora *l);

void
mp_tvlora_free(struct mp_tvlora *l)
{
	if (!l)
		return;
	if (l->full) {   /* the model as loaded again */
		for (int i = 0; i < l->nslot; i++)
			*l->slot[i] = l->orig[i];
		refold(l, 0);
		for (int i = 0; i < l->ncb; i++)
			free(l->cb[i].dwf), free(l->cb[i].dbf);
		free(l->cb);
		for (int i = 0; i < l->nc; i++)
			free(l->mc[i].x), free(l->mc[i].a1), free(l->mc[i].a2), free(l->mc[i].a3);
		for (int i = 0; i < l->nb; i++)
			free(l->b[i].f.dqw), free(l->b[i].f.dqb), free(l->b[i].f.dbias);
	}
	float **all[] = { &l->x, &l->n0, &l->mu5, &l->rs5, &l->n2, &l->mu6, &l->rs6, &l->emb, &l->demb,
	                  &l->s1, &l->s2, &l->s3, &l->s4, &l->dxa, &l->ws,
	                  &l->img, &l->sa, &l->s5, &l->cols, &l->dcols, &l->xe, &l->n1 };
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		free(*all[i]);
	for (int i = 0; i < l->nb; i++) {
		tvb *a = &l->b[i];
		float **f[] = { &a->xw, &a->mu1, &a->rs1, &a->xn, &a->xaq, &a->xav, &a->qkv, &a->P,
		                &a->x2, &a->mu2, &a->rs2, &a->hpre, &a->x1, &a->O };
		for (size_t k = 0; k < sizeof f / sizeof *f; k++)
			free(*f[k]);
	}
	for (int i = 0; i < l->nm; i++)
		free(l->mg[i].a), free(l->mg[i].b), free(l->mg[i].xin);
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
	return mp_tune_tensor(t, base, "image_encoder.layers.%d.blocks.%d.attn.qkv.%s", st, b, suf);
}


/* the checkpoint's tensor by name, or NULL */
static const float *
ck(const mp_sam *m, const char *fmt, ...)
{
	char name[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	const mp_tensor *x = mp_tl_find(&m->td, name);
	return x ? x->data : NULL;
}

static int
conv_out(const tconv *c, int R)
{
	return (R + 2 * (c->k / 2) - c->k) / c->stride + 1;
}

/* the Conv2d_BN PREFIX (its folded form c) into l->cb; its index, or -1 */
static int
addcb(mp_sam_tune *t, struct mp_tvlora *l, tconv *c, const char *prefix)
{
	tcb *b = &l->cb[l->ncb];
	const mp_sam *m = t->m;
	b->c = c;
	b->W = mp_tune_tensor(t, t->p, "%s.c.weight", prefix), b->gW = mp_tune_tensor(t, t->g, "%s.c.weight", prefix);
	b->gam = mp_tune_tensor(t, t->p, "%s.bn.weight", prefix), b->ggam = mp_tune_tensor(t, t->g, "%s.bn.weight", prefix);
	b->bet = mp_tune_tensor(t, t->p, "%s.bn.bias", prefix), b->gbet = mp_tune_tensor(t, t->g, "%s.bn.bias", prefix);
	b->W0 = ck(m, "%s.c.weight", prefix), b->gam0 = ck(m, "%s.bn.weight", prefix);
	b->bet0 = ck(m, "%s.bn.bias", prefix);
	b->mu = ck(m, "%s.bn.running_mean", prefix), b->var = ck(m, "%s.bn.running_var", prefix);
	if (!b->W || !b->gam || !b->bet || !b->gW || !b->ggam || !b->gbet || !b->W0 || !b->gam0 || !b->bet0 || !b->mu ||
	    !b->var) {
		mp_seterr("%s: a Conv2d_BN's tensors missing (mp_tune_add_full)", prefix);
		return -1;
	}
	b->dwf = z((size_t)c->out * (c->dw ? 1 : c->in) * c->k * c->k), b->dbf = z((size_t)c->out);
	return l->ncb++;
}

static void
slot(struct mp_tvlora *l, const float **s, const float *to)
{
	l->slot[l->nslot] = s, l->orig[l->nslot++] = *s;
	*s = to;
}

/* the model's folded convolutions, reordered qkv and spread attention biases
 * from the trained tensors (trained) or the checkpoint's (as loaded) */
static void
refold(struct mp_tvlora *l, int trained)
{
	for (int i = 0; i < l->ncb; i++) {
		const tcb *b = &l->cb[i];
		tconv *c = b->c;
		const float *W = trained ? b->W : b->W0, *g = trained ? b->gam : b->gam0, *be = trained ? b->bet : b->bet0;
		size_t per = (size_t)(c->dw ? 1 : c->in) * c->k * c->k;
		for (int o = 0; o < c->out; o++) {
			double s = (double)g[o] / sqrt((double)b->var[o] + 1e-5);
			c->b[o] = (float)((double)be[o] - (double)b->mu[o] * s);
			for (size_t j = 0; j < per; j++) {
				float v = (float)((double)W[(size_t)o * per + j] * s);
				if (c->dw)
					c->w[j * (size_t)c->out + (size_t)o] = v;
				else
					c->w[(size_t)o * per + j] = v;
			}
		}
	}
	for (int i = 0; i < l->nb; i++) {
		const tvb *a = &l->b[i];
		tblk *bk = (tblk *)a->b;
		int C = a->C, H = a->H, kd = C / H, N = a->N, ws = a->ws;
		const float *qw = trained ? a->f.pqw : a->f.oqw, *qb = trained ? a->f.pqb : a->f.oqb;
		const float *ab = trained ? a->f.pab : a->f.oab;
		if (!qw || !qb || !ab)
			continue;
		float *w = (float *)bk->qkv.w, *bb = (float *)bk->qkv.b;
		for (int h = 0; h < H; h++)
			for (int part = 0; part < 3; part++)
				for (int e = 0; e < kd; e++) {
					size_t src = (size_t)h * 3 * kd + (size_t)part * kd + e, dst = (size_t)part * C + (size_t)h * kd + e;
					memcpy(w + dst * C, qw + src * C, (size_t)C * sizeof(float));
					bb[dst] = qb[src];
				}
		for (int h = 0; h < H; h++)
			for (int qi = 0; qi < N; qi++)
				for (int ki = 0; ki < N; ki++) {
					int dy = abs(qi / ws - ki / ws), dx = abs(qi % ws - ki % ws);
					bk->bias[((size_t)h * N + qi) * N + ki] = ab[(size_t)h * N + (size_t)dy * ws + dx];
				}
	}
}

/* the folded gradients of the sample into the trained tensors' (t->g), and zeroed */
static void
unfold_grads(struct mp_tvlora *l)
{
	for (int i = 0; i < l->ncb; i++) {
		tcb *b = &l->cb[i];
		const tconv *c = b->c;
		size_t per = (size_t)(c->dw ? 1 : c->in) * c->k * c->k;
		for (int o = 0; o < c->out; o++) {
			double sd = 1.0 / sqrt((double)b->var[o] + 1e-5), s = (double)b->gam[o] * sd, acc = 0;
			double dbf = b->dbf[o];
			for (size_t j = 0; j < per; j++) {
				float dwf = c->dw ? b->dwf[j * (size_t)c->out + (size_t)o] : b->dwf[(size_t)o * per + j];
				b->gW[(size_t)o * per + j] += (float)(dwf * s);
				acc += (double)dwf * b->W[(size_t)o * per + j];
			}
			b->gbet[o] += (float)dbf;
			b->ggam[o] += (float)(acc * sd - dbf * (double)b->mu[o] * sd);
		}
		memset(b->dwf, 0, (size_t)c->out * per * sizeof(float));
		memset(b->dbf, 0, (size_t)c->out * sizeof(float));
	}
	for (int i = 0; i < l->nb; i++) {
		tvb *a = &l->b[i];
		int C = a->C, H = a->H, kd = C / H, N = a->N, ws = a->ws;
		for (int h = 0; h < H; h++)
			for (int part = 0; part < 3; part++)
				for (int e = 0; e < kd; e++) {
					size_t src = (size_t)h * 3 * kd + (size_t)part * kd + e, dst = (size_t)part * C + (size_t)h * kd + e;
					for (int j = 0; j < C; j++)
						a->f.qw[src * C + j] += a->f.dqw[dst * C + j];
					a->f.qb[src] += a->f.dqb[dst];
				}
		for (int h = 0; h < H; h++)
			for (int qi = 0; qi < N; qi++)
				for (int ki = 0; ki < N; ki++) {
					int dy = abs(qi / ws - ki / ws), dx = abs(qi % ws - ki % ws);
					a->f.ab[(size_t)h * N + (size_t)dy * ws + dx] += a->f.dbias[((size_t)h * N + qi) * N + ki];
				}
		memset(a->f.dqw, 0, (size_t)3 * C * C * sizeof(float));
		memset(a->f.dqb, 0, (size_t)3 * C * sizeof(float));
		memset(a->f.dbias, 0, (size_t)H * N * N * sizeof(float));
	}
}

/* the full-mode parts of attention block a (stage i, block j) */
static int
setup_fblock(mp_sam_tune *t, struct mp_tvlora *l, tvb *a, int i, int j)
{
	tblk *bk = &l->tv->st[i].bk[j];
	tvf *f = &a->f;
	static const char *sub[5] = { "attn.norm", "mlp.norm", "attn.proj", "mlp.fc1", "mlp.fc2" };
	mp_sam_lin *L[3] = { &bk->proj, &bk->fc1, &bk->fc2 };
	mp_sam_norm *Nm[2] = { &bk->an, &bk->mn };
	float **gw[5] = { &f->an_w, &f->mn_w, &f->proj_w, &f->fc1_w, &f->fc2_w };
	float **gb[5] = { &f->an_b, &f->mn_b, &f->proj_b, &f->fc1_b, &f->fc2_b };
	const char *pf = "image_encoder.layers.%d.blocks.%d.%s.%s";
	for (int k = 0; k < 5; k++) {
		const float *pw = mp_tune_tensor(t, t->p, pf, i, j, sub[k], "weight"), *pb = mp_tune_tensor(t, t->p, pf, i, j, sub[k], "bias");
		*gw[k] = mp_tune_tensor(t, t->g, pf, i, j, sub[k], "weight"), *gb[k] = mp_tune_tensor(t, t->g, pf, i, j, sub[k], "bias");
		if (!pw || !pb || !*gw[k] || !*gb[k])
			return mp_seterr("image_encoder.layers.%d.blocks.%d.%s: tensors missing", i, j, sub[k]);
		slot(l, k < 2 ? &Nm[k]->w : &L[k - 2]->w, pw);
		slot(l, k < 2 ? &Nm[k]->b : &L[k - 2]->b, pb);
	}
	f->pqw = mp_tune_tensor(t, t->p, pf, i, j, "attn.qkv", "weight"), f->pqb = mp_tune_tensor(t, t->p, pf, i, j, "attn.qkv", "bias");
	f->qw = mp_tune_tensor(t, t->g, pf, i, j, "attn.qkv", "weight"), f->qb = mp_tune_tensor(t, t->g, pf, i, j, "attn.qkv", "bias");
	f->pab = mp_tune_tensor(t, t->p, "image_encoder.layers.%d.blocks.%d.attn.attention_biases", i, j);
	f->ab = mp_tune_tensor(t, t->g, "image_encoder.layers.%d.blocks.%d.attn.attention_biases", i, j);
	f->oqw = ck(t->m, pf, i, j, "attn.qkv", "weight"), f->oqb = ck(t->m, pf, i, j, "attn.qkv", "bias");
	f->oab = ck(t->m, "image_encoder.layers.%d.blocks.%d.attn.attention_biases", i, j);
	if (!f->pqw || !f->pqb || !f->qw || !f->qb || !f->pab || !f->ab || !f->oqw || !f->oqb || !f->oab)
		return mp_seterr("image_encoder.layers.%d.blocks.%d.attn: tensors missing", i, j);
	f->dqw = z((size_t)3 * a->C * a->C), f->dqb = z((size_t)3 * a->C), f->dbias = z((size_t)a->H * a->N * a->N);
	a->x1 = z(a->T * a->C), a->O = z(a->rows * a->C);
	char p[200];
	snprintf(p, sizeof p, "image_encoder.layers.%d.blocks.%d.local_conv", i, j);
	return (f->lc = addcb(t, l, &bk->lc, p)) < 0 ? -1 : 0;
}

static int
setup(mp_sam_tune *t)
{
	const mp_sam *m = t->m;
	struct mp_tvit *tv = m->tv;
	struct mp_tvlora *l = mp_xcalloc(1, sizeof *l);
	int r = t->lora_rank, full = t->full;
	size_t cap = 0, maxP = 1;

	l->r = r;
	l->full = full, l->tv = tv;
	l->G = m->cfg.grid, l->E = m->cfg.embed, l->C = m->cfg.out_chans;
	l->first = -1;
	for (int i = 0; i < tv->nstage; i++)
		if (!tv->st[i].conv && l->first < 0)
			l->first = i;
	for (int i = 0; i < tv->nstage; i++)
		l->mg_after[i] = -1;
	if (full) {
		l->cb = mp_xcalloc(2 + 3 * TV_MAXSTAGE * (TV_MAXDEPTH + 1), sizeof *l->cb);
		int S = m->cfg.img_size, R1 = conv_out(&tv->stem[0], S), R2 = conv_out(&tv->stem[1], R1);
		if ((l->stem[0] = addcb(t, l, &tv->stem[0], "image_encoder.patch_embed.seq.0")) < 0 ||
		    (l->stem[1] = addcb(t, l, &tv->stem[1], "image_encoder.patch_embed.seq.2")) < 0)
			goto fail;
		l->img = z((size_t)S * S * 3), l->sa = z((size_t)R1 * R1 * tv->stem[0].out);
		cap = mx(cap, (size_t)R1 * R1 * tv->stem[0].out);
		cap = mx(cap, (size_t)R2 * R2 * tv->stem[1].out);
		for (int k = 0; k < 2; k++)
			if (tv->stem[k].k != 1 || tv->stem[k].stride != 1) {
				int Ro = k ? R2 : R1;
				l->ncols = mx(l->ncols, (size_t)Ro * Ro * tv->stem[k].in * tv->stem[k].k * tv->stem[k].k);
			}
	}
	for (int i = full ? 0 : l->first; i < tv->nstage; i++) {
		const tstage *s = &tv->st[i];
		int R = s->res, C = s->dim;
		size_t T = (size_t)R * R;
		cap = mx(cap, T * C);
		for (int j = 0; s->conv && j < s->depth; j++) {
			tvc *c = &l->mc[l->nc++];
			tmb *mb = &l->tv->st[i].mb[j];
			char p[200];
			c->mb = mb, c->R = R, c->C = C, c->Hd = s->hidden;
			c->x = z(T * C), c->a1 = z(T * s->hidden), c->a2 = z(T * s->hidden), c->a3 = z(T * C);
			cap = mx(cap, T * s->hidden);
			tconv *cv[3] = { &mb->c1, &mb->c2, &mb->c3 };
			for (int k = 0; k < 3; k++) {
				snprintf(p, sizeof p, "image_encoder.layers.%d.blocks.%d.conv%d", i, j, k + 1);
				if ((c->c[k] = addcb(t, l, cv[k], p)) < 0)
					goto fail;
			}
		}
		for (int j = 0; !s->conv && j < s->depth; j++) {
			tvb *a = &l->b[l->nb++];
			a->s = s, a->b = &s->bk[j];
			a->R = R, a->C = C, a->H = s->heads, a->ws = s->window, a->N = s->window * s->window;
			a->nw = (R + s->window - 1) / s->window, a->nb = a->nw * a->nw;
			a->hidden = s->hidden;
			a->T = T, a->rows = (size_t)a->nb * a->N;
			a->xw = z(a->rows * C), a->mu1 = z(a->rows), a->rs1 = z(a->rows), a->xn = z(a->rows * C);
			a->qkv = z(a->rows * 3 * C);
			a->P = z(a->rows * a->H * a->N);
			a->x2 = z(T * C), a->mu2 = z(T), a->rs2 = z(T), a->hpre = z(T * s->hidden);
			if (r) {
				a->xaq = z(a->rows * r), a->xav = z(a->rows * r);
				a->aq = lv(t, t->p, i, j, "lora_A_q"), a->bq = lv(t, t->p, i, j, "lora_B_q");
				a->av = lv(t, t->p, i, j, "lora_A_v"), a->bv = lv(t, t->p, i, j, "lora_B_v");
				a->gaq = lv(t, t->g, i, j, "lora_A_q"), a->gbq = lv(t, t->g, i, j, "lora_B_q");
				a->gav = lv(t, t->g, i, j, "lora_A_v"), a->gbv = lv(t, t->g, i, j, "lora_B_v");
				if (!a->aq || !a->bq || !a->av || !a->bv || !a->gaq || !a->gbv) {
					mp_seterr("LoRA tensors missing (mp_tune_add_lora)");
					goto fail;
				}
			}
			if (full && setup_fblock(t, l, a, i, j))
				goto fail;
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
			if (full) {
				tmb *pm = &l->tv->st[i].pm;
				tconv *cv[3] = { &pm->c1, &pm->c2, &pm->c3 };
				char p[200];
				g->xin = z(T * C);
				for (int k = 0; k < 3; k++) {
					snprintf(p, sizeof p, "image_encoder.layers.%d.downsample.conv%d", i, k + 1);
					if ((g->c[k] = addcb(t, l, cv[k], p)) < 0)
						goto fail;
				}
			}
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
	l->dxa = z(maxrows * (r ? r : 1)), l->ws = z(maxP);
	l->n0 = z(TG * C), l->mu5 = z(TG), l->rs5 = z(TG), l->n2 = z(TG * C), l->mu6 = z(TG), l->rs6 = z(TG);
	l->emb = z(TG * C), l->demb = z(TG * C);
	if (full) {
		l->ncols = mx(l->ncols, TG * 9 * C);
		l->s5 = z(cap), l->cols = z(l->ncols), l->dcols = z(l->ncols);
		l->xe = z(TG * (size_t)l->E), l->n1 = z(TG * C);
		const float *p0 = mp_tune_tensor(t, t->p, "image_encoder.neck.0.weight"), *p2 = mp_tune_tensor(t, t->p, "image_encoder.neck.2.weight");
		const float *p1w = mp_tune_tensor(t, t->p, "image_encoder.neck.1.weight"), *p1b = mp_tune_tensor(t, t->p, "image_encoder.neck.1.bias");
		const float *p3w = mp_tune_tensor(t, t->p, "image_encoder.neck.3.weight"), *p3b = mp_tune_tensor(t, t->p, "image_encoder.neck.3.bias");
		l->g_n0 = mp_tune_tensor(t, t->g, "image_encoder.neck.0.weight"), l->g_n2 = mp_tune_tensor(t, t->g, "image_encoder.neck.2.weight");
		l->g_n1w = mp_tune_tensor(t, t->g, "image_encoder.neck.1.weight"), l->g_n1b = mp_tune_tensor(t, t->g, "image_encoder.neck.1.bias");
		l->g_n3w = mp_tune_tensor(t, t->g, "image_encoder.neck.3.weight"), l->g_n3b = mp_tune_tensor(t, t->g, "image_encoder.neck.3.bias");
		if (!p0 || !p2 || !p1w || !p1b || !p3w || !p3b || !l->g_n0 || !l->g_n2 || !l->g_n1w || !l->g_n1b ||
		    !l->g_n3w || !l->g_n3b) {
			mp_seterr("image_encoder.neck: tensors missing (mp_tune_add_full)");
			goto fail;
		}
		slot(l, &tv->neck0, p0), slot(l, &tv->neck2, p2);
		slot(l, &tv->neck1.w, p1w), slot(l, &tv->neck1.b, p1b);
		slot(l, &tv->neck3.w, p3w), slot(l, &tv->neck3.b, p3b);
	}
	t->tvl = l;
	return 0;
fail:
	mp_tvlora_free(l);
	return -1;
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
	float s = (float)t->lora_scale, *y = l->s1, *g = l->s2, *O = a->O ? a->O : l->s3;

	memset(a->xw, 0, a->rows * C * sizeof(float));
	for (int gy = 0; gy < R; gy++)
		for (int gx = 0; gx < R; gx++)
			memcpy(a->xw + wrow(a, gy, gx) * C, x + ((size_t)gy * R + gx) * C, (size_t)C * sizeof(float));
	mp_tr_layernorm_fwd(a->xn, a->mu1, a->rs1, a->xw, b->an.w, b->an.b, (int)a->rows, C, 1e-5f);
	mp_tr_linear_fwd(a->qkv, a->xn, b->qkv.w, b->qkv.b, (int)a->rows, C, 3 * C);
	if (a->aq) {
		mp_tr_linear_fwd(a->xaq, a->xn, a->aq, NULL, (int)a->rows, C, r);
		mp_tr_linear_fwd(a->xav, a->xn, a->av, NULL, (int)a->rows, C, r);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->rows, C, r, s, a->xaq, r, a->bq, r, 1.0f, a->qkv,
		            3 * C);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->rows, C, r, s, a->xav, r, a->bv, r, 1.0f,
		            a->qkv + 2 * C, 3 * C);
	}
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
	if (a->x1)
		memcpy(a->x1, x, T * C * sizeof(float));
	mp_tr_dwconv_fwd(a->x2, x, b->lc.w, b->lc.b, R, C, b->lc.k, 1);
	float *xn2 = l->s1;
	mp_tr_layernorm_fwd(xn2, a->mu2, a->rs2, a->x2, b->mn.w, b->mn.b, (int)T, C, 1e-5f);
	mp_tr_linear_fwd(a->hpre, xn2, b->fc1.w, b->fc1.b, (int)T, C, a->hidden);
	mp_tr_gelu_fwd(g, a->hpre, T * a->hidden);
	mp_tr_linear_fwd(x, g, b->fc2.w, b->fc2.b, (int)T, a->hidden, C);
	for (size_t i = 0; i < T * C; i++)
		x[i] += a->x2[i];
}

/* db (C) += the column sums of dy (n x C) */
static void
colsum(float *db, const float *dy, size_t n, int C)
{
	for (int c = 0; c < C; c++) {
		double s = 0;
		for (size_t r = 0; r < n; r++)
			s += dy[r * C + c];
		db[c] += (float)s;
	}
}

/* d (T x C): the gradient of x3 in, of x out; in full mode the weight
 * gradients of the block too */
static void
block_bwd(const mp_sam_tune *t, const struct mp_tvlora *l, const tvb *a, float *d)
{
	const tblk *b = a->b;
	const tvf *f = l->full ? &a->f : NULL;
	int C = a->C, R = a->R, r = l->r, n = (int)a->rows;
	size_t T = a->T, TC = T * C;
	float s = (float)t->lora_scale;
	float *dx2 = l->s1, *dg = l->s2, *dh = l->s3, *dxn2 = l->s4;

	/* MLP */
	memcpy(dx2, d, TC * sizeof(float));
	memset(dg, 0, T * a->hidden * sizeof(float));
	if (f)
		mp_tr_gelu_fwd(l->s5, a->hpre, T * a->hidden);
	mp_tr_linear_bwd(dg, f ? f->fc2_w : NULL, f ? f->fc2_b : NULL, d, l->s5, b->fc2.w, (int)T, a->hidden, C);
	memset(dh, 0, T * a->hidden * sizeof(float));
	mp_tr_gelu_bwd(dh, dg, a->hpre, T * a->hidden);
	memset(dxn2, 0, TC * sizeof(float));
	if (f)   /* the MLP norm's output again */
		for (size_t i = 0; i < T; i++)
			for (int e = 0; e < C; e++)
				l->s5[i * C + e] = (a->x2[i * C + e] - a->mu2[i]) * a->rs2[i] * b->mn.w[e] + b->mn.b[e];
	mp_tr_linear_bwd(dxn2, f ? f->fc1_w : NULL, f ? f->fc1_b : NULL, dh, l->s5, b->fc1.w, (int)T, C, a->hidden);
	mp_tr_layernorm_bwd(dx2, f ? f->mn_w : NULL, f ? f->mn_b : NULL, dxn2, a->x2, a->mu2, a->rs2, b->mn.w, (int)T, C);
	/* local conv: d = dx1 */
	memset(d, 0, TC * sizeof(float));
	if (f) {
		const tcb *lc = &l->cb[f->lc];
		mp_tr_dwconv_bwd(d, lc->dwf, dx2, a->x1, b->lc.w, R, C, b->lc.k, 1);
		colsum(lc->dbf, dx2, T, C);
	} else
		mp_tr_dwconv_bwd(d, NULL, dx2, NULL, b->lc.w, R, C, b->lc.k, 1);
	/* attention */
	float *dy = l->s2, *dO = l->s3, *dqkv = l->s4, *dxn = l->s2, *dxw = l->s1;
	memset(dy, 0, (size_t)n * C * sizeof(float));
	for (int gy = 0; gy < R; gy++)
		for (int gx = 0; gx < R; gx++)
			memcpy(dy + wrow(a, gy, gx) * C, d + ((size_t)gy * R + gx) * C, (size_t)C * sizeof(float));
	memset(dO, 0, (size_t)n * C * sizeof(float));
	mp_tr_linear_bwd(dO, f ? f->proj_w : NULL, f ? f->proj_b : NULL, dy, a->O, b->proj.w, n, C, C);
	memset(dqkv, 0, (size_t)n * 3 * C * sizeof(float));
	for (int w = 0; w < a->nb; w++) {
		float *dq = dqkv + (size_t)w * a->N * 3 * C;
		const float *dOw = dO + (size_t)w * a->N * C, *Pw = a->P + (size_t)w * a->H * a->N * a->N;
		const float *qw = a->qkv + (size_t)w * a->N * 3 * C;
		mp_tr_attnbias_bwd(dq, f ? f->dbias : NULL, dOw, Pw, qw, a->N, C, a->H, l->ws);
	}
	memset(dxn, 0, (size_t)n * C * sizeof(float));
	for (int k = 0; a->aq && k < 2; k++) {
		const float *dpart = dqkv + (k ? 2 * C : 0), *xa = k ? a->xav : a->xaq, *A = k ? a->av : a->aq;
		const float *Bm = k ? a->bv : a->bq;
		float *gA = k ? a->gav : a->gaq, *gB = k ? a->gbv : a->gbq, *dxa = l->dxa;
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, r, n, s, dpart, 3 * C, xa, r, 1.0f, gB, r);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, C, s, dpart, 3 * C, Bm, r, 0.0f, dxa, r);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, C, n, 1.0f, dxa, r, a->xn, C, 1.0f, gA, C);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, C, r, 1.0f, dxa, r, A, C, 1.0f, dxn, C);
	}
	mp_tr_linear_bwd(dxn, f ? f->dqw : NULL, f ? f->dqb : NULL, dqkv, a->xn, b->qkv.w, n, C, 3 * C);
	memset(dxw, 0, (size_t)n * C * sizeof(float));
	mp_tr_layernorm_bwd(dxw, f ? f->an_w : NULL, f ? f->an_b : NULL, dxn, a->xw, a->mu1, a->rs1, b->an.w, n, C);
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

	if (g->xin)
		memcpy(g->xin, x, T * g->Ci * sizeof(float));
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
	const tcb *c[3] = { NULL, NULL, NULL };

	if (l->full)
		for (int k = 0; k < 3; k++)
			c[k] = &l->cb[g->c[k]];
	memset(dgb, 0, To * g->Co * sizeof(float));
	if (l->full)
		mp_tr_gelu_fwd(l->s5, g->b, To * g->Co);
	mp_tr_linear_bwd(dgb, c[2] ? c[2]->dwf : NULL, c[2] ? c[2]->dbf : NULL, d, l->s5, pm->c3.w, (int)To, g->Co,
	                 g->Co);
	memset(db, 0, To * g->Co * sizeof(float));
	mp_tr_gelu_bwd(db, dgb, g->b, To * g->Co);
	memset(dga, 0, T * g->Co * sizeof(float));
	if (l->full) {
		mp_tr_gelu_fwd(l->s5, g->a, T * g->Co);
		mp_tr_dwconv_bwd(dga, c[1]->dwf, db, l->s5, pm->c2.w, g->R, g->Co, pm->c2.k, pm->c2.stride);
		colsum(c[1]->dbf, db, To, g->Co);
	} else
		mp_tr_dwconv_bwd(dga, NULL, db, NULL, pm->c2.w, g->R, g->Co, pm->c2.k, pm->c2.stride);
	memset(da, 0, T * g->Co * sizeof(float));
	mp_tr_gelu_bwd(da, dga, g->a, T * g->Co);
	memset(d, 0, T * g->Ci * sizeof(float));
	mp_tr_linear_bwd(d, c[0] ? c[0]->dwf : NULL, c[0] ? c[0]->dbf : NULL, da, g->xin, pm->c1.w, (int)T, g->Ci, g->Co);
}

/* MBConv (full mode): x (T x C) -> GELU(conv3(GELU(dw(GELU(conv1 x)))) + x) in place */
static void
mbc_fwd(const struct mp_tvlora *l, tvc *c, float *x)
{
	const tmb *mb = c->mb;
	size_t T = (size_t)c->R * c->R, TC = T * c->C;

	memcpy(c->x, x, TC * sizeof(float));
	mp_tr_linear_fwd(c->a1, x, mb->c1.w, mb->c1.b, (int)T, c->C, c->Hd);
	mp_tr_gelu_fwd(l->s1, c->a1, T * c->Hd);
	mp_tr_dwconv_fwd(c->a2, l->s1, mb->c2.w, mb->c2.b, c->R, c->Hd, mb->c2.k, 1);
	mp_tr_gelu_fwd(l->s1, c->a2, T * c->Hd);
	mp_tr_linear_fwd(c->a3, l->s1, mb->c3.w, mb->c3.b, (int)T, c->Hd, c->C);
	for (size_t i = 0; i < TC; i++)
		c->a3[i] += c->x[i];
	mp_tr_gelu_fwd(x, c->a3, TC);
}

static void
mbc_bwd(const struct mp_tvlora *l, const tvc *c, float *d)
{
	const tmb *mb = c->mb;
	const tcb *c1 = &l->cb[c->c[0]], *c2 = &l->cb[c->c[1]], *c3 = &l->cb[c->c[2]];
	size_t T = (size_t)c->R * c->R, TC = T * c->C, TH = T * c->Hd;
	float *da3 = l->s1, *g = l->s2, *dg = l->s3, *da = l->s4;

	memset(da3, 0, TC * sizeof(float));
	mp_tr_gelu_bwd(da3, d, c->a3, TC);
	mp_tr_gelu_fwd(g, c->a2, TH);
	memset(dg, 0, TH * sizeof(float));
	mp_tr_linear_bwd(dg, c3->dwf, c3->dbf, da3, g, mb->c3.w, (int)T, c->Hd, c->C);
	memset(da, 0, TH * sizeof(float));
	mp_tr_gelu_bwd(da, dg, c->a2, TH);
	mp_tr_gelu_fwd(g, c->a1, TH);
	memset(dg, 0, TH * sizeof(float));
	mp_tr_dwconv_bwd(dg, c2->dwf, da, g, mb->c2.w, c->R, c->Hd, mb->c2.k, 1);
	colsum(c2->dbf, da, T, c->Hd);
	memset(da, 0, TH * sizeof(float));
	mp_tr_gelu_bwd(da, dg, c->a1, TH);
	memcpy(d, da3, TC * sizeof(float));
	mp_tr_linear_bwd(d, c1->dwf, c1->dbf, da, c->x, mb->c1.w, (int)T, c->C, c->Hd);
}

/* im2col of a channels-last R x R x C image for a k x k conv (pad k/2,
 * stride s): rows (oy, ox), columns (c, kh, kw) as torch's weights; col2im
 * adds back */
static void
im2col(float *cols, const float *x, int R, int C, int k, int s)
{
	int p = k / 2, Ro = (R + 2 * p - k) / s + 1;
	for (int oy = 0; oy < Ro; oy++)
		for (int ox = 0; ox < Ro; ox++) {
			float *row = cols + ((size_t)oy * Ro + ox) * C * k * k;
			for (int ch = 0; ch < C; ch++)
				for (int kh = 0; kh < k; kh++)
					for (int kw = 0; kw < k; kw++) {
						int iy = oy * s + kh - p, ix = ox * s + kw - p;
						row[(ch * k + kh) * k + kw] = iy < 0 || iy >= R || ix < 0 || ix >= R ? 0.0f :
						                              x[((size_t)iy * R + ix) * C + ch];
					}
		}
}

static void
col2im(float *dx, const float *dcols, int R, int C, int k, int s)
{
	int p = k / 2, Ro = (R + 2 * p - k) / s + 1;
	for (int oy = 0; oy < Ro; oy++)
		for (int ox = 0; ox < Ro; ox++) {
			const float *row = dcols + ((size_t)oy * Ro + ox) * C * k * k;
			for (int ch = 0; ch < C; ch++)
				for (int kh = 0; kh < k; kh++)
					for (int kw = 0; kw < k; kw++) {
						int iy = oy * s + kh - p, ix = ox * s + kw - p;
						if (iy >= 0 && iy < R && ix >= 0 && ix < R)
							dx[((size_t)iy * R + ix) * C + ch] += row[(ch * k + kh) * k + kw];
					}
		}
}

/* a dense stem conv (folded) on x (R x R x in) -> y */
static void
conv_fwd(const struct mp_tvlora *l, const tconv *c, const float *x, int R, float *y)
{
	int Ro = conv_out(c, R);
	if (c->k == 1 && c->stride == 1) {
		mp_tr_linear_fwd(y, x, c->w, c->b, R * R, c->in, c->out);
		return;
	}
	im2col(l->cols, x, R, c->in, c->k, c->stride);
	mp_tr_linear_fwd(y, l->cols, c->w, c->b, Ro * Ro, c->in * c->k * c->k, c->out);
}

/* its backward: the folded weight gradients of cb, dx (may be NULL) += */
static void
conv_bwd(const struct mp_tvlora *l, const tcb *cb, const float *x, int R, const float *dy, float *dx)
{
	const tconv *c = cb->c;
	int Ro = conv_out(c, R), K = c->in * c->k * c->k;
	if (c->k == 1 && c->stride == 1) {
		mp_tr_linear_bwd(dx, cb->dwf, cb->dbf, dy, x, c->w, R * R, c->in, c->out);
		return;
	}
	im2col(l->cols, x, R, c->in, c->k, c->stride);
	if (dx)
		memset(l->dcols, 0, (size_t)Ro * Ro * K * sizeof(float));
	mp_tr_linear_bwd(dx ? l->dcols : NULL, cb->dwf, cb->dbf, dy, l->cols, c->w, Ro * Ro, K, c->out);
	if (dx)
		col2im(dx, l->dcols, R, c->in, c->k, c->stride);
}

static int
encoder_fwd(mp_sam_tune *t, const float *img)
{
	struct mp_tvlora *l = t->tvl;
	const struct mp_tvit *tv = t->m->tv;
	float *x = l->x;
	int bi = 0, ci = 0;

	if (l->full) {
		int S = t->m->cfg.img_size, R1 = conv_out(&tv->stem[0], S);
		refold(l, 1);
		for (size_t i = 0; i < (size_t)S * S; i++)
			for (int ch = 0; ch < 3; ch++)
				l->img[i * 3 + ch] = img[(size_t)ch * S * S + i];
		conv_fwd(l, &tv->stem[0], l->img, S, l->sa);
		mp_tr_gelu_fwd(l->s1, l->sa, (size_t)R1 * R1 * tv->stem[0].out);
		conv_fwd(l, &tv->stem[1], l->s1, R1, x);
	} else if (mp_sam_tvit_front(t->m, img, x) != l->first)
		return -1;
	for (int i = l->full ? 0 : l->first; i < tv->nstage; i++) {
		for (int j = 0; j < tv->st[i].depth; j++)
			if (tv->st[i].conv)
				mbc_fwd(l, &l->mc[ci++], x);
			else
				block_fwd(t, l, &l->b[bi++], x);
		if (l->mg_after[i] >= 0)
			merge_fwd(l, &l->mg[l->mg_after[i]], x);
	}
	/* neck: 1x1 conv, LayerNorm2d, 3x3 conv (pad 1), LayerNorm2d */
	int G = l->G, T = G * G, C = l->C, E = l->E;
	float *n1 = l->full ? l->n1 : l->s1, *cols = l->s2, *e = l->s3;
	if (l->full)
		memcpy(l->xe, x, (size_t)T * E * sizeof(float));
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
	int G = l->G, T = G * G, C = l->C, E = l->E, full = l->full;
	size_t TC = (size_t)T * C;
	float *de = l->s1, *dn2 = l->s2, *dcols = l->s3, *dn1 = l->s4, *dn0 = l->s1, *d = l->x;

	for (int i = 0; i < T; i++)
		for (int ch = 0; ch < C; ch++)
			de[(size_t)i * C + ch] = l->demb[(size_t)ch * T + i];
	memset(dn2, 0, TC * sizeof(float));
	mp_tr_layernorm_bwd(dn2, full ? l->g_n3w : NULL, full ? l->g_n3b : NULL, de, l->n2, l->mu6, l->rs6, tv->neck3.w,
	                    T, C);
	memset(dcols, 0, TC * 9 * sizeof(float));
	if (full)
		mp_tr_im2col3(l->cols, l->n1, G, C);
	mp_tr_linear_bwd(dcols, full ? l->g_n2 : NULL, NULL, dn2, l->cols, tv->neck2, T, 9 * C, C);
	memset(dn1, 0, TC * sizeof(float));
	mp_tr_col2im3(dn1, dcols, G, C);
	memset(dn0, 0, TC * sizeof(float));
	mp_tr_layernorm_bwd(dn0, full ? l->g_n1w : NULL, full ? l->g_n1b : NULL, dn1, l->n0, l->mu5, l->rs5, tv->neck1.w,
	                    T, C);
	memset(d, 0, (size_t)T * E * sizeof(float));
	mp_tr_linear_bwd(d, full ? l->g_n0 : NULL, NULL, dn0, l->xe, tv->neck0, T, E, C);
	int bi = l->nb, ci = l->nc;
	for (int i = tv->nstage - 1; i >= (full ? 0 : l->first); i--) {
		if (l->mg_after[i] >= 0)
			merge_bwd(l, &l->mg[l->mg_after[i]], d);
		for (int j = tv->st[i].depth - 1; j >= 0; j--)
			if (tv->st[i].conv)
				mbc_bwd(l, &l->mc[--ci], d);
			else
				block_bwd(t, l, &l->b[--bi], d);
	}
	if (full) {   /* the stem: d is the gradient of its output */
		int S = t->m->cfg.img_size, R1 = conv_out(&tv->stem[0], S);
		size_t n1 = (size_t)R1 * R1 * tv->stem[0].out;
		float *g0 = l->s5, *dg0 = l->s1, *da0 = l->s2;
		mp_tr_gelu_fwd(g0, l->sa, n1);
		memset(dg0, 0, n1 * sizeof(float));
		conv_bwd(l, &l->cb[l->stem[1]], g0, R1, d, dg0);
		memset(da0, 0, n1 * sizeof(float));
		mp_tr_gelu_bwd(da0, dg0, l->sa, n1);
		conv_bwd(l, &l->cb[l->stem[0]], l->img, S, da0, NULL);
		unfold_grads(l);
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
