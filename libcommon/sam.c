/* sam.c - SAM / MedSAM model: loading and checking the named tensors, the
 * ViT image encoder, the prompt encoder and the mask decoder (see mp_sam.h).
 * Written from the structure of the official segment-anything model. */
#include "mp_sam.h"
#include "mp.h"
#include "sam_ld.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ================================================================ loading */
typedef mp_sam_ld ld;
#define ld_find mp_sam_ld_find
#define req mp_sam_ld_req
#define dimof mp_sam_ld_dim
#define count mp_sam_ld_count
#define req_lin mp_sam_ld_lin
#define req_norm mp_sam_ld_norm

mp_tensor *
ld_find(ld *l, const char *name)
{
	for (size_t i = 0; i < l->m->td.n; i++)
		if (strcmp(l->m->td.t[i].name, name) == 0)
			return &l->m->td.t[i];
	return NULL;
}

/* the tensor NAME (printf format) with the given shape (-1: any) */
const float *
req(ld *l, int ndim, const int64_t *shape, const char *fmt, ...)
{
	char name[256], a[96], b[96];
	va_list ap;

	if (l->err)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	mp_tensor *t = ld_find(l, name);
	if (!t) {
		l->err = 1;
		mp_seterr("missing tensor %s", name);
		return NULL;
	}
	l->used[t - l->m->td.t] = 1;
	if (!mp_tl_is_float(t->dtype)) {
		l->err = 1;
		mp_seterr("tensor %s: type %s, expected a floating-point type", name, mp_tl_dtype_name(t->dtype));
		return NULL;
	}
	int ok = t->ndim == ndim;
	for (int i = 0; ok && i < ndim; i++)
		if (shape[i] >= 0 && shape[i] != t->shape[i])
			ok = 0;
	if (!ok) {
		mp_tl_shape_str(t->shape, t->ndim, a, sizeof a);
		mp_tl_shape_str(shape, ndim, b, sizeof b);
		l->err = 1;
		mp_seterr("tensor %s: shape %s, expected %s", name, a, b);
		return NULL;
	}
	return t->data;
}

#define S1(a) (const int64_t[]){ (a) }
#define S2(a, b) (const int64_t[]){ (a), (b) }
#define S4(a, b, c, d) (const int64_t[]){ (a), (b), (c), (d) }

void
mp_sam_ld_lin(ld *l, mp_sam_lin *L, int out, int in, const char *prefix)
{
	L->out = out;
	L->in = in;
	L->w = req(l, 2, S2(out, in), "%s.weight", prefix);
	L->b = req(l, 1, S1(out), "%s.bias", prefix);
}

void
mp_sam_ld_norm(ld *l, mp_sam_norm *n, int d, const char *prefix)
{
	n->w = req(l, 1, S1(d), "%s.weight", prefix);
	n->b = req(l, 1, S1(d), "%s.bias", prefix);
}

static void
req_tattn(ld *l, mp_sam_tattn *a, int c, int in, const char *prefix)
{
	char p[200];

	snprintf(p, sizeof p, "%s.q_proj", prefix);
	req_lin(l, &a->q, in, c, p);
	snprintf(p, sizeof p, "%s.k_proj", prefix);
	req_lin(l, &a->k, in, c, p);
	snprintf(p, sizeof p, "%s.v_proj", prefix);
	req_lin(l, &a->v, in, c, p);
	snprintf(p, sizeof p, "%s.out_proj", prefix);
	req_lin(l, &a->o, c, in, p);
}

/* a dimension of a tensor that must exist, for inferring the architecture */
int64_t
dimof(ld *l, const char *name, int ndim, int axis)
{
	if (l->err)
		return -1;
	mp_tensor *t = ld_find(l, name);
	if (!t) {
		l->err = 1;
		mp_seterr("missing tensor %s (is this a SAM / MedSAM checkpoint?)", name);
		return -1;
	}
	if (t->ndim != ndim) {
		l->err = 1;
		mp_seterr("tensor %s: %d dimensions, expected %d", name, t->ndim, ndim);
		return -1;
	}
	return t->shape[axis];
}

int
count(ld *l, const char *fmt)
{
	char name[256];
	int n = 0;

	for (;; n++) {
		snprintf(name, sizeof name, fmt, n);
		if (!ld_find(l, name))
			return n;
	}
}

static void
dense_pe(mp_sam *m)
{
	int G = m->cfg.grid, C = m->cfg.out_chans, F = C / 2;

	m->dense_pe = mp_xmalloc((size_t)G * G * C * sizeof(float));
	for (int y = 0; y < G; y++)
		for (int x = 0; x < G; x++) {
			float cx = 2 * (((float)x + 0.5f) / (float)G) - 1, cy = 2 * (((float)y + 0.5f) / (float)G) - 1;
			float *o = m->dense_pe + ((size_t)y * G + x) * C;
			for (int j = 0; j < F; j++) {
				float v = cx * m->pe_gauss[j] + cy * m->pe_gauss[F + j];
				v = 2 * (float)M_PI * v;
				o[j] = sinf(v);
				o[F + j] = cosf(v);
			}
		}
}

int
mp_sam_load(mp_sam *m, const char *path, const mp_sam_backend *be)
{
	return mp_sam_load_adapter(m, path, NULL, be);
}

int
mp_sam_load_adapter(mp_sam *m, const char *path, const char *adapter, const mp_sam_backend *be)
{
	ld l;
	mp_sam_config *c = &m->cfg;
	char p[200];
	int E, C, I, MI;

	memset(m, 0, sizeof *m);
	m->be = be ? be : mp_sam_cpu_backend(0);
	snprintf(m->path, sizeof m->path, "%s", path);
	if (mp_tl_load(path, &m->td))
		return -1;
	if (adapter && mp_sam_adapter_apply(&m->td, adapter, m->adapter, sizeof m->adapter)) {
		mp_tl_free(&m->td);
		return -1;
	}
	l.m = m;
	l.err = 0;
	l.used = mp_xcalloc(m->td.n + 1, 1);

	/* architecture from shapes: the decoder's, then the encoder's (ViT
	 * or TinyViT) */
	c->dec_depth = count(&l, "mask_decoder.transformer.layers.%d.norm1.weight");
	c->dec_mlp = (int)dimof(&l, "mask_decoder.transformer.layers.0.mlp.lin1.weight", 2, 0);
	c->dec_internal = (int)dimof(&l, "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight", 2, 0);
	c->mask_in_chans = (int)dimof(&l, "prompt_encoder.mask_downscaling.3.weight", 4, 0);
	c->nmask = (int)dimof(&l, "mask_decoder.mask_tokens.weight", 2, 0);
	c->iou_hidden = (int)dimof(&l, "mask_decoder.iou_prediction_head.layers.0.weight", 2, 0);
	c->iou_depth = count(&l, "mask_decoder.iou_prediction_head.layers.%d.weight");
	c->dec_heads = 8;   /* not visible in shapes; 8 in every SAM model */
	if (l.err)
		goto fail;
	if (c->dec_depth < 1 || c->dec_depth > 8 || c->nmask < 1 || c->nmask > 16 || c->iou_depth < 1 ||
	    c->iou_depth > 8 || c->dec_internal % c->dec_heads || c->mask_in_chans % 4) {
		mp_seterr("unsupported decoder dimensions (depth %d, %d masks, internal width %d)", c->dec_depth,
		          c->nmask, c->dec_internal);
		goto fail;
	}
	if (ld_find(&l, "image_encoder.patch_embed.seq.0.c.weight")) {
		if (mp_sam_tvit_load(&l))
			goto fail;
		goto prompt;
	}
	c->embed = (int)dimof(&l, "image_encoder.patch_embed.proj.weight", 4, 0);
	c->patch = (int)dimof(&l, "image_encoder.patch_embed.proj.weight", 4, 2);
	c->grid = (int)dimof(&l, "image_encoder.pos_embed", 4, 1);
	c->hd = (int)dimof(&l, "image_encoder.blocks.0.attn.rel_pos_h", 2, 1);
	c->mlp = (int)dimof(&l, "image_encoder.blocks.0.mlp.lin1.weight", 2, 0);
	c->out_chans = (int)dimof(&l, "image_encoder.neck.0.weight", 4, 0);
	c->depth = count(&l, "image_encoder.blocks.%d.norm1.weight");
	if (l.err)
		goto fail;
	if (c->embed <= 0 || c->patch <= 0 || c->grid <= 0 || c->hd <= 0 || c->embed % c->hd ||
	    c->depth < 1 || c->depth > MP_SAM_MAXDEPTH || c->out_chans < 16 || c->out_chans % 16 ||
	    (long)c->grid * c->patch > 8192) {
		mp_seterr("unsupported model dimensions (embed %d, patch %d, grid %d, depth %d, head dim %d)",
		          c->embed, c->patch, c->grid, c->depth, c->hd);
		goto fail;
	}
	c->heads = c->embed / c->hd;
	c->img_size = c->grid * c->patch;
	c->window = 0;
	c->nglobal = 0;
	for (int i = 0; i < c->depth; i++) {
		snprintf(p, sizeof p, "image_encoder.blocks.%d.attn.rel_pos_h", i);
		int L = (int)dimof(&l, p, 2, 0);
		if (l.err)
			goto fail;
		if (L == 2 * c->grid - 1) {
			m->blk[i].window = 0;
			c->global_idx[c->nglobal++] = i;
		} else if (L % 2 == 1 && L > 1) {
			m->blk[i].window = (L + 1) / 2;
			if (c->window && c->window != m->blk[i].window) {
				mp_seterr("tensor %s: window size %d differs from block 0's %d", p, m->blk[i].window, c->window);
				goto fail;
			}
			c->window = m->blk[i].window;
		} else {
			mp_seterr("tensor %s: %d rows fit neither a window nor the %dx%d grid", p, L, c->grid, c->grid);
			goto fail;
		}
	}
	if (c->embed == 768 && c->depth == 12)
		snprintf(c->arch, sizeof c->arch, "vit_b");
	else if (c->embed == 1024 && c->depth == 24)
		snprintf(c->arch, sizeof c->arch, "vit_l");
	else if (c->embed == 1280 && c->depth == 32)
		snprintf(c->arch, sizeof c->arch, "vit_h");
	else
		snprintf(c->arch, sizeof c->arch, "vit_%d_%d", c->embed, c->depth);

	/* every tensor, named and shaped */
	E = c->embed;
	C = c->out_chans;
	m->patch_w = req(&l, 4, S4(E, 3, c->patch, c->patch), "image_encoder.patch_embed.proj.weight");
	m->patch_b = req(&l, 1, S1(E), "image_encoder.patch_embed.proj.bias");
	m->pos = req(&l, 4, S4(1, c->grid, c->grid, E), "image_encoder.pos_embed");
	for (int i = 0; i < c->depth; i++) {
		mp_sam_block *b = &m->blk[i];
		int g = b->window ? b->window : c->grid;
		snprintf(p, sizeof p, "image_encoder.blocks.%d.norm1", i);
		req_norm(&l, &b->n1, E, p);
		snprintf(p, sizeof p, "image_encoder.blocks.%d.norm2", i);
		req_norm(&l, &b->n2, E, p);
		snprintf(p, sizeof p, "image_encoder.blocks.%d.attn.qkv", i);
		req_lin(&l, &b->qkv, 3 * E, E, p);
		snprintf(p, sizeof p, "image_encoder.blocks.%d.attn.proj", i);
		req_lin(&l, &b->proj, E, E, p);
		b->rph = req(&l, 2, S2(2 * g - 1, c->hd), "image_encoder.blocks.%d.attn.rel_pos_h", i);
		b->rpw = req(&l, 2, S2(2 * g - 1, c->hd), "image_encoder.blocks.%d.attn.rel_pos_w", i);
		snprintf(p, sizeof p, "image_encoder.blocks.%d.mlp.lin1", i);
		req_lin(&l, &b->lin1, c->mlp, E, p);
		snprintf(p, sizeof p, "image_encoder.blocks.%d.mlp.lin2", i);
		req_lin(&l, &b->lin2, E, c->mlp, p);
		/* Medical-SAM-Adapter's adapters, where present */
		static const char *ad[2] = { "Space_Adapter", "MLP_Adapter" };
		for (int k = 0; k < 2; k++) {
			snprintf(p, sizeof p, "image_encoder.blocks.%d.%s.D_fc1.weight", i, ad[k]);
			if (!ld_find(&l, p))
				continue;
			int H = (int)dimof(&l, p, 2, 0);
			if (l.err)
				goto fail;
			snprintf(p, sizeof p, "image_encoder.blocks.%d.%s.D_fc1", i, ad[k]);
			req_lin(&l, k ? &b->ma1 : &b->sa1, H, E, p);
			snprintf(p, sizeof p, "image_encoder.blocks.%d.%s.D_fc2", i, ad[k]);
			req_lin(&l, k ? &b->ma2 : &b->sa2, E, H, p);
		}
	}
	m->neck0 = req(&l, 4, S4(C, E, 1, 1), "image_encoder.neck.0.weight");
	req_norm(&l, &m->neck1, C, "image_encoder.neck.1");
	m->neck2 = req(&l, 4, S4(C, C, 3, 3), "image_encoder.neck.2.weight");
	req_norm(&l, &m->neck3, C, "image_encoder.neck.3");
prompt:
	C = c->out_chans;
	I = c->dec_internal;
	MI = c->mask_in_chans;
	m->pe_gauss = req(&l, 2, S2(2, C / 2), "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix");
	for (int i = 0; i < 4; i++)
		m->point_emb[i] = req(&l, 2, S2(1, C), "prompt_encoder.point_embeddings.%d.weight", i);
	m->not_a_point = req(&l, 2, S2(1, C), "prompt_encoder.not_a_point_embed.weight");
	m->no_mask = req(&l, 2, S2(1, C), "prompt_encoder.no_mask_embed.weight");
	/* mask input path: checked, not used (no mask prompts) */
	req(&l, 4, S4(MI / 4, 1, 2, 2), "prompt_encoder.mask_downscaling.0.weight");
	req(&l, 1, S1(MI / 4), "prompt_encoder.mask_downscaling.0.bias");
	req(&l, 1, S1(MI / 4), "prompt_encoder.mask_downscaling.1.weight");
	req(&l, 1, S1(MI / 4), "prompt_encoder.mask_downscaling.1.bias");
	req(&l, 4, S4(MI, MI / 4, 2, 2), "prompt_encoder.mask_downscaling.3.weight");
	req(&l, 1, S1(MI), "prompt_encoder.mask_downscaling.3.bias");
	req(&l, 1, S1(MI), "prompt_encoder.mask_downscaling.4.weight");
	req(&l, 1, S1(MI), "prompt_encoder.mask_downscaling.4.bias");
	req(&l, 4, S4(C, MI, 1, 1), "prompt_encoder.mask_downscaling.6.weight");
	req(&l, 1, S1(C), "prompt_encoder.mask_downscaling.6.bias");

	for (int i = 0; i < c->dec_depth; i++) {
		mp_sam_tlayer *t = &m->tl[i];
		char q[160];
		snprintf(q, sizeof q, "mask_decoder.transformer.layers.%d", i);
		snprintf(p, sizeof p, "%s.self_attn", q);
		req_tattn(&l, &t->self_attn, C, C, p);
		snprintf(p, sizeof p, "%s.cross_attn_token_to_image", q);
		req_tattn(&l, &t->t2i, C, I, p);
		snprintf(p, sizeof p, "%s.cross_attn_image_to_token", q);
		req_tattn(&l, &t->i2t, C, I, p);
		snprintf(p, sizeof p, "%s.norm1", q);
		req_norm(&l, &t->n1, C, p);
		snprintf(p, sizeof p, "%s.norm2", q);
		req_norm(&l, &t->n2, C, p);
		snprintf(p, sizeof p, "%s.norm3", q);
		req_norm(&l, &t->n3, C, p);
		snprintf(p, sizeof p, "%s.norm4", q);
		req_norm(&l, &t->n4, C, p);
		snprintf(p, sizeof p, "%s.mlp.lin1", q);
		req_lin(&l, &t->lin1, c->dec_mlp, C, p);
		snprintf(p, sizeof p, "%s.mlp.lin2", q);
		req_lin(&l, &t->lin2, C, c->dec_mlp, p);
	}
	req_tattn(&l, &m->final_attn, C, I, "mask_decoder.transformer.final_attn_token_to_image");
	req_norm(&l, &m->norm_final, C, "mask_decoder.transformer.norm_final_attn");
	m->iou_token = req(&l, 2, S2(1, C), "mask_decoder.iou_token.weight");
	m->mask_tokens = req(&l, 2, S2(c->nmask, C), "mask_decoder.mask_tokens.weight");
	m->up0_w = req(&l, 4, S4(C, C / 4, 2, 2), "mask_decoder.output_upscaling.0.weight");
	m->up0_b = req(&l, 1, S1(C / 4), "mask_decoder.output_upscaling.0.bias");
	req_norm(&l, &m->up1, C / 4, "mask_decoder.output_upscaling.1");
	m->up3_w = req(&l, 4, S4(C / 4, C / 8, 2, 2), "mask_decoder.output_upscaling.3.weight");
	m->up3_b = req(&l, 1, S1(C / 8), "mask_decoder.output_upscaling.3.bias");
	for (int i = 0; i < c->nmask; i++)
		for (int j = 0; j < 3; j++) {
			snprintf(p, sizeof p, "mask_decoder.output_hypernetworks_mlps.%d.layers.%d", i, j);
			req_lin(&l, &m->hyper[i][j], j == 2 ? C / 8 : C, C, p);
		}
	for (int j = 0; j < c->iou_depth; j++) {
		snprintf(p, sizeof p, "mask_decoder.iou_prediction_head.layers.%d", j);
		req_lin(&l, &m->iou_head[j], j == c->iou_depth - 1 ? c->nmask : c->iou_hidden,
		        j == 0 ? C : c->iou_hidden, p);
	}
	if (l.err)
		goto fail;
	for (size_t i = 0; i < m->td.n; i++) {
		const char *n = m->td.t[i].name;
		if (!l.used[i] && strcmp(n, "pixel_mean") != 0 && strcmp(n, "pixel_std") != 0) {
			mp_seterr("unexpected tensor %s", n);
			goto fail;
		}
	}
	free(l.used);
	dense_pe(m);
	if (m->be->constant)     /* the decoder's positional encoding, too */
		m->be->constant(m->be->ctx, m->dense_pe, (size_t)m->cfg.grid * m->cfg.grid * m->cfg.out_chans * sizeof(float));
	if (m->be->constant)
		for (size_t i = 0; i < m->td.n; i++)
			if (m->td.t[i].data)
				m->be->constant(m->be->ctx, m->td.t[i].data, m->td.t[i].n * sizeof(float));
	if (m->be->constant)
		mp_sam_tvit_constant(m);
	return 0;
fail:
	free(l.used);
	mp_preerr("%s", path);
	mp_sam_tvit_free(m);
	mp_tl_free(&m->td);
	return -1;
}

void
mp_sam_free(mp_sam *m)
{
	if (m->be && m->be->forget)
		m->be->forget(m->be->ctx);
	mp_sam_tvit_free(m);
	mp_tl_free(&m->td);
	free(m->dense_pe);
	free(m->dbuf);
	free(m->tbuf);
	free(m->wbuf);
	memset(m, 0, sizeof *m);
}

void
mp_sam_describe(const mp_sam *m, char *buf, size_t n)
{
	const mp_sam_config *c = &m->cfg;
	if (m->tv) {
		mp_sam_tvit_describe(m, buf, n);
		return;
	}
	size_t p = (size_t)snprintf(buf, n, "%s (embed %d, depth %d, heads %d, window %d, global", c->arch,
	                            c->embed, c->depth, c->heads, c->window);
	for (int i = 0; i < c->nglobal && p < n; i++)
		p += (size_t)snprintf(buf + p, n - p, "%s%d", i ? "," : " ", c->global_idx[i]);
	if (p < n)
		p += (size_t)snprintf(buf + p, n - p, "; image %d, embedding %dx%dx%d)", c->img_size, c->out_chans, c->grid,
		                      c->grid);
	int na = 0;
	for (int i = 0; i < c->depth; i++)
		na += m->blk[i].sa1.w || m->blk[i].ma1.w;
	if (na && p < n)
		snprintf(buf + p, n - p, " with Medical-SAM-Adapter adapters in %d blocks", na);
}

/* y (rows x out) = x (rows x in) W^T + b */
static void
linear(const mp_sam *m, const mp_sam_lin *L, const float *x, int rows, float *y)
{
	m->be->gemm(m->be->ctx, 0, 1, rows, L->out, L->in, 1.0f, x, L->in, L->w, L->in, 0.0f, y, L->out);
	if (L->b)
		for (int r = 0; r < rows; r++) {
			float *yr = y + (size_t)r * L->out;
			for (int j = 0; j < L->out; j++)
				yr[j] += L->b[j];
		}
}

static void
relu(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = x[i] > 0 ? x[i] : 0;
}

static void *
tryalloc(size_t n, size_t sz)
{
	size_t b;
	if (mp_mulsize(n, sz, &b))
		return NULL;
	return malloc(b ? b : 1);
}

/* ================================================================ encoder */
typedef struct {
	float *x;
	const float *b;
	size_t rows, d;
	int gelu;
} rows_ctx;

static void
rows_task(void *vc, size_t i, int tid)
{
	rows_ctx *r = vc;
	size_t r0 = i * 16, n = r->rows - r0 < 16 ? r->rows - r0 : 16;
	float *x = r->x + r0 * r->d;

	(void)tid;
	if (r->gelu)
		mp_sam_cpu_bias_gelu1(x, n, r->d, r->b);
	else
		for (size_t k = 0; k < n; k++)
			mp_sam_add(x + k * r->d, x + k * r->d, r->b, r->d);
}

/* CPU: rows of d values x += b, or x = gelu(x + b), on the threads */
static void
rows_bias(float *x, size_t rows, size_t d, const float *b, int gelu)
{
	rows_ctx r = { x, b, rows, d, gelu };
	mp_sam_cpu_parfor((rows + 15) / 16, rows_task, &r);
}

/* CPU: rows per block when the encoder's products are split into blocks of
 * rows over the threads (each block one single-threaded BLAS call, taken by
 * whichever thread is free: no thread spins waiting for another, which on
 * a loaded machine costs the BLAS's own threads CPU time); 0: too many
 * threads for blocks of >= 256 rows, the BLAS threads the products itself */
static int
split_rows(int rows)
{
	int nt = mp_sam_threads(), rc = 512;

	if (nt <= 1)
		return rows;
	while (rc > 256 && rows / rc < 2 * nt)
		rc /= 2;
	return rows / rc >= nt ? rc : 0;
}

typedef struct {
	const mp_sam *m;
	int rows, n, k, lda, ldc, rc;
	const float *a, *w;
	float beta, *c;
} grows_ctx;

static void
grows_task(void *vc, size_t i, int tid)
{
	grows_ctx *g = vc;
	int r0 = (int)i * g->rc, nr = g->rows - r0 < g->rc ? g->rows - r0 : g->rc;

	(void)tid;
	g->m->be->gemm(g->m->be->ctx, 0, 1, nr, g->n, g->k, 1.0f, g->a + (size_t)r0 * g->lda, g->lda, g->w, g->k, g->beta,
	               g->c + (size_t)r0 * g->ldc, g->ldc);
}

/* CPU: c (rows x n) = a (rows x k) w^T + beta c, split by split_rows */
static void
gemm_rows(const mp_sam *m, int rows, int n, int k, const float *a, int lda, const float *w, float beta, float *c, int ldc)
{
	int rc = split_rows(rows);

	if (!rc || rc >= rows) {
		m->be->gemm(m->be->ctx, 0, 1, rows, n, k, 1.0f, a, lda, w, k, beta, c, ldc);
		return;
	}
	grows_ctx g = { m, rows, n, k, lda, ldc, rc, a, w, beta, c };
	mp_sam_cpu_parfor((size_t)((rows + rc - 1) / rc), grows_task, &g);
}

/* CPU: the MLP of a block of rows on one thread: x += lin2(gelu(lin1(xn))) */
typedef struct {
	const mp_sam *m;
	const mp_sam_block *b;
	float *x, *hid;
	const float *xn;
	int rows, rc;
} mlp_ctx;

static void
mlp_task(void *vc, size_t i, int tid)
{
	mlp_ctx *t = vc;
	const mp_sam *m = t->m;
	const mp_sam_block *b = t->b;
	int E = m->cfg.embed, M = m->cfg.mlp, r0 = (int)i * t->rc, nr = t->rows - r0 < t->rc ? t->rows - r0 : t->rc;
	float *hid = t->hid + (size_t)tid * t->rc * M, *xr = t->x + (size_t)r0 * E;

	m->be->gemm(m->be->ctx, 0, 1, nr, M, E, 1.0f, t->xn + (size_t)r0 * E, E, b->lin1.w, E, 0.0f, hid, M);
	mp_sam_cpu_bias_gelu1(hid, (size_t)nr, (size_t)M, b->lin1.b);
	m->be->gemm(m->be->ctx, 0, 1, nr, E, M, 1.0f, hid, M, b->lin2.w, M, 1.0f, xr, E);
	for (int r = 0; r < nr; r++)
		mp_sam_add(xr + (size_t)r * E, xr + (size_t)r * E, b->lin2.b, (size_t)E);
}

/* one ViT block on the CPU: the attention (sam_vitatt.c) reads the qkv
 * rows of the grid by windows, so nothing is partitioned or padded and the
 * padded tokens are never multiplied; the products' biases are added in
 * passes the results make anyway, the residuals by the products (beta 1) */
static void
vit_block_cpu(const mp_sam *m, const mp_sam_block *b, float *x, float *xn, float *qkv, float *ao, float *hid, int MC)
{
	const mp_sam_config *c = &m->cfg;
	const mp_sam_backend *be = m->be;
	int G = c->grid, E = c->embed, T = G * G;

	be->layernorm(be->ctx, xn, x, (size_t)T, (size_t)E, b->n1.w, b->n1.b, 1e-6f);
	mp_sam_prof_lap(MP_SP_LN1);
	gemm_rows(m, T, 3 * E, E, xn, E, b->qkv.w, 0.0f, qkv, 3 * E);
	mp_sam_prof_lap(MP_SP_QKV);
	mp_sam_vitatt a = { G, b->window, c->heads, c->hd, qkv, b->qkv.b, (size_t)3 * E, b->rph, b->rpw,
	                    1.0f / sqrtf((float)c->hd), ao, (size_t)E };
	mp_sam_vitatt_run(&a);
	mp_sam_prof_lap(MP_SP_ATT);
	if (b->sa1.w) {   /* Space_Adapter on the attention's output, then the residual */
		linear(m, &b->proj, ao, T, xn);
		for (int r0 = 0; r0 < T; r0 += MC) {
			int nr = T - r0 < MC ? T - r0 : MC, H = b->sa1.out;
			float *a0 = xn + (size_t)r0 * E;
			linear(m, &b->sa1, a0, nr, hid);
			be->gelu(be->ctx, hid, (size_t)nr * H);
			be->gemm(be->ctx, 0, 1, nr, E, H, 1.0f, hid, H, b->sa2.w, H, 1.0f, a0, E);
			rows_bias(a0, (size_t)nr, (size_t)E, b->sa2.b, 0);
		}
		mp_sam_add(x, x, xn, (size_t)T * E);
	} else {
		gemm_rows(m, T, E, E, ao, E, b->proj.w, 1.0f, x, E);
		rows_bias(x, (size_t)T, (size_t)E, b->proj.b, 0);
	}
	mp_sam_prof_lap(MP_SP_PROJ);
	be->layernorm(be->ctx, xn, x, (size_t)T, (size_t)E, b->n2.w, b->n2.b, 1e-6f);
	mp_sam_prof_lap(MP_SP_LN2);
	int rc = split_rows(T);
	if (rc && !b->ma1.w && (size_t)rc * mp_sam_threads() <= (size_t)MC * 2) {
		/* blocks of rows through the whole MLP, one per thread at a time */
		mlp_ctx t = { m, b, x, hid, xn, T, rc };
		mp_sam_cpu_parfor((size_t)((T + rc - 1) / rc), mlp_task, &t);
		mp_sam_prof_lap(MP_SP_MLP);
		return;
	}
	for (int r0 = 0; r0 < T; r0 += MC) {
		int nr = T - r0 < MC ? T - r0 : MC;
		float *xr = x + (size_t)r0 * E;
		be->gemm(be->ctx, 0, 1, nr, c->mlp, E, 1.0f, xn + (size_t)r0 * E, E, b->lin1.w, E, 0.0f, hid, c->mlp);
		mp_sam_prof_lap(MP_SP_LIN1);
		rows_bias(hid, (size_t)nr, (size_t)c->mlp, b->lin1.b, 1);
		mp_sam_prof_lap(MP_SP_GELU);
		be->gemm(be->ctx, 0, 1, nr, E, c->mlp, 1.0f, hid, c->mlp, b->lin2.w, c->mlp, 1.0f, xr, E);
		rows_bias(xr, (size_t)nr, (size_t)E, b->lin2.b, 0);
		mp_sam_prof_lap(MP_SP_LIN2);
		if (b->ma1.w) {   /* MLP_Adapter beside the MLP: += 0.5 ma2(gelu(ma1(norm2(x)))) */
			int H = b->ma1.out;
			linear(m, &b->ma1, xn + (size_t)r0 * E, nr, hid);
			be->gelu(be->ctx, hid, (size_t)nr * H);
			be->gemm(be->ctx, 0, 1, nr, E, H, 0.5f, hid, H, b->ma2.w, H, 1.0f, xr, E);
			for (int r = 0; r < nr; r++)
				for (int e = 0; e < E; e++)
					xr[(size_t)r * E + e] += 0.5f * b->ma2.b[e];
		}
	}
}

/* the attention of ViT block b (window partitions or the whole grid, fused
 * qkv rows of 3 x embed values, decomposed relative positions): every field
 * but the q, k, v and o pointers (both backends' encoders) */
void
mp_sam_block_attn(const mp_sam_config *c, const mp_sam_block *b, int nwx, mp_sam_attn *a)
{
	int E = c->embed, G = c->grid;

	memset(a, 0, sizeof *a);
	a->nb = b->window ? nwx * nwx : 1;
	a->nq = a->nk = b->window ? b->window * b->window : G * G;
	a->heads = c->heads;
	a->hd = c->hd;
	a->ldq = a->ldk = a->ldv = 3 * E;
	a->bsq = a->bsk = a->bsv = (size_t)a->nq * 3 * E;
	a->ldo = E;
	a->bso = (size_t)a->nq * E;
	a->scale = 1.0f / sqrtf((float)c->hd);
	a->rph = b->rph;
	a->rpw = b->rpw;
	a->gh = a->gw = b->window ? b->window : G;
}

int
mp_sam_encode(mp_sam *m, const float *img, float *emb)
{
	if (m->tv)
		return mp_sam_tvit_encode(m, img, emb);
	const mp_sam_config *c = &m->cfg;
	const mp_sam_backend *be = m->be;
	int dr = be->encode ? be->encode(be->ctx, m, img, emb) : 1;
	if (dr <= 0)
		return dr ? mp_preerr("image encoder") : 0;
	int G = c->grid, E = c->embed, P = c->patch, S = c->img_size, C = c->out_chans;
	int T = G * G, ws = c->window ? c->window : 1;
	int nwx = (G + ws - 1) / ws, Np = nwx * nwx * ws * ws;
	int rows = Np > T ? Np : T, K = 3 * P * P, MC = 1024;
	double t0 = mp_clock(), t1, c0 = mp_cpu_clock();
	int EW = E > C ? E : C, HW = c->mlp > 9 * C ? c->mlp : 9 * C;
	for (int bi = 0; bi < c->depth; bi++) {   /* adapters' hidden widths */
		const mp_sam_block *b = &m->blk[bi];
		HW = b->sa1.w && b->sa1.out > HW ? b->sa1.out : HW;
		HW = b->ma1.w && b->ma1.out > HW ? b->ma1.out : HW;
	}
	float *x = tryalloc((size_t)T, (size_t)E * 4), *xn = tryalloc((size_t)rows, (size_t)EW * 4);
	float *qkv = tryalloc((size_t)rows, (size_t)3 * E * 4), *ao = tryalloc((size_t)rows, (size_t)EW * 4);
	float *hid = tryalloc((size_t)MC * 2, (size_t)HW * 4);
	float *cols = tryalloc((size_t)T, (size_t)(K > 9 * C ? K : 9 * C) * 4);
	int rc = -1;

	if (!x || !xn || !qkv || !ao || !hid || !cols) {
		mp_seterr("image encoder: out of memory");
		goto out;
	}
	mp_sam_prof_lap(-1);
	/* patch embedding: im2col (c, kh, kw) then one product */
	for (int ty = 0; ty < G; ty++)
		for (int tx = 0; tx < G; tx++) {
			float *r = cols + ((size_t)ty * G + tx) * K;
			for (int ch = 0; ch < 3; ch++)
				for (int kh = 0; kh < P; kh++)
					memcpy(r + (ch * P + kh) * P, img + ((size_t)ch * S + (size_t)ty * P + kh) * S + (size_t)tx * P,
					       (size_t)P * sizeof(float));
		}
	int fast = mp_sam_is_cpu(be) && mp_sam_vitatt_ok(c->hd, G) && mp_sam_vitatt_ok(c->hd, ws);
	if (fast)
		gemm_rows(m, T, E, K, cols, K, m->patch_w, 0.0f, x, E);
	else
		be->gemm(be->ctx, 0, 1, T, E, K, 1.0f, cols, K, m->patch_w, K, 0.0f, x, E);
	for (int t = 0; t < T; t++)
		for (int e = 0; e < E; e++)
			x[(size_t)t * E + e] += m->patch_b[e] + m->pos[(size_t)t * E + e];
	mp_sam_prof_lap(MP_SP_PATCH);
	t1 = mp_clock();
	mp_note("encoder: patch embedding %.3f s", t1 - t0);

	for (int bi = 0; bi < c->depth; bi++) {
		const mp_sam_block *b = &m->blk[bi];
		double tb = mp_clock();
		int N = b->window ? Np : T;
		if (fast) {
			vit_block_cpu(m, b, x, xn, qkv, ao, hid, MC);
			mp_note("encoder: block %d (%s) %.3f s", bi, b->window ? "window" : "global", mp_clock() - tb);
			continue;
		}
		if (b->window) {
			int w = b->window;
			memset(xn, 0, (size_t)Np * E * sizeof(float));
			float *tmp = ao;
			be->layernorm(be->ctx, tmp, x, (size_t)T, (size_t)E, b->n1.w, b->n1.b, 1e-6f);
			for (int gy = 0; gy < G; gy++)
				for (int gx = 0; gx < G; gx++) {
					int wi = (gy / w) * nwx + gx / w, ti = (gy % w) * w + gx % w;
					memcpy(xn + ((size_t)wi * w * w + ti) * E, tmp + ((size_t)gy * G + gx) * E, (size_t)E * sizeof(float));
				}
		} else
			be->layernorm(be->ctx, xn, x, (size_t)T, (size_t)E, b->n1.w, b->n1.b, 1e-6f);
		mp_sam_prof_lap(MP_SP_LN1);
		linear(m, &b->qkv, xn, N, qkv);
		mp_sam_prof_lap(MP_SP_QKV);
		mp_sam_attn a;
		mp_sam_block_attn(c, b, nwx, &a);
		a.q = qkv;
		a.k = qkv + E;
		a.v = qkv + 2 * E;
		a.o = ao;
		be->attention(be->ctx, &a);
		mp_sam_prof_lap(MP_SP_ATT);
		linear(m, &b->proj, ao, N, xn);
		mp_sam_prof_lap(MP_SP_PROJ);
		if (b->sa1.w)   /* Space_Adapter: a += sa2(gelu(sa1(a))) on the attention's output */
			for (int r0 = 0; r0 < N; r0 += MC) {
				int nr = N - r0 < MC ? N - r0 : MC, H = b->sa1.out;
				float *a0 = xn + (size_t)r0 * E;
				linear(m, &b->sa1, a0, nr, hid);
				be->gelu(be->ctx, hid, (size_t)nr * H);
				be->gemm(be->ctx, 0, 1, nr, E, H, 1.0f, hid, H, b->sa2.w, H, 1.0f, a0, E);
				for (int r = 0; r < nr; r++)
					for (int e = 0; e < E; e++)
						a0[(size_t)r * E + e] += b->sa2.b[e];
			}
		if (b->window) {
			int w = b->window;
			for (int gy = 0; gy < G; gy++)
				for (int gx = 0; gx < G; gx++) {
					int wi = (gy / w) * nwx + gx / w, ti = (gy % w) * w + gx % w;
					const float *s = xn + ((size_t)wi * w * w + ti) * E;
					float *d = x + ((size_t)gy * G + gx) * E;
					for (int e = 0; e < E; e++)
						d[e] += s[e];
				}
		} else
			for (size_t i = 0; i < (size_t)T * E; i++)
				x[i] += xn[i];
		mp_sam_prof_lap(MP_SP_RES);
		/* MLP in chunks of rows */
		be->layernorm(be->ctx, xn, x, (size_t)T, (size_t)E, b->n2.w, b->n2.b, 1e-6f);
		mp_sam_prof_lap(MP_SP_LN2);
		for (int r0 = 0; r0 < T; r0 += MC) {
			int nr = T - r0 < MC ? T - r0 : MC;
			linear(m, &b->lin1, xn + (size_t)r0 * E, nr, hid);
			mp_sam_prof_lap(MP_SP_LIN1);
			be->gelu(be->ctx, hid, (size_t)nr * c->mlp);
			mp_sam_prof_lap(MP_SP_GELU);
			m->be->gemm(be->ctx, 0, 1, nr, E, c->mlp, 1.0f, hid, c->mlp, b->lin2.w, c->mlp, 1.0f,
			            x + (size_t)r0 * E, E);
			for (int r = r0; r < r0 + nr; r++)
				for (int e = 0; e < E; e++)
					x[(size_t)r * E + e] += b->lin2.b[e];
			mp_sam_prof_lap(MP_SP_LIN2);
			if (b->ma1.w) {   /* MLP_Adapter beside the MLP: += 0.5 ma2(gelu(ma1(norm2(x)))) */
				int H = b->ma1.out;
				linear(m, &b->ma1, xn + (size_t)r0 * E, nr, hid);
				be->gelu(be->ctx, hid, (size_t)nr * H);
				be->gemm(be->ctx, 0, 1, nr, E, H, 0.5f, hid, H, b->ma2.w, H, 1.0f, x + (size_t)r0 * E, E);
				for (int r = r0; r < r0 + nr; r++)
					for (int e = 0; e < E; e++)
						x[(size_t)r * E + e] += 0.5f * b->ma2.b[e];
			}
		}
		mp_note("encoder: block %d (%s) %.3f s", bi, b->window ? "window" : "global", mp_clock() - tb);
	}
	t1 = mp_clock();
	/* neck: 1x1 conv, LayerNorm2d, 3x3 conv (pad 1), LayerNorm2d */
	float *n0 = ao, *n1 = xn;
	if (fast)
		gemm_rows(m, T, C, E, x, E, m->neck0, 0.0f, n0, C);
	else
		be->gemm(be->ctx, 0, 1, T, C, E, 1.0f, x, E, m->neck0, E, 0.0f, n0, C);
	be->layernorm(be->ctx, n0, n0, (size_t)T, (size_t)C, m->neck1.w, m->neck1.b, 1e-6f);
	for (int y = 0; y < G; y++)
		for (int xx = 0; xx < G; xx++) {
			float *r = cols + ((size_t)y * G + xx) * 9 * C;
			for (int ch = 0; ch < C; ch++)
				for (int kh = 0; kh < 3; kh++)
					for (int kw = 0; kw < 3; kw++) {
						int sy = y + kh - 1, sx = xx + kw - 1;
						r[ch * 9 + kh * 3 + kw] = sy < 0 || sy >= G || sx < 0 || sx >= G ? 0.0f :
						                          n0[((size_t)sy * G + sx) * C + ch];
					}
		}
	if (fast)
		gemm_rows(m, T, C, 9 * C, cols, 9 * C, m->neck2, 0.0f, n1, C);
	else
		be->gemm(be->ctx, 0, 1, T, C, 9 * C, 1.0f, cols, 9 * C, m->neck2, 9 * C, 0.0f, n1, C);
	be->layernorm(be->ctx, n1, n1, (size_t)T, (size_t)C, m->neck3.w, m->neck3.b, 1e-6f);
	for (int t = 0; t < T; t++)
		for (int ch = 0; ch < C; ch++)
			emb[(size_t)ch * T + t] = n1[(size_t)t * C + ch];
	if (be->status && be->status(be->ctx)) {
		mp_preerr("image encoder");
		goto out;
	}
	mp_sam_prof_lap(MP_SP_NECK);
	mp_sam_prof_report();
	mp_note("encoder: neck %.3f s; total %.3f s; CPU %.3f s", mp_clock() - t1, mp_clock() - t0, mp_cpu_clock() - c0);
	rc = 0;
out:
	free(x);
	free(xn);
	free(qkv);
	free(ao);
	free(hid);
	free(cols);
	return rc;
}

/* ================================================================ decoder */
static void
pe_coords(const mp_sam *m, float x, float y, float *out)
{
	int F = m->cfg.out_chans / 2;
	float S = (float)m->cfg.img_size;
	float cx = 2 * (x / S) - 1, cy = 2 * (y / S) - 1;

	for (int j = 0; j < F; j++) {
		float v = cx * m->pe_gauss[j] + cy * m->pe_gauss[F + j];
		v = 2 * (float)M_PI * v;
		out[j] = sinf(v);
		out[F + j] = cosf(v);
	}
}

void
mp_sam_pe_coords(const mp_sam *m, float x, float y, float *out)
{
	pe_coords(m, x, y, out);
}

/* the decoder's products over all image tokens: on the CPU split into
 * blocks of rows over the threads as gemm_rows does, but always (the
 * decoder keeps the BLAS on one thread: mp_sam_decode_masks); elsewhere
 * linear() */
static void
dec_linear(const mp_sam *m, const mp_sam_lin *L, const float *x, int rows, float *y)
{
	int nt = mp_sam_threads();

	if (!mp_sam_is_cpu(m->be) || nt < 2 || rows < 512) {
		linear(m, L, x, rows, y);
		return;
	}
	int rc = (rows + 2 * nt - 1) / (2 * nt);
	grows_ctx g = { m, rows, L->out, L->in, L->in, L->out, rc < 64 ? 64 : (rc + 15) / 16 * 16, x, L->w, 0.0f, y };
	mp_sam_cpu_parfor((size_t)((rows + g.rc - 1) / g.rc), grows_task, &g);
	if (L->b)
		rows_bias(y, (size_t)rows, (size_t)L->out, L->b, 0);
}

/* out (nq x C) = out_proj(attention(Q, K, V)) for projected Q (nq x I), K, V (nk x I) */
static void
attn_core(const mp_sam *m, const mp_sam_tattn *A, const float *Q, int nq, const float *K, const float *V, int nk,
          float *O, float *out)
{
	int I = A->q.out, H = m->cfg.dec_heads;
	mp_sam_attn a;

	memset(&a, 0, sizeof a);
	a.nb = 1;
	a.nq = nq;
	a.nk = nk;
	a.heads = H;
	a.hd = I / H;
	a.q = Q;
	a.k = K;
	a.v = V;
	a.o = O;
	a.ldq = a.ldk = a.ldv = a.ldo = I;
	a.scale = 1.0f / sqrtf((float)a.hd);
	m->be->attention(m->be->ctx, &a);
	linear(m, &A->o, O, nq, out);
}

/* workspace: Q, K, V, O of an attention (T x I each) */
static void
tattn(const mp_sam *m, const mp_sam_tattn *A, const float *qin, int nq, const float *kin, const float *vin, int nk,
      float *out, float *ws)
{
	size_t T = (size_t)m->cfg.grid * m->cfg.grid, I = (size_t)A->q.out;
	float *Q = ws, *K = ws + T * I, *V = ws + 2 * T * I, *O = ws + 3 * T * I;

	dec_linear(m, &A->q, qin, nq, Q);
	dec_linear(m, &A->k, kin, nk, K);
	dec_linear(m, &A->v, vin, nk, V);
	attn_core(m, A, Q, nq, K, V, nk, O, out);
}

/* ---- a lone prompt on the CPU: the attentions with the image tokens split
 * over the threads by blocks of image tokens (t2i_folded with split,
 * i2t_par), each block one single-threaded BLAS call; otherwise its
 * image-side work would run on the BLAS's threads, which spin between
 * calls while the other steps run. The blocks make the same sums as the
 * whole products. */
#define TBLK 256

typedef struct {
	const mp_sam *m;
	int H, hd, I, C, nq, nk, HN;
	float sc;
	const float *F, *K, *cq, *qin, *c, *M, *resid, *kv;
	float *S, *out, *R, *tk;
	const float *kpe;
	const mp_sam_norm *ln;
} blk_ctx;

/* t2i: the scores of a block of image tokens (columns of S) */
static void
t2i_scores(void *vc, size_t b, int tid)
{
	blk_ctx *x = vc;
	const mp_sam_backend *be = x->m->be;
	int r0 = (int)b * TBLK, nb = x->nk - r0 < TBLK ? x->nk - r0 : TBLK;

	(void)tid;
	be->gemm(be->ctx, 0, 1, x->HN, nb, x->C, x->sc, x->F, x->C, x->qin + (size_t)r0 * x->C, x->C, 0.0f, x->S + r0,
	         x->nk);
}

/* t2i: R = S V for a block of 32 of the C columns */
static void
t2i_values(void *vc, size_t b, int tid)
{
	blk_ctx *x = vc;
	const mp_sam_backend *be = x->m->be;
	int c0 = (int)b * 32, nc = x->C - c0 < 32 ? x->C - c0 : 32;

	(void)tid;
	be->gemm(be->ctx, 0, 0, x->HN, nc, x->nk, 1.0f, x->S, x->nk, x->kv + c0, x->C, 0.0f, x->R + c0, x->C);
}

#define MAXTOK 64
/* workspace of t2i_folded / i2t_folded */
#define FOLDWS(H, T, C) ((size_t)(H) * MAXTOK * ((size_t)(T) + 2 * (size_t)(C) + 1) + 2 * (size_t)MAXTOK * (size_t)(C) + \
                         2 * (size_t)(T))

/* Attention between the few prompt tokens and the T image tokens with the
 * image-side projections folded into the token side (same values up to
 * rounding, fewer products when the tokens are few): per head h,
 * (x Wq_h^T)(y Wk_h^T + bk_h)^T = (x Wq_h^T Wk_h) y^T + a per-query constant
 * (which softmax drops), and P (y Wv_h^T + bv_h) = (P y) Wv_h^T + bv_h as the
 * rows of P sum to 1. s: workspace of H * MAXTOK * (T + 2 C) + MAXTOK floats. */
static void
softmax_rows(float *s, size_t rows, size_t n, size_t ld)
{
	mp_sam_softmax_rows(s, rows, n, ld);
}

/* c (n x m, row stride ldc) = a (n x k, stride lda) b^T, b: m x k (stride ldb)
 * when bt, else b: k x m (stride ldb); the small products of the folding,
 * too small to be worth a threaded GEMM */
static void
smallmm(int n, int m, int k, const float *a, int lda, const float *b, int ldb, int bt, float *c, int ldc)
{
	for (int i = 0; i < n; i++) {
		float *ci = c + (size_t)i * ldc;
		const float *ai = a + (size_t)i * lda;
		if (bt)
			for (int j = 0; j < m; j++) {
				const float *bj = b + (size_t)j * ldb;
				float d = 0;
				for (int e = 0; e < k; e++)
					d += ai[e] * bj[e];
				ci[j] = d;
			}
		else {
			for (int j = 0; j < m; j++)
				ci[j] = 0;
			for (int e = 0; e < k; e++) {
				const float *be = b + (size_t)e * ldb;
				float ae = ai[e];
				for (int j = 0; j < m; j++)
					ci[j] += ae * be[j];
			}
		}
	}
}

/* tokens (nq x C, projected by A->q here) attend to image keys kin and values vin (nk x C) */
static void
t2i_folded(const mp_sam *m, const mp_sam_tattn *A, const float *qin, int nq, const float *kin, const float *vin,
           int nk, float *out, float *s, int split, int ks, int vs)
{
	const mp_sam_backend *be = m->be;
	int I = A->q.out, H = m->cfg.dec_heads, hd = I / H, C = A->k.in, HN = H * nq;
	float *Q = s, *F = Q + (size_t)nq * I, *R = F + (size_t)HN * C, *O = R + (size_t)HN * C;
	float *S = O + (size_t)nq * I;
	blk_ctx x;

	linear(m, &A->q, qin, nq, Q);
	for (int h = 0; h < H; h++)
		smallmm(nq, C, hd, Q + h * hd, I, A->k.w + (size_t)h * hd * C, C, 0, F + (size_t)h * nq * C, C);
	memset(&x, 0, sizeof x);
	x.m = m, x.C = C, x.nk = nk, x.HN = HN, x.sc = 1.0f / sqrtf((float)hd);
	x.F = F, x.qin = kin, x.S = S, x.kv = vin, x.R = R;
	/* (a backend's failure: mp_sam_decode asks its status at the end) */
	if (ks >= 0) {           /* the image side on the device: slots ks, vs */
		be->dec_t2i(be->ctx, m, ks, vs, F, HN, x.sc, R);
	} else {
		if (split)
			mp_sam_cpu_parfor((size_t)(nk + TBLK - 1) / TBLK, t2i_scores, &x);
		else
			be->gemm(be->ctx, 0, 1, HN, nk, C, x.sc, F, C, kin, C, 0.0f, S, nk);
		softmax_rows(S, (size_t)HN, (size_t)nk, (size_t)nk);
		if (split)
			mp_sam_cpu_parfor((size_t)(C + 31) / 32, t2i_values, &x);
		else
			be->gemm(be->ctx, 0, 0, HN, C, nk, 1.0f, S, nk, vin, C, 0.0f, R, C);
	}
	for (int h = 0; h < H; h++)
		smallmm(nq, hd, C, R + (size_t)h * nq * C, C, A->v.w + (size_t)h * hd * C, C, 1, O + h * hd, I);
	if (A->v.b)
		for (int r = 0; r < nq; r++)
			for (int j = 0; j < I; j++)
				O[(size_t)r * I + j] += A->v.b[j];
	linear(m, &A->o, O, nq, out);
}

/* the token side of i2t_folded / i2t_par in s: K, V (nk x I) projected from
 * the tokens kin, vin; with fold the query weights folded into them per
 * head (F, HN x C) and the query bias's constant per key (c); M (HN x C):
 * each head's values through its part of the output projection, + b / H */
static void
i2t_tokens(const mp_sam *m, const mp_sam_tattn *A, int fold, const float *kin, const float *vin, int nk, float *s)
{
	int I = A->q.out, H = m->cfg.dec_heads, hd = I / H, C = A->q.in, HN = H * nk;
	float *K = s, *V = K + (size_t)nk * I, *F = V + (size_t)nk * I, *M = F + (size_t)HN * C, *c = M + (size_t)HN * C;
	float sc = 1.0f / sqrtf((float)hd);

	linear(m, &A->k, kin, nk, K);
	linear(m, &A->v, vin, nk, V);
	if (fold)
		for (int h = 0; h < H; h++) {
			smallmm(nk, C, hd, K + h * hd, I, A->q.w + (size_t)h * hd * C, C, 0, F + (size_t)h * nk * C, C);
			for (int j = 0; j < nk; j++) {
				float d = 0;
				for (int e = 0; e < hd; e++)
					d += K[(size_t)j * I + h * hd + e] * (A->q.b ? A->q.b[h * hd + e] : 0.0f);
				c[h * nk + j] = sc * d;
			}
		}
	for (int h = 0; h < H; h++)
		smallmm(nk, C, hd, V + h * hd, I, A->o.w + h * hd, I, 1, M + (size_t)h * nk * C, C);
	if (A->o.b)
		for (int r = 0; r < HN; r++)
			for (int j = 0; j < C; j++)
				M[(size_t)r * C + j] += A->o.b[j] / (float)H;
}

/* image tokens qin (nq x C; or their projections cq, nq x I, when not NULL)
 * attend to the tokens kin, vin (nk x C). The scores are made transposed
 * (head-major rows of nq image tokens), so that the softmax over the few
 * tokens runs along columns, vectorised over the image tokens. resid (may
 * be out; or NULL) is added to out by the last product; the output bias
 * goes into it as b / H on every row of the folded values (each head's
 * weights of an image token sum to 1). */
static void
i2t_folded(const mp_sam *m, const mp_sam_tattn *A, const float *qin, const float *cq, int nq, const float *kin,
           const float *vin, int nk, float *out, const float *resid, float *s)
{
	const mp_sam_backend *be = m->be;
	int I = A->q.out, H = m->cfg.dec_heads, hd = I / H, C = A->q.in, HN = H * nk;
	float *K = s, *V = K + (size_t)nk * I, *F = V + (size_t)nk * I, *M = F + (size_t)HN * C, *c = M + (size_t)HN * C;
	float *S = c + HN, *tmp = S + (size_t)HN * nq, sc = 1.0f / sqrtf((float)hd);

	i2t_tokens(m, A, !cq, kin, vin, nk, s);
	if (cq)
		for (int h = 0; h < H; h++)
			be->gemm(be->ctx, 0, 1, nk, nq, hd, sc, K + h * hd, I, cq + h * hd, I, 0.0f, S + (size_t)h * nk * nq, nq);
	else
		be->gemm(be->ctx, 0, 1, HN, nq, C, sc, F, C, qin, C, 0.0f, S, nq);
	for (int h = 0; h < H; h++)
		mp_sam_softmax_cols(S + (size_t)h * nk * nq, (size_t)nk, (size_t)nq, (size_t)nq, cq ? NULL : c + h * nk, tmp);
	if (resid && resid != out)
		memcpy(out, resid, (size_t)nq * C * sizeof(float));
	be->gemm(be->ctx, 1, 0, nq, C, HN, 1.0f, S, nq, M, C, resid ? 1.0f : 0.0f, out, C);
}

/* the first layer's t2i on the cached projections of the image tokens
 * (m->c_k, m->c_v): a head per task, scores and values as two products
 * on the strided head columns */
static void
t2i0_head(void *vc, size_t h, int tid)
{
	blk_ctx *x = vc;
	const mp_sam_backend *be = x->m->be;
	float *S = x->S + h * (size_t)x->nq * x->nk;
	int o = (int)h * x->hd;

	(void)tid;
	be->gemm(be->ctx, 0, 1, x->nq, x->nk, x->hd, x->sc, x->F + o, x->I, x->K + o, x->I, 0.0f, S, x->nk);
	softmax_rows(S, (size_t)x->nq, (size_t)x->nk, (size_t)x->nk);
	be->gemm(be->ctx, 0, 0, x->nq, x->hd, x->nk, 1.0f, S, x->nk, x->kv + o, x->I, 0.0f, x->R + o, x->I);
}

/* tokens qin (nq x C) attend to the image with keys K and values V (nk x I,
 * projected); ws: 2 nq I + heads nq nk floats */
static void
t2i0_par(const mp_sam *m, const mp_sam_tattn *A, const float *qin, int nq, const float *K, const float *V, int nk,
         float *out, float *ws)
{
	int I = A->q.out, H = m->cfg.dec_heads;
	float *Q = ws, *O = Q + (size_t)nq * I, *S = O + (size_t)nq * I;
	blk_ctx x;

	linear(m, &A->q, qin, nq, Q);
	memset(&x, 0, sizeof x);
	x.m = m, x.hd = I / H, x.I = I, x.nq = nq, x.nk = nk, x.sc = 1.0f / sqrtf((float)(I / H));
	x.F = Q, x.K = K, x.kv = V, x.S = S, x.R = O;
	mp_sam_cpu_parfor((size_t)H, t2i0_head, &x);
	linear(m, &A->o, O, nq, out);
}

/* i2t for a block of image tokens: scores, softmax down the columns, the
 * output added to the residual, the layer norm, and the next keys + pe */
static void
i2t_block(void *vc, size_t b, int tid)
{
	blk_ctx *x = vc;
	const mp_sam_backend *be = x->m->be;
	int r0 = (int)b * TBLK, nb = x->nq - r0 < TBLK ? x->nq - r0 : TBLK, nk = x->nk, nq = x->nq, C = x->C;
	float tmp[2 * TBLK], *o = x->out + (size_t)r0 * C;

	(void)tid;
	if (x->cq)
		for (int h = 0; h < x->H; h++)
			be->gemm(be->ctx, 0, 1, nk, nb, x->hd, x->sc, x->K + h * x->hd, x->I, x->cq + (size_t)r0 * x->I + h * x->hd,
			         x->I, 0.0f, x->S + (size_t)h * nk * nq + r0, nq);
	else
		be->gemm(be->ctx, 0, 1, x->HN, nb, C, x->sc, x->F, C, x->qin + (size_t)r0 * C, C, 0.0f, x->S + r0, nq);
	for (int h = 0; h < x->H; h++)
		mp_sam_softmax_cols(x->S + (size_t)h * nk * nq + r0, (size_t)nk, (size_t)nb, (size_t)nq,
		                    x->cq ? NULL : x->c + h * nk, tmp);
	if (x->resid != x->out)
		memcpy(o, x->resid + (size_t)r0 * C, (size_t)nb * C * sizeof(float));
	be->gemm(be->ctx, 1, 0, nb, C, x->HN, 1.0f, x->S + r0, nq, x->M, C, 1.0f, o, C);
	mp_sam_cpu_ln1(o, o, (size_t)nb, (size_t)C, x->ln->w, x->ln->b, 1e-5f);
	mp_sam_add(x->tk + (size_t)r0 * C, o, x->kpe + (size_t)r0 * C, (size_t)nb * C);
}

/* i2t_folded (resid not NULL) and the layer norm ln of its output on the
 * threads; tk gets out + kpe, the next attentions' keys */
static void
i2t_par(const mp_sam *m, const mp_sam_tattn *A, const float *qin, const float *cq, int nq, const float *kin,
        const float *vin, int nk, float *out, const float *resid, const mp_sam_norm *ln, float *tk, float *s)
{
	int I = A->q.out, H = m->cfg.dec_heads, hd = I / H, C = A->q.in, HN = H * nk;
	float *K = s, *V = K + (size_t)nk * I, *F = V + (size_t)nk * I, *M = F + (size_t)HN * C, *c = M + (size_t)HN * C;
	float *S = c + HN, sc = 1.0f / sqrtf((float)hd);
	blk_ctx x;

	i2t_tokens(m, A, !cq, kin, vin, nk, s);
	memset(&x, 0, sizeof x);
	x.m = m, x.H = H, x.hd = hd, x.I = I, x.C = C, x.nq = nq, x.nk = nk, x.HN = HN, x.sc = sc;
	x.F = F, x.K = K, x.cq = cq, x.qin = qin, x.c = c, x.M = M, x.resid = resid, x.S = S, x.out = out;
	x.tk = tk, x.kpe = m->dense_pe, x.ln = ln;
	mp_sam_cpu_parfor((size_t)(nq + TBLK - 1) / TBLK, i2t_block, &x);
}

void
mp_sam_decode_forget(mp_sam *m)
{
	m->cache_emb = NULL;
}

static void
addv(float *d, const float *a, const float *b, size_t n)
{
	mp_sam_add(d, a, b, n);
}

static void
mlp3(const mp_sam *m, const mp_sam_lin *L, int n, const float *in, float *out)
{
	float a[1024] = { 0 }, b[1024] = { 0 };
	const float *x = in;

	for (int i = 0; i < n; i++) {
		float *y = i == n - 1 ? out : (i % 2 ? b : a);
		linear(m, &L[i], x, 1, y);
		if (i < n - 1)
			relu(y, (size_t)L[i].out);
		x = y;
	}
}

/* the two-way transformer's workspace, one per prompt decoded at once */
typedef struct {
	float *tok, *qry, *tq, *tmpq, *h, *keys, *tk, *tmpk, *ws, *fws;
	int res;                 /* the image side on the device (dec_tokens) */
} dec_ws;

static size_t
dec_ws_floats(const mp_sam *m)
{
	const mp_sam_config *c = &m->cfg;
	size_t T = (size_t)c->grid * c->grid, C = (size_t)c->out_chans, I = (size_t)c->dec_internal;

	return 4 * (size_t)MAXTOK * C + (size_t)MAXTOK * c->dec_mlp + 3 * T * C + 4 * T * I +
	       FOLDWS(c->dec_heads, T, C);
}

static void
dec_ws_set(const mp_sam *m, float *b, dec_ws *w)
{
	const mp_sam_config *c = &m->cfg;
	size_t T = (size_t)c->grid * c->grid, C = (size_t)c->out_chans, I = (size_t)c->dec_internal;

	w->tok = b;
	w->qry = w->tok + MAXTOK * C;
	w->tq = w->qry + MAXTOK * C;
	w->tmpq = w->tq + MAXTOK * C;
	w->h = w->tmpq + MAXTOK * C;
	w->keys = w->h + (size_t)MAXTOK * c->dec_mlp;
	w->tk = w->keys + T * C;
	w->tmpk = w->tk + T * C;
	w->ws = w->tmpk + T * C;
	w->fws = w->ws + 4 * T * I;
	w->res = 0;
}

static int
dec_check(const mp_sam *m, const mp_sam_prompt *p)
{
	const mp_sam_config *c = &m->cfg;
	int nt = 1 + c->nmask + p->npts + (p->has_box ? 2 : 1);

	if (c->out_chans > 1024 || c->iou_hidden > 1024)
		return mp_seterr("mask decoder: width %d not supported", c->out_chans);
	if (nt > MAXTOK || p->npts < 0)
		return mp_seterr("mask decoder: at most %d points", MAXTOK - 4 - c->nmask);
	return 0;
}

/* image tokens t of block b (64 tokens): keys0 (T x C) = the embedding
 * (C x T) transposed + the no-mask embedding, kpe0 = keys0 + dense pe */
typedef struct {
	mp_sam *m;
	const float *emb;
} prep_ctx;

static void
prep_tokens(void *vc, size_t b, int tid)
{
	prep_ctx *x = vc;
	mp_sam *m = x->m;
	int C = m->cfg.out_chans, T = m->cfg.grid * m->cfg.grid, t0 = (int)b * 64, t1 = t0 + 64 < T ? t0 + 64 : T;

	(void)tid;
	for (int ch = 0; ch < C; ch++) {
		const float *e = x->emb + (size_t)ch * T;
		float nm = m->no_mask[ch];
		for (int t = t0; t < t1; t++)
			m->c_keys0[(size_t)t * C + ch] = e[t] + nm;
	}
	addv(m->c_kpe0 + (size_t)t0 * C, m->c_keys0 + (size_t)t0 * C, m->dense_pe + (size_t)t0 * C, (size_t)(t1 - t0) * C);
}

/* what depends on the model alone (the transposed convolutions' weights) and
 * on the embedding alone (image tokens + no-mask embedding, and with proj
 * the first layer's projections of them), kept for the next call with emb.
 * A lone prompt whose attentions fold (dec_fold) on a new embedding does
 * without the projections: folded, its first layer costs fewer products
 * than making them (3 T C I multiply-adds), which pays off from the second
 * prompt on. */
static int
dec_prepare(mp_sam *m, const float *emb, int proj)
{
	const mp_sam_config *c = &m->cfg;
	int C = c->out_chans, G = c->grid, T = G * G, I = c->dec_internal, C4 = C / 4, C8 = C / 8;
	size_t TC = (size_t)T * C, TI = (size_t)T * I;

	if (!m->dbuf) {
		m->dbuf = tryalloc(2 * TC + 3 * TI + (size_t)C * C4 * 4 + (size_t)C4 * C8 * 4, sizeof(float));
		if (!m->dbuf)
			return mp_seterr("mask decoder: out of memory");
		m->c_keys0 = m->dbuf;
		m->c_kpe0 = m->c_keys0 + TC;
		m->c_k = m->c_kpe0 + TC;
		m->c_v = m->c_k + TI;
		m->c_q = m->c_v + TI;
		/* the transposed convolutions' weights as (in, kh, kw, out): each
		 * output row of a GEMM then holds two runs of adjacent output pixels */
		float *w0 = m->c_q + TI, *w3 = w0 + (size_t)C * C4 * 4;
		for (int i = 0; i < C; i++)
			for (int o = 0; o < C4; o++)
				for (int k = 0; k < 4; k++)
					w0[((size_t)i * 4 + k) * C4 + o] = m->up0_w[((size_t)i * C4 + o) * 4 + k];
		for (int i = 0; i < C4; i++)
			for (int o = 0; o < C8; o++)
				for (int k = 0; k < 4; k++)
					w3[((size_t)i * 4 + k) * C8 + o] = m->up3_w[((size_t)i * C8 + o) * 4 + k];
		if (m->be->constant)     /* unchanged until mp_sam_free */
			m->be->constant(m->be->ctx, w0, ((size_t)C * C4 * 4 + (size_t)C4 * C8 * 4) * sizeof(float));
		m->cache_emb = NULL;
	}
	if (m->cache_emb != emb) {
		prep_ctx x = { m, emb };
		if (mp_sam_is_cpu(m->be))
			mp_sam_cpu_parfor((size_t)(T + 63) / 64, prep_tokens, &x);
		else
			for (size_t b = 0; b < (size_t)(T + 63) / 64; b++)
				prep_tokens(&x, b, 0);
		m->cache_emb = emb;
		m->cache_proj = 0;
		m->dev_keys = 0;
	}
	if (proj && !m->cache_proj) {
		dec_linear(m, &m->tl[0].t2i.k, m->c_kpe0, T, m->c_k);
		dec_linear(m, &m->tl[0].t2i.v, m->c_keys0, T, m->c_v);
		dec_linear(m, &m->tl[0].i2t.q, m->c_kpe0, T, m->c_q);
		m->cache_proj = 1;
	}
	return 0;
}

static const float *
dec_w0(const mp_sam *m)
{
	return m->c_q + (size_t)m->cfg.grid * m->cfg.grid * m->cfg.dec_internal;
}

/* the attentions with the image side on the device (dec_tokens with res):
 * the prompt tokens' side here, the image tokens in the backend's slots.
 * t2i_dev: tokens qin (nq) attend to slots ks (keys) and vs (values);
 * i2t_dev: the tokens of slot qs attend to kin, vin (nk), and the backend
 * makes KEYS = ln(slot rs + that) and TK = KEYS + pe. Folded or not as
 * dec_fold says: fws, the folded attentions' workspace; ws: 2 nq I floats */
static void
t2i_dev(const mp_sam *m, const mp_sam_tattn *A, int fold, const float *qin, int nq, int ks, int vs, float *out,
        float *ws, float *fws)
{
	const mp_sam_backend *be = m->be;
	float *Q = ws, *O = ws + (size_t)nq * A->q.out;

	if (fold) {
		t2i_folded(m, A, qin, nq, NULL, NULL, m->cfg.grid * m->cfg.grid, out, fws, 0, ks, vs);
		return;
	}
	linear(m, &A->q, qin, nq, Q);
	be->dec_t2i_attn(be->ctx, m, A, ks, vs, Q, nq, O);
	linear(m, &A->o, O, nq, out);
}

static void
i2t_dev(const mp_sam *m, const mp_sam_tattn *A, int fold, int qs, int rs, const float *kin, const float *vin, int nk,
        const mp_sam_norm *ln, float *s)
{
	const mp_sam_backend *be = m->be;
	int I = A->q.out, H = m->cfg.dec_heads, hd = I / H, C = A->q.in, HN = H * nk;
	float *K = s, *V = K + (size_t)nk * I, *F = V + (size_t)nk * I, *M = F + (size_t)HN * C, *c = M + (size_t)HN * C;

	if (!fold) {
		linear(m, &A->k, kin, nk, K);
		linear(m, &A->v, vin, nk, V);
		be->dec_i2t_attn(be->ctx, m, A, qs, rs, K, V, nk, ln->w, ln->b);
		return;
	}
	i2t_tokens(m, A, 1, kin, vin, nk, s);
	be->dec_i2t(be->ctx, m, qs, rs, F, c, M, HN, nk, 1.0f / sqrtf((float)hd), ln->w, ln->b);
}

/* whether prompt p's attentions with the image tokens run folded (t2i_folded,
 * i2t_folded): fewer products when heads x tokens < the attention's width */
static int
dec_fold(const mp_sam *m, const mp_sam_prompt *p)
{
	int nt = 1 + m->cfg.nmask + p->npts + (p->has_box ? 2 : 1);

	return m->cfg.dec_heads * nt < m->cfg.dec_internal;
}

/* the prompt encoder and the two-way transformer for prompt p: w->qry gets
 * the NT output tokens (iou, mask tokens, ...), w->keys the image tokens;
 * split: the CPU backend's threads are this prompt's alone (one prompt
 * decoded at a time on more than one thread) */
static void
dec_tokens(const mp_sam *m, const mp_sam_prompt *p, dec_ws *w, int split)
{
	const mp_sam_config *c = &m->cfg;
	int C = c->out_chans, G = c->grid, T = G * G, NM = c->nmask, I = c->dec_internal;
	int npts = p->npts + (p->has_box ? 0 : 1);
	int nsp = npts + (p->has_box ? 2 : 0), NT = 1 + NM + nsp;
	const mp_sam_backend *be = m->be;
	size_t TC = (size_t)T * C, TI = (size_t)T * I;
	float *tok = w->tok, *qry = w->qry, *tq = w->tq, *tmpq = w->tmpq, *h = w->h, *keys = w->keys, *tk = w->tk;
	float *tmpk = w->tmpk, *ws = w->ws, *fws = w->fws;
	/* fold the image-side projections into the token side when that is
	 * fewer products; the first layer too when the projections of the
	 * image tokens are not made (dec_prepare) */
	int fold = dec_fold(m, p), proj = m->cache_proj;
	/* CPU, split: the folded attentions over the threads by blocks of image
	 * tokens (tk made by i2t_par with each layer's keys) */
	int par = split && fold && mp_sam_is_cpu(be);
	/* res: the image side on the device (mp_sam_decode, dec_begin done:
	 * keys, tk and the first layer's image tokens are the backend's slots;
	 * the first layer's projections not made) */
	int res = w->res;

	if (res)
		proj = par = 0;

	/* tokens: iou, mask tokens, points (padded), box corners */
	memset(tok, 0, (size_t)NT * C * sizeof(float));
	memcpy(tok, m->iou_token, (size_t)C * sizeof(float));
	memcpy(tok + C, m->mask_tokens, (size_t)NM * C * sizeof(float));
	float *sp = tok + (size_t)(1 + NM) * C;
	for (int i = 0; i < npts; i++) {
		float *e = sp + (size_t)i * C;
		int lab = i < p->npts ? p->labels[i] : -1;
		if (lab == -1) {
			memcpy(e, m->not_a_point, (size_t)C * sizeof(float));
			continue;
		}
		pe_coords(m, p->pts[2 * i] + 0.5f, p->pts[2 * i + 1] + 0.5f, e);
		const float *add = m->point_emb[lab ? 1 : 0];
		for (int j = 0; j < C; j++)
			e[j] += add[j];
	}
	if (p->has_box)
		for (int k = 0; k < 2; k++) {
			float *e = sp + (size_t)(npts + k) * C;
			pe_coords(m, p->box[2 * k] + 0.5f, p->box[2 * k + 1] + 0.5f, e);
			for (int j = 0; j < C; j++)
				e[j] += m->point_emb[2 + k][j];
		}
	const float *kpe = m->dense_pe;
	size_t nq = (size_t)NT * C, nk = TC;
	memcpy(qry, tok, nq * sizeof(float));
	for (int li = 0; li < c->dec_depth; li++) {
		const mp_sam_tlayer *L = &m->tl[li];
		if (li == 0) {
			tattn(m, &L->self_attn, qry, NT, qry, qry, NT, tmpq, ws);
			memcpy(qry, tmpq, nq * sizeof(float));
		} else {
			addv(tq, qry, tok, nq);
			tattn(m, &L->self_attn, tq, NT, tq, qry, NT, tmpq, ws);
			addv(qry, qry, tmpq, nq);
		}
		be->layernorm(be->ctx, qry, qry, (size_t)NT, (size_t)C, L->n1.w, L->n1.b, 1e-5f);
		addv(tq, qry, tok, nq);
		if (res)
			t2i_dev(m, &L->t2i, fold, tq, NT, li == 0 ? MP_SAM_DKPE0 : MP_SAM_DTK, li == 0 ? MP_SAM_DKEYS0 : MP_SAM_DKEYS,
			        tmpq, ws, fws);
		else if (li == 0 && !proj)
			t2i_folded(m, &L->t2i, tq, NT, m->c_kpe0, m->c_keys0, T, tmpq, fws, par, -1, -1);
		else if (li == 0 && par)
			t2i0_par(m, &L->t2i, tq, NT, m->c_k, m->c_v, T, tmpq, ws);
		else if (li == 0) {
			linear(m, &L->t2i.q, tq, NT, ws);
			attn_core(m, &L->t2i, ws, NT, m->c_k, m->c_v, T, ws + 3 * TI, tmpq);
		} else if (par)   /* tk made by i2t_par */
			t2i_folded(m, &L->t2i, tq, NT, tk, keys, T, tmpq, fws, 1, -1, -1);
		else {
			addv(tk, keys, kpe, nk);
			if (fold)
				t2i_folded(m, &L->t2i, tq, NT, tk, keys, T, tmpq, fws, 0, -1, -1);
			else
				tattn(m, &L->t2i, tq, NT, tk, keys, T, tmpq, ws);
		}
		addv(qry, qry, tmpq, nq);
		be->layernorm(be->ctx, qry, qry, (size_t)NT, (size_t)C, L->n2.w, L->n2.b, 1e-5f);
		linear(m, &L->lin1, qry, NT, h);
		relu(h, (size_t)NT * c->dec_mlp);
		linear(m, &L->lin2, h, NT, tmpq);
		addv(qry, qry, tmpq, nq);
		be->layernorm(be->ctx, qry, qry, (size_t)NT, (size_t)C, L->n3.w, L->n3.b, 1e-5f);
		addv(tq, qry, tok, nq);
		/* image tokens attend to the prompt tokens: q = keys + pe */
		/* keys start as the image tokens; the attention's output is added */
		if (par) {
			i2t_par(m, &L->i2t, li == 0 ? m->c_kpe0 : tk, li == 0 && proj ? m->c_q : NULL, T, tq, qry, NT, keys,
			        li == 0 ? m->c_keys0 : keys, &L->n4, tk, fws);
			continue;   /* the layer norm done, tk = keys + pe made */
		}
		if (res) {      /* the same on the device: KEYS, then TK */
			i2t_dev(m, &L->i2t, fold, li == 0 ? MP_SAM_DKPE0 : MP_SAM_DTK, li == 0 ? MP_SAM_DKEYS0 : MP_SAM_DKEYS, tq,
			        qry, NT, &L->n4, fws);
			continue;
		}
		if (fold)
			i2t_folded(m, &L->i2t, li == 0 ? m->c_kpe0 : tk, li == 0 && proj ? m->c_q : NULL, T, tq, qry, NT,
			           keys, li == 0 ? m->c_keys0 : keys, fws);
		else {
			if (li == 0) {
				float *K = ws, *V = ws + TI;
				linear(m, &L->i2t.k, tq, NT, K);
				linear(m, &L->i2t.v, qry, NT, V);
				attn_core(m, &L->i2t, m->c_q, T, K, V, NT, ws + 3 * TI, tmpk);
			} else
				tattn(m, &L->i2t, tk, T, tq, qry, NT, tmpk, ws);
			addv(keys, li == 0 ? m->c_keys0 : keys, tmpk, nk);
		}
		be->layernorm(be->ctx, keys, keys, (size_t)T, (size_t)C, L->n4.w, L->n4.b, 1e-5f);
	}
	addv(tq, qry, tok, nq);
	if (!par && !res)
		addv(tk, keys, kpe, nk);
	if (res)
		t2i_dev(m, &m->final_attn, fold, tq, NT, MP_SAM_DTK, MP_SAM_DKEYS, tmpq, ws, fws);
	else if (fold)
		t2i_folded(m, &m->final_attn, tq, NT, tk, keys, T, tmpq, fws, par, -1, -1);
	else
		tattn(m, &m->final_attn, tq, NT, tk, keys, T, tmpq, ws);
	addv(qry, qry, tmpq, nq);
	be->layernorm(be->ctx, qry, qry, (size_t)NT, (size_t)C, m->norm_final.w, m->norm_final.b, 1e-5f);
}

int
mp_sam_decode(mp_sam *m, const float *emb, const mp_sam_prompt *p, float *lowres, float *iou)
{
	const mp_sam_config *c = &m->cfg;
	int C = c->out_chans, G = c->grid, T = G * G, NM = c->nmask;
	const mp_sam_backend *be = m->be;
	int C4 = C / 4, C8 = C / 8, G2 = 2 * G, G4 = 4 * G;
	dec_ws w;

	if (dec_check(m, p))
		return -1;
	if (!m->tbuf) {
		size_t n = dec_ws_floats(m) + (size_t)T * C4 * 4 + (size_t)G2 * G2 * C4 + (size_t)G2 * G2 * C8 * 4 +
		           (size_t)G4 * G4 * C8 + (size_t)NM * C8;
		m->tbuf = tryalloc(n, sizeof(float));
		if (!m->tbuf)
			return mp_seterr("mask decoder: out of memory");
	}
	/* a backend with the decoder's image side (dec_begin): the image tokens
	 * go up once per embedding, their projections are made there */
	int res = be->dec_begin != NULL;
	if (dec_prepare(m, emb, !res))
		return -1;
	if (res) {
		int r = be->dec_begin(be->ctx, m, m->c_keys0, !m->dev_keys);
		if (r < 0)
			return mp_preerr("mask decoder");
		m->dev_keys = r == 0;
		if (r > 0 && dec_prepare(m, emb, 1))
			return -1;
		res = r == 0;
	}
	dec_ws_set(m, m->tbuf, &w);
	w.res = res;
	float *y1 = m->tbuf + dec_ws_floats(m), *u1 = y1 + (size_t)T * C4 * 4, *y2 = u1 + (size_t)G2 * G2 * C4;
	float *u2 = y2 + (size_t)G2 * G2 * C8 * 4, *hyper = u2 + (size_t)G4 * G4 * C8;
	const float *w0 = dec_w0(m), *w3 = w0 + (size_t)C * C4 * 4;
	float *keys = w.keys, *qry = w.qry;

	dec_tokens(m, p, &w, 0);
	if (res) {      /* the upscaling and the masks on the device */
		for (int i = 0; i < NM; i++)
			mlp3(m, m->hyper[i], 3, qry + (size_t)(1 + i) * C, hyper + (size_t)i * C8);
		be->dec_masks(be->ctx, m, w0, hyper, NM, lowres);
		goto heads;
	}
	/* upscaling: two transposed 2x2 convolutions, stride 2 */
	be->gemm(be->ctx, 0, 0, T, C4 * 4, C, 1.0f, keys, C, w0, C4 * 4, 0.0f, y1, C4 * 4);
	for (int y = 0; y < G; y++)
		for (int x = 0; x < G; x++) {
			const float *s = y1 + ((size_t)y * G + x) * C4 * 4;
			for (int kh = 0; kh < 2; kh++) {
				float *d = u1 + ((size_t)(2 * y + kh) * G2 + 2 * x) * C4;
				const float *sk = s + (size_t)kh * 2 * C4;
				for (int o = 0; o < C4; o++) {
					d[o] = sk[o] + m->up0_b[o];
					d[C4 + o] = sk[C4 + o] + m->up0_b[o];
				}
			}
		}
	be->layernorm(be->ctx, u1, u1, (size_t)G2 * G2, (size_t)C4, m->up1.w, m->up1.b, 1e-6f);
	be->gelu(be->ctx, u1, (size_t)G2 * G2 * C4);
	be->gemm(be->ctx, 0, 0, G2 * G2, C8 * 4, C4, 1.0f, u1, C4, w3, C8 * 4, 0.0f, y2, C8 * 4);
	for (int y = 0; y < G2; y++)
		for (int x = 0; x < G2; x++) {
			const float *s = y2 + ((size_t)y * G2 + x) * C8 * 4;
			for (int kh = 0; kh < 2; kh++) {
				float *d = u2 + ((size_t)(2 * y + kh) * G4 + 2 * x) * C8;
				const float *sk = s + (size_t)kh * 2 * C8;
				for (int o = 0; o < C8; o++) {
					d[o] = sk[o] + m->up3_b[o];
					d[C8 + o] = sk[C8 + o] + m->up3_b[o];
				}
			}
		}
	be->gelu(be->ctx, u2, (size_t)G4 * G4 * C8);
	for (int i = 0; i < NM; i++)
		mlp3(m, m->hyper[i], 3, qry + (size_t)(1 + i) * C, hyper + (size_t)i * C8);
	be->gemm(be->ctx, 0, 1, NM, G4 * G4, C8, 1.0f, hyper, C8, u2, C8, 0.0f, lowres, G4 * G4);
heads:
	mlp3(m, m->iou_head, c->iou_depth, qry, iou);
	if (be->status && be->status(be->ctx)) {
		m->cache_emb = NULL;    /* the cached projections may be incomplete */
		return mp_preerr("mask decoder");
	}
	return 0;
}

/* ---------------------------------------------------------------- masks */
/* the mask a prompt keeps: 0 (single-mask output), or with multimask the
 * one of 1..nmask-1 of the highest predicted IoU (the first of equals) */
static int
pick_mask(const mp_sam *m, int multimask, const float *iou)
{
	int best = 0, NM = m->cfg.nmask;

	if (multimask && NM > 1) {
		best = 1;
		for (int q = 2; q < NM; q++)
			if (iou[q] > iou[best])
				best = q;
	}
	return best;
}

/* The CPU path of the upscaling for one mask: a row y of the image tokens
 * goes through both transposed convolutions (two GEMMs), the layer norm and
 * both GELUs in a tile that stays in the cache, and the hypernetwork's
 * vector makes its 4 rows of logits; neither upscaled map is stored whole. */
static size_t
up_tile_floats(const mp_sam *m)
{
	size_t G = (size_t)m->cfg.grid, C4 = (size_t)m->cfg.out_chans / 4, C8 = C4 / 2;

	return G * 4 * C4 + 4 * G * C4 + 4 * G * 4 * C8 + 16 * G * 4;
}

typedef struct {
	const mp_sam *m;
	const float *keys, *hyp;
	float *low;              /* (4 G)^2 logits */
	float *tile[64];         /* per thread: up_tile_floats */
} up_ctx;

static void
up_row(void *vc, size_t y, int tid)
{
	up_ctx *u = vc;
	const mp_sam *m = u->m;
	const mp_sam_backend *be = m->be;
	int C = m->cfg.out_chans, G = m->cfg.grid, C4 = C / 4, C8 = C / 8, G2 = 2 * G, G4 = 4 * G;
	float *Y1 = u->tile[tid], *U1 = Y1 + (size_t)G * 4 * C4, *Y2 = U1 + (size_t)2 * G2 * C4;
	float *Z = Y2 + (size_t)2 * G2 * 4 * C8;
	const float *w0 = dec_w0(m), *w3 = w0 + (size_t)C * C4 * 4;

	be->gemm(be->ctx, 0, 0, G, 4 * C4, C, 1.0f, u->keys + y * (size_t)G * C, C, w0, 4 * C4, 0.0f, Y1, 4 * C4);
	for (int x = 0; x < G; x++)
		for (int kh = 0; kh < 2; kh++) {
			float *d = U1 + ((size_t)kh * G2 + 2 * x) * C4;
			const float *s = Y1 + (size_t)x * 4 * C4 + (size_t)kh * 2 * C4;
			mp_sam_add(d, s, m->up0_b, (size_t)C4);
			mp_sam_add(d + C4, s + C4, m->up0_b, (size_t)C4);
		}
	mp_sam_cpu_ln1(U1, U1, (size_t)2 * G2, (size_t)C4, m->up1.w, m->up1.b, 1e-6f);
	mp_sam_cpu_gelu1(U1, (size_t)2 * G2 * C4);
	be->gemm(be->ctx, 0, 0, 2 * G2, 4 * C8, C4, 1.0f, U1, C4, w3, 4 * C8, 0.0f, Y2, 4 * C8);
	mp_sam_cpu_bias_gelu1(Y2, (size_t)2 * G2 * 4, (size_t)C8, m->up3_b);
	/* Y2 as (2 G2 * 4) rows of C8: pixel r * G2 + c of the 2 rows of the
	 * first map, sub-pixel 2 kh + kw */
	be->gemm(be->ctx, 0, 0, 2 * G2 * 4, 1, C8, 1.0f, Y2, C8, u->hyp, 1, 0.0f, Z, 1);
	for (int r = 0; r < 2; r++)
		for (int kh = 0; kh < 2; kh++) {
			float *o = u->low + ((size_t)4 * y + 2 * r + kh) * G4;
			const float *z = Z + ((size_t)r * G2 * 4 + 2 * kh);
			for (int c = 0; c < G2; c++) {
				o[2 * c] = z[4 * c];
				o[2 * c + 1] = z[4 * c + 1];
			}
		}
}

/* bytes of scratch of sam_post */
static size_t
post_floats(int S, int L, size_t rw, size_t rh, size_t nx, size_t ny)
{
	size_t W = (size_t)S > nx ? (size_t)S : nx, H = (size_t)S > ny ? (size_t)S : ny;

	return (size_t)L * L + rw * rh + 4 * (W + H) + 2 * W + 64;
}

static void
binarise(const float *v, size_t n, float thr, unsigned char *b)
{
	for (size_t i = 0; i < n; i++)
		b[i] = v[i] > thr;
}

/* binarise by blocks of 64 Ki values over the threads */
typedef struct {
	const float *v;
	unsigned char *b;
	size_t n;
	float thr;
} bin_ctx;

static void
bin_task(void *vc, size_t i, int tid)
{
	bin_ctx *c = vc;
	size_t o = i * 65536;

	(void)tid;
	binarise(c->v + o, c->n - o < 65536 ? c->n - o : 65536, c->thr, c->b + o);
}

/* worker state of mp_sam_decode_masks on the CPU */
typedef struct {
	mp_sam *m;
	const float *emb;
	const mp_sam_prompt *p;
	const mp_sam_masks *spec;
	float *const *planes;
	float *iou;
	size_t per;              /* m->wbuf: nw workspaces of per floats (one per */
	int nw;                  /* prompt decoded at once), then a tile of */
	size_t tile;             /* floats per thread (up_row) */
} dm_ctx;

static float *
dm_buf(const dm_ctx *d, int tid)
{
	return d->m->wbuf + (size_t)tid * d->per;
}

static float *
dm_tile(const dm_ctx *d, int tid)
{
	return d->m->wbuf + (size_t)d->nw * d->per + (size_t)tid * d->tile;
}

/* prompt i on thread tid: the transformer, the IoU head, the kept mask's
 * hypernetwork and upscaling (threads: over rows when one prompt), and the
 * postprocessing */
static void
dm_one(dm_ctx *d, size_t i, int tid, int rowpar)
{
	const mp_sam *m = d->m;
	const mp_sam_config *c = &m->cfg;
	int C = c->out_chans, L = 4 * c->grid;
	float *b = dm_buf(d, tid), iou[16], hyp[128];
	dec_ws w;
	up_ctx u;

	dec_ws_set(m, b, &w);
	dec_tokens(m, &d->p[i], &w, rowpar && mp_sam_threads() > 1);
	mlp3(m, m->iou_head, c->iou_depth, w.qry, iou);
	int k = pick_mask(m, d->spec->multimask, iou);
	d->iou[i] = iou[k];
	mlp3(m, m->hyper[k], 3, w.qry + (size_t)(1 + k) * C, hyp);
	memset(&u, 0, sizeof u);
	u.m = m;
	u.keys = w.keys;
	u.hyp = hyp;
	u.low = b + dec_ws_floats(m);
	float *post = u.low + (size_t)L * L;
	if (rowpar) {
		for (int t = 0; t < mp_sam_threads() && t < 64; t++)
			u.tile[t] = dm_tile(d, t);
		mp_sam_cpu_parfor((size_t)c->grid, up_row, &u);
	} else {
		u.tile[tid] = dm_tile(d, tid);
		for (size_t y = 0; y < (size_t)c->grid; y++)
			up_row(&u, y, tid);
	}
	const mp_sam_masks *s = d->spec;
	float *dst = s->bin ? post + post_floats(c->img_size, L, s->rw, s->rh, s->nx, s->ny) : d->planes[i];
	mp_sam_post(s->mode, s->prob, c->img_size, u.low, L, s->rw, s->rh, s->nx, s->ny, dst, post);
	if (s->bin && rowpar) {
		bin_ctx bc = { dst, s->bin[i], s->nx * s->ny, s->thr };
		mp_sam_cpu_parfor((bc.n + 65535) / 65536, bin_task, &bc);
	} else if (s->bin)
		binarise(dst, s->nx * s->ny, s->thr, s->bin[i]);
}

static void
dm_task(void *vc, size_t i, int tid)
{
	dm_one(vc, i, tid, 0);
}

int
mp_sam_decode_masks(mp_sam *m, const float *emb, size_t n, const mp_sam_prompt *p, const mp_sam_masks *s,
                    float *const *planes, float *iou)
{
	const mp_sam_config *c = &m->cfg;
	int S = c->img_size, L = 4 * c->grid, NM = c->nmask;

	for (size_t i = 0; i < n; i++)
		if (dec_check(m, &p[i]))
			return -1;
	if (n == 0)
		return 0;
	if (!mp_sam_is_cpu(m->be) || c->out_chans / 8 > 128) {
		/* any backend: every mask, then the kept one postprocessed */
		size_t pf = post_floats(S, L, s->rw, s->rh, s->nx, s->ny);
		float *low = tryalloc((size_t)NM * L * L + pf + (s->bin ? s->nx * s->ny : 0), sizeof(float));
		float io[16];
		if (!low)
			return mp_seterr("mask decoder: out of memory");
		for (size_t i = 0; i < n; i++) {
			if (mp_sam_decode(m, emb, &p[i], low, io)) {
				free(low);
				return -1;
			}
			int k = pick_mask(m, s->multimask, io);
			iou[i] = io[k];
			float *dst = s->bin ? low + (size_t)NM * L * L + pf : planes[i];
			mp_sam_post(s->mode, s->prob, S, low + (size_t)k * L * L, L, s->rw, s->rh, s->nx, s->ny, dst,
			            low + (size_t)NM * L * L);
			if (s->bin)
				binarise(dst, s->nx * s->ny, s->thr, s->bin[i]);
		}
		free(low);
		return 0;
	}
	int nt = mp_sam_threads() < 64 ? mp_sam_threads() : 64;
	int nw = (size_t)nt < n ? nt : (int)n;   /* prompts at once */
	size_t tile = up_tile_floats(m), pf = post_floats(S, L, s->rw, s->rh, s->nx, s->ny);
	if (s->bin)
		pf += s->nx * s->ny;
	size_t per = dec_ws_floats(m) + (size_t)L * L + pf, need = per * (size_t)nw + tile * (size_t)nt;
	if (!m->wbuf || m->wbuf_n < need) {
		free(m->wbuf);
		m->wbuf_n = 0;
		m->wbuf = tryalloc(need, sizeof(float));
		if (!m->wbuf)
			return mp_seterr("mask decoder: out of memory");
		m->wbuf_n = need;
	}
	/* the products run on this code's threads, each BLAS call on one: the
	 * BLAS's own threads would spin between its calls, taking the cores */
	mp_sam_cpu_blas_one(1);
	/* the projections when they serve several prompts: of this call, or of
	 * calls again on the same embedding (one prompt at a time) */
	if (dec_prepare(m, emb, n > 1 || !dec_fold(m, &p[0]) || m->cache_emb == emb)) {
		mp_sam_cpu_blas_one(0);
		return -1;
	}
	dm_ctx d = { m, emb, p, s, planes, iou, per, nw, tile };
	if (n == 1 || nt == 1)
		for (size_t i = 0; i < n; i++)
			dm_one(&d, i, 0, 1);
	else
		mp_sam_cpu_parfor(n, dm_task, &d);
	mp_sam_cpu_blas_one(0);
	return 0;
}
