/* fmt_meta.c - MetaImage (.mha with LOCAL data, .mhd with a .raw/.zraw data
 * file), as ITK reads and writes it: LPS world, each group of NDims numbers
 * of TransformMatrix is the direction of one axis, ElementSpacing scales
 * them, Offset (or Position/Origin) is the world position of the first voxel. */
#include "mp_fmt.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define META_HDR_MAX (1 << 20)

static const struct {
	const char *name;
	mp_type t;
} mettypes[] = {
	{ "MET_CHAR", MP_INT8 }, { "MET_UCHAR", MP_UINT8 }, { "MET_SHORT", MP_INT16 }, { "MET_USHORT", MP_UINT16 },
	{ "MET_INT", MP_INT32 }, { "MET_UINT", MP_UINT32 }, { "MET_LONG", MP_INT32 }, { "MET_ULONG", MP_UINT32 },
	{ "MET_LONG_LONG", MP_INT64 }, { "MET_ULONG_LONG", MP_UINT64 }, { "MET_FLOAT", MP_FLOAT32 },
	{ "MET_DOUBLE", MP_FLOAT64 },
};

static mp_type
met_type(const char *s)
{
	char b[40];
	size_t n = strlen(s);

	if (n >= sizeof b)
		return MP_NONE;
	memcpy(b, s, n + 1);
	if (n > 6 && strcasecmp(b + n - 6, "_ARRAY") == 0)
		b[n - 6] = 0;
	for (size_t i = 0; i < sizeof mettypes / sizeof mettypes[0]; i++)
		if (strcasecmp(b, mettypes[i].name) == 0)
			return mettypes[i].t;
	return MP_NONE;
}

static const char *
met_name(mp_type t)
{
	switch (t) {
	case MP_INT8: return "MET_CHAR";
	case MP_UINT8: return "MET_UCHAR";
	case MP_INT16: return "MET_SHORT";
	case MP_UINT16: return "MET_USHORT";
	case MP_INT32: return "MET_INT";
	case MP_UINT32: return "MET_UINT";
	case MP_INT64: return "MET_LONG_LONG";
	case MP_UINT64: return "MET_ULONG_LONG";
	case MP_FLOAT32: return "MET_FLOAT";
	case MP_FLOAT64: return "MET_DOUBLE";
	default: return NULL;
	}
}

static int
parse_nums(const char *path, const char *key, const char *v, double *out, int want)
{
	int n = 0;

	while (*v) {
		char *end;
		double d;
		while (*v == ' ' || *v == '\t')
			v++;
		if (!*v)
			break;
		d = strtod(v, &end);
		if (end == v || !isfinite(d))
			return mp_seterr("%s: %s: bad number '%.20s'", path, key, v);
		if (n >= want)
			return mp_seterr("%s: %s: more than %d values", path, key, want);
		out[n++] = d;
		v = end;
	}
	if (n != want)
		return mp_seterr("%s: %s: %d values, expected %d", path, key, n, want);
	return 0;
}

static int
truth(const char *v)
{
	return strcasecmp(v, "True") == 0 || strcmp(v, "1") == 0;
}

int
mp_meta_read(const char *path, mp_frame *f)
{
	mp_fsrc *s = mp_fsrc_open(path), *d = NULL;
	char *buf = NULL, *line, *next, *datafile = NULL, *dpath = NULL;
	size_t cap = 0, n = 0, off = 0;
	int rc = -1, ndims = 0, nch = 1, big = 0, compressed = 0, binary = 1, lineno = 0;
	long long headersize = 0;
	double spacing[MP_MAXDIM], tm[MP_MAXDIM * MP_MAXDIM], origin[MP_MAXDIM] = { 0 };
	char *dimsize = NULL, *spc = NULL, *esize = NULL, *tmx = NULL, *org = NULL;
	mp_type t = MP_NONE;

	mp_frame_init(f);
	if (!s)
		return -1;
	/* the header: text lines up to ElementDataFile */
	for (;;) {
		long long k;
		if (n == cap) {
			if (cap >= META_HDR_MAX) {
				mp_seterr("%s: header: no ElementDataFile line in the first %d bytes", path, META_HDR_MAX);
				goto out;
			}
			cap = cap ? cap * 2 : 4096;
			buf = mp_xrealloc(buf, cap + 1);
		}
		k = mp_fsrc_read(s, buf + n, cap - n);
		if (k < 0)
			goto out;
		n += (size_t)k;
		buf[n] = 0;
		if (k == 0 || strstr(buf, "ElementDataFile") || strstr(buf, "elementdatafile")) {
			/* need the whole ElementDataFile line */
			char *p = strstr(buf, "ElementDataFile");
			if (!p)
				p = strstr(buf, "elementdatafile");
			if (k == 0 || (p && strchr(p, '\n')))
				break;
		}
	}
	if (memchr(buf, 0, n) && !strstr(buf, "ElementDataFile")) {
		mp_seterr("%s: not a MetaImage header (binary bytes before ElementDataFile)", path);
		goto out;
	}
	for (line = buf; line && *line; line = next) {
		char *eq, *key, *val;
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		lineno++;
		if (*mp_strtrim(line) == 0)
			continue;
		eq = strchr(line, '=');
		if (!eq) {
			mp_seterr("%s: header line %d: not 'Key = Value'", path, lineno);
			goto out;
		}
		*eq = 0;
		key = mp_strtrim(line);
		val = mp_strtrim(eq + 1);
		if (strcasecmp(key, "ObjectType") == 0) {
			if (strcasecmp(val, "Image") != 0) {
				mp_seterr("%s: ObjectType %.20s is not Image", path, val);
				goto out;
			}
		} else if (strcasecmp(key, "NDims") == 0) {
			char *end;
			long v = strtol(val, &end, 10);
			if (*end || v < 1 || v > MP_MAXDIM) {
				mp_seterr("%s: NDims '%.20s' not supported (1 to %d)", path, val, MP_MAXDIM);
				goto out;
			}
			ndims = (int)v;
		} else if (strcasecmp(key, "DimSize") == 0) {
			dimsize = val;
		} else if (strcasecmp(key, "ElementSpacing") == 0) {
			spc = val;
		} else if (strcasecmp(key, "ElementSize") == 0) {
			esize = val;
		} else if (strcasecmp(key, "TransformMatrix") == 0 || strcasecmp(key, "Rotation") == 0 ||
			   strcasecmp(key, "Orientation") == 0) {
			tmx = val;
		} else if (strcasecmp(key, "Offset") == 0 || strcasecmp(key, "Position") == 0 ||
			   strcasecmp(key, "Origin") == 0) {
			org = val;
		} else if (strcasecmp(key, "ElementType") == 0) {
			t = met_type(val);
			if (t == MP_NONE) {
				mp_seterr("%s: unsupported ElementType '%.30s'", path, val);
				goto out;
			}
		} else if (strcasecmp(key, "ElementNumberOfChannels") == 0) {
			char *end;
			long v = strtol(val, &end, 10);
			if (*end || v < 1 || v > 65536) {
				mp_seterr("%s: bad ElementNumberOfChannels '%.20s'", path, val);
				goto out;
			}
			nch = (int)v;
		} else if (strcasecmp(key, "BinaryDataByteOrderMSB") == 0 || strcasecmp(key, "ElementByteOrderMSB") == 0) {
			big = truth(val);
		} else if (strcasecmp(key, "CompressedData") == 0) {
			compressed = truth(val);
		} else if (strcasecmp(key, "BinaryData") == 0) {
			binary = truth(val);
		} else if (strcasecmp(key, "HeaderSize") == 0) {
			char *end;
			headersize = strtoll(val, &end, 10);
			if (*end || headersize < -1) {
				mp_seterr("%s: bad HeaderSize '%.20s'", path, val);
				goto out;
			}
		} else if (strcasecmp(key, "ElementDataFile") == 0) {
			datafile = val;
			off = (size_t)((next ? next : line + strlen(line) + strlen(val)) - buf);
			if (!next)
				off = n;
			break;
		}
		/* other keys (CenterOfRotation, AnatomicalOrientation, Color, ...) carry nothing we use */
	}
	if (!ndims || !dimsize || t == MP_NONE || !datafile) {
		mp_seterr("%s: not a MetaImage header (missing %s)", path,
			  !ndims ? "NDims" : !dimsize ? "DimSize" : t == MP_NONE ? "ElementType" : "ElementDataFile");
		goto out;
	}
	/* sizes */
	{
		double sz[MP_MAXDIM];
		int fd = 0;
		if (parse_nums(path, "DimSize", dimsize, sz, ndims) < 0)
			goto out;
		if (nch > 1) {
			if (ndims + 1 > MP_MAXDIM) {
				mp_seterr("%s: %d dimensions with channels not supported", path, ndims);
				goto out;
			}
			f->size[fd] = (size_t)nch;
			snprintf(f->kind[fd], sizeof f->kind[fd], "vector");
			fd++;
		}
		for (int i = 0; i < ndims; i++) {
			if (sz[i] < 1 || sz[i] != floor(sz[i]) || sz[i] > 1e15) {
				mp_seterr("%s: DimSize: bad size %g", path, sz[i]);
				goto out;
			}
			f->size[fd++] = (size_t)sz[i];
		}
		f->dim = fd;
		f->type = t;
		if (mp_frame_check(f) < 0) {
			mp_preerr("%s", path);
			goto out;
		}
	}
	/* geometry */
	for (int i = 0; i < ndims; i++)
		spacing[i] = 1;
	for (int i = 0; i < ndims * ndims; i++)
		tm[i] = (i % (ndims + 1)) == 0;
	if (spc && parse_nums(path, "ElementSpacing", spc, spacing, ndims) < 0)
		goto out;
	if (!spc && esize && parse_nums(path, "ElementSize", esize, spacing, ndims) < 0)
		goto out;
	if (tmx && parse_nums(path, "TransformMatrix", tmx, tm, ndims * ndims) < 0)
		goto out;
	if (org && parse_nums(path, "Offset", org, origin, ndims) < 0)
		goto out;
	f->space = 1;
	{
		int first = nch > 1 ? 1 : 0;
		for (int i = 0; i < ndims && i < 3; i++) {
			f->has_dir[first + i] = 1;
			for (int c = 0; c < ndims && c < 3; c++)
				f->dir[first + i][c] = tm[i * ndims + c] * spacing[i];
		}
		for (int c = 0; c < ndims && c < 3; c++)
			f->origin[c] = origin[c];
	}
	/* data */
	if (strcasecmp(datafile, "LOCAL") == 0) {
		d = s;
		s = NULL;
		if (mp_fsrc_seek(d, off) < 0)
			goto out;
	} else if (strncasecmp(datafile, "LIST", 4) == 0 || strchr(datafile, '%') || strchr(datafile, ' ')) {
		mp_seterr("%s: ElementDataFile lists and patterns ('%.40s') are not supported", path, datafile);
		goto out;
	} else {
		dpath = mp_fmt_sibling(path, datafile);
		d = mp_fsrc_open(dpath);
		if (!d) {
			mp_seterr("%s: missing data file %s", path, dpath);
			goto out;
		}
	}
	if (!binary) {
		mp_seterr("%s: text (BinaryData = False) MetaImage data is not supported", path);
		goto out;
	}
	if (headersize == -1 && !compressed) {
		if (mp_fsrc_frame_data_tail(d, f, big) < 0)
			goto out;
	} else {
		if (headersize > 0 && mp_fsrc_skip(d, (uint64_t)headersize, "HeaderSize") < 0)
			goto out;
		if (compressed && mp_fsrc_inflate(d) < 0)
			goto out;
		if (mp_fsrc_frame_data(d, f, big) < 0)
			goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		mp_frame_free(f);
	free(buf);
	free(dpath);
	mp_fsrc_close(s);
	mp_fsrc_close(d);
	return rc;
}

/* ------------------------------------------------------------------ writing */
typedef struct {
	char *s;
	size_t n, cap;
} sb;

static void
sbf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
sbf(sb *b, const char *fmt, ...)
{
	va_list ap;
	int k;

	for (;;) {
		va_start(ap, fmt);
		k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (k >= 0 && b->s && b->n + (size_t)k < b->cap) {
			b->n += (size_t)k;
			return;
		}
		b->cap = (b->cap + (size_t)(k > 0 ? k : 0) + 256) * 2;
		b->s = mp_xrealloc(b->s, b->cap);
	}
}

static void
sbnums(sb *b, const char *key, const double *v, int n)
{
	sbf(b, "%s =", key);
	for (int i = 0; i < n; i++) {
		char t[40];
		mp_fmt_double(t, sizeof t, v[i] == 0 ? 0 : v[i]);
		sbf(b, " %s", t);
	}
	sbf(b, "\n");
}

int
mp_meta_write(const char *path, const mp_frame *f, const mp_fmt_opts *o)
{
	int ax[MP_MAXDIM], nsp = mp_fmt_spatial_axes(f, ax), first = 0, nd, gz = o->compress ? 1 : 0, mdim;
	int detached = mp_fmt_ends(path, ".mhd");
	size_t nch = 1, dims[MP_MAXDIM];
	double M[3][3], sp[MP_MAXDIM], tm[MP_MAXDIM * MP_MAXDIM], org[MP_MAXDIM] = { 0 };
	const char *tn = met_name(f->type);
	sb h = { 0 };
	char *dname = NULL, *dpath = NULL;
	unsigned char *zbuf = NULL;
	size_t zn = 0;
	mp_fsink *hs = NULL, *ds = NULL;

	if (!tn)
		return mp_seterr("%s: MetaImage cannot hold type %s", path, mp_type_name(f->type));
	/* a leading non-spatial axis is the channel axis */
	if (f->dim >= 2 && (nsp == 0 ? 0 : ax[0] == 1)) {
		first = 1;
		nch = f->size[0];
	}
	for (int i = 0; i < nsp; i++)
		if (ax[i] != first + i)
			return mp_seterr("%s: MetaImage needs the spatial axes first (after an optional channel axis)", path);
	nd = f->dim - first;
	for (int i = 0; i < nd; i++)
		dims[i] = f->size[first + i];
	mp_fmt_dirs3(f, ax, nsp, M);
	/* a 2D image lying outside the z = 0 plane needs a third axis (size 1) */
	mdim = nd;
	if (nd == 2 && nsp == 2 &&
	    (M[2][0] != 0 || M[2][1] != 0 || (f->space && f->origin[2] != 0))) {
		mdim = 3;
		dims[2] = 1;
		nsp = 3;
	}
	if (nd > 2 && nsp < 3 && nd > nsp) {
		/* non-spatial axes after fewer than 3 spatial ones: keep them as is */
	}
	for (int i = 0; i < mdim * mdim; i++)
		tm[i] = (i % (mdim + 1)) == 0;
	for (int i = 0; i < mdim; i++) {
		sp[i] = 1;
		if (i < nsp && i < 3) {
			double n = sqrt(M[0][i] * M[0][i] + M[1][i] * M[1][i] + M[2][i] * M[2][i]);
			if (!(n > 0) || !isfinite(n))
				return mp_seterr("%s: axis %d has a zero or non-finite space direction", path, i);
			sp[i] = n;
			for (int c = 0; c < mdim && c < 3; c++)
				tm[i * mdim + c] = M[c][i] / n;
		}
	}
	for (int c = 0; c < mdim && c < 3; c++)
		org[c] = f->space ? f->origin[c] : 0;
	if (gz && mp_fmt_zlib_mem(f->data, mp_frame_nbytes(f), o->level, &zbuf, &zn) < 0)
		return mp_preerr("%s", path);
	if (mp_host_big() && mp_type_size(f->type) > 1 && gz) {
		free(zbuf);
		return mp_seterr("%s: compressed MetaImage on a big-endian host is not supported", path);
	}
	sbf(&h, "ObjectType = Image\nNDims = %d\nBinaryData = True\nBinaryDataByteOrderMSB = False\n", mdim);
	sbf(&h, "CompressedData = %s\n", gz ? "True" : "False");
	if (gz)
		sbf(&h, "CompressedDataSize = %zu\n", zn);
	sbnums(&h, "TransformMatrix", tm, mdim * mdim);
	sbnums(&h, "Offset", org, mdim);
	{
		double z[MP_MAXDIM] = { 0 };
		sbnums(&h, "CenterOfRotation", z, mdim);
	}
	if (mdim == 3 && nsp == 3) {
		/* ITK's code names where each axis comes from: LPS axes are "RAI" */
		char code[4] = { 0 };
		for (int i = 0; i < 3; i++) {
			int best = 0;
			for (int c = 1; c < 3; c++)
				if (fabs(M[c][i]) > fabs(M[best][i]))
					best = c;
			code[i] = M[best][i] >= 0 ? "RAI"[best] : "LPS"[best];
		}
		sbf(&h, "AnatomicalOrientation = %s\n", code);
	}
	sbnums(&h, "ElementSpacing", sp, mdim);
	sbf(&h, "DimSize =");
	for (int i = 0; i < mdim; i++)
		sbf(&h, " %zu", dims[i]);
	sbf(&h, "\n");
	if (nch > 1)
		sbf(&h, "ElementNumberOfChannels = %zu\n", nch);
	sbf(&h, "ElementType = %s\n", tn);
	if (detached) {
		char *stem = mp_fmt_stem(path);
		size_t n = strlen(stem) + 8;
		dname = mp_xmalloc(n);
		snprintf(dname, n, "%s%s", stem, gz ? ".zraw" : ".raw");
		free(stem);
		dpath = mp_fmt_sibling(path, dname);
		sbf(&h, "ElementDataFile = %s\n", dname);
	} else {
		sbf(&h, "ElementDataFile = LOCAL\n");
	}
	hs = mp_fsink_open(path, 0, 0);
	if (!hs)
		goto fail;
	ds = detached ? mp_fsink_open(dpath, 0, 0) : hs;
	if (!ds)
		goto fail;
	if (mp_fsink_write(hs, h.s, h.n) < 0)
		goto fail;
	if (gz ? mp_fsink_write(ds, zbuf, zn) < 0 : mp_fsink_write_le(ds, f->data, f->type, mp_frame_nvox(f)) < 0)
		goto fail;
	int rc = mp_fsink_commit_pair(hs, ds);
	hs = ds = NULL;
	if (rc < 0)
		goto fail;
	free(h.s);
	free(zbuf);
	free(dname);
	free(dpath);
	return 0;
fail:
	if (ds && ds != hs)
		mp_fsink_abort(ds);
	mp_fsink_abort(hs);
	free(h.s);
	free(zbuf);
	free(dname);
	free(dpath);
	return -1;
}
