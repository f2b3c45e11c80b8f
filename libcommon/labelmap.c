/* labelmap.c - label maps (merge, remove, renumber, keep) and semantic to
 * instance labels */
#include "mp_label.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void
mp_lmap_init(mp_lmap *m)
{
	memset(m, 0, sizeof *m);
}

void
mp_lmap_free(mp_lmap *m)
{
	free(m->from);
	free(m->to);
	free(m->keep);
	memset(m, 0, sizeof *m);
}

static int
parse_i64(const char *s, const char *e, int64_t *v)
{
	char buf[32], *end;
	size_t n = (size_t)(e - s);
	long long x;

	while (n && isspace((unsigned char)*s))
		s++, n--;
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	if (n == 0 || n >= sizeof buf)
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	errno = 0;
	x = strtoll(buf, &end, 10);
	if (errno || *end)
		return -1;
	*v = x;
	return 0;
}

int
mp_parse_int_list(const char *s, int64_t **v, size_t *n)
{
	size_t cap = 16, k = 0;
	int64_t *a = mp_xmalloc(cap * sizeof *a);
	const char *p = s;

	for (;;) {
		const char *e = strchr(p, ','), *dash;
		int64_t lo, hi;

		if (!e)
			e = p + strlen(p);
		/* a range "A-B" (A >= 0): a dash after the first character */
		dash = NULL;
		for (const char *q = p + 1; q < e; q++)
			if (*q == '-' && isdigit((unsigned char)q[-1])) {
				dash = q;
				break;
			}
		if (dash) {
			if (parse_i64(p, dash, &lo) < 0 || parse_i64(dash + 1, e, &hi) < 0 || hi < lo || hi - lo > 1000000) {
				free(a);
				return mp_seterr("'%s': bad range in a label list", s);
			}
		} else if (parse_i64(p, e, &lo) < 0) {
			free(a);
			return mp_seterr("'%s': not a list of integers (like 1,2,5-7)", s);
		} else {
			hi = lo;
		}
		for (int64_t x = lo; x <= hi; x++) {
			if (k == cap)
				a = mp_xrealloc(a, (cap *= 2) * sizeof *a);
			a[k++] = x;
		}
		if (!*e)
			break;
		p = e + 1;
	}
	*v = a;
	*n = k;
	return 0;
}

int
mp_lmap_add(mp_lmap *m, const char *spec)
{
	const char *c = strrchr(spec, ':');
	char *lhs;
	int64_t to, *v;
	size_t n;

	if (!c || parse_i64(c + 1, c + strlen(c), &to) < 0)
		return mp_seterr("'%s': a map rule is FROM:TO, FROM a list like 1,2,5-7", spec);
	lhs = mp_xmalloc((size_t)(c - spec) + 1);
	memcpy(lhs, spec, (size_t)(c - spec));
	lhs[c - spec] = 0;
	if (mp_parse_int_list(lhs, &v, &n) < 0) {
		free(lhs);
		return mp_seterr("'%s': a map rule is FROM:TO, FROM a list like 1,2,5-7", spec);
	}
	free(lhs);
	for (size_t i = 0; i < n; i++) {
		if (m->n == m->cap) {
			m->cap = m->cap ? 2 * m->cap : 16;
			m->from = mp_xrealloc(m->from, m->cap * sizeof *m->from);
			m->to = mp_xrealloc(m->to, m->cap * sizeof *m->to);
		}
		m->from[m->n] = v[i];
		m->to[m->n++] = to;
	}
	free(v);
	return 0;
}

int
mp_lmap_file(mp_lmap *m, const char *path)
{
	FILE *fp = fopen(path, "r");
	char line[4096];
	int ln = 0;

	if (!fp)
		return mp_seterr("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof line, fp)) {
		char *h = strchr(line, '#'), *p = line, rule[4200];
		ln++;
		if (h)
			*h = 0;
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			continue;
		p[strcspn(p, "\r\n")] = 0;
		if (!strchr(p, ':')) {
			/* "A B" */
			char *sp = p + strcspn(p, " \t");
			char *b = sp + strspn(sp, " \t");
			if (!*sp || !*b) {
				fclose(fp);
				return mp_seterr("%s: line %d: want FROM:TO or FROM TO", path, ln);
			}
			*sp = 0;
			snprintf(rule, sizeof rule, "%s:%s", p, b);
		} else {
			snprintf(rule, sizeof rule, "%s", p);
		}
		if (mp_lmap_add(m, rule) < 0) {
			fclose(fp);
			return mp_preerr("%s: line %d", path, ln);
		}
	}
	fclose(fp);
	return 0;
}

int
mp_lmap_keep(mp_lmap *m, const char *list)
{
	int64_t *v;
	size_t n;

	if (mp_parse_int_list(list, &v, &n) < 0)
		return -1;
	m->keep = mp_xrealloc(m->keep, (m->nkeep + n) * sizeof *m->keep);
	memcpy(m->keep + m->nkeep, v, n * sizeof *v);
	m->nkeep += n;
	m->keep_only = 1;
	free(v);
	return 0;
}

/* ---------------------------------------------------------------- lookups */

static int
cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int
in_sorted(const int64_t *v, size_t n, int64_t x)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (v[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo] == x;
}

typedef struct {
	int64_t from, to;
	size_t order;
} rule;

static int
rule_cmp(const void *a, const void *b)
{
	const rule *x = a, *y = b;

	if (x->from != y->from)
		return x->from < y->from ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

typedef struct {
	rule *r;
	size_t n;
	int64_t *keep;
	size_t nkeep;
	int keep_only;
} lookup;

static void
lookup_make(const mp_lmap *m, lookup *L)
{
	size_t k = 0;

	L->r = mp_xmalloc((m->n + 1) * sizeof *L->r);
	for (size_t i = 0; i < m->n; i++)
		L->r[i].from = m->from[i], L->r[i].to = m->to[i], L->r[i].order = i;
	qsort(L->r, m->n, sizeof *L->r, rule_cmp);
	/* the last rule for a value wins */
	for (size_t i = 0; i < m->n; i++) {
		if (k && L->r[k - 1].from == L->r[i].from)
			k--;
		L->r[k++] = L->r[i];
	}
	L->n = k;
	L->nkeep = m->nkeep;
	L->keep = mp_xmalloc((m->nkeep + 1) * sizeof *L->keep);
	if (m->nkeep)
		memcpy(L->keep, m->keep, m->nkeep * sizeof *L->keep);
	qsort(L->keep, L->nkeep, sizeof *L->keep, cmp64);
	L->keep_only = m->keep_only;
}

static int64_t
lookup_val(const lookup *L, int64_t x)
{
	size_t lo = 0, hi = L->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (L->r[mid].from < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < L->n && L->r[lo].from == x)
		x = L->r[lo].to;
	if (L->keep_only && x != 0 && !in_sorted(L->keep, L->nkeep, x))
		x = 0;
	return x;
}

static void
seti(void *buf, mp_type t, size_t i, int64_t v)
{
	switch (t) {
	case MP_INT8: ((int8_t *)buf)[i] = (int8_t)v; break;
	case MP_UINT8: ((uint8_t *)buf)[i] = (uint8_t)v; break;
	case MP_INT16: ((int16_t *)buf)[i] = (int16_t)v; break;
	case MP_UINT16: ((uint16_t *)buf)[i] = (uint16_t)v; break;
	case MP_INT32: ((int32_t *)buf)[i] = (int32_t)v; break;
	case MP_UINT32: ((uint32_t *)buf)[i] = (uint32_t)v; break;
	case MP_INT64: ((int64_t *)buf)[i] = v; break;
	default: ((uint64_t *)buf)[i] = (uint64_t)v; break;
	}
}

static int
fits(mp_type t, int64_t v)
{
	if (t == MP_UINT64)
		return v >= 0;
	if (t == MP_INT64)
		return 1;
	return (double)v >= mp_type_min(t) && (double)v <= mp_type_max(t);
}

int
mp_lmap_apply(const mp_lmap *m, void *buf, mp_type t, size_t n)
{
	lookup L;
	int r = 0;

	if (!mp_type_is_int(t))
		return mp_seterr("label map: %s is not an integer type", mp_type_name(t));
	lookup_make(m, &L);
	if (mp_type_size(t) <= 2) {
		/* a table over the whole type */
		size_t nt = mp_type_size(t) == 1 ? 256 : 65536;
		int64_t lo = (int64_t)mp_type_min(t), *tab = mp_xmalloc(nt * sizeof *tab);
		for (size_t i = 0; i < nt; i++)
			tab[i] = lookup_val(&L, lo + (int64_t)i);
		for (size_t i = 0; i < n; i++) {
			int64_t v = tab[mp_geti(buf, t, i) - lo];
			if (!fits(t, v)) {
				r = mp_seterr("label %lld maps to %lld, which does not fit %s (--type)",
				              (long long)mp_geti(buf, t, i), (long long)v, mp_type_name(t));
				break;
			}
			seti(buf, t, i, v);
		}
		free(tab);
	} else {
		int64_t last = 0, lastv = lookup_val(&L, 0);
		for (size_t i = 0; i < n; i++) {
			int64_t x = mp_geti(buf, t, i);
			if (x != last)
				last = x, lastv = lookup_val(&L, x);
			if (!fits(t, lastv)) {
				r = mp_seterr("label %lld maps to %lld, which does not fit %s (--type)",
				              (long long)x, (long long)lastv, mp_type_name(t));
				break;
			}
			seti(buf, t, i, lastv);
		}
	}
	free(L.r);
	free(L.keep);
	return r;
}

int64_t
mp_instances(void *vol, mp_type t, size_t nx, size_t ny, size_t nz, int conn,
             const int64_t *sel, size_t nsel, int64_t start)
{
	size_t n = nx * ny * nz;
	int64_t *s = mp_xmalloc((nsel + 1) * sizeof *s), k;
	uint8_t *mask = mp_xmalloc(n ? n : 1);
	uint32_t *ids = mp_xmalloc((n ? n : 1) * sizeof *ids);

	if (!mp_type_is_int(t)) {
		free(s), free(mask), free(ids);
		return mp_seterr("instances: %s is not an integer type", mp_type_name(t));
	}
	if (nsel)
		memcpy(s, sel, nsel * sizeof *s);
	qsort(s, nsel, sizeof *s, cmp64);
	{
		int64_t last = 0;
		int lastin = in_sorted(s, nsel, 0);
		for (size_t i = 0; i < n; i++) {
			int64_t x = mp_geti(vol, t, i);
			if (x != last)
				last = x, lastin = in_sorted(s, nsel, x);
			mask[i] = (uint8_t)(x != 0 && lastin);
		}
	}
	k = mp_ccl32(mask, 1, nx, ny, nz, conn, 1, ids);
	if (k > 0 && (!fits(t, start) || !fits(t, start + k - 1))) {
		mp_seterr("instances: ids %lld..%lld do not fit %s (--type)", (long long)start,
		          (long long)(start + k - 1), mp_type_name(t));
		k = -1;
	}
	if (k > 0)
		for (size_t i = 0; i < n; i++)
			if (ids[i])
				seti(vol, t, i, start + (int64_t)ids[i] - 1);
	free(s), free(mask), free(ids);
	return k;
}

int64_t
mp_lmap_renumber(void *buf, mp_type t, size_t n)
{
	int64_t *v, k = 0;
	size_t nv = 0;
	mp_lmap m;

	if (!mp_type_is_int(t))
		return mp_seterr("renumber: %s is not an integer type", mp_type_name(t));
	v = mp_xmalloc((n ? n : 1) * sizeof *v);
	{
		int64_t last = 0;
		for (size_t i = 0; i < n; i++) {
			int64_t x = mp_geti(buf, t, i);
			if (x != 0 && (nv == 0 || x != last))
				v[nv++] = x;
			last = x;
		}
	}
	qsort(v, nv, sizeof *v, cmp64);
	mp_lmap_init(&m);
	for (size_t i = 0; i < nv; i++) {
		if (i && v[i] == v[i - 1])
			continue;
		if (m.n == m.cap) {
			m.cap = m.cap ? 2 * m.cap : 16;
			m.from = mp_xrealloc(m.from, m.cap * sizeof *m.from);
			m.to = mp_xrealloc(m.to, m.cap * sizeof *m.to);
		}
		m.from[m.n] = v[i];
		m.to[m.n++] = ++k;
	}
	free(v);
	if (mp_lmap_apply(&m, buf, t, n) < 0)
		k = -1;
	mp_lmap_free(&m);
	return k;
}
