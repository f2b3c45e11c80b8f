/* fmt_npy.c - numpy .npy files (format versions 1.0, 2.0, 3.0) read and
 * written, and .npz archives read (one frame per array). A C-order array of
 * shape (Z, Y, X) is a frame of sizes X, Y, Z; Fortran-order arrays are
 * transposed to that layout. npy has no geometry. */
#include "mp_fmt.h"
#include "mp_label.h"   /* mp_npy_header (npz.c) */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define NPY_HDR_MAX (1 << 20)
#define NPY_MAXND 32

/* the value text after 'key': in a Python dict literal */
static const char *
dict_value(const char *d, const char *key)
{
	char k1[32], k2[32];
	const char *p;

	snprintf(k1, sizeof k1, "'%s'", key);
	snprintf(k2, sizeof k2, "\"%s\"", key);
	p = strstr(d, k1);
	if (!p)
		p = strstr(d, k2);
	if (!p)
		return NULL;
	p += strlen(k1);
	while (*p == ' ')
		p++;
	if (*p != ':')
		return NULL;
	p++;
	while (*p == ' ')
		p++;
	return p;
}

static mp_type
descr_type(const char *d, int *big)
{
	char kind;
	int size;

	*big = 0;
	if (*d == '>')
		*big = 1;
	else if (*d == '=')
		*big = mp_host_big();
	if (*d == '<' || *d == '>' || *d == '|' || *d == '=')
		d++;
	kind = d[0];
	if (!kind || !isdigit((unsigned char)d[1]) || (d[2] != '\'' && d[2] != '"'))
		return MP_NONE;
	size = d[1] - '0';
	switch (kind) {
	case 'b': return size == 1 ? MP_UINT8 : MP_NONE;
	case 'i': return size == 1 ? MP_INT8 : size == 2 ? MP_INT16 : size == 4 ? MP_INT32 : size == 8 ? MP_INT64 : MP_NONE;
	case 'u': return size == 1 ? MP_UINT8 : size == 2 ? MP_UINT16 : size == 4 ? MP_UINT32 : size == 8 ? MP_UINT64 : MP_NONE;
	case 'f': return size == 4 ? MP_FLOAT32 : size == 8 ? MP_FLOAT64 : MP_NONE;
	default: return MP_NONE;
	}
}

/* reverse the axis order of data laid out with sizes sz[0] fastest */
static int
reverse_axes(mp_frame *f, const size_t *sz, int nd)
{
	size_t es = mp_type_size(f->type), n = mp_frame_nvox(f), stride[MP_MAXDIM], idx[MP_MAXDIM] = { 0 };
	unsigned char *dst = malloc(n ? n * es : 1), *src = f->data;

	if (!dst)
		return mp_seterr("out of memory");
	/* output axis j is input axis nd-1-j */
	stride[0] = 1;
	for (int k = 1; k < nd; k++)
		stride[k] = stride[k - 1] * sz[k - 1];
	for (size_t o = 0; o < n; o++) {
		size_t off = 0;
		for (int j = 0; j < nd; j++)
			off += idx[j] * stride[nd - 1 - j];
		memcpy(dst + o * es, src + off * es, es);
		for (int j = 0; j < nd; j++) {
			if (++idx[j] < f->size[j])
				break;
			idx[j] = 0;
		}
	}
	mp_frame_clear_data(f);
	f->data = dst;
	return 0;
}

static int npy_colour = 1;

void
mp_npy_set_colour(int on)
{
	npy_colour = on;
}

int
mp_npy_read_src(mp_fsrc *s, mp_frame *f)
{
	unsigned char pre[12];
	size_t hl, shp[NPY_MAXND];
	int major, nd = 0, big, fortran = 0;
	char *dict;
	const char *v, *name = mp_fsrc_name(s);

	mp_frame_init(f);
	if (mp_fsrc_need(s, pre, 10, "npy header") < 0)
		return -1;
	if (memcmp(pre, "\x93NUMPY", 6) != 0)
		return mp_seterr("%s: not a .npy file (no \\x93NUMPY magic)", name);
	major = pre[6];
	if (major == 1) {
		hl = (size_t)pre[8] | (size_t)pre[9] << 8;
	} else if (major == 2 || major == 3) {
		if (mp_fsrc_need(s, pre + 10, 2, "npy header") < 0)
			return -1;
		hl = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
	} else {
		return mp_seterr("%s: npy format version %d.%d not supported", name, pre[6], pre[7]);
	}
	if (hl > NPY_HDR_MAX)
		return mp_seterr("%s: npy header of %zu bytes is too long", name, hl);
	dict = mp_xmalloc(hl + 1);
	if (mp_fsrc_need(s, dict, hl, "npy header") < 0) {
		free(dict);
		return -1;
	}
	dict[hl] = 0;
	if (memchr(dict, 0, hl)) {
		free(dict);
		return mp_seterr("%s: npy header holds a NUL byte", name);
	}
	v = dict_value(dict, "descr");
	if (!v || (*v != '\'' && *v != '"')) {
		free(dict);
		return mp_seterr("%s: npy header without a simple 'descr'", name);
	}
	f->type = descr_type(v + 1, &big);
	if (f->type == MP_NONE) {
		mp_seterr("%s: npy dtype %.12s not supported", name, v);
		free(dict);
		return -1;
	}
	v = dict_value(dict, "fortran_order");
	if (!v) {
		free(dict);
		return mp_seterr("%s: npy header without 'fortran_order'", name);
	}
	fortran = strncmp(v, "True", 4) == 0;
	v = dict_value(dict, "shape");
	if (!v || *v != '(') {
		free(dict);
		return mp_seterr("%s: npy header without 'shape'", name);
	}
	for (v++;;) {
		char *end;
		unsigned long long x;
		while (*v == ' ' || *v == ',')
			v++;
		if (*v == ')')
			break;
		if (!isdigit((unsigned char)*v) || nd >= NPY_MAXND) {
			free(dict);
			return mp_seterr("%s: npy shape is not a tuple of sizes", name);
		}
		x = strtoull(v, &end, 10);
		if (x == 0 || x > ((unsigned long long)1 << 48)) {
			free(dict);
			return mp_seterr("%s: npy shape has a size of %llu", name, x);
		}
		shp[nd++] = (size_t)x;
		v = end;
	}
	free(dict);
	if (nd == 0)
		shp[nd++] = 1;
	/* more than 4 axes: drop leading (slowest) axes of size 1 */
	{
		int drop = 0;
		while (nd - drop > MP_MAXDIM && shp[fortran ? nd - 1 - drop : drop] == 1)
			drop++;
		if (nd - drop > MP_MAXDIM)
			return mp_seterr("%s: npy array of %d dimensions (at most %d)", name, nd, MP_MAXDIM);
		if (!fortran)
			memmove(shp, shp + drop, (size_t)(nd - drop) * sizeof *shp);
		nd -= drop;
	}
	f->dim = nd;
	for (int i = 0; i < nd; i++)
		f->size[i] = fortran ? shp[i] : shp[nd - 1 - i];
	if (mp_fsrc_frame_data(s, f, big) < 0)
		return -1;
	if (fortran && nd > 1) {
		size_t sz[MP_MAXDIM];
		for (int i = 0; i < nd; i++) {
			sz[i] = f->size[i];
			f->size[i] = shp[nd - 1 - i];
		}
		if (reverse_axes(f, sz, nd) < 0) {
			mp_frame_free(f);
			return mp_preerr("%s", name);
		}
	}
	/* numpy's (..., H, W, 3): the last axis (frame axis 0) holds colour samples */
	if (npy_colour && (nd == 3 || nd == 4) && (f->size[0] == 3 || f->size[0] == 4) && f->size[1] > 4 && f->size[2] > 4)
		snprintf(f->kind[0], sizeof f->kind[0], "%s", f->size[0] == 3 ? "RGB-color" : "RGBA-color");
	return 0;
}

int
mp_npy_read(const char *path, mp_frame *f)
{
	mp_fsrc *s = mp_fsrc_open(path);
	int r;

	mp_frame_init(f);
	if (!s)
		return -1;
	r = mp_npy_read_src(s, f);
	mp_fsrc_close(s);
	if (r < 0)
		mp_frame_free(f);
	return r;
}

int
mp_npy_write_file(const char *path, const mp_frame *f)
{
	size_t shp[MP_MAXDIM], hl;
	char *h;
	mp_fsink *s;

	for (int i = 0; i < f->dim; i++)
		shp[i] = f->size[f->dim - 1 - i];
	h = mp_npy_header(f->type, f->dim, shp, &hl);
	if (!h)
		return mp_preerr("%s", path);
	s = mp_fsink_open(path, 0, 0);
	if (!s) {
		free(h);
		return -1;
	}
	if (mp_fsink_write(s, h, hl) < 0 || mp_fsink_write_le(s, f->data, f->type, mp_frame_nvox(f)) < 0) {
		free(h);
		mp_fsink_abort(s);
		return -1;
	}
	free(h);
	return mp_fsink_commit(s);
}

int
mp_npz_read(const char *path, mp_frame ***frames, size_t *n)
{
	mp_zip_entry *e = NULL;
	size_t ne = 0, nf = 0;
	mp_frame **fr = NULL;

	*frames = NULL;
	*n = 0;
	if (mp_zip_list(path, &e, &ne) < 0)
		return -1;
	fr = mp_xcalloc(ne ? ne : 1, sizeof *fr);
	for (size_t i = 0; i < ne; i++) {
		unsigned char *buf;
		size_t len;
		char label[512], *nm;
		mp_fsrc *s;
		mp_frame *f;
		size_t k = strlen(e[i].name);

		if (k == 0 || e[i].name[k - 1] == '/')
			continue; /* folders */
		if (mp_zip_extract(path, &e[i], &buf, &len) < 0)
			goto fail;
		snprintf(label, sizeof label, "%s: %s", path, e[i].name);
		s = mp_fsrc_mem(buf, len, label);
		f = mp_xmalloc(sizeof *f);
		if (mp_npy_read_src(s, f) < 0) {
			mp_frame_free(f);
			free(f);
			mp_fsrc_close(s);
			free(buf);
			goto fail;
		}
		mp_fsrc_close(s);
		free(buf);
		nm = mp_xstrdup(e[i].name);
		if (mp_fmt_ends(nm, ".npy"))
			nm[strlen(nm) - 4] = 0;
		mp_set_kv(f, MP_K_NPZ_NAME, nm);
		if (strcmp(nm, "gts") == 0)
			mp_set_role(f, "label");
		free(nm);
		fr[nf++] = f;
	}
	mp_zip_entries_free(e, ne);
	if (nf == 0) {
		free(fr);
		return mp_seterr("%s: the archive holds no arrays", path);
	}
	*frames = fr;
	*n = nf;
	return 0;
fail:
	mp_zip_entries_free(e, ne);
	mp_frames_free(fr, nf);
	return -1;
}
