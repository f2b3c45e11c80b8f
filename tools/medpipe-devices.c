/* medpipe-devices - list the devices the heavy steps can run on */
#include "mp.h"
#include "mp_cl.h"
#include "mp_device.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int build, brief;
static const char *only;

static const mp_opt opts[] = {
	{ "build", 'b', MP_OPT_FLAG, &build, NULL, NULL, "Also build every OpenCL program for each device (or for the --device one) and say whether it came from the cache and how long it took; fills the program cache, e.g. before a parallel make." },
	{ "brief", 's', MP_OPT_FLAG, &brief, NULL, NULL, "One line per device: its --device name, type and name." },
	MP_DEV_OPTION(&only),
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"medpipe-devices",
	"list the devices medpipe's heavy steps can run on",
	"[options]",
	"medpipe-devices lists where the heavy steps of medpipe (resampling, windowing and type "
	"conversion, connected components) can run: 'cpu', the C implementation, which is always "
	"there, and every OpenCL device of every platform the OpenCL ICD loader finds, numbered as "
	"the programs' --device opencl:N option counts them. For each device it prints the platform, "
	"driver, compute units, memory, the largest single buffer (larger volumes are processed in "
	"pieces) and whether it has double precision. It then says what --device auto picks.\n\n"
	"Device choice, in every program with a heavy step: --device cpu|opencl|opencl:N|auto, else "
	"the environment variable MEDPIPE_DEVICE, else auto. auto picks the first OpenCL GPU or "
	"accelerator and otherwise the C path: measured on CPUs, the C code is faster than OpenCL "
	"through PoCL for these steps, which also pays seconds of kernel compilation on a cold cache. "
	"Results agree between devices: integer output bit for bit, floating point within 1e-5 relative. "
	"auto's finding that there is no GPU is remembered in the cache folder (a file auto-KEY, keyed "
	"by the OpenCL ICD vendor files and the loader's environment variables), so that later programs "
	"choose without loading OpenCL; delete it after adding a GPU to a machine whose OpenCL "
	"drivers are unchanged.\n\n"
	"OpenCL programs are compiled into the binaries and built for a device on first use; the "
	"build is cached in $MEDPIPE_CACHE_DIR, else $XDG_CACHE_HOME/medpipe, else ~/.cache/medpipe, "
	"keyed by platform, device, driver, kernel source and build options, written atomically and "
	"checked by a checksum when loaded (a damaged entry is rebuilt). MEDPIPE_CL_NOCACHE=1 turns "
	"the cache off. MEDPIPE_CL_MAX_ALLOC=BYTES (k/M/G suffixes) lowers the per-buffer limit, "
	"MEDPIPE_CL_PIECE=BYTES the size of the pieces a volume is processed in.\n\n"
	"Exit status 0, also when there is no OpenCL platform (the cpu line is still printed, with "
	"the reason on the opencl line); 1 when --build fails.",
	"$ medpipe-devices\n"
	"The devices, and what auto chooses.\n"
	"$ medpipe-devices --build --device opencl:0\n"
	"Build the kernels for device 0 once, before a parallel make.\n"
	"$ MEDPIPE_DEVICE=opencl:0 ccl-clean --min 100 < in.nrrd > out.nrrd\n"
	"Run a step on device 0 (fails with one line if it cannot run there).",
	"hu-window(1), vol-resize(1), ccl-clean(1), medpipe(7)",
	opts, 0
};

static const char *
tname(int t)
{
	return t == MP_CL_GPU ? "gpu" : t == MP_CL_ACCEL ? "accelerator" : "cpu";
}

static int
build_all(int idx)
{
	mp_cl *c = mp_cl_open(idx);
	int rc = 0;

	if (!c) {
		mp_warn("%s", mp_err());
		return 1;
	}
	for (int i = 0; mp_cl_program_name(i); i++) {
		const char *name = mp_cl_program_name(i);
		mp_cl_stats s0 = mp_cl_get_stats(), s;
		struct timespec a, b;

		clock_gettime(CLOCK_MONOTONIC, &a);
		if (!mp_cl_program(c, name)) {
			mp_warn("%s", mp_err());
			rc = 1;
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &b);
		s = mp_cl_get_stats();
		printf("  program %-10s %s in %.2f s%s\n", name, s.loaded > s0.loaded ? "loaded from cache" : "built",
		       (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9,
		       s.corrupt > s0.corrupt ? " (damaged cache entry replaced)" : "");
	}
	mp_cl_close(c);
	return rc;
}

int
main(int argc, char **argv)
{
	char **args;
	const mp_cl_devinfo *l;
	int n, rc = 0, want = -2;
	char *cache;
	mp_dev *d;

	if (mp_parse(&prog, argc, argv, &args) > 0)
		mp_usage_die("no arguments expected (got '%s')", args[0]);
	free(args);
	if (only && !strncmp(only, "opencl", 6))
		want = only[6] == ':' ? atoi(only + 7) : -1;
	n = mp_cl_devices(&l);
	if (want >= 0 && want >= (n > 0 ? n : 0))
		mp_die("opencl: no device %d (there %s %d)", want, n == 1 ? "is" : "are", n > 0 ? n : 0);
	printf("cpu          the C implementation\n");
	if (n <= 0)
		printf("opencl       none: %s\n", mp_err());
	if (want == -1) {          /* "opencl": the first GPU/accelerator, else device 0 */
		want = 0;
		for (int i = n - 1; i >= 0; i--)
			if (l[i].type != MP_CL_CPU)
				want = i;
	}
	for (int i = 0; i < n; i++) {
		const mp_cl_devinfo *di = &l[i];
		if (want >= 0 && i != want)
			continue;
		printf("opencl:%-5d %-11s %s\n", i, tname(di->type), di->name);
		if (!brief) {
			printf("             platform %s (%s)\n", di->platform_name, di->platform_version);
			printf("             %s, driver %s, %u compute units, %.1f GiB memory, buffers up to %.1f GiB, double precision %s\n",
			       di->version, di->driver, di->compute_units, (double)di->global_mem / (1 << 30),
			       (double)di->max_alloc / (1 << 30), di->fp64 ? "yes" : "no");
		}
		if (build)
			rc |= build_all(i);
	}
	if (!brief) {
		if ((d = mp_dev_open("auto"))) {
			printf("auto         %s\n", mp_dev_name(d));
			mp_dev_close(d);
		}
		cache = mp_cl_cache_dir();
		printf("cache        %s\n", cache ? cache : "off");
		free(cache);
	}
	return rc;
}
