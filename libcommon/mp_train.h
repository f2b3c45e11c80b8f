/* mp_train.h - training the SAM / MedSAM mask decoder (sam-tune): the
 * operations with their backward passes, the decoder's forward and backward
 * pass for one prompt, MedSAM's loss, AdamW, and the checkpoint writer.
 *
 * The operations follow llm.c's style: plain arrays, row-major, one
 * *_fwd and one *_bwd per operation. Every *_bwd ADDS into the gradient
 * buffers it is given (NULL: that gradient is not wanted), so that a tensor
 * used twice (residuals, q + pe) simply collects both contributions.
 * The formulas are those of PyTorch's autograd for the same modules
 * (nn.Linear, nn.LayerNorm, F.gelu (erf), softmax attention, ConvTranspose2d
 * kernel 2 stride 2, F.interpolate bilinear align_corners=False); tests/t/
 * sam_tune.py checks each against torch in float64.
 *
 * The trainable parameters (every mask_decoder.* tensor of the checkpoint, in
 * the checkpoint's order) live in one contiguous buffer; their gradients and
 * AdamW's two moments in three more buffers of the same layout.
 */
#ifndef MP_TRAIN_H
#define MP_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "mp_sam.h"

/* ---------------------------------------------------------------- ops */
/* y (n x out) = x (n x in) w^T + b (w: out x in as nn.Linear; b may be NULL) */
void mp_tr_linear_fwd(float *y, const float *x, const float *w, const float *b, int n, int in, int out);
void mp_tr_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int n,
                      int in, int out);
/* layer norm over rows of d values (biased variance); mean, rstd: n floats saved */
void mp_tr_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int n,
                         int d, float eps);
void mp_tr_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *mean,
                         const float *rstd, const float *w, int n, int d);
void mp_tr_relu_fwd(float *y, const float *x, size_t n);
/* y: the forward output */
void mp_tr_relu_bwd(float *dx, const float *dy, const float *y, size_t n);
/* exact GELU, 0.5 x (1 + erf(x / sqrt 2)) */
void mp_tr_gelu_fwd(float *y, const float *x, size_t n);
void mp_tr_gelu_bwd(float *dx, const float *dy, const float *x, size_t n);
/* multi-head softmax attention as segment_anything's Attention after its
 * projections: q (nq x d), k, v (nk x d), heads of d/heads values, scale
 * 1/sqrt(d/heads); p: heads x nq x nk probabilities (kept for the backward);
 * o: nq x d. The backward needs ws: nq * nk floats. */
void mp_tr_softmax_rows(float *s, int rows, int n);   /* in place, each row of n */
/* x[j] = exp(x[j] - mx) (the exp of the ops: within 1e-7 relative); returns their sum */
double mp_tr_exp_sub(float *x, int n, float mx);
/* d[i] *= GELU'(x[i]) (the gradient through mp_tr_gelu_fwd, in place) */
void mp_tr_gelu_bwd_mul(float *d, const float *x, size_t n);
void mp_tr_attn_fwd(float *o, float *p, const float *q, const float *k, const float *v, int nq, int nk, int d,
                    int heads);
void mp_tr_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *p, const float *q,
                    const float *k, const float *v, int nq, int nk, int d, int heads, float *ws);
/* ConvTranspose2d(cin, cout, kernel 2, stride 2) on channels-last planes:
 * x (h x w x cin) -> y (2h x 2w x cout); wt: cin x cout x 2 x 2 (torch's
 * layout); ws: h * w * 4 * cout floats */
void mp_tr_convt2_fwd(float *y, const float *x, const float *wt, const float *b, int h, int w, int cin, int cout,
                      float *ws);
void mp_tr_convt2_bwd(float *dx, float *dwt, float *db, const float *dy, const float *x, const float *wt, int h,
                      int w, int cin, int cout, float *ws);
/* F.interpolate(mode='bilinear', align_corners=False) of one plane */
void mp_tr_bilinear_fwd(float *dst, int dw, int dh, const float *src, int sw, int sh);
void mp_tr_bilinear_bwd(float *dsrc, int sw, int sh, const float *ddst, int dw, int dh);
/* depthwise k x k convolution, pad k/2, stride s, channels-last: x (R x R x
 * C) -> y (Ro x Ro x C), Ro = (R + 2 (k/2) - k) / s + 1; w: k x k x C (tap
 * major); b (may be NULL): C. A batch norm in eval mode folded in (w and b)
 * is the same function (TinyViT's Conv2d_BN). */
void mp_tr_dwconv_fwd(float *y, const float *x, const float *w, const float *b, int R, int C, int k, int s);
void mp_tr_dwconv_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, int R, int C, int k,
                      int s);
/* TinyViT's attention of one window after its projection: qkv (n x 3d: q of
 * every head, then k, then v), bias (heads x n x n, added to the scaled
 * scores), p: heads x n x n probabilities kept, o: n x d. The backward adds
 * the gradients of q, k, v into dqkv (n x 3d) and, unless dbias is NULL,
 * the scores' gradient into dbias (heads x n x n); ws: n * n floats. */
void mp_tr_attnbias_fwd(float *o, float *p, const float *qkv, const float *bias, int n, int d, int heads);
void mp_tr_attnbias_bwd(float *dqkv, float *dbias, const float *dout, const float *p, const float *qkv, int n, int d, int heads,
                        float *ws);
/* im2col of a channels-last G x G x C image for a 3x3 conv (pad 1): rows
 * (y, x), columns (c, kh, kw) as torch's weights; col2im3 adds back */
void mp_tr_im2col3(float *cols, const float *x, int G, int C);
void mp_tr_col2im3(float *dx, const float *dcols, int G, int C);
/* MedSAM's loss of one mask of n logits x against gt (0/1): MONAI's
 * DiceLoss(sigmoid=True, squared_pred=True) (smooth 1e-5) + BCEWithLogits
 * (mean over n). Returns dice + bce (parts in *dice, *bce; may be NULL);
 * dx (may be NULL) += scale * d(loss)/dx. Sums in double. */
double mp_tr_dice_bce(const float *x, const float *gt, size_t n, float *dx, double scale, double *dice,
                      double *bce);

/* ---------------------------------------------------------------- decoder training */
typedef struct mp_tr_tensor {
	const char *name;           /* the checkpoint's (owned by the model) */
	size_t off, n;              /* in the parameter buffer, floats */
	int train;                  /* 0: gets no gradient (skipped by AdamW, as torch skips grad None) */
	int owned;                  /* name malloc'd (LoRA tensors) */
} mp_tr_tensor;

typedef struct mp_tr_opt {
	double lr, wd, beta1, beta2, eps;   /* 1e-4, 0.01, 0.9, 0.999, 1e-8 */
} mp_tr_opt;

typedef struct mp_tune mp_tune;     /* opaque: the decoder views and activations */

typedef struct mp_sam_tune {
	mp_sam *m;                  /* the loaded model (frozen parts, tensor names) */
	int loss_res;               /* 4*grid (low-res logits) or img_size (upsampled) */
	size_t np;                  /* floats in each of the buffers below */
	float *p, *g, *m1, *m2;     /* parameters, gradients, AdamW moments */
	size_t nt;
	mp_tr_tensor *t;
	long step;                  /* AdamW steps taken */
	mp_tr_opt opt;
	mp_tune *w;
	/* LoRA (mp_tune_add_lora): rank, scale alpha/rank, the encoder's state */
	int lora_rank;
	double lora_scale;
	struct mp_lora *lora;
	struct mp_tvlora *tvl;      /* the same for a TinyViT encoder (sam_train_tinyvit.c) */
	/* --mode full / adapter (mp_train_peft.h): every image-encoder tensor
	 * trained; bottleneck adapters of this hidden width (0: none) */
	int full, adapter;
	/* image samples: a block's attention probabilities (windows x heads x
	 * tokens^2 floats) are kept for the backward when they take at most
	 * this many bytes, else only each row's max and 1/sum are kept and the
	 * probabilities recomputed per head in the backward (the same values:
	 * the same operations on the same q, k). mp_tune_init: MP_TUNE_ATTN_KEEP
	 * (ViT-B at 1024: the windowed blocks' 46 MB kept, the global blocks'
	 * 805 MB recomputed); SIZE_MAX: always kept, 0: never. */
	size_t attn_keep;
} mp_sam_tune;
#define MP_TUNE_ATTN_KEEP ((size_t)64 << 20)

/* set up training of m's mask decoder (parameters copied out of the
 * checkpoint); loss_res 0: img_size. 0 or -1 + mp_err. */
int mp_tune_init(mp_sam_tune *t, mp_sam *m, int loss_res);
void mp_tune_free(mp_sam_tune *t);
/* the tensor named by fmt... in base (t->p or t->g), or NULL */
float *mp_tune_tensor(const mp_sam_tune *t, float *base, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void mp_tune_zero_grad(mp_sam_tune *t);
/* forward and backward of one prompt: emb (C x G x G, as mp_sam_encode),
 * box x0,y0,x1,y1 in the model's input frame (0..img_size), gt: loss_res^2
 * values 0/1. Gradients scaled by gscale (1/batch) are added to t->g.
 * Loss parts (unscaled) to *loss, *dice, *bce. lowres (may be NULL) gets the
 * single-mask logits (4G x 4G). demb (may be NULL) += gscale * dloss/demb.
 * 0 or -1 + mp_err (memory). */
int mp_tune_sample(mp_sam_tune *t, const float *emb, const float box[4], const float *gt, double gscale,
                   double *loss, double *dice, double *bce, float *lowres, float *demb);
/* LoRA (SAMed's scheme) on the q and v projections of every image-encoder
 * block: q += scale * (x A_q^T) B_q^T, v likewise, A: rank x E, B: E x rank,
 * scale = alpha / rank; tensors image_encoder.blocks.N.attn.qkv.lora_{A,B}_{q,v}
 * (TinyViT: image_encoder.layers.S.blocks.B.attn.qkv.lora_*, the width of
 * each stage) appended to the parameter buffer (A kaiming-uniform as nn.Linear, from
 * seed; B zero). The image encoder's own weights stay frozen. 0 or -1. */
int mp_tune_add_lora(mp_sam_tune *t, int rank, double alpha, uint64_t seed);
/* the TinyViT attention blocks that get LoRA (image_encoder.layers.S.blocks.
 * B.attn.qkv.lora_*): their stage, block and width, at most max; returns how
 * many there are (0 for a ViT encoder) */
int mp_tune_tvit_blocks(const mp_sam *m, int *stage, int *blk, int *dim, int max);
/* forward and backward of one prompt on an image (3 x S x S, the encoder's
 * input): the encoder with LoRA, then mp_tune_sample; LoRA and decoder
 * gradients added to t->g. 0 or -1 + mp_err. */
int mp_tune_sample_image(mp_sam_tune *t, const float *img, const float box[4], const float *gt, double gscale,
                         double *loss, double *dice, double *bce);
/* one AdamW step (torch.optim.AdamW semantics, decoupled weight decay) on
 * the trainable tensors with learning rate lr */
void mp_tune_adamw(mp_sam_tune *t, double lr);
/* the full SAM state dict (every tensor of the checkpoint, the mask decoder's
 * from t->p, LoRA merged into the qkv weights; pixel_mean / pixel_std left out as torch's state_dict does) as a
 * torch zip checkpoint, written atomically. 0 or -1 + mp_err. */
int mp_tune_save(const mp_sam_tune *t, const char *path);
/* the optimizer state (step, parameters, moments, and a user value such as
 * the data position) to / from a file of sam-tune's own format */
int mp_tune_save_state(const mp_sam_tune *t, const char *path, uint64_t user);
int mp_tune_load_state(mp_sam_tune *t, const char *path, uint64_t *user);

/* ---------------------------------------------------------------- training samples */
/* The labelled slices of embedding frames (sam-embed) with their label
 * frames, and MedSAM's sampling of them: in epoch e the slices in a seeded
 * random order (drop_last batches); each sample takes one of the labels of
 * its slice at random, its mask on the model's input grid (S x S, nearest
 * from the original slice as the embedding's mode placed it: medsam
 * stretched, sam ResizeLongestSide + padding), and its bounding box with
 * every side moved outwards by a random 0..shift pixels, clipped to [0, S]
 * (MedSAM's bbox_shift). Every random number derives from (seed, step,
 * position in the batch) alone, so a resumed run draws what the whole run
 * would have drawn. */
typedef struct mp_tune_slice {
	const float *emb;           /* C x G x G (the frame's memory), or NULL: */
	const mp_frame *img;        /* the grey image frame whose slice z is the sample */
	const void *lab;            /* the label frame's data */
	mp_type lt;
	size_t nx, ny, z, rw, rh;
	int nl;
	double *labels;             /* labels present on the S x S grid */
} mp_tune_slice;

typedef struct mp_tune_data {
	int S, LR, shift, batch;
	uint64_t seed;
	size_t n, cap;
	mp_tune_slice *s;
	size_t *perm;
	long perm_epoch;
	unsigned char *gtS;         /* S x S scratch */
	float *embs;                /* embeddings made by mp_tune_data_embed */
} mp_tune_data;

void mp_tune_data_init(mp_tune_data *d, int S, int LR, int shift, int batch, uint64_t seed);
void mp_tune_data_free(mp_tune_data *d);
/* add the labelled slices of embedding frame e (info read by
 * mp_sam_emb_read) with the label frame lab of its image. The frames must
 * outlive d. 0 or -1 + mp_err (label grid differs from the image's). */
int mp_tune_data_add(mp_tune_data *d, const mp_frame *e, const mp_sam_embinfo *info, const mp_frame *lab);
/* the same for a grey image frame img (2-D or 3-D; every slice with a label)
 * that the encoder will see after preprocessing in mode */
int mp_tune_data_add_image(mp_tune_data *d, const mp_frame *img, mp_sam_mode mode, const mp_frame *lab);
long mp_tune_data_steps_per_epoch(const mp_tune_data *d);
/* as mp_tune_data_sample, returning the slice drawn */
const mp_tune_slice *mp_tune_data_pick(mp_tune_data *d, long step, int j, float box[4], float *gt, double *label);
/* sample j of step `step`: returns the embedding; box (model input frame),
 * gt (LR x LR, 0/1), *label the label drawn */
const float *mp_tune_data_sample(mp_tune_data *d, long step, int j, float box[4], float *gt, double *label);
/* identity of the data and sampling options (checked on --resume) */
uint64_t mp_tune_data_hash(const mp_tune_data *d);

/* ---------------------------------------------------------------- data files, schedules, validation
 * (sam_train_files.c, sam_train_val.c) */
/* the single-mask logits (4G x 4G) of one box prompt with the current
 * decoder parameters: the training forward pass alone */
int mp_tune_predict(mp_sam_tune *t, const float *emb, const float box[4], float *lowres);
/* the image embedding (C x G x G) of an encoder input (3 x S x S) with the
 * current weights: LoRA's encoder when t has LoRA, else the frozen encoder */
int mp_tune_encode(mp_sam_tune *t, const float *img, float *emb);
/* the encoder input (3 x S x S) of an image slice (grey, any type) as
 * sam-embed makes it: mp_sam_preprocess with mode prep and resize interp */
int mp_tune_slice_input(const mp_tune_slice *s, mp_sam_mode prep, int interp, int S, float *img);
/* embed once, with the frozen encoder, every slice of d that has an image
 * and no embedding (decoder mode on images); the embeddings belong to d */
int mp_tune_data_embed(mp_tune_data *d, mp_sam *m, mp_sam_mode prep, int interp);

/* MedSAM's training files as frames: an .npz (arrays imgs and gts: 3-D
 * (D,H,W), or 2-D with imgs (H,W,3)) gives an image and a label frame of
 * case = the file's stem; a folder with imgs/ and gts/ of per-slice npy
 * files CASE-NNN.npy (vol2npz --slices) gives one pair per case: the slices
 * holding a label, in slice-number order, stacked (image float32, label
 * uint8). Colour images whose channels are equal become grey; other colour
 * images are refused. *frames: image, label, image, label, ... (free with
 * mp_frames_free). 0 or -1 + mp_err naming the file. */
int mp_tune_files_read(const char *path, mp_frame ***frames, size_t *n);
/* 1 when path names such an input (ends in .npz, or a folder holding imgs/ and gts/) */
int mp_tune_files_is(const char *path);

/* learning-rate schedules: base lr times a linear warm-up (step+1)/warmup
 * for the first warmup steps, then over the remaining total - warmup steps
 * (s counted from the end of the warm-up): constant 1, poly
 * (1 - s/n)^0.9 (torch's PolynomialLR, power 0.9), cosine
 * (1 + cos(pi s/n))/2 (CosineAnnealingLR, eta_min 0). step is 0-based. */
enum { MP_TUNE_CONSTANT, MP_TUNE_POLY, MP_TUNE_COSINE };
int mp_tune_sched_parse(const char *s, int *kind);
double mp_tune_sched_lr(double base, int kind, long warmup, long total, long step);

/* validation of one case held in v (the slices of one image + label pair):
 * as sam-decode --from-label would segment it with the current weights
 * (every label of every labelled slice, its tight box, --threshold of the
 * mode), scored by seg-eval's code (mp_eval_labels, mp_eval_case): the case
 * Dice to *dice. mode: the preprocessing (box mapping and threshold); prep
 * and interp: how images are made encoder inputs (lora mode). 0 or -1. */
int mp_tune_val_case(mp_sam_tune *t, const mp_tune_data *v, mp_sam_mode mode, int interp, double *dice);
/* seeded choice of nval of the n case names for validation: sel[i] = 1 */
void mp_tune_val_split(const char *const *cases, size_t n, size_t nval, uint64_t seed, unsigned char *sel);

/* ---------------------------------------------------------------- data-parallel training (MPI) */
/* sam_train_mpi.c: with MPI built in (mpicc present at build time) and the
 * process started by an MPI launcher (mpirun, srun --mpi=pmix), N ranks;
 * otherwise one. mp_dist_init: MPI_Init, and an exit before
 * mp_dist_finalize then ends every rank (MPI_Abort); -1 + mp_err when the
 * process is one of several tasks that cannot talk (no MPI built in, or a
 * Slurm step of N tasks without MPI's wire-up). mp_dist_threads: the
 * default threads of this rank (the CPUs it is bound to, else the node's
 * CPUs / the ranks on the node). mp_dist_sum_f/_d: element-wise sum over
 * the ranks, in place (MPI_Allreduce). mp_dist_same: 1 when buf holds the
 * same bytes on every rank, 0 if not, -1 + mp_err. mp_dist_about: one line
 * for --version. */
int mp_dist_init(int *argc, char ***argv);
void mp_dist_finalize(void);
int mp_dist_rank(void);
int mp_dist_size(void);
int mp_dist_local_rank(void);
int mp_dist_threads(void);
int mp_dist_sum_f(float *buf, size_t n);
int mp_dist_sum_d(double *buf, size_t n);
int mp_dist_same(const void *buf, size_t n);
const char *mp_dist_about(void);

/* ---------------------------------------------------------------- sam-tune */
/* sam_tune_main.c: the whole of sam-tune after its options (the fields are
 * its options, see sam-tune(1); valfiles: the --val files). Reads args
 * (nargs 0: standard input), trains, writes the outputs; argc/argv go to
 * mp_dist_init. Bad usage or any failure: one line, exit 2 or 1. Frees args. */
typedef struct mp_sam_tune_opts {
	const char *weights, *out, *modestr, *logpath, *statepath, *resumepath;
	const char *prepstr, *interpstr, *adapterout, *schedstr, *vallogpath;
	long batch, steps, epochs, lossres, shift, seed, threads, rank;
	long warmup, schedsteps, accum;
	double lr, wd, alpha, valfrac;
	const char **valfiles;
	size_t nvalfiles;
} mp_sam_tune_opts;
void mp_sam_tune_run(const mp_sam_tune_opts *o, char **args, int nargs, int argc, char **argv);

/* ---------------------------------------------------------------- torch checkpoint writer */
/* A safe torch.save writer: an OrderedDict of float32 tensors (pickle
 * protocol 2 with collections.OrderedDict, torch._utils._rebuild_tensor_v2
 * and torch.FloatStorage only, which torch.load(weights_only=True) accepts),
 * in a stored zip archive with 64-byte aligned storages as torch writes
 * them. names[i], shapes[i] (ndim[i] dims), data[i]. Atomic. 0 or -1 + mp_err. */
int mp_torch_save(const char *path, size_t n, const char *const *names, const int *ndim,
                  const int64_t *const *shapes, const float *const *data);
/* the same where idata[i], when idata and idata[i] are not NULL, gives
 * tensor i as int64 (torch.LongStorage; batch norms' num_batches_tracked)
 * instead of data[i] */
int mp_torch_save_mixed(const char *path, size_t n, const char *const *names, const int *ndim,
                        const int64_t *const *shapes, const float *const *data, const int64_t *const *idata);

#endif
