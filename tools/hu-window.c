/* hu-window - intensity windowing of image frames (CT level/width, presets,
 * percentiles for MR) with the clinical or MedSAM's mapping */
#include "mp.h"
#include "mp_filter.h"
#include "mp_device.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double level = NAN, width = NAN;
static const char *preset, *pctl, *mapping = "clinical", *range, *otype;
static int listp, nonzero, medsam2d;
static const char *devspec;
static mp_dev *dev;

static const mp_opt opts[] = {
	{ "level", 'l', MP_OPT_DBL, &level, NULL, "L", "Window level (centre), in the image's units (HU for CT)." },
	{ "width", 'w', MP_OPT_DBL, &width, NULL, "W", "Window width (> 0). The window is [L-W/2, L+W/2]." },
	{ "preset", 'p', MP_OPT_STR, &preset, NULL, "NAME", "A named window (see --list-presets), e.g. soft-tissue (40/400), bone (300/1500), lung (-600/1500), brain (40/80), liver (60/150)." },
	{ "list-presets", 0, MP_OPT_FLAG, &listp, NULL, NULL, "Print the presets (name, level, width, use) and exit." },
	{ "percentiles", 'P', MP_OPT_STR, &pctl, NULL, "LO,HI", "Window from percentiles of the frame's voxels (numpy.percentile, linear), e.g. 0.5,99.5 for MR." },
	{ "nonzero", 'z', MP_OPT_FLAG, &nonzero, NULL, NULL, "With --percentiles: take them over voxels > 0 only, and keep voxels that are 0 at 0 in the output (MedSAM's MR rule)." },
	{ "medsam-2d", 0, MP_OPT_FLAG, &medsam2d, NULL, NULL, "MedSAM's 2D preprocessing (pre_grey_rgb): see DESCRIPTION. Alone: no window, range or type options." },
	{ "mapping", 'm', MP_OPT_STR, &mapping, NULL, "M", "clinical (default) or medsam; see DESCRIPTION." },
	{ "range", 'r', MP_OPT_STR, &range, NULL, "LO,HI", "Output range: 0,255 (default), 0,1, -1,1 or any pair." },
	{ "type", 't', MP_OPT_STR, &otype, NULL, "TYPE", "Output voxel type (uint8, int16, float, double, ...). Default: uint8 for the range 0,255, float otherwise." },
	MP_DEV_OPTION(&devspec),
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"hu-window",
	"window the intensities of image frames (level/width, presets, percentiles)",
	"[options] [FILE...]",
	"hu-window maps the voxels of every frame of role image to an output range through "
	"a window, and passes every other frame (labels, masks, ...) through unchanged. The "
	"window is given as --level/--width, as a --preset, or computed from --percentiles of "
	"the frame (optionally over voxels > 0 only, with --nonzero).\n\n"
	"Two mappings. clinical: the window [L-W/2, L+W/2] is clipped and mapped linearly onto "
	"the output range: L-W/2 to its bottom, L+W/2 to its top; integer outputs are rounded "
	"(half away from zero). The frame streams through slab by slab in little memory.\n\n"
	"medsam: as MedSAM's pre_CT_MR.py: clip to the window, then (v - min)/(max - min) "
	"over the clipped frame (min and max of the clipped voxels, which differ from the "
	"window bounds when the image does not reach them), times the output range; integer "
	"outputs are truncated toward zero (numpy's astype(uint8)). Computed in double "
	"precision, in single precision for float input (as numpy does). The input frame is "
	"held in memory; the output is written in slabs.\n\n"
	"--percentiles LO,HI sets the window to [P(LO), P(HI)] computed over the frame; "
	"with --nonzero only voxels > 0 count and voxels equal to 0 stay 0 (MedSAM's MR "
	"preprocessing: percentiles 0.5,99.5 --nonzero --mapping medsam). The frame is held "
	"in memory.\n\n"
	"--medsam-2d applies MedSAM's rules for 2D images (PNG/JPEG/TIFF pictures, microscopy): "
	"an image stored in more than 8 bits is min-max scaled to 0..255 over the whole frame "
	"(truncated); then a grey image gets the 0.5/99.5 percentiles of its pixels > 0, is "
	"clipped to them and min-max scaled to 0..255 (truncated), pixels that were 0 staying 0; "
	"a colour image (a first axis of 3 samples) is left as it is. The output is uint8; "
	"vol2npz --layout medsam then writes imgs (H, W, 3) and gts (H, W).\n\n"
	"The window is recorded in the frame: " MP_K_WINDOW_LEVEL ", " MP_K_WINDOW_WIDTH ", "
	MP_K_WINDOW_MAPPING ", " MP_K_WINDOW_IN " (the input values mapped to the bottom and "
	"top of the range), " MP_K_WINDOW_OUT " (the range), and " MP_K_WINDOW_PRESET " or "
	MP_K_WINDOW_PERCENTILES " when used.\n\n"
	"--device (or MEDPIPE_DEVICE) chooses where the mapping runs: cpu (this C code) or an "
	"OpenCL device, which does the same operations in the same order: the output is bit for "
	"bit the same. --medsam-2d runs only in C: with an OpenCL device named (not auto) it fails "
	"with one line rather than leave it. See medpipe-devices(1).",
	"$ hu-window --preset soft-tissue < ct.nrrd > ct-w.nrrd\n"
	"Window 40/400 to uint8 0..255.\n"
	"$ vol-cat ct.nii.gz --label seg.nii.gz | hu-window -l 40 -w 400 --mapping medsam | vol2npz --layout medsam -o out.npz\n"
	"MedSAM's CT preprocessing.\n"
	"$ vol-cat mr.nii.gz | hu-window --percentiles 0.5,99.5 --nonzero --mapping medsam\n"
	"MedSAM's MR normalisation.\n"
	"$ vol-cat img.png --label mask.png | hu-window --medsam-2d | vol2npz --layout medsam -o img.npz\n"
	"MedSAM's 2D preprocessing of a picture and its mask.\n"
	"$ hu-window --preset lung --range 0,1 --type float < ct.nrrd\n"
	"Lung window to floats in [0,1].",
	"vol-resize(1), vol2npz(1), vol-info(1), medpipe-devices(1), medpipe-vol(5)",
	opts, 1
};

static mp_type out_type;
static double out_lo = 0, out_hi = 255, plo, phi;
static int medsam;

static void
set_keys(mp_frame *f, const mp_winmap *m, double lev, double wid)
{
	char a[40], b[40];

	mp_fmt_double(a, sizeof a, lev);
	mp_set_kv(f, MP_K_WINDOW_LEVEL, a);
	mp_fmt_double(a, sizeof a, wid);
	mp_set_kv(f, MP_K_WINDOW_WIDTH, a);
	mp_set_kv(f, MP_K_WINDOW_MAPPING, medsam ? "medsam" : "clinical");
	mp_fmt_double(a, sizeof a, m->in_lo);
	mp_fmt_double(b, sizeof b, m->in_hi);
	mp_set_kvf(f, MP_K_WINDOW_IN, "%s,%s", a, b);
	mp_fmt_double(a, sizeof a, m->out_lo);
	mp_fmt_double(b, sizeof b, m->out_hi);
	mp_set_kvf(f, MP_K_WINDOW_OUT, "%s,%s", a, b);
	mp_del_kv(f, MP_K_WINDOW_PRESET);
	mp_del_kv(f, MP_K_WINDOW_PERCENTILES);
	if (preset)
		mp_set_kv(f, MP_K_WINDOW_PRESET, preset);
	if (pctl) {
		mp_fmt_double(a, sizeof a, plo);
		mp_fmt_double(b, sizeof b, phi);
		mp_set_kvf(f, MP_K_WINDOW_PERCENTILES, "%s,%s%s", a, b, nonzero ? " positive" : "");
	}
}

static int window_frame(mp_in *in, mp_frame *f, mp_out *o);

static int
is_rgb(const mp_frame *f)
{
	return f->dim >= 3 && f->size[0] == 3 && !f->has_dir[0] &&
	       (strstr(f->kind[0], "color") || strcmp(f->kind[0], "vector") == 0);
}

static int
medsam2d_frame(mp_in *in, mp_frame *f, mp_out *o)
{
	mp_medsam2d_info info;
	char a[40], b[40];
	int rgb = is_rgb(f);

	if (mp_in_rest(in, f) < 0)
		return -1;
	if (f->dim > 3 || (f->dim == 3 && !rgb) || (f->dim >= 3 && f->size[0] != 3 && !f->has_dir[0]))
		return mp_seterr("%s: frame %d: --medsam-2d wants a 2D grey or RGB image, not %d axes", mp_in_name(in),
				 mp_in_frameno(in), f->dim);
	if (mp_medsam2d(f, rgb, &info) < 0)
		return mp_preerr("%s: frame %d", mp_in_name(in), mp_in_frameno(in));
	mp_set_kv(f, MP_K_WINDOW_MAPPING, rgb ? "medsam-2d rgb" : "medsam-2d grey");
	if (info.rescaled) {
		mp_fmt_double(a, sizeof a, info.in_lo);
		mp_fmt_double(b, sizeof b, info.in_hi);
		mp_set_kvf(f, MP_K_WINDOW_IN, "%s,%s", a, b);
	}
	if (info.pct) {
		mp_fmt_double(a, sizeof a, info.p_lo);
		mp_fmt_double(b, sizeof b, info.p_hi);
		mp_set_kvf(f, MP_K_WINDOW_PERCENTILES, "0.5,99.5 positive: %s,%s", a, b);
	}
	mp_set_kv(f, MP_K_WINDOW_OUT, "0,255");
	mp_frame_touch(f);
	return mp_out_frame(o, f);
}

static int
each_frame(void *ctx, mp_in *in, mp_frame *f, mp_out *o)
{
	(void)ctx;
	if (strcmp(mp_role(f), "image") != 0)
		return mp_pass(in, f, o);
	return medsam2d ? medsam2d_frame(in, f, o) : window_frame(in, f, o);
}

static int
apply(void *ctx, void *dst, mp_type dt, const void *src, mp_type st, size_t k)
{
	return mp_dev_window_apply(dev, dst, dt, src, st, k, ctx);
}

static int
window_frame(mp_in *in, mp_frame *f, mp_out *o)
{
	mp_winmap m = { 0 };
	mp_type st = f->type;
	double lo, hi;

	m.out_lo = out_lo;
	m.out_hi = out_hi;
	m.trunc = medsam;
	m.single = medsam && st == MP_FLOAT32;
	if (!pctl && !medsam) {
		/* clinical: stream */
		m.clip_lo = m.in_lo = level - width / 2;
		m.clip_hi = m.in_hi = level + width / 2;
		set_keys(f, &m, level, width);
		f->type = out_type;
		mp_frame_touch(f);
		return mp_out_slabs(o, f, in, NULL, st, mp_frame_nvox(f), apply, &m);
	}
	/* the whole frame is needed */
	if (mp_in_rest_map(in, f) < 0)
		return -1;
	double p[2] = { plo, phi };
	if (mp_window_held(&m, f, medsam, pctl ? p : NULL, nonzero, level, width, &lo, &hi) < 0)
		return mp_preerr("%s: frame %d", mp_in_name(in), mp_in_frameno(in));
	/* the input is held; the output goes out in slabs */
	f->type = out_type;
	set_keys(f, &m, (lo + hi) / 2, hi - lo);
	mp_frame_touch(f);
	return mp_out_slabs(o, f, NULL, f->data, st, mp_frame_nvox(f), apply, &m);
}

static int
parse_pair(const char *s, double *a, double *b)
{
	double v[2];

	if (mp_parse_doubles(s, v, 2) != 2)
		return -1;
	*a = v[0];
	*b = v[1];
	return 0;
}

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);
	int haslw = !isnan(level) || !isnan(width);

	if (listp) {
		for (const mp_win_preset *p = mp_win_presets(); p->name; p++)
			printf("%-14s %6g %6g  %s\n", p->name, p->level, p->width, p->what);
		free(args);
		return 0;
	}
	if (strcmp(mapping, "medsam") == 0)
		medsam = 1;
	else if (strcmp(mapping, "clinical") != 0)
		mp_usage_die("--mapping: '%s' is neither clinical nor medsam", mapping);
	if (medsam2d && (haslw || preset || pctl || nonzero || range || otype || medsam))
		mp_usage_die("--medsam-2d goes alone (no window, range, type or mapping)");
	if (!medsam2d && (haslw ? 1 : 0) + (preset ? 1 : 0) + (pctl ? 1 : 0) != 1)
		mp_usage_die("give exactly one of --level/--width, --preset, --percentiles");
	if (haslw && (isnan(level) || isnan(width)))
		mp_usage_die("--level and --width go together");
	if (haslw && !(width > 0))
		mp_usage_die("--width must be > 0");
	if (nonzero && !pctl)
		mp_usage_die("--nonzero needs --percentiles");
	if (preset) {
		const mp_win_preset *p = mp_win_preset_find(preset);
		if (!p)
			mp_usage_die("--preset: unknown preset '%s' (see --list-presets)", preset);
		preset = p->name;
		level = p->level;
		width = p->width;
	}
	if (pctl) {
		if (parse_pair(pctl, &plo, &phi) < 0 || !(plo >= 0) || !(phi <= 100) || !(plo < phi))
			mp_usage_die("--percentiles: want LO,HI with 0 <= LO < HI <= 100, not '%s'", pctl);
	}
	if (range && (parse_pair(range, &out_lo, &out_hi) < 0 || !(out_lo < out_hi) || !isfinite(out_lo) || !isfinite(out_hi)))
		mp_usage_die("--range: want LO,HI with LO < HI, not '%s'", range);
	if (otype) {
		out_type = mp_type_parse(otype);
		if (out_type == MP_NONE)
			mp_usage_die("--type: unknown type '%s'", otype);
	} else {
		out_type = out_lo == 0 && out_hi == 255 ? MP_UINT8 : MP_FLOAT32;
	}
	if (mp_type_is_int(out_type) && (out_lo < mp_type_min(out_type) || out_hi > mp_type_max(out_type)))
		mp_usage_die("--range %g,%g does not fit the type %s", out_lo, out_hi, mp_type_name(out_type));

	mp_out *o;

	if (!(dev = mp_dev_open_for(devspec, medsam2d ? "--medsam-2d" : NULL)))
		mp_die("%s", mp_err());
	o = mp_out_stdout();
	mp_run_filter(args, nargs, o, each_frame, NULL);
	return 0;
}
