/* sam_train_peft.c - sam-tune's LoRA as a Hugging Face PEFT adapter
 * (mp_train_peft.h). */
#include "mp_train_peft.h"
#include "sam_tvit.h"
#include "mp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const float *
find(const mp_sam_tune *t, const char *name)
{
	return mp_tune_tensor(t, t->p, "%s", name);
}

/* a folder for outputs: made when missing, else it must be a folder */


int
mp_tune_outdir(const char *dir)
{
	struct stat st;
	if (mkdir(dir, 0777) != 0 && errno != EEXIST)
		return mp_seterr("%s: cannot make the folder: %s", dir, strerror(errno));
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return mp_seterr("%s: not a folder", dir);
	return 0;
}

int
mp_tune_save_peft(const mp_sam_tune *t, const char *dir)
{
	const mp_sam_config *c = &t->m->cfg;
	int r = t->lora_rank, E = c->embed, D = c->depth;
	if (!r)
		return mp_seterr("%s: a PEFT adapter needs LoRA (--mode lora)", dir);
	if (mp_tune_outdir(dir))
		return -1;
	size_t cap = (size_t)2 * D + t->nt + 1, n = 0;
	char **names = mp_xcalloc(cap, sizeof *names);
	int *nd = mp_xcalloc(cap, sizeof *nd);
	int64_t (*shp)[4] = mp_xcalloc(cap, sizeof *shp);
	const int64_t **sh = mp_xcalloc(cap, sizeof *sh);
	const float **data = mp_xcalloc(cap, sizeof *data);
	float **own = mp_xcalloc(cap, sizeof *own);
	size_t nown = 0;
	int rc = -1;
	char nm[256], *path = NULL;

	int nb = D, *st = mp_xcalloc((size_t)D + 1, sizeof *st), *bk = mp_xcalloc((size_t)D + 1, sizeof *bk);
	int *wd = mp_xcalloc((size_t)D + 1, sizeof *wd);
	if (t->m->tv)
		nb = mp_tune_tvit_blocks(t->m, st, bk, wd, D);
	else
		for (int b = 0; b < D; b++)
			bk[b] = b, wd[b] = E;
	for (int b = 0; b < nb; b++) {
		const float *m[4];
		static const char *suf[4] = { "lora_A_q", "lora_B_q", "lora_A_v", "lora_B_v" };
		char pre[128];
		if (t->m->tv)
			snprintf(pre, sizeof pre, "image_encoder.layers.%d.blocks.%d.attn.qkv", st[b], bk[b]);
		else
			snprintf(pre, sizeof pre, "image_encoder.blocks.%d.attn.qkv", b);
		for (int k = 0; k < 4; k++) {
			snprintf(nm, sizeof nm, "%s.%s", pre, suf[k]);
			if (!(m[k] = find(t, nm))) {
				mp_seterr("%s: LoRA tensor %s missing", dir, nm);
				goto out;
			}
		}
		int W = wd[b];
		/* TinyViT's fused qkv is per head [q k v] (kd rows each); ViT's [q | k | v] */
		int kd = t->m->tv ? W / t->m->tv->st[st[b]].heads : W;
		/* lora_A: [A_q; A_v] (2r x W) */
		float *A = own[nown++] = mp_xcalloc((size_t)2 * r * W, sizeof(float));
		memcpy(A, m[0], (size_t)r * W * sizeof(float));
		memcpy(A + (size_t)r * W, m[2], (size_t)r * W * sizeof(float));
		/* lora_B: 3W x 2r, q rows take B_q in columns 0..r-1, v rows B_v in r..2r-1 */
		float *Bm = own[nown++] = mp_xcalloc((size_t)3 * W * 2 * r, sizeof(float));
		for (int i = 0; i < W; i++) {
			size_t qr = (size_t)(i / kd) * 3 * kd + (size_t)(i % kd), vr = qr + 2 * (size_t)kd;
			for (int j = 0; j < r; j++) {
				Bm[qr * 2 * r + j] = m[1][(size_t)i * r + j];
				Bm[vr * 2 * r + r + j] = m[3][(size_t)i * r + j];
			}
		}
		for (int k = 0; k < 2; k++) {
			snprintf(nm, sizeof nm, "base_model.model.%s.lora_%c.weight", pre, k ? 'B' : 'A');
			names[n] = mp_xstrdup(nm);
			nd[n] = 2;
			shp[n][0] = k ? 3 * W : 2 * r;
			shp[n][1] = k ? 2 * r : W;
			sh[n] = shp[n];
			data[n] = k ? Bm : A;
			n++;
		}
	}
	/* the mask decoder (modules_to_save), every tensor in checkpoint order */
	for (size_t i = 0; i < t->m->td.n; i++) {
		const mp_tensor *x = &t->m->td.t[i];
		if (strncmp(x->name, "mask_decoder.", 13) != 0)
			continue;
		const float *d = find(t, x->name);
		if (!d) {
			mp_seterr("%s: %s is not among the trained tensors", dir, x->name);
			goto out;
		}
		snprintf(nm, sizeof nm, "base_model.model.%s", x->name);
		names[n] = mp_xstrdup(nm);
		nd[n] = x->ndim;
		sh[n] = x->shape;
		data[n] = d;
		n++;
	}
	static const char *meta[] = { "format", "pt", NULL, NULL };
	path = mp_xmalloc(strlen(dir) + 40);
	sprintf(path, "%s/adapter_model.safetensors", dir);
	if (mp_safetensors_save(path, n, (const char *const *)names, nd, sh, data, meta))
		goto out;
	sprintf(path, "%s/adapter_config.json", dir);
	mp_afile *a = mp_afile_open(path);
	if (!a)
		goto rm;
	/* LoraConfig's fields as PEFT's save_pretrained writes them */
	fprintf(a->fp,
	        "{\n  \"alpha_pattern\": {},\n  \"auto_mapping\": null,\n  \"base_model_name_or_path\": null,\n"
	        "  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n  \"inference_mode\": true,\n"
	        "  \"init_lora_weights\": true,\n  \"layer_replication\": null,\n  \"layers_pattern\": null,\n"
	        "  \"layers_to_transform\": null,\n  \"loftq_config\": {},\n  \"lora_alpha\": %.17g,\n"
	        "  \"lora_dropout\": 0.0,\n  \"megatron_config\": null,\n  \"megatron_core\": \"megatron.core\",\n"
	        "  \"modules_to_save\": [\n    \"mask_decoder\"\n  ],\n  \"peft_type\": \"LORA\",\n  \"r\": %d,\n"
	        "  \"rank_pattern\": {},\n  \"revision\": null,\n  \"target_modules\": [\n    \"qkv\"\n  ],\n"
	        "  \"task_type\": null,\n  \"use_dora\": false,\n  \"use_rslora\": false\n}\n",
	        2.0 * t->lora_scale * r, 2 * r);
	if (mp_afile_commit(a) == 0) {
		rc = 0;
		goto out;
	}
rm:
	sprintf(path, "%s/adapter_model.safetensors", dir);
	unlink(path);
out:
	free(path);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	for (size_t i = 0; i < nown; i++)
		free(own[i]);
	free(names), free(nd), free(shp), free(sh), free(data), free(own);
	free(st), free(bk), free(wd);
	return rc;
}
