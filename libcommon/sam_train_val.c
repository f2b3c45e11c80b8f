/* sam_train_val.c - sam-tune's learning-rate schedules, the split of cases
 * into training and validation, and the validation Dice of a case as
 * sam-decode --from-label + seg-eval score it (mp_train.h) */
#include "mp_train.h"
#include "mp.h"
#include "mp_augment.h"
#include "mp_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int
mp_tune_sched_parse(const char *s, int *kind)
{
	if (strcmp(s, "constant") == 0)
		*kind = MP_TUNE_CONSTANT;
	else if (strcmp(s, "poly") == 0)
		*kind = MP_TUNE_POLY;
	else if (strcmp(s, "cosine") == 0)
		*kind = MP_TUNE_COSINE;
	else
		return mp_seterr("'%s': constant, poly or cosine", s);
	return 0;
}

double
mp_tune_sched_lr(double base, int kind, long warmup, long total, long step)
{
	if (warmup > 0 && step < warmup)
		return base * (double)(step + 1) / (double)warmup;
	long n = total - (warmup > 0 ? warmup : 0), s = step - (warmup > 0 ? warmup : 0);
	if (kind == MP_TUNE_CONSTANT || n <= 0)
		return base;
	double f = s >= n ? 1.0 : (double)s / (double)n;
	if (kind == MP_TUNE_POLY)
		return base * pow(1.0 - f, 0.9);
	return base * (1.0 + cos(M_PI * f)) / 2.0;
}

static const char *const *sort_names;
static int
cmp_idx(const void *a, const void *b)
{
	return strcmp(sort_names[*(const size_t *)a], sort_names[*(const size_t *)b]);
}

void
mp_tune_val_split(const char *const *cases, size_t n, size_t nval, uint64_t seed, unsigned char *sel)
{
	size_t *ix = mp_xmalloc((n ? n : 1) * sizeof *ix);
	for (size_t i = 0; i < n; i++)
		ix[i] = i;
	/* by name first: the choice does not depend on the order of the inputs */
	sort_names = cases;
	qsort(ix, n, sizeof *ix, cmp_idx);
	uint64_t r = seed ^ 0x76616c6964617465ULL;
	mp_splitmix64(&r);
	for (size_t i = n; i > 1; i--) {
		size_t k = (size_t)(mp_splitmix64(&r) % i), t = ix[i - 1];
		ix[i - 1] = ix[k];
		ix[k] = t;
	}
	memset(sel, 0, n);
	for (size_t i = 0; i < nval && i < n; i++)
		sel[ix[i]] = 1;
	free(ix);
}

int
mp_tune_val_case(mp_sam_tune *t, const mp_tune_data *v, mp_sam_mode mode, int interp, double *dice)
{
	const mp_sam_config *c = &t->m->cfg;
	int S = c->img_size, G = c->grid, L = 4 * G;
	size_t nsl = v->n;

	*dice = NAN;
	if (!nsl)
		return 0;
	const mp_tune_slice *s0 = &v->s[0];
	size_t nx = s0->nx, ny = s0->ny, np = nx * ny;
	int32_t *ref = mp_xcalloc(np * nsl, sizeof *ref), *pred = mp_xcalloc(np * nsl, sizeof *pred);
	float *img = NULL, *emb = NULL, *plane = mp_xmalloc(np * sizeof *plane), *low = mp_xmalloc((size_t)L * L * sizeof *low);
	double *vals = NULL;
	int rc = -1;
	/* sam-decode --threshold of the mode */
	int prob = mode == MP_SAM_MEDSAM ? 1 : mode == MP_SAM_LITEMEDSAM ? 2 : 0;
	float thr = mode != MP_SAM_SAM ? 0.5f : 0.0f;

	for (size_t k = 0; k < nsl; k++) {
		const mp_tune_slice *s = &v->s[k];
		const float *e = s->emb;
		if (s->nx != nx || s->ny != ny) {
			mp_seterr("validation case '%s': slices of different sizes", s->img ? mp_case(s->img) : "?");
			goto out;
		}
		if (!e) {
			if (!img) {
				img = mp_xmalloc((size_t)3 * S * S * sizeof *img);
				emb = mp_xmalloc((size_t)c->out_chans * G * G * sizeof *emb);
			}
			if (mp_tune_slice_input(s, mode, interp, S, img) || mp_tune_encode(t, img, emb))
				goto out;
			e = emb;
		}
		/* the labels of the slice in increasing order, as sam-decode --from-label */
		int32_t *rz = ref + k * np, *pz = pred + k * np;
		size_t nv = 0;
		for (size_t q = 0; q < np; q++) {
			double x = mp_get(s->lab, s->lt, s->z * np + q);
			rz[q] = (int32_t)x;
			if (x <= 0)
				continue;
			size_t j = 0;
			while (j < nv && vals[j] < x)
				j++;
			if (j < nv && vals[j] == x)
				continue;
			vals = mp_xrealloc(vals, (nv + 1) * sizeof *vals);
			memmove(vals + j + 1, vals + j, (nv - j) * sizeof *vals);
			vals[j] = x;
			nv++;
		}
		double sx = (double)s->rw / (double)nx, sy = (double)s->rh / (double)ny;
		if (mode == MP_SAM_LITEMEDSAM)
			sx = sy = (double)S / (double)(nx > ny ? nx : ny);
		for (size_t j = 0; j < nv; j++) {
			size_t x0 = nx, y0 = ny, x1 = 0, y1 = 0;
			for (size_t y = 0; y < ny; y++)
				for (size_t x = 0; x < nx; x++)
					if (rz[y * nx + x] == (int32_t)vals[j]) {
						x0 = x < x0 ? x : x0;
						x1 = x > x1 ? x : x1;
						y0 = y < y0 ? y : y0;
						y1 = y > y1 ? y : y1;
					}
			float box[4] = { (float)((double)x0 * sx), (float)((double)y0 * sy), (float)((double)x1 * sx),
			                 (float)((double)y1 * sy) };
			if (mp_tune_predict(t, e, box, low))
				goto out;
			mp_sam_postprocess(mode, prob, S, low, L, s->rw, s->rh, nx, ny, plane);
			for (size_t q = 0; q < np; q++)
				if (plane[q] > thr)
					pz[q] = (int32_t)vals[j];
		}
	}
	size_t dim[3] = { nx, ny, nsl }, nl;
	double sp[3] = { 1, 1, 1 }, nsd;
	mp_eval_label *lab;
	if (mp_eval_labels(ref, pred, dim, sp, 2.0, 0, &lab, &nl) < 0)
		goto out;
	mp_eval_case(lab, nl, 0, dice, &nsd);
	free(lab);
	rc = 0;
out:
	free(ref);
	free(pred);
	free(img);
	free(emb);
	free(plane);
	free(low);
	free(vals);
	return rc;
}
