/* test_core.c - unit tests of the core: types, conversion, header text,
 * streams in memory, geometry */
#include "mp.h"
#include "t.h"

#include <math.h>
#include <stdlib.h>
#include <zlib.h>

static void
types(void)
{
	int8_t i8[4];
	uint8_t u8[3];
	int64_t i64[2];
	uint64_t u64[2];
	double d[4] = { -200.5, 2.5, -2.5, NAN };
	int64_t big[2] = { INT64_MAX, -5 };

	T_OK(mp_type_parse("unsigned short int") == MP_UINT16, "type-parse-long-name");
	T_OK(mp_type_parse("double") == MP_FLOAT64 && mp_type_parse("int17") == MP_NONE, "type-parse");
	mp_convert(i8, MP_INT8, d, MP_FLOAT64, 4);
	T_OK(i8[0] == -128 && i8[1] == 3 && i8[2] == -3 && i8[3] == 0, "convert-round-clamp-nan");
	mp_convert(u8, MP_UINT8, d, MP_FLOAT64, 3);
	T_OK(u8[0] == 0 && u8[1] == 3 && u8[2] == 0, "convert-unsigned-clamp");
	mp_convert(u64, MP_UINT64, big, MP_INT64, 2);
	T_OK(u64[0] == (uint64_t)INT64_MAX && u64[1] == 0, "convert-int64-uint64-exact");
	mp_convert(i64, MP_INT64, u64, MP_UINT64, 2);
	T_OK(i64[0] == INT64_MAX && i64[1] == 0, "convert-uint64-int64-exact");
}

static void
fmtdouble(void)
{
	double v[] = { 0.1, 1.0 / 3, 0.7, -1e-300, 123456789.123456789, 2.5 };
	char b[40];
	int ok = 1;

	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		mp_fmt_double(b, sizeof b, v[i]);
		ok &= strtod(b, NULL) == v[i];
	}
	mp_fmt_double(b, sizeof b, 0.7);
	T_OK(ok && strcmp(b, "0.7") == 0, "fmt-double-shortest-exact");
}

static mp_frame
sample(void)
{
	mp_frame f;

	mp_frame_init(&f);
	f.dim = 3;
	f.size[0] = 3;
	f.size[1] = 2;
	f.size[2] = 2;
	f.type = MP_INT16;
	f.space = 1;
	for (int a = 0; a < 3; a++)
		f.has_dir[a] = 1;
	f.dir[0][0] = 0.7;
	f.dir[0][1] = 0.1;
	f.dir[1][0] = -0.1;
	f.dir[1][1] = 0.7;
	f.dir[2][2] = 2.5;
	f.origin[0] = -100.25;
	f.origin[1] = 3;
	f.origin[2] = 1e-7;
	mp_set_kv(&f, "medpipe.role", "label");
	mp_set_kv(&f, "medpipe.note", "two\nlines \\ backslash");
	mp_frame_alloc(&f);
	for (int i = 0; i < 12; i++)
		((int16_t *)f.data)[i] = (int16_t)(i * 1000 - 5000);
	return f;
}

static void
header_roundtrip(void)
{
	mp_frame f = sample(), g;
	mp_nrrd_enc enc;
	size_t n;
	char *h = mp_nrrd_header_text(&f, &n);
	int ok;

	ok = mp_nrrd_parse_header(h, n, &g, &enc) == 0;
	T_OK(ok, "header-parse-own");
	if (ok) {
		ok = g.dim == 3 && g.type == MP_INT16 && g.size[0] == 3 && g.space;
		for (int a = 0; a < 3; a++)
			for (int c = 0; c < 3; c++)
				ok &= g.dir[a][c] == f.dir[a][c];
		for (int c = 0; c < 3; c++)
			ok &= g.origin[c] == f.origin[c];
		T_OK(ok, "header-geometry-exact");
		T_OK(strcmp(mp_get_kv(&g, "medpipe.note"), "two\nlines \\ backslash") == 0, "header-kv-escapes");
		T_OK(strcmp(mp_role(&g), "label") == 0, "header-role");
		mp_frame_free(&g);
	}
	free(h);
	mp_frame_free(&f);
}

static void
memstream(void)
{
	mp_frame f = sample(), g;
	size_t hn, dn = mp_frame_nbytes(&f);
	char *h = mp_nrrd_header_text(&f, &hn);
	size_t total = 2 * (hn + dn);
	unsigned char *buf = malloc(total);
	mp_in *in;
	int r1, r2, r3;

	memcpy(buf, h, hn);
	memcpy(buf + hn, f.data, dn);
	memcpy(buf + hn + dn, buf, hn + dn);
	in = mp_in_mem(buf, total, "mem");
	r1 = mp_in_next(in, &g);
	T_OK(r1 == 1 && memcmp(g.data, f.data, dn) == 0, "mem-frame-1");
	mp_frame_free(&g);
	r2 = mp_in_header(in, &g);
	/* read in pieces */
	{
		int16_t a[4], b[8];
		int ok = r2 == 1 && mp_in_data(in, a, sizeof a) == 0 && mp_in_data(in, b, sizeof b) == 0 &&
			 mp_in_left(in) == 0 && a[0] == -5000 && b[7] == 6000;
		T_OK(ok, "mem-frame-2-pieces");
	}
	mp_frame_free(&g);
	r3 = mp_in_header(in, &g);
	T_OK(r3 == 0, "mem-clean-end");
	mp_in_close(in);

	/* truncated: one byte short */
	in = mp_in_mem(buf, hn + dn - 1, "short");
	T_OK(mp_in_next(in, &g) == -1 && strstr(mp_err(), "truncated"), "mem-truncated");
	mp_in_close(in);
	free(buf);
	free(h);
	mp_frame_free(&f);
}

static void
geometry(void)
{
	mp_frame f = sample();
	double ijk[3] = { 1.5, -2, 7 }, xyz[3], back[3];
	char code[4];

	mp_vox2world(&f, ijk, xyz);
	mp_world2vox(&f, xyz, back);
	T_OK(fabs(back[0] - 1.5) < 1e-12 && fabs(back[1] + 2) < 1e-12 && fabs(back[2] - 7) < 1e-12, "world-vox-inverse");
	mp_orient_code(&f, code);
	T_OK(strcmp(code, "LPS") == 0, "orient-code");
	f.dir[0][0] = -0.7;
	mp_orient_code(&f, code);
	T_OK(strcmp(code, "RPS") == 0, "orient-code-flip");
	T_OK(fabs(mp_spacing(&f, 0) - sqrt(0.5)) < 1e-15, "spacing");
	f.size[0] = (size_t)1 << 40;
	f.size[1] = (size_t)1 << 40;
	T_OK(mp_frame_check(&f) < 0, "size-overflow-rejected");
	mp_frame_free(&f);
}

int
main(void)
{
	types();
	fmtdouble();
	header_roundtrip();
	memstream();
	geometry();
	return t_failed != 0;
}
