/* mp_device.h - where the heavy steps run: the C path or an OpenCL device.
 *
 * A tool with a heavy step adds the option
 *     MP_DEV_OPTION(&devspec),
 * to its table, opens the device once (mp_dev_open(devspec), or
 * mp_dev_open_for when a step it will run has no OpenCL implementation) and
 * calls the mp_dev_* dispatchers below instead of the C functions, one call
 * per step; they run the OpenCL kernel on an OpenCL device and the C function
 * otherwise.  The choice, the fallback of auto to C and the SAM retry live
 * here (device.c, device_sam.c): a tool never branches on the device.  Both
 * paths give the same results: bit for bit for integer output, within the
 * tolerance stated in opencl/mp_cl.h for floating point.
 *
 * Device specs (option --device, else env MEDPIPE_DEVICE, else "auto"):
 *   cpu        the C implementation (libcommon)
 *   opencl     the first OpenCL GPU/accelerator, else the first OpenCL device
 *   opencl:N   OpenCL device N as listed by medpipe-devices
 *   auto       OpenCL when a GPU or accelerator is present, else cpu.  Measured
 *              (tests/bench/opencl*.sh): on CPU-only machines PoCL runs these
 *              steps slower than the C path (and adds seconds of kernel
 *              compilation on a cold cache), so auto does not pick it.  If the
 *              OpenCL device fails at run time under auto (no memory, build
 *              error), the step falls back to the C path with a note.
 *              A "no GPU" result is remembered in the program cache folder
 *              (file auto-KEY, keyed by the ICD vendor files and the loader's
 *              environment), so later runs skip loading OpenCL (~0.1 s).
 */
#ifndef MP_DEVICE_H
#define MP_DEVICE_H

#include "mp.h"

typedef struct mp_dev mp_dev;
struct mp_cl;

/* spec NULL: $MEDPIPE_DEVICE, else "auto".  NULL + mp_err when the spec is bad
 * or the OpenCL device asked for cannot be opened. */
mp_dev *mp_dev_open(const char *spec);
void mp_dev_close(mp_dev *d);
int mp_dev_is_cl(const mp_dev *d);
struct mp_cl *mp_dev_cl(mp_dev *d);            /* NULL on the C path */
const char *mp_dev_name(const mp_dev *d);     /* "cpu" or "opencl:0 (NAME)" */
/* --verbose: the bytes moved to and from an OpenCL device since the last
 * note, as one line about WHAT (nothing for the C path) */
void mp_dev_note_bytes(mp_dev *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* mp_dev_open for a program that will run the step c_only (NULL: none)
 * only in C: NULL + mp_err ("C_ONLY runs only in C, not on DEVICE ...") when
 * an OpenCL device was named, which is never left silently; under auto the
 * step runs in C */
mp_dev *mp_dev_open_for(const char *spec, const char *c_only);
/* the device lists of sam-embed and sam-decode (mp_sam_devs, mp_sam.h): "opencl:all" (every OpenCL device, when
 * resolve; 1 without looking when not) or "opencl:A,B,..." (indices into
 * idx, at most max). 0 when spec is not a list (one device, mp_dev_open's);
 * -1 + mp_err when malformed or (resolve) no OpenCL device is there. */
int mp_dev_list(const char *spec, int *idx, int max, int resolve);
/* 0 if spec is well formed, else -1 + mp_err (usage error) */
int mp_dev_check(const char *spec);
/* MP_OPT_CALL handler: checks the spec and stores it in *(const char **)ctx */
int mp_dev_optfn(void *ctx, const char *arg);

#define MP_DEV_HELP "Where the heavy steps run: cpu (the C code), opencl (the first OpenCL GPU, else the first OpenCL device), opencl:N (device N of medpipe-devices) or auto (OpenCL when a GPU is present, else cpu). Default: $MEDPIPE_DEVICE, else auto. A device named (opencl, opencl:N) runs every step there or fails with one line; only auto falls back to the C path. Results agree between devices: integers bit for bit, floating point within 1e-5 relative."
#define MP_DEV_OPTION(pspec) { "device", 0, MP_OPT_CALL, (pspec), mp_dev_optfn, "DEV", MP_DEV_HELP }

/* ---------------------------------------------------------------- dispatch */
/* mp_convert on the device */
int mp_dev_convert(mp_dev *d, void *dst, mp_type dt, const void *src, mp_type st, size_t n);

/* mp_window_apply (mp_filter.h) */
struct mp_winmap;
int mp_dev_window_apply(mp_dev *d, void *dst, mp_type dt, const void *src, mp_type st, size_t n,
                        const struct mp_winmap *m);

/* mp_resizer_run on nslices consecutive slices (src sw*sh*nslices floats,
 * dst dw*dh*nslices); r initialised by mp_resizer_init */
struct mp_resizer;
int mp_dev_resize(mp_dev *d, struct mp_resizer *r, const float *src, float *dst, size_t nslices);
/* mp_resize_nearest on nslices consecutive slices */
int mp_dev_resize_nearest(mp_dev *d, void *dst, size_t dw, size_t dh, const void *src, size_t sw, size_t sh,
                          size_t elsize, size_t nslices);
/* one slice of vol-resize: src (sw x sh values of type st) to dst (dw x dh
 * of type dt).  r NULL: nearest (values copied; converted through float when
 * dt != st); else r's interpolation (initialised for these sizes), in C when
 * r has a zero border (mp_resizer_run_to). Its work buffers are kept in d
 * from slice to slice: one thread at a time per d */
int mp_dev_resize_slice(mp_dev *d, struct mp_resizer *r, void *dst, mp_type dt, size_t dw, size_t dh,
                        const void *src, mp_type st, size_t sw, size_t sh);

/* mp_ccl32 and mp_dust (mp_label.h) */
int64_t mp_dev_ccl32(mp_dev *d, const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz,
                     int conn, int binary, uint32_t *ids);
/* component ids: mp_ccl64 when wide (C only: open with mp_dev_open_for), else mp_dev_ccl32 */
int64_t mp_dev_ccl_ids(mp_dev *d, const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz,
                       int conn, int binary, int wide, void *ids);
int mp_dev_dust(mp_dev *d, void *vol, size_t elsize, size_t nx, size_t ny, size_t nz, int conn,
                int binary, double min, int keep_largest, uint64_t *ncomp, uint64_t *nremoved);

/* (device.c) after an OpenCL attempt returned rc: 0 done; 1 run the C path
 * instead (a note; under auto the device falls back to the C path); -1 fail */
int mp_dev_after_cl(mp_dev *d, int rc, const char *step);

/* the SAM backend (mp_sam.h) for d: the CPU backend with nthreads threads
 * on the C path, the OpenCL backend otherwise.  When the OpenCL kernels
 * cannot be built: under auto a note and the CPU backend, else NULL + mp_err.
 * Measured (tests/bench/sam.sh): PoCL on a CPU runs the ViT-B encoder about 4
 * times slower than OpenBLAS, one more reason auto keeps to the C path there. */
struct mp_sam_backend;
struct mp_sam;
const struct mp_sam_backend *mp_dev_sam_backend(mp_dev *d, int nthreads);
/* after mp_sam_encode / mp_sam_decode failed on m: 1 when the step should be
 * run again because d was chosen by auto and m now uses the C path (with a
 * note), 0 when the failure stands */
int mp_dev_sam_retry(mp_dev *d, struct mp_sam *m, int nthreads);
/* mp_sam_encode and mp_sam_decode_masks (mp_sam.h) on m, run again on the C
 * path while mp_dev_sam_retry says so: one call per step for a tool */
struct mp_sam_prompt;
struct mp_sam_masks;
int mp_dev_sam_encode(mp_dev *d, struct mp_sam *m, const float *img, float *emb, int nthreads);
int mp_dev_sam_decode_masks(mp_dev *d, struct mp_sam *m, const float *emb, size_t n, const struct mp_sam_prompt *p,
                            const struct mp_sam_masks *s, float *const *planes, float *iou, int nthreads);

#endif
