/* window.c - intensity windowing (level/width, MedSAM's mapping) and percentiles */
#include "mp_filter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const mp_win_preset presets[] = {
	{ "soft-tissue", 40, 400, "abdomen/chest soft tissue (MedSAM's CT window)" },
	{ "abdomen", 60, 400, "abdominal soft tissue" },
	{ "liver", 60, 150, "liver parenchyma and lesions (narrow)" },
	{ "mediastinum", 50, 350, "mediastinum, heart, great vessels" },
	{ "lung", -600, 1500, "lung parenchyma" },
	{ "bone", 300, 1500, "bone (a common compromise; 400/1800 and 500/2000 are also used)" },
	{ "brain", 40, 80, "brain parenchyma" },
	{ "subdural", 75, 215, "subdural haematoma (blood against bone)" },
	{ "stroke", 40, 40, "early ischaemic stroke (grey/white contrast)" },
	{ "temporal-bone", 600, 2800, "inner ear, temporal bone" },
	{ "angio", 300, 600, "CT angiography, contrast-filled vessels" },
	{ "spine", 50, 250, "spinal soft tissue" },
	{ "pelvis", 40, 400, "pelvic soft tissue" },
	{ "head-neck", 40, 350, "head and neck soft tissue" },
	{ NULL, 0, 0, NULL }
};

const mp_win_preset *
mp_win_presets(void)
{
	return presets;
}

const mp_win_preset *
mp_win_preset_find(const char *name)
{
	for (const mp_win_preset *p = presets; p->name; p++)
		if (strcmp(p->name, name) == 0)
			return p;
	/* also accept soft_tissue, SOFT-TISSUE */
	char buf[32];
	size_t i;
	for (i = 0; name[i] && i + 1 < sizeof buf; i++)
		buf[i] = name[i] == '_' ? '-' : (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
	buf[i] = 0;
	for (const mp_win_preset *p = presets; p->name; p++)
		if (strcmp(p->name, buf) == 0)
			return p;
	return NULL;
}

/* store v into dst[i] of type dt: truncation or rounding, clamped */
static inline void
store(void *dst, mp_type dt, size_t i, double v, int tr)
{
	if (tr && mp_type_is_int(dt))
		v = isnan(v) ? 0 : trunc(v);
	mp_put(dst, dt, i, v);
}

#define WIN_LOOP(T, REAL)                                                          \
	do {                                                                       \
		const T *s = src;                                                  \
		REAL clo = (REAL)m->clip_lo, chi = (REAL)m->clip_hi;              \
		REAL ilo = (REAL)m->in_lo, den = (REAL)m->in_hi - (REAL)m->in_lo; \
		REAL olo = (REAL)m->out_lo, orng = (REAL)m->out_hi - (REAL)m->out_lo; \
		for (size_t i = 0; i < n; i++) {                                   \
			REAL x = (REAL)s[i], v, t, y;                             \
			if (m->keep_zero && s[i] == 0) {                           \
				y = 0;                                             \
			} else {                                                   \
				v = x < clo ? clo : x > chi ? chi : x;             \
				t = den != 0 ? (v - ilo) / den : (REAL)0;          \
				y = olo == 0 ? t * orng : olo + t * orng;          \
			}                                                          \
			if (u8)                                                    \
				((uint8_t *)dst)[i] = y <= 0 || y != y ? 0 : y >= 255 ? 255 : (uint8_t)y; \
			else if (u8r)                                              \
				((uint8_t *)dst)[i] = y <= 0 || y != y ? 0 : y >= 255 ? 255 : (uint8_t)((double)y + 0.5); \
			else if (f32)                                              \
				((float *)dst)[i] = (float)y;                      \
			else                                                       \
				store(dst, dt, i, (double)y, m->trunc);            \
		}                                                                  \
	} while (0)

/* 8- and 16-bit integer input: a table of every possible value, computed by
 * the same loop, then a lookup (the same results, much faster) */
static int
window_lut(void *dst, mp_type dt, const void *src, mp_type st, size_t n, const mp_winmap *m)
{
	size_t nv = st == MP_INT8 || st == MP_UINT8 ? 256 : 65536, el = mp_type_size(dt);
	unsigned char *lut;

	if (n < 4 * nv || !(lut = malloc(nv * el)))
		return -1;
	if (st == MP_INT8 || st == MP_UINT8) {
		uint8_t v[256];
		for (size_t i = 0; i < 256; i++)
			v[i] = (uint8_t)i;     /* every bit pattern */
		mp_window_apply(lut, dt, v, st, 256, m);
		/* entry index = the byte itself */
		for (size_t i = 0; i < n; i++)
			memcpy((unsigned char *)dst + i * el, lut + (size_t)((const uint8_t *)src)[i] * el, el);
		free(lut);
		return 0;
	}
	uint16_t *v = malloc(65536 * sizeof *v);
	if (!v) {
		free(lut);
		return -1;
	}
	for (size_t i = 0; i < 65536; i++)
		v[i] = (uint16_t)i;
	mp_window_apply(lut, dt, v, st, 65536, m);
	free(v);
	const uint16_t *s = src;
	switch (el) {
	case 1:
		for (size_t i = 0; i < n; i++)
			((uint8_t *)dst)[i] = lut[s[i]];
		break;
	case 2:
		for (size_t i = 0; i < n; i++)
			((uint16_t *)dst)[i] = ((const uint16_t *)(const void *)lut)[s[i]];
		break;
	case 4:
		for (size_t i = 0; i < n; i++)
			((uint32_t *)dst)[i] = ((const uint32_t *)(const void *)lut)[s[i]];
		break;
	default:
		for (size_t i = 0; i < n; i++)
			memcpy((unsigned char *)dst + i * el, lut + (size_t)s[i] * el, el);
	}
	free(lut);
	return 0;
}

void
mp_window_apply(void *dst, mp_type dt, const void *src, mp_type st, size_t n, const mp_winmap *m)
{
	int u8 = dt == MP_UINT8 && m->trunc, f32 = dt == MP_FLOAT32;
	int u8r = dt == MP_UINT8 && !m->trunc;

	if ((st == MP_INT8 || st == MP_UINT8 || st == MP_INT16 || st == MP_UINT16) && window_lut(dst, dt, src, st, n, m) == 0)
		return;

	if (m->single) {
		switch (st) {
		case MP_FLOAT32: WIN_LOOP(float, float); return;
		default: break;
		}
	}
	switch (st) {
	case MP_INT8: WIN_LOOP(int8_t, double); break;
	case MP_UINT8: WIN_LOOP(uint8_t, double); break;
	case MP_INT16: WIN_LOOP(int16_t, double); break;
	case MP_UINT16: WIN_LOOP(uint16_t, double); break;
	case MP_INT32: WIN_LOOP(int32_t, double); break;
	case MP_UINT32: WIN_LOOP(uint32_t, double); break;
	case MP_INT64: WIN_LOOP(int64_t, double); break;
	case MP_UINT64: WIN_LOOP(uint64_t, double); break;
	case MP_FLOAT32: WIN_LOOP(float, double); break;
	case MP_FLOAT64: WIN_LOOP(double, double); break;
	default: break;
	}
}

/* quickselect: afterwards a[k] is the k-th smallest, a[0..k-1] <= a[k] <= a[k+1..] */
#define SELECT(NAME, T)                                                      \
	static void NAME(T *a, size_t n, size_t k)                           \
	{                                                                    \
		size_t lo = 0, hi = n - 1;                                   \
		while (hi > lo) {                                            \
			size_t mid = lo + (hi - lo) / 2, i = lo, j = hi;     \
			T x;                                                 \
			/* median of three as the pivot */                   \
			if (a[mid] < a[lo]) { x = a[mid]; a[mid] = a[lo]; a[lo] = x; } \
			if (a[hi] < a[lo]) { x = a[hi]; a[hi] = a[lo]; a[lo] = x; }    \
			if (a[hi] < a[mid]) { x = a[hi]; a[hi] = a[mid]; a[mid] = x; } \
			T piv = a[mid];                                      \
			while (i <= j) {                                     \
				while (a[i] < piv) i++;                      \
				while (piv < a[j]) j--;                      \
				if (i <= j) {                                \
					x = a[i]; a[i] = a[j]; a[j] = x;     \
					i++;                                 \
					if (j == 0) break;                   \
					j--;                                 \
				}                                            \
			}                                                    \
			if (k <= j) hi = j;                                  \
			else if (k >= i) lo = i;                             \
			else return;                                         \
		}                                                            \
	}
SELECT(select_f, float)
SELECT(select_d, double)
#undef SELECT

/* numpy's linear interpolation between sorted neighbours (its _lerp) */
static double
lerp(double a, double b, double g)
{
	double d = b - a;

	return g >= 0.5 ? b - d * (1 - g) : a + d * g;
}

int
mp_percentiles(const void *src, mp_type st, size_t n, int positive_only,
               const double *p, int np, double *out)
{
	size_t cnt = 0;

	if (st == MP_UINT8 || st == MP_INT8 || st == MP_INT16 || st == MP_UINT16) {
		/* exact order statistics from a histogram */
		size_t *hist = mp_xcalloc(65536, sizeof *hist);
		long off = st == MP_INT8 ? 128 : st == MP_INT16 ? 32768 : 0;
			for (size_t i = 0; i < n; i++) {
			long v = (long)mp_get(src, st, i);
			if (positive_only && v <= 0)
				continue;
			hist[v + off]++;
			cnt++;
		}
		if (cnt == 0) {
			free(hist);
			return mp_seterr("no %svoxels to take percentiles of", positive_only ? "positive " : "");
		}
		for (int k = 0; k < np; k++) {
			double vi = (double)(cnt - 1) * (p[k] / 100.0);
			double lo = floor(vi), g = vi - lo;
			size_t r0 = (size_t)lo, r1 = r0 + 1 < cnt ? r0 + 1 : cnt - 1, acc = 0;
			double a = 0, b = 0;
			int got = 0;
			for (size_t v = 0; v < 65536 && got < 2; v++) {
				if (!hist[v])
					continue;
				if (got == 0 && r0 < acc + hist[v]) {
					a = (double)((long)v - off);
					got = 1;
				}
				if (got == 1 && r1 < acc + hist[v]) {
					b = (double)((long)v - off);
					got = 2;
				}
				acc += hist[v];
			}
			out[k] = lerp(a, b, g);
		}
		free(hist);
		return 0;
	}
	/* float input is copied as floats (exact), other types as doubles; the
	 * order statistics come from quickselect, not a full sort */
	int single = st == MP_FLOAT32;
	size_t esz = single ? sizeof(float) : sizeof(double);
	void *v = malloc((n ? n : 1) * esz);
	if (!v)
		return mp_seterr("out of memory for %zu values", n);
	for (size_t i = 0; i < n; i++) {
		double x = mp_get(src, st, i);
		if (isnan(x) || (positive_only && !(x > 0)))
			continue;
		if (single)
			((float *)v)[cnt++] = (float)x;
		else
			((double *)v)[cnt++] = x;
	}
	if (cnt == 0) {
		free(v);
		return mp_seterr("no %svoxels to take percentiles of", positive_only ? "positive " : "");
	}
	for (int k = 0; k < np; k++) {
		double vi = (double)(cnt - 1) * (p[k] / 100.0);
		double lo = floor(vi), g = vi - lo, a, b;
		size_t r0 = (size_t)lo;
		if (single) {
			float *f = v;
			select_f(f, cnt, r0);
			a = f[r0];
			b = a;
			if (r0 + 1 < cnt) {   /* the next order statistic: the least above r0 */
				b = f[r0 + 1];
				for (size_t i = r0 + 2; i < cnt; i++)
					if (f[i] < b)
						b = f[i];
			}
		} else {
			double *d = v;
			select_d(d, cnt, r0);
			a = d[r0];
			b = a;
			if (r0 + 1 < cnt) {
				b = d[r0 + 1];
				for (size_t i = r0 + 2; i < cnt; i++)
					if (d[i] < b)
						b = d[i];
			}
		}
		out[k] = lerp(a, b, g);
	}
	free(v);
	return 0;
}

/* MedSAM's 2D rules (see mp_filter.h) */
int
mp_medsam2d(mp_frame *f, int rgb, mp_medsam2d_info *info)
{
	size_t n = mp_frame_nvox(f);
	uint8_t *o;

	memset(info, 0, sizeof *info);
	if (!f->data)
		return mp_seterr("no data");
	o = malloc(n ? n : 1);
	if (!o)
		return mp_seterr("out of memory for %zu voxels", n);
	if (f->type != MP_UINT8) {
		/* global min-max to 0..255, truncated */
		double mn, mx;
		mp_frame_minmax(f, &mn, &mx);
		info->rescaled = 1;
		info->in_lo = mn;
		info->in_hi = mx;
		for (size_t i = 0; i < n; i++) {
			double v = mx > mn ? (mp_get(f->data, f->type, i) - mn) / (mx - mn) * 255.0 : 0;
			o[i] = !(v > 0) ? 0 : v >= 255 ? 255 : (uint8_t)v;
		}
	} else
		memcpy(o, f->data, n);
	if (!rgb) {
		/* percentiles 0.5/99.5 of pixels > 0, clip, min-max of the clipped image, zeros kept */
		double p[2] = { 0.5, 99.5 }, v[2], mn = INFINITY, mx = -INFINITY;
		size_t pos = 0;
		for (size_t i = 0; i < n; i++)
			pos += o[i] > 0;
		if (pos > 0) {
			if (mp_percentiles(o, MP_UINT8, n, 1, p, 2, v) < 0) {
				free(o);
				return -1;
			}
			for (size_t i = 0; i < n; i++) {
				double c = o[i] < v[0] ? v[0] : o[i] > v[1] ? v[1] : o[i];
				if (c < mn) mn = c;
				if (c > mx) mx = c;
			}
			for (size_t i = 0; i < n; i++) {
				double c = o[i] < v[0] ? v[0] : o[i] > v[1] ? v[1] : o[i];
				double y = mx > mn ? (c - mn) / (mx - mn) * 255.0 : 0;
				o[i] = o[i] == 0 || !(y > 0) ? 0 : y >= 255 ? 255 : (uint8_t)y;
			}
			info->pct = 1;
			info->p_lo = v[0];
			info->p_hi = v[1];
		}
	}
	mp_frame_clear_data(f);
	f->data = o;
	f->type = MP_UINT8;
	mp_frame_touch(f);
	return 0;
}

int
mp_window_held(mp_winmap *m, const mp_frame *f, int medsam, const double *pct, int positive_only, double level,
               double width, double *wlo, double *whi)
{
	double lo, hi;

	if (pct) {
		double v[2];
		if (mp_percentiles(f->data, f->type, mp_frame_nvox(f), positive_only, pct, 2, v) < 0)
			return -1;
		lo = v[0];
		hi = v[1];
		m->keep_zero = positive_only;
	} else {
		lo = level - width / 2;
		hi = level + width / 2;
	}
	if (m->single) {
		lo = (float)lo;
		hi = (float)hi;
	}
	m->clip_lo = m->in_lo = lo;
	m->clip_hi = m->in_hi = hi;
	if (medsam) {
		/* min and max of the clipped volume */
		double mn, mx;
		mp_frame_minmax(f, &mn, &mx);
		if (isnan(mn) || isnan(mx))
			mn = INFINITY, mx = -INFINITY;
		if (mn > mx) /* all NaN */
			mn = mx = lo;
		m->in_lo = mn < lo ? lo : mn > hi ? hi : mn;
		m->in_hi = mx < lo ? lo : mx > hi ? hi : mx;
	}
	*wlo = lo;
	*whi = hi;
	return 0;
}
