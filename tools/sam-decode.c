/* sam-decode - the SAM / MedSAM prompt encoder and mask decoder: embeddings
 * plus box or point prompts to masks on the original slice grid */
#include "mp.h"
#include "mp_cl.h"
#include "mp_device.h"
#include "mp_sam.h"
#include "mp_sam_prompt.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static mp_sam_prompts prompts;
static const char *weights, *thrstr, *boxfile;
static int fromlabel, multimask, wantlogits;
static long shift, seed = 1, threads, grow;
static const char *devspec, *adapter;
static mp_sam_devs devs;   /* a model per device; devs.m[0] the first */

static int
opt_box(void *ctx, const char *arg)
{
	double v[6];
	int n = mp_parse_doubles(arg, v, 6);

	(void)ctx;
	if (n < 0)
		return -1;
	return mp_sp_add_box(&prompts, v, n, (long)prompts.n + 1);
}

static int
opt_box3(void *ctx, const char *arg)
{
	double v[7];
	int n = mp_parse_doubles(arg, v, 7);

	(void)ctx;
	if (n < 0)
		return -1;
	return mp_sp_add_box3(&prompts, v, n, (long)prompts.nb3 + 1);
}

static int
opt_point(void *ctx, const char *arg)
{
	double v[4];
	int n = mp_parse_doubles(arg, v, 4);

	(void)ctx;
	return mp_sp_add_point(&prompts, v, n);
}

static const mp_opt opts[] = {
	{ "weights", 'w', MP_OPT_STR, &weights, NULL, "FILE", "The checkpoint that made the embeddings (see sam-embed(1)). Default: $MEDPIPE_SAM_WEIGHTS." },
	{ "adapter", 'a', MP_OPT_STR, &adapter, NULL, "DIR", "The adapter folder the embeddings were made with (sam-embed --adapter DIR, written by sam-tune --adapter-out DIR): a PEFT LoRA adapter's modules_to_save (the mask decoder sam-tune --mode lora trained) replace the checkpoint's tensors, its LoRA is merged; Medical-SAM-Adapter's adapters (sam-tune --mode adapter) act in the encoder only, and their mask decoder is in sam-tune's --out checkpoint." },
	{ "box", 'b', MP_OPT_CALL, NULL, opt_box, "X0,Y0,X1,Y1[,Z[,LABEL]]", "A box prompt in pixel indices of the original slice (x0,y0 top left, x1,y1 bottom right, inclusive as MedSAM's boxes), on slice Z (0-based; may be left out for a 2-D image); its mask gets LABEL (default: the prompt's number, from 1). Repeatable." },
	{ "box3d", 'B', MP_OPT_CALL, NULL, opt_box3, "X0,Y0,Z0,X1,Y1,Z1[,LABEL]", "A 3-D box, segmented as LiteMedSAM does: the box prompts the middle slice; each next slice up to Z1 and down to Z0 is prompted with the bounding box of the previous slice's mask, grown by --grow pixels (the middle box when that mask is empty). Repeatable." },
	{ "point", 'p', MP_OPT_CALL, NULL, opt_point, "X,Y[,Z[,L]]", "A point prompt, L 1 (foreground, default) or 0 (background). Points of a slice join that slice's first box prompt, or form a prompt of their own. Repeatable." },
	{ "boxes", 0, MP_OPT_STR, &boxfile, NULL, "FILE", "Boxes from a file: a CSV of lines X0,Y0,X1,Y1[,Z[,LABEL]] (a header line is skipped), or a LiteMedSAM .npz whose 'boxes' array is (N,4) for 2-D boxes or (N,6) [x0,y0,z0,x1,y1,z1] for 3-D boxes (propagated as --box3d); labels 1..N." },
	{ "from-label", 'l', MP_OPT_FLAG, &fromlabel, NULL, NULL, "Derive the prompts from the label frame of the same case in the stream: the bounding box of every label on every embedded slice (as MedSAM's evaluation); the mask gets the label's value. The label frame passes through after the mask." },
	{ "shift", 0, MP_OPT_INT, &shift, NULL, "N", "With --from-label: move every side of each box outwards by a random 0..N pixels (MedSAM's bbox_shift), clipped to the image." },
	{ "seed", 0, MP_OPT_INT, &seed, NULL, "N", "Seed of --shift (default 1)." },
	{ "grow", 0, MP_OPT_INT, &grow, NULL, "N", "With 3-D boxes: grow the box taken from the previous slice's mask by N pixels on every side, clipped to the image (default 0; LiteMedSAM grows it by 3 pixels of its 256-pixel input, i.e. about 3*max(W,H)/256)." },
	{ "threshold", 'T', MP_OPT_STR, &thrstr, NULL, "RULE", "'medsam': sigmoid of the low-resolution logits resized bilinearly, mask where > 0.5 (MedSAM's inference); 'litemedsam': logits resized bilinearly, then sigmoid, mask where > 0.5 (LiteMedSAM's inference); 'sam': logits resized, mask where > 0 (SAM's predictor). Default: the embeddings' mode." },
	{ "multimask", 0, MP_OPT_FLAG, &multimask, NULL, NULL, "Use SAM's three-mask output and keep the mask with the highest predicted IoU (default: the single-mask output, as MedSAM)." },
	{ "logits", 0, MP_OPT_FLAG, &wantlogits, NULL, NULL, "Also write a frame of role logits after each mask: float, on the same grid, per voxel the largest value over the prompts (probability for --threshold medsam or litemedsam, logit for sam; 0 or -100 where no prompt was)." },
	{ "threads", 't', MP_OPT_INT, &threads, NULL, "N", "Threads of the C path (default: every CPU)." },
	{ "device", 0, MP_OPT_CALL, &devspec, mp_sam_devs_optfn, "DEV", MP_DEV_HELP MP_SAM_DEVS_HELP("sam-decode", "the prompts go to the devices by slice (the i-th embedded slice to device i mod count), a model on each, and the masks are painted in the prompts' order, the same bytes as one device of that kind gives. The slices of a 3-D box run one after another, each prompted from the previous one's mask.") },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"sam-decode",
	"SAM / MedSAM mask decoder: embeddings plus box or point prompts to masks",
	"[options] --weights FILE [FILE...]",
	"sam-decode reads embedding frames made by sam-embed(1) and prompts, runs the prompt encoder and "
	"mask decoder of Segment Anything (SAM) or MedSAM, and writes for each embedding frame one mask "
	"frame on the original image grid (the sizes, directions, origin and keys the image had: "
	"vol-restore(1) can take it further back), role mask, uint8 (uint16 or int32 when a label needs "
	"it), each prompt's mask painted with its label, later prompts over earlier ones. Slices without "
	"a prompt are 0. The predicted IoU of every prompt is recorded in the key " MP_K_SAM_IOU " "
	"(LABEL@SLICE=IOU, ...). Frames other than embeddings pass through.\n\n"
	"Prompts are given in pixel indices of the original slice (x to the right, y down, as numpy's "
	"[y, x]): --box, --point, --box3d, --boxes (CSV or LiteMedSAM .npz), or derived from a label "
	"frame with --from-label. They are mapped into the model's input as SAM's ResizeLongestSide (sam "
	"mode), MedSAM's box/W*1024 (medsam mode) or LiteMedSAM's box/max(W,H)*256 (litemedsam mode) do. "
	"The model (ViT SAM / MedSAM, LiteMedSAM or MobileSAM) is recognised from the checkpoint. The same prompts apply to every embedding frame "
	"of the input.\n\n"
	"Errors: embeddings made by other weights than --weights and --adapter (" MP_K_SAM_WEIGHTS_ID "), a box outside "
	"the image, or a prompt on a slice without an embedding: one line, exit status 1.\n\n"
	"Weights: see sam-embed(1) (SAM sam_vit_b_01ec64.pth, MedSAM medsam_vit_b.pth, .safetensors); "
	"--adapter DIR as there (sam-tune --adapter-out): give sam-decode the --weights and --adapter that "
	"sam-embed had.\n\n"
	"Devices: --device chooses where the decoder's matrix products, layer norms, GELU and attention "
	"run, as for sam-embed(1): the C path (OpenBLAS) or OpenCL kernels through the same model code, "
	"agreeing within float rounding (logits within 1e-5). --verbose names the device. With several "
	"devices (--device opencl:all or opencl:A,B,...) the prompts waiting to be decoded (up to 16 per "
	"device) run on the devices of their slices at once, a thread per device; the slices of a 3-D box "
	"depend on each other and run one at a time. On the C path the prompts of one slice (up to 32 at a time) "
	"are decoded as a batch, a prompt per thread (--threads), computing only the mask that is kept.\n\n"
	"Memory: an embedding frame is 16 MiB per slice (ViT-B); one of more than 1 GiB (the embeddings "
	"of a whole CT) is copied to an unlinked file in $TMPDIR (default /tmp) and mapped rather than "
	"held on the heap, so the kernel can page it (MEDPIPE_SPOOL_BYTES sets the threshold in bytes).",
	"$ sam-decode -w medsam_vit_b.pth --box 120,80,260,210,6 < emb.nrrd > mask.nrrd\n"
	"Segments the box on slice 6 (of a 2-D image, leave the slice out).\n"
	"$ sam-decode -w medsam_vit_b.pth --box3d 100,90,2,180,160,10 < emb.nrrd | vol-save --as mask=pred.nii.gz\n"
	"Segments a 3-D box slice by slice from the middle outwards, as LiteMedSAM.",
	"sam-embed(1), seg-eval(1), vol-restore(1), medpipe-vol(5)",
	opts, 1
};

#define model (devs.m[0])
static char model_id[96];

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
	mp_frame e;             /* embedding frame with data */
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
	mp_sam *m = &devs.m[k];
	mp_sam_embinfo *in = &j->info;
	int G = m->cfg.grid, C = m->cfg.out_chans;
	const float *emb = (const float *)j->e.data + (size_t)j->zidx[j->q[i].z] * C * G * G;
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
	while ((rc = mp_sam_decode_masks(m, emb, n, p, &s, planes, iou)) && mp_dev_sam_retry(devs.d[k], m, (int)threads))
		;
	if (mp_dev_cl(devs.d[k]))
		mp_cl_note_bytes(mp_dev_cl(devs.d[k]), "decoder, slice %ld, %zu prompts", j->q[i].z, n);
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
	int rc = 0;

	if (devs.n == 1)   /* the prompts of a slice as one batch */
		for (i = 0; i < j->nq;) {
			size_t n = 1;
			while (i + n < j->nq && n < 32 && j->q[i + n].z == j->q[i].z)
				n++;
			decode_run(j, 0, i, n);
			i += n;
		}
	else
		mp_dev_pool(devs.n, j->nq, j->qdev, decode_task, j);
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
	else if (mp_sp_scale(in, model.cfg.img_size, z, box, npts, pts, plab, &t->p, t->fp) == 0)
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
	j->qdev[j->nq] = (int)(j->zidx[z] % devs.n);
	j->nq++;
	if (bin || j->nq >= (size_t)(devs.n == 1 ? 32 : 16 * devs.n)) {
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
	mp_sam_embinfo *in = &j->info;
	size_t nx = in->nx, ny = in->ny, nz = in->nz, np = nx * ny;
	int rc = -1;

	j->mask = mp_xcalloc(np * nz, sizeof *j->mask);
	if (wantlogits) {
		j->logit = mp_xmalloc(np * nz * sizeof(float));
		for (size_t i = 0; i < np * nz; i++)
			j->logit[i] = j->thr != MP_SAM_SAM ? 0.0f : -100.0f;
	}
	j->bin = mp_xmalloc(np);

	if (mp_sp_run(&prompts, nx, ny, nz, grow, run_prompt, j) || flush(j)) {
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
		if (mp_sp_from_label(lab, nx, ny, in->sel, in->nsel, shift, seed, run_prompt, j) || flush(j)) {
			mp_preerr("%s: frame %d", j->src, j->frameno);
			goto out;
		}
	}
	/* the mask frame */
	mp_type t = j->maxval <= 255 ? MP_UINT8 : j->maxval <= 65535 ? MP_UINT16 : MP_INT32;
	mp_frame mf;
	mp_sam_mask_header(&mf, &j->e, in, t, "mask");
	mp_set_kv(&mf, MP_K_SAM_THRESHOLD, mp_sam_mode_name(j->thr));
	mp_set_kv(&mf, MP_K_SAM_IOU, j->iou ? j->iou : "");
	if (mp_frame_alloc(&mf) < 0) {
		mp_frame_free(&mf);
		goto out;
	}
	mp_convert(mf.data, t, j->mask, MP_INT32, np * nz);
	rc = mp_out_frame(o, &mf);
	mp_frame_free(&mf);
	if (rc == 0 && wantlogits) {
		mp_frame lf;
		mp_sam_mask_header(&lf, &j->e, in, MP_FLOAT32, "logits");
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

static int
job_init(job *j, mp_frame *e, const char *src, int frameno)
{
	memset(j, 0, sizeof *j);
	j->e = *e;
	j->src = src;
	j->frameno = frameno;
	if (mp_sam_emb_read(e, &j->info))
		return mp_preerr("%s: frame %d", src, frameno);
	if (j->info.G != model.cfg.grid || j->info.C != model.cfg.out_chans ||
	    strcmp(j->info.weights_id, model_id) != 0)
		return mp_seterr("%s: frame %d: embeddings made by weights %s%s%s (%s), not by %s%s%s (%s)", src, frameno,
		                 mp_get_kv(e, MP_K_SAM_WEIGHTS) ? mp_get_kv(e, MP_K_SAM_WEIGHTS) : "?",
		                 mp_get_kv(e, MP_K_SAM_ADAPTER) ? " with adapter " : "",
		                 mp_get_kv(e, MP_K_SAM_ADAPTER) ? mp_get_kv(e, MP_K_SAM_ADAPTER) : "",
		                 j->info.weights_id, weights, adapter ? " with adapter " : "", adapter ? adapter : "", model_id);
	j->thr = j->info.mode;
	if (thrstr && mp_sam_mode_parse(thrstr, &j->thr))
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
	for (int k = 0; k < devs.n; k++)
		mp_sam_decode_forget(&devs.m[k]);
	mp_frame_free(&j->e);
	mp_sam_emb_free(&j->info);
	free(j->zidx);
	free(j->q);
	free(j->qdev);
	memset(j, 0, sizeof *j);
}

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);
	mp_sam_mode dummy;

	if (thrstr && mp_sam_mode_parse(thrstr, &dummy))
		mp_usage_die("--threshold: %s", mp_err());
	if (shift < 0 || grow < 0)
		mp_usage_die("--shift and --grow must not be negative");
	if (boxfile && mp_sp_read_file(&prompts, boxfile))
		mp_die("%s", mp_err());
	if (!fromlabel && prompts.n == 0 && prompts.nb3 == 0)
		mp_usage_die("no prompt: give --box, --box3d, --point, --boxes or --from-label");
	mp_out *o = mp_out_stdout();
	mp_sam_devs_open(&devs, &weights, adapter, devspec, threads, "decoder");
	mp_sam_weights_id(&model, model_id, sizeof model_id);
	for (int i = 0; i < (nargs ? nargs : 1); i++) {
		const char *src = nargs ? args[i] : "-";
		mp_in *in = mp_in_open(src);
		mp_frame f, lab;
		job pend;
		int r, have_pend = 0, have_lab = 0;

		if (!in)
			mp_die("%s", mp_err());
		mp_frame_init(&lab);
		memset(&pend, 0, sizeof pend);
		while ((r = mp_in_header(in, &f)) == 1) {
			int no = mp_in_frameno(in);
			const char *role = mp_role(&f);
			if (strcmp(role, "embedding") == 0) {
				if (have_pend) {
					job_fail(&pend, "--from-label: no label frame of case '%s' next to the embeddings",
					         mp_case(&pend.e));
					mp_die("%s", mp_err());
				}
				/* 16 MiB per ViT-B slice: embeddings of a whole CT go
				 * to a mapped spool file rather than the heap */
				if (mp_in_rest_spool(in, &f, (size_t)1 << 30) < 0)
					mp_die("%s", mp_err());
				if (job_init(&pend, &f, src, no))
					mp_die("%s", mp_err());
				if (!fromlabel || (have_lab && strcmp(mp_case(&lab), mp_case(&pend.e)) == 0)) {
					if (run_job(&pend, fromlabel ? &lab : NULL, o))
						mp_die("%s", mp_err());
					job_free(&pend);
				} else
					have_pend = 1;
				continue;
			}
			if (fromlabel && strcmp(role, "label") == 0) {
				if (mp_in_rest(in, &f) < 0)
					mp_die("%s", mp_err());
				if (have_pend && strcmp(mp_case(&f), mp_case(&pend.e)) == 0) {
					if (run_job(&pend, &f, o))
						mp_die("%s", mp_err());
					job_free(&pend);
					have_pend = 0;
				}
				if (mp_out_frame(o, &f) < 0)
					mp_die("%s", mp_err());
				mp_frame_free(&lab);
				lab = f;
				have_lab = 1;
				continue;
			}
			r = mp_pass(in, &f, o);
			mp_frame_free(&f);
			if (r < 0)
				mp_die("%s", mp_err());
		}
		if (r < 0)
			mp_die("%s", mp_err());
		if (have_pend) {
			job_fail(&pend, "--from-label: no label frame of case '%s' next to the embeddings", mp_case(&pend.e));
			mp_die("%s", mp_err());
		}
		mp_frame_free(&lab);
		mp_in_close(in);
	}
	if (mp_out_close(o) < 0)
		mp_die("%s", mp_err());
	mp_sam_devs_free(&devs);
	mp_sp_free(&prompts);
	free(args);
	return 0;
}
