/* mp_sam.h - Segment Anything (SAM) and MedSAM inference: the ViT image
 * encoder, the prompt encoder and the mask decoder, reading the official
 * PyTorch checkpoints (see torchload.h).
 *
 * The model is a struct of named tensors. Loading checks every tensor of the
 * checkpoint against the names and shapes the architecture needs and works
 * the architecture out of the shapes: embedding width, depth, heads (from the
 * relative-position tables), window size and which blocks attend globally.
 * ViT-B, ViT-L, ViT-H and smaller configurations of the same structure load.
 *
 * Layouts: an image for the encoder is 3 x S x S floats (channel planes, row
 * major, S = img_size, 1024 for the official models); the image embedding is
 * C x H x W (256 x 64 x 64), the layout of torch's image_embeddings[0].
 *
 * Heavy operations go through a backend (mp_sam_backend): the CPU with a
 * CBLAS for matrix products and threads for the rest (sam_cpu.c), or an
 * OpenCL device (opencl/cl_sam.c: a tiled SGEMM, layer norm, GELU and
 * attention kernels), chosen by mp_dev_sam_backend (mp_device.h, --device).
 * The model code is the same for both and passes host pointers: the OpenCL
 * backend uploads each operation's inputs and reads its output back, except
 * for the checkpoint's tensors, which mp_sam_load declares constant
 * (backend entry `constant`) and which therefore cross the bus once.  The
 * ViT encoder runs whole on the device instead (backend entry `encode`):
 * only the image goes up and the embedding comes down.
 * mp_sam_encode and mp_sam_decode return -1 + mp_err when the backend
 * reports a failure (`status`: out of device memory, a kernel that failed).
 */
#ifndef MP_SAM_H
#define MP_SAM_H

#include <stddef.h>
#include "mp.h"
#include "torchload.h"
#include "mp_filter.h"

/* ---------------------------------------------------------------- backend */
/* multi-head attention over nb independent batches (windows):
 *   for each batch b and head h: O = softmax(scale * Q K^T (+ rel pos)) V
 * where Q rows are q + b*bsq + i*ldq + h*hd (hd floats), likewise K, V, O.
 * Decomposed relative positions (ViTDet/SAM) when rph != NULL: the query and
 * key grids are gh x gw (nq == nk == gh*gw) and attn[i][kh*gw+kw] gets
 * q_i . rph[qh-kh+gh-1] + q_i . rpw[qw-kw+gw-1] (unscaled q).
 * A learned attention bias (TinyViT) when bias != NULL: attn[i][j] gets
 * bias[(h * nq + i) * nk + j], the same for every batch. */
typedef struct mp_sam_attn {
	int nb, nq, nk, heads, hd;
	const float *q, *k, *v;
	float *o;
	int ldq, ldk, ldv, ldo;
	size_t bsq, bsk, bsv, bso;
	float scale;
	const float *rph, *rpw;
	int gh, gw;
	const float *bias;           /* heads x nq x nk, or NULL */
} mp_sam_attn;

struct mp_sam;
struct mp_sam_tattn;
typedef struct mp_sam_backend {
	const char *name;
	void *ctx;
	/* row-major C = alpha * op(A) op(B) + beta * C (CBLAS semantics) */
	void (*gemm)(void *ctx, int transa, int transb, int m, int n, int k, float alpha,
	             const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
	/* y[r] = layernorm(x[r]) * w + b over d values per row; y may be x */
	void (*layernorm)(void *ctx, float *y, const float *x, size_t rows, size_t d,
	                  const float *w, const float *b, float eps);
	/* exact (erf) GELU in place */
	void (*gelu)(void *ctx, float *x, size_t n);
	void (*attention)(void *ctx, const mp_sam_attn *a);
	/* optional (NULL on the CPU): [p, p + bytes) holds data that stays
	 * unchanged until forget (the weights): a device may keep a copy */
	void (*constant)(void *ctx, const void *p, size_t bytes);
	void (*forget)(void *ctx);
	/* optional: 0, or -1 + mp_err for the first failure since the last
	 * call (the entries above do nothing after a failure); clears it */
	int (*status)(void *ctx);
	/* optional: the whole ViT image encoder (mp_sam_encode) with its
	 * activations kept on the device; 0, -1 + mp_err, or 1 when the backend
	 * leaves this model to the operations above */
	int (*encode)(void *ctx, const struct mp_sam *m, const float *img, float *emb);
	/* optional, all six or none: the mask decoder's image side kept on
	 * the device (mp_sam_decode when its attentions fold, sam.c), the prompt
	 * tokens' side on the host through the entries above. The image tensors
	 * (T x C, token-major) live in the slots MP_SAM_D*. dec_begin: the image
	 * tokens keys0 up to KEYS0, KPE0 = keys0 + m->dense_pe (a declared
	 * constant), when fresh (new tokens) or the slots hold another model's;
	 * 0, 1 when the backend leaves the decoder to the entries
	 * above, or -1 + mp_err. dec_t2i: R (HN x C, host) = softmax_rows(sc F
	 * K^T) V, F (HN x C) from the host, K and V slots. dec_i2t: KEYS =
	 * layernorm(RES + softmax_cols(sc F Q^T + c)^T M) with eps 1e-5 and the
	 * weights lnw, lnb, the softmax down each head's nk rows (F, M: HN x C,
	 * c: HN, from the host; Q, RES slots), then TK = KEYS + dense_pe.
	 * dec_masks: lowres (NM x (4G)^2, host) = hyper (NM x C/8) times the
	 * upscaled KEYS (wt: both transposed convolutions' weights as (in, kh,
	 * kw, out), a declared constant). The attentions that do not fold
	 * (many prompt tokens, or narrow ones): dec_t2i_attn: O (nq x I, host) =
	 * attention of the projected prompt tokens Q (nq x I, host) over A's k
	 * and v projections of slots ks, vs; dec_i2t_attn: KEYS = layernorm(RES
	 * + A's o projection of the attention of A's q projection of slot qs
	 * over K, V (nk x I, host)), then TK. Failures: as the other entries. */
	int (*dec_begin)(void *ctx, const struct mp_sam *m, const float *keys0, int fresh);
	void (*dec_t2i)(void *ctx, const struct mp_sam *m, int ks, int vs, const float *F, int HN, float sc, float *R);
	void (*dec_i2t)(void *ctx, const struct mp_sam *m, int qs, int rs, const float *F, const float *c,
	                const float *M, int HN, int nk, float sc, const float *lnw, const float *lnb);
	void (*dec_masks)(void *ctx, const struct mp_sam *m, const float *wt, const float *hyper, int NM,
	                  float *lowres);
	void (*dec_t2i_attn)(void *ctx, const struct mp_sam *m, const struct mp_sam_tattn *A, int ks, int vs,
	                     const float *Q, int nq, float *O);
	void (*dec_i2t_attn)(void *ctx, const struct mp_sam *m, const struct mp_sam_tattn *A, int qs, int rs,
	                     const float *K, const float *V, int nk, const float *lnw, const float *lnb);
} mp_sam_backend;

/* the decoder's image slots (dec_begin ...) */
enum { MP_SAM_DKEYS0, MP_SAM_DKPE0, MP_SAM_DKEYS, MP_SAM_DTK, MP_SAM_DSLOTS };

/* the CPU backend (CBLAS + threads); nthreads <= 0: all online CPUs */
const mp_sam_backend *mp_sam_cpu_backend(int nthreads);
int mp_sam_threads(void);

/* ---------------------------------------------------------------- model */
typedef struct { const float *w, *b; int out, in; } mp_sam_lin;
typedef struct { const float *w, *b; } mp_sam_norm;

typedef struct mp_sam_block {
	mp_sam_norm n1, n2;
	mp_sam_lin qkv, proj, lin1, lin2;
	const float *rph, *rpw;      /* (2*g-1) x hd */
	int window;                  /* 0: global attention */
	/* Medical-SAM-Adapter's adapters (w NULL: none): x1 = x + a + sa2(gelu(sa1(a)))
	 * on the attention's output a; beside the MLP + 0.5 ma2(gelu(ma1(norm2(x1)))) */
	mp_sam_lin sa1, sa2, ma1, ma2;
} mp_sam_block;

typedef struct mp_sam_tattn { mp_sam_lin q, k, v, o; } mp_sam_tattn;
typedef struct mp_sam_tlayer {
	mp_sam_tattn self_attn, t2i, i2t;
	mp_sam_norm n1, n2, n3, n4;
	mp_sam_lin lin1, lin2;
} mp_sam_tlayer;

typedef struct mp_sam_config {
	int img_size, patch, grid;         /* 1024, 16, 64 */
	int embed, depth, heads, hd, mlp;  /* 768, 12, 12, 64, 3072 for ViT-B */
	int window;                        /* 14 */
	int nglobal, global_idx[64];
	int out_chans;                     /* 256: prompt embedding width */
	int dec_depth, dec_heads, dec_mlp, dec_internal;
	int mask_in_chans;
	int nmask;                         /* mask tokens (4) */
	int iou_hidden, iou_depth;
	char arch[32];                     /* "vit_b", "vit_l", "vit_h" or "vit_E_D";
	                                      "tinyvit_256" (LiteMedSAM), "tinyvit_1024" (MobileSAM) */
} mp_sam_config;

/* the attention descriptor of ViT block b of a model with config c (nwx
 * windows across the grid): every field but q, k, v and o (sam.c; both
 * backends' encoders) */
void mp_sam_block_attn(const mp_sam_config *c, const mp_sam_block *b, int nwx, mp_sam_attn *a);

#define MP_SAM_MAXDEPTH 64

typedef struct mp_sam {
	mp_sam_config cfg;
	mp_tdict td;                       /* owns every tensor */
	char path[512];
	/* image encoder: ViT, or TinyViT when tv != NULL (sam_tinyvit.c) */
	struct mp_tvit *tv;
	const float *patch_w, *patch_b, *pos;
	mp_sam_block blk[MP_SAM_MAXDEPTH];
	const float *neck0, *neck2;
	mp_sam_norm neck1, neck3;
	/* prompt encoder */
	const float *pe_gauss;             /* 2 x out_chans/2 */
	const float *point_emb[4], *not_a_point, *no_mask;
	/* mask decoder */
	mp_sam_tlayer tl[8];
	mp_sam_tattn final_attn;
	mp_sam_norm norm_final;
	const float *iou_token, *mask_tokens;
	const float *up0_w, *up0_b, *up3_w, *up3_b;
	mp_sam_norm up1;
	mp_sam_lin hyper[16][3];
	mp_sam_lin iou_head[8];
	float *dense_pe;                   /* grid*grid x out_chans, token-major */
	const mp_sam_backend *be;
	/* decoder workspace and the prompt-independent part of the first
	 * transformer layer for the embedding cache_emb points to */
	float *dbuf, *tbuf, *wbuf;         /* wbuf: wbuf_n floats, the CPU path's per thread */
	size_t wbuf_n;
	const float *cache_emb;
	int cache_proj;                    /* c_k, c_v, c_q made for cache_emb */
	int dev_keys;                      /* c_keys0 on the device (dec_begin) */
	float *c_keys0, *c_kpe0, *c_k, *c_v, *c_q;
	char adapter[200];                 /* what mp_sam_load_adapter applied ("" none) */
} mp_sam;

/* load and check a checkpoint; -1 + mp_err naming the file and the tensor */
int mp_sam_load(mp_sam *m, const char *path, const mp_sam_backend *be);
/* the same with what `sam-tune --adapter-out DIR` writes applied on top
 * (adapter NULL: none), before the tensors are checked and handed to the
 * backend (sam_adapter.c): a Hugging Face PEFT LoRA adapter
 * (DIR/adapter_config.json + adapter_model.safetensors: LoRA merged into the
 * named weights, W += lora_alpha/r B A, and the modules_to_save tensors
 * replacing the checkpoint's), or Medical-SAM-Adapter's adapters
 * (DIR/adapter_model.safetensors alone: image_encoder.blocks.N.Space_Adapter
 * / MLP_Adapter tensors added to the ViT encoder, which runs them). The
 * weights identity (mp_sam_weights_id) then names both files' checksums.
 * Errors name the adapter's file. m->adapter describes what was applied. */
int mp_sam_load_adapter(mp_sam *m, const char *path, const char *adapter, const mp_sam_backend *be);
/* the adapter in folder dir applied to the tensors td (the part of
 * mp_sam_load_adapter before the model's checks); note gets one line */
int mp_sam_adapter_apply(mp_tdict *td, const char *dir, char *note, size_t notelen);
void mp_sam_free(mp_sam *m);
/* one line: "vit_b (embed 768, depth 12, heads 12, global 2,5,8,11)" */
void mp_sam_describe(const mp_sam *m, char *buf, size_t n);

/* image encoder: img 3 x S x S -> emb out_chans x grid x grid. Timings of
 * the stages go to mp_note. 0 or -1 + mp_err (memory). */
int mp_sam_encode(mp_sam *m, const float *img, float *emb);

/* prompts in the model's input frame (0..img_size, x then y) */
typedef struct mp_sam_prompt {
	int npts;
	const float *pts;       /* npts x 2 */
	const int *labels;      /* 1 foreground, 0 background */
	int has_box;
	float box[4];           /* x0, y0, x1, y1 */
} mp_sam_prompt;

/* mask decoder for one prompt: lowres gets nmask planes of (4*grid)^2 logits
 * (all mask tokens, torch's order: 0 is the single-mask output), iou nmask
 * predictions. 0 or -1 + mp_err. */
int mp_sam_decode(mp_sam *m, const float *emb, const mp_sam_prompt *p, float *lowres, float *iou);
/* the positional encoding (out_chans floats) of a point (x, y) of the
 * model's input frame, as the prompt encoder's (add 0.5 for pixel centres) */
void mp_sam_pe_coords(const mp_sam *m, float x, float y, float *out);
/* the decoder keeps work that depends on the embedding alone between calls
 * with the same emb pointer; call this when that memory changes or is freed */
void mp_sam_decode_forget(mp_sam *m);

/* ---------------------------------------------------------------- pre/post */
typedef enum { MP_SAM_MEDSAM = 0, MP_SAM_SAM = 1, MP_SAM_LITEMEDSAM = 2 } mp_sam_mode;
const char *mp_sam_mode_name(mp_sam_mode m);
int mp_sam_mode_parse(const char *s, mp_sam_mode *m);
/* a model's own preprocessing (ViT: medsam; TinyViT at 256: litemedsam;
 * other TinyViT: sam) and a mode's default resize method (bspline3, area,
 * linear) */
mp_sam_mode mp_sam_model_mode(const mp_sam *m);
const char *mp_sam_mode_interp(mp_sam_mode mode);
/* the size (before padding) an nx x ny slice takes in the model's input:
 * medsam: S x S; sam, litemedsam: longest side S (ResizeLongestSide) */
void mp_sam_input_size(mp_sam_mode m, int S, size_t nx, size_t ny, size_t *rw, size_t *rh);
/* build the encoder input from one slice of nc (1 or 3) interleaved channels
 * (x fastest): resize (interp: an mp_rs_method), then
 *   medsam: min-max of the resized image to [0,1];
 *   sam: (v - mean) / std with ImageNet's mean/std on a 0..255 scale, zero padding;
 *   litemedsam: min-max of the resized slice to [0,1], zero padding (LiteMedSAM's
 *   inference: longest side to 256 with INTER_AREA, normalise, pad bottom/right).
 * out: 3 x S x S. 0 or -1 + mp_err. */
int mp_sam_preprocess(mp_sam_mode m, int interp, int S, const float *slice, size_t nx, size_t ny,
                      int nc, float *out);
/* the resize stage of mp_sam_preprocess, kept for many slices of one size:
 * out (3 x S x S) gets the slice resized to the model's input size
 * (mp_sam_input_size) at the top left, zeros elsewhere, grey repeated to 3
 * channels; not normalised. zero_border: scikit-image's mode='constant' for
 * MP_RS_BSPLINE3; resize_same: resize also a slice of the input size itself
 * (else copied). -1 + mp_err on bad channels, sizes or memory. */
typedef struct mp_sam_pre {
	int S, nc, resize_same;
	size_t nx, ny, rw, rh;
	mp_resizer r;
	float *plane, *res;
} mp_sam_pre;
int mp_sam_pre_init(mp_sam_pre *p, mp_sam_mode m, int interp, int S, size_t nx, size_t ny, int nc, int zero_border,
                    int resize_same);
void mp_sam_pre_resize(mp_sam_pre *p, const float *slice, float *out);
void mp_sam_pre_free(mp_sam_pre *p);
/* MedSAM's per-slice training image (pre_CT_MR.py, pre_grey_rgb.py; vol2npz
 * --slices): the slice through mp_sam_pre_resize (p made in medsam mode),
 * then min-max over all channels to [0,1] computed in double as numpy,
 * written interleaved S x S x 3 as float64 (f32: float32) into rgb.
 * work: 3*S*S floats. */
void mp_sam_train_image(mp_sam_pre *p, const float *slice, float *work, int f32, void *rgb);
/* low-resolution logits (L x L) to the original slice (nx x ny), with
 * torch's F.interpolate(bilinear, align_corners=False):
 *   geometry medsam: resized straight to nx x ny (MedSAM's inference)
 *   geometry sam, litemedsam: resized to S x S, cropped to rw x rh, resized to
 *                    nx x ny (SAM's postprocess_masks; LiteMedSAM's L is S)
 *   prob: 1: sigmoid before resizing (MedSAM: mask = prob > 0.5);
 *         2: sigmoid after resizing (LiteMedSAM: mask = prob > 0.5);
 *         0: logits resized (SAM: mask = logit > 0).
 * out: nx*ny floats */
void mp_sam_postprocess(mp_sam_mode m, int prob, int S, const float *low, int L, size_t rw, size_t rh,
                        size_t nx, size_t ny, float *out);
/* mp_sam_postprocess with scratch space of L*L + rw*rh + 4*(W+H) + 2*W + 64
 * floats (W = max(S, nx), H = max(S, ny)) instead of allocations; the same values */
void mp_sam_post(mp_sam_mode m, int prob, int S, const float *low, int L, size_t rw, size_t rh, size_t nx,
                 size_t ny, float *out, float *scratch);
/* masks on the slice grid (mp_sam_post) for n prompts of one embedding:
 * planes[i] (nx*ny floats) gets prompt i's kept mask postprocessed, or when
 * bin is not NULL, bin[i] (nx*ny bytes) 1 where that value > thr, else 0
 * (planes unused); iou[i] its predicted IoU. The kept mask: the single-mask output (0), or with
 * multimask the one of 1..nmask-1 of the highest predicted IoU. On the CPU
 * backend only that mask is computed, the prompts are decoded in parallel
 * over the backend's threads (one prompt: its attentions with the image
 * tokens and the upscaling split by blocks of image tokens, and on a new
 * embedding its first layer folded instead of projecting every image
 * token), the BLAS on one thread per call, and the upscaled maps are made
 * tile by tile in the cache; the buffers stay with m for the next call.
 * Other backends: mp_sam_decode per prompt. 0 or -1 + mp_err (the first
 * failure). */
typedef struct mp_sam_masks {
	int multimask;
	mp_sam_mode mode;       /* geometry of mp_sam_post */
	int prob;
	size_t rw, rh, nx, ny;
	unsigned char *const *bin;
	float thr;
} mp_sam_masks;
int mp_sam_decode_masks(mp_sam *m, const float *emb, size_t n, const mp_sam_prompt *p, const mp_sam_masks *s,
                        float *const *planes, float *iou);
/* torch F.interpolate(mode='bilinear', align_corners=False) of one plane */
void mp_sam_bilinear(const float *src, size_t sw, size_t sh, float *dst, size_t dw, size_t dh);


/* ---------------------------------------------------------------- frames
 * An embedding frame (role "embedding") holds the embeddings of the chosen
 * slices of one image frame: sizes G G C N (x, y, channel, slice), float,
 * kinds "domain domain list domain", in-plane directions scaled to the
 * embedding grid. Keys (besides every key of the image frame):
 *   medpipe.sam.mode:=medsam|sam|litemedsam   preprocessing
 *   medpipe.sam.interp:=NAME            resize method
 *   medpipe.sam.arch:=vit_b ...         medpipe.sam.weights:=FILE (base name)
 *   medpipe.sam.weights_id:=ARCH-CRC    identity of the weights (checked by sam-decode)
 *   medpipe.sam.image_sizes:=NX NY NZ   medpipe.sam.image_dim:=2|3
 *   medpipe.sam.image_directions:=(..) (..) (..)   medpipe.sam.image_origin:=(..)
 *   medpipe.sam.input:=RW RH            the slice's size in the model input (before padding)
 *   medpipe.sam.slices:=LIST            0-based image slices embedded, in order
 */
typedef struct mp_sam_embinfo {
	mp_sam_mode mode;
	char interp[16], arch[32], weights_id[64];
	size_t nx, ny, nz, rw, rh;
	int imdim;
	int has_space;
	double dir[3][3], origin[3];
	size_t nsel, *sel;                 /* malloc'd */
	int G, C;
} mp_sam_embinfo;
/* set up the embedding frame header e for the image frame f whose spatial
 * axes start at axis off (1 for interleaved RGB) */
void mp_sam_emb_header(mp_frame *e, const mp_frame *f, int off, const mp_sam *m, mp_sam_mode mode,
                       const char *interp, const char *weights, size_t nx, size_t ny, size_t nz,
                       size_t rw, size_t rh, const size_t *sel, size_t nsel);
/* read the keys back; -1 + mp_err when missing or inconsistent */
int mp_sam_emb_read(const mp_frame *e, mp_sam_embinfo *info);
void mp_sam_emb_free(mp_sam_embinfo *info);
/* the weights identity written to medpipe.sam.weights_id */
void mp_sam_weights_id(const mp_sam *m, char *buf, size_t n);
/* What sam-embed and sam-decode do before their first frame: the weights
 * from *weights or $MEDPIPE_SAM_WEIGHTS (stored back in *weights), threads
 * checked (0..64), the device of devspec opened, the model loaded on its
 * backend with the adapter folder applied (NULL: none; mp_sam_load_adapter), and under --verbose one line naming the model and where `part`
 * ("encoder", "decoder") runs. Bad usage or a failure: one line, exit 2 or 1.
 * Also keeps freed work buffers in the heap (no page faults per slice). */
struct mp_dev;
struct mp_dev *mp_sam_tool_open(mp_sam *m, const char **weights, const char *adapter, const char *devspec,
                                long threads, const char *part);

/* Several devices (sam_devs.c): --device opencl:all or opencl:A,B,... (a
 * device may be named twice) as well as the one-device specs of mp_device.h.
 * MP_SAM_DEVS_OPTION takes the option; mp_sam_devs_open opens each device of
 * the list (or the one device) and loads a model on it, as mp_sam_tool_open
 * (failures: one line, exit 2 or 1). */
#define MP_SAM_MAXDEV 64
typedef struct mp_sam_devs {
	int n;                               /* devices (1 without a list) */
	mp_sam m[MP_SAM_MAXDEV];             /* model k on device d[k] */
	struct mp_dev *d[MP_SAM_MAXDEV];
	long threads;                        /* of the C path a device falls back to */
} mp_sam_devs;
int mp_sam_devs_optfn(void *ctx, const char *arg);
#define MP_SAM_DEVS_HELP(tool, what) " " tool " also takes several devices: opencl:all (every OpenCL device of medpipe-devices) or a list opencl:A,B,... (a device may be named twice): " what
void mp_sam_devs_open(mp_sam_devs *s, const char **weights, const char *adapter, const char *devspec, long threads,
                      const char *part);
void mp_sam_devs_free(mp_sam_devs *s);
/* mp_sam_encode and mp_sam_decode_masks on model k of s: an OpenCL device
 * that fails goes over to the C path and the step is run again there
 * (mp_dev_sam_retry); 0, or -1 + mp_err */
int mp_sam_devs_encode(mp_sam_devs *s, int k, const float *img, float *emb);
int mp_sam_devs_decode_masks(mp_sam_devs *s, int k, const float *emb, size_t n, const mp_sam_prompt *p,
                             const mp_sam_masks *ms, float *const *planes, float *iou);
/* fn(ctx, k, i) for every item i < n, item i on device k = dev[i] (dev NULL:
 * i mod ndev): a thread per device with items (device 0's on the calling
 * thread), each taking its items in increasing order; returns when all are
 * done. fn keeps its own results and errors (mp_err is per thread). */
typedef void (*mp_dev_pool_fn)(void *ctx, int k, size_t i);
void mp_dev_pool(int ndev, size_t n, const int *dev, mp_dev_pool_fn fn, void *ctx);

/* sam-embed (sam_embed.c): for every image frame (role opt->role) of the
 * inputs (args, or standard input), one embedding frame of its chosen
 * slices (opt->slices: "all", "labelled" or a list "A-B,C"), the slices
 * over the devices of opt->devspec; other frames pass through. mode and
 * interp NULL: the model's own preprocessing. Bad usage or any failure: one
 * line, exit 2 or 1. Frees args. */
typedef struct mp_sam_embed_opts {
	const char *weights, *adapter, *devspec, *mode, *interp, *slices, *role;
	long threads;
} mp_sam_embed_opts;
void mp_sam_embed_stream(mp_sam_embed_opts *opt, char **args, int nargs);

/* a mask frame header on the original image grid for an embedding frame */
void mp_sam_mask_header(mp_frame *o, const mp_frame *e, const mp_sam_embinfo *info, mp_type t,
                        const char *role);

#endif
