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
mp_sam_preprocess(mp_sam_mode m, int interp, int S, const float *slice, size_t nx, size_t ny, int nc,
                  float *out)
{
	size_t rw, rh, np = (size_t)S * S;
	static const float mean[3] = { 123.675f, 116.28f, 103.53f }, sd[3] = { 58.395f, 57.12f, 57.375f };
	mp_resizer r;

	if (nc != 1 && nc != 3)
		return mp_seterr("%d channels: grey (1) or RGB (3) slices only", nc);
	mp_sam_input_size(m, S, nx, ny, &rw, &rh);
	if (rw == 0 || rh == 0 || rw > (size_t)S || rh > (size_t)S)
		return mp_seterr("slice %zux%zu cannot be resized to the model's %dx%d input", nx, ny, S, S);
	float *plane = malloc(nx * ny * sizeof(float)), *res = malloc(rw * rh * sizeof(float));
	if (!plane || !res || mp_resizer_init(&r, (mp_rs_method)interp, nx, ny, rw, rh, -0.75)) {
		free(plane);
		free(res);
		return mp_seterr("preprocessing: out of memory or bad size");
	}
	memset(out, 0, 3 * np * sizeof(float));
	for (int ch = 0; ch < nc; ch++) {
		for (size_t i = 0; i < nx * ny; i++)
			plane[i] = slice[i * (size_t)nc + (size_t)ch];
		if (rw == nx && rh == ny)
			memcpy(res, plane, nx * ny * sizeof(float));
		else
			mp_resizer_run(&r, plane, res);
		for (size_t y = 0; y < rh; y++)
			memcpy(out + (size_t)ch * np + y * (size_t)S, res + y * rw, rw * sizeof(float));
	}
	mp_resizer_free(&r);
	free(plane);
	free(res);
	for (int ch = nc; ch < 3; ch++)
		memcpy(out + (size_t)ch * np, out, np * sizeof(float));
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
