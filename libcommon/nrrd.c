/* nrrd.c - NRRD header text: parse (any NRRD0001-5 header) and write the
 * canonical header of a frame (NRRD0004, raw, little endian, LPS). */
#include "mp.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HDR_LINE_MAX (1 << 20)

/* unescape \n and \\ in a key/value string, in place */
static void
unescape(char *s)
{
	char *d = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] == 'n') {
			*d++ = '\n';
			s++;
		} else if (s[0] == '\\' && s[1] == '\\') {
			*d++ = '\\';
			s++;
		} else {
			*d++ = *s;
		}
	}
	*d = 0;
}

/* "(a,b,c)" -> v[0..n-1]; returns count or -1 */
static int
parse_vec(const char **sp, double *v, int max)
{
	const char *s = *sp;
	int n = 0;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s != '(')
		return -1;
	s++;
	for (;;) {
		char *end;
		while (*s == ' ' || *s == '\t')
			s++;
		if (n >= max)
			return -1;
		v[n] = strtod(s, &end);
		if (end == s || !isfinite(v[n]))
			return -1;
		n++;
		s = end;
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == ',') {
			s++;
			continue;
		}
		if (*s == ')') {
			s++;
			break;
		}
		return -1;
	}
	*sp = s;
	return n;
}

/* space name -> sign flips to LPS: sign[c] multiplies world coordinate c */
static int
space_signs(const char *s, double sign[3], int *sdim)
{
	static const struct {
		const char *n1, *n2;
		double x, y;
	} sp[] = {
		{ "left-posterior-superior", "LPS", 1, 1 },
		{ "right-anterior-superior", "RAS", -1, -1 },
		{ "left-anterior-superior", "LAS", 1, -1 },
		{ "scanner-xyz", NULL, 1, 1 },
		{ "3D-right-handed", NULL, 1, 1 },
		{ "3D-left-handed", NULL, 1, 1 },
		{ "left-posterior-superior-time", "LPST", 1, 1 },
		{ "right-anterior-superior-time", "RAST", -1, -1 },
		{ "left-anterior-superior-time", "LAST", 1, -1 },
		{ "scanner-xyz-time", NULL, 1, 1 },
		{ "3D-right-handed-time", NULL, 1, 1 },
		{ "3D-left-handed-time", NULL, 1, 1 },
	};

	for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++)
		if (strcasecmp(s, sp[i].n1) == 0 || (sp[i].n2 && strcasecmp(s, sp[i].n2) == 0)) {
			sign[0] = sp[i].x;
			sign[1] = sp[i].y;
			sign[2] = 1;
			*sdim = 3;
			return 0;
		}
	return -1;
}

static int
field_is(const char *f, const char *a, const char *b)
{
	return strcasecmp(f, a) == 0 || (b && strcasecmp(f, b) == 0);
}

int
mp_nrrd_parse_header(const char *text, size_t len, mp_frame *f, mp_nrrd_enc *enc)
{
	char *buf, *line, *next;
	int lineno = 0, have_type = 0, have_dim = 0, have_sizes = 0, have_enc = 0, have_endian = 0;
	int have_space = 0, have_dirs = 0, have_origin = 0, sdim = 0, have_spacings = 0;
	double sign[3] = { 1, 1, 1 }, spacings[MP_MAXDIM] = { 0 }, mins[MP_MAXDIM] = { 0 };
	int have_mins = 0;
	char *sizes_txt = NULL, *dirs_txt = NULL, *origin_txt = NULL, *kinds_txt = NULL;
	int rc = -1;

	memset(enc, 0, sizeof *enc);
	mp_frame_init(f);
	buf = mp_xmalloc(len + 1);
	memcpy(buf, text, len);
	buf[len] = 0;
	if (memchr(buf, 0, len)) {
		mp_seterr("header contains a NUL byte");
		goto out;
	}

	for (line = buf; line && *line; line = next) {
		char *colon, *key, *val;

		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		lineno++;
		if (lineno == 1) {
			char *l = mp_strtrim(line);
			if (strncmp(l, "NRRD000", 7) != 0 || l[7] < '1' || l[7] > '5' || l[8] != 0) {
				mp_seterr("header line 1: not a NRRD magic ('%.20s')", l);
				goto out;
			}
			continue;
		}
		if (strlen(line) > HDR_LINE_MAX) {
			mp_seterr("header line %d: line too long", lineno);
			goto out;
		}
		if (line[0] == '#')
			continue;
		if (*mp_strtrim(line) == 0)
			break; /* end of header */
		colon = strchr(line, ':');
		if (!colon) {
			mp_seterr("header line %d: no ':' in '%.40s'", lineno, line);
			goto out;
		}
		if (colon[1] == '=') {
			*colon = 0;
			key = line;
			val = colon + 2;
			unescape(key);
			unescape(val);
			if (!*key) {
				mp_seterr("header line %d: empty key", lineno);
				goto out;
			}
			mp_set_kv(f, key, val);
			continue;
		}
		if (colon[1] != ' ' && colon[1] != '\t' && colon[1] != 0) {
			mp_seterr("header line %d: expected ': ' after field name", lineno);
			goto out;
		}
		*colon = 0;
		key = mp_strtrim(line);
		val = mp_strtrim(colon + 1);

		if (field_is(key, "type", NULL)) {
			f->type = mp_type_parse(val);
			if (f->type == MP_NONE) {
				mp_seterr("header line %d: unsupported type '%.40s'", lineno, val);
				goto out;
			}
			have_type = 1;
		} else if (field_is(key, "dimension", NULL)) {
			char *end;
			long d = strtol(val, &end, 10);
			if (*end || d < 1 || d > MP_MAXDIM) {
				mp_seterr("header line %d: dimension '%.20s' not supported (1 to %d)", lineno, val, MP_MAXDIM);
				goto out;
			}
			f->dim = (int)d;
			have_dim = 1;
		} else if (field_is(key, "sizes", NULL)) {
			sizes_txt = val;
			have_sizes = lineno;
		} else if (field_is(key, "encoding", NULL)) {
			if (field_is(val, "raw", NULL))
				;
			else if (field_is(val, "gzip", "gz"))
				enc->gzip = 1;
			else if (field_is(val, "bzip2", "bz2"))
				enc->bzip2 = 1;
			else if (field_is(val, "ascii", "text") || field_is(val, "txt", NULL))
				enc->ascii = 1;
			else {
				mp_seterr("header line %d: unsupported encoding '%.40s'", lineno, val);
				goto out;
			}
			have_enc = 1;
		} else if (field_is(key, "endian", NULL)) {
			if (field_is(val, "little", NULL))
				enc->big = 0;
			else if (field_is(val, "big", NULL))
				enc->big = 1;
			else {
				mp_seterr("header line %d: bad endian '%.20s'", lineno, val);
				goto out;
			}
			have_endian = 1;
		} else if (field_is(key, "space", NULL)) {
			if (space_signs(val, sign, &sdim) < 0) {
				mp_seterr("header line %d: unsupported space '%.40s'", lineno, val);
				goto out;
			}
			have_space = 1;
		} else if (field_is(key, "space dimension", NULL)) {
			if (strcmp(val, "3") != 0 && strcmp(val, "2") != 0) {
				mp_seterr("header line %d: space dimension %.20s not supported (2 or 3)", lineno, val);
				goto out;
			}
			sdim = val[0] - '0';
			have_space = 1;
		} else if (field_is(key, "space directions", NULL)) {
			dirs_txt = val;
			have_dirs = lineno;
		} else if (field_is(key, "space origin", NULL)) {
			origin_txt = val;
			have_origin = lineno;
		} else if (field_is(key, "kinds", NULL)) {
			kinds_txt = val;
		} else if (field_is(key, "spacings", NULL) || field_is(key, "axis mins", "axismins")) {
			double *dst = field_is(key, "spacings", NULL) ? spacings : mins;
			char *s = val;
			for (int i = 0; i < MP_MAXDIM && *s; i++) {
				char *end;
				while (*s == ' ')
					s++;
				if (!*s)
					break;
				dst[i] = strtod(s, &end);
				if (end == s) {
					mp_seterr("header line %d: bad number in %s", lineno, key);
					goto out;
				}
				s = end;
			}
			if (dst == spacings)
				have_spacings = 1;
			else
				have_mins = 1;
		} else if (field_is(key, "data file", "datafile")) {
			free(enc->datafile);
			enc->datafile = mp_xstrdup(val);
		} else if (field_is(key, "byte skip", "byteskip") || field_is(key, "line skip", "lineskip")) {
			char *end;
			long v = strtol(val, &end, 10);
			int isbyte = field_is(key, "byte skip", "byteskip");
			if (*end || v < (isbyte ? -1 : 0)) {
				mp_seterr("header line %d: bad %s '%.20s'", lineno, key, val);
				goto out;
			}
			if (isbyte)
				enc->byteskip = v;
			else
				enc->lineskip = v;
		} else if (field_is(key, "content", NULL) || field_is(key, "number", NULL) ||
			   field_is(key, "block size", "blocksize") || field_is(key, "min", NULL) ||
			   field_is(key, "max", NULL) || field_is(key, "old min", "oldmin") ||
			   field_is(key, "old max", "oldmax") || field_is(key, "thicknesses", NULL) ||
			   field_is(key, "axis maxs", "axismaxs") || field_is(key, "centers", "centerings") ||
			   field_is(key, "labels", NULL) || field_is(key, "units", NULL) ||
			   field_is(key, "space units", NULL) || field_is(key, "measurement frame", NULL) ||
			   field_is(key, "sample units", "sampleunits")) {
			/* valid NRRD fields medpipe does not use */
		} else {
			mp_seterr("header line %d: unknown field '%.40s'", lineno, key);
			goto out;
		}
	}
	if (lineno == 0) {
		mp_seterr("empty header");
		goto out;
	}
	if (!have_type || !have_dim || !have_sizes || !have_enc) {
		mp_seterr("header: missing required field '%s'",
			  !have_type ? "type" : !have_dim ? "dimension" : !have_sizes ? "sizes" : "encoding");
		goto out;
	}
	{
		char *s = sizes_txt;
		for (int i = 0; i < f->dim; i++) {
			char *end;
			unsigned long long v;
			while (*s == ' ' || *s == '\t')
				s++;
			if (*s == '-' || !isdigit((unsigned char)*s)) {
				mp_seterr("header line %d: sizes: expected %d positive integers", have_sizes, f->dim);
				goto out;
			}
			errno = 0;
			v = strtoull(s, &end, 10);
			if (end == s || v == 0 || errno) {
				mp_seterr("header line %d: sizes: bad size '%.20s'", have_sizes, s);
				goto out;
			}
			f->size[i] = (size_t)v;
			s = end;
		}
		if (*mp_strtrim(s)) {
			mp_seterr("header line %d: sizes: more than %d values", have_sizes, f->dim);
			goto out;
		}
	}
	if (mp_frame_check(f) < 0) {
		mp_preerr("header line %d", have_sizes);
		goto out;
	}
	if (!have_endian && mp_type_size(f->type) > 1 && !enc->ascii && !enc->datafile) {
		mp_seterr("header: missing required field 'endian' for type %s", mp_type_name(f->type));
		goto out;
	}
	if (have_dirs) {
		const char *s = dirs_txt;
		if (!have_space) {
			mp_seterr("header line %d: space directions without space", have_dirs);
			goto out;
		}
		for (int i = 0; i < f->dim; i++) {
			double v[3] = { 0, 0, 0 };
			while (*s == ' ' || *s == '\t')
				s++;
			if (strncasecmp(s, "none", 4) == 0) {
				f->has_dir[i] = 0;
				s += 4;
				continue;
			}
			if (parse_vec(&s, v, 3) != sdim) {
				mp_seterr("header line %d: space directions: axis %d is not a %d-vector or none", have_dirs, i, sdim);
				goto out;
			}
			f->has_dir[i] = 1;
			for (int c = 0; c < 3; c++)
				f->dir[i][c] = v[c] * sign[c];
		}
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s) {
			mp_seterr("header line %d: space directions: more than %d entries", have_dirs, f->dim);
			goto out;
		}
		f->space = 1;
	} else if (have_space) {
		/* a space but no directions: identity on the first axes */
		int c = 0;
		for (int i = 0; i < f->dim && c < sdim; i++) {
			f->has_dir[i] = 1;
			f->dir[i][c] = sign[c];
			c++;
		}
		f->space = 1;
	} else if (have_spacings) {
		int c = 0;
		for (int i = 0; i < f->dim && c < 3; i++) {
			if (isnan(spacings[i]) || spacings[i] == 0)
				continue;
			f->has_dir[i] = 1;
			f->dir[i][c] = spacings[i];
			if (have_mins && isfinite(mins[i]))
				f->origin[c] = mins[i];
			c++;
		}
		f->space = 1;
	}
	if (have_origin) {
		double v[3] = { 0, 0, 0 };
		const char *s = origin_txt;
		if (!have_space) {
			mp_seterr("header line %d: space origin without space", have_origin);
			goto out;
		}
		if (parse_vec(&s, v, 3) != sdim || *mp_strtrim((char *)s)) {
			mp_seterr("header line %d: space origin is not a %d-vector", have_origin, sdim);
			goto out;
		}
		for (int c = 0; c < 3; c++)
			f->origin[c] = v[c] * sign[c];
	}
	if (kinds_txt) {
		char *s = kinds_txt;
		for (int i = 0; i < f->dim; i++) {
			size_t n;
			while (*s == ' ' || *s == '\t')
				s++;
			n = strcspn(s, " \t");
			if (n == 0) {
				mp_seterr("header: kinds: fewer than %d entries", f->dim);
				goto out;
			}
			if (n >= sizeof f->kind[i])
				n = sizeof f->kind[i] - 1;
			memcpy(f->kind[i], s, n);
			f->kind[i][n] = 0;
			s += strcspn(s, " \t");
		}
	}
	rc = 0;
out:
	free(buf);
	if (rc < 0) {
		free(enc->datafile);
		enc->datafile = NULL;
		mp_frame_free(f);
	}
	return rc;
}

/* ------------------------------------------------------------------ writing */
typedef struct {
	char *s;
	size_t n, cap;
} sbuf;

static void
sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->s = mp_xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = 0;
}

static void
sb_str(sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void
sb_num(sbuf *b, double d)
{
	char t[40];

	mp_fmt_double(t, sizeof t, d);
	sb_str(b, t);
}

static void
sb_vec(sbuf *b, const double v[3])
{
	sb_str(b, "(");
	for (int c = 0; c < 3; c++) {
		if (c)
			sb_str(b, ",");
		sb_num(b, v[c]);
	}
	sb_str(b, ")");
}

static void
sb_escaped(sbuf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\n')
			sb_str(b, "\\n");
		else if (*s == '\\')
			sb_str(b, "\\\\");
		else if (*s == '\r')
			continue;
		else
			sb_add(b, s, 1);
	}
}

static int
is_vector_kind(const char *k)
{
	static const char *v[] = { "vector", "list", "point", "covariant-vector", "normal", "stub",
				   "scalar", "complex", "2-vector", "3-color", "RGB-color", "HSV-color",
				   "XYZ-color", "4-color", "RGBA-color", "3-vector", "3-gradient",
				   "3-normal", "4-vector", "quaternion", "time", NULL };

	for (int i = 0; v[i]; i++)
		if (strcmp(k, v[i]) == 0)
			return 1;
	return 0;
}

char *
mp_nrrd_header_text(const mp_frame *f, size_t *len)
{
	sbuf b = { 0 };
	char t[64];
	int dirs[MP_MAXDIM];
	double dir[MP_MAXDIM][3];
	double origin[3] = { 0, 0, 0 };

	/* geometry: the frame's, or identity on the spatial axes */
	memset(dir, 0, sizeof dir);
	if (f->space) {
		for (int i = 0; i < f->dim; i++) {
			dirs[i] = f->has_dir[i];
			memcpy(dir[i], f->dir[i], sizeof dir[i]);
		}
		memcpy(origin, f->origin, sizeof origin);
	} else {
		int c = 0;
		for (int i = 0; i < f->dim; i++) {
			dirs[i] = 0;
			if (c < 3 && !is_vector_kind(f->kind[i])) {
				dirs[i] = 1;
				dir[i][c++] = 1;
			}
		}
	}

	sb_str(&b, "NRRD0004\n");
	sb_str(&b, "type: ");
	sb_str(&b, mp_type_name(f->type));
	snprintf(t, sizeof t, "\ndimension: %d\n", f->dim);
	sb_str(&b, t);
	sb_str(&b, "space: left-posterior-superior\nsizes:");
	for (int i = 0; i < f->dim; i++) {
		snprintf(t, sizeof t, " %zu", f->size[i]);
		sb_str(&b, t);
	}
	sb_str(&b, "\nspace directions:");
	for (int i = 0; i < f->dim; i++) {
		sb_str(&b, " ");
		if (dirs[i])
			sb_vec(&b, dir[i]);
		else
			sb_str(&b, "none");
	}
	sb_str(&b, "\nkinds:");
	for (int i = 0; i < f->dim; i++) {
		sb_str(&b, " ");
		if (f->kind[i][0] && !(dirs[i] && is_vector_kind(f->kind[i])))
			sb_str(&b, f->kind[i]);
		else
			sb_str(&b, dirs[i] ? "domain" : "list");
	}
	if (mp_type_size(f->type) > 1)
		sb_str(&b, "\nendian: little");
	sb_str(&b, "\nencoding: raw\nspace origin: ");
	sb_vec(&b, origin);
	sb_str(&b, "\n");
	for (size_t i = 0; i < f->nkv; i++) {
		sb_escaped(&b, f->keys[i]);
		sb_str(&b, ":=");
		sb_escaped(&b, f->vals[i]);
		sb_str(&b, "\n");
	}
	sb_str(&b, "\n");
	*len = b.n;
	return b.s;
}
