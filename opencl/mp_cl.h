/* mp_cl.h - the OpenCL runtime: device discovery through the ICD loader,
 * one context + queue per opened device, programs built once per device and
 * cached on disk, buffers with clear errors; and the OpenCL versions of the
 * heavy steps (mp_cl_window, mp_cl_resize..., mp_cl_ccl...), which mirror the
 * C functions in mp_filter.h / mp_label.h.  Tools do not call these directly:
 * they go through the dispatchers in mp_device.h.
 *
 * Program cache: $MEDPIPE_CACHE_DIR, else $XDG_CACHE_HOME/medpipe, else
 * ~/.cache/medpipe.  One file per (program, device): NAME-KEY.clbin, where KEY
 * is a 64-bit FNV-1a hash of the platform name and version, the device name,
 * the driver version, the kernel source and the build options.  The file holds
 * a magic, the key, the binary's size and an FNV-1a checksum of the binary;
 * a file that fails any check is rebuilt from source and replaced.  Files are
 * written to a temporary name in the same folder and renamed, so concurrent
 * processes (make -j) never see half a file.  MEDPIPE_CL_NOCACHE=1 disables
 * the cache.
 */
#ifndef MP_CL_H
#define MP_CL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "mp.h"

enum { MP_CL_CPU = 1, MP_CL_GPU = 2, MP_CL_ACCEL = 4 };

typedef struct mp_cl_devinfo {
	int index;                  /* position in the flattened list (opencl:N) */
	int platform_index, device_index;
	cl_platform_id platform;
	cl_device_id device;
	int type;                   /* MP_CL_CPU / GPU / ACCEL */
	char name[256];
	char vendor[128];
	char platform_name[128];
	char platform_version[128];
	char version[128];          /* device OpenCL version */
	char driver[128];
	unsigned compute_units;
	size_t global_mem;          /* bytes */
	size_t max_alloc;           /* CL_DEVICE_MAX_MEM_ALLOC_SIZE (or MEDPIPE_CL_MAX_ALLOC) */
	size_t max_wg;              /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
	int fp64;                   /* cl_khr_fp64 */
} mp_cl_devinfo;

/* every device of every platform, in platform order; *list stays owned by the
 * runtime.  Returns the count (0: platforms exist but no devices), or -1 with
 * mp_err ("no OpenCL platform ...") */
int mp_cl_devices(const mp_cl_devinfo **list);

typedef struct mp_cl mp_cl;
/* open device N of mp_cl_devices(); N < 0: the first GPU or accelerator, else
 * the first device.  NULL + mp_err. */
mp_cl *mp_cl_open(int n);
void mp_cl_close(mp_cl *c);
const mp_cl_devinfo *mp_cl_info(const mp_cl *c);
cl_context mp_cl_context(mp_cl *c);
cl_command_queue mp_cl_queue(mp_cl *c);

/* the embedded program NAME (opencl/NAME.cl) built for the device (or loaded
 * from the cache); kept until mp_cl_close.  NULL + mp_err (with the first
 * lines of the build log on a build failure). */
cl_program mp_cl_program(mp_cl *c, const char *name);
/* name of embedded program i (0, 1, ...), NULL past the end */
const char *mp_cl_program_name(int i);
/* the same for a program given as source text (tests) */
cl_program mp_cl_program_src(mp_cl *c, const char *name, const char *src);
/* a kernel of that program (created once, kept); NULL + mp_err */
cl_kernel mp_cl_kernel(mp_cl *c, const char *prog, const char *kernel);

/* a per-device slot where a step keeps device state between calls (e.g.
 * the resize tables for a stream of slices); release(slot) runs at
 * mp_cl_close when the slot is not NULL */
enum { MP_CL_SLOT_RESIZE, MP_CL_SLOT_SAM, MP_CL_NSLOT };
void **mp_cl_slot(mp_cl *c, int id, void (*release)(void *));

/* counters since start: programs built from source, loaded from the cache,
 * cache entries found corrupt (and rebuilt) */
typedef struct { int built, loaded, corrupt; } mp_cl_stats;
mp_cl_stats mp_cl_get_stats(void);
/* the cache folder (malloc'd), or NULL when the cache is off */
char *mp_cl_cache_dir(void);
/* mkdir -p (path is modified while working and restored); 0 or -1 + errno */
int mp_cl_mkdirs(char *path);

/* bytes that crossed the bus between host and this device since mp_cl_open:
 * every write, read, map for reading and buffer made from host memory,
 * counted as a device with its own memory would copy them (also on CPU
 * devices, where buffers over host memory copy nothing); `constant`: the
 * part of `to` a caller declared as constants (mp_cl_count_constant: the
 * model's weights, sent once) */
typedef struct { unsigned long long to, from, constant; } mp_cl_bytes;
mp_cl_bytes mp_cl_get_bytes(const mp_cl *c);
/* the last n bytes counted to the device were constants */
void mp_cl_count_constant(mp_cl *c, size_t n);
/* under --verbose one line: "opencl: DEVICE: WHAT: N bytes to the device,
 * M from it (and K bytes of constants to it)", counted since the last call
 * (WHAT: printf format) */
void mp_cl_note_bytes(mp_cl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* error helpers: "opencl: WHAT: CL_ERROR_NAME" (out of memory spelled out) */
const char *mp_cl_errname(cl_int e);
int mp_cl_fail(cl_int e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* a buffer of n bytes (copied from host when host != NULL); NULL + mp_err */
cl_mem mp_cl_buffer(mp_cl *c, cl_mem_flags fl, size_t n, const void *host);
/* a buffer over host memory on CPU devices (CL_MEM_USE_HOST_PTR: no copy),
 * a copy elsewhere (WRITE_ONLY: uninitialised); read back with mp_cl_hostread */
cl_mem mp_cl_hostbuf(mp_cl *c, cl_mem_flags fl, size_t n, void *host);
int mp_cl_hostread(mp_cl *c, cl_mem b, size_t n, void *host);
int mp_cl_write(mp_cl *c, cl_mem b, size_t off, size_t n, const void *host);
int mp_cl_read(mp_cl *c, cl_mem b, size_t off, size_t n, void *host);
int mp_cl_fill0(mp_cl *c, cl_mem b, size_t n);
/* set kernel arguments: pairs (size, pointer), ended by 0 */
int mp_cl_args(cl_kernel k, ...);
/* run k over a 1D/2D/3D global size (rounded up to the local size the
 * runtime chooses; kernels check bounds) and wait when wait != 0 */
int mp_cl_run(mp_cl *c, cl_kernel k, int dims, const size_t *global, int wait);
int mp_cl_finish(mp_cl *c);
/* enqueue k over exactly global (local: NULL or sizes dividing it), timed
 * under MEDPIPE_CL_PROFILE=1 as mp_cl_run's kernels are */
int mp_cl_enqueue(mp_cl *c, cl_kernel k, int dims, const size_t *global, const size_t *local);

/* ---------------------------------------------------------------- steps
 * Each returns 0, -1 + mp_err on failure, or MP_CL_UNSUPPORTED when this
 * device cannot do it (a type it lacks, e.g. double without cl_khr_fp64):
 * the dispatcher then runs the C function.  Inputs larger than the device's
 * allocation limit are processed in pieces. */
#define MP_CL_UNSUPPORTED (-2)
/* the largest piece (bytes) one buffer may hold: max_alloc, at most
 * MEDPIPE_CL_PIECE bytes (default 1 GiB) */
size_t mp_cl_piece(const mp_cl *c);
/* kernels can load and store type t here (32-bit ints and double need fp64) */
int mp_cl_type_ok(const mp_cl *c, mp_type t);

/* mp_convert: 8/16/32-bit integers, float, double (fp64 devices) */
int mp_cl_convert(mp_cl *c, void *dst, mp_type dt, const void *src, mp_type st, size_t n);

/* connected components as mp_ccl32 (mp_label.h): elements of es bytes
 * compared as bit patterns (binary: every nonzero voxel one class); conn 6,
 * 18, 26 or 4, 8 (slice by slice); ids 1..N in the raster order of each
 * component's first voxel; additionally components of fewer than minsize
 * voxels are left out (0) and not counted.  Returns N. */
int64_t mp_cl_ccl(mp_cl *c, const void *vol, size_t es, size_t nx, size_t ny, size_t nz, int conn,
                  int binary, size_t minsize, uint32_t *ids);
/* mp_dust on the device (components on the device, removal on the host) */
int mp_cl_dust(mp_cl *c, void *vol, size_t elsize, size_t nx, size_t ny, size_t nz, int conn,
               int binary, double min, int keep_largest, uint64_t *ncomp, uint64_t *nremoved);

/* mp_window_apply (mp_filter.h); struct mp_winmap as there */
struct mp_winmap;
int mp_cl_window_apply(mp_cl *c, void *dst, mp_type dt, const void *src, mp_type st, size_t n,
                       const struct mp_winmap *m);

/* nslices slices at once through an initialised C resizer's tables
 * (mp_resizer_init): the same as mp_resizer_run on each slice, to float
 * rounding (tolerance: 1e-5 of the slice's value range) */
struct mp_resizer;
int mp_cl_resize(mp_cl *c, const struct mp_resizer *r, const float *src, float *dst, size_t nslices);
/* mp_resize_nearest on nslices slices (values copied: bit-identical) */
int mp_cl_resize_nearest(mp_cl *c, void *dst, size_t dw, size_t dh, const void *src, size_t sw, size_t sh,
                         size_t elsize, size_t nslices);

/* the SAM model's backend on this device (cl_sam.c, sam.cl): every entry of
 * mp_sam_backend (mp_sam.h), made once per device and kept until
 * mp_cl_close; NULL + mp_err when the kernels cannot be built.  Agrees with
 * the CPU backend to float rounding (tests/t/sam.py: embeddings within 1e-5
 * relative) */
struct mp_sam_backend;
const struct mp_sam_backend *mp_cl_sam_backend(mp_cl *c);

#endif
