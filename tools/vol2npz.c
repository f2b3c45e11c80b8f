/* vol2npz - frames to numpy .npy/.npz files (MedSAM's layout too) */
#include "mp.h"
#include "mp_fmt.h"

static mp_vol2npz_opts o = { .layout = "roles", .slice_type = "float64", .border = "reflect", .level = 2, .size = 1024 };

static const mp_opt opts[] = {
	{ "output", 'o', MP_OPT_STR, &o.output, NULL, "PATH", "The file to write: NAME.npz, or NAME.npy for a single frame ('-': an npz on standard output, written with data descriptors when it is a pipe). \"{case}\" in PATH is replaced by the case id (" MP_K_CASE ", made safe for a file name as in vol-save: '/', '\\', blanks and control characters become '_'; \"case\" when there is none), \"{n}\" by the case's number (1, 2, ...), and then every case of the stream goes to its own file; \"{role}\" and \"{type}\" by those of the case's first frame (the image in the medsam layout)." },
	{ "layout", 'L', MP_OPT_STR, &o.layout, NULL, "NAME", "roles (the default): one array per frame, named after its role (image, label, ...; a repeated role gets _2, _3, ...). medsam: MedSAM's npz: imgs (the image frame, uint8), gts (the label frame as uint8) and spacing (float64 x, y, z in mm, as SimpleITK's GetSpacing()); arrays of shape (Z, H, W); for a 2D image (grey or RGB, e.g. after hu-window --medsam-2d) MedSAM's 2D npz: imgs (H, W, 3) uint8 (grey repeated to 3 channels) and gts (H, W) uint8." },
	{ "level", 0, MP_OPT_INT, &o.level, NULL, "N", "Deflate level: 1..3 ISA-L's igzip levels (default 2: zlib level 1's size at about a fifth of its time), 4..9 zlib's (numpy's savez_compressed uses zlib 6), 0: stored." },
	{ "stored", 0, MP_OPT_FLAG, &o.stored, NULL, NULL, "No compression (as numpy's savez); the same as --level 0." },
	{ "slices", 's', MP_OPT_STR, &o.slices, NULL, "DIR", "Also write MedSAM's per-slice files of each case: DIR/imgs/NAME-%03d.npy, the image slice repeated to 3 channels, resized to SIZExSIZE with a cubic B-spline (scikit-image order=3 with anti-aliasing) and min-max normalised to [0,1], shape (SIZE, SIZE, 3); DIR/gts/NAME-%03d.npy, the label slice resized with nearest neighbour, uint8 (SIZE, SIZE)." },
	{ "name", 'n', MP_OPT_STR, &o.name, NULL, "NAME", "The NAME of per-slice files (default: the case id, else the output's base name)." },
	{ "size", 0, MP_OPT_INT, &o.size, NULL, "N", "Per-slice size (default 1024; LiteMedSAM: 256)." },
	{ "border", 0, MP_OPT_STR, &o.border, NULL, "MODE", "Edge rule of the per-slice B-spline: reflect (the default; scikit-image's resize default) or constant (zeros outside, as MedSAM's pre_CT_MR.py calls resize(..., mode='constant'))." },
	{ "slice-type", 0, MP_OPT_STR, &o.slice_type, NULL, "T", "Type of per-slice images: float64 (the default, as MedSAM writes them) or float32." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"vol2npz",
	"write frames as numpy .npy / .npz files (MedSAM's layout included)",
	"-o OUT.npz|OUT.npy [options] [FILE...]",
	"vol2npz reads frames (FILEs or standard input) and writes them as arrays that "
	"numpy.load reads. An array has the frame's voxel type and the frame's sizes in "
	"reverse order: a volume of sizes X Y Z becomes shape (Z, Y, X), the memory layout "
	"of the stream itself, so that arr[z, y, x] is voxel (x, y, z).\n\n"
	"An .npz is a zip archive of NAME.npy entries; entries are deflated (--level) "
	"or stored (--stored), and written as the data arrives, so that a volume "
	"of any size goes through in little memory in the roles layout. Entries and archives "
	"past 4 GiB get ZIP64 records. Deflate works on 1 MiB pieces compressed on several threads "
	"(MEDPIPE_THREADS, default: every online CPU, at most 16); timestamps are fixed: the same input "
	"gives the same bytes, whatever the number of threads.\n\n"
	"The medsam layout reproduces the files of MedSAM's pre_CT_MR.py: imgs (uint8; run "
	"hu-window with an uint8 output first), gts (the label as uint8; an error when a label "
	"does not fit) and spacing; --slices adds its per-slice training files.",
	"$ vol-cat ct.nii.gz --label seg.nii.gz | hu-window --preset soft-tissue --mapping medsam | ccl-clean --min 1000 --min2d 100 | roi-crop --slices labelled | vol2npz --layout medsam -o CT_Abd_case01.npz\n"
	"MedSAM's CT preprocessing of one case.\n"
	"$ vol2npz -o '{case}.npz' < many.vol\n"
	"One npz per case, one array per frame.",
	"hu-window(1), ccl-clean(1), roi-crop(1), vol-resize(1), medpipe-vol(5)",
	opts, 0
};

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);

	mp_vol2npz_stream(&o, args, nargs);
	return 0;
}
