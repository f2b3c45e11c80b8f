/* mp.h - medpipe core: errors, voxel types, frames, the NRRD frame stream,
 * atomic output files and the option table.
 *
 * Conventions (see man5/medpipe-vol.5):
 *  - every exported name starts with mp_ / MP_;
 *  - library functions return 0 (or a count) on success and -1 on failure,
 *    after setting a one-line message that mp_err() returns (thread local);
 *  - programs turn failures into "prog: message" lines with mp_die().
 */
#ifndef MP_H
#define MP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mp_keys.h"   /* every medpipe.* key name */

#define MP_VERSION "0.1.0"
#define MP_MAXDIM 4

/* ---------------------------------------------------------------- errors */
extern const char *mp_progname;
int mp_seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int mp_preerr(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* prefix current message */
const char *mp_err(void);
/* print "prog: msg" (a trailing ':' appends strerror(errno)) and exit(1) */
void mp_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void mp_usage_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn)); /* exit 2 */
void mp_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern int mp_verbose;
extern const char *mp_version_note;   /* a second line of --version (what a program was built with), or NULL */
void mp_note(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* only when mp_verbose */
/* seconds: monotonic wall clock, and CPU time of the process (all threads)
 * or of the calling thread */
double mp_clock(void);
double mp_cpu_clock(void);
double mp_thread_clock(void);
void *mp_xmalloc(size_t n);            /* die on failure */
void *mp_xcalloc(size_t n, size_t sz);
/* a block for a whole volume (free() releases it): from 8 MiB on, 2 MiB
 * aligned and advised for transparent huge pages (far fewer page faults);
 * NULL when out of memory */
void *mp_alloc_big(size_t n);
/* advise transparent huge pages for the 2 MiB-aligned inside of [p, p+n) */
void mp_advise_huge(void *p, size_t n);
void *mp_xrealloc(void *p, size_t n);
char *mp_xstrdup(const char *s);
/* n*sz with overflow check: 0 on success, -1 (and mp_err) on overflow */
int mp_mulsize(size_t a, size_t b, size_t *out);

/* ---------------------------------------------------------------- types */
typedef enum {
	MP_NONE = 0,
	MP_INT8, MP_UINT8, MP_INT16, MP_UINT16, MP_INT32, MP_UINT32,
	MP_INT64, MP_UINT64, MP_FLOAT32, MP_FLOAT64
} mp_type;

size_t mp_type_size(mp_type t);
const char *mp_type_name(mp_type t);          /* NRRD name: int16, float, double... */
mp_type mp_type_parse(const char *s);          /* any NRRD spelling, also float32/float64; MP_NONE if unknown */
int mp_type_is_int(mp_type t);
int mp_type_is_signed(mp_type t);
double mp_type_min(mp_type t);
double mp_type_max(mp_type t);
/* element i of a buffer of type t, as double; store with rounding and clamping */
double mp_get(const void *buf, mp_type t, size_t i);
void mp_put(void *buf, mp_type t, size_t i, double v);
int64_t mp_geti(const void *buf, mp_type t, size_t i); /* integer types only, exact */
/* convert n elements; integer targets round half away from zero and clamp */
void mp_convert(void *dst, mp_type dt, const void *src, mp_type st, size_t n);
void mp_swap_bytes(void *buf, size_t elsize, size_t n);
int mp_host_big(void);                          /* 1 on a big-endian host */

/* ---------------------------------------------------------------- frames */
typedef struct mp_frame {
	int dim;                     /* 1..4 */
	size_t size[MP_MAXDIM];      /* size[0] varies fastest */
	mp_type type;
	int space;                   /* 1: world geometry present (LPS, mm); 0: none */
	int has_dir[MP_MAXDIM];      /* axis has a space direction */
	double dir[MP_MAXDIM][3];    /* LPS step along each axis, mm */
	double origin[3];            /* LPS position of voxel (0,0,0), mm */
	char kind[MP_MAXDIM][24];    /* NRRD kinds ("domain", "RGB-color", ...); "" unset */
	size_t nkv;
	char **keys, **vals;         /* key:=value pairs, full keys ("medpipe.role") */
	void *data;                  /* product(size)*type_size bytes, or NULL */
	size_t mapped;               /* data is a private mapping of a spool file or
	                                of the input file, of this many bytes
	                                (mp_in_rest_spool, mp_in_rest_map) */
	/* set by the stream reader: the header as read, for byte-exact pass-through */
	char *rawhdr;
	size_t rawhdr_len;
	int raw_ok;                  /* input was raw little endian: rawhdr + data is the exact frame */
} mp_frame;

void mp_frame_init(mp_frame *f);
void mp_frame_free(mp_frame *f);             /* frees everything, re-inits */
void mp_frame_clear_data(mp_frame *f);
/* copy header, geometry and keys (not data) */
void mp_frame_copy_header(mp_frame *dst, const mp_frame *src);
/* only the grid: dim, sizes, space, directions, origin, axis kinds */
void mp_frame_copy_grid(mp_frame *dst, const mp_frame *src);
size_t mp_frame_nvox(const mp_frame *f);
size_t mp_frame_nbytes(const mp_frame *f);
/* validates dims/sizes and that the byte count neither overflows nor exceeds
 * mp_max_bytes() (MEDPIPE_MAX_BYTES, default 64 GiB) */
int mp_frame_check(const mp_frame *f);
size_t mp_max_bytes(void);
int mp_frame_alloc(mp_frame *f);             /* allocate zeroed data; -1 + mp_err */

const char *mp_get_kv(const mp_frame *f, const char *key);    /* NULL if absent */
void mp_set_kv(mp_frame *f, const char *key, const char *val); /* replace or append */
void mp_set_kvf(mp_frame *f, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void mp_del_kv(mp_frame *f, const char *key);
/* medpipe.role, defaulting to "image"; medpipe.case defaulting to "" (keys.c) */
const char *mp_role(const mp_frame *f);
const char *mp_case(const mp_frame *f);
void mp_set_role(mp_frame *f, const char *role);
void mp_set_case(mp_frame *f, const char *kase);
/* header changes invalidate the raw pass-through copy */
void mp_frame_touch(mp_frame *f);

/* geometry */
double mp_spacing(const mp_frame *f, int axis);       /* |dir[axis]|, 1 if none */
/* three-letter orientation code of the first three spatial axes, e.g. "LPS", "RAS";
 * '?' for an axis without a direction */
void mp_orient_code(const mp_frame *f, char code[4]);
/* the spatial layout of a scalar image: nx, ny, nz (nz=1 for 2D); -1 if not 2D/3D scalar */
int mp_frame_xyz(const mp_frame *f, size_t *nx, size_t *ny, size_t *nz);
/* voxel index (i,j,k) (may be fractional) to LPS world and back */
void mp_vox2world(const mp_frame *f, const double ijk[3], double xyz[3]);
int mp_world2vox(const mp_frame *f, const double xyz[3], double ijk[3]);
/* value range of data */
void mp_frame_minmax(const mp_frame *f, double *mn, double *mx);

/* 3-vectors: c = a x b (c may not alias a or b), a . b, |a|; unit scales v to
 * length 1 and returns -1 (v unchanged) when its length is 0 or not finite */
void mp_vec3_cross(const double a[3], const double b[3], double c[3]);
double mp_vec3_dot(const double a[3], const double b[3]);
double mp_vec3_norm(const double a[3]);
int mp_vec3_unit(double v[3]);

/* shortest text that reads back as exactly d */
void mp_fmt_double(char *buf, size_t n, double d);
/* ascending indices as "0-3,7,9-10" into buf (cap >= 44 * n + 1 always fits);
 * returns the length written */
size_t mp_fmt_ranges(char *buf, size_t cap, const size_t *list, size_t n);
/* s without leading blanks and tabs and trailing blanks, tabs, CR and LF
 * (the trailing ones are cut off in place) */
char *mp_strtrim(char *s);

/* ---------------------------------------------------------------- the stream */
typedef struct mp_in mp_in;
/* path "-" or NULL: standard input (a terminal there: usage error, exit 2) */
mp_in *mp_in_open(const char *path);
mp_in *mp_in_fd(int fd, const char *name);
/* from a memory buffer (not copied) */
mp_in *mp_in_mem(const void *buf, size_t n, const char *name);
void mp_in_close(mp_in *in);
const char *mp_in_name(const mp_in *in);
int mp_in_frameno(const mp_in *in);           /* 1-based number of the current frame */
void mp_in_die_empty(const mp_in *in) __attribute__((noreturn)); /* no frame: exit 1 (quietly for an empty pipe) */
/* read the next frame's header: 1 frame, 0 clean end of stream, -1 error.
 * The error message names the input, the frame and the header line. */
int mp_in_header(mp_in *in, mp_frame *f);
/* the next n bytes of the current frame's data, decoded to host order */
int mp_in_data(mp_in *in, void *buf, size_t n);
/* the rest of the current frame's data into f->data (allocated as data arrives) */
int mp_in_rest(mp_in *in, mp_frame *f);
/* the same, but a frame of more than over bytes goes to an unlinked file in
 * $TMPDIR (default /tmp) that is mapped (private, copy on write) instead of
 * allocated: memory the kernel can page out. over is taken from
 * $MEDPIPE_SPOOL_BYTES when set. mp_frame_free unmaps it. */
int mp_in_rest_spool(mp_in *in, mp_frame *f, size_t over);
/* data is mapped from a file only where it starts at a multiple of this many
 * bytes (any value then aligned); stream writers pad headers to match */
#define MP_DATA_ALIGN 16
/* the same as mp_in_rest, but the raw data of a frame (1 MiB or more, host
 * order, at a file offset that is a multiple of MP_DATA_ALIGN) that a regular
 * input file holds whole is mapped from the file (private, copy on write)
 * instead of read: no copy, no fresh memory. Free it with
 * mp_frame_clear_data/mp_frame_free only. */
int mp_in_rest_map(mp_in *in, mp_frame *f);
/* skip the rest of the current frame's data */
int mp_in_skipdata(mp_in *in);
/* header + data */
int mp_in_next(mp_in *in, mp_frame *f);
/* bytes of data not yet read for the current frame */
size_t mp_in_left(const mp_in *in);
/* parse one NRRD header held in memory (whole header text, ending at the blank
 * line or end of text). Used for files (.nrrd/.nhdr): *datafile gets the
 * "data file" value (malloc'd) if any; encoding/endian/byteskip/lineskip out. */
typedef struct {
	int gzip;           /* encoding gzip */
	int bzip2;          /* encoding bzip2 (not supported for data) */
	int ascii;          /* encoding ascii/text/txt */
	int big;            /* endian big */
	long byteskip;      /* -1: from the end */
	long lineskip;
	char *datafile;     /* malloc'd or NULL */
} mp_nrrd_enc;
int mp_nrrd_parse_header(const char *text, size_t len, mp_frame *f, mp_nrrd_enc *enc);

typedef struct mp_out mp_out;
/* standard output; refuses a terminal (dies with exit 2) */
mp_out *mp_out_stdout(void);
/* a frame file written whole or not at all (temporary name, rename on close) */
mp_out *mp_out_file(const char *path);
mp_out *mp_out_fp(FILE *fp, const char *name);
/* write header (the frame's data follows through mp_out_data or is f->data) */
int mp_out_header(mp_out *o, const mp_frame *f);
int mp_out_data(mp_out *o, const void *buf, size_t n);   /* host order in, little endian out */
int mp_out_frame(mp_out *o, const mp_frame *f);          /* header + f->data */
/* flush and check (and rename a file); frees o */
int mp_out_close(mp_out *o);
/* text of the header mp_out_header writes (malloc'd) */
char *mp_nrrd_header_text(const mp_frame *f, size_t *len);

/* pass the current frame through unchanged (byte for byte when it came in as
 * a raw little-endian frame): header already read by mp_in_header */
int mp_pass(mp_in *in, mp_frame *f, mp_out *o);

/* The frame loop of a filter program (NetPBM's shape): for every input
 * (args, or standard input when nargs is 0) and every frame in it, call
 * fn(ctx, in, f, o). fn processes the frame (its data read from in, written
 * to o) or hands it to mp_pass; it returns 0, or -1 with mp_err. Any failure,
 * and an input without frames, ends the program with one line (exit 1).
 * Closes o (checking the final writes) and frees args. */
typedef int (*mp_frame_fn)(void *ctx, mp_in *in, mp_frame *f, mp_out *o);
void mp_run_filter(char **args, int nargs, mp_out *o, mp_frame_fn fn, void *ctx);

/* The frame loop of a program that works on whole cases (roi-crop,
 * vol-augment, vol-preview): adjacent held frames with the same medpipe.case
 * form a case. For every frame header, role(ctx, in, f, c) (NULL: hold all;
 * c: the case held so far) says MP_CASE_PASS (out unchanged, byte for byte,
 * at once), MP_CASE_SKIP (read over) or MP_CASE_HOLD. A held frame of
 * another case first hands the case so far to fn; then check(ctx, in, f, c)
 * (may be NULL; f: the header, its data not read yet) returns 0 (the frame is
 * read whole into c), MP_CASE_SKIP (read over) or -1 + mp_err. per_input:
 * a case ends with its input, else it may go on in the next. Failures end the
 * program with one line (exit 1), as in mp_run_filter; closes o (may be NULL
 * when no frame passes), frees args. */
typedef struct mp_heldcase {
	char *name;                 /* medpipe.case of its frames */
	mp_frame *f;                /* n held frames, headers and data */
	size_t n, cap;
	int *fno;                   /* frame i: its number in its input */
	char **fsrc;                /* frame i: the name of its input */
	const char *src;            /* the input of its last frame */
	int frameno;                /* the number of its last frame there */
} mp_heldcase;
enum { MP_CASE_PASS = 0, MP_CASE_HOLD = 1, MP_CASE_SKIP = 2, MP_CASE_READ = 3, MP_CASE_END = 4 };
typedef int (*mp_case_role_fn)(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c);
typedef int (*mp_case_check_fn)(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c);
typedef int (*mp_case_fn)(void *ctx, mp_heldcase *c, mp_out *o);
void mp_run_cases(char **args, int nargs, mp_out *o, int per_input, mp_case_role_fn role, mp_case_check_fn check,
                  mp_case_fn fn, void *ctx);
void mp_case_clear(mp_heldcase *c);
/* The reader behind mp_run_cases and mp_run_filter, for programs that need
 * more of it (vol2npz, seg-eval, sam-tune): a role may also say MP_CASE_READ:
 * frame(ctx, in, f, o) reads the frame's data itself (streams it) at once; a
 * read frame counts in its case as a held one does, and fn is called at the
 * end of every case that had a held or read frame (c->n may be 0). input
 * (may be NULL) is asked first for every input path: 1 when the program has
 * read it itself (an image file, ...), 0 to read it as a frame stream.
 * empty_ok: an input without frames is no error. Closes o (may be NULL);
 * args stay the caller's. check may also say MP_CASE_END: the case so far
 * goes to fn first, the frame starts the next one. */
typedef struct mp_reader {
	mp_case_role_fn role;       /* NULL: MP_CASE_READ with frame, else HOLD */
	mp_case_check_fn check;
	mp_frame_fn frame;
	mp_case_fn fn;
	int (*input)(void *ctx, const char *path);
	int per_input, empty_ok;
} mp_reader;
void mp_read_frames(char **args, int nargs, mp_out *o, const mp_reader *r, void *ctx);
/* mp_read_frames for frames that wait for a companion of their case
 * (sam-embed's images for their label, sam-decode's embeddings for theirs):
 * w->ready (may be NULL), asked after every held frame, says 1 to hand the
 * case to fn at once, 0 to wait, or -1 + mp_err; w->ordered: a frame passed
 * while a case is held hands that case over first (nothing overtakes a held
 * frame); w->spool: held frames are read with mp_in_rest_spool(in, f,
 * w->spool) rather than mapped. */
typedef struct mp_reader_wait {
	int (*ready)(void *ctx, const mp_heldcase *c);
	int ordered;
	size_t spool;
} mp_reader_wait;
void mp_read_frames_wait(char **args, int nargs, mp_out *o, const mp_reader *r, const mp_reader_wait *w, void *ctx);
/* a held frame (data read whole) out unchanged: byte for byte when it came
 * in raw little endian, else written anew */
int mp_out_held(mp_out *o, const mp_frame *f);

/* A frame's header f (type: the output type) and then its n values, made
 * from n values of type st slab by slab (1 Mi values): read from in when src
 * is NULL, else taken from the held src; fn(ctx, dst, f->type, s, st, k)
 * converts k values. 0, or -1 + mp_err. */
typedef int (*mp_slab_fn)(void *ctx, void *dst, mp_type dt, const void *src, mp_type st, size_t k);
int mp_out_slabs(mp_out *o, const mp_frame *f, mp_in *in, const void *src, mp_type st, size_t n, mp_slab_fn fn,
                 void *ctx);

/* ---------------------------------------------------------------- atomic files */
/* Write to a temporary file in the same folder (same extension), renamed on
 * commit; removed on abort, on exit(), and on SIGINT/SIGTERM/SIGHUP. */
typedef struct mp_afile {
	char *path, *tmp;
	FILE *fp;
} mp_afile;
mp_afile *mp_afile_open(const char *path);
int mp_afile_commit(mp_afile *a);     /* fflush+ferror+fclose+rename; frees a */
void mp_afile_abort(mp_afile *a);     /* remove tmp; frees a */
/* a temporary path (same folder, same extension) registered for cleanup; for
 * writers that open the file themselves (nifti_clib). mp_tmp_commit renames. */
char *mp_tmp_path(const char *path);
int mp_tmp_commit(char *tmp, const char *path);
void mp_tmp_abort(char *tmp);

/* ---------------------------------------------------------------- options */
typedef enum {
	MP_OPT_FLAG,     /* int *: set to 1 */
	MP_OPT_STR,      /* const char **: the argument */
	MP_OPT_INT,      /* long * */
	MP_OPT_DBL,      /* double * */
	MP_OPT_CALL,     /* fn(ctx, arg) (arg NULL if argname is NULL); returns 0 or -1 with mp_err */
	MP_OPT_END
} mp_optkind;

typedef struct mp_opt {
	const char *name;       /* long name without "--" */
	char shrt;              /* short letter or 0 */
	mp_optkind kind;
	void *dst;              /* where the value goes; for CALL the ctx */
	int (*fn)(void *ctx, const char *arg);
	const char *argname;    /* "N", "FILE"... NULL for flags */
	const char *help;       /* one or more sentences */
} mp_opt;

typedef struct mp_prog {
	const char *name;
	const char *summary;    /* one line: what it does */
	const char *usage;      /* after the name: "[options] [FILE...]" */
	const char *description;/* paragraphs separated by blank lines (man DESCRIPTION) */
	const char *examples;   /* lines "$ command" then explanation lines */
	const char *seealso;    /* "vol-cat(1), medpipe-vol(5)" */
	const mp_opt *opts;     /* ends with MP_OPT_END */
	int needs_frames_out;   /* 1: writes frames to stdout (refuses a terminal) */
} mp_prog;

/* parse argv; handles --help, --version, --man (troff page on stdout) and
 * --verbose; positional arguments are returned in order in args (NULL
 * terminated; "-" stays an argument). Options and arguments may mix; "--"
 * ends options. Bad usage: one line and exit 2. Returns the number of args.
 * A positional can be routed through pos_fn (ctx) to keep order with CALL options. */
int mp_parse(const mp_prog *p, int argc, char **argv, char ***args);
int mp_parse_pos(const mp_prog *p, int argc, char **argv,
                 int (*pos_fn)(void *ctx, const char *arg), void *ctx);
void mp_print_help(const mp_prog *p, FILE *fp);
void mp_print_man(const mp_prog *p, FILE *fp);

/* parse helpers for option arguments: -1 + mp_err on bad text */
int mp_parse_long(const char *s, long *v);
int mp_parse_double(const char *s, double *v);
/* "a,b,c" doubles, at most max; returns count or -1 */
int mp_parse_doubles(const char *s, double *v, int max);
/* "WxH" or "WxHxD" sizes; returns count or -1 */
int mp_parse_dims(const char *s, long *v, int max);

/* install signal handling for the program (SIGPIPE: quiet exit; cleanup of
 * temporary files); called by mp_parse */
void mp_init(const char *progname);

#endif
