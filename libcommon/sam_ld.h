/* sam_ld.h - internal to the SAM model code (sam.c, sam_tinyvit.c): looking
 * up and checking a checkpoint's named tensors while loading. The first
 * failure sets mp_err and err; later calls then return NULL / -1. */
#ifndef MP_SAM_LD_H
#define MP_SAM_LD_H

#include "mp_sam.h"

typedef struct mp_sam_ld {
	mp_sam *m;
	unsigned char *used;         /* per tensor of m->td: checked by a call below */
	int err;
} mp_sam_ld;

mp_tensor *mp_sam_ld_find(mp_sam_ld *l, const char *name);
/* the float tensor NAME (printf format) of ndim dimensions and the given
 * shape (-1: any), marked used */
const float *mp_sam_ld_req(mp_sam_ld *l, int ndim, const int64_t *shape, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* a dimension of a tensor that must exist (for inferring the architecture) */
int64_t mp_sam_ld_dim(mp_sam_ld *l, const char *name, int ndim, int axis);
/* PREFIX.weight (out x in) and PREFIX.bias (out) of a linear layer; the
 * weight and bias (d) of a norm */
void mp_sam_ld_lin(mp_sam_ld *l, mp_sam_lin *L, int out, int in, const char *prefix);
void mp_sam_ld_norm(mp_sam_ld *l, mp_sam_norm *n, int d, const char *prefix);
/* how many of NAME % 0, NAME % 1, ... exist */
int mp_sam_ld_count(mp_sam_ld *l, const char *fmt);

/* the TinyViT image encoder (sam_tinyvit.c) of LiteMedSAM and MobileSAM:
 * checks and loads image_encoder.* (batch norms folded), sets the encoder's
 * part of m->cfg (img_size, grid, patch, embed, depth, out_chans, arch) and
 * m->tv. 0 or -1 + mp_err. */
int mp_sam_tvit_load(mp_sam_ld *l);
int mp_sam_tvit_encode(mp_sam *m, const float *img, float *emb);
void mp_sam_tvit_free(mp_sam *m);
void mp_sam_tvit_describe(const mp_sam *m, char *buf, size_t n);
/* declare the folded weights constant to the backend (m->be->constant) */
void mp_sam_tvit_constant(mp_sam *m);

/* for the decoder's CPU path (sam_cpu.c): whether be is the CPU backend;
 * fn(ctx, i, tid) for i < n on the backend's threads (tid < 64), each
 * thread's BLAS calls and the entries below on that thread alone; single-
 * thread GELU and layer norm; row-wise softmax (vectorised exp) */
int mp_sam_is_cpu(const mp_sam_backend *be);
void mp_sam_cpu_parfor(size_t n, void (*fn)(void *ctx, size_t i, int tid), void *ctx);
/* hold (1) the BLAS's own threads at one, or release (0) a hold: holds are
 * counted across threads, the count before the first comes back after the
 * last */
void mp_sam_cpu_blas_one(int hold);
void mp_sam_cpu_gelu1(float *x, size_t n);
/* rows of d values: x = gelu(x + b) */
void mp_sam_cpu_bias_gelu1(float *x, size_t rows, size_t d, const float *b);
void mp_sam_cpu_ln1(float *y, const float *x, size_t rows, size_t d, const float *w, const float *b, float eps);
void mp_sam_softmax_rows(float *s, size_t rows, size_t n, size_t ld);
/* d = a + b, n floats (vectorised; any backend's host code may use it) */
void mp_sam_add(float *d, const float *a, const float *b, size_t n);
/* softmax down each of the n columns of rows x n values (row stride ld),
 * add[r] added to row r first when add is not NULL; tmp: 2 n floats. The
 * same sums in the same order as mp_sam_softmax_rows of the transpose
 * (rows < 8) */
void mp_sam_softmax_cols(float *s, size_t rows, size_t n, size_t ld, const float *add, float *tmp);

/* per-operation CPU time of the ViT encoder (sam_prof.c), kept when the
 * environment variable MEDPIPE_SAM_PROFILE is set: mp_sam_prof_lap(cat)
 * adds the process CPU time since the previous lap to cat (cat < 0: clears
 * all, starts); mp_sam_prof_tadd adds a thread's CPU time since *t0 (from
 * mp_sam_prof_thread) to cat of thread tid and sets *t0 to now;
 * mp_sam_prof_report prints the table to stderr. */
enum { MP_SP_PATCH, MP_SP_LN1, MP_SP_QKV, MP_SP_ATT, MP_SP_QKP, MP_SP_QK, MP_SP_RP, MP_SP_SM, MP_SP_AV, MP_SP_PROJ,
       MP_SP_RES, MP_SP_LN2, MP_SP_LIN1, MP_SP_GELU, MP_SP_LIN2, MP_SP_MLP,
       MP_SP_NECK, MP_SP_N };
int mp_sam_prof_on(void);
void mp_sam_prof_lap(int cat);
double mp_sam_prof_thread(void);
void mp_sam_prof_tadd(int tid, int cat, double *t0);
void mp_sam_prof_report(void);

/* the ViT encoder's attention on the CPU (sam_vitatt.c), straight from the
 * qkv product: T = G*G rows of qkv (row stride ld) in the grid's raster
 * order hold q | k | v (E = heads*hd each) without the bias bqkv (3E); the
 * attention runs in windows of w x w tokens of the grid padded to a
 * multiple of w (w 0: global), padded tokens being the bias alone, with the
 * decomposed relative positions rph, rpw ((2g-1) x hd, g = w or G); the
 * result of the grid's tokens goes to row t of o (stride ldo), head h at
 * column h*hd. mp_sam_vitatt_ok: whether it runs here (AVX2 + FMA, hd a
 * multiple of 16) for head width hd and window (or grid) g. */
typedef struct mp_sam_vitatt {
	int G, w, heads, hd;
	const float *qkv, *bqkv;
	size_t ld;
	const float *rph, *rpw;
	float scale;
	float *o;
	size_t ldo;
} mp_sam_vitatt;
int mp_sam_vitatt_ok(int hd, int g);
void mp_sam_vitatt_run(const mp_sam_vitatt *a);
/* sam_cpu.c: whether the AVX2 + FMA paths run; r[i] = exp(r[i] - mx) for
 * i < n, returning their sum */
int mp_sam_cpu_avx2(void);
int mp_sam_cpu_avx512(void);   /* AVX-512F usable (and not MEDPIPE_SAM_AVX512=0) */
float mp_sam_cpu_exp_row(float *r, size_t n, float mx);

#endif
