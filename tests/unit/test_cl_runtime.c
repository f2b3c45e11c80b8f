/* test_cl_runtime.c - the OpenCL runtime on whatever device there is (PoCL in
 * CI): discovery, the program cache (used on a second open, a damaged entry
 * rebuilt and replaced), build errors, and mp_cl_convert against mp_convert
 * (bit for bit), also in pieces. */
#include "mp_cl.h"
#include "mp_device.h"
#include "t.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include <sys/stat.h>

static char cachedir[256];

/* the one cache file whose name starts with prefix, or "" */
static void
cache_file(const char *prefix, char *out, size_t n)
{
	DIR *d = opendir(cachedir);
	struct dirent *e;

	out[0] = 0;
	if (!d)
		return;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix)) && strstr(e->d_name, ".clbin") && !strchr(e->d_name + strlen(e->d_name) - 6, 'X'))
			snprintf(out, n, "%s/%s", cachedir, e->d_name);
	closedir(d);
}

static void
rmrf(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[600];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static unsigned long long rs = 88172645463325252ULL;
static unsigned long long
rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static void
test_cache(void)
{
	mp_cl *c;
	mp_cl_stats s0, s;
	char f[600];
	FILE *fp;
	long sz;

	s0 = mp_cl_get_stats();
	c = mp_cl_open(-1);
	T_OK(c && mp_cl_kernel(c, "convert", "convert"), "cl cache: first build");
	mp_cl_close(c);
	s = mp_cl_get_stats();
	T_OK(s.built == s0.built + 1, "cl cache: built from source when the cache is empty");
	cache_file("convert-", f, sizeof f);
	T_OK(f[0] != 0, "cl cache: entry written");

	c = mp_cl_open(-1);
	T_OK(c && mp_cl_kernel(c, "convert", "convert"), "cl cache: second open");
	mp_cl_close(c);
	s0 = s;
	s = mp_cl_get_stats();
	T_OK(s.loaded == s0.loaded + 1 && s.built == s0.built, "cl cache: used on the second run");

	/* damage the binary in the middle: the checksum must catch it */
	if (f[0] && (fp = fopen(f, "r+b"))) {
		fseek(fp, 0, SEEK_END);
		sz = ftell(fp);
		fseek(fp, sz / 2, SEEK_SET);
		int ch = fgetc(fp);
		fseek(fp, sz / 2, SEEK_SET);
		fputc(ch ^ 0x5a, fp);
		fclose(fp);
	}
	c = mp_cl_open(-1);
	T_OK(c && mp_cl_kernel(c, "convert", "convert"), "cl cache: damaged entry still gives a program");
	mp_cl_close(c);
	s0 = s;
	s = mp_cl_get_stats();
	T_OK(s.corrupt == s0.corrupt + 1 && s.built == s0.built + 1 && s.loaded == s0.loaded,
	     "cl cache: damaged entry rebuilt, not trusted");
	/* truncated entry */
	if (f[0])
		truncate(f, 20);
	c = mp_cl_open(-1);
	T_OK(c && mp_cl_kernel(c, "convert", "convert"), "cl cache: truncated entry rebuilt");
	mp_cl_close(c);
	c = mp_cl_open(-1);
	s0 = mp_cl_get_stats();
	T_OK(c && mp_cl_kernel(c, "convert", "convert") && mp_cl_get_stats().loaded == s0.loaded + 1,
	     "cl cache: rebuilt entry replaced the damaged one");
	mp_cl_close(c);
}

static void
test_build_error(void)
{
	mp_cl *c = mp_cl_open(-1);
	cl_program p;

	if (!c) {
		T_FAIL("cl build error", "%s", mp_err());
		return;
	}
	p = mp_cl_program_src(c, "broken", "__kernel void k(__global int *a) { a[0] = undefined_thing; }\n");
	T_OK(p == NULL && strstr(mp_err(), "building broken.cl") && strstr(mp_err(), "undefined_thing")
	     && !strchr(mp_err(), '\n'), "cl build error: one line with the build log");
	if (p == NULL)
		printf("# %s\n", mp_err());
	mp_cl_close(c);
}

static void
fill_random(void *buf, mp_type t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned long long r = rnd();
		switch (t) {
		case MP_FLOAT32: {
			float v;
			switch (r % 16) {
			case 0: v = NAN; break;
			case 1: v = (float)INFINITY; break;
			case 2: v = -(float)INFINITY; break;
			case 3: v = (float)((long long)(r >> 8) % 1000) + 0.5f; break;   /* ties */
			case 4: v = -(float)((long long)(r >> 8) % 1000) - 0.5f; break;
			default: v = (float)((double)(long long)(r >> 1) / 9.2e18 * 3e9); break;
			}
			((float *)buf)[i] = v;
			break;
		}
		case MP_FLOAT64: {
			double v;
			switch (r % 16) {
			case 0: v = NAN; break;
			case 1: v = INFINITY; break;
			case 2: v = (double)((long long)(r >> 8) % 100000) - 0.5; break;
			default: v = (double)(long long)(r >> 1) / 9.2e18 * 5e9; break;
			}
			((double *)buf)[i] = v;
			break;
		}
		default:
			memcpy((char *)buf + i * mp_type_size(t), &r, mp_type_size(t));
		}
	}
}

static void
test_convert(void)
{
	static const mp_type ts[] = { MP_INT8, MP_UINT8, MP_INT16, MP_UINT16, MP_INT32, MP_UINT32, MP_FLOAT32, MP_FLOAT64 };
	const size_t n = 20011;
	mp_cl *c = mp_cl_open(-1);
	int bad = 0, unsup = 0;
	char name[128];

	for (size_t a = 0; a < sizeof ts / sizeof *ts; a++)
		for (size_t b = 0; b < sizeof ts / sizeof *ts; b++) {
			void *src, *d1, *d2;
			int rc;
			if (a == b)
				continue;
			src = malloc(n * 8);
			d1 = calloc(n, 8);
			d2 = calloc(n, 8);
			fill_random(src, ts[a], n);
			mp_convert(d1, ts[b], src, ts[a], n);
			rc = mp_cl_convert(c, d2, ts[b], src, ts[a], n);
			snprintf(name, sizeof name, "cl convert %s->%s", mp_type_name(ts[a]), mp_type_name(ts[b]));
			if (rc == MP_CL_UNSUPPORTED) {
				unsup++;
			} else if (rc != 0) {
				T_FAIL(name, "%s", mp_err());
				bad++;
			} else if (memcmp(d1, d2, n * mp_type_size(ts[b])) != 0) {
				size_t i = 0, es = mp_type_size(ts[b]);
				while (memcmp((char *)d1 + i * es, (char *)d2 + i * es, es) == 0)
					i++;
				T_FAIL(name, "differs at %zu: in %.17g, C %.17g, CL %.17g", i, mp_get(src, ts[a], i),
				       mp_get(d1, ts[b], i), mp_get(d2, ts[b], i));
				bad++;
			}
			free(src);
			free(d1);
			free(d2);
		}
	if (!bad)
		T_PASS("cl convert: all type pairs bit-identical to mp_convert");
	if (unsup)
		printf("# %d type pairs not supported on this device (no fp64)\n", unsup);
	mp_cl_close(c);

	/* in pieces: a tiny piece limit forces many chunks */
	setenv("MEDPIPE_CL_PIECE", "4096", 1);
	c = mp_cl_open(-1);
	{
		int16_t *src = malloc(n * 2);
		float *d1 = malloc(n * 4), *d2 = malloc(n * 4);
		fill_random(src, MP_INT16, n);
		mp_convert(d1, MP_FLOAT32, src, MP_INT16, n);
		T_OK(c && mp_cl_convert(c, d2, MP_FLOAT32, src, MP_INT16, n) == 0 && !memcmp(d1, d2, n * 4),
		     "cl convert: in 4 KiB pieces");
		free(src);
		free(d1);
		free(d2);
	}
	mp_cl_close(c);
	unsetenv("MEDPIPE_CL_PIECE");
}

static void
test_oom(void)
{
	mp_cl *c;
	cl_mem m;

	/* one byte more than the device's (or MEDPIPE_CL_MAX_ALLOC's) limit */
	c = mp_cl_open(-1);
	if (!c) {
		T_FAIL("cl out of memory", "%s", mp_err());
		return;
	}
	m = mp_cl_buffer(c, CL_MEM_READ_WRITE, mp_cl_info(c)->max_alloc + 1, NULL);
	T_OK(m == NULL && strstr(mp_err(), "out of memory") && !strchr(mp_err(), '\n'),
	     "cl out of memory: one line");
	printf("# %s\n", mp_err());
	if (m)
		clReleaseMemObject(m);
	mp_cl_close(c);
}

static void
test_device_spec(void)
{
	mp_dev *d;

	T_OK(mp_dev_check("cpu") == 0 && mp_dev_check("opencl:0") == 0 && mp_dev_check("auto") == 0
	     && mp_dev_check("opencl") == 0, "device: good specs");
	T_OK(mp_dev_check("gpu") < 0 && mp_dev_check("opencl:") < 0 && mp_dev_check("opencl:x") < 0
	     && mp_dev_check("opencl:-1") < 0, "device: bad specs refused");
	d = mp_dev_open("cpu");
	T_OK(d && !mp_dev_is_cl(d) && !strcmp(mp_dev_name(d), "cpu"), "device: cpu");
	mp_dev_close(d);
	d = mp_dev_open("opencl:0");
	T_OK(d && mp_dev_is_cl(d) && !strncmp(mp_dev_name(d), "opencl:0", 8), "device: opencl:0");
	mp_dev_close(d);
	d = mp_dev_open("opencl:999");
	T_OK(d == NULL && strstr(mp_err(), "no device 999"), "device: opencl:999 refused");
	setenv("MEDPIPE_DEVICE", "bogus", 1);
	d = mp_dev_open(NULL);
	T_OK(d == NULL && strstr(mp_err(), "MEDPIPE_DEVICE"), "device: bad MEDPIPE_DEVICE refused");
	setenv("MEDPIPE_DEVICE", "cpu", 1);
	d = mp_dev_open(NULL);
	T_OK(d && !mp_dev_is_cl(d), "device: MEDPIPE_DEVICE=cpu");
	mp_dev_close(d);
	unsetenv("MEDPIPE_DEVICE");
	d = mp_dev_open("auto");
	T_OK(d != NULL, "device: auto opens");
	printf("# auto chose %s\n", d ? mp_dev_name(d) : "-");
	mp_dev_close(d);
}

int
main(void)
{
	const mp_cl_devinfo *l;
	char tmpl[] = "/tmp/medpipe-clcache.XXXXXX";
	int n;

	mp_init("test_cl_runtime");
	n = mp_cl_devices(&l);
	if (n <= 0) {
		T_SKIP("cl runtime", n < 0 ? mp_err() : "no OpenCL device");
		return 0;
	}
	T_OK(n > 0 && l[0].name[0] && l[0].max_alloc > 0, "cl devices: found");
	for (int i = 0; i < n; i++)
		printf("# device %d: %s (%s, driver %s)\n", i, l[i].name, l[i].platform_name, l[i].driver);
	if (!mkdtemp(tmpl)) {
		T_FAIL("cl cache", "mkdtemp");
		return 1;
	}
	snprintf(cachedir, sizeof cachedir, "%s/sub/dir", tmpl);
	setenv("MEDPIPE_CACHE_DIR", cachedir, 1);
	test_cache();
	test_build_error();
	test_convert();
	test_oom();
	test_device_spec();
	rmrf(cachedir);
	snprintf(cachedir, sizeof cachedir, "%s/sub", tmpl);
	rmdir(cachedir);
	rmdir(tmpl);
	return t_failed ? 1 : 0;
}
