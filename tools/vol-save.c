/* vol-save - frames of a stream to files, the format chosen by extension */
#include "mp.h"
#include "mp_fmt.h"

#include <stdlib.h>
#include <string.h>

static const char *input = "-";
static int mkdirs;
static char **as_role, **as_name;
static size_t nas;

static int
opt_as(void *ctx, const char *arg)
{
	const char *eq = strchr(arg, '=');

	(void)ctx;
	if (!eq || eq == arg || !eq[1])
		return mp_seterr("'%s' is not ROLE=NAME", arg);
	as_role = mp_xrealloc(as_role, (nas + 1) * sizeof *as_role);
	as_name = mp_xrealloc(as_name, (nas + 1) * sizeof *as_name);
	as_role[nas] = strndup(arg, (size_t)(eq - arg));
	as_name[nas] = mp_xstrdup(eq + 1);
	nas++;
	return 0;
}

static const mp_opt opts[] = {
	{ "as", 'a', MP_OPT_CALL, NULL, opt_as, "ROLE=NAME", "Write the frames of role ROLE to NAME (a name or a pattern); may be repeated, e.g. --as image=img.nii.gz --as label=seg.nii.gz." },
	{ "input", 'i', MP_OPT_STR, &input, NULL, "FILE", "Read the stream from FILE instead of standard input." },
	{ "mkdir", 'p', MP_OPT_FLAG, &mkdirs, NULL, NULL, "Create missing folders of the output names." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"vol-save",
	"write the frames of a medpipe stream to files, the format chosen by the extension",
	"[options] NAME...",
	"vol-save reads a frame stream (standard input, or --input) and writes frame k to the "
	"k-th NAME. A NAME containing a pattern ({case}, {role}, {n}: the frame number, {type}) "
	"serves for its frame and, when it is the last NAME, for every frame after it. With "
	"--as, frames go to files by role. Two frames may not go to one file.\n\n"
	"Formats by extension: .nrrd (one frame, raw, LPS), .nhdr (detached header with a "
	".raw data file), .nii and .nii.gz (NIfTI-1; NIfTI-2 when a size exceeds 32767), "
	".hdr/.img (NIfTI-1 pair), .mha, .mhd (with .raw), .npy (C order, shape (Z,Y,X); no "
	"geometry). Geometry is converted exactly from LPS (NIfTI: sform and qform in RAS, "
	"codes as nibabel writes them).\n\n"
	"Memory: .nrrd, .nii, .nii.gz and .hdr/.img files are written as the data arrives, a few "
	"MiB at a time, whatever the size of the volume (a vector frame written to NIfTI is held "
	"whole, to reorder its channels); the other formats hold one frame.\n\n"
	"Every file is written to a temporary name in its folder and renamed when complete: "
	"an interrupted run leaves no partial file under the final name.",
	"$ vol-cat ct.nii.gz --label seg.nii.gz | hu-window --preset soft-tissue | vol-save img.nii.gz seg.nii.gz\n"
	"The first frame to img.nii.gz, the second to seg.nii.gz.\n"
	"$ dcm2vol study/ | vol-save -p out/{case}.nii.gz\n"
	"Every series of a study to out/, named by case.\n"
	"$ vol-cat ct.nii.gz --label seg.nii.gz | vol-save -p --as image=out/{case}_0000.nii.gz --as label=labels/{case}.nii.gz\n"
	"Images and labels by role, in nnU-Net's layout.",
	"vol-cat(1), vol-info(1), medpipe-vol(5)",
	opts, 0
};

static int
from_stream(void *ctx, void *buf, size_t n)
{
	return mp_in_data(ctx, buf, n);
}

int
main(int argc, char **argv)
{
	char **names, **done = NULL;
	int nnames = mp_parse(&prog, argc, argv, &names), r;
	size_t ndone = 0;
	mp_in *in;
	mp_frame f;

	if (nnames == 0 && nas == 0)
		mp_usage_die("no output NAME given");
	in = mp_in_open(input);
	if (!in)
		mp_die("%s", mp_err());
	while ((r = mp_in_header(in, &f)) == 1) {
		int n = mp_in_frameno(in);
		const char *pat = NULL;
		char *path;
		for (size_t k = 0; k < nas; k++)
			if (strcmp(as_role[k], mp_role(&f)) == 0)
				pat = as_name[k];
		if (!pat && nnames > 0) {
			if (n <= nnames)
				pat = names[n - 1];
			else if (mp_outname_is_pattern(names[nnames - 1]))
				pat = names[nnames - 1];
		}
		if (!pat)
			mp_die("%s: frame %d (role %s): no output name for it (give one, or --as %s=NAME)", mp_in_name(in), n, mp_role(&f), mp_role(&f));
		path = mp_outname(pat, &f, n);
		for (size_t k = 0; k < ndone; k++)
			if (strcmp(done[k], path) == 0)
				mp_die("%s: frame %d: '%s' already holds an earlier frame (use a pattern such as {case}_{role})",
				       mp_in_name(in), n, path);
		/* kept from here on (also reachable when an error ends the program) */
		done = mp_xrealloc(done, (ndone + 1) * sizeof *done);
		done[ndone++] = path;
		if (mkdirs && mp_make_parents(path) < 0)
			mp_die("%s", mp_err());
		if (mp_fmt_from_name(path) == MP_FMT_NRRD) {
			/* stream the data straight into the file */
			mp_out *o = mp_out_file(path);
			if (!o || mp_pass(in, &f, o) < 0)
				mp_die("%s", mp_err());
			if (mp_out_close(o) < 0)
				mp_die("%s", mp_err());
		} else if (mp_fmt_from_name(path) == MP_FMT_NIFTI || mp_fmt_from_name(path) == MP_FMT_ANALYZE) {
			/* the voxels go from the stream to the file a few MiB at a
			 * time: no copy of the volume in memory */
			mp_fmt_opts fo = { .src = from_stream, .src_ctx = in };
			if (mp_file_write_opts(path, &f, &fo) < 0)
				mp_die("%s", mp_err());
		} else {
			if (mp_fmt_from_name(path) == MP_FMT_UNKNOWN)
				mp_die("%s: unknown output format (use .nrrd .nhdr .nii .nii.gz .hdr .mha .mhd .npy)", path);
			if (mp_in_rest(in, &f) < 0 || mp_file_write(path, &f) < 0)
				mp_die("%s", mp_err());
		}
		mp_note("frame %d -> %s", n, path);
		mp_frame_free(&f);
	}
	if (r < 0)
		mp_die("%s", mp_err());
	if (mp_in_frameno(in) == 0)
		mp_in_die_empty(in);
	if (nnames > mp_in_frameno(in) && !mp_outname_is_pattern(names[nnames - 1]))
		mp_warn("%d names given for %d frames", nnames, mp_in_frameno(in));
	mp_in_close(in);
	for (size_t k = 0; k < ndone; k++)
		free(done[k]);
	free(done);
	free(names);
	return 0;
}
