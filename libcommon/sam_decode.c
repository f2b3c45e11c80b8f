/* sam_decode.c - sam-decode's step: the prompts of every embedding frame
 * (given, from a 3-D box slice by slice, or from the label frame of its case)
 * queued, decoded over the devices of --device, and painted into a mask frame
 * on the image grid; with --from-label an embedding frame waits for the label
 * frame of its case next to it (mp_sam_prompt.h: mp_sam_decode_stream) */
#include "mp.h"
#include "mp_device.h"
#include "mp_sam.h"
#include "mp_sam_prompt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	mp_sam_decode_opts *o;
	mp_sam_devs devs;       /* a model per device; devs.m[0] the first */
	char model_id[96];
	const char *src;        /* the input being read, as named */
	mp_frame lab;           /* the last label frame of this input */
	int have_lab;
} decoder;

/* a prompt queued for decoding (its mask is not needed at once) */
typedef struct {
	long z, value;
	mp_sam_prompt p;
	float fp[2 * MP_SP_MAXPTS];
	int plab[MP_SP_MAXPTS];
	float *plane;           /* postprocessed values on the slice grid (--logits) */
	unsigned char *mb;      /* or the mask alone */
	float iou;
	int rc;
	char err[1024];
} task;

/* ---------------------------------------------------------------- decoding */
typedef struct {
	decoder *dc;
	const mp_frame *e;      /* embedding frame with data */
	mp_sam_embinfo info;
	long *zidx;             /* image slice -> embedding index or -1 */
	const char *src;
	int frameno;
	mp_sam_mode thr;
	/* outputs */
	int32_t *mask;
	float *logit;
	char *iou;
	size_t ioulen, ioucap;
	long maxval;
	/* prompts waiting to be decoded, and the device of each */
	task *q;
	int *qdev;
	size_t nq, qcap;
	unsigned char *bin;     /* scratch: one prompt's mask */
} job;

static int
job_fail(job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int
job_fail(job *j, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	return mp_seterr("%s: frame %d: %s", j->src, j->frameno, buf);
}

/* decode the n queued prompts from i on, all of one slice, on device k:
 * their masks on the slice grid (mp_sam_decode_masks) */
static void
decode_run(job *j, int k, size_t i, size_t n)
{
	mp_sam_devs *devs = &j->dc->devs;
	mp_sam *m = &devs->m[k];
	int multimask = j->dc->o->multimask, wantlogits = j->dc->o->logits;
	mp_sam_embinfo *in = &j->info;
	int G = m->cfg.grid, C = m->cfg.out_chans;
	const float *emb = (const float *)j->e->data + (size_t)j->zidx[j->q[i].z] * C * G * G;
	mp_sam_prompt p[32];
	float *planes[32], iou[32];
	unsigned char *mb[32];
	mp_sam_masks s = { multimask, in->mode, j->thr == MP_SAM_MEDSAM ? 1 : j->thr == MP_SAM_LITEMEDSAM ? 2 : 0,
		           in->rw, in->rh, in->nx, in->ny, wantlogits ? NULL : mb, j->thr != MP_SAM_SAM ? 0.5f : 0.0f };
	int rc;

	for (size_t q = 0; q < n; q++) {
		task *t = &j->q[i + q];
		t->p.pts = t->fp;
		t->p.labels = t->plab;
		p[q] = t->p;
		if (wantlogits)
			t->plane = planes[q] = mp_xmalloc(in->nx * in->ny * sizeof(float));
		else
			t->mb = mb[q] = mp_xmalloc(in->nx * in->ny);
	}
	double t0 = mp_clock(), c0 = mp_cpu_clock();
	rc = mp_sam_devs_decode_masks(devs, k, emb, n, p, &s, planes, iou);
	if (rc == 0)
		mp_note("decoder, slice %ld: %zu prompt%s in %.1f ms, %.1f ms CPU (masks on the %zux%zu slice grid)",
		        j->q[i].z, n, n == 1 ? "" : "s", (mp_clock() - t0) * 1e3, (mp_cpu_clock() - c0) * 1e3, in->nx,
		        in->ny);
	mp_dev_note_bytes(devs->d[k], "decoder, slice %ld, %zu prompts", j->q[i].z, n);
	for (size_t q = 0; q < n; q++) {
		task *t = &j->q[i + q];
		t->iou = iou[q];
		if (rc) {
			t->rc = -1;
			snprintf(t->err, sizeof t->err, "slice %ld: %s", t->z, mp_err());
		}
	}
}

/* decode queued prompt i on device k (mp_dev_pool_fn; a thread per device) */
static void
decode_task(void *ctx, int k, size_t i)
{
	decode_run(ctx, k, i, 1);
}

/* decode the queued prompts over the devices, then paint their masks into
 * the job's mask in queue order; the last one's binary mask is left in
 * j->bin. 0, or -1 + mp_err of the first prompt that failed */
static int
flush(job *j)
{
	size_t nx = j->info.nx, ny = j->info.ny, i;
	int rc = 0, ndev = j->dc->devs.n;

	if (ndev == 1)   /* the prompts of a slice as one batch */
		for (i = 0; i < j->nq;) {
			size_t n = 1;
			while (i + n < j->nq && n < 32 && j->q[i + n].z == j->q[i].z)
				n++;
			decode_run(j, 0, i, n);
			i += n;
		}
	else
		mp_dev_pool(ndev, j->nq, j->qdev, decode_task, j);
	for (i = 0; i < j->nq && rc == 0; i++) {
		task *t = &j->q[i];
		if (t->rc) {
			rc = mp_seterr("%s", t->err);
			break;
		}
		float th = j->thr != MP_SAM_SAM ? 0.5f : 0.0f;
		int32_t *mk = j->mask + (size_t)t->z * nx * ny;
		float *lg = j->logit ? j->logit + (size_t)t->z * nx * ny : NULL;
		if (t->mb) {
			/* mostly zeros: eight bytes at a time */
			size_t q = 0;
			for (; q + 8 <= nx * ny; q += 8) {
				uint64_t w8;
				memcpy(&w8, t->mb + q, 8);
				if (w8)
					for (int b = 0; b < 8; b++)
						if (t->mb[q + b])
							mk[q + b] = (int32_t)t->value;
			}
			for (; q < nx * ny; q++)
				if (t->mb[q])
					mk[q] = (int32_t)t->value;
			if (i + 1 == j->nq)   /* the last one's mask is kept */
				memcpy(j->bin, t->mb, nx * ny);
		} else
			for (size_t q = 0; q < nx * ny; q++) {
				j->bin[q] = t->plane[q] > th;
				if (j->bin[q])
					mk[q] = (int32_t)t->value;
				if (lg && t->plane[q] > lg[q])
					lg[q] = t->plane[q];
			}
		if (t->value > j->maxval)
			j->maxval = t->value;
		char item[96];
		int n = snprintf(item, sizeof item, "%s%ld@%ld=%.6g", j->ioulen ? "," : "", t->value, t->z, (double)t->iou);
		if (j->ioulen + (size_t)n + 1 > j->ioucap) {
			j->ioucap = 2 * j->ioucap + (size_t)n + 64;
			j->iou = mp_xrealloc(j->iou, j->ioucap);
		}
		memcpy(j->iou + j->ioulen, item, (size_t)n + 1);
		j->ioulen += (size_t)n;
		mp_note("slice %ld label %ld: IoU prediction %.4f", t->z, t->value, (double)t->iou);
	}
	for (i = 0; i < j->nq; i++) {
		free(j->q[i].plane);
		free(j->q[i].mb);
	}
	j->nq = 0;
	return rc;
}

/* one prompt on image slice z (mp_sp_decode_fn): checked and queued; the
 * queue is decoded when the caller wants the mask (bin), or when it holds
 * 16 prompts per device (one device: 32, the prompts of a slice decoded as
 * one batch) */
static int
run_prompt(void *ctx, long z, const double *box, int npts, const double *pts, const int *plab, long value,
           unsigned char *bin)
{
	job *j = ctx;
	mp_sam_embinfo *in = &j->info;
	int ndev = j->dc->devs.n;
	char err[1024];

	if (j->nq == j->qcap) {
		j->qcap = 2 * j->qcap + 16;
		j->q = mp_xrealloc(j->q, j->qcap * sizeof *j->q);
		j->qdev = mp_xrealloc(j->qdev, j->qcap * sizeof *j->qdev);
	}
	task *t = &j->q[j->nq];
	memset(t, 0, sizeof *t);
	if (z < 0 || (size_t)z >= in->nz)
		mp_seterr("prompt on slice %ld: the image has %zu slices", z, in->nz);
	else if (j->zidx[z] < 0)
		mp_seterr("prompt on slice %ld: that slice has no embedding (sam-embed --slices)", z);
	else if (mp_sp_scale(in, j->dc->devs.m[0].cfg.img_size, z, box, npts, pts, plab, &t->p, t->fp) == 0)
		goto ok;
	/* the prompts before it first, as they would have been */
	snprintf(err, sizeof err, "%s", mp_err());
	if (flush(j))
		return -1;
	return mp_seterr("%s", err);
ok:
	t->z = z;
	t->value = value;
	if (npts)
		memcpy(t->plab, plab, (size_t)npts * sizeof *plab);
	j->qdev[j->nq] = (int)(j->zidx[z] % ndev);
	j->nq++;
	if (bin || j->nq >= (size_t)(ndev == 1 ? 32 : 16 * ndev)) {
		if (flush(j))
			return -1;
		if (bin)
			memcpy(bin, j->bin, in->nx * in->ny);
	}
	return 0;
}

static int
run_job(job *j, const mp_frame *lab, mp_out *o)
{
	mp_sam_decode_opts *opt = j->dc->o;
	mp_sam_embinfo *in = &j->info;
	size_t nx = in->nx, ny = in->ny, nz = in->nz, np = nx * ny;
	int rc = -1;

	j->mask = mp_xcalloc(np * nz, sizeof *j->mask);
	if (opt->logits) {
		j->logit = mp_xmalloc(np * nz * sizeof(float));
		for (size_t i = 0; i < np * nz; i++)
			j->logit[i] = j->thr != MP_SAM_SAM ? 0.0f : -100.0f;
	}
	j->bin = mp_xmalloc(np);

	if (mp_sp_run(&opt->prompts, nx, ny, nz, opt->grow, run_prompt, j) || flush(j)) {
		mp_preerr("%s: frame %d", j->src, j->frameno);
		goto out;
	}
	if (lab) {
		size_t lx, ly, lz;
		if (mp_frame_xyz(lab, &lx, &ly, &lz) < 0 || !mp_type_is_int(lab->type) || lx != nx || ly != ny || lz != nz) {
			job_fail(j, "--from-label: the label frame of case '%s' does not match the image's %zux%zux%zu integer grid",
			         mp_case(lab), nx, ny, nz);
			goto out;
		}
		if (mp_sp_from_label(lab, nx, ny, in->sel, in->nsel, opt->shift, opt->seed, run_prompt, j) || flush(j)) {
			mp_preerr("%s: frame %d", j->src, j->frameno);
			goto out;
		}
	}
	/* the mask frame */
	mp_type t = j->maxval <= 255 ? MP_UINT8 : j->maxval <= 65535 ? MP_UINT16 : MP_INT32;
	mp_frame mf;
	mp_sam_mask_header(&mf, j->e, in, t, "mask");
	mp_set_kv(&mf, MP_K_SAM_THRESHOLD, mp_sam_mode_name(j->thr));
	mp_set_kv(&mf, MP_K_SAM_IOU, j->iou ? j->iou : "");
	if (mp_frame_alloc(&mf) < 0) {
		mp_frame_free(&mf);
		goto out;
	}
	mp_convert(mf.data, t, j->mask, MP_INT32, np * nz);
	rc = mp_out_frame(o, &mf);
	mp_frame_free(&mf);
	if (rc == 0 && opt->logits) {
		mp_frame lf;
		mp_sam_mask_header(&lf, j->e, in, MP_FLOAT32, "logits");
		mp_set_kv(&lf, MP_K_SAM_THRESHOLD, mp_sam_mode_name(j->thr));
		lf.data = j->logit;
		rc = mp_out_frame(o, &lf);
		lf.data = NULL;
		mp_frame_free(&lf);
	}
out:
	for (size_t i = 0; i < j->nq; i++) {
		free(j->q[i].plane);
		free(j->q[i].mb);
	}
	j->nq = 0;
	free(j->bin);
	free(j->mask);
	free(j->logit);
	free(j->iou);
	j->bin = NULL;
	j->mask = NULL;
	j->logit = NULL;
	j->iou = NULL;
	return rc;
}

/* the embedding frame e (frame frameno of src) checked against the model;
 * the job's tables made. 0, or -1 + mp_err */
static int
job_init(job *j, decoder *dc, const mp_frame *e, const char *src, int frameno)
{
	const mp_sam *model = &dc->devs.m[0];
	mp_sam_decode_opts *opt = dc->o;

	memset(j, 0, sizeof *j);
	j->dc = dc;
	j->e = e;
	j->src = src;
	j->frameno = frameno;
	if (mp_sam_emb_read(e, &j->info))
		return mp_preerr("%s: frame %d", src, frameno);
	if (j->info.G != model->cfg.grid || j->info.C != model->cfg.out_chans ||
	    strcmp(j->info.weights_id, dc->model_id) != 0)
		return mp_seterr("%s: frame %d: embeddings made by weights %s%s%s (%s), not by %s%s%s (%s)", src, frameno,
		                 mp_get_kv(e, MP_K_SAM_WEIGHTS) ? mp_get_kv(e, MP_K_SAM_WEIGHTS) : "?",
		                 mp_get_kv(e, MP_K_SAM_ADAPTER) ? " with adapter " : "",
		                 mp_get_kv(e, MP_K_SAM_ADAPTER) ? mp_get_kv(e, MP_K_SAM_ADAPTER) : "",
		                 j->info.weights_id, opt->weights, opt->adapter ? " with adapter " : "",
		                 opt->adapter ? opt->adapter : "", dc->model_id);
	j->thr = j->info.mode;
	if (opt->threshold && mp_sam_mode_parse(opt->threshold, &j->thr))
		return -1;
	j->zidx = mp_xmalloc(j->info.nz * sizeof *j->zidx);
	for (size_t z = 0; z < j->info.nz; z++)
		j->zidx[z] = -1;
	for (size_t i = 0; i < j->info.nsel; i++)
		j->zidx[j->info.sel[i]] = (long)i;
	return 0;
}

static void
job_free(job *j)
{
	mp_sam_emb_free(&j->info);
	free(j->zidx);
	free(j->q);
	free(j->qdev);
	memset(j, 0, sizeof *j);
}

/* ------------------------------------------------- the frames of a stream */
static int
is_label(const decoder *dc, const mp_frame *f)
{
	return dc->o->fromlabel && strcmp(mp_role(f), "label") == 0;
}

static int
is_emb(const mp_frame *f)
{
	return strcmp(mp_role(f), "embedding") == 0;
}

static int
in_input(void *ctx, const char *path)
{
	decoder *dc = ctx;

	dc->src = path;
	mp_frame_free(&dc->lab);
	dc->have_lab = 0;
	return 0;
}

/* embeddings and (with --from-label) labels are held, the rest passes, and
 * so do the labels of other cases while an embedding waits for its own */
static int
frame_role(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	(void)in;
	if (is_label(ctx, f))
		return c->n && strcmp(c->name, mp_case(f)) != 0 ? MP_CASE_PASS : MP_CASE_HOLD;
	return is_emb(f) ? MP_CASE_HOLD : MP_CASE_PASS;
}

/* what is held is an embedding waiting for its label: another one ends it */
static int
frame_check(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	(void)ctx;
	(void)in;
	return c->n && is_emb(f) ? MP_CASE_END : 0;
}

/* the label of an embedding frame: the one held with it, or the last one of
 * this input when that is of its case; NULL without --from-label */
static const mp_frame *
label_for(decoder *dc, const mp_heldcase *c, const mp_frame *e)
{
	for (size_t i = 0; i < c->n; i++)
		if (is_label(dc, &c->f[i]))
			return &c->f[i];
	return dc->have_lab && strcmp(mp_case(&dc->lab), mp_case(e)) == 0 ? &dc->lab : NULL;
}

/* a label at once; embeddings checked as they come, and decoded when their
 * prompts are known (no --from-label, or the last label was of their case) */
static int
frame_ready(void *ctx, const mp_heldcase *c)
{
	decoder *dc = ctx;
	const mp_frame *f = &c->f[c->n - 1];
	job j;

	if (is_label(dc, f))
		return 1;
	int rc = job_init(&j, dc, f, dc->src, c->fno[c->n - 1]);
	job_free(&j);
	if (rc)
		return -1;
	return !dc->o->fromlabel || label_for(dc, c, f) != NULL;
}

/* the embedding frame's masks, then its label frame out (kept for the
 * embeddings of its case that follow) */
static int
emit_case(void *ctx, mp_heldcase *c, mp_out *o)
{
	decoder *dc = ctx;
	size_t i;

	for (i = 0; i < c->n; i++) {
		const mp_frame *lab = label_for(dc, c, &c->f[i]);
		job j;
		int rc;
		if (!is_emb(&c->f[i]))
			continue;
		if (job_init(&j, dc, &c->f[i], dc->src, c->fno[i]))
			return -1;
		if (dc->o->fromlabel && !lab)
			rc = job_fail(&j, "--from-label: no label frame of case '%s' next to the embeddings", mp_case(j.e));
		else
			rc = run_job(&j, dc->o->fromlabel ? lab : NULL, o);
		for (int k = 0; k < dc->devs.n; k++)
			mp_sam_decode_forget(&dc->devs.m[k]);
		job_free(&j);
		if (rc)
			return -1;
	}
	for (i = 0; i < c->n; i++)
		if (is_label(dc, &c->f[i])) {
			if (mp_out_frame(o, &c->f[i]) < 0)
				return -1;
			mp_frame_free(&dc->lab);
			dc->lab = c->f[i];
			dc->have_lab = 1;
			mp_frame_init(&c->f[i]);
		}
	return 0;
}

void
mp_sam_decode_stream(mp_sam_decode_opts *opt, char **args, int nargs)
{
	decoder *dc = mp_xcalloc(1, sizeof *dc);
	mp_sam_mode dummy;

	dc->o = opt;
	if (opt->threshold && mp_sam_mode_parse(opt->threshold, &dummy))
		mp_usage_die("--threshold: %s", mp_err());
	if (opt->shift < 0 || opt->grow < 0)
		mp_usage_die("--shift and --grow must not be negative");
	if (opt->boxes && mp_sp_read_file(&opt->prompts, opt->boxes))
		mp_die("%s", mp_err());
	if (!opt->fromlabel && opt->prompts.n == 0 && opt->prompts.nb3 == 0)
		mp_usage_die("no prompt: give --box, --box3d, --point, --boxes or --from-label");
	mp_out *o = mp_out_stdout();
	mp_sam_devs_open(&dc->devs, &opt->weights, opt->adapter, opt->devspec, opt->threads, "decoder");
	mp_sam_weights_id(&dc->devs.m[0], dc->model_id, sizeof dc->model_id);
	/* 16 MiB per ViT-B slice: embeddings of a whole CT go to a mapped spool
	 * file rather than the heap */
	mp_read_frames_wait(args, nargs, o,
	               &(mp_reader){ .role = frame_role, .check = frame_check, .fn = emit_case, .input = in_input,
	                             .per_input = 1, .empty_ok = 1 },
	               &(mp_reader_wait){ .ready = frame_ready, .spool = (size_t)1 << 30 }, dc);
	mp_frame_free(&dc->lab);
	mp_sam_devs_free(&dc->devs);
	mp_sp_free(&opt->prompts);
	free(dc);
	free(args);
}
