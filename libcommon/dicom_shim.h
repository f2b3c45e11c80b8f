/* dicom_shim.h - the C face of libcommon/dcmtk_shim.cc, a thin layer over
 * DCMTK (C++).  Only libcommon/dicom*.c use it; programs use mp_dicom.h.
 *
 * Tag paths: "GGGG,EEEE" (hex), or a walk through sequences:
 * "5200,9230[3]/0020,9113[0]/0020,0032" (item numbers from 0).
 * Errors: -1 and mp_err() set (thread local), as everywhere in libcommon.
 */
#ifndef MP_DICOM_SHIM_H
#define MP_DICOM_SHIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_dcm mp_dcm;

/* register the JPEG / JPEG-LS / RLE decoders and silence DCMTK's logger;
 * safe to call from several threads (runs once) */
void mp_dcm_global_init(void);

/* load a DICOM file (Part 10 or a bare dataset, any transfer syntax DCMTK
 * reads). headers_only: stop before the pixel data. NULL + mp_err on failure. */
mp_dcm *mp_dcm_load(const char *path, int headers_only);
void mp_dcm_free(mp_dcm *d);

/* the transfer syntax the dataset was stored in (UID text), "" if unknown */
const char *mp_dcm_xfer(const mp_dcm *d);
/* 1 when the transfer syntax is JPEG 2000 (decoded by OpenJPEG, not DCMTK) */
int mp_dcm_is_j2k(const mp_dcm *d);

/* value of the element at path as text (all values joined by '\\', trailing
 * spaces removed); 0 ok, -1 absent or empty (no mp_err) */
int mp_dcm_str(mp_dcm *d, const char *path, char *buf, size_t n);
/* the numbers of a numeric (DS IS US SS UL SL FL FD) element; returns how
 * many were stored in v (at most max), 0 when absent */
int mp_dcm_nums(mp_dcm *d, const char *path, double *v, int max);
/* raw bytes of an OB/UN/OW element (pointer valid while d lives); 0 ok, -1 absent */
int mp_dcm_bytes(mp_dcm *d, const char *path, const unsigned char **p, size_t *n);
/* number of items of a sequence (0 if absent) */
int mp_dcm_items(mp_dcm *d, const char *path);
/* 1 if the dataset holds pixel data (7FE0,0010) */
int mp_dcm_has_pixels(mp_dcm *d);

/* frame number frame (from 0) decoded by DCMTK to buf (n bytes: at least
 * rows*cols*samples*bitsalloc/8), in host byte order, as stored values.
 * colormodel gets the photometric interpretation after decoding (e.g. RGB
 * after a YBR JPEG).  Not for JPEG 2000 (see mp_dcm_frame_bytes). */
int mp_dcm_frame(mp_dcm *d, unsigned frame, void *buf, size_t n, char *colormodel, size_t cmn);
/* the compressed bytes of frame (from 0) of nframes in an encapsulated
 * pixel data element (fragments joined); *out malloc'd */
int mp_dcm_frame_bytes(mp_dcm *d, unsigned frame, unsigned nframes, unsigned char **out, size_t *n);

#ifdef __cplusplus
}
#endif

#endif
