/* vol-resize - in-plane resizing of every slice (fixed size, or longest side
 * plus padding as SAM expects), and resampling of volumes to a spacing */
#include "mp.h"
#include "mp_filter.h"
#include "mp_device.h"

#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *size_s, *interp_s = "linear", *spacing_s, *otype_s, *border_s = "reflect";
static const char *devspec;
static mp_dev *dev;
static long longest, nthreads;
static int pad;
static double pad_value = 0, cubic_a = -0.75;

static const mp_opt opts[] = {
	{ "size", 's', MP_OPT_STR, &size_s, NULL, "WxH", "Resize every slice to W x H pixels (also accepted as the first argument)." },
	{ "longest", 'L', MP_OPT_INT, &longest, NULL, "N", "Scale every slice so that its longest side is N (SAM's ResizeLongestSide: new = (int)(old*N/max + 0.5))." },
	{ "pad", 0, MP_OPT_FLAG, &pad, NULL, NULL, "With --longest: pad at the right and bottom to N x N (SAM 1024, LiteMedSAM 256)." },
	{ "pad-value", 0, MP_OPT_DBL, &pad_value, NULL, "V", "Value of padded image pixels (default 0; label and mask frames always pad with 0)." },
	{ "interp", 'i', MP_OPT_STR, &interp_s, NULL, "M", "Interpolation of image frames: linear (default), cubic, area, bspline3, nearest. Label and mask frames always use nearest." },
	{ "border", 0, MP_OPT_STR, &border_s, NULL, "MODE", "Border of --interp bspline3: reflect (default; scikit-image's default mode) or constant (zeros beyond the edge: scikit-image mode='constant', as MedSAM resizes its slices)." },
	{ "cubic-a", 0, MP_OPT_DBL, &cubic_a, NULL, "A", "The Keys parameter of --interp cubic (default -0.75 as OpenCV; -0.5 is Keys' original)." },
	{ "spacing", 'S', MP_OPT_STR, &spacing_s, NULL, "SX,SY,SZ", "Resample the volume to this spacing in mm (one value: all axes; 0 keeps an axis): trilinear for images (--interp linear) or nearest, nearest for labels." },
	{ "type", 't', MP_OPT_STR, &otype_s, NULL, "TYPE", "Voxel type of resized image frames (default: unchanged; integer types are rounded and clamped)." },
	{ "threads", 'j', MP_OPT_INT, &nthreads, NULL, "N", "Threads sharing the rows of each slice (default: the number of processors, at most 8). The output does not depend on it." },
	MP_DEV_OPTION(&devspec),
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"vol-resize",
	"resize every slice in-plane, or resample volumes to a spacing",
	"[options] [WxH] [FILE...]",
	"vol-resize resizes every slice (x-y plane) of image, logits, label and mask frames, one "
	"slice at a time: to W x H (--size or a first argument WxH), or so that the longest side "
	"is N (--longest) and, with --pad, padded at the right and bottom to N x N. Other frames "
	"pass through unchanged.\n\n"
	"Image and logits frames are interpolated: linear, cubic and area behave as OpenCV's "
	"cv::resize INTER_LINEAR, INTER_CUBIC (Keys, a = -0.75) and INTER_AREA (half-pixel "
	"centres, replicated borders, no anti-aliasing for linear and cubic); bspline3 as "
	"scikit-image's transform.resize(order=3, mode='reflect', anti_aliasing=True, "
	"preserve_range=True): a Gaussian of sigma (scale-1)/2 on shrunk axes, a cubic B-spline "
	"with mirrored borders, the result clipped to the slice's range. Computation is in single "
	"precision (the B-spline prefilter in double). Label and mask frames use nearest "
	"neighbour on the pixel centres (source pixel floor((i+0.5)*old/new)); their values are "
	"copied, never converted; they must have an integer type.\n\n"
	"Geometry stays exact in world coordinates: pixels keep covering the same area (new "
	"spacing = old * old_size / new_size, the origin moves by the half-pixel difference), "
	"padding adds pixels beyond the last row and column. The resize and the padding are "
	"appended to " MP_K_HISTORY " (and the grid before the first change to " MP_K_GRID0_PREFIX "*) "
	"so that vol-restore(1) can undo them.\n\n"
	"--spacing resamples whole volumes to a spacing: the voxel (0,0,0) keeps its position, "
	"the size along an axis becomes round(size * old / new) and the voxels lie at exactly the "
	"new spacing; images are interpolated trilinearly (or nearest with --interp nearest), "
	"labels by nearest neighbour. Two input slices are held at a time.\n\n"
	"--device (or MEDPIPE_DEVICE) chooses where the in-plane resize runs: cpu (this C code) "
	"or an OpenCL device, which uses the same tables and sums in the same order (nearest: "
	"bit for bit; the float methods agree to 1e-5 of the slice range). "
	"Resampling to a spacing and --border constant run only in C: with an OpenCL device named "
	"(not auto) they fail with one line rather than leave it. See medpipe-devices(1).",
	"$ vol-resize 1024x1024 < case.nrrd > case1024.nrrd\n"
	"Every slice to 1024 x 1024 (images linear, labels nearest).\n"
	"$ vol-resize --longest 256 --pad --interp bspline3 < case.nrrd\n"
	"LiteMedSAM's input: longest side 256, padded to 256 x 256.\n"
	"$ vol-resize --spacing 1.5,1.5,3 < ct.nrrd\n"
	"Resample to 1.5 x 1.5 x 3 mm.",
	"vol-restore(1), roi-crop(1), hu-window(1), medpipe-devices(1), medpipe-vol(5)",
	opts, 1
};

static mp_rs_method method;
static int zero_border;
static long dw_opt, dh_opt;
static double spacing[3];
static mp_type otype = MP_NONE;

static int
is_label(const mp_frame *f)
{
	const char *r = mp_role(f);
	return strcmp(r, "label") == 0 || strcmp(r, "mask") == 0;
}

static int
acts_on(const mp_frame *f)
{
	const char *r = mp_role(f);
	return is_label(f) || strcmp(r, "image") == 0 || strcmp(r, "logits") == 0;
}

static int
ferr(mp_in *in, const char *what)
{
	return mp_seterr("%s: frame %d: %s", mp_in_name(in), mp_in_frameno(in), what);
}

/* write n elements of value v of type t */
static int
put_fill(mp_out *o, mp_type t, double v, size_t n, void *buf, size_t cap)
{
	size_t el = mp_type_size(t);

	for (size_t i = 0; i < cap; i++)
		mp_put(buf, t, i, v);
	while (n > 0) {
		size_t k = n < cap ? n : cap;
		if (mp_out_data(o, buf, k * el) < 0)
			return -1;
		n -= k;
	}
	return 0;
}

static int
resize_frame(mp_in *in, mp_frame *f, mp_out *o)
{
	size_t sw, sh, nz, dw, dh, ow, oh;
	int lab = is_label(f);
	mp_type st = f->type, dt = lab || otype == MP_NONE ? st : otype;
	size_t sel = mp_type_size(st), del = mp_type_size(dt);
	mp_resizer rs;
	int rc = -1;

	if (mp_frame_xyz(f, &sw, &sh, &nz) < 0)
		return ferr(in, "not a 2-D or 3-D scalar frame: cannot resize");
	if (lab && !mp_type_is_int(st))
		return ferr(in, "label frame is not of an integer type");
	if (longest > 0) {
		mp_longest_side(sw, sh, (size_t)longest, &dw, &dh);
		ow = pad ? (size_t)longest : dw;
		oh = pad ? (size_t)longest : dh;
	} else {
		ow = dw = (size_t)dw_opt;
		oh = dh = (size_t)dh_opt;
	}
	mp_hist_grid0(f);   /* the grid before the first change */
	/* geometry: pixel-area convention */
	if (f->space)
		for (int a = 0; a < 2; a++) {
			double s = (double)(a ? sh : sw) / (double)(a ? dh : dw);
			for (int c = 0; c < 3; c++) {
				f->origin[c] += f->dir[a][c] * ((s - 1) / 2);
				f->dir[a][c] *= s;
			}
		}
	mp_hist_resize(f, sw, sh, dw, dh, lab ? "nearest" : mp_rs_name(method));
	if (ow != dw || oh != dh) {
		size_t p[3] = { dw, dh, nz }, c[3] = { ow, oh, nz }, off[3] = { 0, 0, 0 };
		mp_hist_pad(f, p, c, off);
	}
	f->size[0] = ow;
	f->size[1] = oh;
	f->type = dt;
	mp_frame_touch(f);
	if (mp_frame_check(f) < 0)
		return mp_preerr("%s: frame %d", mp_in_name(in), mp_in_frameno(in));
	if (!lab && method != MP_RS_NEAREST) {
		if (mp_resizer_init_border(&rs, method, sw, sh, dw, dh, cubic_a, zero_border) < 0)
			return mp_preerr("%s: frame %d", mp_in_name(in), mp_in_frameno(in));
		rs.nthreads = (int)nthreads;
	}
	unsigned char *sbuf = mp_xmalloc(sw * sh * sel), *dbuf = mp_xmalloc(dw * dh * del);
	unsigned char *fill = mp_xmalloc(4096 * del);
	double pv = lab ? 0 : pad_value;
	if (mp_out_header(o, f) < 0)
		goto done;
	for (size_t z = 0; z < nz; z++) {
		if (mp_in_data(in, sbuf, sw * sh * sel) < 0)
			goto done;
		if (mp_dev_resize_slice(dev, lab || method == MP_RS_NEAREST ? NULL : &rs, dbuf, dt, dw, dh,
		                        sbuf, st, sw, sh) < 0)
			goto done;
		if (ow == dw && oh == dh) {
			if (mp_out_data(o, dbuf, dw * dh * del) < 0)
				goto done;
			continue;
		}
		for (size_t y = 0; y < dh; y++) {
			if (mp_out_data(o, dbuf + y * dw * del, dw * del) < 0 ||
			    put_fill(o, dt, pv, ow - dw, fill, 4096) < 0)
				goto done;
		}
		if (put_fill(o, dt, pv, (oh - dh) * ow, fill, 4096) < 0)
			goto done;
	}
	rc = 0;
done:
	if (!lab && method != MP_RS_NEAREST)
		mp_resizer_free(&rs);
	free(sbuf);
	free(dbuf);
	free(fill);
	return rc;
}

/* ------------------------------------------------------------ to a spacing */
static int
resample_frame(mp_in *in, mp_frame *f, mp_out *o)
{
	size_t s[3], d[3];
	double step[3];
	int lab = is_label(f), near = lab || method == MP_RS_NEAREST;
	mp_type st = f->type, dt = lab || otype == MP_NONE ? st : otype;

	if (mp_frame_xyz(f, &s[0], &s[1], &s[2]) < 0)
		return ferr(in, "not a 2-D or 3-D scalar frame: cannot resample");
	if (lab && !mp_type_is_int(st))
		return ferr(in, "label frame is not of an integer type");
	if (!f->space)
		return ferr(in, "no world geometry (space directions): cannot resample to a spacing");
	mp_hist_grid0(f);
	mp_resample_plan(f, s, spacing, d, step);
	for (int a = 0; a < 3; a++)
		for (int c = 0; c < 3; c++)
			f->dir[a][c] *= step[a];
	mp_hist_resample(f, s, d, step);
	f->size[0] = d[0];
	f->size[1] = d[1];
	if (f->dim > 2)
		f->size[2] = d[2];
	f->type = dt;
	mp_frame_touch(f);
	if (mp_frame_check(f) < 0)
		return mp_preerr("%s: frame %d", mp_in_name(in), mp_in_frameno(in));
	if (mp_out_header(o, f) < 0)
		return -1;
	return mp_resample_stream(in, o, near, st, dt, s, d, step);
}

static int
each_frame(void *ctx, mp_in *in, mp_frame *f, mp_out *o)
{
	(void)ctx;
	if (!acts_on(f))
		return mp_pass(in, f, o);
	return spacing_s ? resample_frame(in, f, o) : resize_frame(in, f, o);
}

static int
looks_like_size(const char *s)
{
	regex_t re;
	int ok;

	if (regcomp(&re, "^[0-9]+x[0-9]+$", REG_EXTENDED | REG_NOSUB) != 0)
		return 0;
	ok = regexec(&re, s, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);

	if (nargs > 0 && !size_s && looks_like_size(args[0])) {
		size_s = args[0];   /* points into argv, not into args */
		nargs--;
		memmove(args, args + 1, (size_t)nargs * sizeof *args);
	}
	if (mp_rs_parse(interp_s, &method) < 0)
		mp_usage_die("--interp: %s", mp_err());
	if (strcmp(border_s, "constant") == 0)
		zero_border = 1;
	else if (strcmp(border_s, "reflect") != 0)
		mp_usage_die("--border: '%s' is neither reflect nor constant", border_s);
	if (zero_border && method != MP_RS_BSPLINE3)
		mp_usage_die("--border constant goes with --interp bspline3 only");
	if ((size_s ? 1 : 0) + (longest ? 1 : 0) + (spacing_s ? 1 : 0) != 1)
		mp_usage_die("give exactly one of WxH (--size), --longest, --spacing");
	if (pad && !longest)
		mp_usage_die("--pad needs --longest");
	if (size_s) {
		long v[2];
		if (mp_parse_dims(size_s, v, 2) != 2 || v[0] < 1 || v[1] < 1 || v[0] > 1 << 20 || v[1] > 1 << 20)
			mp_usage_die("bad size '%s': want WxH, e.g. 1024x1024", size_s);
		dw_opt = v[0];
		dh_opt = v[1];
	}
	if (longest && (longest < 1 || longest > 1 << 20))
		mp_usage_die("--longest: want a positive size, not %ld", longest);
	if (spacing_s) {
		int n = mp_parse_doubles(spacing_s, spacing, 3);
		if (n == 1)
			spacing[1] = spacing[2] = spacing[0];
		if ((n != 1 && n != 3) || spacing[0] < 0 || spacing[1] < 0 || spacing[2] < 0 ||
		    !isfinite(spacing[0] + spacing[1] + spacing[2]))
			mp_usage_die("--spacing: want SX,SY,SZ (mm, >= 0) or one value, not '%s'", spacing_s);
		if (method != MP_RS_LINEAR && method != MP_RS_NEAREST)
			mp_usage_die("--spacing interpolates with linear or nearest only, not %s", interp_s);
	}
	if (nthreads < 0 || nthreads > 64)
		mp_usage_die("--threads: want 1 to 64, not %ld", nthreads);
	if (nthreads == 0) {
		long nc = sysconf(_SC_NPROCESSORS_ONLN);
		nthreads = nc < 1 ? 1 : nc > 8 ? 8 : nc;
	}
	if (otype_s && (otype = mp_type_parse(otype_s)) == MP_NONE)
		mp_usage_die("--type: unknown type '%s'", otype_s);

	/* (--spacing and --border constant exclude each other: linear/nearest, bspline3) */
	if (!(dev = mp_dev_open_for(devspec, spacing_s ? "resampling to a spacing (--spacing)"
	                                     : zero_border ? "--border constant" : NULL)))
		mp_die("%s", mp_err());
	mp_out *o = mp_out_stdout();
	mp_run_filter(args, nargs, o, each_frame, NULL);
	return 0;
}
