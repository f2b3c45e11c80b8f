/* sam_train_full.c - sam-tune's --mode full (every image-encoder tensor
 * trained, MedSAM's recipe) and --mode adapter (Medical-SAM-Adapter's
 * bottleneck adapters): their tensors in the parameter buffer
 * (mp_train_peft.h). The forward and backward passes are those of
 * sam_train_lora.c. */
#include "mp_train_peft.h"
#include "mp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int mp_tune_rebind(mp_sam_tune *t);
void mp_tune_full_unbind(mp_sam_tune *t);

/* append k tensors (names, sizes) to the buffers, zero; returns the index of the first */
static size_t
append(mp_sam_tune *t, size_t k, char **names, const size_t *n, int owned)
{
	size_t np0 = t->np, i0 = t->nt;
	t->t = mp_xrealloc(t->t, (t->nt + k + 1) * sizeof *t->t);
	for (size_t i = 0; i < k; i++) {
		mp_tr_tensor *d = &t->t[t->nt++];
		memset(d, 0, sizeof *d);
		d->name = names[i];
		d->off = t->np;
		d->n = n[i];
		d->train = 1;
		d->owned = owned;
		t->np += (n[i] + 15) & ~(size_t)15;
	}
	float **bufs[4] = { &t->p, &t->g, &t->m1, &t->m2 };
	for (int b = 0; b < 4; b++) {
		*bufs[b] = mp_xrealloc(*bufs[b], t->np * sizeof(float));
		memset(*bufs[b] + np0, 0, (t->np - np0) * sizeof(float));
	}
	return i0;
}

/* every view of the ViT encoder's tensors in the model */
static size_t
slots(mp_sam *m, const float ***s)
{
	size_t n = 0;
	s[n++] = &m->patch_w, s[n++] = &m->patch_b, s[n++] = &m->pos;
	s[n++] = &m->neck0, s[n++] = &m->neck2;
	s[n++] = &m->neck1.w, s[n++] = &m->neck1.b, s[n++] = &m->neck3.w, s[n++] = &m->neck3.b;
	for (int i = 0; i < m->cfg.depth; i++) {
		mp_sam_block *b = &m->blk[i];
		s[n++] = &b->n1.w, s[n++] = &b->n1.b, s[n++] = &b->n2.w, s[n++] = &b->n2.b;
		s[n++] = &b->qkv.w, s[n++] = &b->qkv.b, s[n++] = &b->proj.w, s[n++] = &b->proj.b;
		s[n++] = &b->lin1.w, s[n++] = &b->lin1.b, s[n++] = &b->lin2.w, s[n++] = &b->lin2.b;
		s[n++] = &b->rph, s[n++] = &b->rpw;
	}
	return n;
}

/* point the model's encoder views at the trained copies (to 1) or back at
 * the checkpoint's tensors (to 0) */
static void
bind(mp_sam_tune *t, int to)
{
	if (t->m->tv)   /* TinyViT: sam_train_tinyvit.c points the model at the trained tensors */
		return;
	const float **s[9 + 14 * MP_SAM_MAXDEPTH];
	size_t ns = slots(t->m, s);
	for (size_t i = 0; i < t->nt; i++) {
		if (strncmp(t->t[i].name, "image_encoder.", 14) != 0 || t->t[i].owned)
			continue;
		const mp_tensor *x = mp_tl_find(&t->m->td, t->t[i].name);
		if (!x || !x->data)
			continue;
		const float *a = to ? x->data : t->p + t->t[i].off, *b = to ? t->p + t->t[i].off : x->data;
		for (size_t k = 0; k < ns; k++)
			if (*s[k] == a)
				*s[k] = b;
	}
}

void
mp_tune_full_unbind(mp_sam_tune *t)
{
	bind(t, 0);
}

int
mp_tune_add_full(mp_sam_tune *t)
{
	const mp_sam *m = t->m;
	if (t->lora_rank || t->adapter || t->full)
		return mp_seterr("--mode full: the encoder already has LoRA or adapters");
	size_t k = 0;
	char **names = mp_xcalloc(m->td.n + 1, sizeof *names);
	size_t *n = mp_xcalloc(m->td.n + 1, sizeof *n);
	for (size_t i = 0; i < m->td.n; i++) {
		const mp_tensor *x = &m->td.t[i];
		if (strncmp(x->name, "image_encoder.", 14) != 0)
			continue;
		/* TinyViT: batch norms' running statistics and num_batches_tracked
		 * are frozen buffers (eval mode), MobileSAM's classifier head unused */
		if (m->tv && ((!x->data && x->idata) || strstr(x->name, ".running_mean") || strstr(x->name, ".running_var") ||
		              strncmp(x->name, "image_encoder.head.", 19) == 0 ||
		              strncmp(x->name, "image_encoder.norm_head.", 24) == 0))
			continue;
		if (!x->data) {
			free(names), free(n);
			return mp_seterr("tensor %s is not floating point", x->name);
		}
		names[k] = (char *)x->name;
		n[k++] = x->n;
	}
	size_t i0 = append(t, k, names, n, 0);
	for (size_t i = i0; i < t->nt; i++)
		memcpy(t->p + t->t[i].off, mp_tl_find(&m->td, t->t[i].name)->data, t->t[i].n * sizeof(float));
	free(names), free(n);
	t->full = 1;
	bind(t, 1);
	return mp_tune_rebind(t);
}

static const char *adnames[8] = { "Space_Adapter.D_fc1.weight", "Space_Adapter.D_fc1.bias",
	                              "Space_Adapter.D_fc2.weight", "Space_Adapter.D_fc2.bias",
	                              "MLP_Adapter.D_fc1.weight",   "MLP_Adapter.D_fc1.bias",
	                              "MLP_Adapter.D_fc2.weight",   "MLP_Adapter.D_fc2.bias" };

int
mp_tune_add_adapter(mp_sam_tune *t, uint64_t seed)
{
	const mp_sam_config *c = &t->m->cfg;
	if (t->m->tv)
		return mp_seterr("--mode adapter is written for the ViT image encoder only (not TinyViT)");
	if (t->lora_rank || t->adapter || t->full)
		return mp_seterr("--mode adapter: the encoder already has LoRA or adapters");
	int E = c->embed, H = E / 4;
	if (H < 1)
		return mp_seterr("encoder width %d: too narrow for adapters", E);
	size_t k = (size_t)8 * c->depth, n[8 * MP_SAM_MAXDEPTH];
	char *names[8 * MP_SAM_MAXDEPTH], nm[200];
	for (int b = 0; b < c->depth; b++)
		for (int j = 0; j < 8; j++) {
			snprintf(nm, sizeof nm, "image_encoder.blocks.%d.%s", b, adnames[j]);
			names[b * 8 + j] = mp_xstrdup(nm);
			size_t sz[4] = { (size_t)H * E, (size_t)H, (size_t)E * H, (size_t)E };
			n[b * 8 + j] = sz[j % 4];
		}
	size_t i0 = append(t, k, names, n, 1);
	/* nn.Linear's initialisation: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
	uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 777;
	for (size_t i = i0; i < t->nt; i++) {
		int fan = strstr(t->t[i].name, "D_fc1") ? E : H;
		for (size_t j = 0; j < t->t[i].n; j++) {
			s ^= s << 13, s ^= s >> 7, s ^= s << 17;
			double u = (double)(s >> 11) / 9007199254740992.0;
			t->p[t->t[i].off + j] = (float)((2 * u - 1) / sqrt((double)fan));
		}
	}
	t->adapter = H;
	return mp_tune_rebind(t);
}

int
mp_tune_save_adapters(const mp_sam_tune *t, const char *dir)
{
	const mp_sam_config *c = &t->m->cfg;
	if (!t->adapter)
		return mp_seterr("%s: no adapters (--mode adapter)", dir);
	if (mp_tune_outdir(dir))
		return -1;
	size_t k = 0, cap = (size_t)8 * c->depth;
	const char **names = mp_xcalloc(cap, sizeof *names);
	int *nd = mp_xcalloc(cap, sizeof *nd);
	int64_t (*shp)[2] = mp_xcalloc(cap, sizeof *shp);
	const int64_t **sh = mp_xcalloc(cap, sizeof *sh);
	const float **data = mp_xcalloc(cap, sizeof *data);
	for (size_t i = 0; i < t->nt; i++)
		if (strstr(t->t[i].name, "_Adapter.D_fc") && k < cap) {
			const char *nm = t->t[i].name;
			int w = strstr(nm, ".weight") != NULL, fc1 = strstr(nm, "D_fc1") != NULL;
			names[k] = nm;
			nd[k] = w ? 2 : 1;
			shp[k][0] = fc1 ? t->adapter : c->embed;
			shp[k][1] = fc1 ? c->embed : t->adapter;
			sh[k] = shp[k];
			data[k] = t->p + t->t[i].off;
			k++;
		}
	static const char *meta[] = { "format", "pt", MP_CKPT_ADAPTER, "Medical-SAM-Adapter (mlp_ratio 0.25, scale 0.5)",
		                          NULL, NULL };
	char *path = mp_xmalloc(strlen(dir) + 40);
	sprintf(path, "%s/adapter_model.safetensors", dir);
	int rc = mp_safetensors_save(path, k, names, nd, sh, data, meta);
	free(path), free(names), free(nd), free(shp), free(sh), free(data);
	return rc;
}
