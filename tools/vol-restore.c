/* vol-restore - put a prediction that went through crop, slice selection, pad
 * and resize back onto the grid of the original image */
#include "mp.h"
#include "mp_filter.h"
#include "mp_fmt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *ref_path, *roles_s = "label,mask";
static double bg = 0;
static int keep_hist;

static const mp_opt opts[] = {
	{ "ref", 'r', MP_OPT_STR, &ref_path, NULL, "FILE", "Put the frames onto the grid of the image in FILE (any format vol-cat reads, or the first frame of a stream) instead of the recorded medpipe.grid0." },
	{ "roles", 0, MP_OPT_STR, &roles_s, NULL, "LIST", "Roles of the frames to restore, comma-separated (default label,mask); other frames pass unchanged." },
	{ "background", 'b', MP_OPT_DBL, &bg, NULL, "V", "Value of voxels outside what was kept (default 0)." },
	{ "keep-history", 0, MP_OPT_FLAG, &keep_hist, NULL, NULL, "Keep medpipe.history and medpipe.grid0.* in the restored frames (by default they are removed: the frame is on its original grid again)." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"vol-restore",
	"put predictions back onto the original image grid, undoing crop, pad and resize",
	"[options] [FILE...]",
	"vol-restore reads frames (by default those of role label and mask) whose "
	"medpipe.history records how they were cut and resampled from an original grid "
	"(medpipe.grid0.*: written by roi-crop(1), vol-resize(1) and other tools that change "
	"the grid), and writes each on that original grid: every original voxel takes the value "
	"of the voxel it became (nearest neighbour through each recorded crop, slice selection, "
	"resize, pad and resampling, in exact integer arithmetic for resizes), and voxels that "
	"were cut away get the background value (0). A label that was cropped and enlarged comes "
	"back exactly.\n\n"
	"With --ref FILE (the original image in any format vol-cat(1) reads: NIfTI, NRRD, "
	"MetaImage, ...; or a frame stream, whose first frame counts), the frames go onto the "
	"reference's grid instead: when it is "
	"the recorded original grid (same sizes, geometry within 1e-3 voxel), as above with the "
	"reference's exact geometry; otherwise each reference voxel centre is located in world "
	"coordinates (LPS, mm) in the original grid (or, for frames without history, in the frame's "
	"own grid) and takes the value found there by nearest neighbour.\n\n"
	"The frame is held in memory; the output is written slice by slice.",
	"$ vol-cat ct.nii.gz --label seg.nii.gz | roi-crop --bbox 3d | vol-resize 1024x1024 | sam-embed -w medsam_vit_b.pth --slices labelled | sam-decode -w medsam_vit_b.pth --from-label | vol-restore | vol-save --as mask=pred.nii.gz --as label=ref.nii.gz\n"
	"A prediction back on the CT's grid.\n"
	"$ vol-restore --ref ct.nii.gz < pred.nrrd | vol-save --as mask=pred-on-ct.nii.gz --as label=ref-on-ct.nii.gz\n"
	"Onto the grid of a reference image.",
	"roi-crop(1), vol-resize(1), vol-save(1), medpipe-vol(5)",
	opts, 1
};

static mp_frame ref;
static int have_ref;

/* the reference grid: a frame stream / NRRD file (header only), else any format
 * mp_file_read knows (NIfTI, MetaImage, ...) */
static int
load_ref(const char *path, mp_frame *r)
{
	FILE *fp = fopen(path, "rb");
	char magic[4] = { 0 };
	int nrrd;

	if (!fp)
		return mp_seterr("%s: cannot open:", path);
	nrrd = fread(magic, 1, 4, fp) == 4 && memcmp(magic, "NRRD", 4) == 0;
	fclose(fp);
	if (nrrd || strcmp(path, "-") == 0) {
		mp_in *ri = mp_in_open(path);
		int rc;
		if (!ri)
			return -1;
		rc = mp_in_header(ri, r);
		mp_in_close(ri);
		if (rc == 0)
			return mp_seterr("%s: reference: empty stream: no frame", path);
		return rc < 0 ? -1 : 0;
	}
	mp_frame **fr;
	size_t n;
	if (mp_file_read(path, &fr, &n) < 0)
		return -1;
	if (n == 0) {
		mp_frames_free(fr, n);
		return mp_seterr("%s: reference: no image in the file", path);
	}
	mp_frame_copy_header(r, fr[0]);
	mp_frames_free(fr, n);
	return 0;
}

static int
wanted(const mp_frame *f)
{
	const char *r = mp_role(f), *p = roles_s;
	size_t n = strlen(r);

	while (*p) {
		const char *e = strchr(p, ',');
		size_t k = e ? (size_t)(e - p) : strlen(p);
		if (k == n && strncmp(p, r, n) == 0)
			return 1;
		p += k + (e ? 1 : 0);
	}
	return 0;
}

static void
grid_frame(mp_frame *g, const size_t s[3], const double dir[3][3], const double org[3])
{
	mp_frame_init(g);
	g->dim = 3;
	g->space = 1;
	for (int a = 0; a < 3; a++) {
		g->size[a] = s[a];
		g->has_dir[a] = 1;
		memcpy(g->dir[a], dir[a], sizeof g->dir[a]);
		strcpy(g->kind[a], "domain");
	}
	memcpy(g->origin, org, sizeof g->origin);
	g->type = MP_UINT8;
}

static int
same_grid(const mp_frame *a, const mp_frame *b)
{
	double z[3] = { 0, 0, 0 }, w[3], v[3];

	for (int i = 0; i < 3; i++) {
		size_t sa = i < a->dim ? a->size[i] : 1, sb = i < b->dim ? b->size[i] : 1;
		if (sa != sb)
			return 0;
	}
	/* the voxel centres (0,0,0) and the unit steps agree within 1e-3 voxel */
	for (int i = -1; i < 3; i++) {
		double ijk[3] = { 0, 0, 0 };
		if (i >= 0)
			ijk[i] = 1;
		mp_vox2world(a, ijk, w);
		if (mp_world2vox(b, w, v) < 0)
			return 0;
		for (int c = 0; c < 3; c++)
			if (fabs(v[c] - ijk[c]) > 1e-3)
				return 0;
	}
	(void)z;
	return 1;
}

static int
restore(mp_in *in, mp_frame *f, mp_out *o)
{
	mp_history h;
	long *map[3] = { NULL, NULL, NULL };
	size_t fin[3], tsz[3];
	mp_frame g0, out;
	int rc = -1, direct;
	size_t el = mp_type_size(f->type);

	if (mp_frame_xyz(f, &fin[0], &fin[1], &fin[2]) < 0)
		return mp_seterr("%s: frame %d: not a 2-D or 3-D scalar frame", mp_in_name(in), mp_in_frameno(in));
	if (mp_hist_read(f, &h) < 0)
		return mp_preerr("%s: frame %d", mp_in_name(in), mp_in_frameno(in));
	if (!h.have_grid0) {
		if (!have_ref) {
			mp_hist_free(&h);
			return mp_seterr("%s: frame %d: no recorded original grid (medpipe.grid0.*) and no --ref: nothing to restore onto",
			                 mp_in_name(in), mp_in_frameno(in));
		}
		/* identity history: the frame's own grid is grid 0 */
		double z[3] = { 0, 0, 0 }, w0[3];
		mp_vox2world(f, z, w0);
		h.have_grid0 = 1;
		memcpy(h.size0, fin, sizeof fin);
		memcpy(h.origin0, w0, sizeof w0);
		for (int a = 0; a < 3; a++) {
			double e[3] = { 0, 0, 0 }, w[3];
			e[a] = 1;
			mp_vox2world(f, e, w);
			for (int c = 0; c < 3; c++)
				h.dir0[a][c] = w[c] - w0[c];
		}
	}
	if (mp_hist_maps(&h, fin, map) < 0) {
		mp_hist_free(&h);
		return mp_preerr("%s: frame %d", mp_in_name(in), mp_in_frameno(in));
	}
	grid_frame(&g0, h.size0, h.dir0, h.origin0);
	if (mp_in_rest(in, f) < 0)
		goto done;

	/* the output frame */
	mp_frame_copy_header(&out, f);
	if (have_ref) {
		out.dim = ref.dim;
		out.space = ref.space;
		memcpy(out.size, ref.size, sizeof out.size);
		memcpy(out.has_dir, ref.has_dir, sizeof out.has_dir);
		memcpy(out.dir, ref.dir, sizeof out.dir);
		memcpy(out.origin, ref.origin, sizeof out.origin);
		memcpy(out.kind, ref.kind, sizeof out.kind);
		direct = same_grid(&ref, &g0);
	} else {
		out.dim = f->dim == 2 && h.size0[2] == 1 ? 2 : 3;
		out.space = 1;
		for (int a = 0; a < 3; a++) {
			out.size[a] = h.size0[a];
			out.has_dir[a] = a < out.dim;
			memcpy(out.dir[a], h.dir0[a], sizeof out.dir[a]);
			strcpy(out.kind[a], a < out.dim ? "domain" : "");
		}
		memcpy(out.origin, h.origin0, sizeof out.origin);
		direct = 1;
	}
	if (mp_frame_xyz(&out, &tsz[0], &tsz[1], &tsz[2]) < 0) {
		mp_seterr("%s: the reference is not a 2-D or 3-D scalar frame", ref_path);
		goto done_out;
	}
	if (!keep_hist) {
		mp_del_kv(&out, "medpipe.history");
		mp_del_kv(&out, "medpipe.grid0.sizes");
		mp_del_kv(&out, "medpipe.grid0.directions");
		mp_del_kv(&out, "medpipe.grid0.origin");
	}
	mp_frame_touch(&out);
	if (mp_out_header(o, &out) < 0)
		goto done_out;

	size_t nsl = tsz[0] * tsz[1];
	unsigned char *slice = mp_xmalloc(nsl * el), *bgv = mp_xmalloc(el);
	const unsigned char *src = f->data;
	mp_put(bgv, f->type, 0, bg);
	double A[3][4];
	if (!direct) {
		/* reference voxel -> grid0 voxel, affine */
		double z[3] = { 0, 0, 0 }, w[3], q0[3];
		mp_vox2world(&out, z, w);
		if (mp_world2vox(&g0, w, q0) < 0)
			goto done_slice;
		for (int a = 0; a < 3; a++) {
			double e[3] = { 0, 0, 0 }, q[3];
			e[a] = 1;
			mp_vox2world(&out, e, w);
			if (mp_world2vox(&g0, w, q) < 0)
				goto done_slice;
			for (int c = 0; c < 3; c++)
				A[c][a] = q[c] - q0[c];
		}
		for (int c = 0; c < 3; c++)
			A[c][3] = q0[c];
	}
	for (size_t k = 0; k < tsz[2]; k++) {
		for (size_t j = 0; j < tsz[1]; j++) {
			unsigned char *d = slice + j * tsz[0] * el;
			for (size_t i = 0; i < tsz[0]; i++) {
				long q[3];
				int inside = 1;
				if (direct) {
					q[0] = map[0][i];
					q[1] = map[1][j];
					q[2] = map[2][k];
				} else {
					for (int c = 0; c < 3 && inside; c++) {
						double v = A[c][0] * (double)i + A[c][1] * (double)j + A[c][2] * (double)k + A[c][3];
						double r = floor(v + 0.5);
						if (!(r >= 0 && r < (double)h.size0[c]))
							inside = 0;
						else
							q[c] = map[c][(size_t)r];
					}
				}
				if (inside && q[0] >= 0 && q[1] >= 0 && q[2] >= 0)
					memcpy(d + i * el, src + (((size_t)q[2] * fin[1] + (size_t)q[1]) * fin[0] + (size_t)q[0]) * el, el);
				else
					memcpy(d + i * el, bgv, el);
			}
		}
		if (mp_out_data(o, slice, nsl * el) < 0)
			goto done_slice;
	}
	rc = 0;
done_slice:
	free(slice);
	free(bgv);
done_out:
	mp_frame_free(&out);
done:
	for (int a = 0; a < 3; a++)
		free(map[a]);
	mp_frame_free(&g0);
	mp_hist_free(&h);
	return rc;
}

static int
each_frame(void *ctx, mp_in *in, mp_frame *f, mp_out *o)
{
	(void)ctx;
	return wanted(f) ? restore(in, f, o) : mp_pass(in, f, o);
}

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);

	if (!*roles_s)
		mp_usage_die("--roles: empty list");
	if (ref_path) {
		if (load_ref(ref_path, &ref) < 0)
			mp_die("%s", mp_err());
		size_t a, b, c;
		if (mp_frame_xyz(&ref, &a, &b, &c) < 0)
			mp_die("%s: reference: not a 2-D or 3-D scalar frame", ref_path);
		have_ref = 1;
	}
	mp_out *o = mp_out_stdout();
	mp_run_filter(args, nargs, o, each_frame, NULL);
	mp_frame_free(&ref);
	return 0;
}
