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
	"medpipe.augment records the parameters drawn. Frames of a case are adjacent in the "
	"stream and must have the same sizes; frames of other roles pass through unchanged. 2D "
	"frames are rotated in-plane only.",
	"$ vol-cat ct.nii.gz --label seg.nii.gz | vol-augment -n 4 --seed 7 -f x | vol2npz -o 'aug_{case}.npz'\n"
	"Four copies per case, with left-right flips, as npz files.\n"
	"$ vol-augment -r 5,5,15 -e 2,30 --noise 10 --keep cases.nrrd > more.nrrd\n"
	"Rotation about all axes, elastic deformation and noise; originals kept.",
	"vol-resize(1), vol2npz(1), vol-preview(1), medpipe(7)",
	opts, 1
};

typedef struct {
	mp_frame f;
	int islab;
} held;

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

static void
emit_case(held *h, size_t nh, mp_out *o, const char *src)
{
	if (nh == 0)
		return;
	size_t d[3];
	if (mp_frame_xyz(&h[0].f, &d[0], &d[1], &d[2]) < 0)
		mp_die("%s: case '%s': not a scalar 2D or 3D frame", src, mp_case(&h[0].f));
	double sp[3];
	for (int a = 0; a < 3; a++)
		sp[a] = a < h[0].f.dim ? mp_spacing(&h[0].f, a) : 1.0;
	size_t n = d[0] * d[1] * d[2];
	const char *cname = mp_case(&h[0].f);
	if (keep)
		for (size_t i = 0; i < nh; i++)
			if (mp_out_frame(o, &h[i].f) < 0)
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
			mp_frame_copy_header(&g, &h[i].f);
			mp_set_kv(&g, "medpipe.case", nm);
			mp_set_kv(&g, "medpipe.augment", desc);
			mp_frame_touch(&g);
			if (mp_frame_alloc(&g) < 0)
				mp_die("%s", mp_err());
			if (h[i].islab) {
				/* nearest: the label's own elements, straight into the frame */
				mp_aug_warp_labels(&x, h[i].f.data, g.data, mp_type_size(g.type));
			} else {
				if (!fout)
					fout = mp_xmalloc(n * sizeof *fout);
				double lo, hi;
				mp_frame_minmax(&h[i].f, &lo, &hi);
				lo = (float)lo;   /* the range as float voxels have it */
				hi = (float)hi;
				mp_aug_warp_image(&x, h[i].f.data, h[i].f.type, fout, (float)(have_fill ? fill_v : lo));
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

	mp_out *o = mp_out_stdout();
	held *h = NULL;
	size_t nh = 0;
	char *cur = NULL, *cursrc = NULL;
	for (int i = 0; i < (nargs ? nargs : 1); i++) {
		const char *path = nargs ? args[i] : "-";
		mp_in *in = mp_in_open(path);
		mp_frame f;
		int r;
		if (!in)
			mp_die("%s", mp_err());
		while ((r = mp_in_header(in, &f)) == 1) {
			const char *role = mp_role(&f);
			int isimg = strcmp(role, "image") == 0;
			int islab = strcmp(role, "label") == 0 || strcmp(role, "mask") == 0;
			if (!isimg && !islab) {
				if (mp_pass(in, &f, o) < 0)
					mp_die("%s", mp_err());
				mp_frame_free(&f);
				continue;
			}
			if (cur && strcmp(cur, mp_case(&f)) != 0) {
				emit_case(h, nh, o, cursrc);
				for (size_t k = 0; k < nh; k++)
					mp_frame_free(&h[k].f);
				nh = 0;
			}
			free(cur);
			cur = mp_xstrdup(mp_case(&f));
			free(cursrc);
			cursrc = mp_xstrdup(mp_in_name(in));
			size_t d[3], d0[3];
			if (mp_frame_xyz(&f, &d[0], &d[1], &d[2]) < 0)
				mp_die("%s: frame %d: not a scalar 2D or 3D frame", mp_in_name(in), mp_in_frameno(in));
			if (nh) {
				mp_frame_xyz(&h[0].f, &d0[0], &d0[1], &d0[2]);
				if (memcmp(d, d0, sizeof d) != 0)
					mp_die("%s: frame %d: sizes %zux%zux%zu differ from the case's %zux%zux%zu",
					       mp_in_name(in), mp_in_frameno(in), d[0], d[1], d[2], d0[0], d0[1], d0[2]);
			}
			if (mp_in_rest(in, &f) < 0)
				mp_die("%s", mp_err());
			h = mp_xrealloc(h, (nh + 1) * sizeof *h);
			h[nh].f = f;
			h[nh].islab = islab;
			nh++;
		}
		if (r < 0)
			mp_die("%s", mp_err());
		if (mp_in_frameno(in) == 0)
			mp_in_die_empty(in);
		mp_in_close(in);
	}
	emit_case(h, nh, o, cursrc);
	for (size_t k = 0; k < nh; k++)
		mp_frame_free(&h[k].f);
	free(h);
	free(cur);
	free(cursrc);
	free(args);
	if (mp_out_close(o) < 0)
		mp_die("%s", mp_err());
	return 0;
}
