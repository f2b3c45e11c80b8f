/* roi-crop - keep the labelled slices and/or crop to the labelled box plus a
 * margin; every frame of a case on the label's grid is cropped alike */
#include "mp.h"
#include "mp_filter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *slices_s, *bbox_s, *margin_s, *margin_mm_s, *labels_s, *empty_s = "error", *from = "label";
static int allow_empty;

static const mp_opt opts[] = {
	{ "slices", 'z', MP_OPT_STR, &slices_s, NULL, "MODE", "labelled: keep exactly the slices that hold a label (MedSAM's rule); range: keep the slices from the first to the last labelled one (plus the z margin)." },
	{ "bbox", 'b', MP_OPT_STR, &bbox_s, NULL, "2d|3d", "Crop to the bounding box of the labels plus the margin: in-plane (2d: x and y) or in 3-D (x, y and z)." },
	{ "margin", 'm', MP_OPT_STR, &margin_s, NULL, "N|X,Y,Z", "Margin around the box, in voxels (default 0)." },
	{ "margin-mm", 'M', MP_OPT_STR, &margin_mm_s, NULL, "D|X,Y,Z", "Margin around the box in mm (rounded up to whole voxels per axis)." },
	{ "labels", 'l', MP_OPT_STR, &labels_s, NULL, "A,B,...", "Only these label values count (default: any non-zero value)." },
	{ "from", 0, MP_OPT_STR, &from, NULL, "ROLE", "Role of the frame the box is computed from (default label; mask also works)." },
	{ "empty", 0, MP_OPT_STR, &empty_s, NULL, "WHAT", "A case whose label frame holds no label: error (default: exit 1), keep (pass the case uncropped) or drop (leave it out)." },
	{ "allow-empty", 0, MP_OPT_FLAG, &allow_empty, NULL, NULL, "Same as --empty keep." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"roi-crop",
	"keep the labelled slices, crop to the labelled region plus a margin",
	"[options] [FILE...]",
	"roi-crop reads the frames of one case at a time (adjacent frames with the same "
	MP_K_CASE "; frames without one form a single case), finds the voxels of the case's "
	"label frame (role label, or --from) holding a label (any non-zero value, or --labels), "
	"and cuts every frame of the case that lies on the label's grid (same sizes) alike: the "
	"image, the label itself, masks. Frames on other grids pass through unchanged.\n\n"
	"--slices labelled keeps exactly the slices holding a label, as MedSAM's pre_CT_MR.py "
	"does; when they are not contiguous the kept slices are stacked and the frame's z geometry "
	"is that of the first kept slice (a warning says so), while " MP_K_HISTORY " records "
	"each slice's true position. --slices range keeps the first to the last labelled slice. "
	"--bbox 2d crops x and y to the labels' bounding box, --bbox 3d also z; the margin "
	"(--margin voxels, --margin-mm millimetres, one value or X,Y,Z) widens the box, clipped "
	"to the volume. --slices and --bbox combine (--slices with --bbox 2d).\n\n"
	"The origin moves to the first kept voxel, so world positions stay exact; the crop is "
	"appended to " MP_K_HISTORY " (see vol-restore(1)).\n\n"
	"The case is held in memory. A case without a label frame, a label frame that is not "
	"of an integer type, or an empty label frame (unless --empty says otherwise) is an "
	"error (exit 1).",
	"$ vol-cat ct.nii.gz --label seg.nii.gz | roi-crop --slices labelled | vol2npz -o out.npz\n"
	"MedSAM's slice selection.\n"
	"$ roi-crop --bbox 3d --margin-mm 10 < case.nrrd > roi.nrrd\n"
	"Crop to the labels plus 10 mm on every side.\n"
	"$ roi-crop --bbox 2d --labels 1 --margin 5 --slices range < case.nrrd\n"
	"The box of label 1 with 5 voxels around it, over the slices holding it.",
	"vol-resize(1), vol-restore(1), label-map(1), medpipe-vol(5)",
	opts, 1
};

static int mode_slices;      /* 0 none, 1 labelled (list), 2 range */
static int mode_bbox;        /* 0 none, 2, 3 */
static double margin[3], margin_mm[3];
static int use_mm;
static int64_t *lablist;
static size_t nlab;
static int empty_mode;       /* 0 error, 1 keep, 2 drop */

static int
emit_all(mp_heldcase *c, mp_out *o)
{
	for (size_t i = 0; i < c->n; i++)
		if (mp_out_held(o, &c->f[i]) < 0)
			return -1;
	return 0;
}

static int
crop_case(void *ctx, mp_heldcase *c, mp_out *o)
{
	mp_frame *lab = NULL;
	size_t s[3], lo[3], hi[3], box0[3], boxn[3];
	const char *cname = *c->name ? c->name : "(no case)";

	(void)ctx;
	for (size_t i = 0; i < c->n && !lab; i++)
		if (strcmp(mp_role(&c->f[i]), from) == 0)
			lab = &c->f[i];
	if (!lab)
		return mp_seterr("%s: case %s: no frame of role %s to crop by", c->src, cname, from);
	if (mp_frame_xyz(lab, &s[0], &s[1], &s[2]) < 0)
		return mp_seterr("%s: case %s: the %s frame is not a 2-D or 3-D scalar volume", c->src, cname, from);
	if (!mp_type_is_int(lab->type))
		return mp_seterr("%s: case %s: the %s frame is not of an integer type (%s)", c->src, cname, from, mp_type_name(lab->type));
	unsigned char *zused = mp_xmalloc(s[2]);
	long long cnt = mp_label_bbox(lab->data, lab->type, s[0], s[1], s[2], lablist, nlab, lo, hi, zused);
	if (cnt <= 0) {
		free(zused);
		if (empty_mode == 1) {
			mp_warn("%s: case %s: no label: passed uncropped", c->src, cname);
			return emit_all(c, o);
		}
		if (empty_mode == 2) {
			mp_warn("%s: case %s: the %s frame holds no %s: case left out (--empty drop)", c->src, cname,
			        from, nlab ? "chosen label" : "label");
			return 0;
		}
		return mp_seterr("%s: case %s: the %s frame holds no %s: nothing to keep (see --empty)",
		                 c->src, cname, from, nlab ? "chosen label" : "label");
	}
	/* the box */
	for (int a = 0; a < 3; a++) {
		double m = margin[a];
		if (use_mm) {
			double sp = mp_spacing(lab, a);
			m = ceil(margin_mm[a] / sp - 1e-9);
		}
		int boxed = (a < 2 && mode_bbox) || (a == 2 && (mode_bbox == 3 || mode_slices == 2));
		if (!boxed || (a == 2 && lab->dim == 2)) {
			box0[a] = 0;
			boxn[a] = s[a];
			continue;
		}
		size_t mm = m > (double)s[a] ? s[a] : (size_t)m;
		box0[a] = lo[a] > mm ? lo[a] - mm : 0;
		size_t e = hi[a] + mm >= s[a] ? s[a] - 1 : hi[a] + mm;
		boxn[a] = e - box0[a] + 1;
	}
	/* the slice list (labelled mode) */
	size_t *list = NULL, nl = 0;
	int contiguous = 1;
	if (mode_slices == 1 && lab->dim > 2) {
		list = mp_xmalloc(s[2] * sizeof *list);
		for (size_t z = 0; z < s[2]; z++)
			if (zused[z])
				list[nl++] = z;
		contiguous = list[nl - 1] - list[0] + 1 == nl;
		box0[2] = list[0];
		boxn[2] = nl;
		if (!contiguous)
			mp_warn("%s: case %s: the labelled slices are not contiguous (%zu of %zu..%zu): "
			        "stacked; z geometry of the first; true positions in " MP_K_HISTORY,
			        c->src, cname, nl, list[0], list[nl - 1]);
	}
	free(zused);
	for (size_t i = 0; i < c->n; i++) {
		mp_frame *f = &c->f[i], g;
		size_t fs[3];
		if (mp_frame_xyz(f, &fs[0], &fs[1], &fs[2]) < 0 || fs[0] != s[0] || fs[1] != s[1] || fs[2] != s[2] || f->dim != lab->dim) {
			const char *role = mp_role(f);
			if (strcmp(role, "image") == 0 || strcmp(role, "label") == 0 || strcmp(role, "mask") == 0)
				mp_warn("%s: case %s: a frame of role %s is not on the grid of the %s frame: passed uncropped",
				        c->src, cname, role, from);
			if (mp_out_held(o, f) < 0)
				goto fail;
			continue;
		}
		mp_frame_copy_header(&g, f);
		mp_hist_grid0(&g);   /* before the geometry changes */
		g.size[0] = boxn[0];
		g.size[1] = boxn[1];
		if (g.dim > 2)
			g.size[2] = boxn[2];
		/* geometry: the origin moves to the first kept voxel */
		double ijk[3] = { (double)box0[0], (double)box0[1], (double)box0[2] };
		if (g.space)
			mp_vox2world(f, ijk, g.origin);
		if (contiguous) {
			if (box0[0] || box0[1] || box0[2] || boxn[0] != s[0] || boxn[1] != s[1] || boxn[2] != s[2])
				mp_hist_crop(&g, s, boxn, box0);
		} else {
			size_t p2[3] = { boxn[0], boxn[1], s[2] }, o2[3] = { box0[0], box0[1], 0 };
			if (box0[0] || box0[1] || boxn[0] != s[0] || boxn[1] != s[1])
				mp_hist_crop(&g, s, p2, o2);
			mp_hist_slices(&g, s[2], list, nl);
		}
		mp_frame_touch(&g);
		/* written straight from the held frame: no copy of the crop */
		int r = mp_out_crop(o, &g, f->data, mp_type_size(f->type), s[0], s[1], box0[0], box0[1], boxn[0],
		                    boxn[1], contiguous ? NULL : list, box0[2], boxn[2]);
		mp_frame_free(&g);
		mp_frame_clear_data(f);
		if (r < 0)
			goto fail;
	}
	free(list);
	return 0;
fail:
	free(list);
	return -1;
}

static int
parse3(const char *s, double v[3], const char *opt)
{
	int n = mp_parse_doubles(s, v, 3);

	if (n == 1)
		v[1] = v[2] = v[0];
	if ((n != 1 && n != 3) || !(v[0] >= 0) || !(v[1] >= 0) || !(v[2] >= 0) || !isfinite(v[0] + v[1] + v[2]))
		mp_usage_die("%s: want one value or X,Y,Z (>= 0), not '%s'", opt, s);
	return 0;
}

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);

	if (slices_s) {
		if (strcmp(slices_s, "labelled") == 0 || strcmp(slices_s, "labeled") == 0)
			mode_slices = 1;
		else if (strcmp(slices_s, "range") == 0)
			mode_slices = 2;
		else
			mp_usage_die("--slices: '%s' is neither labelled nor range", slices_s);
	}
	if (bbox_s) {
		if (strcmp(bbox_s, "2d") == 0 || strcmp(bbox_s, "2D") == 0)
			mode_bbox = 2;
		else if (strcmp(bbox_s, "3d") == 0 || strcmp(bbox_s, "3D") == 0)
			mode_bbox = 3;
		else
			mp_usage_die("--bbox: '%s' is neither 2d nor 3d", bbox_s);
	}
	if (!mode_slices && !mode_bbox)
		mp_usage_die("nothing to do: give --slices and/or --bbox");
	if (mode_bbox == 3 && mode_slices)
		mp_usage_die("--bbox 3d already crops the slices: it does not go with --slices");
	if (margin_s && margin_mm_s)
		mp_usage_die("--margin and --margin-mm exclude each other");
	if (margin_s)
		parse3(margin_s, margin, "--margin");
	if (margin_mm_s) {
		parse3(margin_mm_s, margin_mm, "--margin-mm");
		use_mm = 1;
	}
	if ((margin_s || margin_mm_s) && !mode_bbox && mode_slices != 2)
		mp_usage_die("a margin needs --bbox or --slices range");
	for (int a = 0; a < 3; a++)
		if (margin[a] != floor(margin[a]))
			mp_usage_die("--margin: voxels are whole numbers (use --margin-mm for mm)");
	if (allow_empty)
		empty_s = "keep";
	if (strcmp(empty_s, "error") == 0)
		empty_mode = 0;
	else if (strcmp(empty_s, "keep") == 0)
		empty_mode = 1;
	else if (strcmp(empty_s, "drop") == 0)
		empty_mode = 2;
	else
		mp_usage_die("--empty: '%s' is none of error, keep, drop", empty_s);
	if (labels_s) {
		const char *p = labels_s;
		lablist = mp_xmalloc((strlen(labels_s) / 2 + 1) * sizeof *lablist);
		while (*p) {
			char *end;
			long long v = strtoll(p, &end, 10);
			if (end == p || (*end && *end != ','))
				mp_usage_die("--labels: want integers A,B,..., not '%s'", labels_s);
			lablist[nlab++] = v;
			p = *end ? end + 1 : end;
		}
		if (!nlab)
			mp_usage_die("--labels: empty list");
	}

	mp_run_cases(args, nargs, mp_out_stdout(), 1, NULL, NULL, crop_case, NULL);
	free(lablist);
	return 0;
}
