/* types.c - voxel types: names, sizes, conversion */
#include "mp.h"

#include <math.h>
#include <string.h>
#include <strings.h>

static const struct {
	mp_type t;
	size_t size;
	const char *name;
} tinfo[] = {
	{ MP_NONE, 0, "none" },
	{ MP_INT8, 1, "int8" }, { MP_UINT8, 1, "uint8" },
	{ MP_INT16, 2, "int16" }, { MP_UINT16, 2, "uint16" },
	{ MP_INT32, 4, "int32" }, { MP_UINT32, 4, "uint32" },
	{ MP_INT64, 8, "int64" }, { MP_UINT64, 8, "uint64" },
	{ MP_FLOAT32, 4, "float" }, { MP_FLOAT64, 8, "double" },
};

size_t
mp_type_size(mp_type t)
{
	return (t > MP_NONE && t <= MP_FLOAT64) ? tinfo[t].size : 0;
}

const char *
mp_type_name(mp_type t)
{
	return (t > MP_NONE && t <= MP_FLOAT64) ? tinfo[t].name : "none";
}

/* every spelling the NRRD format allows, plus numpy-like names */
static const struct {
	const char *s;
	mp_type t;
} tnames[] = {
	{ "signed char", MP_INT8 }, { "int8", MP_INT8 }, { "int8_t", MP_INT8 },
	{ "uchar", MP_UINT8 }, { "unsigned char", MP_UINT8 }, { "uint8", MP_UINT8 }, { "uint8_t", MP_UINT8 },
	{ "short", MP_INT16 }, { "short int", MP_INT16 }, { "signed short", MP_INT16 },
	{ "signed short int", MP_INT16 }, { "int16", MP_INT16 }, { "int16_t", MP_INT16 },
	{ "ushort", MP_UINT16 }, { "unsigned short", MP_UINT16 }, { "unsigned short int", MP_UINT16 },
	{ "uint16", MP_UINT16 }, { "uint16_t", MP_UINT16 },
	{ "int", MP_INT32 }, { "signed int", MP_INT32 }, { "int32", MP_INT32 }, { "int32_t", MP_INT32 },
	{ "uint", MP_UINT32 }, { "unsigned int", MP_UINT32 }, { "uint32", MP_UINT32 }, { "uint32_t", MP_UINT32 },
	{ "longlong", MP_INT64 }, { "long long", MP_INT64 }, { "long long int", MP_INT64 },
	{ "signed long long", MP_INT64 }, { "signed long long int", MP_INT64 },
	{ "int64", MP_INT64 }, { "int64_t", MP_INT64 },
	{ "ulonglong", MP_UINT64 }, { "unsigned long long", MP_UINT64 },
	{ "unsigned long long int", MP_UINT64 }, { "uint64", MP_UINT64 }, { "uint64_t", MP_UINT64 },
	{ "float", MP_FLOAT32 }, { "float32", MP_FLOAT32 },
	{ "double", MP_FLOAT64 }, { "float64", MP_FLOAT64 },
};

mp_type
mp_type_parse(const char *s)
{
	for (size_t i = 0; i < sizeof tnames / sizeof tnames[0]; i++)
		if (strcasecmp(s, tnames[i].s) == 0)
			return tnames[i].t;
	return MP_NONE;
}

int
mp_type_is_int(mp_type t)
{
	return t >= MP_INT8 && t <= MP_UINT64;
}

int
mp_type_is_signed(mp_type t)
{
	return t == MP_INT8 || t == MP_INT16 || t == MP_INT32 || t == MP_INT64 ||
	       t == MP_FLOAT32 || t == MP_FLOAT64;
}

double
mp_type_min(mp_type t)
{
	switch (t) {
	case MP_INT8: return -128.0;
	case MP_INT16: return -32768.0;
	case MP_INT32: return -2147483648.0;
	case MP_INT64: return -9223372036854775808.0;
	case MP_FLOAT32: return -3.402823466e38;
	case MP_FLOAT64: return -1.7976931348623157e308;
	default: return 0.0;
	}
}

double
mp_type_max(mp_type t)
{
	switch (t) {
	case MP_INT8: return 127.0;
	case MP_UINT8: return 255.0;
	case MP_INT16: return 32767.0;
	case MP_UINT16: return 65535.0;
	case MP_INT32: return 2147483647.0;
	case MP_UINT32: return 4294967295.0;
	case MP_INT64: return 9223372036854775807.0;
	case MP_UINT64: return 18446744073709551615.0;
	case MP_FLOAT32: return 3.402823466e38;
	case MP_FLOAT64: return 1.7976931348623157e308;
	default: return 0.0;
	}
}

/* element i of an integer buffer, exactly (int64 range; uint64 above it wraps) */
int64_t
mp_geti(const void *buf, mp_type t, size_t i)
{
	switch (t) {
	case MP_INT8: return ((const int8_t *)buf)[i];
	case MP_UINT8: return ((const uint8_t *)buf)[i];
	case MP_INT16: return ((const int16_t *)buf)[i];
	case MP_UINT16: return ((const uint16_t *)buf)[i];
	case MP_INT32: return ((const int32_t *)buf)[i];
	case MP_UINT32: return ((const uint32_t *)buf)[i];
	case MP_INT64: return ((const int64_t *)buf)[i];
	default: return (int64_t)((const uint64_t *)buf)[i];
	}
}

double
mp_get(const void *buf, mp_type t, size_t i)
{
	switch (t) {
	case MP_INT8: return ((const int8_t *)buf)[i];
	case MP_UINT8: return ((const uint8_t *)buf)[i];
	case MP_INT16: return ((const int16_t *)buf)[i];
	case MP_UINT16: return ((const uint16_t *)buf)[i];
	case MP_INT32: return ((const int32_t *)buf)[i];
	case MP_UINT32: return ((const uint32_t *)buf)[i];
	case MP_INT64: return (double)((const int64_t *)buf)[i];
	case MP_UINT64: return (double)((const uint64_t *)buf)[i];
	case MP_FLOAT32: return ((const float *)buf)[i];
	case MP_FLOAT64: return ((const double *)buf)[i];
	default: return 0.0;
	}
}

/* round half away from zero, clamp to the type; NaN becomes 0 */
static double
toint(double v, mp_type t)
{
	double lo = mp_type_min(t), hi = mp_type_max(t);

	if (isnan(v))
		return 0.0;
	v = round(v);
	if (v < lo)
		v = lo;
	if (v > hi)
		v = hi;
	return v;
}

void
mp_put(void *buf, mp_type t, size_t i, double v)
{
	switch (t) {
	case MP_INT8: ((int8_t *)buf)[i] = (int8_t)toint(v, t); break;
	case MP_UINT8: ((uint8_t *)buf)[i] = (uint8_t)toint(v, t); break;
	case MP_INT16: ((int16_t *)buf)[i] = (int16_t)toint(v, t); break;
	case MP_UINT16: ((uint16_t *)buf)[i] = (uint16_t)toint(v, t); break;
	case MP_INT32: ((int32_t *)buf)[i] = (int32_t)toint(v, t); break;
	case MP_UINT32: ((uint32_t *)buf)[i] = (uint32_t)toint(v, t); break;
	case MP_INT64: {
		double w = toint(v, t);
		/* 2^63 is not representable in int64 */
		((int64_t *)buf)[i] = w >= 9223372036854775807.0 ? INT64_MAX : (int64_t)w;
		break;
	}
	case MP_UINT64: {
		double w = toint(v, t);
		((uint64_t *)buf)[i] = w >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)w;
		break;
	}
	case MP_FLOAT32: ((float *)buf)[i] = (float)v; break;
	case MP_FLOAT64: ((double *)buf)[i] = v; break;
	default: break;
	}
}

void
mp_convert(void *dst, mp_type dt, const void *src, mp_type st, size_t n)
{
	if (dt == st) {
		memmove(dst, src, n * mp_type_size(dt));
		return;
	}
	/* 64-bit integers keep full precision (a double does not) */
	if (mp_type_is_int(dt) && mp_type_is_int(st) &&
	    (st == MP_INT64 || st == MP_UINT64 || dt == MP_INT64 || dt == MP_UINT64)) {
		for (size_t i = 0; i < n; i++) {
			int64_t sv = 0;
			uint64_t uv = 0;
			int neg = 0;
			if (st == MP_UINT64) {
				uv = ((const uint64_t *)src)[i];
			} else {
				sv = st == MP_INT64 ? ((const int64_t *)src)[i] : (int64_t)mp_get(src, st, i);
				neg = sv < 0;
				uv = neg ? 0 : (uint64_t)sv;
			}
			if (dt == MP_UINT64)
				((uint64_t *)dst)[i] = neg ? 0 : uv;
			else if (dt == MP_INT64)
				((int64_t *)dst)[i] = neg ? sv : (uv > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)uv);
			else
				mp_put(dst, dt, i, neg ? (double)sv : (double)uv);
		}
		return;
	}
	for (size_t i = 0; i < n; i++)
		mp_put(dst, dt, i, mp_get(src, st, i));
}

void
mp_swap_bytes(void *buf, size_t elsize, size_t n)
{
	unsigned char *p = buf;

	if (elsize < 2)
		return;
	for (size_t i = 0; i < n; i++, p += elsize)
		for (size_t a = 0, b = elsize - 1; a < b; a++, b--) {
			unsigned char c = p[a];
			p[a] = p[b];
			p[b] = c;
		}
}

int
mp_host_big(void)
{
	const uint16_t one = 1;
	unsigned char c;

	memcpy(&c, &one, 1);
	return c == 0;
}
