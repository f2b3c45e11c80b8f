/* sam_train_data.c - training samples for sam-tune: labelled slices of
 * embedding frames and MedSAM's random label, box and shift (mp_train.h) */
#include "mp_train.h"
#include "mp.h"
#include "mp_augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* a generator for (seed, a, b) */
static uint64_t
stream(uint64_t seed, uint64_t a, uint64_t b)
{
	uint64_t s = seed;
	s = mp_splitmix64(&s) ^ (a * 0xd1b54a32d192ed03ULL);
	s = mp_splitmix64(&s) ^ (b * 0x8cb92ba72f3d8dd7ULL);
	mp_splitmix64(&s);
	return s;
}

static uint64_t
below(uint64_t *s, uint64_t n)
{
	return n ? mp_splitmix64(s) % n : 0;
}

void
mp_tune_data_init(mp_tune_data *d, int S, int LR, int shift, int batch, uint64_t seed)
{
	memset(d, 0, sizeof *d);
	d->S = S;
	d->LR = LR;
	d->shift = shift;
	d->batch = batch;
	d->seed = seed;
	d->perm_epoch = -1;
	d->gtS = mp_xmalloc((size_t)S * S);
}

void
mp_tune_data_free(mp_tune_data *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->s[i].labels);
	free(d->s);
	free(d->perm);
	free(d->gtS);
	free(d->embs);
	memset(d, 0, sizeof *d);
}

/* the source pixel of model-input coordinate x (0..S-1): -1 in the padding */
static long
src_of(int x, size_t r, size_t n)
{
	if ((size_t)x >= r)
		return -1;
	size_t s = (size_t)(((double)x + 0.5) * (double)n / (double)r);
	return (long)(s < n ? s : n - 1);
}

static double
lab_at(const mp_tune_slice *s, long x, long y)
{
	return mp_get(s->lab, s->lt, (s->z * s->ny + (size_t)y) * s->nx + (size_t)x);
}

/* the slices sel[0..nsel) of an image of nx x ny x nz placed as rw x rh in
 * the model input; embeddings (e, per floats each) or the image frame img */
static int
add_slices(mp_tune_data *d, const mp_frame *e, size_t per, const mp_frame *img, size_t nx0, size_t ny0, size_t nz0,
           size_t rw, size_t rh, const size_t *sel, size_t nsel, const mp_frame *lab)
{
	size_t nx, ny, nz;
	int S = d->S;

	if (mp_frame_xyz(lab, &nx, &ny, &nz) < 0 || nx != nx0 || ny != ny0 || nz != nz0)
		return mp_seterr("label frame of case '%s': its grid differs from the image's (%zux%zux%zu)", mp_case(lab),
		                 nx0, ny0, nz0);
	if (!mp_type_is_int(lab->type))
		return mp_seterr("label frame of case '%s': not an integer type", mp_case(lab));
	long *xs = mp_xmalloc((size_t)S * sizeof *xs), *ys = mp_xmalloc((size_t)S * sizeof *ys);
	for (size_t i = 0; i < nsel; i++) {
		mp_tune_slice s;
		memset(&s, 0, sizeof s);
		s.emb = e ? (const float *)e->data + i * per : NULL;
		s.img = img;
		s.lab = lab->data;
		s.lt = lab->type;
		s.nx = nx;
		s.ny = ny;
		s.z = sel[i];
		s.rw = rw;
		s.rh = rh;
		for (int k = 0; k < S; k++) {
			xs[k] = src_of(k, s.rw, nx);
			ys[k] = src_of(k, s.rh, ny);
		}
		int cap = 0;
		for (int y = 0; y < S; y++) {
			if (ys[y] < 0)
				continue;
			double prev = 0;
			for (int x = 0; x < S; x++) {
				if (xs[x] < 0)
					continue;
				double v = lab_at(&s, xs[x], ys[y]);
				if (v == 0 || v == prev)
					continue;
				prev = v;
				int k = 0;
				while (k < s.nl && s.labels[k] != v)
					k++;
				if (k == s.nl) {
					if (s.nl == cap) {
						cap = cap ? 2 * cap : 8;
						s.labels = mp_xrealloc(s.labels, (size_t)cap * sizeof *s.labels);
					}
					s.labels[s.nl++] = v;
				}
			}
		}
		if (!s.nl)
			continue;
		/* in increasing order: the same draws whatever the scan met first */
		for (int a = 1; a < s.nl; a++)
			for (int b = a; b > 0 && s.labels[b - 1] > s.labels[b]; b--) {
				double t = s.labels[b];
				s.labels[b] = s.labels[b - 1];
				s.labels[b - 1] = t;
			}
		if (d->n == d->cap) {
			d->cap = d->cap ? 2 * d->cap : 64;
			d->s = mp_xrealloc(d->s, d->cap * sizeof *d->s);
		}
		d->s[d->n++] = s;
	}
	free(xs);
	free(ys);
	return 0;
}

int
mp_tune_data_add(mp_tune_data *d, const mp_frame *e, const mp_sam_embinfo *info, const mp_frame *lab)
{
	return add_slices(d, e, (size_t)info->C * info->G * info->G, NULL, info->nx, info->ny, info->nz, info->rw,
	                  info->rh, info->sel, info->nsel, lab);
}

int
mp_tune_data_add_image(mp_tune_data *d, const mp_frame *img, mp_sam_mode mode, const mp_frame *lab)
{
	size_t nx, ny, nz, rw, rh;

	if (mp_frame_xyz(img, &nx, &ny, &nz) < 0)
		return mp_seterr("image frame of case '%s': a 2-D or 3-D grey image is needed", mp_case(img));
	mp_sam_input_size(mode, d->S, nx, ny, &rw, &rh);
	size_t *sel = mp_xmalloc((nz + 1) * sizeof *sel);
	for (size_t z = 0; z < nz; z++)
		sel[z] = z;
	int rc = add_slices(d, NULL, 0, img, nx, ny, nz, rw, rh, sel, nz, lab);
	free(sel);
	return rc;
}

long
mp_tune_data_steps_per_epoch(const mp_tune_data *d)
{
	long n = (long)(d->n / (size_t)d->batch);
	return n > 0 ? n : 1;
}

uint64_t
mp_tune_data_hash(const mp_tune_data *d)
{
	uint64_t h = 1469598103934665603ULL;
	uint64_t v[6] = { (uint64_t)d->S, (uint64_t)d->LR, (uint64_t)d->shift, (uint64_t)d->batch, d->seed, d->n };
	for (int i = 0; i < 6; i++)
		h = (h ^ v[i]) * 1099511628211ULL;
	for (size_t i = 0; i < d->n; i++)
		h = (h ^ (d->s[i].z + 7919 * (uint64_t)d->s[i].nl)) * 1099511628211ULL;
	return h;
}

const float *
mp_tune_data_sample(mp_tune_data *d, long step, int j, float box[4], float *gt, double *label)
{
	return mp_tune_data_pick(d, step, j, box, gt, label)->emb;
}

const mp_tune_slice *
mp_tune_data_pick(mp_tune_data *d, long step, int j, float box[4], float *gt, double *label)
{
	long spe = mp_tune_data_steps_per_epoch(d), epoch = step / spe;
	int S = d->S;

	if (epoch != d->perm_epoch) {
		uint64_t r = stream(d->seed, 0x65706f6368ULL, (uint64_t)epoch);
		d->perm = mp_xrealloc(d->perm, (d->n + 1) * sizeof *d->perm);
		for (size_t i = 0; i < d->n; i++)
			d->perm[i] = i;
		for (size_t i = d->n; i > 1; i--) {
			size_t k = (size_t)below(&r, i), t = d->perm[i - 1];
			d->perm[i - 1] = d->perm[k];
			d->perm[k] = t;
		}
		d->perm_epoch = epoch;
	}
	const mp_tune_slice *s = &d->s[d->perm[((size_t)(step % spe) * d->batch + (size_t)j) % d->n]];
	uint64_t r = stream(d->seed, (uint64_t)step + 1, (uint64_t)j);
	double v = s->labels[below(&r, (uint64_t)s->nl)];
	int x0 = S, y0 = S, x1 = -1, y1 = -1;
	for (int y = 0; y < S; y++) {
		long sy = src_of(y, s->rh, s->ny);
		unsigned char *row = d->gtS + (size_t)y * S;
		for (int x = 0; x < S; x++) {
			long sx = sy < 0 ? -1 : src_of(x, s->rw, s->nx);
			row[x] = sx >= 0 && lab_at(s, sx, sy) == v;
			if (row[x]) {
				x0 = x < x0 ? x : x0;
				x1 = x > x1 ? x : x1;
				y0 = y < y0 ? y : y0;
				y1 = y > y1 ? y : y1;
			}
		}
	}
	/* MedSAM: x_min = max(0, x_min - randint(0, shift)), x_max = min(W, x_max + randint(0, shift)) */
	uint64_t n = (uint64_t)d->shift + 1;
	box[0] = (float)fmax(0, x0 - (double)below(&r, n));
	box[2] = (float)fmin(S, x1 + (double)below(&r, n));
	box[1] = (float)fmax(0, y0 - (double)below(&r, n));
	box[3] = (float)fmin(S, y1 + (double)below(&r, n));
	/* the loss's mask: S x S, or every (S/LR)-th pixel (torch's nearest) */
	int f = S / d->LR;
	for (int y = 0; y < d->LR; y++)
		for (int x = 0; x < d->LR; x++)
			gt[(size_t)y * d->LR + x] = d->gtS[(size_t)y * f * S + (size_t)x * f];
	if (label)
		*label = v;
	return s;
}

int
mp_tune_slice_input(const mp_tune_slice *s, mp_sam_mode prep, int interp, int S, float *img)
{
	size_t n = s->nx * s->ny;
	float *plane = malloc((n ? n : 1) * sizeof(float));
	if (!plane)
		return mp_seterr("out of memory");
	mp_convert(plane, MP_FLOAT32, (const char *)s->img->data + s->z * n * mp_type_size(s->img->type), s->img->type, n);
	int rc = mp_sam_preprocess(prep, interp, S, plane, s->nx, s->ny, 1, img);
	free(plane);
	return rc;
}

int
mp_tune_data_embed(mp_tune_data *d, mp_sam *m, mp_sam_mode prep, int interp)
{
	size_t per = (size_t)m->cfg.out_chans * m->cfg.grid * m->cfg.grid, k = 0, n = 0;
	int S = m->cfg.img_size;

	for (size_t i = 0; i < d->n; i++)
		n += !d->s[i].emb && d->s[i].img;
	if (!n)
		return 0;
	if (d->embs)
		return mp_seterr("mp_tune_data_embed: called twice");
	float *img = malloc((size_t)3 * S * S * sizeof(float));
	d->embs = malloc(n * per * sizeof(float));
	if (!img || !d->embs) {
		free(img);
		return mp_seterr("out of memory for the embeddings of %zu slices", n);
	}
	for (size_t i = 0; i < d->n; i++) {
		mp_tune_slice *s = &d->s[i];
		if (s->emb || !s->img)
			continue;
		float *e = d->embs + k++ * per;
		if (mp_tune_slice_input(s, prep, interp, S, img) || mp_sam_encode(m, img, e)) {
			free(img);
			return mp_preerr("case '%s' slice %zu", mp_case(s->img), s->z);
		}
		s->emb = e;
		mp_note("embedded case '%s' slice %zu (%zu of %zu)", mp_case(s->img), s->z, k, n);
	}
	free(img);
	return 0;
}
