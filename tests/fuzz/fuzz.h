/* fuzz.h - shared by the libFuzzer harnesses in tests/fuzz (see README there).
 * Each harness includes this once: it sets the memory limit the readers obey,
 * keeps a private temporary folder, and writes the input to a file there when
 * the reader under test takes a path. */
#ifndef MP_FUZZ_H
#define MP_FUZZ_H

#include "mp.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fz_dir[64];

#ifdef FZ_CHILD_QUIET
/* the MINC reader parses a file first in a forked child (fmt_minc.c): a child
 * that dies (in libhdf5, libnetcdf) is a clean error to its parent, so the
 * child must not report to libFuzzer as the fuzzed process would (it wrote
 * crash-* and oom-* artifacts of its own): no death callback, default signal
 * handlers. (Its malloc limit: run.sh gives minc a high -malloc_limit_mb.) */
#include <pthread.h>
#include <signal.h>
#include <sanitizer/common_interface_defs.h>
static void
fz_child(void)
{
	static const int sig[] = { SIGABRT, SIGILL, SIGINT, SIGTERM, SIGXFSZ, SIGUSR1, SIGUSR2, SIGALRM };

	__sanitizer_set_death_callback(NULL);
	for (size_t i = 0; i < sizeof sig / sizeof sig[0]; i++)
		signal(sig[i], SIG_DFL);
}
#endif

/* the private folder and what the last input left in it, removed at exit */
static void
fz_cleanup(void)
{
	DIR *d = opendir(fz_dir);
	struct dirent *e;
	char p[400];

	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s", fz_dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(fz_dir);
}

/* the readers refuse frames above MEDPIPE_MAX_BYTES: keep it under
 * libFuzzer's RSS limit so that a header asking for a huge volume is an
 * error, not an out-of-memory report */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("MEDPIPE_MAX_BYTES", "268435456", 1);
	snprintf(fz_dir, sizeof fz_dir, "/tmp/mpfuzz.XXXXXX");
	if (!mkdtemp(fz_dir)) {
		perror("mkdtemp");
		abort();
	}
	atexit(fz_cleanup);
#ifdef FZ_CHILD_QUIET
	pthread_atfork(NULL, NULL, fz_child);
#endif
	return 0;
}

/* write n bytes to fz_dir/name; the path in a static buffer */
static const char *
fz_file(const char *name, const uint8_t *data, size_t n)
{
	static char path[2][128];
	static int k;
	char *p = path[k ^= 1];
	FILE *fp;

	snprintf(p, sizeof path[0], "%s/%s", fz_dir, name);
	fp = fopen(p, "wb");
	if (!fp || (n && fwrite(data, 1, n, fp) != n) || fclose(fp)) {
		perror(p);
		abort();
	}
	return p;
}

static void
fz_unlink(const char *name)
{
	char p[128];

	snprintf(p, sizeof p, "%s/%s", fz_dir, name);
	unlink(p);
}

#endif
