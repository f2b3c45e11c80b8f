/* sam_adapter.c - what `sam-tune --adapter-out DIR` writes, applied to a
 * checkpoint's tensors at load time (mp_sam.h: mp_sam_load_adapter):
 *
 * - a Hugging Face PEFT LoRA adapter (DIR/adapter_config.json and
 *   DIR/adapter_model.safetensors, as sam-tune or peft's save_pretrained
 *   write them): every LoRA pair M.lora_A.weight (r x in), M.lora_B.weight
 *   (out x r) is merged into the base tensor M.weight (out x in) as
 *   W += s B A with s = lora_alpha / r (lora_alpha / sqrt(r) with
 *   use_rslora), as peft's merge_and_unload; the tensors of modules_to_save
 *   replace the base's. The model's code then sees a plain checkpoint, so
 *   every backend runs it.
 * - Medical-SAM-Adapter's adapters (DIR/adapter_model.safetensors alone,
 *   sam-tune --mode adapter): image_encoder.blocks.N.{Space,MLP}_Adapter.
 *   D_fc{1,2}.{weight,bias} join the checkpoint's tensors; the ViT encoder
 *   runs them (sam.c).
 *
 * adapter_config.json is read by a small strict JSON reader (RFC 8259:
 * no comments, no trailing commas, no duplicate keys, nesting <= 64). */
#include "mp.h"
#include "mp_sam.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ================================================================ JSON */
enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jv {
	int type;
	double num;
	char *str;               /* J_STR */
	size_t n;                /* items of J_ARR / J_OBJ */
	struct jv *items;
	char **keys;             /* J_OBJ */
} jv;

typedef struct {
	const char *p, *end;
	int depth;
} jp;

static void
jv_free(jv *v)
{
	for (size_t i = 0; i < v->n; i++) {
		jv_free(&v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->str);
	memset(v, 0, sizeof *v);
}

static void
ws(jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int
hex4(const char *p, unsigned *u)
{
	*u = 0;
	for (int i = 0; i < 4; i++) {
		int c = p[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
		                  c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		*u = *u * 16 + (unsigned)d;
	}
	return 0;
}

static void
put_utf8(char *s, size_t *k, unsigned u)
{
	if (u < 0x80)
		s[(*k)++] = (char)u;
	else if (u < 0x800) {
		s[(*k)++] = (char)(0xc0 | (u >> 6));
		s[(*k)++] = (char)(0x80 | (u & 63));
	} else if (u < 0x10000) {
		s[(*k)++] = (char)(0xe0 | (u >> 12));
		s[(*k)++] = (char)(0x80 | ((u >> 6) & 63));
		s[(*k)++] = (char)(0x80 | (u & 63));
	} else {
		s[(*k)++] = (char)(0xf0 | (u >> 18));
		s[(*k)++] = (char)(0x80 | ((u >> 12) & 63));
		s[(*k)++] = (char)(0x80 | ((u >> 6) & 63));
		s[(*k)++] = (char)(0x80 | (u & 63));
	}
}

/* a string at j->p (the opening quote); malloc'd UTF-8 without NULs */
static int
jstr(jp *j, char **out)
{
	const char *p = j->p + 1;
	size_t cap = 16, k = 0;
	char *s = mp_xmalloc(cap);

	for (;;) {
		if (p >= j->end)
			goto bad;
		if (cap - k < 8)
			s = mp_xrealloc(s, cap *= 2);
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			break;
		if (c < 0x20)
			goto bad;
		if (c != '\\') {
			s[k++] = (char)c;
			p++;
			continue;
		}
		if (p + 1 >= j->end)
			goto bad;
		char e = p[1];
		p += 2;
		switch (e) {
		case '"': s[k++] = '"'; break;
		case '\\': s[k++] = '\\'; break;
		case '/': s[k++] = '/'; break;
		case 'b': s[k++] = '\b'; break;
		case 'f': s[k++] = '\f'; break;
		case 'n': s[k++] = '\n'; break;
		case 'r': s[k++] = '\r'; break;
		case 't': s[k++] = '\t'; break;
		case 'u': {
			unsigned u, u2;
			if (j->end - p < 4 || hex4(p, &u))
				goto bad;
			p += 4;
			if (u >= 0xd800 && u < 0xdc00) {
				if (j->end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &u2) || u2 < 0xdc00 ||
				    u2 >= 0xe000)
					goto bad;
				p += 6;
				u = 0x10000 + ((u - 0xd800) << 10) + (u2 - 0xdc00);
			} else if (u >= 0xdc00 && u < 0xe000)
				goto bad;
			if (u == 0)
				goto bad;
			put_utf8(s, &k, u);
			break;
		}
		default:
			goto bad;
		}
	}
	s[k] = 0;
	j->p = p + 1;
	*out = s;
	return 0;
bad:
	free(s);
	return mp_seterr("bad string");
}

static int jval(jp *j, jv *v);

static int
jnum(jp *j, jv *v)
{
	const char *p = j->p, *s = p;
	if (p < j->end && *p == '-')
		p++;
	if (p >= j->end || !(*p >= '0' && *p <= '9'))
		return mp_seterr("bad value");
	if (*p == '0')
		p++;
	else
		while (p < j->end && *p >= '0' && *p <= '9')
			p++;
	if (p < j->end && *p == '.') {
		p++;
		if (p >= j->end || !(*p >= '0' && *p <= '9'))
			return mp_seterr("bad number");
		while (p < j->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < j->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < j->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= j->end || !(*p >= '0' && *p <= '9'))
			return mp_seterr("bad number");
		while (p < j->end && *p >= '0' && *p <= '9')
			p++;
	}
	char buf[64];
	if (p - s >= (long)sizeof buf)
		return mp_seterr("number too long");
	memcpy(buf, s, (size_t)(p - s));
	buf[p - s] = 0;
	v->type = J_NUM;
	v->num = strtod(buf, NULL);
	j->p = p;
	return 0;
}

static int
jlit(jp *j, const char *w, int type, jv *v)
{
	size_t n = strlen(w);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
		return mp_seterr("bad value");
	j->p += n;
	v->type = type;
	return 0;
}

static int
jval(jp *j, jv *v)
{
	memset(v, 0, sizeof *v);
	ws(j);
	if (j->p >= j->end)
		return mp_seterr("truncated");
	char c = *j->p;
	if (c == '"') {
		v->type = J_STR;
		return jstr(j, &v->str);
	}
	if (c == 't')
		return jlit(j, "true", J_TRUE, v);
	if (c == 'f')
		return jlit(j, "false", J_FALSE, v);
	if (c == 'n')
		return jlit(j, "null", J_NULL, v);
	if (c != '[' && c != '{')
		return jnum(j, v);
	if (++j->depth > 64)
		return mp_seterr("nested too deeply");
	int obj = c == '{';
	size_t cap = 0;
	v->type = obj ? J_OBJ : J_ARR;
	j->p++;
	ws(j);
	if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
		j->p++;
		j->depth--;
		return 0;
	}
	for (;;) {
		if (v->n == cap) {
			cap = cap ? 2 * cap : 8;
			v->items = mp_xrealloc(v->items, cap * sizeof *v->items);
			if (obj)
				v->keys = mp_xrealloc(v->keys, cap * sizeof *v->keys);
		}
		char *key = NULL;
		if (obj) {
			ws(j);
			if (j->p >= j->end || *j->p != '"')
				return mp_seterr("key expected");
			if (jstr(j, &key))
				return -1;
			for (size_t i = 0; i < v->n; i++)
				if (strcmp(v->keys[i], key) == 0) {
					mp_seterr("key \"%.60s\" given twice", key);
					free(key);
					return -1;
				}
			ws(j);
			if (j->p >= j->end || *j->p != ':') {
				free(key);
				return mp_seterr("':' expected");
			}
			j->p++;
			v->keys[v->n] = key;
		}
		int rc = jval(j, &v->items[v->n]);
		v->n++;
		if (rc)
			return -1;
		ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
			j->p++;
			j->depth--;
			return 0;
		}
		return mp_seterr(obj ? "',' or '}' expected" : "',' or ']' expected");
	}
}

/* the whole text as one value; -1 + mp_err ("line N: why") */
static int
json_parse(const char *text, size_t len, jv *v)
{
	jp j = { text, text + len, 0 };
	int rc = jval(&j, v);
	if (!rc) {
		ws(&j);
		if (j.p != j.end)
			rc = mp_seterr("text after the value");
	}
	if (rc) {
		int line = 1;
		for (const char *q = text; q < j.p && q < j.end; q++)
			line += *q == '\n';
		jv_free(v);
		return mp_preerr("line %d", line);
	}
	return 0;
}

static const jv *
jget(const jv *o, const char *key)
{
	for (size_t i = 0; o->type == J_OBJ && i < o->n; i++)
		if (strcmp(o->keys[i], key) == 0)
			return &o->items[i];
	return NULL;
}

/* ================================================================ PEFT LoRA */
typedef struct {
	int r;
	double alpha, scale;
	int rslora;
	size_t ntarget, nsave;
	const char **target, **save;
} lora_cfg;

static int
cfg_bool(const jv *o, const char *key, int *b)
{
	const jv *v = jget(o, key);
	*b = 0;
	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_TRUE && v->type != J_FALSE)
		return mp_seterr("%s: true or false expected", key);
	*b = v->type == J_TRUE;
	return 0;
}

/* a list of strings (or null / missing: n = 0) */
static int
cfg_strlist(const jv *o, const char *key, const char ***list, size_t *n)
{
	const jv *v = jget(o, key);
	*list = NULL;
	*n = 0;
	if (!v || v->type == J_NULL)
		return 0;
	if (v->type == J_STR)
		return mp_seterr("%s \"%.60s\": a regular expression; only a list of module names is supported", key, v->str);
	if (v->type != J_ARR)
		return mp_seterr("%s: a list of module names expected", key);
	*list = mp_xcalloc(v->n + 1, sizeof **list);
	for (size_t i = 0; i < v->n; i++) {
		if (v->items[i].type != J_STR || !v->items[i].str[0]) {
			free(*list);
			*list = NULL;
			return mp_seterr("%s: a list of module names expected", key);
		}
		(*list)[i] = v->items[i].str;
	}
	*n = v->n;
	return 0;
}

static int
read_config(const jv *o, lora_cfg *c)
{
	const jv *v;
	int b;

	memset(c, 0, sizeof *c);
	if (o->type != J_OBJ)
		return mp_seterr("an object expected");
	v = jget(o, "peft_type");
	if (!v || v->type != J_STR)
		return mp_seterr("peft_type missing");
	if (strcmp(v->str, "LORA") != 0)
		return mp_seterr("peft_type \"%.40s\": only LORA is supported", v->str);
	v = jget(o, "r");
	if (!v || v->type != J_NUM || v->num != floor(v->num) || v->num < 1 || v->num > 65536)
		return mp_seterr("r: a positive integer expected");
	c->r = (int)v->num;
	v = jget(o, "lora_alpha");
	if (!v || v->type != J_NUM || !isfinite(v->num))
		return mp_seterr("lora_alpha: a number expected");
	c->alpha = v->num;
	if (cfg_bool(o, "fan_in_fan_out", &b))
		return -1;
	if (b)
		return mp_seterr("fan_in_fan_out true (transposed Conv1D weights): not supported");
	if (cfg_bool(o, "use_dora", &b))
		return -1;
	if (b)
		return mp_seterr("use_dora true (DoRA): not supported");
	if (cfg_bool(o, "use_rslora", &c->rslora))
		return -1;
	v = jget(o, "bias");
	if (v && v->type != J_NULL && (v->type != J_STR || strcmp(v->str, "none") != 0))
		return mp_seterr("bias: only \"none\" is supported");
	static const char *empty[] = { "rank_pattern", "alpha_pattern" };
	for (int i = 0; i < 2; i++) {
		v = jget(o, empty[i]);
		if (v && v->type != J_NULL && (v->type != J_OBJ || v->n))
			return mp_seterr("%s: per-module ranks and alphas are not supported", empty[i]);
	}
	v = jget(o, "layer_replication");
	if (v && v->type != J_NULL)
		return mp_seterr("layer_replication: not supported");
	if (cfg_strlist(o, "target_modules", &c->target, &c->ntarget))
		return -1;
	if (cfg_strlist(o, "modules_to_save", &c->save, &c->nsave)) {
		free(c->target);   /* the caller frees the lists only on success */
		c->target = NULL;
		return -1;
	}
	c->scale = c->rslora ? c->alpha / sqrt((double)c->r) : c->alpha / c->r;
	return 0;
}

/* does the module path name[0..len) end with the module name t (whole components)? */
static int
ends_with_module(const char *name, size_t len, const char *t)
{
	size_t n = strlen(t);
	if (n > len || memcmp(name + len - n, t, n) != 0)
		return 0;
	return n == len || name[len - n - 1] == '.';
}

static int
endswith(const char *s, const char *suf, size_t *stem)
{
	size_t a = strlen(s), b = strlen(suf);
	if (a < b || strcmp(s + a - b, suf) != 0)
		return 0;
	*stem = a - b;
	return 1;
}

static int
same_shape(const mp_tensor *a, const mp_tensor *b)
{
	if (a->ndim != b->ndim)
		return 0;
	for (int i = 0; i < a->ndim; i++)
		if (a->shape[i] != b->shape[i])
			return 0;
	return 1;
}

static int
shape_err(const char *what, const mp_tensor *t, const mp_tensor *want)
{
	char a[96], b[96];
	mp_tl_shape_str(t->shape, t->ndim, a, sizeof a);
	mp_tl_shape_str(want->shape, want->ndim, b, sizeof b);
	return mp_seterr("tensor %s: shape %s, the model's %s is %s", t->name, a, what, b);
}

/* apply the PEFT adapter ad (config c) to td; counts merged / replaced */
static int
apply_lora(mp_tdict *td, const mp_tdict *ad, const lora_cfg *c, size_t *nmerge, size_t *nrepl)
{
	static const char pre[] = "base_model.model.";
	char nm[600];
	size_t stem;

	*nmerge = *nrepl = 0;
	for (size_t i = 0; i < ad->n; i++) {
		const mp_tensor *a = &ad->t[i];
		if (strncmp(a->name, pre, sizeof pre - 1) != 0)
			return mp_seterr("tensor %s: not a PEFT name (base_model.model.*)", a->name);
		if (!a->data)
			return mp_seterr("tensor %s: type %s, expected floating point", a->name, mp_tl_dtype_name(a->dtype));
		const char *n = a->name + sizeof pre - 1;
		if (strlen(n) >= sizeof nm - 40)
			return mp_seterr("tensor %.100s...: name too long", a->name);
		if (endswith(n, ".lora_B.weight", &stem))
			continue;   /* taken with its lora_A */
		if (endswith(n, ".lora_A.weight", &stem)) {
			int ok = 0;
			for (size_t k = 0; k < c->ntarget && !ok; k++)
				ok = ends_with_module(n, stem, c->target[k]);
			if (!ok)
				return mp_seterr("tensor %s: module not among target_modules", a->name);
			snprintf(nm, sizeof nm, "%s%.*s.lora_B.weight", pre, (int)stem, n);
			const mp_tensor *B = mp_tl_find(ad, nm);
			if (!B)
				return mp_seterr("tensor %s: its %s is missing", a->name, nm);
			snprintf(nm, sizeof nm, "%.*s.weight", (int)stem, n);
			mp_tensor *W = mp_tl_find(td, nm);
			if (!W || !W->data)
				return mp_seterr("tensor %s: the model has no %s", a->name, nm);
			if (W->ndim != 2)
				return mp_seterr("tensor %s: %s has %d dimensions; LoRA is merged into linear layers only", a->name,
				                 nm, W->ndim);
			int64_t out = W->shape[0], in = W->shape[1], r = a->ndim == 2 ? a->shape[0] : -1;
			if (a->ndim != 2 || a->shape[1] != in || B->ndim != 2 || B->shape[0] != out || B->shape[1] != r) {
				char sa[96], sb[96], sw[96];
				mp_tl_shape_str(a->shape, a->ndim, sa, sizeof sa);
				mp_tl_shape_str(B->shape, B->ndim, sb, sizeof sb);
				mp_tl_shape_str(W->shape, W->ndim, sw, sizeof sw);
				return mp_seterr("tensor %s: shape %s with lora_B %s does not fit %s %s", a->name, sa, sb, nm, sw);
			}
			if (r != c->r)
				return mp_seterr("tensor %s: rank %lld, the config's r is %d", a->name, (long long)r, c->r);
			if (!B->data)
				return mp_seterr("tensor %s: not floating point", B->name);
			for (int64_t o = 0; o < out; o++) {
				const float *bo = B->data + o * r;
				float *wo = W->data + o * in;
				for (int64_t x = 0; x < in; x++) {
					double s = 0;
					for (int64_t k = 0; k < r; k++)
						s += (double)bo[k] * a->data[k * in + x];
					wo[x] += (float)(c->scale * s);
				}
			}
			(*nmerge)++;
			continue;
		}
		/* a tensor of modules_to_save: MOD[.modules_to_save[.default]].REST */
		int found = 0;
		for (size_t k = 0; k < c->nsave && !found; k++) {
			size_t L = strlen(c->save[k]);
			for (const char *p = strstr(n, c->save[k]); p && !found; p = strstr(p + 1, c->save[k]))
				if ((p == n || p[-1] == '.') && p[L] == '.') {
					const char *rest = p + L + 1;
					if (strncmp(rest, "modules_to_save.", 16) == 0) {
						rest += 16;
						if (strncmp(rest, "default.", 8) == 0)
							rest += 8;
					}
					snprintf(nm, sizeof nm, "%.*s%s", (int)(p + L + 1 - n), n, rest);
					found = 1;
				}
		}
		if (!found)
			return mp_seterr("tensor %s: neither LoRA nor in modules_to_save", a->name);
		mp_tensor *W = mp_tl_find(td, nm);
		if (!W || !W->data)
			return mp_seterr("tensor %s: the model has no %s", a->name, nm);
		if (!same_shape(a, W))
			return shape_err(nm, a, W);
		memcpy(W->data, a->data, W->n * sizeof(float));
		(*nrepl)++;
	}
	/* a lora_B without its lora_A */
	for (size_t i = 0; i < ad->n; i++)
		if (endswith(ad->t[i].name, ".lora_B.weight", &stem)) {
			snprintf(nm, sizeof nm, "%.*s.lora_A.weight", (int)stem, ad->t[i].name);
			if (!mp_tl_find(ad, nm))
				return mp_seterr("tensor %s: its %s is missing", ad->t[i].name, nm);
		}
	return 0;
}

/* ================================================================ Medical-SAM-Adapter */
static const char *msa_suf[8] = { "Space_Adapter.D_fc1.weight", "Space_Adapter.D_fc1.bias",
	                              "Space_Adapter.D_fc2.weight", "Space_Adapter.D_fc2.bias",
	                              "MLP_Adapter.D_fc1.weight",   "MLP_Adapter.D_fc1.bias",
	                              "MLP_Adapter.D_fc2.weight",   "MLP_Adapter.D_fc2.bias" };

/* block and tensor (0..7) of an adapter tensor name, or -1 */
static int
msa_name(const char *name, int *blk)
{
	static const char pre[] = "image_encoder.blocks.";
	if (strncmp(name, pre, sizeof pre - 1) != 0)
		return -1;
	const char *p = name + sizeof pre - 1;
	char *end;
	if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '.'))
		return -1;
	errno = 0;
	long b = strtol(p, &end, 10);
	if (errno || b < 0 || b >= MP_SAM_MAXDEPTH || *end != '.')
		return -1;
	for (int k = 0; k < 8; k++)
		if (strcmp(end + 1, msa_suf[k]) == 0) {
			*blk = (int)b;
			return k;
		}
	return -1;
}

static int
apply_msa(mp_tdict *td, mp_tdict *ad, int *nblocks)
{
	int have[MP_SAM_MAXDEPTH][8];
	char nm[200];

	memset(have, 0, sizeof have);
	*nblocks = 0;
	for (size_t i = 0; i < ad->n; i++) {
		mp_tensor *a = &ad->t[i];
		int b, k = msa_name(a->name, &b);
		if (k < 0)
			return mp_seterr("tensor %s: not a Medical-SAM-Adapter tensor (image_encoder.blocks.N.%s, ...)", a->name,
			                 msa_suf[0]);
		if (!a->data)
			return mp_seterr("tensor %s: type %s, expected floating point", a->name, mp_tl_dtype_name(a->dtype));
		if (mp_tl_find(td, a->name))
			return mp_seterr("tensor %s: already in the model", a->name);
		snprintf(nm, sizeof nm, "image_encoder.blocks.%d.norm1.weight", b);
		const mp_tensor *n1 = mp_tl_find(td, nm);
		if (!n1 || n1->ndim != 1)
			return mp_seterr("tensor %s: the model has no ViT encoder block %d (%s)", a->name, b, nm);
		have[b][k] = 1;
		/* shapes: fc1 (H, E), (H); fc2 (E, H), (E); H from the module's fc1.weight */
		int64_t E = n1->shape[0];
		snprintf(nm, sizeof nm, "image_encoder.blocks.%d.%s", b, msa_suf[k & 4]);
		const mp_tensor *w1 = mp_tl_find(ad, nm);
		if (!w1)
			return mp_seterr("tensor %s: its %s is missing", a->name, nm);
		int64_t H = w1->ndim == 2 ? w1->shape[0] : -1;
		int64_t want[4][2] = { { H, E }, { H, 0 }, { E, H }, { E, 0 } };
		int wd = (k & 3) == 1 || (k & 3) == 3 ? 1 : 2;
		if (a->ndim != wd || a->shape[0] != want[k & 3][0] || (wd == 2 && a->shape[1] != want[k & 3][1]) || H < 1) {
			char sa[96];
			mp_tl_shape_str(a->shape, a->ndim, sa, sizeof sa);
			return mp_seterr("tensor %s: shape %s does not fit the block's width %lld (adapter width %lld)", a->name,
			                 sa, (long long)E, (long long)H);
		}
	}
	for (int b = 0; b < MP_SAM_MAXDEPTH; b++)
		for (int h = 0; h < 8; h += 4) {
			int s = have[b][h] + have[b][h + 1] + have[b][h + 2] + have[b][h + 3];
			if (s && s < 4)
				for (int k = h; k < h + 4; k++)
					if (!have[b][k])
						return mp_seterr("tensor image_encoder.blocks.%d.%s missing", b, msa_suf[k]);
			*nblocks += h == 0 && s;
		}
	/* the tensors move into the model's dictionary */
	td->t = mp_xrealloc(td->t, (td->n + ad->n + 1) * sizeof *td->t);
	for (size_t i = 0; i < ad->n; i++) {
		td->t[td->n++] = ad->t[i];
		memset(&ad->t[i], 0, sizeof ad->t[i]);
	}
	ad->n = 0;
	return 0;
}

/* ================================================================ entry */
static char *
slurp(const char *path, size_t *len, size_t max)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		mp_seterr("%s: %s", path, strerror(errno));
		return NULL;
	}
	size_t cap = 4096, n = 0;
	char *b = mp_xmalloc(cap);
	for (;;) {
		if (n == cap) {
			if (cap >= max) {
				fclose(f);
				free(b);
				mp_seterr("%s: larger than %zu bytes", path, max);
				return NULL;
			}
			b = mp_xrealloc(b, cap *= 2);
		}
		size_t k = fread(b + n, 1, cap - n, f);
		n += k;
		if (k == 0)
			break;
	}
	int err = ferror(f);
	fclose(f);
	if (err) {
		free(b);
		mp_seterr("%s: read error", path);
		return NULL;
	}
	*len = n;
	return b;
}

int
mp_sam_adapter_apply(mp_tdict *td, const char *dir, char *note, size_t notelen)
{
	struct stat st;
	size_t len;
	char *cpath = mp_xmalloc(strlen(dir) + 40), *wpath = mp_xmalloc(strlen(dir) + 40);
	mp_tdict ad;
	jv cfgv;
	int rc = -1;

	memset(&ad, 0, sizeof ad);
	memset(&cfgv, 0, sizeof cfgv);
	sprintf(cpath, "%s/adapter_config.json", dir);
	sprintf(wpath, "%s/adapter_model.safetensors", dir);
	if (stat(dir, &st) != 0) {
		mp_seterr("%s: %s", dir, strerror(errno));
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		mp_seterr("%s: not a folder (an adapter folder holds adapter_model.safetensors)", dir);
		goto out;
	}
	if (stat(wpath, &st) != 0) {
		mp_seterr("%s: %s", wpath, strerror(errno));
		goto out;
	}
	if (mp_tl_load(wpath, &ad))
		goto out;
	if (stat(cpath, &st) == 0) {
		lora_cfg c;
		size_t nm, nr;
		char *text = slurp(cpath, &len, (size_t)1 << 22);
		if (!text)
			goto out;
		int e = json_parse(text, len, &cfgv);
		free(text);
		if (e || read_config(&cfgv, &c)) {
			mp_preerr("%s", cpath);
			goto out;
		}
		e = apply_lora(td, &ad, &c, &nm, &nr);
		free(c.target);
		free(c.save);
		if (e) {
			mp_preerr("%s", wpath);
			goto out;
		}
		if (note)
			snprintf(note, notelen, "PEFT LoRA (r %d, lora_alpha %g%s, scale %g) merged into %zu tensors, %zu tensors "
			         "replaced (modules_to_save)", c.r, c.alpha, c.rslora ? ", rsLoRA" : "", c.scale, nm, nr);
	} else if (errno != ENOENT) {
		mp_seterr("%s: %s", cpath, strerror(errno));
		goto out;
	} else {
		int nb;
		for (size_t i = 0; i < ad.n; i++)
			if (strncmp(ad.t[i].name, "base_model.model.", 17) == 0) {
				mp_seterr("%s: tensor %s is PEFT's, but %s is missing", wpath, ad.t[i].name, cpath);
				goto out;
			}
		if (apply_msa(td, &ad, &nb)) {
			mp_preerr("%s", wpath);
			goto out;
		}
		if (note)
			snprintf(note, notelen, "Medical-SAM-Adapter adapters in %d blocks", nb);
	}
	/* the identity of the weights: the checkpoint's and the adapter's */
	char id[sizeof td->id];
	snprintf(id, sizeof id, "%.8s+%.8s", td->id, ad.id);
	memcpy(td->id, id, sizeof id);
	rc = 0;
out:
	jv_free(&cfgv);
	mp_tl_free(&ad);
	free(cpath);
	free(wpath);
	return rc;
}
