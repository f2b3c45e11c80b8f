/* mp_fmt.h - image file formats to and from frames.
 *
 * Reading: mp_file_read(path) gives every frame a file holds (one for most
 * formats, one per array for .npz). Writing: mp_file_write(path, frame),
 * format by extension, written whole or not at all (temporary names renamed
 * at the end; a detached data file is renamed before its header).
 *
 * Geometry is converted exactly to and from the frame's LPS space directions
 * and origin:
 *  - NIfTI-1/NIfTI-2 (.nii, .nii.gz, .hdr/.img pairs): RAS, so x and y are
 *    negated. The affine is chosen as nibabel does: sform when sform_code > 0,
 *    else qform when qform_code > 0, else the Analyze base affine (diagonal
 *    pixdim, x flipped, centre of the volume at the world origin). Scaling:
 *    a usable scl_slope (finite, non-zero) that is not the identity
 *    (slope 1, intercept 0) is applied as nibabel's array proxy does; the
 *    values are nibabel's (computed in double, as its float64 result), stored
 *    in the smallest type that holds every value exactly: the stored integer
 *    type or int16/int32 when all are whole numbers (CT: slope 1, intercept
 *    -1024 gives int16 HU), else float32 when exact, else float64; the key
 *    medpipe.nifti.scaling records what was applied. RGB24/RGBA32 read as uint8 with
 *    a first axis of 3/4 (kind RGB-color/RGBA-color); 5D vectors (dim[4]=1,
 *    intent vector) as a first axis of kind vector. Trailing axes of size 1
 *    beyond the third are dropped (x,y,z,1 reads as 3D).
 *  - Analyze 7.5 (.hdr/.img without the "ni1" magic): as nibabel's nib.load
 *    (SPM2 Analyze): diagonal pixdim with x flipped, the origin from the SPM
 *    "originator" field when it is set and plausible, else the volume centre;
 *    scale factor funused1 (intercept funused2) when finite and non-zero,
 *    else from glmax/glmin and cal_max/cal_min (SPM2). An SPM .mat sidecar
 *    (MATLAB file with the affine) is not read: the header alone counts.
 *  - NRRD (.nrrd, .nhdr + data file): the core's header parser; raw, gzip and
 *    ascii encodings, byte skip (also -1) and line skip; bzip2 is refused.
 *  - MetaImage (.mha, .mhd + .raw/.zraw): ITK's convention (LPS; each group
 *    of NDims numbers of TransformMatrix is the direction of one axis).
 *    ElementNumberOfChannels > 1 becomes a first axis of kind "vector".
 *  - numpy .npy (v1, v2, v3): shape (Z, Y, X) -> sizes X, Y, Z; Fortran-order
 *    arrays are transposed; no geometry. .npz: one frame per array, with the
 *    key medpipe.npz.name (the array name); "gts" arrays get medpipe.role=label.
 *  - PNG, JPEG, BMP (fmt_image.c), TIFF/BigTIFF stacks, ImageJ hyperstacks and
 *    OME-TIFF (fmt_tiff.c), MINC1/MINC2 (fmt_minc.c): read only; see
 *    man/man5/medpipe-formats.5 for the layout and geometry rules.
 * Writing NIfTI sets sform and qform (codes 1, scanner; qform 0 when the
 * directions are not orthogonal), xyzt_units mm; NIfTI-2 when a size exceeds
 * 32767. .hdr/.img are written as a NIfTI-1 pair ("ni1"). .mhd writes a .raw
 * (or .zraw when compressed) next to it.
 */
#ifndef MP_FMT_H
#define MP_FMT_H

#include "mp.h"

#include <stdint.h>

typedef enum {
	MP_FMT_UNKNOWN, MP_FMT_NRRD, MP_FMT_NHDR, MP_FMT_NIFTI, MP_FMT_ANALYZE,
	MP_FMT_MHA, MP_FMT_MHD, MP_FMT_NPY, MP_FMT_NPZ, MP_FMT_DICOM,
	MP_FMT_PNG, MP_FMT_JPEG, MP_FMT_BMP, MP_FMT_TIFF, MP_FMT_MINC
} mp_fmt;

/* by extension (case-insensitive): .nrrd .nhdr .nii .nii.gz .hdr .img
 * (.gz) .mha .mhd .npy .npz .dcm .png .jpg .jpeg .bmp .tif .tiff .btf .mnc
 * .mnc.gz; MP_FMT_UNKNOWN otherwise */
mp_fmt mp_fmt_from_name(const char *path);
/* by content (magic bytes); MP_FMT_UNKNOWN when nothing fits or unreadable */
mp_fmt mp_fmt_sniff(const char *path);
/* the extension first, then the content */
mp_fmt mp_fmt_detect(const char *path);
const char *mp_fmt_name(mp_fmt t);        /* "NIfTI", "NRRD", ... */
/* the file name without folder and known extension ("ct" for "a/ct.nii.gz"), malloc'd */
char *mp_fmt_stem(const char *path);

/* every frame the file holds: *frames is a malloc'd array of *n malloc'd
 * frames (free each with mp_frame_free + free, then the array; or
 * mp_frames_free). Returns 0, or -1 with a one-line mp_err naming the file. */
int mp_file_read(const char *path, mp_frame ***frames, size_t *n);
void mp_frames_free(mp_frame **frames, size_t n);
/* read exactly one frame (the first of an .npz is refused when it has more) */
int mp_file_read1(const char *path, mp_frame *f);

typedef struct {
	int compress;   /* .nrrd/.nhdr: gzip encoding; .mha/.mhd: CompressedData (.zraw) */
	int level;      /* zlib level 1..9; 0: default (1: fastest; level 6 is ~3% smaller and ~5x slower on CT) */
	int nifti2;     /* .nii: always NIfTI-2 */
	/* NIfTI/Analyze only: the frame's data (f->data NULL) is read from src in
	 * order, n bytes at a time, as it is written (no copy of the volume in
	 * memory); src returns 0 or -1 + mp_err, which aborts the file */
	int (*src)(void *ctx, void *buf, size_t n);
	void *src_ctx;
} mp_fmt_opts;

/* by extension; atomic. DICOM and .npz are not written here (vol2npz). */
int mp_file_write(const char *path, const mp_frame *f);
int mp_file_write_opts(const char *path, const mp_frame *f, const mp_fmt_opts *o);

/* output names (outname.c): pat with {case} (the frame's medpipe.case, made
 * safe for a file name: '/', '\\', blanks and control characters become '_';
 * "case" when it has none), {role}, {n} (n) and {type} (the voxel type)
 * replaced; malloc'd */
char *mp_outname(const char *pat, const mp_frame *f, int n);
int mp_outname_is_pattern(const char *s);   /* holds one of those fields */
/* holds {case} or {n}: a name for each case (vol-preview, vol2npz, with n
 * the case's number 1, 2, ...) */
int mp_outname_per_case(const char *s);
/* pat with the older spellings %c and %n turned into {case} and {n}; malloc'd */
char *mp_outname_percent(const char *pat);
/* create the missing folders above path (mode 0777 & ~umask); -1 + mp_err */
int mp_make_parents(const char *path);

/* vol2npz after its options (npz_write.c): the frames of args (standard
 * input when nargs is 0) to output (a pattern as mp_outname's) in layout
 * "roles" or "medsam", MedSAM's per-slice files under slices; NULL strings
 * take the defaults (roles, float64, reflect). Bad usage or any failure: one
 * line, exit 2 or 1. Frees args. */
typedef struct mp_vol2npz_opts {
	const char *output, *layout, *slices, *name, *slice_type, *border;
	long level, size;
	int stored;
} mp_vol2npz_opts;
void mp_vol2npz_stream(const mp_vol2npz_opts *opt, char **args, int nargs);

/* ---------------------------------------------------------------------------
 * Internals shared by the format files (fmt*.c, zipread.c).
 */
/* a byte source: a file, read plain or through zlib (gzip or zlib streams,
 * detected; concatenated gzip members followed) */
typedef struct mp_fsrc mp_fsrc;
mp_fsrc *mp_fsrc_open(const char *path);
mp_fsrc *mp_fsrc_mem(const void *buf, size_t n, const char *name);   /* not copied */
void mp_fsrc_close(mp_fsrc *s);
uint64_t mp_fsrc_size(const mp_fsrc *s);     /* bytes of the file (or memory) */
uint64_t mp_fsrc_pos(const mp_fsrc *s);      /* raw position */
const char *mp_fsrc_name(const mp_fsrc *s);
int mp_fsrc_seek(mp_fsrc *s, uint64_t off);  /* raw position; ends decompression */
int mp_fsrc_inflate(mp_fsrc *s);             /* decompress from the current raw position on */
/* up to n bytes: returns the count (< n only at the end), -1 on error */
long long mp_fsrc_read(mp_fsrc *s, void *buf, size_t n);
/* exactly n bytes; "what" names the part in the error ("data", "header") */
int mp_fsrc_need(mp_fsrc *s, void *buf, size_t n, const char *what);
int mp_fsrc_skip(mp_fsrc *s, uint64_t n, const char *what);
/* the frame's data (product(sizes)*type bytes, allocated as it arrives or
 * after checking the file is long enough), byte-swapped when big != host */
int mp_fsrc_frame_data(mp_fsrc *s, mp_frame *f, int big);
/* the same, keeping only the last nbytes of the (decompressed) rest: byte skip -1 */
int mp_fsrc_frame_data_tail(mp_fsrc *s, mp_frame *f, int big);

/* an output file: plain, gzip (1) or zlib (2) stream; written to a temporary
 * name, renamed by mp_fsink_commit */
typedef struct mp_fsink mp_fsink;
mp_fsink *mp_fsink_open(const char *path, int zmode, int level);
int mp_fsink_write(mp_fsink *s, const void *buf, size_t n);
/* voxels in little-endian order */
int mp_fsink_write_le(mp_fsink *s, const void *buf, mp_type t, size_t nvox);
/* from here on, compress (1 gzip, 2 zlib) what is written */
int mp_fsink_zstart(mp_fsink *s, int zmode, int level);
int mp_fsink_finish(mp_fsink *s);            /* end the stream, flush; keeps the temp file */
int mp_fsink_commit(mp_fsink *s);            /* finish (if not yet) and rename; frees s */
void mp_fsink_abort(mp_fsink *s);            /* remove the temp file; frees s */
/* commit a header file and its detached data file (data NULL or == hdr: one
 * file): both finished, then the data renamed before the header, so a header
 * never names a missing file. Frees both, committed or aborted. */
int mp_fsink_commit_pair(mp_fsink *hdr, mp_fsink *data);
uint64_t mp_fsink_bytes(const mp_fsink *s);  /* bytes written to the file */

/* deflate a buffer into memory (zlib stream), for headers that need the size first */
int mp_fmt_zlib_mem(const void *buf, size_t n, int level, unsigned char **out, size_t *outn);

/* path of a file named in a header, relative to the header's folder (malloc'd) */
char *mp_fmt_sibling(const char *hdrpath, const char *name);
/* replace the extension ext (with dot, e.g. ".hdr") of path by next (malloc'd) */
char *mp_fmt_swap_ext(const char *path, const char *ext, const char *next);
int mp_fmt_ends(const char *s, const char *suffix);  /* case-insensitive */

/* the spatial axes of a frame: axes with a direction (or, without space,
 * the first non-vector axes up to 3); returns their count, ax[] their numbers */
int mp_fmt_spatial_axes(const mp_frame *f, int ax[MP_MAXDIM]);
/* the 3x3 LPS matrix whose column i is the step along spatial axis i
 * (i < nsp), completed to a right-handed frame of unit vectors for missing
 * axes; identity without space */
void mp_fmt_dirs3(const mp_frame *f, const int *ax, int nsp, double m[3][3]);

/* per format */
int mp_nifti_read(const char *path, mp_frame *f);
int mp_nifti_write(const char *path, const mp_frame *f, const mp_fmt_opts *o);
int mp_nrrdfile_read(const char *path, mp_frame *f);
int mp_nrrdfile_write(const char *path, const mp_frame *f, const mp_fmt_opts *o);
int mp_meta_read(const char *path, mp_frame *f);
int mp_meta_write(const char *path, const mp_frame *f, const mp_fmt_opts *o);
/* npy from a source positioned at the magic (file or zip entry) */
int mp_npy_read_src(mp_fsrc *s, mp_frame *f);
/* numpy arrays of shape (H,W,3), (H,W,4), (Z,H,W,3) or (Z,H,W,4) with H and W
 * above 4 are read as colour: a first frame axis of 3 or 4 samples of kind
 * RGB-color / RGBA-color (MedSAM's per-slice layout).  0 turns the rule off
 * (every axis spatial); the setting holds for the whole process. */
void mp_npy_set_colour(int on);
int mp_npy_read(const char *path, mp_frame *f);
int mp_npy_write_file(const char *path, const mp_frame *f);
int mp_npz_read(const char *path, mp_frame ***frames, size_t *n);
/* 2D pictures (fmt_image.c) and TIFF (fmt_tiff.c), see medpipe-formats(5) */
int mp_png_read(const char *path, mp_frame *f);
int mp_jpeg_read(const char *path, mp_frame *f);
int mp_bmp_read(const char *path, mp_frame *f);
int mp_tiff_read(const char *path, mp_frame ***frames, size_t *n);
/* MINC1 (NetCDF classic, also gzip'd) and MINC2 (HDF5), fmt_minc.c */
int mp_minc_read(const char *path, mp_frame ***frames, size_t *n);
/* a picture frame, data allocated: ch > 1 gives a first axis of ch samples
 * of kind kind0; then x (w), y (h) and z (d, when > 1) along L, P, S with
 * spacing sx, sy, sz mm, origin 0 */
int mp_img_frame(mp_frame *f, mp_type t, int ch, const char *kind0, size_t w, size_t h, size_t d, double sx, double sy,
		 double sz);

/* vol-cat (volcat.c): every input in order to one frame stream on standard
 * output: a frame stream ('-' or a file) passes through, a DICOM file or
 * folder gives dcm2vol's frames, any other file mp_file_read's; roles and
 * cases set as vol-cat(1) describes, label maps made whole numbers. No
 * inputs: standard input. Any failure: one line, exit 1. */
typedef struct {
	const char *path;
	const char *role;   /* NULL: keep (streams) / image (files) */
	const char *kase;   /* NULL: derived */
} mp_volcat_input;
typedef struct mp_volcat_opts {
	long series;        /* -1: every series, else only series N */
	int nolabelfix, nocolour, split4d;
} mp_volcat_opts;
void mp_volcat_stream(const mp_volcat_opts *opt, const mp_volcat_input *in, size_t n);

/* zip reading (zipread.c) */
typedef struct {
	char *name;
	uint64_t csize, usize, lhoff;
	uint32_t crc;
	int method;      /* 0 stored, 8 deflate */
} mp_zip_entry;
/* the central directory of a zip file: entries malloc'd (free with mp_zip_entries_free) */
int mp_zip_list(const char *path, mp_zip_entry **ents, size_t *n);
void mp_zip_entries_free(mp_zip_entry *e, size_t n);
/* the whole uncompressed content of one entry, checked against its CRC */
int mp_zip_extract(const char *path, const mp_zip_entry *e, unsigned char **buf, size_t *len);
/* the same for an archive held in memory (len bytes at buf); messages start
 * at "zip:" (the caller names the file). mp_zip_data_mem: the entry's
 * usize bytes, CRC checked: a pointer into buf when stored, else inflated
 * into *owned (free it); NULL + mp_err on failure */
int mp_zip_list_mem(const unsigned char *buf, size_t len, mp_zip_entry **ents, size_t *n);
const unsigned char *mp_zip_data_mem(const unsigned char *buf, size_t len, const mp_zip_entry *e,
				     unsigned char **owned);

#endif
