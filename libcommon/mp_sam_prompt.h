/* mp_sam_prompt.h - sam-decode's prompts in pixel indices of the original
 * slice: boxes, points, 3-D boxes (--box, --point, --box3d, --boxes files),
 * their mapping into the model's input, LiteMedSAM's slice-by-slice
 * propagation of a 3-D box, and MedSAM's boxes from a label frame (with the
 * random bbox_shift). The decoding itself is the caller's: a callback. */
#ifndef MP_SAM_PROMPT_H
#define MP_SAM_PROMPT_H

#include <stdint.h>
#include "mp.h"
#include "mp_sam.h"

#define MP_SP_MAXPTS 16

typedef struct mp_sp_prompt {
	long z;                 /* slice, -1: unset */
	int has_box;
	double box[4];          /* x0 y0 x1 y1, inclusive */
	int npts;
	double pts[2 * MP_SP_MAXPTS];
	int plab[MP_SP_MAXPTS]; /* 1 foreground, 0 background */
	long value;             /* mask value */
} mp_sp_prompt;

typedef struct mp_sp_box3 {
	double b[6];            /* x0 y0 z0 x1 y1 z1 */
	long value;
} mp_sp_box3;

typedef struct mp_sam_prompts {
	mp_sp_prompt *p;
	size_t n;
	mp_sp_box3 *b3;
	size_t nb3;
} mp_sam_prompts;

/* add a box from n values X0,Y0,X1,Y1[,Z[,LABEL]] (label defval when absent) */
int mp_sp_add_box(mp_sam_prompts *s, const double *v, int n, long defval);
/* add a 3-D box from X0,Y0,Z0,X1,Y1,Z1[,LABEL] */
int mp_sp_add_box3(mp_sam_prompts *s, const double *v, int n, long defval);
/* add a point X,Y[,Z[,L]]: it joins the first prompt of its slice, or starts one */
int mp_sp_add_point(mp_sam_prompts *s, const double *v, int n);
/* the boxes of a CSV file or a LiteMedSAM .npz ('boxes' (N,4) or (N,6)) */
int mp_sp_read_file(mp_sam_prompts *s, const char *path);
void mp_sp_free(mp_sam_prompts *s);

/* one prompt of the original nx x ny slice mapped into the model's input
 * (mode and sizes of info, input size S) as SAM's ResizeLongestSide,
 * MedSAM's box/W*S or LiteMedSAM's box/max(W,H)*S do; box (or NULL) and the
 * points must lie in the image (-1 + mp_err naming slice z otherwise).
 * fp holds the mapped points (2*npts floats); p points into it. */
int mp_sp_scale(const mp_sam_embinfo *info, int S, long z, const double *box, int npts,
                const double *pts, const int *plab, mp_sam_prompt *p, float *fp);

/* bounding box (x0 y0 x1 y1, inclusive) of the set pixels of bin (nx x ny);
 * 0 when none is set. grown: each side moved out by grow, clipped to 0..nx, 0..ny */
int mp_sp_bbox(const unsigned char *bin, size_t nx, size_t ny, double *b);
int mp_sp_bbox_grown(const unsigned char *bin, size_t nx, size_t ny, long grow, double *b);

/* the random numbers of --shift: seeded, then 0..n each */
typedef struct { uint64_t s; } mp_sp_rng;
void mp_sp_rng_seed(mp_sp_rng *r, long seed);
long mp_sp_rng_next(mp_sp_rng *r, long n);

/* Decode one prompt on slice z: the callback fills bin (nx*ny) with the
 * prompt's binary mask; 0, or -1 + mp_err to stop.  bin is NULL when the
 * caller does not need the mask (every prompt but the 3-D boxes' slices):
 * the callback may then decode later (sam-decode queues such prompts to
 * spread them over devices), as long as it keeps their order. */
typedef int (*mp_sp_decode_fn)(void *ctx, long z, const double *box, int npts, const double *pts,
                               const int *plab, long value, unsigned char *bin);
/* every prompt of s in order (a prompt without a slice on a 1-slice image
 * goes to slice 0), then every 3-D box: its middle slice prompted with the
 * box, each next slice up to Z1 and down to Z0 with the bounding box of the
 * previous slice's mask grown by grow (the box when that mask is empty) */
int mp_sp_run(const mp_sam_prompts *s, size_t nx, size_t ny, size_t nz, long grow,
              mp_sp_decode_fn fn, void *ctx);
/* MedSAM's evaluation prompts: on each slice sel[0..nsel-1] of the integer
 * label frame lab (nx x ny per slice), the bounding box of every label value
 * > 0 in increasing order, each side moved out by a random 0..shift pixels
 * (clipped to 0..nx, 0..ny) when shift > 0, the random numbers seeded by seed */
int mp_sp_from_label(const mp_frame *lab, size_t nx, size_t ny, const size_t *sel, size_t nsel,
                     long shift, long seed, mp_sp_decode_fn fn, void *ctx);

/* sam-decode (sam_decode.c): for every embedding frame of the inputs (args,
 * or standard input), one mask frame (and with logits a logits frame) from
 * the prompts of opt (and of the file opt->boxes; with fromlabel from the
 * label frame of its case next to it), decoded over the devices of
 * opt->devspec; other frames pass through. Bad usage or any failure: one
 * line, exit 2 or 1. Frees args and the prompts. */
typedef struct mp_sam_decode_opts {
	const char *weights, *adapter, *devspec, *threshold, *boxes;
	mp_sam_prompts prompts;
	int fromlabel, multimask, logits;
	long shift, seed, threads, grow;
} mp_sam_decode_opts;
void mp_sam_decode_stream(mp_sam_decode_opts *opt, char **args, int nargs);

#endif
