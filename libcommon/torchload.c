/* torchload.c - PyTorch zip checkpoints (minimal safe unpickler) and
 * .safetensors, see torchload.h */
#include "torchload.h"
#include "mp.h"
#include "mp_fmt.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static const char *dtnames[] = { "float32", "float16", "bfloat16", "float64", "int64", "int32",
	"int16", "int8", "uint8", "bool" };
static const size_t dtsize[] = { 4, 2, 2, 8, 8, 4, 2, 1, 1, 1 };

const char *
mp_tl_dtype_name(mp_tl_dtype d)
{
	return (unsigned)d < sizeof dtnames / sizeof *dtnames ? dtnames[d] : "?";
}

int
mp_tl_is_float(mp_tl_dtype d)
{
	return d == MP_TL_F32 || d == MP_TL_F16 || d == MP_TL_BF16 || d == MP_TL_F64;
}

void
mp_tl_shape_str(const int64_t *shape, int ndim, char *buf, size_t n)
{
	size_t p = 0;

	p += (size_t)snprintf(buf + p, n - p, "(");
	for (int i = 0; i < ndim && p < n; i++)
		p += (size_t)snprintf(buf + p, n - p, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (p < n)
		snprintf(buf + p, n - p, ")");
}

static float
half2f(uint16_t h)
{
	uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, u;
	float f;

	if (e == 0) {
		f = ldexpf((float)m, -24);
		return s ? -f : f;
	}
	if (e == 31)
		u = s | 0x7f800000u | (m << 13);
	else
		u = s | ((e + 112) << 23) | (m << 13);
	memcpy(&f, &u, 4);
	return f;
}

static float
elem2f(const unsigned char *p, mp_tl_dtype dt)
{
	switch (dt) {
	case MP_TL_F32: { float f; memcpy(&f, p, 4); return f; }
	case MP_TL_F16: return half2f((uint16_t)(p[0] | p[1] << 8));
	case MP_TL_BF16: { uint32_t u = (uint32_t)(p[0] | p[1] << 8) << 16; float f; memcpy(&f, &u, 4); return f; }
	case MP_TL_F64: { double d; memcpy(&d, p, 8); return (float)d; }
	default: return 0;
	}
}

static int64_t
elem2i(const unsigned char *p, mp_tl_dtype dt)
{
	switch (dt) {
	case MP_TL_I64: { int64_t v; memcpy(&v, p, 8); return v; }
	case MP_TL_I32: { int32_t v; memcpy(&v, p, 4); return v; }
	case MP_TL_I16: { int16_t v; memcpy(&v, p, 2); return v; }
	case MP_TL_I8: return (int8_t)p[0];
	default: return p[0];
	}
}

/* the t->n elements of a strided view of a storage, in C order: into
 * idata as int64 when it is given, else into t->data as float (the bounds
 * were checked by tensor_fill) */
static void
view_walk(mp_tensor *t, const unsigned char *st, int64_t off, const int64_t *stride, int64_t *idata)
{
	size_t es = dtsize[t->dtype];
	int64_t idx[MP_TL_MAXDIM] = { 0 };

	for (size_t i = 0; i < t->n; i++) {
		int64_t e = off;
		for (int d = 0; d < t->ndim; d++)
			e += idx[d] * stride[d];
		if (idata)
			idata[i] = elem2i(st + (size_t)e * es, t->dtype);
		else
			t->data[i] = elem2f(st + (size_t)e * es, t->dtype);
		for (int d = t->ndim - 1; d >= 0; d--) {
			if (++idx[d] < t->shape[d])
				break;
			idx[d] = 0;
		}
	}
}

/* integer and bool tensors of up to 64 elements (batch norms'
 * num_batches_tracked) keep their values as int64, so that a checkpoint
 * writer can pass them on */
static int
int_fill(mp_tensor *t, const unsigned char *st, int64_t off, const int64_t *stride)
{
	if (t->n > 64)
		return 0;
	t->idata = mp_xmalloc((t->n ? t->n : 1) * sizeof *t->idata);
	view_walk(t, st, off, stride, t->idata);
	return 0;
}

/* copy a strided view of a storage into t (float types only get data);
 * every size, stride and offset comes from the file: each product and sum is
 * checked, and the last element viewed must lie inside the storage */
static int
tensor_fill(mp_tensor *t, const unsigned char *st, size_t st_numel, int64_t off, const int64_t *stride)
{
	size_t n = 1;
	int64_t maxi = off;

	if (off < 0)
		return mp_seterr("tensor %s: negative storage offset", t->name);
	for (int i = 0; i < t->ndim; i++) {
		int64_t span;
		if (t->shape[i] < 0 || stride[i] < 0 || t->shape[i] > ((int64_t)1 << 40) || stride[i] > ((int64_t)1 << 40))
			return mp_seterr("tensor %s: bad size or stride", t->name);
		if (t->shape[i] == 0)
			n = 0;
		else if (__builtin_mul_overflow(t->shape[i] - 1, stride[i], &span) ||
		         __builtin_add_overflow(maxi, span, &maxi))
			return mp_seterr("tensor %s: size and stride overflow", t->name);
		if (mp_mulsize(n, (size_t)t->shape[i], &n))
			return mp_seterr("tensor %s: size overflow", t->name);
	}
	t->n = n;
	if (n > 0 && (uint64_t)maxi >= st_numel)
		return mp_seterr("tensor %s: view outside its storage (%zu elements)", t->name, st_numel);
	if (!mp_tl_is_float(t->dtype))
		return int_fill(t, st, off, stride);
	size_t nb;
	if (mp_mulsize(n, sizeof(float), &nb) || nb > mp_max_bytes())
		return mp_seterr("tensor %s: %zu elements exceed the memory limit (MEDPIPE_MAX_BYTES)", t->name, n);
	t->data = malloc(nb ? nb : 1);
	if (!t->data)
		return mp_seterr("tensor %s: out of memory", t->name);
	/* contiguous float32: one copy */
	int contig = 1;
	int64_t want = 1;
	for (int d = t->ndim - 1; d >= 0; d--) {
		if (t->shape[d] != 1 && stride[d] != want)
			contig = 0;
		want *= t->shape[d];
	}
	if (contig && t->dtype == MP_TL_F32) {
		memcpy(t->data, st + (size_t)off * 4, n * 4);
		return 0;
	}
	view_walk(t, st, off, stride, NULL);
	return 0;
}

static void
dict_add(mp_tdict *d, mp_tensor *t, size_t *cap)
{
	if (d->n == *cap) {
		*cap = *cap ? 2 * *cap : 64;
		d->t = mp_xrealloc(d->t, *cap * sizeof *d->t);
	}
	d->t[d->n++] = *t;
}

void
mp_tl_free(mp_tdict *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->t[i].name);
		free(d->t[i].data);
		free(d->t[i].idata);
	}
	free(d->t);
	memset(d, 0, sizeof *d);
}

mp_tensor *
mp_tl_find(const mp_tdict *d, const char *name)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->t[i].name, name) == 0)
			return &d->t[i];
	return NULL;
}

/* ================================================================ zip */
/* the archive through zipread.c (one zip reader for .npz and checkpoints:
 * bounds, ZIP64, sizes and CRCs checked there); stored entries are used in
 * place in the mapped file */
typedef mp_zip_entry zent;

typedef struct {
	const unsigned char *b;
	size_t len;
	zent *e;
	size_t n;
} zip;

static uint32_t
rd16(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t
rd32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
rd64(const unsigned char *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void
zip_free(zip *z)
{
	mp_zip_entries_free(z->e, z->n);
	z->e = NULL;
	z->n = 0;
}

/* the central directory of the archive in b; on failure nothing is held */
static int
zip_open(zip *z, const unsigned char *b, size_t len)
{
	memset(z, 0, sizeof *z);
	z->b = b;
	z->len = len;
	return mp_zip_list_mem(b, len, &z->e, &z->n);
}

static const zent *
zip_find(const zip *z, const char *name)
{
	for (size_t i = 0; i < z->n; i++)
		if (strcmp(z->e[i].name, name) == 0)
			return &z->e[i];
	return NULL;
}

/* data of an entry (usize bytes); *owned set when it had to be inflated (free it) */
static const unsigned char *
zip_data(const zip *z, const zent *e, unsigned char **owned)
{
	return mp_zip_data_mem(z->b, z->len, e, owned);
}

/* ================================================================ unpickler */
enum { V_MARK, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_BYTES, V_TUPLE, V_LIST, V_DICT,
	V_GLOBAL, V_STORAGE, V_TENSOR };
enum { G_ODICT, G_REBUILD_V2, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE, G_STORAGE };

typedef struct pv pv;
struct pv {
	int k;
	int64_t i;            /* int, bool; global id */
	double f;
	char *s;              /* str/bytes; storage key */
	size_t slen;
	pv **it;              /* tuple/list items; dict: key,value pairs */
	size_t n, cap;
	mp_tl_dtype dt;       /* storage, global storage type */
	int64_t numel;        /* storage */
	pv *st;               /* tensor: storage */
	int64_t off;
	int nd;
	int64_t shape[MP_TL_MAXDIM], stride[MP_TL_MAXDIM];
};

typedef struct {
	const unsigned char *p, *end, *start;
	pv **all;
	size_t nall, capall;
	pv **stk;
	size_t nstk, capstk;
	pv **memo;
	size_t nmemo;
	pv mark;
} upk;

static pv *
nv(upk *u, int k)
{
	pv *v = mp_xcalloc(1, sizeof *v);
	v->k = k;
	if (u->nall == u->capall) {
		u->capall = u->capall ? 2 * u->capall : 256;
		u->all = mp_xrealloc(u->all, u->capall * sizeof *u->all);
	}
	u->all[u->nall++] = v;
	return v;
}

static void
upk_free(upk *u)
{
	for (size_t i = 0; i < u->nall; i++) {
		free(u->all[i]->s);
		free(u->all[i]->it);
		free(u->all[i]);
	}
	free(u->all);
	free(u->stk);
	free(u->memo);
}

static void
push(upk *u, pv *v)
{
	if (u->nstk == u->capstk) {
		u->capstk = u->capstk ? 2 * u->capstk : 64;
		u->stk = mp_xrealloc(u->stk, u->capstk * sizeof *u->stk);
	}
	u->stk[u->nstk++] = v;
}

static void
additem(pv *c, pv *v)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 8;
		c->it = mp_xrealloc(c->it, c->cap * sizeof *c->it);
	}
	c->it[c->n++] = v;
}

static const char *
opname(int op)
{
	switch (op) {
	case 'i': return "INST";
	case 'o': return "OBJ";
	case 0x81: return "NEWOBJ";
	case 0x92: return "NEWOBJ_EX";
	case 'P': return "PERSID";
	case 0x82: case 0x83: case 0x84: return "EXT";
	case 'I': return "INT";
	case 'L': return "LONG";
	case 'F': return "FLOAT";
	case 'S': return "STRING";
	case 'V': return "UNICODE";
	case 'g': return "GET";
	case 'p': return "PUT";
	case 'l': return "LIST";
	case 'd': return "DICT";
	default: return "?";
	}
}

static int
need(upk *u, size_t n)
{
	if ((size_t)(u->end - u->p) < n)
		return mp_seterr("pickle truncated at byte %zu", (size_t)(u->p - u->start));
	return 0;
}

static pv *
pop(upk *u)
{
	if (u->nstk == 0 || u->stk[u->nstk - 1] == &u->mark) {
		mp_seterr("pickle stack underflow at byte %zu", (size_t)(u->p - u->start));
		return NULL;
	}
	return u->stk[--u->nstk];
}

/* index of the topmost mark, or -1 */
static long
findmark(upk *u)
{
	for (size_t i = u->nstk; i-- > 0;)
		if (u->stk[i] == &u->mark)
			return (long)i;
	mp_seterr("pickle: no mark at byte %zu", (size_t)(u->p - u->start));
	return -1;
}

static int
memo_put(upk *u, size_t idx)
{
	if (u->nstk == 0)
		return mp_seterr("pickle: memo of an empty stack");
	if (idx > 100000000)
		return mp_seterr("pickle: memo index %zu too large", idx);
	if (idx >= u->nmemo) {
		size_t nn = idx + 1 > 2 * u->nmemo ? idx + 1 : 2 * u->nmemo;
		u->memo = mp_xrealloc(u->memo, nn * sizeof *u->memo);
		memset(u->memo + u->nmemo, 0, (nn - u->nmemo) * sizeof *u->memo);
		u->nmemo = nn;
	}
	u->memo[idx] = u->stk[u->nstk - 1];
	return 0;
}

static int
memo_get(upk *u, size_t idx)
{
	if (idx >= u->nmemo || !u->memo[idx])
		return mp_seterr("pickle: memo index %zu not set", idx);
	push(u, u->memo[idx]);
	return 0;
}

static int
mkglobal(upk *u, const char *mod, const char *name)
{
	static const struct { const char *n; mp_tl_dtype d; } st[] = {
		{ "FloatStorage", MP_TL_F32 }, { "HalfStorage", MP_TL_F16 }, { "BFloat16Storage", MP_TL_BF16 },
		{ "DoubleStorage", MP_TL_F64 }, { "LongStorage", MP_TL_I64 }, { "IntStorage", MP_TL_I32 },
		{ "ShortStorage", MP_TL_I16 }, { "CharStorage", MP_TL_I8 }, { "ByteStorage", MP_TL_U8 },
		{ "BoolStorage", MP_TL_BOOL } };
	pv *v = nv(u, V_GLOBAL);

	if (strcmp(mod, "collections") == 0 && strcmp(name, "OrderedDict") == 0)
		v->i = G_ODICT;
	else if (strcmp(mod, "torch._utils") == 0 && strcmp(name, "_rebuild_tensor_v2") == 0)
		v->i = G_REBUILD_V2;
	else if (strcmp(mod, "torch._utils") == 0 && strcmp(name, "_rebuild_parameter") == 0)
		v->i = G_REBUILD_PARAM;
	else if (strcmp(mod, "torch._utils") == 0 && strcmp(name, "_rebuild_parameter_with_state") == 0)
		v->i = G_REBUILD_PARAM_STATE;
	else {
		int ok = 0;
		if (strcmp(mod, "torch") == 0)
			for (size_t i = 0; i < sizeof st / sizeof *st; i++)
				if (strcmp(name, st[i].n) == 0) {
					v->i = G_STORAGE;
					v->dt = st[i].d;
					ok = 1;
				}
		if (!ok)
			return mp_seterr("refusing pickle global '%.60s.%.60s' at byte %zu (not a state-dict type; "
			                 "the checkpoint may run code when loaded by Python)",
			                 mod, name, (size_t)(u->p - u->start));
	}
	push(u, v);
	return 0;
}

static int
int_arg(const pv *v, int64_t *out)
{
	if (!v || (v->k != V_INT && v->k != V_BOOL))
		return -1;
	*out = v->i;
	return 0;
}

static int
ints_arg(const pv *v, int64_t *out, int *n)
{
	if (!v || v->k != V_TUPLE || v->n > MP_TL_MAXDIM)
		return -1;
	for (size_t i = 0; i < v->n; i++)
		if (int_arg(v->it[i], &out[i]))
			return -1;
	*n = (int)v->n;
	return 0;
}

static int
reduce(upk *u)
{
	pv *args = pop(u), *fn = args ? pop(u) : NULL;

	if (!fn)
		return -1;
	if (fn->k != V_GLOBAL || args->k != V_TUPLE)
		return mp_seterr("pickle: REDUCE of something not an allowed callable at byte %zu",
		                 (size_t)(u->p - u->start));
	switch (fn->i) {
	case G_ODICT:
		if (args->n != 0)
			return mp_seterr("pickle: OrderedDict with arguments");
		push(u, nv(u, V_DICT));
		return 0;
	case G_REBUILD_V2: {
		pv *t = nv(u, V_TENSOR);
		int ns;
		if (args->n < 4 || args->it[0]->k != V_STORAGE || int_arg(args->it[1], &t->off) ||
		    ints_arg(args->it[2], t->shape, &t->nd) || ints_arg(args->it[3], t->stride, &ns) || ns != t->nd)
			return mp_seterr("pickle: bad arguments to _rebuild_tensor_v2");
		t->st = args->it[0];
		push(u, t);
		return 0;
	}
	case G_REBUILD_PARAM:
	case G_REBUILD_PARAM_STATE:
		if (args->n < 1 || args->it[0]->k != V_TENSOR)
			return mp_seterr("pickle: bad arguments to _rebuild_parameter");
		push(u, args->it[0]);
		return 0;
	default:
		return mp_seterr("pickle: a storage type called as a function");
	}
}

static int
persid(upk *u)
{
	pv *t = pop(u);
	int64_t numel;

	if (!t)
		return -1;
	if (t->k != V_TUPLE || t->n < 5 || t->it[0]->k != V_STR || strcmp(t->it[0]->s, "storage") != 0 ||
	    t->it[1]->k != V_GLOBAL || t->it[1]->i != G_STORAGE || t->it[2]->k != V_STR ||
	    int_arg(t->it[4], &numel) || numel < 0)
		return mp_seterr("pickle: persistent id is not a tensor storage reference");
	pv *s = nv(u, V_STORAGE);
	s->dt = t->it[1]->dt;
	s->s = mp_xstrdup(t->it[2]->s);
	s->numel = numel;
	push(u, s);
	return 0;
}

static pv *
mkstr(upk *u, int k, size_t n)
{
	if (need(u, n))
		return NULL;
	pv *v = nv(u, k);
	v->s = mp_xmalloc(n + 1);
	memcpy(v->s, u->p, n);
	v->s[n] = 0;
	v->slen = n;
	u->p += n;
	push(u, v);
	return v;
}

static pv *
unpickle(upk *u, const unsigned char *b, size_t len)
{
	memset(u, 0, sizeof *u);
	u->p = u->start = b;
	u->end = b + len;
	u->mark.k = V_MARK;
	for (;;) {
		if (need(u, 1))
			return NULL;
		int op = *u->p++;
		pv *v, *w;
		long m;
		size_t n;
		switch (op) {
		case 0x80: /* PROTO */
			if (need(u, 1))
				return NULL;
			if (*u->p > 5) {
				mp_seterr("pickle protocol %d not supported", *u->p);
				return NULL;
			}
			u->p++;
			break;
		case 0x95: /* FRAME */
			if (need(u, 8))
				return NULL;
			u->p += 8;
			break;
		case '.': /* STOP */
			v = pop(u);
			return v;
		case '(':
			push(u, &u->mark);
			break;
		case '}':
			push(u, nv(u, V_DICT));
			break;
		case ']':
			push(u, nv(u, V_LIST));
			break;
		case ')':
			push(u, nv(u, V_TUPLE));
			break;
		case 'N':
			push(u, nv(u, V_NONE));
			break;
		case 0x88: case 0x89:
			v = nv(u, V_BOOL);
			v->i = op == 0x88;
			push(u, v);
			break;
		case 'J':
			if (need(u, 4))
				return NULL;
			v = nv(u, V_INT);
			v->i = (int32_t)rd32(u->p);
			u->p += 4;
			push(u, v);
			break;
		case 'K':
			if (need(u, 1))
				return NULL;
			v = nv(u, V_INT);
			v->i = *u->p++;
			push(u, v);
			break;
		case 'M':
			if (need(u, 2))
				return NULL;
			v = nv(u, V_INT);
			v->i = rd16(u->p);
			u->p += 2;
			push(u, v);
			break;
		case 0x8a: /* LONG1 */
			if (need(u, 1) || (n = *u->p++, need(u, n)))
				return NULL;
			if (n > 8) {
				mp_seterr("pickle: integer of %zu bytes too large", n);
				return NULL;
			}
			v = nv(u, V_INT);
			{
				uint64_t x = 0;
				for (size_t i = 0; i < n; i++)
					x |= (uint64_t)u->p[i] << (8 * i);
				if (n > 0 && n < 8 && (u->p[n - 1] & 0x80))
					x |= ~(uint64_t)0 << (8 * n);
				v->i = (int64_t)x;
			}
			u->p += n;
			push(u, v);
			break;
		case 'G': /* BINFLOAT, big endian */
			if (need(u, 8))
				return NULL;
			{
				uint64_t x = 0;
				for (int i = 0; i < 8; i++)
					x = x << 8 | u->p[i];
				v = nv(u, V_FLOAT);
				memcpy(&v->f, &x, 8);
			}
			u->p += 8;
			push(u, v);
			break;
		case 'X': case 'B': case 'T':
			if (need(u, 4))
				return NULL;
			n = rd32(u->p);
			u->p += 4;
			if (!mkstr(u, op == 'B' ? V_BYTES : V_STR, n))
				return NULL;
			break;
		case 0x8c: case 'C': case 'U':
			if (need(u, 1))
				return NULL;
			n = *u->p++;
			if (!mkstr(u, op == 'C' ? V_BYTES : V_STR, n))
				return NULL;
			break;
		case 0x8d: case 0x8e: /* BINUNICODE8, BINBYTES8 */
			if (need(u, 8))
				return NULL;
			{
				uint64_t x = rd64(u->p);
				u->p += 8;
				if (x > (uint64_t)(u->end - u->p)) {
					mp_seterr("pickle truncated");
					return NULL;
				}
				if (!mkstr(u, op == 0x8e ? V_BYTES : V_STR, (size_t)x))
					return NULL;
			}
			break;
		case 'c': { /* GLOBAL "module\nname\n" */
			const unsigned char *a = u->p, *nl1 = memchr(a, '\n', (size_t)(u->end - a)), *nl2;
			if (!nl1 || !(nl2 = memchr(nl1 + 1, '\n', (size_t)(u->end - nl1 - 1)))) {
				mp_seterr("pickle: bad GLOBAL");
				return NULL;
			}
			char mod[128], nm[128];
			snprintf(mod, sizeof mod, "%.*s", (int)(nl1 - a), (const char *)a);
			snprintf(nm, sizeof nm, "%.*s", (int)(nl2 - nl1 - 1), (const char *)(nl1 + 1));
			u->p = nl2 + 1;
			if (mkglobal(u, mod, nm))
				return NULL;
			break;
		}
		case 0x93: /* STACK_GLOBAL */
			if (!(w = pop(u)) || !(v = pop(u)))
				return NULL;
			if (v->k != V_STR || w->k != V_STR) {
				mp_seterr("pickle: bad STACK_GLOBAL");
				return NULL;
			}
			if (mkglobal(u, v->s, w->s))
				return NULL;
			break;
		case 'q':
			if (need(u, 1) || memo_put(u, *u->p++))
				return NULL;
			break;
		case 'r':
			if (need(u, 4) || memo_put(u, rd32(u->p)))
				return NULL;
			u->p += 4;
			break;
		case 0x94:
			if (memo_put(u, u->nmemo))
				return NULL;
			break;
		case 'h':
			if (need(u, 1) || memo_get(u, *u->p++))
				return NULL;
			break;
		case 'j':
			if (need(u, 4) || memo_get(u, rd32(u->p)))
				return NULL;
			u->p += 4;
			break;
		case '0':
			if (!pop(u))
				return NULL;
			break;
		case '2':
			if (u->nstk == 0) {
				mp_seterr("pickle: DUP of empty stack");
				return NULL;
			}
			push(u, u->stk[u->nstk - 1]);
			break;
		case '1':
			if ((m = findmark(u)) < 0)
				return NULL;
			u->nstk = (size_t)m;
			break;
		case 't': case 'l': case 'e': case 'u': case 'd':
			if ((m = findmark(u)) < 0)
				return NULL;
			if (op == 't' || op == 'l' || op == 'd') {
				v = nv(u, op == 't' ? V_TUPLE : op == 'l' ? V_LIST : V_DICT);
				for (size_t i = (size_t)m + 1; i < u->nstk; i++)
					additem(v, u->stk[i]);
				u->nstk = (size_t)m;
				if (op == 'd' && v->n % 2) {
					mp_seterr("pickle: odd DICT");
					return NULL;
				}
				push(u, v);
			} else {
				if (m == 0 || (w = u->stk[m - 1])->k != (op == 'e' ? V_LIST : V_DICT) ||
				    (op == 'u' && (u->nstk - (size_t)m - 1) % 2)) {
					mp_seterr("pickle: %s on a wrong object", op == 'e' ? "APPENDS" : "SETITEMS");
					return NULL;
				}
				for (size_t i = (size_t)m + 1; i < u->nstk; i++)
					additem(w, u->stk[i]);
				u->nstk = (size_t)m;
			}
			break;
		case 0x85: case 0x86: case 0x87:
			n = (size_t)(op - 0x84);
			if (u->nstk < n) {
				mp_seterr("pickle stack underflow");
				return NULL;
			}
			v = nv(u, V_TUPLE);
			for (size_t i = u->nstk - n; i < u->nstk; i++) {
				if (u->stk[i] == &u->mark) {
					mp_seterr("pickle: mark inside TUPLE%zu", n);
					return NULL;
				}
				additem(v, u->stk[i]);
			}
			u->nstk -= n;
			push(u, v);
			break;
		case 'a': case 's':
			n = op == 'a' ? 1 : 2;
			if (u->nstk < n + 1) {
				mp_seterr("pickle stack underflow");
				return NULL;
			}
			w = u->stk[u->nstk - n - 1];
			if (w->k != (op == 'a' ? V_LIST : V_DICT)) {
				mp_seterr("pickle: %s on a wrong object", op == 'a' ? "APPEND" : "SETITEM");
				return NULL;
			}
			for (size_t i = u->nstk - n; i < u->nstk; i++)
				additem(w, u->stk[i]);
			u->nstk -= n;
			break;
		case 'R':
			if (reduce(u))
				return NULL;
			break;
		case 'b': /* BUILD: only on dicts (OrderedDict._metadata), state ignored */
			if (!(v = pop(u)))
				return NULL;
			if (u->nstk == 0 || u->stk[u->nstk - 1]->k != V_DICT) {
				mp_seterr("pickle: BUILD on an object that is not a dict");
				return NULL;
			}
			break;
		case 'Q':
			if (persid(u))
				return NULL;
			break;
		default:
			mp_seterr("refusing pickle opcode 0x%02x (%s) at byte %zu (not used by a state dict)",
			          op, opname(op), (size_t)(u->p - 1 - u->start));
			return NULL;
		}
	}
}

static int
dict_has_tensor(const pv *d)
{
	for (size_t i = 0; i + 1 < d->n; i += 2)
		if (d->it[i + 1]->k == V_TENSOR)
			return 1;
	return 0;
}

static const pv *
dict_get(const pv *d, const char *key)
{
	for (size_t i = 0; i + 1 < d->n; i += 2)
		if (d->it[i]->k == V_STR && strcmp(d->it[i]->s, key) == 0)
			return d->it[i + 1];
	return NULL;
}

/* the state dict inside a loaded object */
static const pv *
find_sd(const pv *root)
{
	if (!root || root->k != V_DICT)
		return NULL;
	if (dict_has_tensor(root))
		return root;
	static const char *keys[] = { "model", "state_dict", "model_state_dict", "module" };
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
		const pv *v = dict_get(root, keys[i]);
		if (v && v->k == V_DICT && dict_has_tensor(v))
			return v;
	}
	return NULL;
}

/* remove a "module." prefix common to every name */
static void
strip_module(mp_tdict *d)
{
	if (d->n == 0)
		return;
	for (size_t i = 0; i < d->n; i++)
		if (strncmp(d->t[i].name, "module.", 7) != 0)
			return;
	for (size_t i = 0; i < d->n; i++)
		memmove(d->t[i].name, d->t[i].name + 7, strlen(d->t[i].name + 7) + 1);
}

static int
load_zip(const unsigned char *b, size_t len, mp_tdict *d)
{
	zip z;
	upk u;
	unsigned char *pk_owned = NULL;
	int rc = -1;
	size_t cap = 0;

	memset(&u, 0, sizeof u);
	if (zip_open(&z, b, len))
		goto out;
	const zent *pe = NULL;
	for (size_t i = 0; i < z.n; i++) {
		size_t l = strlen(z.e[i].name);
		if (l >= 8 && strcmp(z.e[i].name + l - 8, "data.pkl") == 0 &&
		    (l == 8 || z.e[i].name[l - 9] == '/')) {
			pe = &z.e[i];
			break;
		}
	}
	if (!pe) {
		mp_seterr("zip archive without data.pkl: not a PyTorch checkpoint");
		goto out;
	}
	char prefix[512];
	snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(pe->name) - 8), pe->name);
	const unsigned char *pk = zip_data(&z, pe, &pk_owned);
	if (!pk)
		goto out;
	pv *root = unpickle(&u, pk, pe->usize);
	if (!root)
		goto out;
	const pv *sd = find_sd(root);
	if (!sd) {
		mp_seterr("no state dict in the checkpoint (neither the top level nor 'model' or 'state_dict' holds tensors)");
		goto out;
	}
	/* identity: names and CRCs of every entry */
	uLong crc = crc32(0L, Z_NULL, 0);
	for (size_t i = 0; i < z.n; i++) {
		crc = crc32(crc, (const Bytef *)z.e[i].name, (uInt)strlen(z.e[i].name));
		unsigned char c4[4] = { (unsigned char)z.e[i].crc, (unsigned char)(z.e[i].crc >> 8),
			(unsigned char)(z.e[i].crc >> 16), (unsigned char)(z.e[i].crc >> 24) };
		crc = crc32(crc, c4, 4);
	}
	snprintf(d->id, sizeof d->id, "%08lx", (unsigned long)crc);
	snprintf(d->format, sizeof d->format, "torch-zip");
	for (size_t i = 0; i + 1 < sd->n; i += 2) {
		const pv *k = sd->it[i], *v = sd->it[i + 1];
		if (k->k != V_STR || v->k != V_TENSOR)
			continue;
		mp_tensor t;
		memset(&t, 0, sizeof t);
		t.name = mp_xstrdup(k->s);
		t.ndim = v->nd;
		memcpy(t.shape, v->shape, sizeof t.shape);
		t.dtype = v->st->dt;
		char en[600];
		snprintf(en, sizeof en, "%sdata/%s", prefix, v->st->s);
		const zent *se = zip_find(&z, en);
		if (!se) {
			mp_seterr("tensor %s: storage %s missing from the archive", t.name, en);
			free(t.name);
			goto out;
		}
		size_t need_b;
		if (mp_mulsize((size_t)v->st->numel, dtsize[t.dtype], &need_b) || se->usize < need_b) {
			mp_seterr("tensor %s: storage %s shorter than its %lld elements", t.name, en,
			          (long long)v->st->numel);
			free(t.name);
			goto out;
		}
		unsigned char *own;
		const unsigned char *sdata = zip_data(&z, se, &own);
		if (!sdata) {
			free(t.name);
			goto out;
		}
		int r = tensor_fill(&t, sdata, (size_t)v->st->numel, v->off, v->stride);
		free(own);
		if (r) {
			free(t.name);
			free(t.data);
			free(t.idata);
			goto out;
		}
		dict_add(d, &t, &cap);
	}
	strip_module(d);
	rc = 0;
out:
	free(pk_owned);
	upk_free(&u);
	zip_free(&z);
	return rc;
}

/* ================================================================ safetensors */
typedef struct {
	const char *p, *end;
} js;

static void
jws(js *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
		j->p++;
}

static int
jlit(js *j, char c)
{
	jws(j);
	if (j->p < j->end && *j->p == c) {
		j->p++;
		return 1;
	}
	return 0;
}

/* string into buf (escapes: \" \\ \/ and \uXXXX of ASCII only) */
static int
jstr(js *j, char *buf, size_t n)
{
	size_t o = 0;

	if (!jlit(j, '"'))
		return mp_seterr("safetensors header: string expected");
	while (j->p < j->end && *j->p != '"') {
		char c = *j->p++;
		if (c == '\\') {
			if (j->p >= j->end)
				break;
			c = *j->p++;
			if (c == 'u') {
				if (j->end - j->p < 4)
					break;
				char h[5] = { j->p[0], j->p[1], j->p[2], j->p[3], 0 };
				c = (char)strtol(h, NULL, 16);
				j->p += 4;
			} else if (c == 'n')
				c = '\n';
			else if (c == 't')
				c = '\t';
		}
		if (o + 1 < n)
			buf[o++] = c;
	}
	if (j->p >= j->end)
		return mp_seterr("safetensors header: unterminated string");
	j->p++;
	buf[o] = 0;
	return 0;
}

static int
jskip_d(js *j, int depth)
{
	char tmp[8];

	if (depth > 64)
		return mp_seterr("safetensors header: nested too deeply");
	jws(j);
	if (j->p >= j->end)
		return mp_seterr("safetensors header: truncated");
	if (*j->p == '"')
		return jstr(j, tmp, sizeof tmp);
	if (*j->p == '{' || *j->p == '[') {
		char close = *j->p == '{' ? '}' : ']';
		j->p++;
		if (jlit(j, close))
			return 0;
		do {
			if (close == '}') {
				if (jstr(j, tmp, sizeof tmp) || !jlit(j, ':'))
					return mp_seterr("safetensors header: bad object");
			}
			if (jskip_d(j, depth + 1))
				return -1;
		} while (jlit(j, ','));
		if (!jlit(j, close))
			return mp_seterr("safetensors header: bad nesting");
		return 0;
	}
	while (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ']')
		j->p++;
	return 0;
}

static int
jskip(js *j)
{
	return jskip_d(j, 0);
}

static int
jint(js *j, int64_t *v)
{
	char *e, buf[32];
	size_t n = 0;

	jws(j);
	while (n + 1 < sizeof buf && j->p + n < j->end && (j->p[n] == '-' || (j->p[n] >= '0' && j->p[n] <= '9'))) {
		buf[n] = j->p[n];
		n++;
	}
	buf[n] = 0;
	errno = 0;
	long long x = strtoll(buf, &e, 10);
	if (e == buf || errno || *e)
		return mp_seterr("safetensors header: integer expected");
	j->p += n;
	*v = x;
	return 0;
}

static int
load_safetensors(const unsigned char *b, size_t len, mp_tdict *d)
{
	uint64_t hl;
	size_t cap = 0;
	static const struct { const char *n; mp_tl_dtype d; } dts[] = {
		{ "F32", MP_TL_F32 }, { "F16", MP_TL_F16 }, { "BF16", MP_TL_BF16 }, { "F64", MP_TL_F64 },
		{ "I64", MP_TL_I64 }, { "I32", MP_TL_I32 }, { "I16", MP_TL_I16 }, { "I8", MP_TL_I8 },
		{ "U8", MP_TL_U8 }, { "BOOL", MP_TL_BOOL } };

	hl = rd64(b);
	if (hl > len - 8)
		return mp_seterr("safetensors: header length %llu beyond the file", (unsigned long long)hl);
	const unsigned char *data = b + 8 + hl;
	size_t dlen = len - 8 - (size_t)hl;
	js j = { (const char *)b + 8, (const char *)b + 8 + hl };
	uLong crc = crc32(0L, Z_NULL, 0);
	crc = crc32(crc, b + 8, (uInt)hl);
	snprintf(d->id, sizeof d->id, "%08lx", (unsigned long)crc);
	snprintf(d->format, sizeof d->format, "safetensors");
	if (!jlit(&j, '{'))
		return mp_seterr("safetensors: header is not a JSON object");
	if (jlit(&j, '}'))
		return 0;
	do {
		char name[512];
		if (jstr(&j, name, sizeof name) || !jlit(&j, ':'))
			return -1;
		if (strcmp(name, "__metadata__") == 0) {
			if (jskip(&j))
				return -1;
			continue;
		}
		mp_tensor t;
		memset(&t, 0, sizeof t);
		int64_t off[2] = { -1, -1 };
		int have_dt = 0, have_shape = 0;
		if (!jlit(&j, '{'))
			return mp_seterr("safetensors: tensor %s: object expected", name);
		do {
			char k[64];
			if (jstr(&j, k, sizeof k) || !jlit(&j, ':'))
				return -1;
			if (strcmp(k, "dtype") == 0) {
				char dt[16];
				if (jstr(&j, dt, sizeof dt))
					return -1;
				for (size_t i = 0; i < sizeof dts / sizeof *dts; i++)
					if (strcmp(dt, dts[i].n) == 0) {
						t.dtype = dts[i].d;
						have_dt = 1;
					}
				if (!have_dt)
					return mp_seterr("safetensors: tensor %s: dtype %s not supported", name, dt);
			} else if (strcmp(k, "shape") == 0) {
				if (!jlit(&j, '['))
					return mp_seterr("safetensors: tensor %s: bad shape", name);
				if (!jlit(&j, ']')) {
					do {
						if (t.ndim >= MP_TL_MAXDIM || jint(&j, &t.shape[t.ndim]))
							return mp_seterr("safetensors: tensor %s: bad shape", name);
						t.ndim++;
					} while (jlit(&j, ','));
					if (!jlit(&j, ']'))
						return mp_seterr("safetensors: tensor %s: bad shape", name);
				}
				have_shape = 1;
			} else if (strcmp(k, "data_offsets") == 0) {
				if (!jlit(&j, '[') || jint(&j, &off[0]) || !jlit(&j, ',') || jint(&j, &off[1]) || !jlit(&j, ']'))
					return mp_seterr("safetensors: tensor %s: bad data_offsets", name);
			} else if (jskip(&j))
				return -1;
		} while (jlit(&j, ','));
		if (!jlit(&j, '}') || !have_dt || !have_shape || off[0] < 0)
			return mp_seterr("safetensors: tensor %s: incomplete entry", name);
		int64_t stride[MP_TL_MAXDIM];
		int64_t s = 1;
		for (int i = t.ndim - 1; i >= 0; i--) {
			stride[i] = s;
			if (t.shape[i] < 0 || (t.shape[i] && s > INT64_MAX / t.shape[i]))
				return mp_seterr("safetensors: tensor %s: bad shape", name);
			s *= t.shape[i];
		}
		size_t nbytes;
		if (off[1] < off[0] || (uint64_t)off[1] > dlen || mp_mulsize((size_t)s, dtsize[t.dtype], &nbytes) ||
		    (uint64_t)(off[1] - off[0]) != (uint64_t)nbytes)
			return mp_seterr("safetensors: tensor %s: data_offsets do not match its shape or the file", name);
		t.name = mp_xstrdup(name);
		if (tensor_fill(&t, data + off[0], (size_t)s, 0, stride)) {
			free(t.name);
			free(t.data);
			free(t.idata);
			return -1;
		}
		dict_add(d, &t, &cap);
	} while (jlit(&j, ','));
	if (!jlit(&j, '}'))
		return mp_seterr("safetensors: header does not end its object");
	strip_module(d);
	return 0;
}

int
mp_tl_load_mem(const unsigned char *b, size_t len, const char *name, mp_tdict *d)
{
	int r;

	memset(d, 0, sizeof *d);
	if (len >= 4 && rd32(b) == 0x04034b50)
		r = load_zip(b, len, d);
	else if (len >= 10 && rd64(b) <= len - 8 && b[8] == '{')
		r = load_safetensors(b, len, d);
	else if (len >= 2 && b[0] == 0x80)
		r = mp_seterr("legacy (pre-1.6, non-zip) PyTorch format: re-save it with a current torch.save");
	else
		r = mp_seterr("neither a PyTorch zip checkpoint nor a .safetensors file");
	if (r) {
		mp_preerr("%s", name);
		mp_tl_free(d);
	}
	return r;
}

int
mp_tl_load(const char *path, mp_tdict *d)
{
	int fd = open(path, O_RDONLY);
	struct stat st;

	memset(d, 0, sizeof *d);
	if (fd < 0)
		return mp_seterr("%s: %s", path, strerror(errno));
	if (fstat(fd, &st) || st.st_size <= 0) {
		close(fd);
		return mp_seterr("%s: empty or unreadable file", path);
	}
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return mp_seterr("%s: mmap: %s", path, strerror(errno));
	int r = mp_tl_load_mem(m, (size_t)st.st_size, path, d);
	munmap(m, (size_t)st.st_size);
	return r;
}

/* ================================================================ npz arrays */
int
mp_tl_npz_array(const char *path, const char *name, double **vals, int64_t *shape, int *ndim)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	zip z;
	int rc = -1;
	char en[300];

	*vals = NULL;
	*ndim = 0;
	if (fd < 0)
		return mp_seterr("%s: %s", path, strerror(errno));
	if (fstat(fd, &st) || st.st_size <= 0) {
		close(fd);
		return mp_seterr("%s: empty or unreadable file", path);
	}
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return mp_seterr("%s: mmap: %s", path, strerror(errno));
	snprintf(en, sizeof en, "%s.npy", name);
	if (zip_open(&z, m, (size_t)st.st_size)) {
		mp_preerr("%s", path);
		goto out_map;
	}
	const zent *e = zip_find(&z, en);
	unsigned char *own = NULL;
	const unsigned char *b;
	if (!e) {
		mp_seterr("%s: no array '%s'", path, name);
		goto out;
	}
	if (!(b = zip_data(&z, e, &own))) {
		mp_preerr("%s", path);
		goto out;
	}
	size_t len = e->usize, hl, hs;
	if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0) {
		mp_seterr("%s: %s: not a .npy array", path, en);
		goto out_own;
	}
	hs = b[6] == 1 ? 10 : 12;
	hl = b[6] == 1 ? rd16(b + 8) : rd32(b + 8);
	if (len < hs || hl > len - hs) {
		mp_seterr("%s: %s: truncated header", path, en);
		goto out_own;
	}
	char hdr[1024];
	snprintf(hdr, sizeof hdr, "%.*s", (int)(hl < 1023 ? hl : 1023), (const char *)b + hs);
	const char *d = strstr(hdr, "'descr':"), *fo = strstr(hdr, "'fortran_order':"), *sh = strstr(hdr, "'shape':");
	if (!d || !fo || !sh || strstr(fo, "True") == fo + 17) {
		mp_seterr("%s: %s: unsupported header (Fortran order?)", path, en);
		goto out_own;
	}
	char ty[8] = "";
	sscanf(d + 8, " '%7[^']'", ty);
	const char *q = strchr(sh, '(');
	if (!q) {
		mp_seterr("%s: %s: bad shape", path, en);
		goto out_own;
	}
	q++;
	size_t n = 1;
	while (*q && *q != ')') {
		char *end;
		long long v = strtoll(q, &end, 10);
		if (end == q)
			break;
		if (*ndim >= MP_TL_MAXDIM || v < 0 || v > 100000000) {
			mp_seterr("%s: %s: bad shape", path, en);
			goto out_own;
		}
		shape[(*ndim)++] = v;
		if (mp_mulsize(n, (size_t)v, &n)) {
			mp_seterr("%s: %s: shape overflows", path, en);
			goto out_own;
		}
		q = end;
		while (*q == ',' || *q == ' ')
			q++;
	}
	size_t es = ty[2] ? (size_t)(ty[2] - '0') : 0;
	if (strlen(ty) != 3 || (ty[0] != '<' && ty[0] != '|') || !strchr("iuf", ty[1]) ||
	    (es != 1 && es != 2 && es != 4 && es != 8) || (ty[1] == 'f' && es < 4)) {
		mp_seterr("%s: %s: element type '%s' not supported", path, en, ty);
		goto out_own;
	}
	if (n > (len - hs - hl) / es) {
		mp_seterr("%s: %s: data shorter than its shape", path, en);
		goto out_own;
	}
	*vals = mp_xmalloc((n ? n : 1) * sizeof(double));
	const unsigned char *p = b + hs + hl;
	for (size_t i = 0; i < n; i++, p += es) {
		uint64_t u = es == 1 ? p[0] : es == 2 ? rd16(p) : es == 4 ? rd32(p) : rd64(p);
		double v;
		if (ty[1] == 'f') {
			if (es == 4) {
				float f;
				uint32_t u32 = (uint32_t)u;
				memcpy(&f, &u32, 4);
				v = f;
			} else
				memcpy(&v, &u, 8);
		} else if (ty[1] == 'u')
			v = (double)u;
		else
			v = es == 1 ? (int8_t)u : es == 2 ? (int16_t)u : es == 4 ? (double)(int32_t)u : (double)(int64_t)u;
		(*vals)[i] = v;
	}
	rc = 0;
out_own:
	free(own);
out:
	zip_free(&z);
out_map:
	munmap(m, (size_t)st.st_size);
	return rc;
}
