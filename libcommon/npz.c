/* npz.c - numpy .npy headers and arrays into .npy files and .npz archives.
 *
 * The .npy format: "\x93NUMPY", version (1.0; 2.0 when the header passes
 * 65535 bytes), the header length, then a Python dict literal
 * {'descr': '<i2', 'fortran_order': False, 'shape': (Z, Y, X), } padded with
 * spaces and a newline so that the data starts at a multiple of 64 bytes,
 * then the array in C order, little endian. A .npz is a zip of NAME.npy
 * entries (zipwrite.c).
 */
#include "mp_label.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *
descr(mp_type t)
{
	switch (t) {
	case MP_INT8: return "|i1";
	case MP_UINT8: return "|u1";
	case MP_INT16: return "<i2";
	case MP_UINT16: return "<u2";
	case MP_INT32: return "<i4";
	case MP_UINT32: return "<u4";
	case MP_INT64: return "<i8";
	case MP_UINT64: return "<u8";
	case MP_FLOAT32: return "<f4";
	case MP_FLOAT64: return "<f8";
	default: return NULL;
	}
}

char *
mp_npy_header(mp_type t, int nd, const size_t *shp, size_t *len)
{
	const char *d = descr(t);
	size_t cap = 128 + 24 * (size_t)(nd > 0 ? nd : 0), n, total, hl;
	char *dict, *out;
	int v2;

	if (!d) {
		mp_seterr("npy: no numpy type for %s", mp_type_name(t));
		return NULL;
	}
	dict = mp_xmalloc(cap);
	n = (size_t)snprintf(dict, cap, "{'descr': '%s', 'fortran_order': False, 'shape': (", d);
	for (int i = 0; i < nd; i++)
		n += (size_t)snprintf(dict + n, cap - n, "%s%zu", i ? ", " : "", shp[i]);
	n += (size_t)snprintf(dict + n, cap - n, "%s), }", nd == 1 ? "," : "");
	/* magic(6) version(2) length(2 or 4) dict padding '\n' */
	v2 = (10 + n + 1 + 63) / 64 * 64 - 10 > 65535;
	hl = v2 ? 12 : 10;
	total = (hl + n + 1 + 63) / 64 * 64;
	out = mp_xmalloc(total);
	memcpy(out, "\x93NUMPY", 6);
	out[6] = v2 ? 2 : 1;
	out[7] = 0;
	if (v2) {
		uint32_t l = (uint32_t)(total - 12);
		for (int i = 0; i < 4; i++)
			out[8 + i] = (char)(l >> (8 * i));
	} else {
		size_t l = total - 10;
		out[8] = (char)(l & 0xFF);
		out[9] = (char)(l >> 8);
	}
	memcpy(out + hl, dict, n);
	memset(out + hl + n, ' ', total - hl - n - 1);
	out[total - 1] = '\n';
	free(dict);
	*len = total;
	return out;
}

/* write n bytes of elements of es bytes little endian through fn */
static int
put_le(int (*fn)(void *ctx, const void *buf, size_t n), void *ctx, const void *data, size_t nbytes, size_t es)
{
	const unsigned char *p = data;

	if (!mp_host_big() || es == 1)
		return fn(ctx, data, nbytes);
	unsigned char *tmp = mp_xmalloc(1u << 20);
	size_t step = (1u << 20) / es * es;
	for (size_t done = 0; done < nbytes;) {
		size_t k = nbytes - done < step ? nbytes - done : step;
		memcpy(tmp, p + done, k);
		mp_swap_bytes(tmp, es, k / es);
		if (fn(ctx, tmp, k) < 0) {
			free(tmp);
			return -1;
		}
		done += k;
	}
	free(tmp);
	return 0;
}

static int
zip_fn(void *ctx, const void *buf, size_t n)
{
	return mp_zip_write(ctx, buf, n);
}

typedef struct {
	FILE *fp;
} fctx;

static int
file_fn(void *ctx, const void *buf, size_t n)
{
	fctx *c = ctx;

	if (n && fwrite(buf, 1, n, c->fp) != n)
		return mp_seterr("npy: write error: %s", strerror(errno));
	return 0;
}

static int
nbytes_of(mp_type t, int nd, const size_t *shp, size_t *nb)
{
	size_t n = mp_type_size(t);

	for (int i = 0; i < nd; i++)
		if (mp_mulsize(n, shp[i], &n) < 0)
			return -1;
	*nb = n;
	return 0;
}

int
mp_npz_add(mp_zip *z, const char *name, mp_type t, int nd, const size_t *shp, const void *data)
{
	size_t hl, nb;
	char *h = mp_npy_header(t, nd, shp, &hl), *entry;
	int r;

	if (!h)
		return -1;
	if (nbytes_of(t, nd, shp, &nb) < 0) {
		free(h);
		return -1;
	}
	entry = mp_xmalloc(strlen(name) + 5);
	sprintf(entry, "%s.npy", name);
	r = mp_zip_begin(z, entry, (int64_t)(hl + nb));
	if (r == 0)
		r = mp_zip_write(z, h, hl);
	if (r == 0)
		r = put_le(zip_fn, z, data, nb, mp_type_size(t));
	if (r == 0)
		r = mp_zip_end(z);
	free(entry);
	free(h);
	return r;
}

int
mp_npy_write(FILE *fp, mp_type t, int nd, const size_t *shp, const void *data)
{
	size_t hl, nb;
	char *h = mp_npy_header(t, nd, shp, &hl);
	fctx c = { fp };
	int r;

	if (!h)
		return -1;
	if (nbytes_of(t, nd, shp, &nb) < 0) {
		free(h);
		return -1;
	}
	r = file_fn(&c, h, hl);
	if (r == 0)
		r = put_le(file_fn, &c, data, nb, mp_type_size(t));
	free(h);
	return r;
}
