/* afile.c - output files written whole or not at all: a temporary name in
 * the same folder, renamed at the end; removed on failure, exit or signal. */
#include "mp.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXTMP 256

static char *tmps[MAXTMP];
static volatile sig_atomic_t ntmps;
static pthread_mutex_t tmplock = PTHREAD_MUTEX_INITIALIZER;
static int handlers;

static void
cleanup(void)
{
	for (int i = 0; i < ntmps; i++)
		if (tmps[i])
			unlink(tmps[i]);
}

static void
onsignal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
install(void)
{
	if (handlers)
		return;
	handlers = 1;
	atexit(cleanup);
	signal(SIGINT, onsignal);
	signal(SIGTERM, onsignal);
	signal(SIGHUP, onsignal);
}

static void
reg(char *t)
{
	pthread_mutex_lock(&tmplock);
	install();
	for (int i = 0; i < ntmps; i++)
		if (!tmps[i]) {
			tmps[i] = t;
			pthread_mutex_unlock(&tmplock);
			return;
		}
	if (ntmps < MAXTMP) {
		tmps[ntmps] = t;
		ntmps++;
	}
	pthread_mutex_unlock(&tmplock);
}

static void
unreg(const char *t)
{
	pthread_mutex_lock(&tmplock);
	for (int i = 0; i < ntmps; i++)
		if (tmps[i] == t)
			tmps[i] = NULL;
	pthread_mutex_unlock(&tmplock);
}

/* the extension kept on the temporary name: ".nii.gz", ".nrrd", ... */
static const char *
extension(const char *base)
{
	const char *dot = strrchr(base, '.'), *p;

	if (!dot || dot == base)
		return "";
	if (strcmp(dot, ".gz") == 0 || strcmp(dot, ".bz2") == 0) {
		for (p = dot - 1; p > base; p--)
			if (*p == '.')
				return p;
	}
	return dot;
}

char *
mp_tmp_path(const char *path)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	const char *ext = extension(base);
	size_t dirlen = slash ? (size_t)(slash - path + 1) : 0;
	size_t n = dirlen + strlen(base) + 32;
	char *t = mp_xmalloc(n);
	int fd;

	if (!*base) {
		free(t);
		mp_seterr("%s: not a file name", path);
		return NULL;
	}
	snprintf(t, n, "%.*s.%.*s.tmp-XXXXXX%s", (int)dirlen, path,
		 (int)(strlen(base) - strlen(ext)), base, ext);
	fd = mkstemps(t, (int)strlen(ext));
	if (fd < 0) {
		mp_seterr("%s: cannot create a file in its folder:", path);
		free(t);
		return NULL;
	}
	close(fd);
	reg(t);
	return t;
}

int
mp_tmp_commit(char *tmp, const char *path)
{
	int rc = 0;

	if (rename(tmp, path) < 0) {
		rc = mp_seterr("%s: cannot rename the finished file into place:", path);
		unlink(tmp);
	}
	unreg(tmp);
	free(tmp);
	return rc;
}

void
mp_tmp_abort(char *tmp)
{
	if (!tmp)
		return;
	unlink(tmp);
	unreg(tmp);
	free(tmp);
}

mp_afile *
mp_afile_open(const char *path)
{
	mp_afile *a;
	char *t = mp_tmp_path(path);

	if (!t)
		return NULL;
	a = mp_xcalloc(1, sizeof *a);
	a->path = mp_xstrdup(path);
	a->tmp = t;
	a->fp = fopen(t, "wb");
	if (!a->fp) {
		mp_seterr("%s: cannot write:", path);
		mp_tmp_abort(t);
		free(a->path);
		free(a);
		return NULL;
	}
	return a;
}

int
mp_afile_commit(mp_afile *a)
{
	int bad = fflush(a->fp) != 0 || ferror(a->fp);
	int e = errno;

	if (fclose(a->fp) != 0)
		bad = 1;
	else
		errno = e;
	a->fp = NULL;
	if (bad) {
		mp_seterr("%s: write error:", a->path);
		mp_afile_abort(a);
		return -1;
	}
	{
		int rc = mp_tmp_commit(a->tmp, a->path);
		free(a->path);
		free(a);
		return rc;
	}
}

void
mp_afile_abort(mp_afile *a)
{
	if (!a)
		return;
	if (a->fp)
		fclose(a->fp);
	mp_tmp_abort(a->tmp);
	free(a->path);
	free(a);
}

void
mp_init(const char *progname)
{
	mp_progname = progname;
	/* writes to a closed pipe fail with EPIPE; the writer then ends quietly */
	signal(SIGPIPE, SIG_IGN);
	pthread_mutex_lock(&tmplock);
	install();
	pthread_mutex_unlock(&tmplock);
}
