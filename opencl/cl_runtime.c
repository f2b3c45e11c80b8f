/* cl_runtime.c - OpenCL discovery, contexts, program build + disk cache,
 * buffers and error messages (see mp_cl.h) */
#include "mp_cl.h"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcomment"
#include "mp_cl_sources.h"
#pragma GCC diagnostic pop

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/types.h>
#include <unistd.h>

/* ---------------------------------------------------------------- errors */
const char *
mp_cl_errname(cl_int e)
{
	switch (e) {
#define E(x) case x: return #x;
	E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE)
	E(CL_COMPILER_NOT_AVAILABLE) E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
	E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY) E(CL_BUILD_PROGRAM_FAILURE)
	E(CL_INVALID_VALUE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE)
	E(CL_INVALID_CONTEXT) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_MEM_OBJECT)
	E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM)
	E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL)
	E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
	E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE)
	E(CL_INVALID_WORK_ITEM_SIZE) E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_BUFFER_SIZE)
	E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
	E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
	case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
#undef E
	default: return "CL_ERROR";
	}
}

int
mp_cl_fail(cl_int e, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (e == CL_MEM_OBJECT_ALLOCATION_FAILURE || e == CL_OUT_OF_RESOURCES || e == CL_OUT_OF_HOST_MEMORY)
		return mp_seterr("opencl: %s: out of memory (%s)", what, mp_cl_errname(e));
	return mp_seterr("opencl: %s: %s (%d)", what, mp_cl_errname(e), (int)e);
}

/* ---------------------------------------------------------------- discovery */
static mp_cl_devinfo *devs;
static int ndevs = -2;          /* -2: not looked yet */
static char deverr[512];

static void
getstr(cl_device_id d, cl_device_info what, char *buf, size_t n)
{
	buf[0] = 0;
	if (clGetDeviceInfo(d, what, n, buf, NULL) != CL_SUCCESS)
		buf[0] = 0;
	buf[n - 1] = 0;
}

static size_t
env_size(const char *name)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return 0;
	v = strtoull(s, &end, 10);
	if (*end == 'k' || *end == 'K') v <<= 10;
	else if (*end == 'm' || *end == 'M') v <<= 20;
	else if (*end == 'g' || *end == 'G') v <<= 30;
	return (size_t)v;
}

static int
discover(void)
{
	cl_uint np = 0;
	cl_platform_id *pl;
	cl_int e;
	int n = 0;

	e = clGetPlatformIDs(0, NULL, &np);
	if (e != CL_SUCCESS || np == 0) {
		snprintf(deverr, sizeof deverr, "opencl: no OpenCL platform found (%s); install an ICD such as pocl-opencl-icd or a GPU driver, or use --device cpu",
		         e == CL_SUCCESS ? "0 platforms" : mp_cl_errname(e));
		return -1;
	}
	pl = mp_xcalloc(np, sizeof *pl);
	clGetPlatformIDs(np, pl, NULL);
	for (cl_uint p = 0; p < np; p++) {
		cl_uint nd = 0;
		cl_device_id *dl;
		char pname[128] = "", pver[128] = "";

		clGetPlatformInfo(pl[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
		clGetPlatformInfo(pl[p], CL_PLATFORM_VERSION, sizeof pver, pver, NULL);
		pname[sizeof pname - 1] = pver[sizeof pver - 1] = 0;
		if (clGetDeviceIDs(pl[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0)
			continue;
		dl = mp_xcalloc(nd, sizeof *dl);
		clGetDeviceIDs(pl[p], CL_DEVICE_TYPE_ALL, nd, dl, NULL);
		devs = mp_xrealloc(devs, (size_t)(n + (int)nd) * sizeof *devs);
		for (cl_uint d = 0; d < nd; d++) {
			mp_cl_devinfo *di = &devs[n];
			cl_device_type t = 0;
			cl_ulong u = 0;
			cl_uint cu = 0;
			size_t wg = 0;
			char ext[8192];
			size_t lim;

			memset(di, 0, sizeof *di);
			di->index = n;
			di->platform_index = (int)p;
			di->device_index = (int)d;
			di->platform = pl[p];
			di->device = dl[d];
			clGetDeviceInfo(dl[d], CL_DEVICE_TYPE, sizeof t, &t, NULL);
			di->type = (t & CL_DEVICE_TYPE_GPU) ? MP_CL_GPU : (t & CL_DEVICE_TYPE_ACCELERATOR) ? MP_CL_ACCEL : MP_CL_CPU;
			getstr(dl[d], CL_DEVICE_NAME, di->name, sizeof di->name);
			getstr(dl[d], CL_DEVICE_VENDOR, di->vendor, sizeof di->vendor);
			getstr(dl[d], CL_DEVICE_VERSION, di->version, sizeof di->version);
			getstr(dl[d], CL_DRIVER_VERSION, di->driver, sizeof di->driver);
			memcpy(di->platform_name, pname, sizeof pname);
			memcpy(di->platform_version, pver, sizeof pver);
			clGetDeviceInfo(dl[d], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
			di->compute_units = cu;
			clGetDeviceInfo(dl[d], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof u, &u, NULL);
			di->global_mem = (size_t)u;
			u = 0;
			clGetDeviceInfo(dl[d], CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof u, &u, NULL);
			di->max_alloc = (size_t)u;
			lim = env_size("MEDPIPE_CL_MAX_ALLOC");
			if (lim && (lim < di->max_alloc || !di->max_alloc))
				di->max_alloc = lim;
			clGetDeviceInfo(dl[d], CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
			di->max_wg = wg ? wg : 1;
			getstr(dl[d], CL_DEVICE_EXTENSIONS, ext, sizeof ext);
			di->fp64 = strstr(ext, "cl_khr_fp64") != NULL;
			n++;
		}
		free(dl);
	}
	free(pl);
	if (n == 0) {
		snprintf(deverr, sizeof deverr, "opencl: %u OpenCL platform(s) but no device; use --device cpu", np);
		return 0;
	}
	return n;
}

int
mp_cl_devices(const mp_cl_devinfo **list)
{
	if (ndevs == -2)
		ndevs = discover();
	if (list)
		*list = devs;
	if (ndevs < 0)
		return mp_seterr("%s", deverr);
	return ndevs;
}

/* MEDPIPE_CL_PROFILE=1: every kernel run waited for and timed; totals per
 * kernel printed on stderr when the device is closed */
static struct { char name[64]; double t; int n; } prof[64];
static int nprof, profiling = -1;

static void
prof_add(cl_kernel k, double t)
{
	char name[64] = "?";
	int i;
	clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
	name[sizeof name - 1] = 0;
	for (i = 0; i < nprof; i++)
		if (!strcmp(prof[i].name, name))
			break;
	if (i == nprof) {
		if (nprof == 64)
			return;
		memcpy(prof[nprof++].name, name, sizeof name);
	}
	prof[i].t += t;
	prof[i].n++;
}

static void
prof_print(void)
{
	for (int i = 0; i < nprof; i++)
		fprintf(stderr, "%s: opencl profile: %-16s %5d runs %9.3f ms\n", mp_progname, prof[i].name, prof[i].n, prof[i].t * 1e3);
	nprof = 0;
}

/* ---------------------------------------------------------------- contexts */
typedef struct {
	char *name;
	cl_program prog;
	int nk;
	char **knames;
	cl_kernel *kernels;
} progent;

struct mp_cl {
	mp_cl_devinfo info;
	cl_context ctx;
	cl_command_queue q;
	int np;
	progent *progs;
	void *slot[MP_CL_NSLOT];
	void (*slotfree[MP_CL_NSLOT])(void *);
	mp_cl_bytes bytes, noted;   /* bus traffic, and its value at the last mp_cl_note_bytes */
};

mp_cl_bytes mp_cl_get_bytes(const mp_cl *c) { return c->bytes; }

void
mp_cl_count_constant(mp_cl *c, size_t n)
{
	c->bytes.to -= n < c->bytes.to ? n : c->bytes.to;
	c->bytes.constant += n;
}

void
mp_cl_note_bytes(mp_cl *c, const char *fmt, ...)
{
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	mp_cl_bytes d = { c->bytes.to - c->noted.to, c->bytes.from - c->noted.from,
	                  c->bytes.constant - c->noted.constant };
	c->noted = c->bytes;
	mp_note("opencl: %s: %s: %llu bytes to the device, %llu from it (and %llu bytes of constants to it)", c->info.name,
	        what, (unsigned long long)d.to, (unsigned long long)d.from, (unsigned long long)d.constant);
}

void **
mp_cl_slot(mp_cl *c, int id, void (*release)(void *))
{
	c->slotfree[id] = release;
	return &c->slot[id];
}

mp_cl *
mp_cl_open(int n)
{
	const mp_cl_devinfo *l;
	int nd = mp_cl_devices(&l);
	mp_cl *c;
	cl_int e;

	if (nd < 0)
		return NULL;
	if (nd == 0) {
		mp_seterr("%s", deverr);
		return NULL;
	}
	if (n >= nd) {
		mp_seterr("opencl: no device %d (there %s %d: see medpipe-devices)", n, nd == 1 ? "is" : "are", nd);
		return NULL;
	}
	if (n < 0) {
		n = 0;
		for (int i = 0; i < nd; i++)
			if (l[i].type != MP_CL_CPU) { n = i; break; }
	}
	c = mp_xcalloc(1, sizeof *c);
	c->info = l[n];
	c->ctx = clCreateContext(NULL, 1, &c->info.device, NULL, NULL, &e);
	if (!c->ctx) {
		mp_cl_fail(e, "%s: creating a context", c->info.name);
		free(c);
		return NULL;
	}
	c->q = clCreateCommandQueue(c->ctx, c->info.device, 0, &e);
	if (!c->q) {
		mp_cl_fail(e, "%s: creating a command queue", c->info.name);
		clReleaseContext(c->ctx);
		free(c);
		return NULL;
	}
	mp_note("opencl: device %d: %s (%s, %s)", n, c->info.name, c->info.platform_name, c->info.driver);
	return c;
}

void
mp_cl_close(mp_cl *c)
{
	if (!c)
		return;
	if (profiling > 0)
		prof_print();
	for (int i = 0; i < MP_CL_NSLOT; i++)
		if (c->slot[i] && c->slotfree[i])
			c->slotfree[i](c->slot[i]);
	for (int i = 0; i < c->np; i++) {
		progent *p = &c->progs[i];
		for (int k = 0; k < p->nk; k++) {
			clReleaseKernel(p->kernels[k]);
			free(p->knames[k]);
		}
		free(p->kernels);
		free(p->knames);
		if (p->prog)
			clReleaseProgram(p->prog);
		free(p->name);
	}
	free(c->progs);
	clReleaseCommandQueue(c->q);
	clReleaseContext(c->ctx);
	free(c);
}

const mp_cl_devinfo *mp_cl_info(const mp_cl *c) { return &c->info; }
cl_context mp_cl_context(mp_cl *c) { return c->ctx; }
cl_command_queue mp_cl_queue(mp_cl *c) { return c->q; }

/* ---------------------------------------------------------------- cache */
static mp_cl_stats stats;
mp_cl_stats mp_cl_get_stats(void) { return stats; }

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}
#define FNV0 0xcbf29ce484222325ULL

static uint64_t
fnvs(uint64_t h, const char *s)
{
	return fnv(h, s, strlen(s) + 1);
}

char *
mp_cl_cache_dir(void)
{
	const char *e = getenv("MEDPIPE_CL_NOCACHE");
	const char *d;
	char buf[4096];

	if (e && *e && strcmp(e, "0") != 0)
		return NULL;
	if ((d = getenv("MEDPIPE_CACHE_DIR")) && *d)
		return mp_xstrdup(d);
	if ((d = getenv("XDG_CACHE_HOME")) && *d)
		snprintf(buf, sizeof buf, "%s/medpipe", d);
	else if ((d = getenv("HOME")) && *d)
		snprintf(buf, sizeof buf, "%s/.cache/medpipe", d);
	else
		return NULL;
	return mp_xstrdup(buf);
}

int
mp_cl_mkdirs(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(path, 0755) != 0 && errno != EEXIST) {
			*p = '/';
			return -1;
		}
		*p = '/';
	}
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

#define MAGIC "MPCLBIN1"
typedef struct {
	char magic[8];
	uint64_t key, size, sum;
} cachehdr;

/* the cached binary for key, or NULL (absent or corrupt: *corrupt set) */
static unsigned char *
cache_load(const char *path, uint64_t key, size_t *size, int *corrupt)
{
	FILE *fp = fopen(path, "rb");
	cachehdr h;
	unsigned char *bin;

	*corrupt = 0;
	if (!fp)
		return NULL;
	if (fread(&h, sizeof h, 1, fp) != 1 || memcmp(h.magic, MAGIC, 8) != 0 || h.key != key
	    || h.size == 0 || h.size > ((uint64_t)1 << 31)) {
		fclose(fp);
		*corrupt = 1;
		return NULL;
	}
	bin = malloc((size_t)h.size + 1);
	if (!bin || fread(bin, 1, (size_t)h.size, fp) != (size_t)h.size || fgetc(fp) != EOF
	    || fnv(FNV0, bin, (size_t)h.size) != h.sum) {
		free(bin);
		fclose(fp);
		*corrupt = 1;
		return NULL;
	}
	fclose(fp);
	*size = (size_t)h.size;
	return bin;
}

static void
cache_store(const char *dir, const char *path, uint64_t key, const unsigned char *bin, size_t n)
{
	char *tmp;
	size_t tl = strlen(path) + 32;
	cachehdr h;
	FILE *fp;
	int fd, ok;
	char *d = mp_xstrdup(dir);

	if (mp_cl_mkdirs(d) != 0) {
		mp_note("opencl: cache folder %s: %s", dir, strerror(errno));
		free(d);
		return;
	}
	free(d);
	tmp = mp_xmalloc(tl);
	snprintf(tmp, tl, "%s.XXXXXX", path);
	if ((fd = mkstemp(tmp)) < 0) {
		mp_note("opencl: cache %s: %s", path, strerror(errno));
		free(tmp);
		return;
	}
	fchmod(fd, 0644);
	fp = fdopen(fd, "wb");
	if (!fp) {
		close(fd);
		unlink(tmp);
		free(tmp);
		return;
	}
	memcpy(h.magic, MAGIC, 8);
	h.key = key;
	h.size = n;
	h.sum = fnv(FNV0, bin, n);
	ok = fwrite(&h, sizeof h, 1, fp) == 1 && fwrite(bin, 1, n, fp) == n;
	ok = (fclose(fp) == 0) && ok;
	if (!ok || rename(tmp, path) != 0) {
		mp_note("opencl: cache %s: could not write", path);
		unlink(tmp);
	}
	free(tmp);
}

static const char *
source_of(const char *name)
{
	for (int i = 0; mp_cl_sources[i].name; i++)
		if (strcmp(mp_cl_sources[i].name, name) == 0)
			return mp_cl_sources[i].src;
	return NULL;
}

const char *
mp_cl_program_name(int i)
{
	int k = 0;
	for (int j = 0; mp_cl_sources[j].name; j++) {
		if (!strcmp(mp_cl_sources[j].name, "common"))
			continue;
		if (k++ == i)
			return mp_cl_sources[j].name;
	}
	return NULL;
}

/* the first lines of the build log, joined with " | " */
static void
buildlog(mp_cl *c, cl_program p, char *out, size_t n)
{
	size_t ln = 0, o = 0;
	char *log;
	int lines = 0;

	out[0] = 0;
	if (clGetProgramBuildInfo(p, c->info.device, CL_PROGRAM_BUILD_LOG, 0, NULL, &ln) != CL_SUCCESS || ln == 0)
		return;
	log = mp_xmalloc(ln + 1);
	if (clGetProgramBuildInfo(p, c->info.device, CL_PROGRAM_BUILD_LOG, ln, log, NULL) != CL_SUCCESS) {
		free(log);
		return;
	}
	log[ln] = 0;
	for (char *s = strtok(log, "\n"); s && lines < 4 && o + 8 < n; s = strtok(NULL, "\n")) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s)
			continue;
		o += (size_t)snprintf(out + o, n - o, "%s%s", lines ? " | " : "", s);
		lines++;
	}
	free(log);
}

static const char *
build_options(mp_cl *c)
{
	return c->info.fp64 ? "-cl-std=CL1.2 -DMP_FP64=1" : "-cl-std=CL1.2 -DMP_FP64=0";
}

static cl_program
build(mp_cl *c, const char *name, const char *body)
{
	const char *common = source_of("common");
	char *src = NULL;
	const char *opt;
	uint64_t key;
	char *dir, *path = NULL;
	cl_program p = NULL;
	cl_int e;
	int corrupt = 0;

	if (!body) {
		mp_seterr("opencl: no embedded program %s", name);
		return NULL;
	}
	/* common.cl goes in front of every program */
	src = mp_xmalloc((common ? strlen(common) : 0) + strlen(body) + 2);
	sprintf(src, "%s\n%s", common ? common : "", body);
	opt = build_options(c);
	key = fnvs(FNV0, c->info.platform_name);
	key = fnvs(key, c->info.platform_version);
	key = fnvs(key, c->info.name);
	key = fnvs(key, c->info.version);
	key = fnvs(key, c->info.driver);
	key = fnvs(key, src);
	key = fnvs(key, opt);
	dir = mp_cl_cache_dir();
	if (dir) {
		size_t pl = strlen(dir) + strlen(name) + 40;
		unsigned char *bin;
		size_t bn = 0;

		path = mp_xmalloc(pl);
		snprintf(path, pl, "%s/%s-%016llx.clbin", dir, name, (unsigned long long)key);
		bin = cache_load(path, key, &bn, &corrupt);
		if (bin) {
			const unsigned char *bp = bin;
			cl_int st = CL_SUCCESS;
			p = clCreateProgramWithBinary(c->ctx, 1, &c->info.device, &bn, &bp, &st, &e);
			if (p && (st != CL_SUCCESS || clBuildProgram(p, 1, &c->info.device, opt, NULL, NULL) != CL_SUCCESS)) {
				clReleaseProgram(p);
				p = NULL;
			}
			free(bin);
			if (p) {
				stats.loaded++;
				mp_note("opencl: %s: loaded from cache %s", name, path);
				free(path);
				free(dir);
				free(src);
				return p;
			}
			corrupt = 1;
		}
		if (corrupt) {
			stats.corrupt++;
			mp_note("opencl: %s: cache entry %s is damaged; rebuilding it", name, path);
		}
	}
	p = clCreateProgramWithSource(c->ctx, 1, (const char **)&src, NULL, &e);
	if (!p) {
		mp_cl_fail(e, "%s.cl: creating the program", name);
		goto out;
	}
	e = clBuildProgram(p, 1, &c->info.device, opt, NULL, NULL);
	if (e != CL_SUCCESS) {
		char log[600];
		buildlog(c, p, log, sizeof log);
		mp_seterr("opencl: building %s.cl for %s failed (%s): %s", name, c->info.name,
		          mp_cl_errname(e), log[0] ? log : "no build log");
		clReleaseProgram(p);
		p = NULL;
		goto out;
	}
	stats.built++;
	mp_note("opencl: %s: built from source", name);
	if (path) {
		size_t bn = 0;
		if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof bn, &bn, NULL) == CL_SUCCESS && bn > 0) {
			unsigned char *bin = mp_xmalloc(bn);
			if (clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS)
				cache_store(dir, path, key, bin, bn);
			free(bin);
		}
	}
out:
	free(path);
	free(dir);
	free(src);
	return p;
}

cl_program
mp_cl_program(mp_cl *c, const char *name)
{
	return mp_cl_program_src(c, name, NULL);
}

cl_program
mp_cl_program_src(mp_cl *c, const char *name, const char *src)
{
	cl_program p;

	for (int i = 0; i < c->np; i++)
		if (strcmp(c->progs[i].name, name) == 0)
			return c->progs[i].prog;
	if (!(p = build(c, name, src ? src : source_of(name))))
		return NULL;
	c->progs = mp_xrealloc(c->progs, (size_t)(c->np + 1) * sizeof *c->progs);
	memset(&c->progs[c->np], 0, sizeof *c->progs);
	c->progs[c->np].name = mp_xstrdup(name);
	c->progs[c->np].prog = p;
	c->np++;
	return p;
}

cl_kernel
mp_cl_kernel(mp_cl *c, const char *prog, const char *kname)
{
	progent *pe = NULL;
	cl_kernel k;
	cl_int e;

	if (!mp_cl_program(c, prog))
		return NULL;
	for (int i = 0; i < c->np; i++)
		if (strcmp(c->progs[i].name, prog) == 0)
			pe = &c->progs[i];
	for (int i = 0; i < pe->nk; i++)
		if (strcmp(pe->knames[i], kname) == 0)
			return pe->kernels[i];
	k = clCreateKernel(pe->prog, kname, &e);
	if (!k) {
		mp_cl_fail(e, "%s.cl: kernel %s", prog, kname);
		return NULL;
	}
	pe->kernels = mp_xrealloc(pe->kernels, (size_t)(pe->nk + 1) * sizeof *pe->kernels);
	pe->knames = mp_xrealloc(pe->knames, (size_t)(pe->nk + 1) * sizeof *pe->knames);
	pe->kernels[pe->nk] = k;
	pe->knames[pe->nk] = mp_xstrdup(kname);
	pe->nk++;
	return k;
}

/* ---------------------------------------------------------------- buffers, runs */
cl_mem
mp_cl_buffer(mp_cl *c, cl_mem_flags fl, size_t n, const void *host)
{
	cl_int e;
	cl_mem m;

	if (n == 0)
		n = 4;
	if (n > c->info.max_alloc) {
		mp_seterr("opencl: %s: out of memory: a buffer of %zu bytes exceeds the device's allocation limit (%zu bytes)",
		          c->info.name, n, c->info.max_alloc);
		return NULL;
	}
	m = clCreateBuffer(c->ctx, fl | (host ? CL_MEM_COPY_HOST_PTR : 0), n, (void *)host, &e);
	if (!m)
		mp_cl_fail(e, "%s: allocating %zu MiB", c->info.name, n >> 20);
	else if (host)
		c->bytes.to += n;
	return m;
}

/* on CPU devices a buffer over host memory (no copy); elsewhere a copy */
cl_mem
mp_cl_hostbuf(mp_cl *c, cl_mem_flags fl, size_t n, void *host)
{
	cl_int e;
	cl_mem m;

	if (c->info.type != MP_CL_CPU || n == 0 || n > c->info.max_alloc)
		return fl & CL_MEM_WRITE_ONLY ? mp_cl_buffer(c, fl, n, NULL) : mp_cl_buffer(c, fl, n, host);
	m = clCreateBuffer(c->ctx, fl | CL_MEM_USE_HOST_PTR, n, host, &e);
	if (!m)
		mp_cl_fail(e, "%s: a buffer of %zu MiB over host memory", c->info.name, n >> 20);
	else if (!(fl & CL_MEM_WRITE_ONLY))
		c->bytes.to += n;   /* what a device with its own memory would copy */
	return m;
}

/* bring a buffer made by mp_cl_hostbuf back to host (n bytes into host) */
int
mp_cl_hostread(mp_cl *c, cl_mem b, size_t n, void *host)
{
	cl_int e;
	void *p;

	if (c->info.type != MP_CL_CPU || n == 0 || n > c->info.max_alloc)
		return mp_cl_read(c, b, 0, n, host);
	p = clEnqueueMapBuffer(c->q, b, CL_TRUE, CL_MAP_READ, 0, n, 0, NULL, NULL, &e);
	if (!p)
		return mp_cl_fail(e, "%s: mapping %zu bytes", c->info.name, n);
	if (p != host)
		memcpy(host, p, n);
	c->bytes.from += n;
	e = clEnqueueUnmapMemObject(c->q, b, p, 0, NULL, NULL);
	if (e == CL_SUCCESS)
		e = clFinish(c->q);
	return e == CL_SUCCESS ? 0 : mp_cl_fail(e, "%s: unmapping", c->info.name);
}

int
mp_cl_write(mp_cl *c, cl_mem b, size_t off, size_t n, const void *host)
{
	cl_int e;
	if (n == 0)
		return 0;
	e = clEnqueueWriteBuffer(c->q, b, CL_TRUE, off, n, host, 0, NULL, NULL);
	if (e == CL_SUCCESS)
		c->bytes.to += n;
	return e == CL_SUCCESS ? 0 : mp_cl_fail(e, "%s: writing %zu bytes", c->info.name, n);
}

int
mp_cl_read(mp_cl *c, cl_mem b, size_t off, size_t n, void *host)
{
	cl_int e;
	if (n == 0)
		return 0;
	e = clEnqueueReadBuffer(c->q, b, CL_TRUE, off, n, host, 0, NULL, NULL);
	if (e == CL_SUCCESS)
		c->bytes.from += n;
	return e == CL_SUCCESS ? 0 : mp_cl_fail(e, "%s: reading %zu bytes", c->info.name, n);
}

int
mp_cl_fill0(mp_cl *c, cl_mem b, size_t n)
{
	cl_uint z = 0;
	cl_int e;
	if (n == 0)
		return 0;
	if (n % 4 == 0)
		e = clEnqueueFillBuffer(c->q, b, &z, 4, 0, n, 0, NULL, NULL);
	else
		e = clEnqueueFillBuffer(c->q, b, &z, 1, 0, n, 0, NULL, NULL);
	return e == CL_SUCCESS ? 0 : mp_cl_fail(e, "%s: clearing %zu bytes", c->info.name, n);
}

int
mp_cl_args(cl_kernel k, ...)
{
	va_list ap;
	cl_uint i = 0;
	size_t sz;
	int rc = 0;

	va_start(ap, k);
	while ((sz = va_arg(ap, size_t)) != 0) {
		const void *p = va_arg(ap, const void *);
		cl_int e = clSetKernelArg(k, i, sz, p);
		if (e != CL_SUCCESS) {
			rc = mp_cl_fail(e, "setting kernel argument %u", i);
			break;
		}
		i++;
	}
	va_end(ap);
	return rc;
}

int
mp_cl_run(mp_cl *c, cl_kernel k, int dims, const size_t *global, int wait)
{
	static const size_t l1[1] = {64}, l2[2] = {16, 8}, l3[3] = {8, 8, 2};
	const size_t *loc = dims == 1 ? l1 : dims == 2 ? l2 : l3;
	size_t g[3], l[3], tot = 1;

	for (int i = 0; i < dims; i++) {
		if (global[i] == 0)
			return 0;
		l[i] = loc[i];
		tot *= l[i];
	}
	while (tot > c->info.max_wg) {       /* shrink for small devices */
		for (int i = 0; i < dims && tot > c->info.max_wg; i++)
			if (l[i] > 1) { tot /= l[i]; l[i] /= 2; tot *= l[i]; }
	}
	for (int i = 0; i < dims; i++)
		g[i] = (global[i] + l[i] - 1) / l[i] * l[i];
	if (mp_cl_enqueue(c, k, dims, g, l) < 0)
		return -1;
	if (wait)
		return mp_cl_finish(c);
	return 0;
}

int
mp_cl_enqueue(mp_cl *c, cl_kernel k, int dims, const size_t *global, const size_t *local)
{
	double t0 = 0;
	cl_int e;
	if (profiling < 0) {
		const char *p = getenv("MEDPIPE_CL_PROFILE");
		profiling = p && *p && strcmp(p, "0") != 0;
	}
	if (profiling) {
		clFinish(c->q);
		t0 = mp_clock();
	}
	e = clEnqueueNDRangeKernel(c->q, k, (cl_uint)dims, NULL, global, local, 0, NULL, NULL);
	if (e != CL_SUCCESS)
		return mp_cl_fail(e, "%s: running a kernel", c->info.name);
	if (profiling) {
		clFinish(c->q);
		prof_add(k, mp_clock() - t0);
	}
	return 0;
}

int
mp_cl_finish(mp_cl *c)
{
	cl_int e = clFinish(c->q);
	return e == CL_SUCCESS ? 0 : mp_cl_fail(e, "%s: running kernels", c->info.name);
}
