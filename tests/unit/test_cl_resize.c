/* test_cl_resize.c - mp_cl_resize (every method) against mp_resizer_run, and
 * mp_cl_resize_nearest against mp_resize_nearest, on random slices and on the
 * real CT of ../shared/data.  Tolerance for the float methods: |CL - C| <=
 * 1e-5 * (value range of the slice) (the kernels mirror the C summation order
 * with contraction off, so the measured difference is normally 0); nearest
 * is bit-identical. */
#include "mp_cl.h"
#include "mp_device.h"
#include "mp_filter.h"
#include "t.h"
#include "test_cl_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long rs = 0x1234567887654321ULL;
static unsigned long long
rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static double worst;     /* largest relative difference seen */
static int nexact, ncases;

static int
one(mp_cl *c, const char *what, mp_rs_method m, const float *src, size_t sw, size_t sh, size_t nz,
    size_t dw, size_t dh)
{
	mp_resizer r;
	float *a, *b, mn = INFINITY, mx = -INFINITY;
	double md = 0;
	int rc, bad = 0;

	if (mp_resizer_init(&r, m, sw, sh, dw, dh, -0.75)) {
		T_FAIL("cl resize", "%s: mp_resizer_init: %s", what, mp_err());
		return 1;
	}
	a = malloc(dw * dh * nz * 4);
	b = malloc(dw * dh * nz * 4);
	for (size_t z = 0; z < nz; z++)
		mp_resizer_run(&r, src + z * sw * sh, a + z * dw * dh);
	rc = mp_cl_resize(c, &r, src, b, nz);
	for (size_t i = 0; i < sw * sh * nz; i++) {
		if (src[i] < mn) mn = src[i];
		if (src[i] > mx) mx = src[i];
	}
	ncases++;
	if (rc) {
		T_FAIL("cl resize", "%s %s: %s", what, mp_rs_name(m), rc == MP_CL_UNSUPPORTED ? "not supported" : mp_err());
		bad = 1;
	} else {
		for (size_t i = 0; i < dw * dh * nz; i++) {
			double d = fabs((double)a[i] - (double)b[i]);
			if (!(d <= md) && !(isnan(a[i]) && isnan(b[i])))
				md = d;
		}
		md /= (mx > mn ? (double)mx - (double)mn : 1.0);
		if (md == 0 && !memcmp(a, b, dw * dh * nz * 4))
			nexact++;
		if (md > worst)
			worst = md;
		if (!(md <= 1e-5)) {
			T_FAIL("cl resize", "%s %s %zux%zu->%zux%zu: relative difference %g", what, mp_rs_name(m), sw, sh, dw, dh, md);
			bad = 1;
		}
	}
	free(a);
	free(b);
	mp_resizer_free(&r);
	return bad;
}

int
main(void)
{
	static const size_t sz[][4] = { { 64, 48, 128, 96 }, { 64, 48, 20, 15 }, { 37, 53, 100, 41 }, { 100, 80, 33, 79 },
	                                { 1, 7, 5, 3 }, { 9, 9, 9, 9 }, { 256, 256, 1024, 1024 }, { 512, 300, 123, 77 } };
	mp_cl *c;
	int bad = 0;

	mp_init("test_cl_resize");
	if (mp_cl_devices(NULL) <= 0 || !(c = mp_cl_open(-1))) {
		T_SKIP("cl resize", mp_err());
		return 0;
	}
	for (size_t s = 0; s < sizeof sz / sizeof *sz; s++) {
		size_t sw = sz[s][0], sh = sz[s][1], nz = s == 6 ? 1 : 3;
		float *src = malloc(sw * sh * nz * 4);
		for (size_t i = 0; i < sw * sh * nz; i++)
			src[i] = (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2000.0 - 1000.0);
		for (int m = MP_RS_NEAREST; m <= MP_RS_BSPLINE3; m++)
			bad += one(c, "random", (mp_rs_method)m, src, sw, sh, nz, sz[s][2], sz[s][3]);
		free(src);
	}
	{
		size_t dim[3];
		mp_type t;
		void *ct = td_nifti("nifti/totalseg/example_ct_sm.nii.gz", dim, &t);
		if (!ct) {
			T_SKIP("cl resize on example_ct_sm.nii.gz", "no ../shared/data/nifti/totalseg");
		} else {
			size_t n = dim[0] * dim[1] * dim[2];
			float *f = malloc(n * 4);
			mp_convert(f, MP_FLOAT32, ct, t, n);
			for (int m = MP_RS_NEAREST; m <= MP_RS_BSPLINE3; m++) {
				bad += one(c, "CT up", (mp_rs_method)m, f, dim[0], dim[1], dim[2], 256, 256);
				bad += one(c, "CT down", (mp_rs_method)m, f, dim[0], dim[1], dim[2], 50, 41);
			}
			free(f);
			free(ct);
		}
	}
	if (!bad)
		printf("PASS cl resize: %d cases within 1e-5 of the slice range (worst %.3g; %d bit-identical)\n",
		       ncases, worst, nexact);

	/* nearest of any element size: bit-identical */
	{
		static const size_t ess[] = { 1, 2, 4, 8, 3 };
		int nb = 0;
		for (size_t e = 0; e < 5; e++)
			for (size_t s = 0; s < sizeof sz / sizeof *sz; s++) {
				size_t sw = sz[s][0], sh = sz[s][1], dw = sz[s][2], dh = sz[s][3], nz = 2, es = ess[e];
				unsigned char *src = malloc(sw * sh * nz * es), *a = malloc(dw * dh * nz * es), *b = malloc(dw * dh * nz * es);
				for (size_t i = 0; i < sw * sh * nz * es; i++)
					src[i] = (unsigned char)rnd();
				for (size_t z = 0; z < nz; z++)
					mp_resize_nearest(a + z * dw * dh * es, dw, dh, src + z * sw * sh * es, sw, sh, es);
				if (mp_cl_resize_nearest(c, b, dw, dh, src, sw, sh, es, nz) || memcmp(a, b, dw * dh * nz * es)) {
					T_FAIL("cl resize nearest", "%zu-byte %zux%zu->%zux%zu differs", es, sw, sh, dw, dh);
					nb++;
				}
				free(src);
				free(a);
				free(b);
			}
		if (!nb)
			T_PASS("cl resize nearest (labels): 1/2/3/4/8-byte values bit-identical to mp_resize_nearest");
		bad += nb;
	}
	mp_cl_close(c);

	/* in pieces (one slice per piece) through the dispatcher */
	setenv("MEDPIPE_CL_PIECE", "70000", 1);
	{
		size_t sw = 64, sh = 48, dw = 100, dh = 90, nz = 5;
		float *src = malloc(sw * sh * nz * 4), *a = malloc(dw * dh * nz * 4), *b = malloc(dw * dh * nz * 4);
		mp_resizer r;
		mp_dev *d;
		for (size_t i = 0; i < sw * sh * nz; i++)
			src[i] = (float)(rnd() % 1000);
		mp_resizer_init(&r, MP_RS_BSPLINE3, sw, sh, dw, dh, -0.75);
		d = mp_dev_open("cpu");
		mp_dev_resize(d, &r, src, a, nz);
		mp_dev_close(d);
		d = mp_dev_open("opencl");
		int rc = d ? mp_dev_resize(d, &r, src, b, nz) : -1;
		double md = 0;
		for (size_t i = 0; i < dw * dh * nz; i++)
			if (fabs((double)a[i] - (double)b[i]) > md)
				md = fabs((double)a[i] - (double)b[i]);
		T_OK(rc == 0 && md <= 1e-5 * 1000, "dev resize: cpu and opencl agree, slices in pieces");
		mp_dev_close(d);
		mp_resizer_free(&r);
		free(src);
		free(a);
		free(b);
	}
	unsetenv("MEDPIPE_CL_PIECE");
	return bad ? 1 : 0;
}
