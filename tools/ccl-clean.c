/* ccl-clean - remove small connected components from label frames */
#include "mp.h"
#include "mp_label.h"
#include "mp_device.h"

#include <stdlib.h>
#include <string.h>

static long conn3 = 26, conn2 = 8;
static double min3, min3mm, min2, min2mm;
static int binary, largest, ids, idsonly, wide;
static const char *role = "label";
static const char *devspec;
static mp_dev *dev;

static const mp_opt opts[] = {
	{ "min", 'm', MP_OPT_DBL, &min3, NULL, "N", "Remove 3D components with fewer than N voxels (size < N, as cc3d.dust(threshold=N))." },
	{ "min-mm3", 0, MP_OPT_DBL, &min3mm, NULL, "V", "Remove 3D components whose volume (voxels times the voxel volume from the spacing) is below V mm^3." },
	{ "min2d", 0, MP_OPT_DBL, &min2, NULL, "N", "Then, slice by slice (2D, --connectivity2d), remove components with fewer than N pixels." },
	{ "min2d-mm2", 0, MP_OPT_DBL, &min2mm, NULL, "A", "Slice by slice, remove components whose area is below A mm^2." },
	{ "keep-largest", 'l', MP_OPT_FLAG, &largest, NULL, NULL, "Keep only the largest 3D component of each label (of all foreground with --binary); ties keep the first in raster order." },
	{ "connectivity", 'c', MP_OPT_INT, &conn3, NULL, "C", "3D connectivity: 6 (faces), 18 (faces and edges) or 26 (also corners; the default, as MedSAM). 4 or 8 label each slice on its own." },
	{ "connectivity2d", 0, MP_OPT_INT, &conn2, NULL, "C", "Connectivity of the per-slice step: 4 or 8 (the default, as MedSAM)." },
	{ "binary", 'b', MP_OPT_FLAG, &binary, NULL, NULL, "Treat all non-zero voxels as one class (the default: each label value on its own; voxels of different labels never join)." },
	{ "role", 'r', MP_OPT_STR, &role, NULL, "ROLE", "Act on frames of this role (default label; e.g. mask). Other frames pass through unchanged." },
	{ "ids", 'i', MP_OPT_FLAG, &ids, NULL, NULL, "After each cleaned frame, write a frame of its component ids (role instance, uint32; 0 background, 1..N in raster order) under --connectivity." },
	{ "ids-only", 0, MP_OPT_FLAG, &idsonly, NULL, NULL, "Write the component id frame instead of the cleaned frame." },
	{ "ids64", 0, MP_OPT_FLAG, &wide, NULL, NULL, "Component ids as uint64 (needed beyond 4294967294 components)." },
	MP_DEV_OPTION(&devspec),
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"ccl-clean",
	"remove small connected components from label frames",
	"[options] [FILE...]",
	"ccl-clean reads frames (FILEs or standard input), finds the connected components of "
	"every frame of role label (--role) and removes (sets to 0) those below a size, then "
	"writes the frames to standard output. Other frames pass through unchanged.\n\n"
	"Each label value is its own class: a component is a connected set of voxels of one "
	"value, so two touching organs stay two components (as cc3d's multi-label mode). "
	"With --binary all non-zero voxels form one class.\n\n"
	"The steps run in this order: in 3D (--connectivity, 26 by default), components "
	"with fewer than --min voxels or less than --min-mm3 mm^3 are removed and, with "
	"--keep-largest, all but the largest component of each label; then each slice (the "
	"third axis) on its own (--connectivity2d, 8 by default): components with fewer than "
	"--min2d pixels or less than --min2d-mm2 mm^2 are removed. A component whose size equals "
	"the threshold is kept: MedSAM's pre_CT_MR.py, cc3d.dust(threshold=1000, "
	"connectivity=26) then per slice cc3d.dust(threshold=100, connectivity=8), is "
	"--min 1000 --min2d 100.\n\n"
	"The labelling is a one-pass raster scan by runs (each run of one label joined to the "
	"runs it touches in the rows before it) with union-find. "
	"--ids writes the component ids: components are numbered 1..N in raster order of their "
	"first voxel (x fastest), as scipy.ndimage.label numbers them. The frame records what "
	"was done in " MP_K_CCL_CLEAN ".\n\n"
	"--device (or MEDPIPE_DEVICE) chooses where the components are found: cpu (this C code) "
	"or an OpenCL device (a block-based union-find after Allegretti et al., numbered the same "
	"way); the output is bit for bit the same. See medpipe-devices(1).\n\n"
	"Memory (cpu): the frame, plus a label per run (not per voxel) for the removal, "
	"at most a few bytes per voxel for noise-like input and far less for organ masks. --ids "
	"needs 4 (or 8) bytes per voxel for the id frame.",
	"$ ccl-clean --min 1000 --min2d 100 < case.vol > clean.vol\n"
	"MedSAM's rule (LiteMedSAM: --min 100 --min2d 10).\n"
	"$ ccl-clean --role mask --binary --keep-largest --connectivity 6 < mask.vol > one.vol\n"
	"Keep the largest face-connected blob of a mask.\n"
	"$ ccl-clean --ids-only --connectivity 6 < seg.vol | vol-info\n"
	"Label the components.",
	"label-map(1), roi-crop(1), vol2npz(1), medpipe-devices(1), medpipe-vol(5)",
	opts, 1
};

static void
die_frame(mp_in *in, const char *what)
{
	mp_die("%s: frame %d: %s: %s", mp_in_name(in), mp_in_frameno(in), what, mp_err());
}

static int
clean(mp_in *in, mp_frame *f, mp_out *o)
{
	size_t nx, ny, nz, es = mp_type_size(f->type);
	double sx = mp_spacing(f, 0), sy = mp_spacing(f, 1), sz = f->dim >= 3 ? mp_spacing(f, 2) : 1;
	double t3 = min3, t2 = min2;
	uint64_t nc = 0, nr = 0, nc2 = 0, nr2 = 0;
	char note[512];
	int n = 0;

	if (!mp_type_is_int(f->type))
		mp_die("%s: frame %d: %s frame is not of an integer type (%s)", mp_in_name(in),
		       mp_in_frameno(in), role, mp_type_name(f->type));
	if (mp_frame_xyz(f, &nx, &ny, &nz) < 0)
		mp_die("%s: frame %d: %s frame is not a 2D or 3D scalar volume", mp_in_name(in),
		       mp_in_frameno(in), role);
	if (mp_in_rest_map(in, f) < 0)
		return -1;
	if (min3mm > 0 && min3mm / (sx * sy * sz) > t3)
		t3 = min3mm / (sx * sy * sz);
	if (min2mm > 0 && min2mm / (sx * sy) > t2)
		t2 = min2mm / (sx * sy);
	if (t3 > 0 || largest) {
		if (mp_dev_dust(dev, f->data, es, nx, ny, nz, (int)conn3, binary, t3, largest, &nc, &nr) < 0)
			die_frame(in, "3D components");
		n += snprintf(note + n, sizeof note - (size_t)n, "3D conn %ld: %llu components, %llu removed (min %g voxels%s); ",
		              conn3, (unsigned long long)nc, (unsigned long long)nr, t3, largest ? ", keep largest" : "");
	}
	if (t2 > 0) {
		if (mp_dev_dust(dev, f->data, es, nx, ny, nz, (int)conn2, binary, t2, 0, &nc2, &nr2) < 0)
			die_frame(in, "2D components");
		n += snprintf(note + n, sizeof note - (size_t)n, "2D conn %ld: %llu components, %llu removed (min %g pixels); ",
		              conn2, (unsigned long long)nc2, (unsigned long long)nr2, t2);
	}
	if (n >= 2)
		note[n - 2] = 0;
	if (n > 0) {
		mp_set_kv(f, MP_K_CCL_CLEAN, note);
		mp_note("%s: frame %d: %s", mp_in_name(in), mp_in_frameno(in), note);
	}
	if (!idsonly && mp_out_frame(o, f) < 0)
		return -1;
	if (ids || idsonly) {
		mp_frame g;
		int64_t k;

		mp_frame_copy_header(&g, f);
		g.type = wide ? MP_UINT64 : MP_UINT32;
		mp_set_role(&g, "instance");
		mp_del_kv(&g, MP_K_CCL_CLEAN);
		if (mp_frame_check(&g) < 0 || !(g.data = mp_alloc_big(mp_frame_nbytes(&g))))
			die_frame(in, "component ids");
		if ((k = mp_dev_ccl_ids(dev, f->data, es, nx, ny, nz, (int)conn3, binary, wide, g.data)) < 0)
			die_frame(in, "component ids");
		mp_set_kvf(&g, MP_K_COMPONENTS, "%lld", (long long)k);
		mp_set_kvf(&g, MP_K_CONNECTIVITY, "%ld", conn3);
		if (mp_out_frame(o, &g) < 0)
			return -1;
		mp_frame_free(&g);
	}
	return 0;
}

static int
each_frame(void *ctx, mp_in *in, mp_frame *f, mp_out *o)
{
	(void)ctx;
	return strcmp(mp_role(f), role) == 0 ? clean(in, f, o) : mp_pass(in, f, o);
}

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);
	mp_out *o;

	if (!mp_ccl_conn_ok((int)conn3))
		mp_usage_die("--connectivity %ld: want 6, 18 or 26 (or 4, 8 for per-slice labelling)", conn3);
	if (conn2 != 4 && conn2 != 8)
		mp_usage_die("--connectivity2d %ld: want 4 or 8", conn2);
	if (min3 < 0 || min3mm < 0 || min2 < 0 || min2mm < 0)
		mp_usage_die("sizes must not be negative");
	if (ids && idsonly)
		mp_usage_die("--ids and --ids-only contradict each other");
	if (wide && !ids && !idsonly)
		ids = 1;
	if (!(dev = mp_dev_open_for(devspec, wide ? "--ids64" : NULL)))
		mp_die("%s", mp_err());
	o = mp_out_stdout();
	mp_run_filter(args, nargs, o, each_frame, NULL);
	mp_dev_close(dev);
	return 0;
}
