/* fmt_nrrdfile.c - NRRD files: attached (.nrrd) and detached (.nhdr with
 * "data file"), encodings raw, gzip and ascii, byte skip (also -1) and line
 * skip. The header text goes through the core's mp_nrrd_parse_header. */
#include "mp_fmt.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NRRD_HDR_MAX (1 << 20)

/* the header text up to and including the empty line (or the whole file
 * for a detached header without one); *len its length = data offset */
static char *
read_header(mp_fsrc *s, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *b = mp_xmalloc(cap + 1);

	for (;;) {
		long long k;
		if (n == cap) {
			if (cap >= NRRD_HDR_MAX) {
				free(b);
				mp_seterr("%s: header: no empty line in the first %d bytes", mp_fsrc_name(s), NRRD_HDR_MAX);
				return NULL;
			}
			cap *= 2;
			b = mp_xrealloc(b, cap + 1);
		}
		k = mp_fsrc_read(s, b + n, cap - n);
		if (k < 0) {
			free(b);
			return NULL;
		}
		if (k == 0)
			break;
		n += (size_t)k;
		/* look for "\n\n" or "\n\r\n" */
		for (size_t i = 0; i + 1 < n; i++) {
			if (b[i] != '\n')
				continue;
			if (b[i + 1] == '\n') {
				*len = i + 2;
				b[*len] = 0;
				return b;
			}
			if (b[i + 1] == '\r' && i + 2 < n && b[i + 2] == '\n') {
				*len = i + 3;
				b[*len] = 0;
				return b;
			}
		}
	}
	b[n] = 0;
	*len = n;
	return b;
}

static int
skip_lines(mp_fsrc *s, long n)
{
	unsigned char c;

	while (n > 0) {
		long long k = mp_fsrc_read(s, &c, 1);
		if (k < 0)
			return -1;
		if (k == 0)
			return mp_seterr("%s: line skip: the file ends after %ld lines", mp_fsrc_name(s), n);
		if (c == '\n')
			n--;
	}
	return 0;
}

static int
read_ascii(mp_fsrc *s, mp_frame *f)
{
	uint64_t left = mp_fsrc_size(s) - mp_fsrc_pos(s);
	size_t nv, i = 0;
	char *text, *p;

	if (mp_frame_check(f) < 0)
		return mp_preerr("%s", mp_fsrc_name(s));
	nv = mp_frame_nvox(f);
	/* each value takes at least two characters (digit and separator) */
	if (left / 2 + 1 < nv || left > ((uint64_t)1 << 34))
		return mp_seterr("%s: data: %llu bytes of text cannot hold %zu values", mp_fsrc_name(s),
				 (unsigned long long)left, nv);
	text = malloc((size_t)left + 1);
	if (!text)
		return mp_seterr("%s: out of memory", mp_fsrc_name(s));
	if (mp_fsrc_need(s, text, (size_t)left, "data") < 0) {
		free(text);
		return -1;
	}
	text[left] = 0;
	if (mp_frame_alloc(f) < 0) {
		free(text);
		return mp_preerr("%s", mp_fsrc_name(s));
	}
	p = text;
	while (i < nv) {
		char *end;
		double v;
		while (*p && (isspace((unsigned char)*p) || *p == ','))
			p++;
		if (!*p)
			break;
		v = strtod(p, &end);
		if (end == p) {
			mp_seterr("%s: data: value %zu is not a number ('%.10s')", mp_fsrc_name(s), i + 1, p);
			free(text);
			return -1;
		}
		mp_put(f->data, f->type, i++, v);
		p = end;
	}
	free(text);
	if (i < nv)
		return mp_seterr("%s: data: %zu values, the header needs %zu", mp_fsrc_name(s), i, nv);
	return 0;
}

int
mp_nrrdfile_read(const char *path, mp_frame *f)
{
	mp_fsrc *s = mp_fsrc_open(path), *d = NULL;
	mp_nrrd_enc enc;
	char *hdr = NULL, *dpath = NULL;
	size_t hl = 0;
	int rc = -1;

	mp_frame_init(f);
	memset(&enc, 0, sizeof enc);
	if (!s)
		return -1;
	hdr = read_header(s, &hl);
	if (!hdr)
		goto out;
	if (hl < 4 || strncmp(hdr, "NRRD", 4) != 0) {
		mp_seterr("%s: not a NRRD file (no 'NRRD' magic)", path);
		goto out;
	}
	if (mp_nrrd_parse_header(hdr, hl, f, &enc) < 0) {
		mp_preerr("%s", path);
		goto out;
	}
	{
		/* pynrrd once wrote "byte skip:= -1" as a key/value pair */
		const char *bs = mp_get_kv(f, "byte skip");
		if (bs && enc.byteskip == 0) {
			char *end;
			long v = strtol(bs, &end, 10);
			while (*end == ' ')
				end++;
			if (*end || v < -1) {
				mp_seterr("%s: bad byte skip '%.20s'", path, bs);
				goto out;
			}
			enc.byteskip = v;
			mp_del_kv(f, "byte skip");
		}
	}
	if (enc.bzip2) {
		mp_seterr("%s: bzip2 encoding is not supported (use raw or gzip: unu save -e gzip)", path);
		goto out;
	}
	if (enc.datafile) {
		const char *df = enc.datafile;
		if (strncmp(df, "LIST", 4) == 0 || strchr(df, '%')) {
			mp_seterr("%s: data file lists and patterns ('%.40s') are not supported", path, df);
			goto out;
		}
		dpath = mp_fmt_sibling(path, df);
		d = mp_fsrc_open(dpath);
		if (!d) {
			mp_seterr("%s: missing data file %s", path, dpath);
			goto out;
		}
	} else {
		if (mp_fmt_ends(path, ".nhdr")) {
			mp_seterr("%s: detached header without a 'data file' field", path);
			goto out;
		}
		d = s;
		s = NULL;
		if (mp_fsrc_seek(d, hl) < 0)
			goto out;
	}
	if (enc.byteskip == -1 && !enc.gzip && !enc.ascii) {
		if (mp_fsrc_frame_data_tail(d, f, enc.big) < 0)
			goto out;
	} else {
		if (skip_lines(d, enc.lineskip) < 0)
			goto out;
		if (enc.gzip && mp_fsrc_inflate(d) < 0)
			goto out;
		if (enc.byteskip == -1 && enc.gzip) {
			if (mp_fsrc_frame_data_tail(d, f, enc.big) < 0)
				goto out;
		} else {
			if (enc.byteskip > 0 && mp_fsrc_skip(d, (uint64_t)enc.byteskip, "byte skip") < 0)
				goto out;
			if (enc.ascii) {
				if (enc.gzip) {
					mp_seterr("%s: ascii data inside gzip is not supported", path);
					goto out;
				}
				if (read_ascii(d, f) < 0)
					goto out;
			} else if (mp_fsrc_frame_data(d, f, enc.big) < 0) {
				goto out;
			}
		}
	}
	rc = 0;
out:
	if (rc < 0)
		mp_frame_free(f);
	free(enc.datafile);
	free(dpath);
	free(hdr);
	mp_fsrc_close(s);
	mp_fsrc_close(d);
	return rc;
}

/* ------------------------------------------------------------------ writing */
static char *
header_for(const mp_frame *f, int gzip, const char *datafile, size_t *len)
{
	size_t n;
	char *h = mp_nrrd_header_text(f, &n), *out, *e;
	size_t cap = n + (datafile ? strlen(datafile) : 0) + 64, k = 0;

	out = mp_xmalloc(cap);
	/* the core writes "encoding: raw"; the data file goes before the empty line */
	e = strstr(h, "\nencoding: raw\n");
	if (gzip && e) {
		size_t pre = (size_t)(e - h) + 1;
		memcpy(out, h, pre);
		k = pre;
		k += (size_t)snprintf(out + k, cap - k, "encoding: gzip\n");
		memcpy(out + k, e + 15, n - pre - 14);
		k += n - pre - 14;
	} else {
		memcpy(out, h, n);
		k = n;
	}
	free(h);
	if (datafile && k > 0) {
		k--; /* drop the empty line */
		k += (size_t)snprintf(out + k, cap - k, "data file: %s\n\n", datafile);
	}
	*len = k;
	return out;
}

int
mp_nrrdfile_write(const char *path, const mp_frame *f, const mp_fmt_opts *o)
{
	int detached = mp_fmt_ends(path, ".nhdr"), gz = o->compress ? 1 : 0;
	mp_fsink *hs = NULL, *ds = NULL;
	char *dname = NULL, *dpath = NULL, *h = NULL;
	size_t hl;

	if (!detached && !gz) {
		/* the canonical frame: exactly what the stream writes */
		mp_out *out = mp_out_file(path);
		if (!out)
			return -1;
		if (mp_out_frame(out, f) < 0) {
			char msg[1024];
			snprintf(msg, sizeof msg, "%s", mp_err());
			mp_out_close(out); /* removes the temporary file */
			return mp_seterr("%s", msg);
		}
		return mp_out_close(out);
	}
	if (detached) {
		char *stem = mp_fmt_stem(path);
		size_t n = strlen(stem) + 16;
		dname = mp_xmalloc(n);
		snprintf(dname, n, "%s%s", stem, gz ? ".raw.gz" : ".raw");
		free(stem);
		dpath = mp_fmt_sibling(path, dname);
		if (strcmp(dpath, path) == 0) {
			mp_seterr("%s: the data file would overwrite the header", path);
			goto fail;
		}
	}
	h = header_for(f, gz, dname, &hl);
	hs = mp_fsink_open(path, 0, 0);
	if (!hs)
		goto fail;
	if (detached) {
		ds = mp_fsink_open(dpath, gz, o->level);
		if (!ds)
			goto fail;
	} else {
		ds = hs;
	}
	if (mp_fsink_write(hs, h, hl) < 0)
		goto fail;
	if (!detached && mp_fsink_zstart(hs, gz, o->level) < 0)
		goto fail;
	if (mp_fsink_write_le(ds, f->data, f->type, mp_frame_nvox(f)) < 0)
		goto fail;
	int rc = mp_fsink_commit_pair(hs, ds);
	hs = ds = NULL;
	if (rc < 0)
		goto fail;
	free(h);
	free(dname);
	free(dpath);
	return 0;
fail:
	if (ds && ds != hs)
		mp_fsink_abort(ds);
	mp_fsink_abort(hs);
	free(h);
	free(dname);
	free(dpath);
	return -1;
}
