/* frame.c - frames: header fields, key/value pairs, geometry helpers */
#include "mp.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void
mp_frame_init(mp_frame *f)
{
	memset(f, 0, sizeof *f);
}

void
mp_frame_clear_data(mp_frame *f)
{
	if (f->mapped) {
		/* a mapping of the input file starts at a page boundary before data */
		uintptr_t a = (uintptr_t)f->data, b = a - a % (uintptr_t)sysconf(_SC_PAGESIZE);
		munmap((void *)b, f->mapped + (a - b));
	} else
		free(f->data);
	f->data = NULL;
	f->mapped = 0;
}

void
mp_frame_free(mp_frame *f)
{
	for (size_t i = 0; i < f->nkv; i++) {
		free(f->keys[i]);
		free(f->vals[i]);
	}
	free(f->keys);
	free(f->vals);
	mp_frame_clear_data(f);
	free(f->rawhdr);
	mp_frame_init(f);
}

void
mp_frame_touch(mp_frame *f)
{
	f->raw_ok = 0;
}

void
mp_frame_copy_grid(mp_frame *dst, const mp_frame *src)
{
	dst->dim = src->dim;
	memcpy(dst->size, src->size, sizeof dst->size);
	dst->space = src->space;
	memcpy(dst->has_dir, src->has_dir, sizeof dst->has_dir);
	memcpy(dst->dir, src->dir, sizeof dst->dir);
	memcpy(dst->origin, src->origin, sizeof dst->origin);
	memcpy(dst->kind, src->kind, sizeof dst->kind);
}

void
mp_frame_copy_header(mp_frame *dst, const mp_frame *src)
{
	mp_frame_init(dst);
	mp_frame_copy_grid(dst, src);
	dst->type = src->type;
	for (size_t i = 0; i < src->nkv; i++)
		mp_set_kv(dst, src->keys[i], src->vals[i]);
}

size_t
mp_frame_nvox(const mp_frame *f)
{
	size_t n = 1;

	for (int i = 0; i < f->dim; i++)
		n *= f->size[i];
	return n;
}

size_t
mp_frame_nbytes(const mp_frame *f)
{
	return mp_frame_nvox(f) * mp_type_size(f->type);
}

size_t
mp_max_bytes(void)
{
	const char *e = getenv("MEDPIPE_MAX_BYTES");

	if (e && *e) {
		char *end;
		unsigned long long v = strtoull(e, &end, 10);
		if (*end == 0 && v > 0)
			return (size_t)v;
	}
	return (size_t)64 << 30;
}

int
mp_frame_check(const mp_frame *f)
{
	size_t n = mp_type_size(f->type), lim = mp_max_bytes();

	if (f->dim < 1 || f->dim > MP_MAXDIM)
		return mp_seterr("dimension %d not supported (1 to %d)", f->dim, MP_MAXDIM);
	if (n == 0)
		return mp_seterr("no voxel type");
	for (int i = 0; i < f->dim; i++) {
		if (f->size[i] == 0)
			return mp_seterr("size of axis %d is 0", i);
		if (mp_mulsize(n, f->size[i], &n) < 0)
			return mp_seterr("sizes overflow the address space");
	}
	if (n > lim)
		return mp_seterr("data of %zu bytes exceeds the limit of %zu (MEDPIPE_MAX_BYTES)", n, lim);
	return 0;
}

int
mp_frame_alloc(mp_frame *f)
{
	size_t n;

	if (mp_frame_check(f) < 0)
		return -1;
	n = mp_frame_nbytes(f);
	free(f->data);
	f->data = calloc(n, 1);
	if (!f->data)
		return mp_seterr("out of memory for %zu bytes", n);
	return 0;
}

const char *
mp_get_kv(const mp_frame *f, const char *key)
{
	for (size_t i = 0; i < f->nkv; i++)
		if (strcmp(f->keys[i], key) == 0)
			return f->vals[i];
	return NULL;
}

void
mp_set_kv(mp_frame *f, const char *key, const char *val)
{
	for (size_t i = 0; i < f->nkv; i++)
		if (strcmp(f->keys[i], key) == 0) {
			if (strcmp(f->vals[i], val) != 0) {
				free(f->vals[i]);
				f->vals[i] = mp_xstrdup(val);
				f->raw_ok = 0;
			}
			return;
		}
	f->keys = mp_xrealloc(f->keys, (f->nkv + 1) * sizeof *f->keys);
	f->vals = mp_xrealloc(f->vals, (f->nkv + 1) * sizeof *f->vals);
	f->keys[f->nkv] = mp_xstrdup(key);
	f->vals[f->nkv] = mp_xstrdup(val);
	f->nkv++;
	f->raw_ok = 0;
}

void
mp_set_kvf(mp_frame *f, const char *key, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	mp_set_kv(f, key, buf);
}

void
mp_del_kv(mp_frame *f, const char *key)
{
	for (size_t i = 0; i < f->nkv; i++)
		if (strcmp(f->keys[i], key) == 0) {
			free(f->keys[i]);
			free(f->vals[i]);
			memmove(f->keys + i, f->keys + i + 1, (f->nkv - i - 1) * sizeof *f->keys);
			memmove(f->vals + i, f->vals + i + 1, (f->nkv - i - 1) * sizeof *f->vals);
			f->nkv--;
			f->raw_ok = 0;
			return;
		}
}

double
mp_spacing(const mp_frame *f, int axis)
{
	const double *d = f->dir[axis];

	if (axis < 0 || axis >= f->dim || !f->space || !f->has_dir[axis])
		return 1.0;
	return sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
}

void
mp_orient_code(const mp_frame *f, char code[4])
{
	static const char pos[3] = { 'L', 'P', 'S' }, neg[3] = { 'R', 'A', 'I' };
	int n = 0;

	memset(code, 0, 4);
	for (int a = 0; a < f->dim && n < 3; a++) {
		if (!f->space || !f->has_dir[a]) {
			if (strcmp(f->kind[a], "domain") == 0 || strcmp(f->kind[a], "space") == 0 || f->kind[a][0] == 0)
				code[n++] = '?';
			continue;
		}
		int best = 0;
		for (int c = 1; c < 3; c++)
			if (fabs(f->dir[a][c]) > fabs(f->dir[a][best]))
				best = c;
		code[n++] = f->dir[a][best] >= 0 ? pos[best] : neg[best];
	}
}

/* the spatial axes of a scalar frame: all axes must be spatial */
int
mp_frame_xyz(const mp_frame *f, size_t *nx, size_t *ny, size_t *nz)
{
	if (f->dim < 2 || f->dim > 3)
		return -1;
	for (int a = 0; a < f->dim; a++)
		if (f->space && !f->has_dir[a])
			return -1;
	*nx = f->size[0];
	*ny = f->size[1];
	*nz = f->dim == 3 ? f->size[2] : 1;
	return 0;
}

/* the direction of axis a, or for a missing third axis the unit normal */
static void
axisdir(const mp_frame *f, int a, double d[3])
{
	if (a < f->dim && f->space && f->has_dir[a]) {
		memcpy(d, f->dir[a], 3 * sizeof *d);
		return;
	}
	if (!f->space) {
		d[0] = d[1] = d[2] = 0;
		d[a] = 1;
		return;
	}
	if (a == 2 && f->dim == 2) {
		const double *x = f->dir[0], *y = f->dir[1];
		double c[3];
		mp_vec3_cross(x, y, c);
		double n = mp_vec3_norm(c);
		if (n > 0) {
			for (int i = 0; i < 3; i++)
				d[i] = c[i] / n;
			return;
		}
	}
	d[0] = d[1] = d[2] = 0;
	d[a] = 1;
}

void
mp_vox2world(const mp_frame *f, const double ijk[3], double xyz[3])
{
	double d[3][3];

	for (int a = 0; a < 3; a++)
		axisdir(f, a, d[a]);
	for (int c = 0; c < 3; c++)
		xyz[c] = (f->space ? f->origin[c] : 0) + ijk[0] * d[0][c] + ijk[1] * d[1][c] + ijk[2] * d[2][c];
}

int
mp_world2vox(const mp_frame *f, const double xyz[3], double ijk[3])
{
	double m[3][3], r[3], det;

	/* columns of m are the axis directions */
	for (int a = 0; a < 3; a++) {
		double d[3];
		axisdir(f, a, d);
		for (int c = 0; c < 3; c++)
			m[c][a] = d[c];
	}
	for (int c = 0; c < 3; c++)
		r[c] = xyz[c] - (f->space ? f->origin[c] : 0);
	det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
	      m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
	      m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
	if (fabs(det) < 1e-300)
		return mp_seterr("space directions are singular");
	/* Cramer's rule */
	for (int a = 0; a < 3; a++) {
		double t[3][3];
		memcpy(t, m, sizeof t);
		for (int c = 0; c < 3; c++)
			t[c][a] = r[c];
		ijk[a] = (t[0][0] * (t[1][1] * t[2][2] - t[1][2] * t[2][1]) -
			  t[0][1] * (t[1][0] * t[2][2] - t[1][2] * t[2][0]) +
			  t[0][2] * (t[1][0] * t[2][1] - t[1][1] * t[2][0])) / det;
	}
	return 0;
}

void
mp_frame_minmax(const mp_frame *f, double *mn, double *mx)
{
	size_t n = mp_frame_nvox(f);
	double lo = INFINITY, hi = -INFINITY;

	if (!f->data || n == 0) {
		*mn = *mx = NAN;
		return;
	}
	switch (f->type) {
	/* blocks of 64 with a branch-free body: the compiler vectorises it at -O2 */
#define MM(T) { const T *p = f->data; T a = p[0], b = p[0]; size_t i = 0; \
		for (; i + 64 <= n; i += 64) { T ca = a, cb = b; \
			for (size_t j = 0; j < 64; j++) { T v = p[i + j]; ca = v < ca ? v : ca; cb = v > cb ? v : cb; } \
			a = ca; b = cb; } \
		for (; i < n; i++) { if (p[i] < a) a = p[i]; if (p[i] > b) b = p[i]; } \
		lo = (double)a; hi = (double)b; break; }
	case MP_INT8: MM(int8_t)
	case MP_UINT8: MM(uint8_t)
	case MP_INT16: MM(int16_t)
	case MP_UINT16: MM(uint16_t)
	case MP_INT32: MM(int32_t)
	case MP_UINT32: MM(uint32_t)
	case MP_INT64: MM(int64_t)
	case MP_UINT64: MM(uint64_t)
#undef MM
	default:
		for (size_t i = 0; i < n; i++) {
			double v = mp_get(f->data, f->type, i);
			if (v < lo) lo = v;
			if (v > hi) hi = v;
		}
	}
	*mn = lo;
	*mx = hi;
}

void
mp_fmt_double(char *buf, size_t n, double d)
{
	if (d == 0) {
		snprintf(buf, n, "0");
		return;
	}
	for (int p = 6; p <= 17; p++) {
		snprintf(buf, n, "%.*g", p, d);
		if (strtod(buf, NULL) == d)
			return;
	}
}

size_t
mp_fmt_ranges(char *buf, size_t cap, const size_t *list, size_t n)
{
	size_t p = 0;

	if (cap)
		buf[0] = 0;
	for (size_t i = 0; i < n && p < cap; i++) {
		size_t j = i;
		while (j + 1 < n && list[j + 1] == list[j] + 1)
			j++;
		if (j > i)
			p += (size_t)snprintf(buf + p, cap - p, "%s%zu-%zu", i ? "," : "", list[i], list[j]);
		else
			p += (size_t)snprintf(buf + p, cap - p, "%s%zu", i ? "," : "", list[i]);
		i = j;
	}
	return p < cap ? p : cap ? cap - 1 : 0;
}

char *
mp_strtrim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = 0;
	return s;
}

void
mp_vec3_cross(const double a[3], const double b[3], double c[3])
{
	c[0] = a[1] * b[2] - a[2] * b[1];
	c[1] = a[2] * b[0] - a[0] * b[2];
	c[2] = a[0] * b[1] - a[1] * b[0];
}

double
mp_vec3_dot(const double a[3], const double b[3])
{
	return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

double
mp_vec3_norm(const double a[3])
{
	return sqrt(mp_vec3_dot(a, a));
}

int
mp_vec3_unit(double v[3])
{
	double n = mp_vec3_norm(v);

	if (!(n > 0) || !isfinite(n))
		return -1;
	for (int c = 0; c < 3; c++)
		v[c] /= n;
	return 0;
}
