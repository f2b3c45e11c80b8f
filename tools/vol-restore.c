/* vol-restore - put a prediction that went through crop, slice selection, pad
 * and resize back onto the grid of the original image */
#include "mp.h"
#include "mp_filter.h"
#include "mp_fmt.h"

#include <stdlib.h>
#include <string.h>

static const char *ref_path, *roles_s = "label,mask";
static double bg = 0;
static int keep_hist;

static const mp_opt opts[] = {
	{ "ref", 'r', MP_OPT_STR, &ref_path, NULL, "FILE", "Put the frames onto the grid of the image in FILE (any format vol-cat reads, or the first frame of a stream) instead of the recorded " MP_K_GRID0_PREFIX },
	{ "roles", 0, MP_OPT_STR, &roles_s, NULL, "LIST", "Roles of the frames to restore, comma-separated (default label,mask); other frames pass unchanged." },
	{ "background", 'b', MP_OPT_DBL, &bg, NULL, "V", "Value of voxels outside what was kept (default 0)." },
	{ "keep-history", 0, MP_OPT_FLAG, &keep_hist, NULL, NULL, "Keep " MP_K_HISTORY " and " MP_K_GRID0_PREFIX "* in the restored frames (by default they are removed: the frame is on its original grid again)." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"vol-restore",
	"put predictions back onto the original image grid, undoing crop, pad and resize",
	"[options] [FILE...]",
	"vol-restore reads frames (by default those of role label and mask) whose "
	MP_K_HISTORY " records how they were cut and resampled from an original grid "
	"(" MP_K_GRID0_PREFIX "*: written by roi-crop(1), vol-resize(1) and other tools that change "
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

static int
restore(mp_in *in, mp_frame *f, mp_out *o)
{
	mp_frame out;
	mp_restore *r = mp_restore_new(f, have_ref ? &ref : NULL, bg, keep_hist, &out);
	int rc = -1;

	if (!r)
		return mp_preerr("%s: frame %d", mp_in_name(in), mp_in_frameno(in));
	size_t nx, ny, nz;
	mp_frame_xyz(&out, &nx, &ny, &nz);
	size_t nsl = nx * ny * mp_type_size(out.type);
	unsigned char *slice = NULL;
	if (mp_in_rest(in, f) < 0 || mp_out_header(o, &out) < 0)
		goto done;
	slice = mp_xmalloc(nsl);
	for (size_t k = 0; k < nz; k++) {
		mp_restore_slice(r, f->data, k, slice);
		if (mp_out_data(o, slice, nsl) < 0)
			goto done;
	}
	rc = 0;
done:
	free(slice);
	mp_frame_free(&out);
	mp_restore_free(r);
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
