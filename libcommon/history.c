/* history.c - the geometry history of a frame (medpipe.grid0.*, medpipe.history):
 * what crops, slice selections, resizes, pads and resamplings did, so that a
 * prediction can be put back on the original grid. Format: see mp_filter.h
 * and medpipe-vol(5). */
#include "mp_filter.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
frame_sizes3(const mp_frame *f, size_t s[3])
{
	s[0] = f->size[0];
	s[1] = f->dim > 1 ? f->size[1] : 1;
	s[2] = f->dim > 2 ? f->size[2] : 1;
}

void
mp_hist_grid0(mp_frame *f)
{
	size_t s[3];
	double o[3], d[3][3], z[3] = { 0, 0, 0 };
	char a[3][3][40], b[3][40];

	if (mp_get_kv(f, MP_K_GRID0_SIZES))
		return;
	frame_sizes3(f, s);
	mp_vox2world(f, z, o);
	for (int ax = 0; ax < 3; ax++) {
		double e[3] = { 0, 0, 0 }, w[3];
		e[ax] = 1;
		mp_vox2world(f, e, w);
		for (int c = 0; c < 3; c++) {
			d[ax][c] = w[c] - o[c];
			/* exact when the frame has this direction */
			if (f->space && ax < f->dim && f->has_dir[ax])
				d[ax][c] = f->dir[ax][c];
			mp_fmt_double(a[ax][c], sizeof a[ax][c], d[ax][c]);
		}
		mp_fmt_double(b[ax], sizeof b[ax], f->space ? f->origin[ax] : 0);
	}
	mp_set_kvf(f, MP_K_GRID0_SIZES, "%zu %zu %zu", s[0], s[1], s[2]);
	mp_set_kvf(f, MP_K_GRID0_DIRECTIONS, "(%s,%s,%s) (%s,%s,%s) (%s,%s,%s)",
	           a[0][0], a[0][1], a[0][2], a[1][0], a[1][1], a[1][2], a[2][0], a[2][1], a[2][2]);
	mp_set_kvf(f, MP_K_GRID0_ORIGIN, "(%s,%s,%s)", b[0], b[1], b[2]);
	mp_frame_touch(f);
}

void
mp_hist_clear(mp_frame *f)
{
	mp_del_kv(f, MP_K_HISTORY);
	mp_del_kv(f, MP_K_GRID0_SIZES);
	mp_del_kv(f, MP_K_GRID0_DIRECTIONS);
	mp_del_kv(f, MP_K_GRID0_ORIGIN);
}

void
mp_hist_append(mp_frame *f, const char *op)
{
	const char *h;

	mp_hist_grid0(f);
	h = mp_get_kv(f, MP_K_HISTORY);
	if (h && *h) {
		char *t = mp_xmalloc(strlen(h) + strlen(op) + 3);
		sprintf(t, "%s; %s", h, op);
		mp_set_kv(f, MP_K_HISTORY, t);
		free(t);
	} else {
		mp_set_kv(f, MP_K_HISTORY, op);
	}
	mp_frame_touch(f);
}

void
mp_hist_crop(mp_frame *f, const size_t p[3], const size_t c[3], const size_t o[3])
{
	char buf[200];

	snprintf(buf, sizeof buf, "crop %zux%zux%zu>%zux%zux%zu at %zu,%zu,%zu",
	         p[0], p[1], p[2], c[0], c[1], c[2], o[0], o[1], o[2]);
	mp_hist_append(f, buf);
}

void
mp_hist_pad(mp_frame *f, const size_t p[3], const size_t c[3], const size_t o[3])
{
	char buf[200];

	snprintf(buf, sizeof buf, "pad %zux%zux%zu>%zux%zux%zu at %zu,%zu,%zu",
	         p[0], p[1], p[2], c[0], c[1], c[2], o[0], o[1], o[2]);
	mp_hist_append(f, buf);
}

void
mp_hist_resize(mp_frame *f, size_t pw, size_t ph, size_t cw, size_t chh, const char *method)
{
	char buf[200];

	snprintf(buf, sizeof buf, "resize %zux%zu>%zux%zu %s", pw, ph, cw, chh, method);
	mp_hist_append(f, buf);
}

void
mp_hist_resample(mp_frame *f, const size_t p[3], const size_t c[3], const double step[3])
{
	char buf[300], s[3][40];

	for (int a = 0; a < 3; a++)
		mp_fmt_double(s[a], sizeof s[a], step[a]);
	snprintf(buf, sizeof buf, "resample %zux%zux%zu>%zux%zux%zu step %s,%s,%s",
	         p[0], p[1], p[2], c[0], c[1], c[2], s[0], s[1], s[2]);
	mp_hist_append(f, buf);
}

void
mp_hist_slices(mp_frame *f, size_t pz, const size_t *list, size_t cz)
{
	size_t cap = 64 + cz * 44, n;
	char *buf = mp_xmalloc(cap);

	n = (size_t)snprintf(buf, cap, "slices %zu>%zu ", pz, cz);
	mp_fmt_ranges(buf + n, cap - n, list, cz);
	mp_hist_append(f, buf);
	free(buf);
}

/* ------------------------------------------------------------------ parsing */
static int
parse_vec3(const char **sp, double v[3])
{
	const char *s = *sp;
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	if (*s++ != '(')
		return -1;
	for (int i = 0; i < 3; i++) {
		v[i] = strtod(s, &end);
		if (end == s)
			return -1;
		s = end;
		while (isspace((unsigned char)*s))
			s++;
		if (*s++ != (i < 2 ? ',' : ')'))
			return -1;
	}
	*sp = s;
	return 0;
}

/* "AxBxC" (n = 3) or "AxB" (n = 2); returns the end */
static const char *
parse_sizes(const char *s, size_t *v, int n)
{
	char *end;

	for (int i = 0; i < n; i++) {
		unsigned long long x = strtoull(s, &end, 10);
		if (end == s || x == 0)
			return NULL;
		v[i] = (size_t)x;
		s = end;
		if (i + 1 < n) {
			if (*s != 'x')
				return NULL;
			s++;
		}
	}
	return s;
}

static int
parse_op(const char *s, mp_histop *op)
{
	char *end;
	const char *p;

	memset(op, 0, sizeof *op);
	while (isspace((unsigned char)*s))
		s++;
	if (strncmp(s, "crop ", 5) == 0 || strncmp(s, "pad ", 4) == 0) {
		op->kind = *s == 'c' ? MP_OP_CROP : MP_OP_PAD;
		s += *s == 'c' ? 5 : 4;
		if (!(p = parse_sizes(s, op->psz, 3)) || *p != '>' || !(p = parse_sizes(p + 1, op->csz, 3)))
			return -1;
		if (strncmp(p, " at ", 4) != 0)
			return -1;
		p += 4;
		for (int a = 0; a < 3; a++) {
			op->off[a] = strtol(p, &end, 10);
			if (end == p || op->off[a] < 0)
				return -1;
			p = end;
			if (a < 2 && *p++ != ',')
				return -1;
		}
		return 0;
	}
	if (strncmp(s, "resize ", 7) == 0) {
		op->kind = MP_OP_RESIZE;
		if (!(p = parse_sizes(s + 7, op->psz, 2)) || *p != '>' || !(p = parse_sizes(p + 1, op->csz, 2)))
			return -1;
		while (*p == ' ')
			p++;
		snprintf(op->method, sizeof op->method, "%s", p);
		return 0;
	}
	if (strncmp(s, "resample ", 9) == 0) {
		op->kind = MP_OP_RESAMPLE;
		if (!(p = parse_sizes(s + 9, op->psz, 3)) || *p != '>' || !(p = parse_sizes(p + 1, op->csz, 3)))
			return -1;
		if (strncmp(p, " step ", 6) != 0)
			return -1;
		p += 6;
		for (int a = 0; a < 3; a++) {
			op->step[a] = strtod(p, &end);
			if (end == p || !(op->step[a] > 0))
				return -1;
			p = end;
			if (a < 2 && *p++ != ',')
				return -1;
		}
		return 0;
	}
	if (strncmp(s, "slices ", 7) == 0) {
		op->kind = MP_OP_SLICES;
		p = s + 7;
		op->psz[2] = strtoull(p, &end, 10);
		if (end == p || *end != '>')
			return -1;
		p = end + 1;
		op->csz[2] = strtoull(p, &end, 10);
		if (end == p || *end != ' ' || op->csz[2] == 0 || op->csz[2] > op->psz[2])
			return -1;
		p = end + 1;
		op->list = mp_xmalloc(op->csz[2] * sizeof *op->list);
		size_t n = 0;
		while (*p && n < op->csz[2]) {
			unsigned long long a = strtoull(p, &end, 10), b;
			if (end == p)
				return -1;
			p = end;
			b = a;
			if (*p == '-') {
				p++;
				b = strtoull(p, &end, 10);
				if (end == p || b < a)
					return -1;
				p = end;
			}
			for (unsigned long long k = a; k <= b; k++) {
				if (n == op->csz[2] || k >= op->psz[2] || (n && k <= op->list[n - 1]))
					return -1;
				op->list[n++] = (size_t)k;
			}
			if (*p == ',')
				p++;
		}
		if (n != op->csz[2] || *p)
			return -1;
		return 0;
	}
	return -1;
}

void
mp_hist_free(mp_history *h)
{
	for (int i = 0; i < h->nop; i++)
		free(h->op[i].list);
	memset(h, 0, sizeof *h);
}

int
mp_hist_read(const mp_frame *f, mp_history *h)
{
	const char *sz = mp_get_kv(f, MP_K_GRID0_SIZES);
	const char *dr = mp_get_kv(f, MP_K_GRID0_DIRECTIONS);
	const char *og = mp_get_kv(f, MP_K_GRID0_ORIGIN);
	const char *hs = mp_get_kv(f, MP_K_HISTORY);

	memset(h, 0, sizeof *h);
	if (sz) {
		const char *s = sz;
		char *end;
		for (int a = 0; a < 3; a++) {
			unsigned long long v = strtoull(s, &end, 10);
			if (end == s || v == 0)
				return mp_seterr(MP_K_GRID0_SIZES ": bad value '%s'", sz);
			h->size0[a] = (size_t)v;
			s = end;
		}
		if (!dr || !og)
			return mp_seterr(MP_K_GRID0_SIZES " without " MP_K_GRID0_DIRECTIONS "/origin");
		s = dr;
		for (int a = 0; a < 3; a++)
			if (parse_vec3(&s, h->dir0[a]) < 0)
				return mp_seterr(MP_K_GRID0_DIRECTIONS ": bad value '%s'", dr);
		s = og;
		if (parse_vec3(&s, h->origin0) < 0)
			return mp_seterr(MP_K_GRID0_ORIGIN ": bad value '%s'", og);
		h->have_grid0 = 1;
	}
	if (hs && *hs) {
		char *copy = mp_xstrdup(hs), *save = NULL;
		for (char *t = strtok_r(copy, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
			if (h->nop == MP_HIST_MAXOP) {
				free(copy);
				mp_hist_free(h);
				return mp_seterr(MP_K_HISTORY ": more than %d operations", MP_HIST_MAXOP);
			}
			if (parse_op(t, &h->op[h->nop]) < 0) {
				free(h->op[h->nop].list);
				h->op[h->nop].list = NULL;
				mp_seterr(MP_K_HISTORY ": cannot read '%s'", t);
				free(copy);
				mp_hist_free(h);
				return -1;
			}
			h->nop++;
		}
		free(copy);
		if (!h->have_grid0) {
			mp_hist_free(h);
			return mp_seterr(MP_K_HISTORY " without " MP_K_GRID0_SIZES);
		}
	}
	return 0;
}

static long
find_sorted(const size_t *list, size_t n, size_t v)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (list[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && list[lo] == v ? (long)lo : -1;
}

int
mp_hist_maps(const mp_history *h, const size_t final[3], long *map[3])
{
	size_t cur[3];

	if (!h->have_grid0)
		return mp_seterr("no original grid recorded (" MP_K_GRID0_PREFIX "*)");
	for (int a = 0; a < 3; a++) {
		map[a] = mp_xmalloc(h->size0[a] * sizeof *map[a]);
		for (size_t q = 0; q < h->size0[a]; q++)
			map[a][q] = (long)q;
		cur[a] = h->size0[a];
	}
	for (int i = 0; i < h->nop; i++) {
		const mp_histop *op = &h->op[i];
		size_t ps[3], cs[3];
		memcpy(ps, op->psz, sizeof ps);
		memcpy(cs, op->csz, sizeof cs);
		if (op->kind == MP_OP_RESIZE) {
			ps[2] = cs[2] = cur[2];
		} else if (op->kind == MP_OP_SLICES) {
			ps[0] = cs[0] = cur[0];
			ps[1] = cs[1] = cur[1];
		}
		for (int a = 0; a < 3; a++)
			if (ps[a] != cur[a]) {
				for (int b = 0; b < 3; b++)
					free(map[b]), map[b] = NULL;
				return mp_seterr(MP_K_HISTORY ": operation %d expects a %zux%zux%zu grid, the grid is %zux%zux%zu here",
				                 i + 1, ps[0], ps[1], ps[2], cur[0], cur[1], cur[2]);
			}
		for (int a = 0; a < 3; a++) {
			for (size_t q = 0; q < h->size0[a]; q++) {
				long c = map[a][q];
				if (c < 0)
					continue;
				switch (op->kind) {
				case MP_OP_CROP:
					c -= op->off[a];
					break;
				case MP_OP_PAD:
					c += op->off[a];
					break;
				case MP_OP_RESIZE:
					if (a < 2)
						c = (long)(((2 * (uint64_t)c + 1) * cs[a]) / (2 * (uint64_t)ps[a]));
					break;
				case MP_OP_SLICES:
					if (a == 2)
						c = find_sorted(op->list, cs[2], (size_t)c);
					break;
				case MP_OP_RESAMPLE:
					c = (long)floor((double)c / op->step[a] + 0.5);
					if (c >= (long)cs[a])
						c = (long)cs[a] - 1;
					break;
				}
				map[a][q] = c >= 0 && c < (long)cs[a] ? c : -1;
			}
			cur[a] = cs[a];
		}
	}
	for (int a = 0; a < 3; a++)
		if (cur[a] != final[a]) {
			for (int b = 0; b < 3; b++)
				free(map[b]), map[b] = NULL;
			return mp_seterr("the frame is %zux%zux%zu but its history ends at %zux%zux%zu",
			                 final[0], final[1], final[2], cur[0], cur[1], cur[2]);
		}
	return 0;
}
