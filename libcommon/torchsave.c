/* torchsave.c - a small, safe writer of PyTorch checkpoints (torch.save's
 * zip format) holding an OrderedDict of float32 (and int64) tensors (see mp_train.h).
 *
 * The archive is what torch.save writes: ARCHIVE/data.pkl (a pickle,
 * protocol 2), ARCHIVE/byteorder, ARCHIVE/data/K (the raw little-endian
 * storage of tensor K), ARCHIVE/version; every entry stored. The pickle uses
 * the opcodes PROTO, GLOBAL, EMPTY_TUPLE, MARK, TUPLE, REDUCE, BINUNICODE,
 * BININT, LONG1, NEWFALSE, BINPERSID, SETITEMS, STOP and only the globals
 * collections.OrderedDict, torch._utils._rebuild_tensor_v2 and
 * torch.FloatStorage (torch.LongStorage for int64 tensors), all of which
 * torch.load(weights_only=True) accepts. */
#include "mp_train.h"
#include "mp_label.h"
#include "mp.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
	unsigned char *b;
	size_t n, cap;
} buf;

static void
put(buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 256;
		b->b = mp_xrealloc(b->b, b->cap);
	}
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void
op(buf *b, char c)
{
	put(b, &c, 1);
}

static void
str(buf *b, const char *s)
{
	size_t n = strlen(s);
	unsigned char h[5] = { 'X', (unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16),
	                       (unsigned char)(n >> 24) };
	put(b, h, 5);
	put(b, s, n);
}

static void
integer(buf *b, int64_t v)
{
	if (v >= -2147483647LL - 1 && v <= 2147483647LL) {
		uint32_t u = (uint32_t)(int32_t)v;
		unsigned char h[5] = { 'J', (unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
		                       (unsigned char)(u >> 24) };
		put(b, h, 5);
	} else {
		/* LONG1: 8 bytes, little-endian two's complement */
		unsigned char h[10] = { 0x8a, 8 };
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)v >> (8 * i));
		put(b, h, 10);
	}
}

static void
global(buf *b, const char *mod, const char *name)
{
	op(b, 'c');
	put(b, mod, strlen(mod));
	op(b, '\n');
	put(b, name, strlen(name));
	op(b, '\n');
}

static void
ordered_dict(buf *b)
{
	global(b, "collections", "OrderedDict");
	op(b, ')');
	op(b, 'R');
}

int
mp_torch_save(const char *path, size_t n, const char *const *names, const int *ndim, const int64_t *const *shapes,
              const float *const *data)
{
	return mp_torch_save_mixed(path, n, names, ndim, shapes, data, NULL);
}

int
mp_torch_save_mixed(const char *path, size_t n, const char *const *names, const int *ndim,
                    const int64_t *const *shapes, const float *const *data, const int64_t *const *idata)
{
	buf pk = { 0 };
	char key[32], entry[64];
	mp_afile *a;
	mp_zip *z;
	uint32_t one = 1;

	memcpy(key, &one, 1);
	if (key[0] != 1)
		return mp_seterr("%s: torch checkpoints are written on little-endian machines only", path);
	op(&pk, (char)0x80);
	op(&pk, 2);
	ordered_dict(&pk);
	op(&pk, '(');
	for (size_t i = 0; i < n; i++) {
		int64_t numel = 1, stride[MP_TL_MAXDIM];
		if (ndim[i] < 0 || ndim[i] > MP_TL_MAXDIM) {
			free(pk.b);
			return mp_seterr("%s: tensor %s: %d dimensions", path, names[i], ndim[i]);
		}
		for (int d = ndim[i] - 1; d >= 0; d--) {
			stride[d] = numel;
			numel *= shapes[i][d];
		}
		str(&pk, names[i]);
		global(&pk, "torch._utils", "_rebuild_tensor_v2");
		op(&pk, '(');
		/* persistent id: ('storage', FloatStorage or LongStorage, key, 'cpu', numel) */
		op(&pk, '(');
		str(&pk, "storage");
		global(&pk, "torch", idata && idata[i] ? "LongStorage" : "FloatStorage");
		snprintf(key, sizeof key, "%zu", i);
		str(&pk, key);
		str(&pk, "cpu");
		integer(&pk, numel);
		op(&pk, 't');
		op(&pk, 'Q');
		integer(&pk, 0);                 /* storage offset */
		op(&pk, '(');
		for (int d = 0; d < ndim[i]; d++)
			integer(&pk, shapes[i][d]);
		op(&pk, 't');
		op(&pk, '(');
		for (int d = 0; d < ndim[i]; d++)
			integer(&pk, stride[d]);
		op(&pk, 't');
		op(&pk, (char)0x89);              /* requires_grad False */
		ordered_dict(&pk);               /* backward hooks */
		op(&pk, 't');
		op(&pk, 'R');
	}
	op(&pk, 'u');
	op(&pk, '.');

	if (!(a = mp_afile_open(path))) {
		free(pk.b);
		return -1;
	}
	z = mp_zip_open(a->fp, path, 0);
	int bad = mp_zip_begin(z, "archive/data.pkl", (int64_t)pk.n) || mp_zip_write(z, pk.b, pk.n) || mp_zip_end(z) ||
	          mp_zip_begin(z, "archive/byteorder", 6) || mp_zip_write(z, "little", 6) || mp_zip_end(z);
	for (size_t i = 0; i < n && !bad; i++) {
		int64_t numel = 1;
		for (int d = 0; d < ndim[i]; d++)
			numel *= shapes[i][d];
		snprintf(entry, sizeof entry, "archive/data/%zu", i);
		int es = idata && idata[i] ? 8 : 4;
		const void *src = idata && idata[i] ? (const void *)idata[i] : (const void *)data[i];
		bad = mp_zip_begin(z, entry, numel * es) || mp_zip_write(z, src, (size_t)numel * es) || mp_zip_end(z);
	}
	if (!bad)
		bad = mp_zip_begin(z, "archive/version", 2) || mp_zip_write(z, "3\n", 2) || mp_zip_end(z);
	free(pk.b);
	if (bad) {
		mp_zip_abort(z);
		mp_afile_abort(a);
		return -1;
	}
	if (mp_zip_close(z)) {
		mp_afile_abort(a);
		return -1;
	}
	return mp_afile_commit(a);
}
