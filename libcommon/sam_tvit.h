/* sam_tvit.h - the TinyViT encoder's loaded structure (sam_tinyvit.c),
 * shared with its training code (sam_train_tinyvit.c). Private to libcommon. */
#ifndef SAM_TVIT_H
#define SAM_TVIT_H

#include <stddef.h>
#include "mp_sam.h"

#define TV_MAXSTAGE 6
#define TV_MAXDEPTH 16

typedef struct {
	float *w, *b;           /* folded; dense: out x in x k x k; depthwise: k x k x out */
	int out, in, k, stride, dw;
} tconv;

typedef struct {
	tconv c1, c2, c3;
} tmb;

typedef struct {
	mp_sam_norm an, mn;
	mp_sam_lin qkv, proj, fc1, fc2;   /* qkv rows reordered: q of every head, then k, then v */
	tconv lc;
	float *bias;                      /* heads x N x N, N = window^2 */
} tblk;

typedef struct {
	int dim, res, depth, conv, heads, window, hidden;
	tmb mb[TV_MAXDEPTH];
	tblk bk[TV_MAXDEPTH];
	int down, out_dim, out_res;
	tmb pm;
} tstage;

struct mp_tvit {
	tconv stem[2];
	int nstage;
	tstage st[TV_MAXSTAGE];
	const float *neck0, *neck2;
	mp_sam_norm neck1, neck3;
	float **own;
	size_t *ownsz, nown;
};

/* stem, the MBConv stages and their merging layers (everything before the
 * first attention stage) on img (3 x S x S); x gets the first attention
 * stage's input, channels-last (res x res x dim of that stage). Returns the
 * index of that stage, or -1 + mp_err. */
int mp_sam_tvit_front(mp_sam *m, const float *img, float *x);

#endif
