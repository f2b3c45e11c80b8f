/* vol-preview - PNG montages of slices with labels or predictions drawn over the image */
#include "mp.h"
#include "mp_filter.h"
#include "mp_fmt.h"
#include "mp_preview.h"

#include <stdlib.h>
#include <string.h>

static const char *outpat, *axis_s = "axial", *slices_s, *preset, *window_s, *range_s;
static long maxn = 16, cols;
static double alpha = 0.4, scale = 1;
static int outline, no_legend, no_text;

static const mp_opt opts[] = {
	{ "output", 'o', MP_OPT_STR, &outpat, NULL, "FILE", "PNG to write (required). '{case}' (or '%c') in the name is replaced by the case (made safe for a file name as in vol-save: '/', '\\', blanks and control characters become '_'), '{n}' (or '%n') by the case's number (1, 2, ...), '{role}' and '{type}' by those of the case's first frame, as in vol2npz names; {case} or {n} is needed when the input holds several cases." },
	{ "axis", 'a', MP_OPT_STR, &axis_s, NULL, "PLANE", "axial (default), coronal or sagittal: slices across the third, second or first voxel axis. Coronal and sagittal slices are drawn with the third axis (superior) up." },
	{ "slices", 's', MP_OPT_STR, &slices_s, NULL, "SPEC", "Which slices: 'labelled' (those where a label or mask frame is non-zero; the default when there is one), 'all' (the default otherwise), 'every:N' (every Nth), or a list of 0-based indices '3,10,20'." },
	{ "max", 'm', MP_OPT_INT, &maxn, NULL, "N", "At most N slices (evenly spread over the chosen ones; default 16; 0: no limit)." },
	{ "cols", 'c', MP_OPT_INT, &cols, NULL, "N", "Columns of the montage (default: about square)." },
	{ "preset", 'p', MP_OPT_STR, &preset, NULL, "NAME", "Grey window preset, as hu-window's (soft-tissue, bone, lung, brain, liver, ...)." },
	{ "window", 'w', MP_OPT_STR, &window_s, NULL, "L,W", "Grey window level and width." },
	{ "range", 'r', MP_OPT_STR, &range_s, NULL, "LO,HI", "Grey window as the values shown black and white. Default (no --preset/--window/--range): the 0.5 and 99.5 percentiles of the image." },
	{ "alpha", 0, MP_OPT_DBL, &alpha, NULL, "A", "Opacity of the label fill, 0..1 (default 0.4; 0: outlines only)." },
	{ "outline", 'l', MP_OPT_FLAG, &outline, NULL, NULL, "Draw label outlines in full colour (with the fill unless --alpha 0)." },
	{ "scale", 0, MP_OPT_DBL, &scale, NULL, "K", "Output pixels per voxel along the finer in-plane axis (default 1); the other axis follows the spacing, so the aspect is true." },
	{ "no-legend", 0, MP_OPT_FLAG, &no_legend, NULL, NULL, "No legend of label colours." },
	{ "no-text", 0, MP_OPT_FLAG, &no_text, NULL, NULL, "No title and no slice numbers." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"vol-preview",
	"PNG montages of slices with label or prediction frames drawn over the image",
	"[options] -o FILE.png [FILE...]",
	"vol-preview reads frames (none or '-': standard input) and, for every case, draws a grid "
	"of slices of its image frame (role image) in grey with every label and mask frame of the "
	"case drawn over it: filled with transparency, or as outlines, in a fixed colour per label "
	"(label 1 red, 2 green, 3 yellow, 4 blue, 5 orange, 6 purple, ...: the same label has the "
	"same colour in every picture), with a legend of the labels shown. Frames of a case are "
	"adjacent in the stream; a case without an image frame is drawn on black. Label and mask "
	"frames must have the image's sizes.\n\n"
	"Pixels follow the spacing: a slice of 0.8 x 2.5 mm voxels is drawn 3.125 times as tall as "
	"wide, so anatomy keeps its shape. Slices are shown in voxel order as stored (no "
	"reorientation); each tile carries its slice number, the title the case, plane and window.\n\n"
	"The PNG is 8-bit RGB, written whole or not at all (temporary name, then renamed); the "
	"same input and options give the same bytes.",
	"$ vol-cat ct.nii.gz --label seg.nii.gz | vol-preview -p soft-tissue -o ct.png\n"
	"Labelled axial slices of a CT with its labels.\n"
	"$ vol-preview -a coronal --slices every:8 --outline --alpha 0 -o '{case}-coronal.png' cases.nrrd\n"
	"Coronal outlines, one PNG per case.",
	"seg-eval(1), hu-window(1), vol-info(1), medpipe(7)",
	opts, 0
};

/* a case: its frames as read (voxels are fetched in their own type), sizes
 * and spacing of its first frame */
typedef struct {
	const mp_frame *img;         /* NULL, or the image frame */
	mp_frame *labs;              /* nlabs label/mask frames */
	size_t nlabs;
	size_t dim[3];
	double sp[3];
	const char *casename;
	const char *src;
	int frameno;
	const mp_frame *first;       /* its first frame (output names: mp_outname) */
} kase;

static int axis;
static int ncase;
static size_t cdim[3];
static double csp[3];

static void
render(kase *k)
{
	ncase++;
	if (ncase > 1 && !mp_outname_per_case(outpat))
		mp_die("%s: frame %d: a second case ('%s'): use {case} or {n} in the --output name",
		       k->src, k->frameno, k->casename);
	size_t ns = mp_preview_nslices(k->dim, axis), *sel = mp_xmalloc((ns ? ns : 1) * sizeof *sel), nsel = 0;
	mp_preview_opts o = { axis, 0, 1, alpha, outline, scale };
	const char *spec = slices_s ? slices_s : (k->nlabs ? "labelled" : "all");

	int sr = mp_preview_select(spec, k->labs, k->nlabs, k->dim, axis, sel, &nsel);
	if (sr == -2)
		mp_usage_die("%s", mp_err());
	if (sr < 0)
		mp_die("%s: frame %d: %s", k->src, k->frameno, mp_err());
	if (nsel == 0) {
		mp_warn("%s: case '%s': no slice to show (%s); showing the middle slice", k->src, k->casename, spec);
		sel[nsel++] = ns / 2;
	}
	if (maxn > 0)
		mp_preview_spread(sel, &nsel, (size_t)maxn);

	/* window */
	if (preset) {
		const mp_win_preset *w = mp_win_preset_find(preset);
		if (!w)
			mp_usage_die("--preset: unknown preset '%s'", preset);
		o.lo = w->level - w->width / 2;
		o.hi = w->level + w->width / 2;
	} else if (window_s) {
		double lw[2];
		if (mp_parse_doubles(window_s, lw, 2) != 2 || !(lw[1] > 0))
			mp_usage_die("--window: expected L,W with W > 0: %s", window_s);
		o.lo = lw[0] - lw[1] / 2;
		o.hi = lw[0] + lw[1] / 2;
	} else if (range_s) {
		double r[2];
		if (mp_parse_doubles(range_s, r, 2) != 2 || !(r[1] > r[0]))
			mp_usage_die("--range: expected LO,HI with HI > LO: %s", range_s);
		o.lo = r[0];
		o.hi = r[1];
	} else if (k->img) {
		double p[2] = { 0.5, 99.5 }, v[2];
		if (mp_percentiles(k->img->data, k->img->type, k->dim[0] * k->dim[1] * k->dim[2], 0, p, 2, v) == 0) {
			o.lo = v[0];
			o.hi = v[1];
		}
	}

	mp_rgb r;
	char title[256];
	snprintf(title, sizeof title, "%s %s %g/%g", *k->casename ? k->casename : "", axis_s, o.lo, o.hi);
	if (mp_preview_montage(&r, k->img, k->labs, k->nlabs, k->dim, k->sp, sel, nsel, &o, (size_t)cols,
	                       !no_legend, no_text ? NULL : title) < 0)
		mp_die("%s: case '%s': %s", k->src, k->casename, mp_err());
	char *path = mp_outname(outpat, k->first, ncase);
	if (mp_png_save(path, &r) < 0)
		mp_die("%s", mp_err());
	mp_note("%s: %zu slices, %zux%zu pixels", path, nsel, r.w, r.h);
	free(path);
	free(sel);
	mp_rgb_free(&r);
}

static int
frame_role(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	const char *role = mp_role(f);

	(void)ctx, (void)in, (void)c;
	return strcmp(role, "image") == 0 || strcmp(role, "label") == 0 || strcmp(role, "mask") == 0 ? MP_CASE_HOLD
	                                                                                             : MP_CASE_SKIP;
}

static int
frame_check(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	size_t d[3];

	(void)ctx;
	if (mp_frame_xyz(f, &d[0], &d[1], &d[2]) < 0)
		return mp_seterr("%s: frame %d: not a scalar 2D or 3D frame", mp_in_name(in), mp_in_frameno(in));
	if (strcmp(mp_role(f), "image") == 0)
		for (size_t i = 0; i < c->n; i++)
			if (strcmp(mp_role(&c->f[i]), "image") == 0) {
				/* a second image of the case: skip it */
				mp_warn("%s: frame %d: a second image for case '%s' is not shown", mp_in_name(in),
				        mp_in_frameno(in), c->name);
				return MP_CASE_SKIP;
			}
	if (!c->n) {
		memcpy(cdim, d, sizeof cdim);
		for (int a = 0; a < 3; a++)
			csp[a] = a < f->dim ? mp_spacing(f, a) : 1.0;
		return 0;
	}
	if (memcmp(cdim, d, sizeof cdim) != 0)
		return mp_seterr("%s: frame %d: sizes %zux%zux%zu differ from the case's %zux%zux%zu",
		                 mp_in_name(in), mp_in_frameno(in), d[0], d[1], d[2], cdim[0], cdim[1], cdim[2]);
	return 0;
}

static int
each_case(void *ctx, mp_heldcase *c, mp_out *o)
{
	kase k = { NULL, mp_xmalloc(c->n * sizeof(mp_frame)), 0, { 0 }, { 0 }, c->name, c->src, c->frameno, c->f };

	(void)ctx, (void)o;
	memcpy(k.dim, cdim, sizeof k.dim);
	memcpy(k.sp, csp, sizeof k.sp);
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(mp_role(&c->f[i]), "image") == 0)
			k.img = &c->f[i];
		else
			k.labs[k.nlabs++] = c->f[i];   /* a view: c owns them */
	render(&k);
	free(k.labs);
	return 0;
}

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);

	if (!outpat)
		mp_usage_die("--output: required");
	outpat = mp_outname_percent(outpat);
	if (strcmp(axis_s, "axial") == 0)
		axis = 0;
	else if (strcmp(axis_s, "coronal") == 0)
		axis = 1;
	else if (strcmp(axis_s, "sagittal") == 0)
		axis = 2;
	else
		mp_usage_die("--axis: expected axial, coronal or sagittal: %s", axis_s);
	if (!(alpha >= 0 && alpha <= 1))
		mp_usage_die("--alpha: must be in 0..1");
	if (!(scale > 0 && scale <= 64))
		mp_usage_die("--scale: must be in (0, 64]");
	if (maxn < 0 || cols < 0)
		mp_usage_die("--max and --cols must be >= 0");

	mp_run_cases(args, nargs, NULL, 0, frame_role, frame_check, each_case, NULL);
	if (ncase == 0)
		mp_die("no image, label or mask frame in the input");
	return 0;
}
