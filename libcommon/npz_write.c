/* npz_write.c - vol2npz after its options: frames to .npy / .npz files, one
 * array per frame (roles layout, streamed) or MedSAM's npz of a case's image
 * and label (medsam layout) and its per-slice training files (--slices).
 * The .npy and zip writers are npz.c and zipwrite.c.
 */
#include "mp.h"
#include "mp_filter.h"
#include "mp_fmt.h"
#include "mp_label.h"
#include "mp_sam.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the options of this run, set by mp_vol2npz_stream */
static const char *outpat, *layout, *slicedir, *slicename, *slicetype, *border;
static long level, slicesize;
static int stored;

/* ---------------------------------------------------------------- output files */
typedef struct {
	char *path;
	int npy;
	mp_afile *a;
	mp_zip *z;
	char **names;
	size_t nnames;
	int frames;
} outfile;

static outfile cur;
static int medsam, percase, ncase;

static int
ends_with(const char *s, const char *e)
{
	size_t n = strlen(s), m = strlen(e);

	return n >= m && strcmp(s + n - m, e) == 0;
}

static void
out_start(const char *path)
{
	memset(&cur, 0, sizeof cur);
	cur.path = mp_xstrdup(path);
	if (strcmp(path, "-") == 0) {
		/* standard output: an .npz with data descriptors when it is a pipe */
		if (isatty(1))
			mp_usage_die("refusing to write an npz to a terminal");
		cur.z = mp_zip_open(stdout, "<stdout>", stored ? 0 : (int)level);
		return;
	}
	cur.npy = ends_with(path, ".npy");
	cur.a = mp_afile_open(path);
	if (!cur.a)
		mp_die("%s", mp_err());
	if (!cur.npy)
		cur.z = mp_zip_open(cur.a->fp, path, stored ? 0 : (int)level);
}

static void
out_finish(void)
{
	if (!cur.path)
		return;
	if (cur.z && mp_zip_close(cur.z) < 0)
		mp_die("%s", mp_err());
	if (cur.a && mp_afile_commit(cur.a) < 0)
		mp_die("%s", mp_err());
	mp_note("wrote %s (%d arrays)", cur.path, cur.frames);
	for (size_t i = 0; i < cur.nnames; i++)
		free(cur.names[i]);
	free(cur.names);
	free(cur.path);
	memset(&cur, 0, sizeof cur);
}

/* a unique array name in the current file */
static char *
array_name(const char *base)
{
	char *n = mp_xmalloc(strlen(base) + 24);
	int k = 1;

	strcpy(n, base);
	for (size_t i = 0; i < cur.nnames; i++)
		if (strcmp(cur.names[i], n) == 0) {
			sprintf(n, "%s_%d", base, ++k);
			i = (size_t)-1;
		}
	cur.names = mp_xrealloc(cur.names, (cur.nnames + 1) * sizeof *cur.names);
	cur.names[cur.nnames++] = mp_xstrdup(n);
	return n;
}

static void
shape_of(const mp_frame *f, size_t *shp)
{
	for (int a = 0; a < f->dim; a++)
		shp[a] = f->size[f->dim - 1 - a];
}

static void
die_in(mp_in *in, const char *fmt, const char *a)
{
	char msg[512];

	snprintf(msg, sizeof msg, fmt, a);
	mp_die("%s: frame %d: %s", mp_in_name(in), mp_in_frameno(in), msg);
}

/* roles layout: stream one frame into the current file */
static int
put_frame(mp_in *in, mp_frame *f)
{
	size_t shp[MP_MAXDIM], hl, chunk = 4u << 20, left = mp_frame_nbytes(f);
	char *h, *name, *entry;
	unsigned char *buf;
	FILE *fp = cur.a ? cur.a->fp : stdout;

	if (cur.npy && cur.frames > 0)
		die_in(in, "%s holds one array and the stream has more frames for it: write an .npz", cur.path);
	shape_of(f, shp);
	h = mp_npy_header(f->type, f->dim, shp, &hl);
	if (!h)
		die_in(in, "%s", mp_err());
	name = array_name(mp_role(f));
	if (cur.z) {
		entry = mp_xmalloc(strlen(name) + 5);
		sprintf(entry, "%s.npy", name);
		if (mp_zip_begin(cur.z, entry, (int64_t)(hl + left)) < 0 || mp_zip_write(cur.z, h, hl) < 0)
			mp_die("%s", mp_err());
		free(entry);
	} else if (fwrite(h, 1, hl, fp) != hl) {
		mp_die("%s: write error: %s", cur.path, strerror(errno));
	}
	free(h);
	free(name);
	buf = mp_xmalloc(chunk);
	while (left) {
		size_t k = left < chunk ? left : chunk;
		if (mp_in_data(in, buf, k) < 0)
			mp_die("%s", mp_err());
		if (mp_type_size(f->type) > 1 && ((const unsigned char *)&(uint16_t){ 1 })[0] == 0)
			mp_swap_bytes(buf, mp_type_size(f->type), k / mp_type_size(f->type));
		if (cur.z ? mp_zip_write(cur.z, buf, k) < 0 : fwrite(buf, 1, k, fp) != k)
			mp_die("%s: %s", cur.path, cur.z ? mp_err() : strerror(errno));
		left -= k;
	}
	free(buf);
	if (cur.z && mp_zip_end(cur.z) < 0)
		mp_die("%s", mp_err());
	cur.frames++;
	return 0;
}

/* ---------------------------------------------------------------- medsam layout */
/* the held frame of role r in c, or NULL */
static const mp_frame *
held_role(const mp_heldcase *c, const char *r)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(mp_role(&c->f[i]), r) == 0)
			return &c->f[i];
	return NULL;
}

/* MedSAM's per-slice files of nz slices of nc (1 grey, 3 RGB interleaved)
 * channels: imgs/NAME-%03d.npy (mp_sam_train_image) and gts/NAME-%03d.npy
 * (the label slice, nearest neighbour) */
static void
write_slices(const char *name, const uint8_t *img, int nc, const uint8_t *gt, size_t nx, size_t ny, size_t nz)
{
	size_t n = (size_t)slicesize, shp3[3] = { n, n, 3 }, shp2[2] = { n, n }, np = nx * ny * (size_t)nc;
	int f32 = strcmp(slicetype, "float32") == 0;
	float *src = mp_xmalloc(np * sizeof *src), *work = mp_xmalloc(3 * n * n * sizeof *work);
	void *rgb = mp_xmalloc(n * n * 3 * (f32 ? 4 : 8));
	uint8_t *g = mp_xmalloc(n * n);
	size_t plen = strlen(slicedir) + strlen(name) + 24;
	char *path = mp_xmalloc(plen);
	mp_sam_pre p;
	mp_afile *a;

	snprintf(path, plen, "%s/imgs/", slicedir);
	if (mp_make_parents(path) < 0)
		mp_die("%s", mp_err());
	snprintf(path, plen, "%s/gts/", slicedir);
	if (mp_make_parents(path) < 0)
		mp_die("%s", mp_err());
	if (mp_sam_pre_init(&p, MP_SAM_MEDSAM, MP_RS_BSPLINE3, (int)n, nx, ny, nc, strcmp(border, "constant") == 0, 1) < 0)
		mp_die("%s: per-slice resize: %s", name, mp_err());
	for (size_t z = 0; z < nz; z++) {
		for (size_t i = 0; i < np; i++)
			src[i] = img[z * np + i];
		mp_sam_train_image(&p, src, work, f32, rgb);
		snprintf(path, plen, "%s/imgs/%s-%03zu.npy", slicedir, name, z);
		if (!(a = mp_afile_open(path)) || mp_npy_write(a->fp, f32 ? MP_FLOAT32 : MP_FLOAT64, 3, shp3, rgb) < 0 ||
		    mp_afile_commit(a) < 0)
			mp_die("%s: %s", path, mp_err());
		mp_resize_nearest(g, n, n, gt + z * nx * ny, nx, ny, 1);
		snprintf(path, plen, "%s/gts/%s-%03zu.npy", slicedir, name, z);
		if (!(a = mp_afile_open(path)) || mp_npy_write(a->fp, MP_UINT8, 2, shp2, g) < 0 || mp_afile_commit(a) < 0)
			mp_die("%s: %s", path, mp_err());
	}
	mp_sam_pre_free(&p);
	free(src), free(work), free(rgb), free(g), free(path);
}

static char *
base_name(const char *path)
{
	const char *b = strrchr(path, '/');
	char *s = mp_xstrdup(b ? b + 1 : path), *dot = strrchr(s, '.');

	if (dot && dot != s)
		*dot = 0;
	return s;
}

/* MedSAM's npz of a case: imgs (3 axes), gts (gdim axes) and, for a volume
 * (sp not NULL), spacing */
static void
medsam_write(const mp_frame *mimg, const size_t *ishape, const void *img, int gdim, const size_t *gshape,
             const uint8_t *gt, const double *sp)
{
	char *path = mp_outname(outpat, mimg, ++ncase);
	if (ends_with(path, ".npy"))
		mp_die("%s: MedSAM's layout is an .npz", path);
	out_start(path);
	if (mp_npz_add(cur.z, "imgs", MP_UINT8, 3, ishape, img) < 0 ||
	    mp_npz_add(cur.z, "gts", MP_UINT8, gdim, gshape, gt) < 0 ||
	    (sp && mp_npz_add(cur.z, "spacing", MP_FLOAT64, 1, (size_t[]){ 3 }, sp) < 0))
		mp_die("%s", mp_err());
	cur.frames = sp ? 3 : 2;
	out_finish();
	free(path);
}

/* the base name of a case's --slices files */
static char *
slice_base(const char *cs)
{
	return slicename ? mp_xstrdup(slicename) : *cs ? mp_xstrdup(cs) : outpat ? base_name(outpat) : mp_xstrdup("slice");
}

/* a case in MedSAM's layout: its image and its label */
static void
medsam_flush(const mp_heldcase *c)
{
	size_t nx, ny, nz, shp[3];
	uint8_t *gt;
	double sp[3];
	const char *cs = c->name, *msrc = c->src;
	const mp_frame *mimg = held_role(c, "image"), *mlab = held_role(c, "label");
	int have_img = mimg != NULL, have_lab = mlab != NULL;

	if (!have_img && !have_lab)
		return;
	if (!have_img || !have_lab)
		mp_die("%s: case '%s': no %s frame: MedSAM's layout needs an image and a label", msrc, cs,
		       have_img ? "label" : "image");
	if (mimg->type != MP_UINT8)
		mp_die("%s: case '%s': image frame is %s: MedSAM's imgs are uint8 (hu-window --type uint8)", msrc, cs,
		       mp_type_name(mimg->type));
	if (!mp_type_is_int(mlab->type))
		mp_die("%s: case '%s': label frame is not of an integer type (%s)", msrc, cs, mp_type_name(mlab->type));
	int rgb = mimg->dim == 3 && mimg->size[0] == 3 && !mimg->has_dir[0];
	if (mimg->dim == 2 || rgb) {
		/* MedSAM's 2D layout: imgs (H, W, 3), gts (H, W) */
		nx = mimg->size[rgb], ny = mimg->size[rgb + 1], nz = 1;
		if (mlab->dim != 2 || mlab->size[0] != nx || mlab->size[1] != ny)
			mp_die("%s: case '%s': image and label sizes differ", msrc, cs);
	} else if (mp_frame_xyz(mimg, &nx, &ny, &nz) < 0)
		mp_die("%s: case '%s': image frame is not a 2D or 3D scalar volume", msrc, cs);
	else if (mlab->dim != mimg->dim || memcmp(mlab->size, mimg->size, sizeof mimg->size) != 0)
		mp_die("%s: case '%s': image and label sizes differ", msrc, cs);
	if (mlab->type == MP_UINT8) {
		gt = mlab->data;
	} else {
		double mn, mx;
		mp_frame_minmax(mlab, &mn, &mx);
		if (mn < 0 || mx > 255)
			mp_die("%s: case '%s': label %g does not fit uint8 (MedSAM's gts): renumber with label-map", msrc, cs,
			       mn < 0 ? mn : mx);
		gt = mp_xmalloc(nx * ny * nz);
		mp_convert(gt, MP_UINT8, mlab->data, mlab->type, nx * ny * nz);
	}
	for (int a = 0; a < 3; a++)
		sp[a] = a < mimg->dim ? mp_spacing(mimg, a) : 1.0;
	shp[0] = nz, shp[1] = ny, shp[2] = nx;
	if (mimg->dim == 2 || rgb) {
		uint8_t *img3 = rgb ? mimg->data : mp_xmalloc(nx * ny * 3);
		size_t s3[3] = { ny, nx, 3 }, s2[2] = { ny, nx };
		if (!rgb)
			for (size_t i = 0; i < nx * ny; i++)
				img3[3 * i] = img3[3 * i + 1] = img3[3 * i + 2] = ((uint8_t *)mimg->data)[i];
		if (outpat)
			medsam_write(mimg, s3, img3, 2, s2, gt, NULL);
		if (slicedir) {
			char *name = slice_base(cs);
			write_slices(name, img3, 3, gt, nx, ny, 1);
			free(name);
		}
		if (!rgb)
			free(img3);
		if (gt != mlab->data)
			free(gt);
		return;
	}
	if (outpat)
		medsam_write(mimg, shp, mimg->data, 3, shp, gt, sp);
	if (slicedir) {
		char *name = slice_base(cs);
		write_slices(name, mimg->data, 1, gt, nx, ny, nz);
		free(name);
	}
	if (gt != mlab->data)
		free(gt);
}

/* ---------------------------------------------------------------- the frame loop */
/* every frame header: a second case where the output holds one is an error */
static int
frame_role(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	(void)ctx;
	if (c->name && strcmp(c->name, mp_case(f)) != 0 && !percase && outpat && (medsam || ends_with(outpat, ".npy")))
		mp_die("%s: frame %d: a second case ('%s' after '%s'): put {case} in the output name", mp_in_name(in),
		       mp_in_frameno(in), mp_case(f), c->name);
	return medsam ? MP_CASE_HOLD : MP_CASE_READ;
}

/* medsam layout: the first image and the first label of a case are held */
static int
frame_check(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	const char *role = mp_role(f);

	(void)ctx;
	if ((strcmp(role, "image") == 0 || strcmp(role, "label") == 0) && !held_role(c, role))
		return 0;
	mp_note("%s: frame %d: role %s not in MedSAM's layout: skipped", mp_in_name(in), mp_in_frameno(in), role);
	return MP_CASE_SKIP;
}

/* roles layout: every frame streamed into the file of its case */
static int
stream_frame(void *ctx, mp_in *in, mp_frame *f, mp_out *o)
{
	(void)ctx, (void)o;
	if (!cur.path) {
		char *p = mp_outname(outpat, f, ++ncase);
		out_start(p);
		free(p);
	}
	return put_frame(in, f);
}

static int
case_end(void *ctx, mp_heldcase *c, mp_out *o)
{
	(void)ctx, (void)o;
	if (medsam)
		medsam_flush(c);
	else if (percase)
		out_finish();
	return 0;
}

void
mp_vol2npz_stream(const mp_vol2npz_opts *opt, char **args, int nargs)
{
	outpat = opt->output, layout = opt->layout ? opt->layout : "roles", slicedir = opt->slices;
	slicename = opt->name, slicetype = opt->slice_type ? opt->slice_type : "float64";
	border = opt->border ? opt->border : "reflect";
	level = opt->level, slicesize = opt->size, stored = opt->stored;
	if (strcmp(layout, "medsam") == 0)
		medsam = 1;
	else if (strcmp(layout, "roles") == 0)
		medsam = 0;
	else
		mp_usage_die("--layout %s: want roles or medsam", layout);
	if (!outpat && !slicedir) {
		/* "... | vol2npz out.npz": a name to write, given where inputs go */
		if (nargs > 0 && (ends_with(args[nargs - 1], ".npz") || ends_with(args[nargs - 1], ".npy")) &&
		    access(args[nargs - 1], F_OK) != 0)
			mp_usage_die("%s: no such input file; to write it, give -o %s", args[nargs - 1], args[nargs - 1]);
		mp_usage_die("no output: give -o OUT.npz (or --slices DIR)");
	}
	if (slicedir && !medsam)
		mp_usage_die("--slices needs --layout medsam (images and labels of each case)");
	if (outpat && strcmp(outpat, "-") != 0 && !ends_with(outpat, ".npz") && !ends_with(outpat, ".npy"))
		mp_usage_die("%s: the output must end in .npz or .npy ('-': an npz on standard output)", outpat);
	if (level < 0 || level > 9)
		mp_usage_die("--level %ld: want 0..9", level);
	if (strcmp(border, "reflect") != 0 && strcmp(border, "constant") != 0)
		mp_usage_die("--border %s: want reflect or constant", border);
	if (slicesize < 1 || slicesize > 65536)
		mp_usage_die("--size %ld: want 1..65536", slicesize);
	if (strcmp(slicetype, "float64") != 0 && strcmp(slicetype, "float32") != 0)
		mp_usage_die("--slice-type %s: want float64 or float32", slicetype);
	percase = outpat && mp_outname_per_case(outpat);
	mp_read_frames(args, nargs, NULL, &(mp_reader){ frame_role, frame_check, stream_frame, case_end, NULL, 0, 0 }, NULL);
	out_finish();
	free(args);
}
