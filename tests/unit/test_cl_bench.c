/* test_cl_bench.c - times a step in C and on OpenCL device 0 on a raw input
 * file (driven by tests/bench/opencl.py, which times the peer tool on the
 * same data).  Without arguments (make check) it only checks that both
 * paths run.
 *   test_cl_bench window FILE NX NY NZ           int16 in, soft tissue to uint8
 *   test_cl_bench resize FILE SW SH NZ DW DH M   float in, M: linear|cubic|area|bspline3|nearest
 *   test_cl_bench ccl FILE NX NY NZ CONN         uint8 labels, ids
 * prints "C SECONDS CL SECONDS SAME" (best of 3 after a warm-up run) */
#include "mp_cl.h"
#include "mp_filter.h"
#include "mp_label.h"
#include "t.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *
slurp(const char *path, size_t n)
{
	FILE *fp = fopen(path, "rb");
	void *b = malloc(n ? n : 1);
	if (!fp || fread(b, 1, n, fp) != n)
		mp_die("%s: cannot read %zu bytes", path, n);
	fclose(fp);
	return b;
}

int
main(int argc, char **argv)
{
	mp_cl *c;
	double tc = 1e30, tl = 1e30, t;
	int same = 0;

	mp_init("test_cl_bench");
	if (mp_cl_devices(NULL) <= 0 || !(c = mp_cl_open(0))) {
		if (argc > 1)
			mp_die("%s", mp_err());
		T_SKIP("cl bench smoke", mp_err());
		return 0;
	}
	if (argc < 2) {
		int16_t v[64];
		uint8_t a[64], b[64];
		mp_winmap m = { -160, 240, -160, 240, 0, 255, 0, 0, 0 };
		for (int i = 0; i < 64; i++)
			v[i] = (int16_t)(i * 13 - 300);
		mp_window_apply(a, MP_UINT8, v, MP_INT16, 64, &m);
		T_OK(mp_cl_window_apply(c, b, MP_UINT8, v, MP_INT16, 64, &m) == 0 && !memcmp(a, b, 64), "cl bench smoke");
		mp_cl_close(c);
		return t_failed;
	}
	if (!strcmp(argv[1], "window") && argc == 6) {
		size_t n = (size_t)atol(argv[3]) * (size_t)atol(argv[4]) * (size_t)atol(argv[5]);
		int16_t *v = slurp(argv[2], n * 2);
		uint8_t *a = malloc(n), *b = malloc(n);
		mp_winmap m = { -160, 240, -160, 240, 0, 255, 0, 0, 0 };
		mp_cl_window_apply(c, b, MP_UINT8, v, MP_INT16, n, &m);
		for (int r = 0; r < 3; r++) {
			t = now();
			mp_window_apply(a, MP_UINT8, v, MP_INT16, n, &m);
			if ((t = now() - t) < tc) tc = t;
			t = now();
			if (mp_cl_window_apply(c, b, MP_UINT8, v, MP_INT16, n, &m))
				mp_die("%s", mp_err());
			if ((t = now() - t) < tl) tl = t;
		}
		same = !memcmp(a, b, n);
	} else if (!strcmp(argv[1], "resize") && argc == 9) {
		size_t sw = (size_t)atol(argv[3]), sh = (size_t)atol(argv[4]), nz = (size_t)atol(argv[5]);
		size_t dw = (size_t)atol(argv[6]), dh = (size_t)atol(argv[7]);
		float *v = slurp(argv[2], sw * sh * nz * 4), *a = malloc(dw * dh * nz * 4), *b = malloc(dw * dh * nz * 4);
		mp_rs_method mm;
		mp_resizer rs;
		if (mp_rs_parse(argv[8], &mm) || mp_resizer_init(&rs, mm, sw, sh, dw, dh, -0.75))
			mp_die("%s", mp_err());
		mp_cl_resize(c, &rs, v, b, 1);
		for (int r = 0; r < 3; r++) {
			t = now();
			for (size_t z = 0; z < nz; z++)
				mp_resizer_run(&rs, v + z * sw * sh, a + z * dw * dh);
			if ((t = now() - t) < tc) tc = t;
			t = now();
			if (mp_cl_resize(c, &rs, v, b, nz))
				mp_die("%s", mp_err());
			if ((t = now() - t) < tl) tl = t;
		}
		same = !memcmp(a, b, dw * dh * nz * 4);
		mp_resizer_free(&rs);
	} else if (!strcmp(argv[1], "ccl") && argc == 7) {
		size_t nx = (size_t)atol(argv[3]), ny = (size_t)atol(argv[4]), nz = (size_t)atol(argv[5]), n = nx * ny * nz;
		int conn = atoi(argv[6]);
		uint8_t *v = slurp(argv[2], n);
		uint32_t *a = malloc(n * 4), *b = malloc(n * 4);
		mp_cl_ccl(c, v, 1, nx, ny, nz, conn, 0, 0, b);
		for (int r = 0; r < 3; r++) {
			t = now();
			mp_ccl32(v, 1, nx, ny, nz, conn, 0, a);
			if ((t = now() - t) < tc) tc = t;
			t = now();
			if (mp_cl_ccl(c, v, 1, nx, ny, nz, conn, 0, 0, b) < 0)
				mp_die("%s", mp_err());
			if ((t = now() - t) < tl) tl = t;
		}
		same = !memcmp(a, b, n * 4);
	} else {
		mp_usage_die("usage: test_cl_bench window|resize|ccl FILE sizes... (see the source)");
	}
	printf("C %.5f CL %.5f SAME %d\n", tc, tl, same);
	mp_cl_close(c);
	return 0;
}
