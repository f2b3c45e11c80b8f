/* test_cl_window.c - mp_cl_window_apply against mp_window_apply: random input
 * of every supported type (with NaN, infinities, exact zeros and values on the
 * window edges), clinical and MedSAM maps, rounding and truncation, single and
 * double; results must be bit-identical (the kernel does the same operations
 * in the same order, with FP contraction off). */
#include "mp_cl.h"
#include "mp_device.h"
#include "mp_filter.h"
#include "t.h"
#include "test_cl_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long rs = 0x2545F4914F6CDD1DULL;
static unsigned long long
rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static void
fill(void *buf, mp_type t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned long long r = rnd();
		double v;
		switch (r % 8) {
		case 0: v = 0; break;
		case 1: v = -1000 + (double)(r >> 40 & 3); break;          /* near the window edges */
		case 2: v = (double)((long long)(r >> 20) % 4000) - 2000; break;
		default: v = ((double)(r >> 11) / 9007199254740992.0 - 0.3) * 3000.0; break;
		}
		if (t == MP_FLOAT32 || t == MP_FLOAT64) {
			if (r % 97 == 0) v = NAN;
			if (r % 89 == 0) v = INFINITY;
			if (r % 83 == 0) v = -INFINITY;
			if (t == MP_FLOAT32) ((float *)buf)[i] = (float)v;
			else ((double *)buf)[i] = v;
		} else if (r % 5 == 0) {
			memcpy((char *)buf + i * mp_type_size(t), &r, mp_type_size(t));   /* any bits */
		} else {
			mp_put(buf, t, i, v);
		}
	}
}

int
main(void)
{
	static const mp_type st[] = { MP_INT8, MP_UINT8, MP_INT16, MP_UINT16, MP_INT32, MP_UINT32, MP_FLOAT32, MP_FLOAT64 };
	static const mp_type dt[] = { MP_UINT8, MP_INT16, MP_FLOAT32, MP_FLOAT64, MP_INT8, MP_UINT16 };
	static const mp_winmap maps[] = {
		{ -160, 240, -160, 240, 0, 1, 0, 0, 0 },        /* clinical soft tissue to [0,1] */
		{ -160, 240, -160, 240, 0, 255, 0, 1, 0 },      /* to 0..255 truncated */
		{ -160, 240, -160, 240, -1, 1, 0, 0, 0 },       /* [-1,1], rounded */
		{ -1000, 1000, -900.5, 777.25, 0, 255, 1, 1, 1 },/* MedSAM-like, single, keep zero */
		{ 5, 5, 5, 5, 0, 255, 0, 0, 0 },                /* degenerate width */
		{ -1e9, 1e9, 0, 300, 0, 65535, 1, 0, 1 },
	};
	const size_t n = 30011;
	mp_cl *c;
	int bad = 0, cases = 0, unsup = 0;
	mp_dev *d;

	mp_init("test_cl_window");
	if (mp_cl_devices(NULL) <= 0 || !(c = mp_cl_open(-1))) {
		T_SKIP("cl window", mp_err());
		return 0;
	}
	for (size_t a = 0; a < sizeof st / sizeof *st; a++)
		for (size_t b = 0; b < sizeof dt / sizeof *dt; b++)
			for (size_t k = 0; k < sizeof maps / sizeof *maps; k++) {
				void *src = malloc(n * 8), *d1 = calloc(n, 8), *d2 = calloc(n, 8);
				int rc;
				fill(src, st[a], n);
				mp_window_apply(d1, dt[b], src, st[a], n, &maps[k]);
				rc = mp_cl_window_apply(c, d2, dt[b], src, st[a], n, &maps[k]);
				cases++;
				if (rc == MP_CL_UNSUPPORTED) {
					unsup++;
				} else if (rc) {
					T_FAIL("cl window", "%s", mp_err());
					bad++;
				} else if (memcmp(d1, d2, n * mp_type_size(dt[b]))) {
					size_t i = 0, es = mp_type_size(dt[b]);
					while (!memcmp((char *)d1 + i * es, (char *)d2 + i * es, es))
						i++;
					T_FAIL("cl window", "%s->%s map %zu: at %zu: in %.17g C %.17g CL %.17g", mp_type_name(st[a]),
					       mp_type_name(dt[b]), k, i, mp_get(src, st[a], i), mp_get(d1, dt[b], i), mp_get(d2, dt[b], i));
					bad++;
				}
				free(src);
				free(d1);
				free(d2);
			}
	if (!bad)
		printf("PASS cl window: %d cases (types x maps) bit-identical to mp_window_apply (%d not supported here)\n",
		       cases - unsup, unsup);
	/* real CT (int16 HU) and MR */
	{
		static const char *files[] = { "nifti/totalseg/example_ct_sm.nii.gz", "nifti/totalseg/example_mr_sm.nii.gz" };
		for (int fi = 0; fi < 2; fi++) {
			size_t dim[3], nv;
			mp_type t;
			void *v = td_nifti(files[fi], dim, &t);
			int nb = 0;
			char name[160];
			snprintf(name, sizeof name, "cl window on %s", files[fi]);
			if (!v) {
				T_SKIP(name, "not in ../shared/data");
				continue;
			}
			nv = dim[0] * dim[1] * dim[2];
			for (size_t b = 0; b < sizeof dt / sizeof *dt; b++)
				for (size_t k = 0; k < sizeof maps / sizeof *maps; k++) {
					void *d1 = calloc(nv, 8), *d2 = calloc(nv, 8);
					mp_window_apply(d1, dt[b], v, t, nv, &maps[k]);
					if (mp_cl_window_apply(c, d2, dt[b], v, t, nv, &maps[k]) || memcmp(d1, d2, nv * mp_type_size(dt[b])))
						nb++;
					free(d1);
					free(d2);
				}
			if (nb)
				T_FAIL(name, "%d of %zu cases differ", nb, sizeof dt / sizeof *dt * (sizeof maps / sizeof *maps));
			else
				T_PASS(name);
			bad += nb;
			free(v);
		}
	}
	mp_cl_close(c);

	/* the dispatcher, both ways, and in pieces */
	setenv("MEDPIPE_CL_PIECE", "8192", 1);
	{
		int16_t *src = malloc(n * 2);
		uint8_t *d1 = malloc(n), *d2 = malloc(n);
		fill(src, MP_INT16, n);
		d = mp_dev_open("cpu");
		mp_dev_window_apply(d, d1, MP_UINT8, src, MP_INT16, n, &maps[1]);
		mp_dev_close(d);
		d = mp_dev_open("opencl");
		T_OK(d && mp_dev_window_apply(d, d2, MP_UINT8, src, MP_INT16, n, &maps[1]) == 0 && !memcmp(d1, d2, n),
		     "dev window: cpu and opencl agree (8 KiB pieces)");
		mp_dev_close(d);
		free(src);
		free(d1);
		free(d2);
	}
	unsetenv("MEDPIPE_CL_PIECE");
	return bad ? 1 : 0;
}
