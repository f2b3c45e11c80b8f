/* fz_adapter.c - sam-embed/sam-decode --adapter DIR (sam_adapter.c): the
 * input up to its first NUL is DIR/adapter_config.json, the rest
 * DIR/adapter_model.safetensors (no NUL: no config, Medical-SAM-Adapter's
 * kind), applied to a small dictionary of base tensors */
#include "fuzz.h"
#include "mp_sam.h"

static void
add(mp_tdict *d, const char *name, int ndim, int64_t a, int64_t b)
{
	mp_tensor *t = &d->t[d->n++];
	memset(t, 0, sizeof *t);
	t->name = mp_xstrdup(name);
	t->ndim = ndim;
	t->shape[0] = a;
	t->shape[1] = b;
	t->n = (size_t)(ndim == 2 ? a * b : a);
	t->dtype = MP_TL_F32;
	t->data = mp_xcalloc(t->n, sizeof(float));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mp_tdict td;
	char note[200];
	const uint8_t *z = memchr(data, 0, size);

	if (z) {
		fz_file("adapter_config.json", data, (size_t)(z - data));
		fz_file("adapter_model.safetensors", z + 1, size - (size_t)(z - data) - 1);
	} else {
		fz_unlink("adapter_config.json");
		fz_file("adapter_model.safetensors", data, size);
	}
	memset(&td, 0, sizeof td);
	td.t = mp_xcalloc(4, sizeof *td.t);
	add(&td, "image_encoder.blocks.0.attn.qkv.weight", 2, 6, 4);
	add(&td, "image_encoder.blocks.0.norm1.weight", 1, 4, 0);
	add(&td, "mask_decoder.a.weight", 2, 2, 2);
	snprintf(td.id, sizeof td.id, "00000000");
	mp_sam_adapter_apply(&td, fz_dir, note, sizeof note);
	mp_tl_free(&td);
	return 0;
}
