/* fmt_nifti.c - NIfTI-1, NIfTI-2 (.nii, .nii.gz, .hdr/.img pairs) and
 * Analyze 7.5. The header is nifti_clib's: its structs (nifti_1_header,
 * nifti_2_header) and byte swapping on reading, its quaternion conversions,
 * and nifti_convert_nim2n1hdr/nim2n2hdr on writing. The data streams through
 * fmt.c's sources and sinks (zlib for .gz), so a volume is never held to be
 * written; extensions (the Caret label table) are read and written here, as
 * nifti_clib handles them only through its own files. Geometry and scaling
 * follow nibabel; see mp_fmt.h. */
#include "mp_fmt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <nifti2_io.h>

/* ---------------------------------------------------------------- bytes */
typedef struct {
	const unsigned char *p;
	int swap;
} hb;

static uint64_t
getn(hb h, size_t off, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++) {
		int k = h.swap ? i : n - 1 - i; /* file order is h.swap ? big : little endian */
		v = v << 8 | h.p[off + (size_t)k];
	}
	return v;
}
static int16_t g16(hb h, size_t o) { return (int16_t)(uint16_t)getn(h, o, 2); }
static int32_t g32(hb h, size_t o) { return (int32_t)(uint32_t)getn(h, o, 4); }

static void
putn(unsigned char *p, size_t off, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[off + (size_t)i] = (unsigned char)(v >> (8 * i));
}
static void p32(unsigned char *p, size_t o, int32_t v) { putn(p, o, (uint32_t)v, 4); }

/* ---------------------------------------------------------------- header */
typedef struct {
	int v2, analyze, single;       /* NIfTI-2; Analyze (no magic); single file (n+1/n+2) */
	int64_t dim[8];
	double pixdim[8];
	int datatype, bitpix, intent;
	int64_t vox_offset;
	double slope, inter;
	int qform_code, sform_code;
	double qb, qc, qd, qx, qy, qz;
	double srow[3][4];
	/* Analyze: SPM origin, gl/cal fields */
	int16_t origin[3];
	double glmax, glmin, cal_max, cal_min;
	int big;
} nhdr;

/* the header in host order through nifti_clib's structs; the Analyze SPM
 * originator (bytes 253..258, not a field of nifti_1_header) read directly */
static int
parse_hdr(const char *name, const unsigned char *b, size_t n, nhdr *h)
{
	union {
		nifti_1_header n1;
		nifti_2_header n2;
	} u;
	hb x = { b, 0 };
	int32_t sz;

	memset(h, 0, sizeof *h);
	if (n < 348)
		return mp_seterr("%s: not a NIfTI/Analyze header (only %zu bytes)", name, n);
	sz = g32(x, 0);
	if (sz != 348 && sz != 540) {
		x.swap = 1;
		sz = g32(x, 0);
		if (sz != 348 && sz != 540)
			return mp_seterr("%s: not a NIfTI/Analyze header (sizeof_hdr is not 348 or 540)", name);
	}
	h->big = x.swap; /* the file is big endian */
	if (sz == 540) {
		const nifti_2_header *n2 = &u.n2;
		if (n < 540)
			return mp_seterr("%s: NIfTI-2 header truncated", name);
		if (memcmp(b + 4, "n+2\0", 4) == 0)
			h->single = 1;
		else if (memcmp(b + 4, "ni2\0", 4) != 0)
			return mp_seterr("%s: sizeof_hdr 540 but no NIfTI-2 magic", name);
		memcpy(&u.n2, b, sizeof u.n2);
		if (h->big != mp_host_big())
			swap_nifti_header(&u.n2, 2);
		h->v2 = 1;
		h->datatype = n2->datatype;
		h->bitpix = n2->bitpix;
		for (int i = 0; i < 8; i++) {
			h->dim[i] = n2->dim[i];
			h->pixdim[i] = n2->pixdim[i];
		}
		h->vox_offset = n2->vox_offset;
		h->slope = n2->scl_slope;
		h->inter = n2->scl_inter;
		h->qform_code = n2->qform_code;
		h->sform_code = n2->sform_code;
		h->qb = n2->quatern_b;
		h->qc = n2->quatern_c;
		h->qd = n2->quatern_d;
		h->qx = n2->qoffset_x;
		h->qy = n2->qoffset_y;
		h->qz = n2->qoffset_z;
		for (int c = 0; c < 4; c++) {
			h->srow[0][c] = n2->srow_x[c];
			h->srow[1][c] = n2->srow_y[c];
			h->srow[2][c] = n2->srow_z[c];
		}
		h->intent = n2->intent_code;
		return 0;
	}
	const nifti_1_header *n1 = &u.n1;
	if (memcmp(b + 344, "n+1\0", 4) == 0)
		h->single = 1;
	else if (memcmp(b + 344, "ni1\0", 4) != 0)
		h->analyze = 1;
	memcpy(&u.n1, b, sizeof u.n1);
	if (h->big != mp_host_big())
		swap_nifti_header(&u.n1, h->analyze ? 0 : 1);
	h->datatype = n1->datatype;
	h->bitpix = n1->bitpix;
	for (int i = 0; i < 8; i++) {
		h->dim[i] = n1->dim[i];
		h->pixdim[i] = n1->pixdim[i];
	}
	{
		double vo = n1->vox_offset;
		if (!isfinite(vo) || vo < 0 || vo > 1e15)
			return mp_seterr("%s: bad vox_offset %g", name, vo);
		h->vox_offset = (int64_t)vo;
	}
	h->slope = n1->scl_slope;
	h->inter = n1->scl_inter;
	h->intent = n1->intent_code;
	if (h->analyze) {
		h->cal_max = n1->cal_max;
		h->cal_min = n1->cal_min;
		h->glmax = n1->glmax;
		h->glmin = n1->glmin;
		for (int i = 0; i < 3; i++)
			h->origin[i] = g16(x, 253 + 2 * (size_t)i);
		h->intent = 0;
		return 0;
	}
	h->qform_code = n1->qform_code;
	h->sform_code = n1->sform_code;
	h->qb = n1->quatern_b;
	h->qc = n1->quatern_c;
	h->qd = n1->quatern_d;
	h->qx = n1->qoffset_x;
	h->qy = n1->qoffset_y;
	h->qz = n1->qoffset_z;
	for (int c = 0; c < 4; c++) {
		h->srow[0][c] = n1->srow_x[c];
		h->srow[1][c] = n1->srow_y[c];
		h->srow[2][c] = n1->srow_z[c];
	}
	return 0;
}

static mp_type
dt_type(int dt, int *channels)
{
	*channels = 1;
	switch (dt) {
	case DT_UINT8: return MP_UINT8;
	case DT_INT8: return MP_INT8;
	case DT_INT16: return MP_INT16;
	case DT_UINT16: return MP_UINT16;
	case DT_INT32: return MP_INT32;
	case DT_UINT32: return MP_UINT32;
	case DT_INT64: return MP_INT64;
	case DT_UINT64: return MP_UINT64;
	case DT_FLOAT32: return MP_FLOAT32;
	case DT_FLOAT64: return MP_FLOAT64;
	case DT_RGB24: *channels = 3; return MP_UINT8;
	case DT_RGBA32: *channels = 4; return MP_UINT8;
	default: return MP_NONE;
	}
}

static int
type_dt(mp_type t)
{
	switch (t) {
	case MP_UINT8: return DT_UINT8;
	case MP_INT8: return DT_INT8;
	case MP_INT16: return DT_INT16;
	case MP_UINT16: return DT_UINT16;
	case MP_INT32: return DT_INT32;
	case MP_UINT32: return DT_UINT32;
	case MP_INT64: return DT_INT64;
	case MP_UINT64: return DT_UINT64;
	case MP_FLOAT32: return DT_FLOAT32;
	case MP_FLOAT64: return DT_FLOAT64;
	default: return 0;
	}
}

/* ---------------------------------------------------------------- geometry */
/* the RAS affine (3x4) nibabel's img.affine gives */
static void
affine(const nhdr *h, int ndim, double A[3][4])
{
	double zoom[3];

	memset(A, 0, sizeof(double) * 12);
	for (int i = 0; i < 3; i++) {
		/* nibabel's header check: pixdim 0 -> 1, negative -> absolute */
		zoom[i] = i < ndim ? fabs(h->pixdim[i + 1]) : 1;
		if (zoom[i] == 0 || !isfinite(zoom[i]))
			zoom[i] = 1;
	}
	if (!h->analyze && h->sform_code > 0) {
		memcpy(A, h->srow, sizeof(double) * 12);
		return;
	}
	if (!h->analyze && h->qform_code > 0) {
		/* qfac as nibabel: pixdim[0] -1, anything else 1 */
		nifti_dmat44 Q = nifti_quatern_to_dmat44(h->qb, h->qc, h->qd, h->qx, h->qy, h->qz, zoom[0], zoom[1],
							 zoom[2], h->pixdim[0] == -1 ? -1 : 1);
		for (int r = 0; r < 3; r++)
			for (int k = 0; k < 4; k++)
				A[r][k] = Q.m[r][k];
		return;
	}
	/* Analyze / no transform: diagonal pixdim, x flipped; origin at the SPM
	 * originator when set and plausible (1-based), else the volume centre */
	{
		double dims[3], org[3];
		int use = h->analyze && (h->origin[0] || h->origin[1] || h->origin[2]);
		for (int i = 0; i < 3; i++)
			dims[i] = i < ndim ? (double)h->dim[i + 1] : 1;
		for (int i = 0; i < 3 && use; i++)
			if (!(h->origin[i] > -dims[i] && h->origin[i] < dims[i] * 2))
				use = 0;
		for (int i = 0; i < 3; i++)
			org[i] = use ? h->origin[i] - 1.0 : (dims[i] - 1) / 2.0;
		zoom[0] = -zoom[0];
		for (int i = 0; i < 3; i++) {
			A[i][i] = zoom[i];
			A[i][3] = -org[i] * zoom[i];
		}
	}
}

/* ---------------------------------------------------------------- scaling */
static int
fits(double v, mp_type t)
{
	return v >= mp_type_min(t) && v <= mp_type_max(t);
}

/* apply slope/intercept in double (nibabel's float64 result); store in the
 * smallest type holding every value exactly. Two passes over the data: the
 * first finds that type, the second writes the values in it (no float64
 * copy of the whole volume on the way: the peak is the data plus the output) */
static double
scaled(const mp_frame *f, size_t i, double slope, double inter)
{
	double x = mp_get(f->data, f->type, i);

	if (slope != 1.0)
		x *= slope;
	if (inter != 0.0)
		x += inter;
	return x;
}

static int
apply_scaling(const char *name, mp_frame *f, double slope, double inter)
{
	size_t n = mp_frame_nvox(f);
	double mn = INFINITY, mx = -INFINITY;
	int integral = 1, f32 = 1;
	mp_type t;
	void *out;

	for (size_t i = 0; i < n; i++) {
		double x = scaled(f, i, slope, inter);
		if (x < mn)
			mn = x;
		if (x > mx)
			mx = x;
		if (integral && x != floor(x))
			integral = 0;
		if (f32 && (double)(float)x != x && !isnan(x))
			f32 = 0;
	}
	if (n == 0)
		mn = mx = 0;
	if (integral && isfinite(mn) && isfinite(mx)) {
		if (mp_type_is_int(f->type) && fits(mn, f->type) && fits(mx, f->type))
			t = f->type;
		else if (fits(mn, MP_INT16) && fits(mx, MP_INT16))
			t = MP_INT16;
		else if (fits(mn, MP_INT32) && fits(mx, MP_INT32))
			t = MP_INT32;
		else
			t = f32 ? MP_FLOAT32 : MP_FLOAT64;
	} else {
		t = f32 ? MP_FLOAT32 : MP_FLOAT64;
	}
	if (n > mp_max_bytes() / mp_type_size(t))
		return mp_seterr("%s: image too large once scaled (%zu voxels of %s)", name, n, mp_type_name(t));
	out = malloc(n ? n * mp_type_size(t) : 1);
	if (!out)
		return mp_seterr("%s: out of memory for scaling %zu voxels", name, n);
	if (t == MP_FLOAT32)
		for (size_t i = 0; i < n; i++)
			((float *)out)[i] = (float)scaled(f, i, slope, inter);
	else if (t == MP_FLOAT64)
		for (size_t i = 0; i < n; i++)
			((double *)out)[i] = scaled(f, i, slope, inter);
	else
		for (size_t i = 0; i < n; i++)
			mp_put(out, t, i, scaled(f, i, slope, inter));
	mp_frame_clear_data(f);
	f->data = out;
	f->type = t;
	mp_set_kvf(f, MP_K_NIFTI_SCALING, "slope %.9g inter %.9g", slope, inter);
	return 0;
}

/* ---------------------------------------------------------------- reading */
/* move the last axis (size nlast, slowest) to the front (fastest) */
static int
last_to_first(mp_frame *f, size_t inner, size_t nlast)
{
	size_t es = mp_type_size(f->type), nb = inner * nlast * es;
	unsigned char *src = f->data, *dst = malloc(nb ? nb : 1);

	if (!dst)
		return mp_seterr("out of memory");
	for (size_t c = 0; c < nlast; c++)
		for (size_t i = 0; i < inner; i++)
			memcpy(dst + (i * nlast + c) * es, src + (c * inner + i) * es, es);
	mp_frame_clear_data(f);
	f->data = dst;
	return 0;
}

static char *
pair_path(const char *path, int want_hdr)
{
	static const char *ext[][2] = { { ".hdr.gz", ".img.gz" }, { ".img.gz", ".hdr.gz" }, { ".hdr", ".img" }, { ".img", ".hdr" } };

	for (int i = 0; i < 4; i++) {
		if (!mp_fmt_ends(path, ext[i][0]))
			continue;
		/* ext[i][0] is a header name when it starts with .hdr */
		int is_hdr = ext[i][0][1] == 'h';
		if (is_hdr == want_hdr)
			return mp_xstrdup(path);
		return mp_fmt_swap_ext(path, ext[i][0], ext[i][1]);
	}
	return mp_xstrdup(path);
}

static int
is_gz_name(const char *p)
{
	return mp_fmt_ends(p, ".gz");
}

/* open a file, through zlib when it starts with the gzip magic */
static mp_fsrc *
open_maybe_gz(const char *path)
{
	unsigned char m[2];
	mp_fsrc *s = mp_fsrc_open(path);

	if (!s)
		return NULL;
	if (mp_fsrc_read(s, m, 2) == 2 && m[0] == 0x1f && m[1] == 0x8b) {
		if (mp_fsrc_seek(s, 0) < 0 || mp_fsrc_inflate(s) < 0) {
			mp_fsrc_close(s);
			return NULL;
		}
		return s;
	}
	if (mp_fsrc_seek(s, 0) < 0) {
		mp_fsrc_close(s);
		return NULL;
	}
	return s;
}

/* ---------------------------------------------------------------- extensions */
#define EXT_MAX (16 << 20)

/* a Caret/Workbench label table (<Label Key="1" ...><![CDATA[spleen]]></Label>)
 * as "1=spleen;2=kidney_right" in medpipe.label_names */
static void
label_table(mp_frame *f, const char *x)
{
	size_t cap = 256, n = 0;
	char *out;
	const char *p = strstr(x, "<LabelTable");

	if (!p)
		return;
	out = mp_xmalloc(cap);
	out[0] = 0;
	while ((p = strstr(p, "<Label ")) != NULL) {
		const char *k = strstr(p, "Key=\""), *gt = strchr(p, '>'), *end;
		char name[256];
		long key;
		size_t m = 0;
		if (!k || !gt || k > gt)
			break;
		key = strtol(k + 5, NULL, 10);
		end = strstr(gt, "</Label>");
		if (!end)
			break;
		gt++;
		if (strncmp(gt, "<![CDATA[", 9) == 0)
			gt += 9;
		for (; gt < end && strncmp(gt, "]]>", 3) != 0 && m + 1 < sizeof name; gt++) {
			char c = *gt;
			if (c == ';' || c == '=' || c == '\n' || c == '\r' || c == '\t')
				c = '_';
			name[m++] = c;
		}
		name[m] = 0;
		if (n + m + 32 > cap) {
			cap = (n + m + 32) * 2;
			out = mp_xrealloc(out, cap);
		}
		n += (size_t)snprintf(out + n, cap - n, "%s%ld=%s", n ? ";" : "", key, name);
		p = end;
	}
	if (n)
		mp_set_kv(f, MP_K_LABEL_NAMES, out);
	free(out);
}

/* the extensions after the header (from byte done up to limit): label
 * tables are kept; returns the bytes consumed, -1 on a read error */
static long long
read_extensions(mp_fsrc *s, const nhdr *h, uint64_t done, uint64_t limit, mp_frame *f)
{
	unsigned char ext[4];
	uint64_t pos = done;
	long long k;

	if (limit < done + 4)
		return 0;
	k = mp_fsrc_read(s, ext, 4);
	if (k < 4)
		return k; /* the end of a .hdr, or an error (-1) */
	pos += 4;
	if (ext[0] == 0)
		return 4;
	while (pos + 8 <= limit) {
		unsigned char e8[8];
		hb x = { e8, h->big };
		int32_t esize;
		char *buf;
		k = mp_fsrc_read(s, e8, 8);
		if (k < 0)
			return -1;
		pos += (uint64_t)k;
		if (k < 8)
			break;
		esize = g32(x, 0);
		if (esize < 8 || (uint64_t)esize - 8 > limit - pos)
			break; /* not an extension after all: the data offset decides */
		if (esize - 8 > EXT_MAX) {
			if (mp_fsrc_skip(s, (uint64_t)esize - 8, "header extension") < 0)
				return -1;
		} else {
			buf = mp_xmalloc((size_t)esize - 8 + 1);
			if (mp_fsrc_need(s, buf, (size_t)esize - 8, "header extension") < 0) {
				free(buf);
				return -1;
			}
			buf[esize - 8] = 0;
			label_table(f, buf);
			free(buf);
		}
		pos += (uint64_t)esize - 8;
	}
	return (long long)(pos - done);
}

/* a Caret-style label table extension (code 0) for medpipe.label_names;
 * returns the malloc'd extension (esize bytes, a multiple of 16) or NULL */
static unsigned char *
label_extension(const mp_frame *f, size_t *esize)
{
	const char *names = mp_get_kv(f, MP_K_LABEL_NAMES), *p;
	size_t cap, n = 0;
	char *x;
	unsigned char *e;

	if (!names || !*names)
		return NULL;
	cap = strlen(names) * 2 + 512;
	x = mp_xmalloc(cap);
	n += (size_t)snprintf(x + n, cap - n, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CaretExtension>\n"
					     "<VolumeInformation Index=\"0\">\n<LabelTable>\n");
	for (p = names; *p;) {
		const char *semi = strchr(p, ';'), *eq = strchr(p, '=');
		size_t len = semi ? (size_t)(semi - p) : strlen(p);
		if (eq && eq < p + len) {
			long key = strtol(p, NULL, 10);
			int nl = (int)(len - (size_t)(eq + 1 - p));
			if (n + (size_t)nl + 128 > cap) {
				cap = (n + (size_t)nl + 128) * 2;
				x = mp_xrealloc(x, cap);
			}
			n += (size_t)snprintf(x + n, cap - n, "<Label Key=\"%ld\"><![CDATA[%.*s]]></Label>\n", key, nl, eq + 1);
		}
		p += len;
		if (*p == ';')
			p++;
	}
	if (n + 64 > cap)
		x = mp_xrealloc(x, cap = n + 64);
	n += (size_t)snprintf(x + n, cap - n, "</LabelTable>\n</VolumeInformation>\n</CaretExtension>\n");
	*esize = (8 + n + 15) / 16 * 16;
	e = mp_xcalloc(1, *esize);
	p32(e, 0, (int32_t)*esize);
	p32(e, 4, 0);
	memcpy(e + 8, x, n);
	free(x);
	return e;
}

int
mp_nifti_read(const char *path, mp_frame *f)
{
	unsigned char b[544] = { 0 };
	nhdr h;
	mp_fsrc *s;
	char *hp = NULL, *dp = NULL;
	int nd, ch, rc = -1, pair;
	mp_type t;
	double A[3][4];
	const char *name = path;

	mp_frame_init(f);
	pair = mp_fmt_ends(path, ".hdr") || mp_fmt_ends(path, ".img") || mp_fmt_ends(path, ".hdr.gz") ||
	       mp_fmt_ends(path, ".img.gz");
	hp = pair ? pair_path(path, 1) : mp_xstrdup(path);
	name = hp;
	s = open_maybe_gz(hp);
	if (!s)
		goto out;
	{
		long long k = mp_fsrc_read(s, b, 348);
		if (k < 0)
			goto out;
		if (k < 348) {
			mp_seterr("%s: not a NIfTI/Analyze file (%lld bytes, a header needs 348)", name, k);
			goto out;
		}
		if (((b[0] == 0x1c && b[1] == 2) || (b[3] == 0x1c && b[2] == 2)) && mp_fsrc_need(s, b + 348, 540 - 348, "header") < 0)
			goto out;
	}
	if (parse_hdr(name, b, 540, &h) < 0)
		goto out;
	/* dimensions */
	nd = (int)h.dim[0];
	if (nd < 1 || nd > 7) {
		mp_seterr("%s: dim[0] is %d (1 to 7 expected)", name, nd);
		goto out;
	}
	for (int i = 1; i <= nd; i++)
		if (h.dim[i] < 1) {
			mp_seterr("%s: dim[%d] is %lld (sizes must be positive)", name, i, (long long)h.dim[i]);
			goto out;
		}
	/* trailing axes of size 1 beyond the third are dropped (x,y,z,1 is 3D) */
	while (nd > 3 && h.dim[nd] == 1)
		nd--;
	t = dt_type(h.datatype, &ch);
	if (t == MP_NONE) {
		mp_seterr("%s: unsupported NIfTI datatype %d", name, h.datatype);
		goto out;
	}
	if (h.bitpix != (int)(mp_type_size(t) * 8 * (size_t)ch) && h.bitpix != 0) {
		mp_seterr("%s: bitpix %d does not match datatype %d", name, h.bitpix, h.datatype);
		goto out;
	}
	{
		int vec5 = nd == 5 && h.dim[4] == 1; /* NIfTI vectors: dim[5] channels */
		int fd = 0;
		if (nd > 4 && !vec5) {
			mp_seterr("%s: %d dimensions not supported (at most 4, or 5 with dim[4]=1 for vectors)", name, nd);
			goto out;
		}
		if (vec5 && ch > 1) {
			mp_seterr("%s: RGB vectors of 5 dimensions not supported", name);
			goto out;
		}
		/* the colour channels take an axis of the frame's MP_MAXDIM */
		if (ch > 1 && nd + 1 > MP_MAXDIM) {
			mp_seterr("%s: %s with %d dimensions not supported (at most %d)", name,
				  ch == 3 ? "RGB" : "RGBA", nd, MP_MAXDIM - 1);
			goto out;
		}
		f->type = t;
		if (ch > 1 || vec5) {
			f->size[fd] = ch > 1 ? (size_t)ch : (size_t)h.dim[5];
			snprintf(f->kind[fd], sizeof f->kind[fd], "%s",
				 ch == 3 ? "RGB-color" : ch == 4 ? "RGBA-color" : "vector");
			fd++;
		}
		for (int i = 1; i <= (vec5 ? 3 : nd); i++) {
			if ((uint64_t)h.dim[i] > SIZE_MAX) {
				mp_seterr("%s: size too large", name);
				goto out;
			}
			f->size[fd++] = (size_t)h.dim[i];
		}
		f->dim = fd;
		if (mp_frame_check(f) < 0) {
			mp_preerr("%s", name);
			goto out;
		}
		/* geometry */
		affine(&h, vec5 ? 3 : nd, A);
		f->space = 1;
		{
			int first = (ch > 1 || vec5) ? 1 : 0, nsp = (vec5 ? 3 : nd) < 3 ? (vec5 ? 3 : nd) : 3;
			for (int i = 0; i < nsp; i++) {
				f->has_dir[first + i] = 1;
				f->dir[first + i][0] = -A[0][i];
				f->dir[first + i][1] = -A[1][i];
				f->dir[first + i][2] = A[2][i];
			}
			f->origin[0] = -A[0][3];
			f->origin[1] = -A[1][3];
			f->origin[2] = A[2][3];
			for (int c = 0; c < 3; c++)
				for (int i = 0; i < f->dim; i++)
					if (!isfinite(f->dir[i][c]) || !isfinite(f->origin[c])) {
						mp_seterr("%s: the header's transform is not finite", name);
						goto out;
					}
		}
		/* data */
		if (pair) {
			dp = pair_path(path, 0);
			if (h.single) {
				/* an n+1 header in a .hdr: data follows in the same file */
				free(dp);
				dp = mp_xstrdup(hp);
			} else {
				if (read_extensions(s, &h, h.v2 ? 540 : 348, UINT64_MAX, f) < 0)
					goto out;
				mp_fsrc_close(s);
				s = open_maybe_gz(dp);
				if (!s) {
					if (!is_gz_name(dp)) {
						/* maybe .img.gz beside a .hdr */
						char *alt = malloc(strlen(dp) + 4);
						if (alt) {
							sprintf(alt, "%s.gz", dp);
							s = open_maybe_gz(alt);
							free(alt);
						}
					}
					if (!s) {
						mp_seterr("%s: missing data file %s", hp, dp);
						goto out;
					}
				}
				name = dp;
				if (mp_fsrc_skip(s, (uint64_t)h.vox_offset, "data offset") < 0)
					goto out;
			}
		}
		if (!pair || h.single) {
			int64_t off = h.vox_offset, done = h.v2 ? 540 : 348;
			long long k;
			if (off < done)
				off = h.v2 ? 544 : 352;
			k = read_extensions(s, &h, (uint64_t)done, (uint64_t)off, f);
			if (k < 0)
				goto out;
			done += k;
			if (mp_fsrc_skip(s, (uint64_t)(off - done), "data offset") < 0)
				goto out;
		}
		if (mp_fsrc_frame_data(s, f, h.big) < 0)
			goto out;
		if (vec5) {
			size_t inner = f->size[1] * f->size[2] * f->size[3];
			if (last_to_first(f, inner, f->size[0]) < 0)
				goto out;
		}
		(void)fd;
	}
	/* scaling */
	{
		double slope = h.slope, inter = h.inter;
		int use = isfinite(slope) && slope != 0;
		if (h.analyze) {
			if (use) {
				if (!isfinite(inter))
					inter = 0;
			} else if (h.glmax - h.glmin != 0 && h.cal_max - h.cal_min != 0) {
				slope = (h.cal_max - h.cal_min) / (h.glmax - h.glmin);
				inter = h.cal_min - slope * h.glmin;
				use = 1;
			}
		} else if (use && !isfinite(inter)) {
			mp_seterr("%s: valid scl_slope but invalid scl_inter", name);
			goto out;
		}
		if (use && !(slope == 1 && inter == 0) && ch == 1 && apply_scaling(name, f, slope, inter) < 0)
			goto out;
	}
	if (h.intent)
		mp_set_kvf(f, MP_K_NIFTI_INTENT, "%d", h.intent);
	rc = 0;
out:
	mp_fsrc_close(s);
	free(hp);
	free(dp);
	if (rc < 0)
		mp_frame_free(f);
	return rc;
}

/* ---------------------------------------------------------------- writing */
/* the voxels: from memory, or from o->src a few MiB at a time */
static int
write_body(mp_fsink *s, const mp_frame *f, const void *data, const mp_fmt_opts *o)
{
	size_t es = mp_type_size(f->type), nb = mp_frame_nbytes(f), step = ((size_t)4 << 20) / es * es;
	unsigned char *buf;

	if (data)
		return mp_fsink_write_le(s, data, f->type, mp_frame_nvox(f));
	if (!(buf = malloc(step)))
		return mp_seterr("out of memory");
	for (size_t done = 0; done < nb;) {
		size_t k = nb - done < step ? nb - done : step;
		if (o->src(o->src_ctx, buf, k) < 0 || mp_fsink_write_le(s, buf, f->type, k / es) < 0) {
			free(buf);
			return -1;
		}
		done += k;
	}
	free(buf);
	return 0;
}

int
mp_nifti_write(const char *path, const mp_frame *f, const mp_fmt_opts *o)
{
	int ax[MP_MAXDIM], nsp = mp_fmt_spatial_axes(f, ax), v2, pair, vec = 0;
	int64_t dim[8] = { 0 };
	double pix[8] = { 1, 1, 1, 1, 1, 1, 1, 1 }, M[3][3], A[3][4], R[3][3], qfac = 1;
	double qb = 0, qc = 0, qd = 0;
	int qcode = 1, dt = type_dt(f->type), nd, rgb = 0;
	unsigned char h[544];
	char *hp = NULL, *dp = NULL;
	mp_fsink *hs = NULL, *ds = NULL;
	void *tdata = NULL, *tsrc = NULL;
	const void *data = f->data;
	int gz = is_gz_name(path);
	unsigned char *ext = NULL;
	size_t esize = 0;

	if (!dt)
		return mp_seterr("%s: NIfTI cannot hold type %s", path, mp_type_name(f->type));
	/* the spatial axes must come first; a leading vector axis becomes NIfTI's dim[5] */
	if (nsp > 0 && ax[0] == 1 && f->dim >= 2) {
		vec = 1;
		for (int i = 0; i < nsp; i++)
			if (ax[i] != i + 1)
				vec = -1;
		if (f->dim - 1 > nsp)
			vec = -1;
	} else {
		for (int i = 0; i < nsp; i++)
			if (ax[i] != i)
				return mp_seterr("%s: NIfTI needs the spatial axes first (axis %d is not spatial)", path, i);
	}
	if (vec < 0)
		return mp_seterr("%s: NIfTI cannot hold this axis layout (a vector axis and non-spatial axes)", path);
	/* uint8 colour: NIfTI's RGB24/RGBA32 keep the channels fastest, as the frame does */
	if (vec && f->type == MP_UINT8 && ((f->size[0] == 3 && strcmp(f->kind[0], "RGB-color") == 0) ||
					   (f->size[0] == 4 && strcmp(f->kind[0], "RGBA-color") == 0))) {
		rgb = (int)f->size[0];
		dt = rgb == 3 ? DT_RGB24 : DT_RGBA32;
	}
	if (f->dim == 0 || nsp == 0)
		nsp = 0;
	/* dimensions: spatial axes, then (after padding to 3) the others */
	if (rgb) {
		nd = nsp;
		for (int i = 0; i < nsp; i++)
			dim[i + 1] = (int64_t)f->size[i + 1];
	} else if (vec) {
		nd = 5;
		for (int i = 0; i < 3; i++)
			dim[i + 1] = i < nsp ? (int64_t)f->size[i + 1] : 1;
		dim[4] = 1;
		dim[5] = (int64_t)f->size[0];
	} else if (f->dim > nsp && nsp < 3) {
		int k = 1;
		for (int i = 0; i < nsp; i++)
			dim[k++] = (int64_t)f->size[i];
		while (k <= 3)
			dim[k++] = 1;
		for (int i = nsp; i < f->dim; i++)
			dim[k++] = (int64_t)f->size[i];
		nd = k - 1;
	} else {
		nd = f->dim;
		for (int i = 0; i < f->dim; i++)
			dim[i + 1] = (int64_t)f->size[i];
	}
	dim[0] = nd;
	v2 = o->nifti2;
	for (int i = 1; i <= nd; i++)
		if (dim[i] > 32767)
			v2 = 1;
	/* geometry: LPS -> RAS */
	mp_fmt_dirs3(f, vec ? ax : ax, nsp, M);
	for (int c = 0; c < 3; c++) {
		double n = sqrt(M[0][c] * M[0][c] + M[1][c] * M[1][c] + M[2][c] * M[2][c]);
		if (!(n > 0) || !isfinite(n))
			return mp_seterr("%s: axis %d has a zero or non-finite space direction", path, c);
		pix[c + 1] = n;
		for (int r = 0; r < 3; r++)
			R[r][c] = M[r][c] / n * (r < 2 ? -1 : 1);
	}
	for (int r = 0; r < 3; r++) {
		for (int c = 0; c < 3; c++)
			A[r][c] = M[r][c] * (r < 2 ? -1 : 1);
		A[r][3] = (f->space ? f->origin[r] : 0) * (r < 2 ? -1 : 1);
	}
	{
		double det = R[0][0] * (R[1][1] * R[2][2] - R[1][2] * R[2][1]) - R[0][1] * (R[1][0] * R[2][2] - R[1][2] * R[2][0]) +
			     R[0][2] * (R[1][0] * R[2][1] - R[1][1] * R[2][0]);
		double err = 0;
		if (det < 0) {
			qfac = -1;
			for (int r = 0; r < 3; r++)
				R[r][2] = -R[r][2];
		}
		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 3; j++) {
				double d = R[0][i] * R[0][j] + R[1][i] * R[1][j] + R[2][i] * R[2][j] - (i == j);
				if (fabs(d) > err)
					err = fabs(d);
			}
		if (err > 1e-4) {
			qcode = 0; /* not a rotation: sform only */
		} else {
			nifti_dmat44 Q = { { { 0 } } };
			double qx, qy, qz, dx, dy, dz, qf;
			for (int r = 0; r < 3; r++)
				for (int c = 0; c < 4; c++)
					Q.m[r][c] = A[r][c];
			Q.m[3][3] = 1;
			nifti_dmat44_to_quatern(Q, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qf);
		}
	}
	pix[0] = qfac;
	pair = mp_fmt_ends(path, ".hdr") || mp_fmt_ends(path, ".img") || mp_fmt_ends(path, ".hdr.gz") || mp_fmt_ends(path, ".img.gz");
	if (vec && !rgb) {
		/* channels fastest in the frame, slowest in NIfTI */
		size_t es = mp_type_size(f->type), nch = f->size[0], inner = mp_frame_nvox(f) / nch;
		unsigned char *dst = malloc(mp_frame_nbytes(f) ? mp_frame_nbytes(f) : 1);
		const unsigned char *src = f->data;
		if (!dst)
			return mp_seterr("%s: out of memory", path);
		if (!src) {   /* a streamed frame: this layout needs it whole */
			unsigned char *all = malloc(mp_frame_nbytes(f) ? mp_frame_nbytes(f) : 1);
			if (!all || o->src(o->src_ctx, all, mp_frame_nbytes(f)) < 0) {
				if (!all)
					mp_seterr("%s: out of memory", path);
				free(all);
				free(dst);
				return -1;
			}
			src = all;
			tsrc = all;
		}
		for (size_t i = 0; i < inner; i++)
			for (size_t c = 0; c < nch; c++)
				memcpy(dst + (c * inner + i) * es, src + (i * nch + c) * es, es);
		tdata = dst;
		data = dst;
		free(tsrc);
	}
	ext = label_extension(f, &esize);
	/* the header: nifti_clib's struct from an image description */
	{
		nifti_image nim;
		memset(&nim, 0, sizeof nim);
		nim.nifti_type = v2 ? (pair ? NIFTI_FTYPE_NIFTI2_2 : NIFTI_FTYPE_NIFTI2_1)
				    : (pair ? NIFTI_FTYPE_NIFTI1_2 : NIFTI_FTYPE_NIFTI1_1);
		nim.ndim = nd;
		for (int i = 0; i < 8; i++) {
			nim.dim[i] = dim[i];
			nim.pixdim[i] = pix[i];
		}
		nim.nx = dim[1], nim.ny = dim[2], nim.nz = dim[3], nim.nt = dim[4];
		nim.nu = dim[5], nim.nv = dim[6], nim.nw = dim[7];
		nim.dx = pix[1], nim.dy = pix[2], nim.dz = pix[3], nim.dt = pix[4];
		nim.du = pix[5], nim.dv = pix[6], nim.dw = pix[7];
		nim.datatype = dt;
		nim.nbyper = rgb ? rgb : (int)mp_type_size(f->type);
		nim.scl_slope = 1;
		nim.intent_code = vec && !rgb ? NIFTI_INTENT_VECTOR : 0;
		nim.iname_offset = pair ? 0 : (v2 ? 544 : 352) + (int64_t)esize;
		nim.xyz_units = NIFTI_UNITS_MM;
		snprintf(nim.descrip, sizeof nim.descrip, "medpipe");
		nim.qform_code = qcode;
		nim.quatern_b = qb, nim.quatern_c = qc, nim.quatern_d = qd;
		nim.qoffset_x = A[0][3], nim.qoffset_y = A[1][3], nim.qoffset_z = A[2][3];
		nim.qfac = qfac;
		nim.sform_code = NIFTI_XFORM_SCANNER_ANAT;
		for (int r = 0; r < 3; r++)
			for (int c = 0; c < 4; c++)
				nim.sto_xyz.m[r][c] = A[r][c];
		nim.sto_xyz.m[3][3] = 1;
		memset(h, 0, sizeof h);
		if (v2) {
			nifti_2_header n2;
			if (nifti_convert_nim2n2hdr(&nim, &n2)) {
				mp_seterr("%s: nifti_clib could not make the NIfTI-2 header", path);
				goto fail;
			}
			/* the standard's 8-byte magic (Debian's nifti_clib 3.0.1 ends it with
			 * zeros); also without a qform: qfac and the offset */
			memcpy(n2.magic, pair ? "ni2\0\r\n\032\n" : "n+2\0\r\n\032\n", 8);
			n2.pixdim[0] = qfac;
			n2.qoffset_x = A[0][3], n2.qoffset_y = A[1][3], n2.qoffset_z = A[2][3];
			if (mp_host_big())
				swap_nifti_header(&n2, 2);
			memcpy(h, &n2, sizeof n2);
		} else {
			nifti_1_header n1;
			if (nifti_convert_nim2n1hdr(&nim, &n1)) {
				mp_seterr("%s: nifti_clib could not make the NIfTI-1 header", path);
				goto fail;
			}
			n1.pixdim[0] = (float)qfac;
			n1.qoffset_x = (float)A[0][3], n1.qoffset_y = (float)A[1][3], n1.qoffset_z = (float)A[2][3];
			if (mp_host_big())
				swap_nifti_header(&n1, 1);
			memcpy(h, &n1, sizeof n1);
		}
		if (ext)
			h[v2 ? 540 : 348] = 1; /* extender: extensions follow */
	}
	/* the files */
	if (pair) {
		hp = pair_path(path, 1);
		dp = pair_path(path, 0);
		hs = mp_fsink_open(hp, gz, o->level);
		ds = hs ? mp_fsink_open(dp, gz, o->level) : NULL;
		if (!ds)
			goto fail;
		if (mp_fsink_write(hs, h, (v2 ? 540 : 348) + (ext ? 4 : 0)) < 0 || (ext && mp_fsink_write(hs, ext, esize) < 0) ||
		    write_body(ds, f, data, o) < 0)
			goto fail;
	} else {
		hs = mp_fsink_open(path, gz, o->level);
		if (!hs)
			goto fail;
		/* header, 4-byte extender (no extensions), data */
		if (mp_fsink_write(hs, h, v2 ? 544 : 352) < 0 || (ext && mp_fsink_write(hs, ext, esize) < 0) ||
		    write_body(hs, f, data, o) < 0)
			goto fail;
	}
	int rc = mp_fsink_commit_pair(hs, ds);
	hs = ds = NULL;
	if (rc < 0)
		goto fail;
	free(hp);
	free(dp);
	free(tdata);
	free(ext);
	return 0;
fail:
	mp_fsink_abort(ds);
	mp_fsink_abort(hs);
	free(hp);
	free(dp);
	free(tdata);
	free(ext);
	return -1;
}
