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

/* torch's upsample_bilinear2d, align_corners=False, sizes given */
static void
bl_tab(size_t in, size_t out, size_t *i0, size_t *i1, float *l1)
{
	float scale = (float)in / (float)out;

	for (size_t d = 0; d < out; d++) {
		float s = scale * ((float)d + 0.5f) - 0.5f;
		if (s < 0)
			s = 0;
		size_t a = (size_t)s;
		i0[d] = a;
		i1[d] = a + (a < in - 1 ? 1 : 0);
		l1[d] = s - (float)a;
	}
}

void
mp_sam_bilinear(const float *src, size_t sw, size_t sh, float *dst, size_t dw, size_t dh)
{
	if (sw == dw && sh == dh) {   /* scale 1: every sample on a source pixel */
		memcpy(dst, src, sw * sh * sizeof(float));
		return;
	}
	size_t *x0 = mp_xmalloc(dw * sizeof *x0), *x1 = mp_xmalloc(dw * sizeof *x1);
	size_t *y0 = mp_xmalloc(dh * sizeof *y0), *y1 = mp_xmalloc(dh * sizeof *y1);
	float *lx = mp_xmalloc(dw * sizeof *lx), *ly = mp_xmalloc(dh * sizeof *ly);

	bl_tab(sw, dw, x0, x1, lx);
	bl_tab(sh, dh, y0, y1, ly);
	for (size_t y = 0; y < dh; y++) {
		const float *r0 = src + y0[y] * sw, *r1 = src + y1[y] * sw;
		float b = ly[y], a = 1 - b;
		for (size_t x = 0; x < dw; x++) {
			float q = lx[x], p = 1 - q;
			dst[y * dw + x] = a * (p * r0[x0[x]] + q * r0[x1[x]]) + b * (p * r1[x0[x]] + q * r1[x1[x]]);
		}
	}
	free(x0);
	free(x1);
	free(y0);
	free(y1);
	free(lx);
	free(ly);
}

void
mp_sam_postprocess(mp_sam_mode m, int prob, int S, const float *low, int L, size_t rw, size_t rh, size_t nx,
                   size_t ny, float *out)
{
	float *p = mp_xmalloc((size_t)L * L * sizeof(float));
	for (size_t i = 0; i < (size_t)L * L; i++)
		p[i] = prob == 1 ? 1.0f / (1.0f + expf(-low[i])) : low[i];
	if (m == MP_SAM_MEDSAM) {
		mp_sam_bilinear(p, (size_t)L, (size_t)L, out, nx, ny);
		free(p);
		goto after;
	}
	float *big = mp_xmalloc((size_t)S * S * sizeof(float)), *crop = mp_xmalloc(rw * rh * sizeof(float));
	mp_sam_bilinear(p, (size_t)L, (size_t)L, big, (size_t)S, (size_t)S);
	free(p);
	for (size_t y = 0; y < rh; y++)
		memcpy(crop + y * rw, big + y * (size_t)S, rw * sizeof(float));
	mp_sam_bilinear(crop, rw, rh, out, nx, ny);
	free(big);
	free(crop);
after:
	if (prob == 2)
		for (size_t i = 0; i < nx * ny; i++)
			out[i] = 1.0f / (1.0f + expf(-out[i]));
}
