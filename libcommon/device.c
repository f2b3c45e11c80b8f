/* device.c - the choice of device (--device, MEDPIPE_DEVICE) and the
 * dispatchers that run a step in C or on OpenCL (see mp_device.h) */
#include "mp_device.h"
#include "mp_cl.h"
#include "mp_filter.h"
#include "mp_label.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct mp_dev {
	mp_cl *cl;          /* NULL: the C path */
	int automatic;      /* chosen by auto: fall back to C on OpenCL failure */
	int failed;         /* auto and OpenCL failed once: stay on C */
	char name[300];
	/* per-slice work buffers of mp_dev_resize_slice, kept between slices
	 * (freed at each slice, a frame's slices would pass through the
	 * allocator, and through ASan's quarantine, one by one) */
	void *scr[2];
	size_t scrn[2];
};

/* work buffer k (0 or 1) of at least n bytes, kept in d until mp_dev_close */
static void *
dev_scratch(mp_dev *d, int k, size_t n)
{
	if (d->scrn[k] < n) {
		free(d->scr[k]);
		d->scr[k] = mp_xmalloc(n);
		d->scrn[k] = n;
	}
	return d->scr[k];
}

int
mp_dev_check(const char *spec)
{
	const char *p;
	char *end;
	long n;

	if (!spec || !strcmp(spec, "cpu") || !strcmp(spec, "auto") || !strcmp(spec, "opencl"))
		return 0;
	if (!strncmp(spec, "opencl:", 7)) {
		p = spec + 7;
		n = strtol(p, &end, 10);
		if (*p >= '0' && *p <= '9' && !*end && n >= 0 && n < 1000)
			return 0;
	}
	return mp_seterr("bad device '%s' (cpu, opencl, opencl:N or auto)", spec);
}

int
mp_dev_optfn(void *ctx, const char *arg)
{
	if (mp_dev_check(arg))
		return -1;
	*(const char **)ctx = arg;
	return 0;
}

static mp_dev *
cpu_dev(void)
{
	mp_dev *d = mp_xcalloc(1, sizeof *d);
	snprintf(d->name, sizeof d->name, "cpu");
	return d;
}

/* The auto choice without a GPU is remembered in the cache folder, keyed by
 * the ICD loader's configuration (vendor files, their sizes and times, and
 * the loader's environment variables), so that later programs do not load
 * the OpenCL platforms (~0.1 s for PoCL) only to choose the C path again. */
static char *
auto_path(void)
{
	static const char *vdirs[] = { "/etc/OpenCL/vendors", "/usr/local/etc/OpenCL/vendors", NULL };
	static const char *envs[] = { "OCL_ICD_VENDORS", "OPENCL_VENDOR_PATH", "OCL_ICD_FILENAMES", "POCL_DEVICES", NULL };
	uint64_t h = 0xcbf29ce484222325ULL;
	char *dir = mp_cl_cache_dir(), *path;
	size_t n;

	if (!dir)
		return NULL;
#define MIX(p, len) do { const unsigned char *b_ = (const unsigned char *)(p); \
	for (size_t i_ = 0; i_ < (len); i_++) { h ^= b_[i_]; h *= 0x100000001b3ULL; } } while (0)
	for (int i = 0; envs[i]; i++) {
		const char *v = getenv(envs[i]);
		MIX(envs[i], strlen(envs[i]));
		if (v)
			MIX(v, strlen(v) + 1);
	}
	for (int i = 0; vdirs[i]; i++) {
		DIR *d = opendir(vdirs[i]);
		struct dirent *e;
		if (!d)
			continue;
		while ((e = readdir(d))) {
			char f[1024];
			struct stat st;
			snprintf(f, sizeof f, "%s/%s", vdirs[i], e->d_name);
			if (e->d_name[0] == '.' || stat(f, &st) != 0)
				continue;
			MIX(f, strlen(f) + 1);
			MIX(&st.st_size, sizeof st.st_size);
			MIX(&st.st_mtime, sizeof st.st_mtime);
		}
		closedir(d);
	}
#undef MIX
	n = strlen(dir) + 40;
	path = mp_xmalloc(n);
	snprintf(path, n, "%s/auto-%016llx", dir, (unsigned long long)h);
	free(dir);
	return path;
}

static int
auto_known_cpu(void)
{
	char *p = auto_path(), buf[8] = "";
	FILE *fp;
	int r = 0;

	if (p && (fp = fopen(p, "r"))) {
		r = fgets(buf, sizeof buf, fp) && !strcmp(buf, "cpu\n");
		fclose(fp);
	}
	free(p);
	return r;
}

static void
auto_remember_cpu(void)
{
	char *p = auto_path(), *dir, *tmp;
	FILE *fp;
	int fd;

	if (!p)
		return;
	dir = mp_cl_cache_dir();
	mp_cl_mkdirs(dir);
	free(dir);
	tmp = mp_xmalloc(strlen(p) + 8);
	sprintf(tmp, "%s.XXXXXX", p);
	if ((fd = mkstemp(tmp)) >= 0) {
		fchmod(fd, 0644);
		if ((fp = fdopen(fd, "w"))) {
			int ok = fputs("cpu\n", fp) >= 0;
			if ((fclose(fp) == 0) && ok && rename(tmp, p) == 0)
				tmp[0] = 0;
		} else {
			close(fd);
		}
		if (tmp[0])
			unlink(tmp);
	}
	free(tmp);
	free(p);
}

mp_dev *
mp_dev_open(const char *spec)
{
	const mp_cl_devinfo *l;
	mp_dev *d;
	int n, idx = -1;

	if (!spec || !*spec) {
		spec = getenv("MEDPIPE_DEVICE");
		if (!spec || !*spec)
			spec = "auto";
		else if (mp_dev_check(spec))
			return mp_preerr("MEDPIPE_DEVICE"), NULL;
	}
	if (mp_dev_check(spec))
		return NULL;
	if (!strcmp(spec, "cpu"))
		return cpu_dev();
	if (!strcmp(spec, "auto")) {
		if (auto_known_cpu()) {
			mp_note("device: auto: no OpenCL GPU (remembered); using the C path");
			return cpu_dev();
		}
		n = mp_cl_devices(&l);
		for (int i = 0; i < n; i++)
			if (l[i].type != MP_CL_CPU) { idx = i; break; }
		if (idx < 0) {
			mp_note("device: auto: no OpenCL GPU, using the C path");
			auto_remember_cpu();
			return cpu_dev();
		}
		d = mp_xcalloc(1, sizeof *d);
		d->automatic = 1;
		if (!(d->cl = mp_cl_open(idx))) {
			mp_note("device: auto: %s; using the C path", mp_err());
			snprintf(d->name, sizeof d->name, "cpu");
			return d;
		}
	} else {
		if (spec[6] == ':')
			idx = atoi(spec + 7);
		d = mp_xcalloc(1, sizeof *d);
		if (!(d->cl = mp_cl_open(idx))) {
			free(d);
			return NULL;
		}
	}
	snprintf(d->name, sizeof d->name, "opencl:%d (%s)", mp_cl_info(d->cl)->index, mp_cl_info(d->cl)->name);
	mp_note("device: %s", d->name);
	return d;
}

void
mp_dev_close(mp_dev *d)
{
	if (!d)
		return;
	mp_cl_close(d->cl);
	free(d->scr[0]);
	free(d->scr[1]);
	free(d);
}

int mp_dev_is_cl(const mp_dev *d) { return d && d->cl && !d->failed; }

mp_dev *
mp_dev_open_for(const char *spec, const char *c_only)
{
	mp_dev *d = mp_dev_open(spec);

	/* a step with no OpenCL implementation: under auto it runs in C, an
	 * OpenCL device named is never left silently */
	if (d && c_only && mp_dev_is_cl(d) && !d->automatic) {
		mp_seterr("%s runs only in C, not on %s (use --device cpu or auto)", c_only, d->name);
		mp_dev_close(d);
		return NULL;
	}
	return d;
}
struct mp_cl *mp_dev_cl(mp_dev *d) { return mp_dev_is_cl(d) ? d->cl : NULL; }
const char *mp_dev_name(const mp_dev *d) { return d ? d->name : "cpu"; }

/* after an OpenCL attempt returned rc: 0 done; 1 run the C path instead; -1 fail */
int
mp_dev_after_cl(mp_dev *d, int rc, const char *step)
{
	if (rc == 0)
		return 0;
	if (rc == MP_CL_UNSUPPORTED) {
		/* only auto may leave the device; a device named is a promise */
		if (!d->automatic) {
			mp_seterr("%s: cannot run on %s (too large for its buffers, or a type or precision it lacks; "
			          "--device cpu or auto runs it in C)", step, d->name);
			return -1;
		}
		mp_note("device: %s: not supported on %s; using the C path", step, d->name);
		return 1;
	}
	if (d->automatic) {
		mp_note("device: %s on %s: %s; using the C path from now on", step, d->name, mp_err());
		d->failed = 1;
		snprintf(d->name, sizeof d->name, "cpu");
		return 1;
	}
	return -1;
}

int
mp_dev_convert(mp_dev *d, void *dst, mp_type dt, const void *src, mp_type st, size_t n)
{
	if (dt != st && mp_dev_is_cl(d)) {
		int r = mp_dev_after_cl(d, mp_cl_convert(d->cl, dst, dt, src, st, n), "convert");
		if (r <= 0)
			return r;
	}
	mp_convert(dst, dt, src, st, n);
	return 0;
}

int
mp_dev_window_apply(mp_dev *d, void *dst, mp_type dt, const void *src, mp_type st, size_t n,
                    const mp_winmap *m)
{
	if (mp_dev_is_cl(d)) {
		int r = mp_dev_after_cl(d, mp_cl_window_apply(d->cl, dst, dt, src, st, n, m), "window");
		if (r <= 0)
			return r;
	}
	mp_window_apply(dst, dt, src, st, n, m);
	return 0;
}

/* the OpenCL resize has no zero border (--border constant): that runs in C */
static int
resize_on_cl(const mp_dev *d, const mp_resizer *r)
{
	return mp_dev_is_cl(d) && !r->zero_border;
}

int
mp_dev_resize(mp_dev *d, mp_resizer *r, const float *src, float *dst, size_t nslices)
{
	if (resize_on_cl(d, r)) {
		int k = mp_dev_after_cl(d, mp_cl_resize(d->cl, r, src, dst, nslices), "resize");
		if (k <= 0)
			return k;
	}
	for (size_t z = 0; z < nslices; z++)
		mp_resizer_run(r, src + z * r->sw * r->sh, dst + z * r->dw * r->dh);
	return 0;
}

int
mp_dev_resize_nearest(mp_dev *d, void *dst, size_t dw, size_t dh, const void *src, size_t sw, size_t sh,
                      size_t elsize, size_t nslices)
{
	if (mp_dev_is_cl(d)) {
		int k = mp_dev_after_cl(d, mp_cl_resize_nearest(d->cl, dst, dw, dh, src, sw, sh, elsize, nslices), "resize");
		if (k <= 0)
			return k;
	}
	for (size_t z = 0; z < nslices; z++)
		mp_resize_nearest((char *)dst + z * dw * dh * elsize, dw, dh,
		                  (const char *)src + z * sw * sh * elsize, sw, sh, elsize);
	return 0;
}

int
mp_dev_resize_slice(mp_dev *d, mp_resizer *r, void *dst, mp_type dt, size_t dw, size_t dh,
                    const void *src, mp_type st, size_t sw, size_t sh)
{
	size_t n = dw * dh;
	int rc;

	if (!r) {
		/* nearest: values copied, then converted through floats when the type changes */
		void *near = dt == st ? dst : dev_scratch(d, 0, n * mp_type_size(st));
		rc = mp_dev_resize_nearest(d, near, dw, dh, src, sw, sh, mp_type_size(st), 1);
		if (near != dst) {
			float *tmp = dev_scratch(d, 1, n * sizeof *tmp);
			mp_convert(tmp, MP_FLOAT32, near, st, n);
			mp_convert(dst, dt, tmp, MP_FLOAT32, n);
		}
		return rc;
	}
	float *fs = dev_scratch(d, 0, sw * sh * sizeof *fs), *fd;
	mp_to_float(fs, src, st, sw * sh);
	if (!resize_on_cl(d, r)) {
		/* the C path converts each output row while it is in cache */
		rc = mp_resizer_run_to(r, fs, dst, dt);
	} else {
		fd = dev_scratch(d, 1, n * sizeof *fd);
		if ((rc = mp_dev_resize(d, r, fs, fd, 1)) == 0)
			mp_from_float(dst, dt, fd, n);
	}
	return rc;
}

int64_t
mp_dev_ccl_ids(mp_dev *d, const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz,
               int conn, int binary, int wide, void *ids)
{
	/* 64-bit ids: C only (mp_dev_open_for refuses a named device) */
	if (wide)
		return mp_ccl64(vol, elsize, nx, ny, nz, conn, binary, ids);
	return mp_dev_ccl32(d, vol, elsize, nx, ny, nz, conn, binary, ids);
}

int64_t
mp_dev_ccl32(mp_dev *d, const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz,
             int conn, int binary, uint32_t *ids)
{
	if (mp_dev_is_cl(d) && mp_ccl_conn_ok(conn)) {
		int64_t n = mp_cl_ccl(d->cl, vol, elsize, nx, ny, nz, conn, binary, 0, ids);
		int k = mp_dev_after_cl(d, n >= 0 ? 0 : (int)n, "connected components");
		if (n >= 0)
			mp_dev_note_bytes(d, "connected components, %zux%zux%zu", nx, ny, nz);
		if (k < 0)
			return -1;
		if (k == 0)
			return n;
	}
	return mp_ccl32(vol, elsize, nx, ny, nz, conn, binary, ids);
}

int
mp_dev_dust(mp_dev *d, void *vol, size_t elsize, size_t nx, size_t ny, size_t nz, int conn,
            int binary, double min, int keep_largest, uint64_t *ncomp, uint64_t *nremoved)
{
	if (mp_dev_is_cl(d) && mp_ccl_conn_ok(conn)) {
		int k = mp_dev_after_cl(d, mp_cl_dust(d->cl, vol, elsize, nx, ny, nz, conn, binary, min, keep_largest,
		                               ncomp, nremoved), "connected components");
		if (k == 0)
			mp_dev_note_bytes(d, "connected components, %zux%zux%zu", nx, ny, nz);
		if (k <= 0)
			return k;
	}
	return mp_dust(vol, elsize, nx, ny, nz, conn, binary, min, keep_largest, ncomp, nremoved);
}

int
mp_dev_list(const char *spec, int *idx, int max, int resolve)
{
	if (!spec || strncmp(spec, "opencl:", 7) != 0 || (strcmp(spec + 7, "all") != 0 && !strchr(spec, ',')))
		return 0;
	if (strcmp(spec + 7, "all") == 0) {
		if (!resolve)
			return 1;
		int n = mp_cl_devices(NULL);
		if (n < 0)
			return -1;
		if (n == 0)
			return mp_seterr("opencl:all: no OpenCL device");
		n = n < max ? n : max;
		for (int i = 0; i < n; i++)
			idx[i] = i;
		return n;
	}
	int n = 0;
	for (const char *p = spec + 7;;) {
		char *end;
		long v = strtol(p, &end, 10);
		if (!(*p >= '0' && *p <= '9') || v < 0 || v >= 1000 || (*end && *end != ',') || n == max)
			return mp_seterr("bad device list '%s' (opencl:all or opencl:A,B,... of at most %d devices)", spec, max);
		idx[n++] = (int)v;
		if (!*end)
			break;
		p = end + 1;
	}
	return n;
}

void
mp_dev_note_bytes(mp_dev *d, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	if (!mp_dev_is_cl(d))
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	mp_cl_note_bytes(mp_dev_cl(d), "%s", what);
}
