/* sam_frame.c - embedding frames: header keys written by sam-embed and read
 * back by sam-decode (see mp_sam.h) */
#include "mp_sam.h"
#include "mp.h"
#include "mp_device.h"

#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
mp_sam_weights_id(const mp_sam *m, char *buf, size_t n)
{
	snprintf(buf, n, "%s-%s", m->cfg.arch, m->td.id);
}

static void
vec3(char *buf, size_t n, const double v[3])
{
	char a[40], b[40], c[40];
	mp_fmt_double(a, sizeof a, v[0]);
	mp_fmt_double(b, sizeof b, v[1]);
	mp_fmt_double(c, sizeof c, v[2]);
	snprintf(buf, n, "(%s,%s,%s)", a, b, c);
}

void
mp_sam_emb_header(mp_frame *e, const mp_frame *f, int off, const mp_sam *m, mp_sam_mode mode,
                  const char *interp, const char *weights, size_t nx, size_t ny, size_t nz,
                  size_t rw, size_t rh, const size_t *sel, size_t nsel)
{
	int G = m->cfg.grid, C = m->cfg.out_chans, S = m->cfg.img_size;
	char buf[512], v[3][120], id[96];
	const char *bn = strrchr(weights, '/');

	mp_frame_init(e);
	mp_frame_copy_header(e, f);
	e->dim = 4;
	e->size[0] = (size_t)G;
	e->size[1] = (size_t)G;
	e->size[2] = (size_t)C;
	e->size[3] = nsel;
	e->type = MP_FLOAT32;
	snprintf(e->kind[0], sizeof e->kind[0], "domain");
	snprintf(e->kind[1], sizeof e->kind[1], "domain");
	snprintf(e->kind[2], sizeof e->kind[2], "list");
	snprintf(e->kind[3], sizeof e->kind[3], "domain");
	/* an embedding cell covers (S/G) model pixels = (S/G) * n/r original pixels */
	double sx = (double)S / G * (double)nx / (double)rw, sy = (double)S / G * (double)ny / (double)rh;
	double d3[3][3] = { { 0 } };
	int hd[3] = { 0, 0, 0 };
	for (int a = 0; a < 3; a++)
		if (off + a < f->dim && f->has_dir[off + a]) {
			hd[a] = 1;
			memcpy(d3[a], f->dir[off + a], sizeof d3[a]);
		}
	e->space = f->space;
	memset(e->has_dir, 0, sizeof e->has_dir);
	if (f->space) {
		double ijk[3] = { 0.5 * sx - 0.5, 0.5 * sy - 0.5, nsel ? (double)sel[0] : 0 };
		for (int k = 0; k < 3; k++) {
			e->origin[k] = f->origin[k];
			for (int a = 0; a < 3; a++)
				if (hd[a])
					e->origin[k] += ijk[a] * d3[a][k];
		}
		for (int k = 0; k < 3; k++) {
			e->dir[0][k] = d3[0][k] * sx;
			e->dir[1][k] = d3[1][k] * sy;
			e->dir[3][k] = d3[2][k];
		}
		e->has_dir[0] = hd[0];
		e->has_dir[1] = hd[1];
		e->has_dir[3] = hd[2] || (hd[0] && hd[1]);
		if (!hd[2] && hd[0] && hd[1]) {
			/* a 2-D slice: the normal, unit length */
			double cr[3];
			mp_vec3_cross(d3[0], d3[1], cr);
			double l = mp_vec3_norm(cr);
			for (int k = 0; k < 3; k++)
				e->dir[3][k] = l > 0 ? cr[k] / l : 0;
		}
	}
	mp_frame_touch(e);
	mp_set_role(e, "embedding");
	mp_set_kv(e, MP_K_SAM_MODE, mp_sam_mode_name(mode));
	mp_set_kv(e, MP_K_SAM_INTERP, interp);
	mp_set_kv(e, MP_K_SAM_ARCH, m->cfg.arch);
	mp_set_kv(e, MP_K_SAM_WEIGHTS, bn ? bn + 1 : weights);
	mp_sam_weights_id(m, id, sizeof id);
	mp_set_kv(e, MP_K_SAM_WEIGHTS_ID, id);
	mp_set_kvf(e, MP_K_SAM_IMAGE_SIZES, "%zu %zu %zu", nx, ny, nz);
	mp_set_kvf(e, MP_K_SAM_IMAGE_DIM, "%d", f->dim - off >= 3 ? 3 : 2);
	if (f->space) {
		double none[3] = { 0, 0, 0 };
		for (int a = 0; a < 3; a++)
			vec3(v[a], sizeof v[a], hd[a] ? d3[a] : none);
		snprintf(buf, sizeof buf, "%s %s %s", v[0], v[1], v[2]);
		mp_set_kv(e, MP_K_SAM_IMAGE_DIRECTIONS, buf);
		vec3(buf, sizeof buf, f->origin);
		mp_set_kv(e, MP_K_SAM_IMAGE_ORIGIN, buf);
	}
	mp_set_kvf(e, MP_K_SAM_INPUT, "%zu %zu", rw, rh);
	size_t cap = 64 + nsel * 12;
	char *list = mp_xmalloc(cap);
	mp_fmt_ranges(list, cap, sel, nsel);
	mp_set_kv(e, MP_K_SAM_SLICES, list);
	free(list);
}

static int
parse_vecs(const char *s, double (*v)[3], int n)
{
	const char *p = s;
	for (int i = 0; i < n; i++) {
		while (*p == ' ')
			p++;
		if (sscanf(p, "(%lf,%lf,%lf)", &v[i][0], &v[i][1], &v[i][2]) != 3)
			return -1;
		p = strchr(p, ')');
		if (!p)
			return -1;
		p++;
	}
	return 0;
}

void
mp_sam_emb_free(mp_sam_embinfo *info)
{
	free(info->sel);
	info->sel = NULL;
}

int
mp_sam_emb_read(const mp_frame *e, mp_sam_embinfo *in)
{
	const char *s;
	char *end;

	memset(in, 0, sizeof *in);
	if (e->dim != 4 || e->type != MP_FLOAT32 || e->size[0] != e->size[1])
		return mp_seterr("embedding frame: expected float sizes G G C N, as sam-embed writes");
	in->G = (int)e->size[0];
	in->C = (int)e->size[2];
	if (!(s = mp_get_kv(e, MP_K_SAM_MODE)) || mp_sam_mode_parse(s, &in->mode))
		return mp_seterr("embedding frame: " MP_K_SAM_MODE " missing or bad");
	snprintf(in->interp, sizeof in->interp, "%s", (s = mp_get_kv(e, MP_K_SAM_INTERP)) ? s : "");
	snprintf(in->arch, sizeof in->arch, "%s", (s = mp_get_kv(e, MP_K_SAM_ARCH)) ? s : "");
	snprintf(in->weights_id, sizeof in->weights_id, "%s", (s = mp_get_kv(e, MP_K_SAM_WEIGHTS_ID)) ? s : "");
	if (!(s = mp_get_kv(e, MP_K_SAM_IMAGE_SIZES)) || sscanf(s, "%zu %zu %zu", &in->nx, &in->ny, &in->nz) != 3 ||
	    !in->nx || !in->ny || !in->nz)
		return mp_seterr("embedding frame: " MP_K_SAM_IMAGE_SIZES " missing or bad");
	if (!(s = mp_get_kv(e, MP_K_SAM_INPUT)) || sscanf(s, "%zu %zu", &in->rw, &in->rh) != 2 || !in->rw || !in->rh)
		return mp_seterr("embedding frame: " MP_K_SAM_INPUT " missing or bad");
	in->imdim = (s = mp_get_kv(e, MP_K_SAM_IMAGE_DIM)) && strcmp(s, "2") == 0 ? 2 : 3;
	if ((s = mp_get_kv(e, MP_K_SAM_IMAGE_DIRECTIONS))) {
		if (parse_vecs(s, in->dir, 3))
			return mp_seterr("embedding frame: bad " MP_K_SAM_IMAGE_DIRECTIONS);
		const char *o = mp_get_kv(e, MP_K_SAM_IMAGE_ORIGIN);
		if (!o || parse_vecs(o, &in->origin, 1))
			return mp_seterr("embedding frame: bad " MP_K_SAM_IMAGE_ORIGIN);
		in->has_space = 1;
	}
	if (!(s = mp_get_kv(e, MP_K_SAM_SLICES)))
		return mp_seterr("embedding frame: " MP_K_SAM_SLICES " missing");
	in->sel = mp_xmalloc((e->size[3] + 1) * sizeof *in->sel);
	const char *p = s;
	while (*p) {
		unsigned long a = strtoul(p, &end, 10), b = a;
		if (end == p)
			goto bad;
		p = end;
		if (*p == '-') {
			b = strtoul(p + 1, &end, 10);
			if (end == p + 1 || b < a)
				goto bad;
			p = end;
		}
		for (unsigned long z = a; z <= b; z++) {
			if (in->nsel >= e->size[3] || z >= in->nz)
				goto bad;
			in->sel[in->nsel++] = z;
		}
		if (*p == ',')
			p++;
		else if (*p)
			goto bad;
	}
	if (in->nsel != e->size[3])
		goto bad;
	return 0;
bad:
	mp_sam_emb_free(in);
	return mp_seterr("embedding frame: " MP_K_SAM_SLICES " '%s' does not match %zu slices of %zu", s, e->size[3], in->nz);
}

void
mp_sam_mask_header(mp_frame *o, const mp_frame *e, const mp_sam_embinfo *in, mp_type t, const char *role)
{
	mp_frame_init(o);
	mp_frame_copy_header(o, e);
	o->dim = in->imdim == 2 && in->nz == 1 ? 2 : 3;
	o->size[0] = in->nx;
	o->size[1] = in->ny;
	o->size[2] = in->nz;
	o->size[3] = 0;
	o->type = t;
	memset(o->has_dir, 0, sizeof o->has_dir);
	for (int a = 0; a < MP_MAXDIM; a++)
		snprintf(o->kind[a], sizeof o->kind[a], "%s", a < o->dim ? "domain" : "");
	o->space = in->has_space;
	if (in->has_space) {
		for (int a = 0; a < o->dim; a++) {
			memcpy(o->dir[a], in->dir[a], sizeof o->dir[a]);
			o->has_dir[a] = in->dir[a][0] != 0 || in->dir[a][1] != 0 || in->dir[a][2] != 0;
		}
		memcpy(o->origin, in->origin, sizeof o->origin);
	}
	/* drop the embedding's own keys */
	for (size_t i = 0; i < o->nkv;) {
		if (strncmp(o->keys[i], MP_K_SAM_PREFIX, strlen(MP_K_SAM_PREFIX)) == 0 && strcmp(o->keys[i], MP_K_SAM_WEIGHTS) != 0 &&
		    strcmp(o->keys[i], MP_K_SAM_MODE) != 0)
			mp_del_kv(o, o->keys[i]);
		else
			i++;
	}
	mp_frame_touch(o);
	mp_set_role(o, role);
}

mp_dev *
mp_sam_tool_open(mp_sam *m, const char **weights, const char *adapter, const char *devspec, long threads,
                 const char *part)
{
	const mp_sam_backend *be;
	mp_dev *dev;
	char d[256];

	mallopt(M_MMAP_THRESHOLD, 256 << 20);
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	if (!*weights)
		*weights = getenv("MEDPIPE_SAM_WEIGHTS");
	if (!*weights || !**weights)
		mp_usage_die("--weights FILE is required (or MEDPIPE_SAM_WEIGHTS)");
	if (threads < 0 || threads > 64)
		mp_usage_die("--threads %ld: want 1..64", threads);
	if (!(dev = mp_dev_open(devspec)))
		mp_die("--device: %s", mp_err());
	be = mp_dev_sam_backend(dev, (int)threads);
	if (!be || mp_sam_load_adapter(m, *weights, adapter, be))
		mp_die("%s", mp_err());
	if (adapter && mp_verbose)
		mp_note("%s: %s", adapter, m->adapter);
	if (mp_verbose) {
		mp_sam_describe(m, d, sizeof d);
		if (strcmp(be->name, "cpu") == 0)
			mp_note("%s: %s; %s on cpu, %d threads", *weights, d, part, mp_sam_threads());
		else
			mp_note("%s: %s; %s on %s", *weights, d, part, mp_dev_name(dev));
	}
	return dev;
}
