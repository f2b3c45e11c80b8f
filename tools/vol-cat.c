/* vol-cat - files of any supported format, or streams, to one frame stream */
#include "mp.h"
#include "mp_fmt.h"

#include <string.h>

static mp_volcat_input *inputs;
static size_t ninputs;
static const char *next_role, *next_case;
static mp_volcat_opts v = { .series = -1 };

static void
add_input(const char *path, const char *role)
{
	inputs = mp_xrealloc(inputs, (ninputs + 1) * sizeof *inputs);
	inputs[ninputs].path = mp_xstrdup(path);
	inputs[ninputs].role = role ? mp_xstrdup(role) : next_role ? mp_xstrdup(next_role) : NULL;
	inputs[ninputs].kase = next_case ? mp_xstrdup(next_case) : NULL;
	ninputs++;
}

static int
pos(void *ctx, const char *arg)
{
	(void)ctx;
	add_input(arg, NULL);
	return 0;
}

static int
opt_label(void *ctx, const char *arg)
{
	add_input(arg, ctx);
	return 0;
}

static int
opt_role(void *ctx, const char *arg)
{
	(void)ctx;
	if (!*arg || strpbrk(arg, " \t\n:="))
		return mp_seterr("role '%s' must be one word", arg);
	next_role = arg;
	return 0;
}

static int
opt_case(void *ctx, const char *arg)
{
	(void)ctx;
	if (!*arg || strpbrk(arg, "\n"))
		return mp_seterr("case '%s' must be a non-empty line", arg);
	next_case = arg;
	return 0;
}

static const mp_opt opts[] = {
	{ "label", 'l', MP_OPT_CALL, "label", opt_label, "FILE", "Read FILE as a label map (role label): integer classes. A label map stored as floating point with whole values is converted to the smallest integer type that holds them; one read from a colour picture keeps its first channel (as MedSAM does with RGB masks)." },
	{ "mask", 'm', MP_OPT_CALL, "mask", opt_label, "FILE", "Read FILE as a mask (role mask), e.g. a prediction." },
	{ "image", 'i', MP_OPT_CALL, "image", opt_label, "FILE", "Read FILE as an image (role image; the default for files)." },
	{ "role", 'r', MP_OPT_CALL, NULL, opt_role, "ROLE", "Give the files that follow this role (image, label, mask, logits, ...)." },
	{ "case", 'c', MP_OPT_CALL, NULL, opt_case, "ID", "Give the files that follow this case identifier. Without it, an image's case is its file name without folder and extension (and without an nnU-Net channel suffix _0000), and a label or mask takes the case of the image before it." },
	{ "series", 's', MP_OPT_INT, &v.series, NULL, "N", "From files with several series (OME-TIFF images, TIFF pages of different shapes), keep only series N (0-based, key " MP_K_SERIES ")." },
	{ "split-4d", 0, MP_OPT_FLAG, &v.split4d, NULL, NULL, "DICOM: write a series of several volumes (repeated slice positions) as one 3D frame per volume instead of one 4D frame (see dcm2vol(1))." },
	{ "keep-float-labels", 0, MP_OPT_FLAG, &v.nolabelfix, NULL, NULL, "Leave floating-point label maps as they are." },
	{ "no-colour", 0, MP_OPT_FLAG, &v.nocolour, NULL, NULL, "Read every axis of .npy/.npz arrays as a spatial axis: an (H,W,3) array becomes H slices of 3 x W pixels (by default it is one colour image, see DESCRIPTION)." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"vol-cat",
	"read image files of any supported format into one medpipe frame stream",
	"[options] [FILE | --label FILE | -]...",
	"vol-cat reads each FILE and writes its volumes as frames (NRRD, see medpipe-vol(5)) to "
	"standard output, in the order given. Supported: NRRD (.nrrd, .nhdr with its data file; "
	"raw, gzip, ascii), NIfTI-1 and NIfTI-2 (.nii, .nii.gz), Analyze 7.5 (.hdr/.img), "
	"MetaImage (.mha, .mhd with .raw or .zraw), numpy (.npy, and .npz: one frame per "
	"array; see below), 2D pictures (PNG 8/16-bit, JPEG, BMP: grey as a 2D frame, colour as a first "
	"axis of 3 samples, alpha dropped), TIFF and BigTIFF (stacks, ImageJ hyperstacks, "
	"OME-TIFF: one frame per series and time point, channels as a first vector axis, Z as "
	"the third axis, physical sizes in mm), MINC1 and MINC2 (.mnc, .mnc.gz); see "
	"medpipe-formats(5). A file holding a frame stream (as written by medpipe programs) and '-' "
	"(standard input) pass their frames through; their role and case are only changed "
	"when --role/--case (or --label, ...) name them. A DICOM file or a folder gives "
	"one frame per image series, converted as dcm2vol(1) does with its default options "
	"(which has the options for geometry, series choice and identifying tags).\n\n"
	"Geometry is converted exactly to LPS space directions and origin: NIfTI's sform "
	"(or qform, when the sform code is 0, as nibabel does) from RAS, MetaImage's "
	"TransformMatrix and Offset, NRRD's space directions from any named space. "
	"NIfTI scl_slope/scl_inter are applied (values become float when the slope or "
	"intercept is not the identity).\n\n"
	"numpy arrays have no geometry (spacing 1). A C-order array of shape (Z,Y,X) is a frame "
	"of Z slices of X by Y pixels. Colour rule: an array whose last axis holds 3 or 4 values "
	"and whose two axes before it are longer than 4 (shape (H,W,3), (H,W,4), (Z,H,W,3) or "
	"(Z,H,W,4), as MedSAM's per-slice images that vol2npz --slices writes) is read as a "
	"colour image: a first frame axis of 3 (kind RGB-color) or 4 (RGBA-color) samples per "
	"pixel, then W, H (and Z); --no-colour reads every axis as spatial.\n\n"
	"Each frame gets " MP_K_ROLE " and " MP_K_CASE ". The role is the one --label, --mask, "
	"--image or --role give; without them it is image for files of every format, and for "
	"frames that arrive without " MP_K_ROLE " (a .nrrd written by 3D Slicer, pyradiomics, "
	"ITK or unu, also through '-'); frames of a medpipe stream keep theirs. "
	"A label frame from a file must hold whole numbers.",
	"$ vol-cat ct.nii.gz --label seg.nii.gz | vol-info\n"
	"A CT and its label map as one stream.\n"
	"$ vol-cat --case c01 img.mha --label seg.mha > c01.nrrd\n"
	"Both frames of case c01, saved as a stream.\n"
	"$ vol-cat imagesTr/liver_003_0000.nii.gz --label labelsTr/liver_003.nii.gz | hu-window --preset liver | vol-save -p out/{case}_{role}.nii.gz\n"
	"An nnU-Net case (case liver_003), windowed, to out/liver_003_image.nii.gz and out/liver_003_label.nii.gz.",
	"vol-save(1), vol-info(1), dcm2vol(1), medpipe-vol(5), medpipe(7)",
	opts, 1
};

int
main(int argc, char **argv)
{
	mp_parse_pos(&prog, argc, argv, pos, NULL);
	mp_volcat_stream(&v, inputs, ninputs);
	return 0;
}
