/* mp_dicom.h - DICOM series to medpipe frames (dcm2vol).
 *
 *   mp_dicom_opts o; mp_dicom_opts_init(&o);
 *   mp_dicom_scan *s = mp_dicom_scan_paths(paths, n, &o);   // headers only, threads
 *   for (i = 0; i < mp_dicom_nseries(s); i++) {
 *       mp_frame f; mp_frame_init(&f);
 *       if (mp_dicom_load(s, i, &f) < 0) ... mp_err() ...
 *   }
 *   mp_dicom_scan_free(s);
 *
 * Geometry rules (see dcm2vol(1)): slices of a series are grouped by
 * SeriesInstanceUID, then split by orientation, size, echo and pixel format;
 * ordered by position along the slice normal (row x column cosines); the
 * slice step comes from ImagePositionPatient.  World space is LPS, as DICOM.
 */
#ifndef MP_DICOM_H
#define MP_DICOM_H

#include "mp.h"

enum { MP_TILT_SHEAR = 0, MP_TILT_ORTHO = 1 };
enum { MP_UNEVEN_RESAMPLE = 0, MP_UNEVEN_SPLIT = 1, MP_UNEVEN_FAIL = 2 };

typedef struct {
	int threads;        /* 0: number of processors (at most 16) */
	int tilt;           /* MP_TILT_* */
	int uneven;         /* MP_UNEVEN_* */
	int keep_phi;       /* copy identifying tags into medpipe.dicom.* keys */
	int keep_scouts;    /* do not skip localizers */
	int float_out;      /* always float32 */
} mp_dicom_opts;

void mp_dicom_opts_init(mp_dicom_opts *o);

typedef struct mp_dicom_scan mp_dicom_scan;

/* read the headers of every file under the paths (files or folders, any
 * depth); never fails as a whole (unreadable paths are counted as errors) */
mp_dicom_scan *mp_dicom_scan_paths(char *const *paths, int npaths, const mp_dicom_opts *o);
void mp_dicom_scan_free(mp_dicom_scan *s);

int mp_dicom_nseries(const mp_dicom_scan *s);
/* files seen, skipped as not DICOM, skipped as non-image/scout, failed */
void mp_dicom_counts(const mp_dicom_scan *s, size_t *files, size_t *notdicom, size_t *skipped, size_t *failed);
/* the one-line errors of files that failed while reading headers (n of them) */
const char *mp_dicom_file_error(const mp_dicom_scan *s, size_t i);
size_t mp_dicom_nfile_errors(const mp_dicom_scan *s);

/* one line per series: number, series number, modality, slices, size, spacing, description */
void mp_dicom_list(const mp_dicom_scan *s, FILE *fp);

/* the volume of series i (from 0, the order of --list) into f (header, keys, data) */
int mp_dicom_load(mp_dicom_scan *s, int i, mp_frame *f);

/* repeated positions: series i is volume *idx (from 0) of a group of the
 * returned count of volumes, consecutive series from i - *idx on; 0: a 3D series */
int mp_dicom_volumes(const mp_dicom_scan *s, int i, int *idx);
/* the volumes of the group that starts at series i as one 4D frame (sizes X Y
 * Z V, the last axis of kind list, volumes in acquisition order, key
 * medpipe.dicom.volumes); a 3D series as mp_dicom_load does */
int mp_dicom_load4d(mp_dicom_scan *s, int i, mp_frame *f);

/* a short label for series i in messages: "series 3 (#2 'AX T1')" */
const char *mp_dicom_series_name(const mp_dicom_scan *s, int i);

/* SHA-256 of n bytes as 64 hex digits + NUL */
void mp_sha256_hex(const void *data, size_t n, char hex[65]);

/* JPEG 2000 codestream (or JP2 file) to samples: into buf (rows*cols*spp
 * elements of bytes_per_sample 1 or 2, interleaved); *is_signed gets the
 * component signedness */
int mp_j2k_decode(const unsigned char *data, size_t n, int rows, int cols, int spp,
                  int bytes_per_sample, void *buf, int *is_signed);

#endif
