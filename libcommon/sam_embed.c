/* sam_embed.c - sam-embed's step: the chosen slices of every image frame
 * through the image encoder, over the devices of --device, into embedding
 * frames; with --slices labelled each image waits for the label frame of its
 * case next to it (mp_sam.h: mp_sam_embed_stream) */
#include "mp.h"
#include "mp_device.h"
#include "mp_filter.h"
#include "mp_sam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
	mp_sam_embed_opts *o;
	mp_sam_devs devs;       /* a model per device */
	mp_sam_mode mode;
	int interp, labelled;
	const char *interpname;
	const char *src;        /* the input being read, as named */
	/* labelled slices of the last label frame seen (case, sizes) */
	unsigned char *lab_used;
	size_t lab_nx, lab_ny, lab_nz;
	char *lab_case;
} embedder;

/* the layout of a frame to embed: nc channels, spatial axes from off */
static int
layout(const mp_frame *f, int *nc, int *off, size_t *nx, size_t *ny, size_t *nz)
{
	if (f->dim >= 3 && f->size[0] == 3 && (strstr(f->kind[0], "color") || strcmp(f->kind[0], "vector") == 0 ||
	                                       strcmp(f->kind[0], "list") == 0)) {
		*nc = 3;
		*off = 1;
		*nx = f->size[1];
		*ny = f->size[2];
		*nz = f->dim == 4 ? f->size[3] : 1;
		return 0;
	}
	*nc = 1;
	*off = 0;
	if (f->dim >= 3 && (strstr(f->kind[0], "color") || strcmp(f->kind[0], "vector") == 0))
		return mp_seterr("a %s frame of %zu samples per pixel: SAM takes grey or RGB (3) images",
		                 f->kind[0], f->size[0]);
	if (f->dim == 2 || f->dim == 3) {
		*nx = f->size[0];
		*ny = f->size[1];
		*nz = f->dim == 3 ? f->size[2] : 1;
		/* e.g. an (H,W,3) array read as H slices of 3 x W (vol-cat --no-colour) */
		if (*nx <= 4 || *ny <= 4)
			return mp_seterr("slices of %zu x %zu pixels are not images (a colour or channel axis read as x or y?)",
			                 *nx, *ny);
		return 0;
	}
	return mp_seterr("frame of %d dimensions: 2-D or 3-D grey or RGB images only", f->dim);
}

static int
parse_list(const char *s, size_t nz, unsigned char *use)
{
	const char *p = s;
	char *end;

	memset(use, 0, nz);
	while (*p) {
		long a = strtol(p, &end, 10), b;
		if (end == p || a < 0)
			return mp_seterr("--slices '%s': want all, labelled or a list like 0-9,12", s);
		p = end;
		b = a;
		if (*p == '-') {
			b = strtol(p + 1, &end, 10);
			if (end == p + 1 || b < a)
				return mp_seterr("--slices '%s': bad range", s);
			p = end;
		}
		if ((size_t)b >= nz)
			return mp_seterr("--slices '%s': slice %ld beyond the image's %zu slices", s, b, nz);
		for (long z = a; z <= b; z++)
			use[z] = 1;
		if (*p == ',')
			p++;
		else if (*p)
			return mp_seterr("--slices '%s': want all, labelled or a list like 0-9,12", s);
	}
	return 0;
}

static void
note_label(embedder *em, const mp_frame *l)
{
	size_t nx, ny, nz, lo[3], hi[3];

	if (mp_frame_xyz(l, &nx, &ny, &nz) < 0 || !mp_type_is_int(l->type))
		return;
	free(em->lab_used);
	free(em->lab_case);
	em->lab_used = mp_xcalloc(nz, 1);
	mp_label_bbox(l->data, l->type, nx, ny, nz, NULL, 0, lo, hi, em->lab_used);
	em->lab_nx = nx;
	em->lab_ny = ny;
	em->lab_nz = nz;
	em->lab_case = mp_xstrdup(mp_case(l));
}

/* one slice on one device (a thread per device: mp_dev_pool) */
typedef struct {
	embedder *em;
	const mp_frame *f;
	size_t nx, ny, plane, z;
	int nc, rc;
	float *slice, *img, *emb;
	char err[1024];
} job;

static void
run_job(void *ctx, int k, size_t i)
{
	job *j = (job *)ctx + i;
	embedder *em = j->em;
	int S = em->devs.m[k].cfg.img_size;

	mp_convert(j->slice, MP_FLOAT32, (const char *)j->f->data + j->z * j->plane * mp_type_size(j->f->type),
	           j->f->type, j->plane);
	int er = mp_sam_preprocess(em->mode, em->interp, S, j->slice, j->nx, j->ny, j->nc, j->img);
	if (!er)
		er = mp_sam_devs_encode(&em->devs, k, j->img, j->emb);
	mp_dev_note_bytes(em->devs.d[k], "encoder, slice %zu", j->z);
	j->rc = er;
	if (er)
		snprintf(j->err, sizeof j->err, "%s", mp_err());
}

static int
embed(embedder *em, const char *src, int frameno, const mp_frame *f, mp_out *o)
{
	const mp_sam *model = &em->devs.m[0];
	const char *slicestr = em->o->slices;
	int nc = 1, off = 0;
	size_t nx = 0, ny = 0, nz = 0, rw, rh;
	int S = model->cfg.img_size, G = model->cfg.grid, C = model->cfg.out_chans;

	if (layout(f, &nc, &off, &nx, &ny, &nz))
		return mp_preerr("%s: frame %d", src, frameno);
	unsigned char *use = mp_xmalloc(nz);
	if (strcmp(slicestr, "all") == 0)
		memset(use, 1, nz);
	else if (em->labelled) {
		if (!em->lab_used || strcmp(em->lab_case, mp_case(f)) != 0 || em->lab_nx != nx || em->lab_ny != ny ||
		    em->lab_nz != nz) {
			free(use);
			return mp_seterr("%s: frame %d: --slices labelled: no label frame of case '%s' with the image's sizes next to it",
			                 src, frameno, mp_case(f));
		}
		memcpy(use, em->lab_used, nz);
	} else if (parse_list(slicestr, nz, use)) {
		free(use);
		return mp_preerr("%s: frame %d", src, frameno);
	}
	size_t nsel = 0, *sel = mp_xmalloc((nz + 1) * sizeof *sel);
	for (size_t z = 0; z < nz; z++)
		if (use[z])
			sel[nsel++] = z;
	free(use);
	mp_sam_input_size(em->mode, S, nx, ny, &rw, &rh);
	mp_frame e;
	mp_sam_emb_header(&e, f, off, model, em->mode, em->interpname, em->o->weights, nx, ny, nz, rw, rh, sel, nsel);
	if (em->o->adapter)
		mp_set_kv(&e, MP_K_SAM_ADAPTER, em->o->adapter);
	else
		mp_del_kv(&e, MP_K_SAM_ADAPTER);
	int rc = mp_out_header(o, &e);
	size_t plane = nx * ny * (size_t)nc;
	int ndev = em->devs.n;
	job jb[MP_SAM_MAXDEV];
	for (int k = 0; k < ndev; k++) {
		jb[k] = (job){ .em = em, .f = f, .nx = nx, .ny = ny, .nc = nc, .plane = plane };
		jb[k].slice = mp_xmalloc(plane * sizeof(float));
		jb[k].img = mp_xmalloc((size_t)3 * S * S * sizeof(float));
		jb[k].emb = mp_xmalloc((size_t)C * G * G * sizeof(float));
	}
	int tty = isatty(2);
	/* in rounds of ndev slices, slice i on device i mod ndev */
	for (size_t i0 = 0; rc == 0 && i0 < nsel; i0 += (size_t)ndev) {
		int nk = nsel - i0 < (size_t)ndev ? (int)(nsel - i0) : ndev;
		if (tty)
			fprintf(stderr, "\rsam-embed: %s: frame %d: slice %zu (%zu of %zu)   ", src, frameno, sel[i0], i0 + 1, nsel);
		for (int k = 0; k < nk; k++)
			jb[k].z = sel[i0 + (size_t)k];
		mp_dev_pool(ndev, (size_t)nk, NULL, run_job, jb);
		for (int k = 0; rc == 0 && k < nk; k++) {
			if (jb[k].rc) {
				mp_seterr("%s: frame %d: slice %zu: %s", src, frameno, jb[k].z, jb[k].err);
				rc = -1;
			} else
				rc = mp_out_data(o, jb[k].emb, (size_t)C * G * G * sizeof(float));
		}
	}
	if (tty)
		fprintf(stderr, "\n");
	for (int k = 0; k < ndev; k++) {
		free(jb[k].slice);
		free(jb[k].img);
		free(jb[k].emb);
	}
	free(sel);
	mp_frame_free(&e);
	return rc;
}

/* ------------------------------------------------- the frames of a stream */
static int
is_label(const embedder *em, const mp_frame *f)
{
	return em->labelled && strcmp(mp_role(f), "label") == 0;
}

static int
in_input(void *ctx, const char *path)
{
	((embedder *)ctx)->src = path;
	return 0;
}

/* images and (with --slices labelled) labels are held, the rest passes */
static int
frame_role(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	embedder *em = ctx;

	(void)in;
	(void)c;
	return is_label(em, f) || strcmp(mp_role(f), em->o->role) == 0 ? MP_CASE_HOLD : MP_CASE_PASS;
}

/* what is held is an image waiting for its label: another image ends it */
static int
frame_check(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	(void)in;
	return c->n && !is_label(ctx, f) ? MP_CASE_END : 0;
}

/* a label at once; an image when its slices are known (the label of its case
 * was the last one seen), else it waits for the next frame */
static int
frame_ready(void *ctx, const mp_heldcase *c)
{
	embedder *em = ctx;
	const mp_frame *f = &c->f[c->n - 1];

	return is_label(em, f) || !em->labelled || (em->lab_case && strcmp(em->lab_case, mp_case(f)) == 0);
}

/* the labels noted, the images embedded, the labels out after them */
static int
emit_case(void *ctx, mp_heldcase *c, mp_out *o)
{
	embedder *em = ctx;
	size_t i;

	for (i = 0; i < c->n; i++)
		if (is_label(em, &c->f[i]))
			note_label(em, &c->f[i]);
	for (i = 0; i < c->n; i++)
		if (!is_label(em, &c->f[i]) && embed(em, em->src, c->fno[i], &c->f[i], o))
			return -1;
	for (i = 0; i < c->n; i++)
		if (is_label(em, &c->f[i]) && mp_out_frame(o, &c->f[i]) < 0)
			return -1;
	return 0;
}

void
mp_sam_embed_stream(mp_sam_embed_opts *opt, char **args, int nargs)
{
	embedder *em = mp_xcalloc(1, sizeof *em);
	mp_rs_method rm;

	em->o = opt;
	if (opt->mode && mp_sam_mode_parse(opt->mode, &em->mode))
		mp_usage_die("--mode: %s", mp_err());
	if (opt->interp && mp_rs_parse(opt->interp, &rm))
		mp_usage_die("--interp: %s", mp_err());
	mp_out *o = mp_out_stdout();
	mp_sam_devs_open(&em->devs, &opt->weights, opt->adapter, opt->devspec, opt->threads, "encoder");
	/* the model's own preprocessing unless --mode says otherwise */
	const mp_sam *model = &em->devs.m[0];
	if (!opt->mode)
		em->mode = mp_sam_model_mode(model);
	em->interpname = opt->interp ? opt->interp : mp_sam_mode_interp(em->mode);
	if (mp_rs_parse(em->interpname, &rm))
		mp_usage_die("--interp: %s", mp_err());
	em->interp = (int)rm;
	em->labelled = strcmp(opt->slices, "labelled") == 0;
	mp_read_frames_wait(args, nargs, o,
	               &(mp_reader){ .role = frame_role, .check = frame_check, .fn = emit_case, .input = in_input,
	                             .per_input = 1, .empty_ok = 1 },
	               &(mp_reader_wait){ .ready = frame_ready, .ordered = 1 }, em);
	mp_sam_devs_free(&em->devs);
	free(em->lab_used);
	free(em->lab_case);
	free(em);
	free(args);
}
