/* sam_pre.c - SAM / MedSAM preprocessing of slices and postprocessing of
 * the decoder's low-resolution logits (see mp_sam.h) */
#include "mp_sam.h"
#include "mp.h"
#include "mp_filter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *
mp_sam_mode_name(mp_sam_mode m)
{
	return m == MP_SAM_SAM ? "sam" : m == MP_SAM_LITEMEDSAM ? "litemedsam" : "medsam";
}

mp_sam_mode
mp_sam_model_mode(const mp_sam *m)
{
	return !m->tv ? MP_SAM_MEDSAM : m->cfg.img_size == 256 ? MP_SAM_LITEMEDSAM : MP_SAM_SAM;
}

const char *
mp_sam_mode_interp(mp_sam_mode mode)
{
	return mode == MP_SAM_MEDSAM ? "bspline3" : mode == MP_SAM_LITEMEDSAM ? "area" : "linear";
}

int
mp_sam_mode_parse(const char *s, mp_sam_mode *m)
{
	if (strcmp(s, "medsam") == 0)
		*m = MP_SAM_MEDSAM;
	else if (strcmp(s, "sam") == 0)
		*m = MP_SAM_SAM;
	else if (strcmp(s, "litemedsam") == 0)
		*m = MP_SAM_LITEMEDSAM;
	else
		return mp_seterr("unknown mode '%s' (medsam, litemedsam or sam)", s);
	return 0;
}

void
mp_sam_input_size(mp_sam_mode m, int S, size_t nx, size_t ny, size_t *rw, size_t *rh)
{
	if (m == MP_SAM_MEDSAM) {
		*rw = *rh = (size_t)S;
		return;
	}
	mp_longest_side(nx, ny, (size_t)S, rw, rh);
}

int
mp_sam_pre_init(mp_sam_pre *p, mp_sam_mode m, int interp, int S, size_t nx, size_t ny, int nc, int zero_border,
                int resize_same)
{
	memset(p, 0, sizeof *p);
	if (nc != 1 && nc != 3)
		return mp_seterr("%d channels: grey (1) or RGB (3) slices only", nc);
	mp_sam_input_size(m, S, nx, ny, &p->rw, &p->rh);
	if (p->rw == 0 || p->rh == 0 || p->rw > (size_t)S || p->rh > (size_t)S)
		return mp_seterr("slice %zux%zu cannot be resized to the model's %dx%d input", nx, ny, S, S);
	p->plane = malloc(nx * ny * sizeof(float));
	p->res = malloc(p->rw * p->rh * sizeof(float));
	if (!p->plane || !p->res ||
	    mp_resizer_init_border(&p->r, (mp_rs_method)interp, nx, ny, p->rw, p->rh, -0.75, zero_border)) {
		free(p->plane);
		free(p->res);
		memset(p, 0, sizeof *p);
		return mp_seterr("preprocessing: out of memory or bad size");
	}
	p->S = S;
	p->nx = nx;
	p->ny = ny;
	p->nc = nc;
	p->resize_same = resize_same;
	return 0;
}

void
mp_sam_pre_resize(mp_sam_pre *p, const float *slice, float *out)
{
	size_t S = (size_t)p->S, np = S * S, nx = p->nx, ny = p->ny, rw = p->rw, rh = p->rh, nc = (size_t)p->nc;

	memset(out, 0, 3 * np * sizeof(float));
	for (size_t ch = 0; ch < nc; ch++) {
		for (size_t i = 0; i < nx * ny; i++)
			p->plane[i] = slice[i * nc + ch];
		if (rw == nx && rh == ny && !p->resize_same)
			memcpy(p->res, p->plane, nx * ny * sizeof(float));
		else
			mp_resizer_run(&p->r, p->plane, p->res);
		for (size_t y = 0; y < rh; y++)
			memcpy(out + ch * np + y * S, p->res + y * rw, rw * sizeof(float));
	}
	for (size_t ch = nc; ch < 3; ch++)
		memcpy(out + ch * np, out, np * sizeof(float));
}

void
mp_sam_pre_free(mp_sam_pre *p)
{
	if (p->plane)
		mp_resizer_free(&p->r);
	free(p->plane);
	free(p->res);
	memset(p, 0, sizeof *p);
}

void
mp_sam_train_image(mp_sam_pre *p, const float *slice, float *work, int f32, void *rgb)
{
	size_t np = (size_t)p->S * p->S;
	double mn = 1e300, mx = -1e300, d;

	mp_sam_pre_resize(p, slice, work);
	for (size_t i = 0; i < 3 * np; i++) {
		if (work[i] < mn) mn = work[i];
		if (work[i] > mx) mx = work[i];
	}
	d = mx - mn < 1e-8 ? 1e-8 : mx - mn;
	for (size_t i = 0; i < np; i++)
		for (int c = 0; c < 3; c++) {
			double v = (work[(size_t)c * np + i] - mn) / d;
			if (f32)
				((float *)rgb)[3 * i + c] = (float)v;
			else
				((double *)rgb)[3 * i + c] = v;
		}
}

int
mp_sam_preprocess(mp_sam_mode m, int interp, int S, const float *slice, size_t nx, size_t ny, int nc,
                  float *out)
{
	size_t np = (size_t)S * S;
	static const float mean[3] = { 123.675f, 116.28f, 103.53f }, sd[3] = { 58.395f, 57.12f, 57.375f };
	mp_sam_pre p;

	if (mp_sam_pre_init(&p, m, interp, S, nx, ny, nc, 0, 0))
		return -1;
	mp_sam_pre_resize(&p, slice, out);
	size_t rw = p.rw, rh = p.rh;
	mp_sam_pre_free(&p);
	if (m == MP_SAM_LITEMEDSAM) {
		/* min-max of the resized slice (padding excluded) to [0,1] */
		float mn = INFINITY, mx = -INFINITY;
		for (int ch = 0; ch < 3; ch++)
			for (size_t y = 0; y < rh; y++)
				for (size_t x = 0; x < rw; x++) {
					float v = out[(size_t)ch * np + y * (size_t)S + x];
					mn = v < mn ? v : mn;
					mx = v > mx ? v : mx;
				}
		float d = mx - mn > 1e-8f ? mx - mn : 1e-8f;
		for (int ch = 0; ch < 3; ch++)
			for (size_t y = 0; y < rh; y++)
				for (size_t x = 0; x < rw; x++) {
					float *v = out + (size_t)ch * np + y * (size_t)S + x;
					*v = (*v - mn) / d;
				}
	} else if (m == MP_SAM_MEDSAM) {
		float mn = INFINITY, mx = -INFINITY;
		for (size_t i = 0; i < 3 * np; i++) {
			mn = out[i] < mn ? out[i] : mn;
			mx = out[i] > mx ? out[i] : mx;
		}
		float d = mx - mn > 1e-8f ? mx - mn : 1e-8f;
		for (size_t i = 0; i < 3 * np; i++)
			out[i] = (out[i] - mn) / d;
	} else {
		for (int ch = 0; ch < 3; ch++)
			for (size_t y = 0; y < rh; y++)
				for (size_t x = 0; x < rw; x++) {
					float *v = out + (size_t)ch * np + y * (size_t)S + x;
					*v = (*v - mean[ch]) / sd[ch];
				}
	}
	return 0;
}

/* torch's upsample_bilinear2d, align_corners=False, sizes given: the
 * first n of out samples */
static void
bl_tab(size_t in, size_t out, size_t n, int32_t *i0, int32_t *i1, float *l1)
{
	float scale = (float)in / (float)out;

	for (size_t d = 0; d < n; d++) {
		float s = scale * ((float)d + 0.5f) - 0.5f;
		if (s < 0)
			s = 0;
		size_t a = (size_t)s;
		i0[d] = (int32_t)a;
		i1[d] = (int32_t)(a + (a < in - 1 ? 1 : 0));
		l1[d] = s - (float)a;
	}
}

/* the top left cw x ch of src (sw x sh) resized to dw x dh, written with
 * row stride cw. Separable: the horizontal interpolation of each source row
 * is made once, then two rows are blended; the same sums per pixel as
 * a * (p r0[x0] + q r0[x1]) + b * (p r1[x0] + q r1[x1]).
 * scratch: 3 * (cw + ch) + 2 * cw floats */
static void
bl_crop(const float *src, size_t sw, size_t sh, size_t dw, size_t dh, size_t cw, size_t ch, float *dst,
        float *scratch)
{
	if (sw == dw && sh == dh) {   /* scale 1: every sample on a source pixel */
		for (size_t y = 0; y < ch; y++)
			memcpy(dst + y * cw, src + y * sw, cw * sizeof(float));
		return;
	}
	/* the scratch holds the int32 tables first, then the float ones */
	void *sp = scratch;
	int32_t *x0 = sp, *x1 = x0 + cw, *y0 = x1 + cw, *y1 = y0 + ch;
	void *fp = y1 + ch;
	float *lx = fp, *ly = lx + cw, *buf[2] = { ly + ch, ly + ch + cw };
	long tag[2] = { -1, -1 };

	bl_tab(sw, dw, cw, x0, x1, lx);
	bl_tab(sh, dh, ch, y0, y1, ly);
	for (size_t y = 0; y < ch; y++) {
		long need[2] = { y0[y], y1[y] };
		int idx[2];
		for (int k = 0; k < 2; k++) {
			if (tag[0] == need[k])
				idx[k] = 0;
			else if (tag[1] == need[k])
				idx[k] = 1;
			else {
				/* not the buffer of the other row this one needs */
				int v = k == 1 ? 1 - idx[0] : (tag[0] == need[1] ? 1 : 0);
				const float *r = src + (size_t)need[k] * sw;
				float *h = buf[v];
				for (size_t x = 0; x < cw; x++) {
					float q = lx[x], p = 1 - q;
					h[x] = p * r[x0[x]] + q * r[x1[x]];
				}
				tag[v] = need[k];
				idx[k] = v;
			}
		}
		const float *h0 = buf[idx[0]], *h1 = buf[idx[1]];
		float b = ly[y], a = 1 - b;
		float *d = dst + y * cw;
		for (size_t x = 0; x < cw; x++)
			d[x] = a * h0[x] + b * h1[x];
	}
}

void
mp_sam_bilinear(const float *src, size_t sw, size_t sh, float *dst, size_t dw, size_t dh)
{
	float *sc = mp_xmalloc((5 * dw + 3 * dh + 1) * sizeof(float));

	bl_crop(src, sw, sh, dw, dh, dw, dh, dst, sc);
	free(sc);
}

void
mp_sam_post(mp_sam_mode m, int prob, int S, const float *low, int L, size_t rw, size_t rh, size_t nx, size_t ny,
            float *out, float *scratch)
{
	const float *src = low;
	float *p = scratch, *crop = p + (size_t)L * L, *sc = crop + rw * rh;

	if (prob == 1) {
		for (size_t i = 0; i < (size_t)L * L; i++)
			p[i] = 1.0f / (1.0f + expf(-low[i]));
		src = p;
	}
	if (m == MP_SAM_MEDSAM)
		bl_crop(src, (size_t)L, (size_t)L, nx, ny, nx, ny, out, sc);
	else if (rw == nx && rh == ny)   /* the crop is the output */
		bl_crop(src, (size_t)L, (size_t)L, (size_t)S, (size_t)S, rw, rh, out, sc);
	else {
		bl_crop(src, (size_t)L, (size_t)L, (size_t)S, (size_t)S, rw, rh, crop, sc);
		bl_crop(crop, rw, rh, nx, ny, nx, ny, out, sc);
	}
	if (prob == 2)
		for (size_t i = 0; i < nx * ny; i++)
			out[i] = 1.0f / (1.0f + expf(-out[i]));
}

void
mp_sam_postprocess(mp_sam_mode m, int prob, int S, const float *low, int L, size_t rw, size_t rh, size_t nx,
                   size_t ny, float *out)
{
	size_t W = (size_t)S > nx ? (size_t)S : nx, H = (size_t)S > ny ? (size_t)S : ny;
	float *sc = mp_xmalloc(((size_t)L * L + rw * rh + 4 * (W + H) + 2 * W + 64) * sizeof(float));

	mp_sam_post(m, prob, S, low, L, rw, rh, nx, ny, out, sc);
	free(sc);
}
