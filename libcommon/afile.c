/* afile.c - output files written whole or not at all: a temporary name in
 * the same folder, renamed at the end; removed on failure, exit or signal.
 *
 * The temporary name is ".NAME.tmp-PID-XXXXXX.EXT": the writer's process id
 * in it, and the writer holds an flock on it until the rename.  A run killed
 * with SIGKILL cannot remove its temporary; the next writer of the same NAME
 * (the first time it writes in that folder) removes every temporary there
 * whose writer is gone (no such process here, or a zombie; and no lock
 * held), so interrupted runs do not pile them up.  Files get the mode
 * 0666 & ~umask, as any Unix tool's (mkstemp alone gives 0600). */
#include "mp.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXTMP 256

static char *tmps[MAXTMP];
static int tmpfds[MAXTMP];    /* the descriptor holding the flock, or -1 */
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

/* the umask, read without changing it where /proc tells (other threads may
 * be creating files), else with umask() once, early (mp_init) */
static mode_t filemode;
static int havemode;

static void
read_umask(void)
{
	FILE *fp;
	char line[128];
	mode_t m = 022;
	int found = 0;

	if (havemode)
		return;
	if ((fp = fopen("/proc/self/status", "r"))) {
		while (fgets(line, sizeof line, fp))
			if (strncmp(line, "Umask:", 6) == 0) {
				m = (mode_t)strtoul(line + 6, NULL, 8);
				found = 1;
				break;
			}
		fclose(fp);
	}
	if (!found) {
		m = umask(022);
		umask(m);
	}
	filemode = 0666 & ~m;
	havemode = 1;
}

/* register t (its flock held on fd); fd is closed when it cannot be kept */
static void
reg(char *t, int fd)
{
	pthread_mutex_lock(&tmplock);
	install();
	for (int i = 0; i < ntmps; i++)
		if (!tmps[i]) {
			tmps[i] = t;
			tmpfds[i] = fd;
			pthread_mutex_unlock(&tmplock);
			return;
		}
	if (ntmps < MAXTMP) {
		tmps[ntmps] = t;
		tmpfds[ntmps] = fd;
		ntmps++;
		fd = -1;
	}
	pthread_mutex_unlock(&tmplock);
	if (fd >= 0)
		close(fd);   /* not kept: the pid in the name still marks it as ours */
}

static void
unreg(const char *t)
{
	pthread_mutex_lock(&tmplock);
	for (int i = 0; i < ntmps; i++)
		if (tmps[i] == t) {
			tmps[i] = NULL;
			if (tmpfds[i] >= 0)
				close(tmpfds[i]);
			tmpfds[i] = -1;
		}
	pthread_mutex_unlock(&tmplock);
}

/* ".NAME.tmp-PID-XXXXXX" or ".NAME.tmp-PID-XXXXXX.EXT", as mp_tmp_path
 * names them: the writer's pid, else 0 */
static long
stale_pid(const char *n)
{
	const char *t = NULL, *p;
	char *end;
	long pid;

	if (n[0] != '.')
		return 0;
	for (p = strstr(n + 1, ".tmp-"); p; p = strstr(p + 1, ".tmp-"))
		t = p;
	if (!t || t == n + 1 || !isdigit((unsigned char)t[5]))
		return 0;
	pid = strtol(t + 5, &end, 10);
	if (pid <= 0 || *end != '-')
		return 0;
	for (int i = 1; i <= 6; i++)
		if (!isalnum((unsigned char)end[i]))
			return 0;
	return end[7] == 0 || end[7] == '.' ? pid : 0;
}

/* the process is no more: none of that id here, or a zombie (its files,
 * and so its lock, already closed; its parent killed too, it may wait long
 * to be reaped) */
static int
gone(long pid)
{
	char path[64], buf[512], *p;
	FILE *fp;
	size_t n;

	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return 1;
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	if (!(fp = fopen(path, "r")))
		return 0;
	n = fread(buf, 1, sizeof buf - 1, fp);
	fclose(fp);
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* the folders already cleaned by this process */
#define MAXDIRS 64
static char *cleaned[MAXDIRS];
static int ncleaned;

/* remove the temporaries in dir left by writers that are gone: the pid in
 * the name is no live process here and nobody holds their lock.  Once per
 * folder and process (a run writing 100000 slice files scans it once). */
static void
remove_stale(const char *dir)
{
	DIR *d;
	struct dirent *e;
	size_t dl = strlen(dir);
	int seen = 0;

	pthread_mutex_lock(&tmplock);
	for (int i = 0; i < ncleaned && !seen; i++)
		seen = strcmp(cleaned[i], dir) == 0;
	if (!seen && ncleaned < MAXDIRS)
		cleaned[ncleaned++] = mp_xstrdup(dir);
	pthread_mutex_unlock(&tmplock);
	if (seen || !(d = opendir(dir)))
		return;
	while ((e = readdir(d))) {
		const char *n = e->d_name;
		long pid = stale_pid(n);
		char *full;
		int fd;
		struct stat st;

		if (pid == 0 || pid == (long)getpid() || (pid_t)pid != pid || !gone(pid))
			continue;   /* not ours, or alive (or not ours to judge) */
		full = mp_xmalloc(dl + strlen(n) + 2);
		sprintf(full, "%s/%s", dir, n);
		fd = open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd >= 0) {
			if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0) {
				if (unlink(full) == 0)
					mp_note("%s: removed a temporary left by process %ld, which is gone", full, pid);
			}
			close(fd);
		}
		free(full);
	}
	closedir(d);
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
	size_t n = dirlen + strlen(base) + 48;
	size_t stem = strlen(base) - strlen(ext);
	char *t = mp_xmalloc(n);
	int fd;

	if (!*base) {
		free(t);
		mp_seterr("%s: not a file name", path);
		return NULL;
	}
	{
		char *dir = dirlen ? mp_xmalloc(dirlen + 1) : NULL;
		if (dir)
			snprintf(dir, dirlen + 1, "%.*s", (int)dirlen, path);
		remove_stale(dir ? dir : ".");
		free(dir);
	}
	snprintf(t, n, "%.*s.%.*s.tmp-%ld-XXXXXX%s", (int)dirlen, path,
		 (int)stem, base, (long)getpid(), ext);
	fd = mkostemps(t, (int)strlen(ext), O_CLOEXEC);
	if (fd < 0) {
		mp_seterr("%s: cannot create a file in its folder:", path);
		free(t);
		return NULL;
	}
	pthread_mutex_lock(&tmplock);
	read_umask();
	pthread_mutex_unlock(&tmplock);
	/* failures of either change nothing in the data written */
	(void)fchmod(fd, filemode);
	(void)flock(fd, LOCK_EX | LOCK_NB);
	reg(t, fd);
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
	read_umask();
	pthread_mutex_unlock(&tmplock);
}
