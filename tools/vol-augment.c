/* vol-augment - seeded augmentation of cases: geometry alike for image and labels */
#include "mp.h"
#include "mp_augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static long copies = 1, seed = 0;
static const char *rot_s = "10", *scale_s = "0.9,1.1", *flip_s = "", *elastic_s = "0",
                  *gamma_s = "0.8,1.25", *contrast_s = "0.9,1.1", *fill_s;
static double noise = 0;
static int keep, no_intensity;

static const mp_opt opts[] = {
	{ "copies", 'n', MP_OPT_INT, &copies, NULL, "N", "Augmented copies per case (default 1). Copy c of case NAME is case NAME_augC (C from 1)." },
	{ "seed", 's', MP_OPT_INT, &seed, NULL, "S", "Seed (default 0). Each copy's parameters come from the seed, the case name and the copy number only: the same seed gives the same bytes, whatever else is in the stream." },
	{ "rotate", 'r', MP_OPT_STR, &rot_s, NULL, "DEG", "Maximum rotation in degrees: 'D' about the slice normal (in-plane) only, or 'X,Y,Z' about each voxel axis (default 10; 0: none)." },
	{ "scale", 0, MP_OPT_STR, &scale_s, NULL, "LO,HI", "Range of the isotropic zoom factor (default 0.9,1.1; 1,1: none)." },
	{ "flip", 'f', MP_OPT_STR, &flip_s, NULL, "AXES", "Axes that may be flipped, each with probability 1/2: any of x, y, z (e.g. 'xy'; default none)." },
	{ "elastic", 'e', MP_OPT_STR, &elastic_s, NULL, "ALPHA,SIGMA", "Elastic deformation: random displacements of standard deviation ALPHA mm at control points SIGMA mm apart, interpolated smoothly (default 0: none; e.g. 2,30)." },
	{ "gamma", 'g', MP_OPT_STR, &gamma_s, NULL, "LO,HI", "Range of the gamma applied to images over their value range (default 0.8,1.25; 1,1: none)." },
	{ "contrast", 'c', MP_OPT_STR, &contrast_s, NULL, "LO,HI", "Range of the contrast factor about the image mean (default 0.9,1.1; 1,1: none)." },
	{ "noise", 0, MP_OPT_DBL, &noise, NULL, "SIGMA", "Gaussian noise of this standard deviation, in image units, added to images (default 0)." },
	{ "no-intensity", 0, MP_OPT_FLAG, &no_intensity, NULL, NULL, "Geometry only: no gamma, contrast or noise." },
	{ "fill", 0, MP_OPT_STR, &fill_s, NULL, "V", "Image value outside the original volume (default: the image's minimum)." },
	{ "keep", 'k', MP_OPT_FLAG, &keep, NULL, NULL, "Also pass the original frames through, before the copies." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"vol-augment",
	"seeded, reproducible augmentation of image and label frames",
	"[options] [FILE...]",
	"vol-augment reads frames (none or '-': standard input) and writes, for every case, --copies "
	"augmented copies of its image, label and mask frames. Every frame of one copy goes through "
	"the same transform: a rotation, an isotropic zoom and flips about the centre of the volume, "
	"in millimetres (so a rotation is a true rotation even with anisotropic voxels), then an "
	"optional smooth elastic displacement. Images are resampled trilinearly, label and mask "
	"frames by nearest neighbour, so a label map never gains a value it did not have. Outside "
	"the original volume, images get --fill and labels 0. Images then get a gamma over their "
	"value range, a contrast change about their mean and Gaussian noise; the result is stored "
	"in the frame's own voxel type (rounded and clamped).\n\n"
	"Frames keep their sizes and world geometry; the case becomes NAME_augC and the key "
	MP_K_AUGMENT " records the parameters drawn. Frames of a case are adjacent in the "
	"stream and must have the same sizes; frames of other roles pass through unchanged. 2D "
	"frames are rotated in-plane only.",
	"$ vol-cat ct.nii.gz --label seg.nii.gz | vol-augment -n 4 --seed 7 -f x | vol2npz -o 'aug_{case}.npz'\n"
	"Four copies per case, with left-right flips, as npz files.\n"
	"$ vol-augment -r 5,5,15 -e 2,30 --noise 10 --keep cases.nrrd > more.nrrd\n"
	"Rotation about all axes, elastic deformation and noise; originals kept.",
	"vol-resize(1), vol2npz(1), vol-preview(1), medpipe(7)",
	opts, 1
};

static mp_aug_ranges R;
static double fill_v;
static int have_fill;

static void
range2(const char *opt, const char *s, double *lo, double *hi)
{
	double v[2];
	int n = mp_parse_doubles(s, v, 2);
	if (n == 1)
		v[1] = v[0];
	if (n < 1 || v[1] < v[0])
		mp_usage_die("--%s: expected LO,HI with LO <= HI: %s", opt, s);
	*lo = v[0];
	*hi = v[1];
}

static int
is_label(const mp_frame *f)
{
	const char *role = mp_role(f);
	return strcmp(role, "label") == 0 || strcmp(role, "mask") == 0;
}

static int
frame_role(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	(void)ctx, (void)in, (void)c;
	return strcmp(mp_role(f), "image") == 0 || is_label(f) ? MP_CASE_HOLD : MP_CASE_PASS;
}

static int
frame_check(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	size_t d[3], d0[3];

	(void)ctx;
	if (mp_frame_xyz(f, &d[0], &d[1], &d[2]) < 0)
		return mp_seterr("%s: frame %d: not a scalar 2D or 3D frame", mp_in_name(in), mp_in_frameno(in));
	if (c->n) {
		mp_frame_xyz(&c->f[0], &d0[0], &d0[1], &d0[2]);
		if (memcmp(d, d0, sizeof d) != 0)
			return mp_seterr("%s: frame %d: sizes %zux%zux%zu differ from the case's %zux%zux%zu",
			                 mp_in_name(in), mp_in_frameno(in), d[0], d[1], d[2], d0[0], d0[1], d0[2]);
	}
	return 0;
}

static int
emit_case(void *ctx, mp_heldcase *c, mp_out *o)
{
	mp_frame *h = c->f;
	size_t nh = c->n;
	const char *src = c->src;

	(void)ctx;
	size_t d[3];
	if (mp_frame_xyz(&h[0], &d[0], &d[1], &d[2]) < 0)
		mp_die("%s: case '%s': not a scalar 2D or 3D frame", src, mp_case(&h[0]));
	double sp[3];
	for (int a = 0; a < 3; a++)
		sp[a] = a < h[0].dim ? mp_spacing(&h[0], a) : 1.0;
	size_t n = d[0] * d[1] * d[2];
	const char *cname = mp_case(&h[0]);
	if (keep)
		for (size_t i = 0; i < nh; i++)
			if (mp_out_frame(o, &h[i]) < 0)
				mp_die("%s", mp_err());
	float *fout = NULL;
	for (long c = 1; c <= copies; c++) {
		uint64_t s = mp_hash64(cname, strlen(cname), (uint64_t)seed * 0x9e3779b97f4a7c15ull + (uint64_t)c);
		mp_aug_xform x;
		if (mp_aug_draw(&R, s, d, sp, &x) < 0)
			mp_die("%s: case '%s': %s", src, cname, mp_err());
		char desc[512], nm[1024];
		mp_aug_describe(&x, desc, sizeof desc);
		snprintf(nm, sizeof nm, "%s_aug%ld", *cname ? cname : "case", c);
		for (size_t i = 0; i < nh; i++) {
			mp_frame g;
			mp_frame_init(&g);
			mp_frame_copy_header(&g, &h[i]);
			mp_set_case(&g, nm);
			mp_set_kv(&g, MP_K_AUGMENT, desc);
			mp_frame_touch(&g);
			if (mp_frame_alloc(&g) < 0)
				mp_die("%s", mp_err());
			if (is_label(&h[i])) {
				/* nearest: the label's own elements, straight into the frame */
				mp_aug_warp_labels(&x, h[i].data, g.data, mp_type_size(g.type));
			} else {
				if (!fout)
					fout = mp_xmalloc(n * sizeof *fout);
				double lo, hi;
				mp_frame_minmax(&h[i], &lo, &hi);
				lo = (float)lo;   /* the range as float voxels have it */
				hi = (float)hi;
				mp_aug_warp_image(&x, h[i].data, h[i].type, fout, (float)(have_fill ? fill_v : lo));
				if (!no_intensity)
					mp_aug_intensity(&x, fout, n, lo, hi);
				mp_convert(g.data, g.type, fout, MP_FLOAT32, n);
			}
			if (mp_out_frame(o, &g) < 0)
				mp_die("%s", mp_err());
			mp_frame_free(&g);
		}
		mp_aug_free(&x);
	}
	free(fout);
	return 0;
}

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);

	if (copies < 1 || copies > 100000)
		mp_usage_die("--copies: must be 1..100000");
	double r3[3];
	int nr = mp_parse_doubles(rot_s, r3, 3);
	if (nr == 1) {
		R.rot[2] = fabs(r3[0]);
	} else if (nr == 3) {
		for (int a = 0; a < 3; a++)
			R.rot[a] = fabs(r3[a]);
	} else
		mp_usage_die("--rotate: expected D or X,Y,Z degrees: %s", rot_s);
	range2("scale", scale_s, &R.scale_lo, &R.scale_hi);
	if (!(R.scale_lo > 0))
		mp_usage_die("--scale: factors must be > 0");
	for (const char *p = flip_s; *p; p++) {
		if (*p == 'x') R.flip[0] = 1;
		else if (*p == 'y') R.flip[1] = 1;
		else if (*p == 'z') R.flip[2] = 1;
		else if (*p != ',')
			mp_usage_die("--flip: expected axes among x, y, z: %s", flip_s);
	}
	double e[2] = { 0, 0 };
	int ne = mp_parse_doubles(elastic_s, e, 2);
	if (ne < 1 || e[0] < 0 || (e[0] > 0 && (ne != 2 || !(e[1] > 0))))
		mp_usage_die("--elastic: expected ALPHA,SIGMA in mm (SIGMA > 0), or 0: %s", elastic_s);
	R.elastic_alpha = e[0];
	R.elastic_sigma = e[1];
	range2("gamma", gamma_s, &R.gamma_lo, &R.gamma_hi);
	if (!(R.gamma_lo > 0))
		mp_usage_die("--gamma: must be > 0");
	range2("contrast", contrast_s, &R.contrast_lo, &R.contrast_hi);
	if (!(R.contrast_lo >= 0))
		mp_usage_die("--contrast: must be >= 0");
	if (!(noise >= 0))
		mp_usage_die("--noise: must be >= 0");
	R.noise = noise;
	if (fill_s) {
		if (mp_parse_double(fill_s, &fill_v) < 0)
			mp_usage_die("--fill: %s", mp_err());
		have_fill = 1;
	}

	mp_run_cases(args, nargs, mp_out_stdout(), 0, frame_role, frame_check, emit_case, NULL);
	return 0;
}
