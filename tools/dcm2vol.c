/* dcm2vol - DICOM files and folders to medpipe frames, one per series */
#include "mp.h"
#include "mp_dicom.h"
#include "mp_fmt.h"

#include <stdlib.h>
#include <string.h>

static int list, keep_phi, keep_scouts, float_out, split4d, mkdirs;
static long threads;
static const char *tilt = "shear", *uneven = "resample", *series, *outpat;

static const mp_opt opts[] = {
	{ "list", 'l', MP_OPT_FLAG, &list, NULL, NULL,
	  "Print a table of the series found (number, series number, modality, slices, size, spacing, description) "
	  "on standard output and convert nothing." },
	{ "series", 's', MP_OPT_STR, &series, NULL, "N[,N...]",
	  "Convert only these series: numbers from the first column of --list." },
	{ "tilt", 0, MP_OPT_STR, &tilt, NULL, "MODE",
	  "Gantry tilt: 'shear' (default) writes the exact sheared grid (the slice axis is not orthogonal to the "
	  "slice plane); 'ortho' shifts every slice in plane (bilinear) onto an orthogonal grid that holds the "
	  "whole volume, as dcm2niix's _Tilt_ output." },
	{ "uneven", 0, MP_OPT_STR, &uneven, NULL, "MODE",
	  "Uneven slice spacing (steps differing by more than 2% or 0.01 mm): 'resample' (default) interpolates "
	  "linearly along the slice normal to a uniform step, the smallest step that occurs at least twice (else "
	  "the median step), from the first slice to the last; 'split' writes each run of equal steps as a frame "
	  "of its own; 'fail' fails the series." },
	{ "keep-phi", 0, MP_OPT_FLAG, &keep_phi, NULL, NULL,
	  "Also write identifying tags (patient name and ID, birth date, study date, accession number, institution, "
	  "study and series UIDs) as " MP_K_DICOM_PREFIX "* keys. Off by default." },
	{ "keep-scouts", 0, MP_OPT_FLAG, &keep_scouts, NULL, NULL,
	  "Do not skip localizer (scout) images." },
	{ "float", 'f', MP_OPT_FLAG, &float_out, NULL, NULL, "Always write float32 voxels." },
	{ "split-4d", 0, MP_OPT_FLAG, &split4d, NULL, NULL,
	  "A series that holds several volumes (every slice position repeated the same number of times: time "
	  "points, b-values, ...) is written as one 4D frame (sizes X Y Z V, volumes in acquisition order: "
	  "acquisition number, then instance number), as dcm2niix writes a 4D NIfTI; with --split-4d, as one 3D "
	  "frame per volume." },
	{ "out", 'o', MP_OPT_STR, &outpat, NULL, "NAME",
	  "Write each series to a file instead of standard output, the format chosen by the extension as "
	  "vol-save(1) does (.nii, .nii.gz, .hdr, .nrrd, .nhdr, .mha, .mhd, .npy), the names as `dcm2vol ... | "
	  "vol-save NAME` would give them. With more than one series to write, NAME must hold a pattern: {case}, "
	  "{n} (the frame's number in the output, from 1) or {type}. Each file is written from memory straight "
	  "through the format layer (no pipe), to a temporary name renamed when complete." },
	{ "mkdir", 'p', MP_OPT_FLAG, &mkdirs, NULL, NULL, "With --out: create missing folders of the output names." },
	{ "threads", 'j', MP_OPT_INT, &threads, NULL, "N", "Threads for reading and decoding files (default: processors, at most 16)." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"dcm2vol",
	"convert DICOM files and folders to medpipe frames, one per image series",
	"[options] PATH...",
	"dcm2vol reads the DICOM files named, and every file in the folders named (any depth, any file names; "
	"Part 10 files with or without preamble, and bare datasets), and writes one NRRD frame per image series "
	"to standard output (with --out, one file per series).  Files that are not DICOM are skipped and counted; non-image objects (structured "
	"reports, RT plans and structures, presentation states, segmentations) and localizers are skipped with a "
	"note under --verbose.\n\n"
	"Series: files are grouped by SeriesInstanceUID and split further where the orientation, the image size, the "
	"pixel format or the echo number differ.  Slices sharing a position are split by AcquisitionNumber; if that "
	"does not separate them the series fails.  A single slice of another orientation in a series is taken for a "
	"scout and skipped.  Siemens mosaics are cut into their slices (NumberOfImagesInMosaic and SliceNormalVector "
	"from the CSA header).  Enhanced multi-frame objects take position, orientation, pixel spacing and rescale "
	"from their per-frame and shared functional groups.\n\n"
	"Geometry: slices are ordered by position along the slice normal (the cross product of the "
	"ImageOrientationPatient row and column cosines), never by file name or InstanceNumber; the slice step comes "
	"from the ImagePositionPatient values, not from SliceThickness.  The frame is in LPS space, as DICOM: axis 0 "
	"runs along the rows (first cosine times the column spacing), axis 1 down the columns, axis 2 from the first "
	"slice to the last; the space origin is the ImagePositionPatient of the first slice.  With gantry tilt the "
	"third space direction is the true step between slice positions and is not orthogonal to the slice plane "
	"(" MP_K_DICOM_TILT " gives the angle); --tilt ortho resamples.  Uneven steps (a missing slice, mixed "
	"spacing) are reported in " MP_K_DICOM_UNEVEN " and handled as --uneven says.  Objects without "
	"position/orientation get an identity orientation and the pixel spacing.\n\n"
	"Values: BitsStored/HighBit/PixelRepresentation are honoured (unused high bits masked, signed values sign "
	"extended), RescaleSlope/RescaleIntercept applied per slice (CT in HU), MONOCHROME1 inverted, "
	"PixelPaddingValue (and range) set to the lowest value of the real data.  The voxel type is the smallest "
	"that holds every value exactly: uint8, int16, uint16 or int32, float32 when a slope or intercept is not an "
	"integer.  Colour images are written with a first axis of 3 samples (kind RGB-color), YBR converted to RGB.  "
	"Transfer syntaxes: implicit and explicit little endian, explicit big endian, deflate, RLE, JPEG "
	"baseline/extended/lossless and JPEG-LS (DCMTK), JPEG 2000 (OpenJPEG).\n\n"
	"Privacy: by default no identifying tag (names, IDs, dates, institution, accession number, UIDs) reaches "
	"the output.  " MP_K_CASE " is the first 16 hex digits of the SHA-256 of the SeriesInstanceUID (with -N "
	"when a series is split).  Technical tags go to keys: " MP_K_MODALITY ", " MP_K_DICOM_SERIES_NUMBER ", "
	"series_description, manufacturer, model, kernel, body_part, window_center, window_width, transfer_syntax, "
	"slice_thickness, slices, rescale, mosaic, inverted, tilt, tilt_mode, uneven, uneven_step, padding_to.\n\n"
	"Errors: a file that cannot be read fails its series with one line naming the file and the cause; the "
	"other series are still converted, and the exit status is 1.  Series are written in the order of --list.",
	"$ dcm2vol ct/case01/ | vol-info --brief\n"
	"One frame per series found under ct/case01/.\n"
	"$ dcm2vol --list study/\n"
	"The series of a study, without converting.\n"
	"$ dcm2vol --series 3 --tilt ortho study/ | vol-save head.nii.gz\n"
	"The third series, gantry tilt resampled away.\n"
	"$ dcm2vol -p -o nifti/{case}.nii.gz study/\n"
	"Every series of a study to its own compressed NIfTI file, without a pipe.",
	"vol-info(1), vol-save(1), vol-cat(1), dcm2niix(1), medpipe-vol(5), medpipe(7)",
	opts, 1
};

int
main(int argc, char **argv)
{
	char **args;
	int n = mp_parse(&prog, argc, argv, &args);
	mp_dicom_opts o;
	mp_dicom_opts_init(&o);
	if (!strcmp(tilt, "shear") || !strcmp(tilt, "sheared"))
		o.tilt = MP_TILT_SHEAR;
	else if (!strcmp(tilt, "ortho") || !strcmp(tilt, "orthogonal"))
		o.tilt = MP_TILT_ORTHO;
	else
		mp_usage_die("--tilt: '%s': use shear or ortho", tilt);
	if (!strcmp(uneven, "resample"))
		o.uneven = MP_UNEVEN_RESAMPLE;
	else if (!strcmp(uneven, "split"))
		o.uneven = MP_UNEVEN_SPLIT;
	else if (!strcmp(uneven, "fail"))
		o.uneven = MP_UNEVEN_FAIL;
	else
		mp_usage_die("--uneven: '%s': use resample, split or fail", uneven);
	if (threads < 0 || threads > 16)
		mp_usage_die("--threads: %ld: use 1 to 16 (0: automatic)", threads);
	o.threads = (int)threads;
	o.keep_phi = keep_phi;
	o.keep_scouts = keep_scouts;
	o.float_out = float_out;
	if (n < 1)
		mp_usage_die("no DICOM file or folder given");
	if (outpat) {
		mp_fmt t = mp_fmt_from_name(outpat);
		if (t != MP_FMT_NRRD && t != MP_FMT_NHDR && t != MP_FMT_NIFTI && t != MP_FMT_ANALYZE &&
		    t != MP_FMT_MHA && t != MP_FMT_MHD && t != MP_FMT_NPY)
			mp_usage_die("--out: '%s': not a format dcm2vol writes (use .nii .nii.gz .hdr .nrrd .nhdr .mha .mhd .npy)",
			             outpat);
	} else if (mkdirs)
		mp_usage_die("--mkdir needs --out");

	mp_dicom_scan *s = mp_dicom_scan_paths(args, n, &o);
	int ns = mp_dicom_nseries(s), failed = 0;
	for (size_t i = 0; i < mp_dicom_nfile_errors(s); i++) {
		fprintf(stderr, "%s: %s\n", mp_progname, mp_dicom_file_error(s, i));
		failed = 1;
	}
	size_t nf, nnd, nsk, nfl;
	mp_dicom_counts(s, &nf, &nnd, &nsk, &nfl);
	mp_note("%zu files: %zu not DICOM, %zu skipped, %zu unreadable; %d series", nf, nnd, nsk, nfl, ns);

	char *want = mp_xcalloc((size_t)ns + 1, 1);
	if (series) {
		const char *p = series;
		while (*p) {
			char *end;
			long v = strtol(p, &end, 10);
			if (end == p || v < 1 || (*end && *end != ','))
				mp_usage_die("--series: '%s': numbers from --list, separated by commas", series);
			if (v > ns)
				mp_usage_die("--series: %ld: only %d series found", v, ns);
			want[v - 1] = 1;
			p = *end ? end + 1 : end;
		}
	} else
		memset(want, 1, (size_t)ns);

	if (list) {
		mp_dicom_list(s, stdout);
		if (nnd || nsk)
			printf("(%zu files not DICOM, %zu skipped)\n", nnd, nsk);
		if (fflush(stdout) || ferror(stdout))
			mp_die("standard output:");
		mp_dicom_scan_free(s);
		free(want);
		free(args);
		return failed;
	}
	if (ns == 0) {
		mp_dicom_scan_free(s);
		free(want);
		free(args);
		if (failed)
			return 1;   /* the reasons are printed */
		mp_die("no image series found in %zu file%s (%zu not DICOM, %zu skipped)", nf, nf == 1 ? "" : "s", nnd, nsk);
	}
	/* the frames to write, in order: a series, or the first volume of a 4D one */
	int nout = 0;
	for (int i = 0; i < ns; i++) {
		int vi, nv = mp_dicom_volumes(s, i, &vi);
		if (want[i] && !(nv > 1 && !split4d && vi > 0 && want[i - vi]))
			nout++;
	}
	if (outpat && nout > 1 && !mp_outname_is_pattern(outpat))
		mp_usage_die("--out: %d series to write but '%s' names one file (use a pattern: {case}, {n})", nout, outpat);
	mp_out *out = outpat ? NULL : mp_out_stdout();
	char **done = NULL;
	int nf_out = 0;
	for (int i = 0; i < ns; i++) {
		if (!want[i])
			continue;
		mp_frame f;
		int vi, nv = mp_dicom_volumes(s, i, &vi);
		mp_frame_init(&f);
		if (nv > 1 && !split4d && vi > 0 && want[i - vi])
			continue;   /* part of the 4D frame written with its first volume */
		if ((nv > 1 && !split4d && vi == 0 ? mp_dicom_load4d(s, i, &f) : mp_dicom_load(s, i, &f)) < 0) {
			fprintf(stderr, "%s: %s\n", mp_progname, mp_err());
			failed = 1;
			continue;
		}
		mp_note("%s: %zux%zux%zu %s", mp_dicom_series_name(s, i), f.size[f.dim - 3], f.size[f.dim - 2],
		        f.size[f.dim - 1], mp_type_name(f.type));
		if (out) {
			if (mp_out_frame(out, &f) < 0)
				mp_die("%s", mp_err());
		} else {
			/* kept from here on (also reachable when an error ends the program) */
			char *path = mp_outname(outpat, &f, ++nf_out);
			done = mp_xrealloc(done, (size_t)nf_out * sizeof *done);
			done[nf_out - 1] = path;
			for (int k = 0; k < nf_out - 1; k++)
				if (strcmp(done[k], path) == 0)
					mp_die("%s: series %d: '%s' already holds an earlier series (use a pattern such as {n})",
					       outpat, i + 1, path);
			if ((mkdirs && mp_make_parents(path) < 0) || mp_file_write(path, &f) < 0)
				mp_die("%s", mp_err());
			mp_note("%s -> %s", mp_dicom_series_name(s, i), path);
		}
		mp_frame_free(&f);
	}
	if (out && mp_out_close(out) < 0)
		mp_die("%s", mp_err());
	for (int k = 0; k < nf_out; k++)
		free(done[k]);
	free(done);
	mp_dicom_scan_free(s);
	free(want);
	free(args);
	return failed;
}
