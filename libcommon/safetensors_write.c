/* safetensors_write.c - a .safetensors writer for float32 tensors (see
 * mp_train_peft.h): 8 bytes little-endian header length, the JSON header
 * {"__metadata__": {...}, "NAME": {"dtype": "F32", "shape": [...],
 * "data_offsets": [begin, end]}, ...} padded with spaces to a multiple of 8,
 * then the tensors' bytes back to back in the header's order. */
#include "mp_train_peft.h"
#include "mp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char *b; size_t n, cap; } sbuf;

static void
put(sbuf *s, const char *p, size_t n)
{
	if (s->n + n + 1 > s->cap) {
		s->cap = (s->n + n + 1) * 2 + 256;
		s->b = mp_xrealloc(s->b, s->cap);
	}
	memcpy(s->b + s->n, p, n);
	s->n += n;
	s->b[s->n] = 0;
}

static void
putf(sbuf *s, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	put(s, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* a JSON string; names are ASCII tensor names, escaped all the same */
static void
jstr(sbuf *s, const char *v)
{
	put(s, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '"' || *p == '\\') {
			put(s, "\\", 1);
			put(s, (const char *)p, 1);
		} else if (*p < 0x20)
			putf(s, "\\u%04x", *p);
		else
			put(s, (const char *)p, 1);
	}
	put(s, "\"", 1);
}

int
mp_safetensors_save(const char *path, size_t n, const char *const *names, const int *ndim,
                    const int64_t *const *shapes, const float *const *data, const char *const *meta)
{
	sbuf h = { 0 };
	uint64_t off = 0;
	uint32_t one = 1;
	unsigned char le;

	memcpy(&le, &one, 1);
	if (le != 1)
		return mp_seterr("%s: safetensors files are written on little-endian machines only", path);
	put(&h, "{", 1);
	if (meta && meta[0]) {
		put(&h, "\"__metadata__\":{", 16);
		for (size_t i = 0; meta[i] && meta[i + 1]; i += 2) {
			if (i)
				put(&h, ",", 1);
			jstr(&h, meta[i]);
			put(&h, ":", 1);
			jstr(&h, meta[i + 1]);
		}
		put(&h, "}", 1);
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t numel = 1;
		if (ndim[i] < 0 || ndim[i] > 8) {
			free(h.b);
			return mp_seterr("%s: tensor %s: %d dimensions", path, names[i], ndim[i]);
		}
		if (h.n > 1)
			put(&h, ",", 1);
		jstr(&h, names[i]);
		put(&h, ":{\"dtype\":\"F32\",\"shape\":[", 25);
		for (int d = 0; d < ndim[i]; d++) {
			putf(&h, d ? ",%lld" : "%lld", (long long)shapes[i][d]);
			numel *= (uint64_t)shapes[i][d];
		}
		putf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
		     (unsigned long long)(off + 4 * numel));
		off += 4 * numel;
	}
	put(&h, "}", 1);
	while (h.n % 8)
		put(&h, " ", 1);

	mp_afile *a = mp_afile_open(path);
	if (!a) {
		free(h.b);
		return -1;
	}
	unsigned char len[8];
	for (int k = 0; k < 8; k++)
		len[k] = (unsigned char)((uint64_t)h.n >> (8 * k));
	int bad = fwrite(len, 1, 8, a->fp) != 8 || fwrite(h.b, 1, h.n, a->fp) != h.n;
	for (size_t i = 0; i < n && !bad; i++) {
		size_t numel = 1;
		for (int d = 0; d < ndim[i]; d++)
			numel *= (size_t)shapes[i][d];
		bad = numel && fwrite(data[i], sizeof(float), numel, a->fp) != numel;
	}
	free(h.b);
	if (bad) {
		mp_afile_abort(a);
		return mp_seterr("%s: write failed", path);
	}
	return mp_afile_commit(a);
}
