/* err.c - messages, exits and checked allocation */
#include "mp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define HUGE ((size_t)2 << 20)   /* a transparent huge page */
#define BIG ((size_t)8 << 20)    /* blocks from here on are worth it */

const char *mp_progname = "medpipe";
int mp_verbose;

static _Thread_local char errbuf[1024];

int
mp_seterr(const char *fmt, ...)
{
	va_list ap;
	int e = errno;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	n = strlen(errbuf);
	if (n > 0 && errbuf[n - 1] == ':')
		snprintf(errbuf + n, sizeof errbuf - n, " %s", strerror(e));
	return -1;
}

int
mp_preerr(const char *fmt, ...)
{
	char pre[512], old[1024];
	va_list ap;

	memcpy(old, errbuf, sizeof old);
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	snprintf(errbuf, sizeof errbuf, "%s: %s", pre, old);
	return -1;
}

const char *
mp_err(void)
{
	return errbuf[0] ? errbuf : "unknown error";
}

static void
vmsg(const char *fmt, va_list ap)
{
	char buf[1200];
	int e = errno;
	size_t n;

	vsnprintf(buf, sizeof buf, fmt, ap);
	n = strlen(buf);
	/* one line: fold any newline the message carries */
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\n' || buf[i] == '\r')
			buf[i] = ' ';
	if (n > 0 && buf[n - 1] == ':')
		fprintf(stderr, "%s: %s %s\n", mp_progname, buf, strerror(e));
	else
		fprintf(stderr, "%s: %s\n", mp_progname, buf);
}

void
mp_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
	exit(1);
}

void
mp_usage_die(const char *fmt, ...)
{
	va_list ap;

	char buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s (see '%s --help')\n", mp_progname, buf, mp_progname);
	exit(2);
}

void
mp_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
}

void
mp_note(const char *fmt, ...)
{
	va_list ap;

	if (!mp_verbose)
		return;
	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
}

void *
mp_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		mp_die("out of memory allocating %zu bytes", n);
	return p;
}

void *
mp_xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);

	if (!p)
		mp_die("out of memory allocating %zu x %zu bytes", n, sz);
	return p;
}

void *
mp_alloc_big(size_t n)
{
	void *p;

	if (n < BIG)
		return malloc(n ? n : 1);
	/* 2 MiB aligned, with transparent huge pages where the kernel offers them
	 * on request: far fewer page faults when a whole CT volume is written */
	p = aligned_alloc(HUGE, (n + HUGE - 1) / HUGE * HUGE);
	if (p)
		mp_advise_huge(p, n);
	return p;
}

void
mp_advise_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
	uintptr_t a = ((uintptr_t)p + HUGE - 1) / HUGE * HUGE, e = ((uintptr_t)p + n) / HUGE * HUGE;

	if (n >= BIG && e > a)
		madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
	(void)p;
	(void)n;
#endif
}

void *
mp_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		mp_die("out of memory allocating %zu bytes", n);
	return q;
}

char *
mp_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = mp_xmalloc(n);

	memcpy(d, s, n);
	return d;
}

int
mp_mulsize(size_t a, size_t b, size_t *out)
{
	if (a != 0 && b > SIZE_MAX / a)
		return mp_seterr("size overflow (%zu x %zu)", a, b);
	*out = a * b;
	return 0;
}

static double
clock_of(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double
mp_clock(void)
{
	return clock_of(CLOCK_MONOTONIC);
}

double
mp_cpu_clock(void)
{
	return clock_of(CLOCK_PROCESS_CPUTIME_ID);
}

double
mp_thread_clock(void)
{
	return clock_of(CLOCK_THREAD_CPUTIME_ID);
}
