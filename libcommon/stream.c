/* stream.c - the frame stream: NRRD frames back to back on a file descriptor
 * (or memory), read header by header, data in pieces; and the writer. */
#include "mp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define INBUF (1 << 20)
#define HDR_MAX (1 << 20)
#define REST_CHUNK ((size_t)64 << 20)

struct mp_in {
	int fd, own;
	char *name;
	unsigned char *buf;
	size_t cap, pos, len;
	int mem;          /* buf is the caller's memory: no refill */
	int eof;
	int frameno;
	/* the current frame */
	size_t left;      /* decoded bytes still to read */
	size_t elsize;
	int swap, gzip;
	z_stream z;
	int zinit, zend;
	mp_in *prev, *next;   /* the open inputs */
};

/* every open input, so that one still open when a program ends with mp_die
 * is reachable (no leak report), whatever the caller's stack holds */
static mp_in *open_inputs;

/* a pipe of 1 MiB rather than 64 KiB: far fewer wake-ups between the stages
 * of a pipeline (best effort: the limit may be lower) */
static void
pipe_big(int fd)
{
#ifdef F_SETPIPE_SZ
	struct stat st;

	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) && fcntl(fd, F_GETPIPE_SZ) < (1 << 20))
		(void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
#else
	(void)fd;
#endif
}

static mp_in *
in_new(const char *name)
{
	mp_in *in = mp_xcalloc(1, sizeof *in);

	in->name = mp_xstrdup(name);
	in->fd = -1;
	in->next = open_inputs;
	if (open_inputs)
		open_inputs->prev = in;
	open_inputs = in;
	return in;
}

mp_in *
mp_in_fd(int fd, const char *name)
{
	mp_in *in = in_new(name);

	in->fd = fd;
	in->cap = INBUF;
	pipe_big(fd);
	in->buf = mp_xmalloc(in->cap);
	return in;
}

mp_in *
mp_in_open(const char *path)
{
	int fd;
	mp_in *in;

	if (!path || strcmp(path, "-") == 0) {
		/* a program started with no input at a prompt would wait silently */
		if (isatty(0))
			mp_usage_die("no input: standard input is a terminal; give input files or pipe frames in");
		return mp_in_fd(0, "<stdin>");
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		mp_seterr("%s: cannot open:", path);
		return NULL;
	}
	in = mp_in_fd(fd, path);
	in->own = 1;
	return in;
}

mp_in *
mp_in_mem(const void *buf, size_t n, const char *name)
{
	mp_in *in = in_new(name);

	in->buf = (unsigned char *)(uintptr_t)buf;
	in->len = in->cap = n;
	in->mem = 1;
	return in;
}

/* An input that ended before its first frame.  A pipe that brought nothing
 * means the program before this one failed and has said why on its own line:
 * exit 1 quietly then (with --verbose, say so), so one failure in a long
 * pipeline prints one line.  A file or a non-empty input gets the message. */
void
mp_in_die_empty(const mp_in *in)
{
	struct stat st;
	int fifo = in->fd >= 0 && fstat(in->fd, &st) == 0 && S_ISFIFO(st.st_mode);

	if (fifo && !mp_verbose)
		exit(1);
	mp_die("%s: empty stream: no frame%s", in->name,
	       fifo ? " (the program before this one wrote nothing)" : "");
}

void
mp_in_close(mp_in *in)
{
	if (!in)
		return;
	if (in->prev)
		in->prev->next = in->next;
	else
		open_inputs = in->next;
	if (in->next)
		in->next->prev = in->prev;
	if (in->zinit)
		inflateEnd(&in->z);
	if (in->own)
		close(in->fd);
	if (!in->mem)
		free(in->buf);
	free(in->name);
	free(in);
}

const char *
mp_in_name(const mp_in *in)
{
	return in->name;
}

int
mp_in_frameno(const mp_in *in)
{
	return in->frameno;
}

size_t
mp_in_left(const mp_in *in)
{
	return in->left;
}

/* more bytes into the buffer: 1 got some, 0 end of input, -1 error */
static int
refill(mp_in *in)
{
	ssize_t r;

	if (in->pos < in->len)
		return 1;
	if (in->mem || in->eof)
		return 0;
	in->pos = in->len = 0;
	do
		r = read(in->fd, in->buf, in->cap);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return mp_seterr("%s: read error:", in->name);
	if (r == 0) {
		in->eof = 1;
		return 0;
	}
	in->len = (size_t)r;
	return 1;
}

static int
ferr(mp_in *in, const char *what)
{
	return mp_preerr("%s: frame %d%s%s", in->name, in->frameno, what ? ": " : "", what ? what : "");
}

int
mp_in_header(mp_in *in, mp_frame *f)
{
	char *hdr = NULL;
	size_t n = 0, cap = 0;
	int r, nl = 0;
	mp_nrrd_enc enc;

	mp_frame_init(f);
	if (in->left > 0 && mp_in_skipdata(in) < 0)
		return -1;
	r = refill(in);
	if (r <= 0)
		return r; /* clean end of stream, or read error */
	in->frameno++;
	/* read up to and including the empty line that ends the header */
	for (;;) {
		unsigned char *p, *e;
		size_t take;

		if (refill(in) <= 0) {
			free(hdr);
			if (n == 0)
				return 0;
			mp_seterr("%s: frame %d: header: truncated (no empty line after %zu bytes)", in->name, in->frameno, n);
			return -1;
		}
		p = in->buf + in->pos;
		e = in->buf + in->len;
		/* the first bytes must be the magic, so that garbage fails fast */
		if (n < 4) {
			size_t k = 0;
			while (n + k < 4 && p + k < e) {
				if ((unsigned char)"NRRD"[n + k] != p[k]) {
					free(hdr);
					return mp_seterr("%s: frame %d: not a NRRD frame (no 'NRRD' magic at the start)", in->name, in->frameno);
				}
				k++;
			}
		}
		take = 0;
		while (p + take < e) {
			unsigned char c = p[take++];
			if (c == '\n') {
				if (nl) {
					nl = 2;
					break;
				}
				nl = 1;
			} else if (c != '\r') {
				nl = 0;
			}
		}
		if (n + take > HDR_MAX) {
			free(hdr);
			return mp_seterr("%s: frame %d: header longer than %d bytes", in->name, in->frameno, HDR_MAX);
		}
		if (n + take + 1 > cap) {
			cap = (n + take + 1) * 2;
			hdr = mp_xrealloc(hdr, cap);
		}
		memcpy(hdr + n, p, take);
		n += take;
		in->pos += take;
		if (nl == 2)
			break;
	}
	hdr[n] = 0;
	if (mp_nrrd_parse_header(hdr, n, f, &enc) < 0) {
		free(hdr);
		return ferr(in, NULL);
	}
	if (enc.datafile) {
		free(enc.datafile);
		free(hdr);
		mp_frame_free(f);
		return mp_seterr("%s: frame %d: header: 'data file' is not allowed in a stream", in->name, in->frameno);
	}
	if (enc.ascii || enc.bzip2 || enc.byteskip || enc.lineskip) {
		free(hdr);
		mp_frame_free(f);
		return mp_seterr("%s: frame %d: header: %s not supported in a stream (use raw or gzip)",
				 in->name, in->frameno,
				 enc.ascii ? "ascii encoding" : enc.bzip2 ? "bzip2 encoding" : "byte/line skip");
	}
	in->left = mp_frame_nbytes(f);
	in->elsize = mp_type_size(f->type);
	in->swap = in->elsize > 1 && enc.big != mp_host_big();
	in->gzip = enc.gzip;
	in->zend = 0;
	if (in->gzip) {
		if (in->zinit)
			inflateEnd(&in->z);
		memset(&in->z, 0, sizeof in->z);
		if (inflateInit2(&in->z, 15 + 32) != Z_OK) {
			free(hdr);
			mp_frame_free(f);
			return mp_seterr("%s: frame %d: cannot start gzip decoder", in->name, in->frameno);
		}
		in->zinit = 1;
	}
	f->rawhdr = hdr;
	f->rawhdr_len = n;
	{
		/* a raw little-endian LPS frame can be passed on byte for byte */
		const char *sp = strstr(hdr, "\nspace: ");
		f->raw_ok = !enc.gzip && (!enc.big || in->elsize == 1) && !mp_host_big() &&
			    sp && strncmp(sp + 8, "left-posterior-superior\n", 24) == 0;
	}
	return 1;
}

/* raw bytes of the data section */
static int
read_raw(mp_in *in, unsigned char *dst, size_t n)
{
	while (n > 0) {
		size_t k;
		int r;
		if (in->pos == in->len && !in->mem && !in->eof && n >= in->cap) {
			/* a large read with nothing buffered: straight into dst */
			ssize_t got;
			do
				got = read(in->fd, dst, n);
			while (got < 0 && errno == EINTR);
			if (got < 0) {
				mp_seterr("%s: read error:", in->name);
				return ferr(in, "data");
			}
			if (got == 0) {
				in->eof = 1;
				return mp_seterr("%s: frame %d: data: truncated (%zu bytes missing)", in->name, in->frameno, in->left);
			}
			dst += got;
			n -= (size_t)got;
			in->left -= (size_t)got;
			continue;
		}
		r = refill(in);
		if (r < 0)
			return ferr(in, "data");
		if (r == 0)
			return mp_seterr("%s: frame %d: data: truncated (%zu bytes missing)", in->name, in->frameno, in->left);
		k = in->len - in->pos;
		if (k > n)
			k = n;
		memcpy(dst, in->buf + in->pos, k);
		in->pos += k;
		dst += k;
		n -= k;
		in->left -= k;
	}
	return 0;
}

static int
read_gz(mp_in *in, unsigned char *dst, size_t n)
{
	while (n > 0) {
		int r, zr;
		size_t before;
		if (in->zend)
			return mp_seterr("%s: frame %d: data: gzip stream ends %zu bytes early", in->name, in->frameno, in->left);
		r = refill(in);
		if (r < 0)
			return ferr(in, "data");
		if (r == 0)
			return mp_seterr("%s: frame %d: data: truncated gzip stream (%zu bytes missing)", in->name, in->frameno, in->left);
		in->z.next_in = in->buf + in->pos;
		in->z.avail_in = (uInt)(in->len - in->pos);
		in->z.next_out = dst;
		in->z.avail_out = n > (1u << 30) ? (1u << 30) : (uInt)n;
		before = in->z.avail_out;
		zr = inflate(&in->z, Z_NO_FLUSH);
		in->pos = in->len - in->z.avail_in;
		if (zr == Z_STREAM_END)
			in->zend = 1;
		else if (zr != Z_OK && zr != Z_BUF_ERROR)
			return mp_seterr("%s: frame %d: data: corrupt gzip data (%s)", in->name, in->frameno,
					 in->z.msg ? in->z.msg : "inflate failed");
		before -= in->z.avail_out;
		dst += before;
		n -= before;
		in->left -= before;
	}
	/* at the end of the frame's data, consume the gzip trailer too */
	if (in->left == 0 && !in->zend) {
		unsigned char extra[64];
		for (;;) {
			int zr, r = refill(in);
			if (r <= 0)
				return mp_seterr("%s: frame %d: data: truncated gzip trailer", in->name, in->frameno);
			in->z.next_in = in->buf + in->pos;
			in->z.avail_in = (uInt)(in->len - in->pos);
			in->z.next_out = extra;
			in->z.avail_out = sizeof extra;
			zr = inflate(&in->z, Z_NO_FLUSH);
			in->pos = in->len - in->z.avail_in;
			if (in->z.avail_out != sizeof extra)
				return mp_seterr("%s: frame %d: data: gzip data longer than the header's sizes", in->name, in->frameno);
			if (zr == Z_STREAM_END)
				break;
			if (zr != Z_OK && zr != Z_BUF_ERROR)
				return mp_seterr("%s: frame %d: data: corrupt gzip data", in->name, in->frameno);
		}
		in->zend = 1;
	}
	return 0;
}

int
mp_in_data(mp_in *in, void *buf, size_t n)
{
	if (n > in->left)
		return mp_seterr("%s: frame %d: read past the end of the data", in->name, in->frameno);
	if (in->swap && n % in->elsize)
		return mp_seterr("%s: frame %d: data read of %zu bytes is not whole voxels", in->name, in->frameno, n);
	if ((in->gzip ? read_gz(in, buf, n) : read_raw(in, buf, n)) < 0)
		return -1;
	if (in->swap)
		mp_swap_bytes(buf, in->elsize, n / in->elsize);
	return 0;
}

int
mp_in_rest_spool(mp_in *in, mp_frame *f, size_t over)
{
	const char *e = getenv("MEDPIPE_SPOOL_BYTES"), *dir = getenv("TMPDIR");
	size_t total = in->left, done = 0, step = (size_t)4 << 20;
	char path[4096];
	unsigned char *buf;
	void *p;
	int fd;

	if (e && *e)
		over = strtoull(e, NULL, 10);
	if (total <= over || total == 0)
		return mp_in_rest(in, f);
	if (!dir || !*dir)
		dir = "/tmp";
	snprintf(path, sizeof path, "%s/medpipe-spool-XXXXXX", dir);
	if ((fd = mkstemp(path)) < 0)
		return mp_seterr("%s: frame %d: cannot make a spool file in %s:", in->name, in->frameno, dir);
	unlink(path);
	buf = malloc(step);
	if (!buf) {
		close(fd);
		return mp_seterr("%s: frame %d: out of memory", in->name, in->frameno);
	}
	step -= step % (in->elsize ? in->elsize : 1);
	while (done < total) {
		size_t k = total - done < step ? total - done : step;
		if (mp_in_data(in, buf, k) < 0)
			goto fail;
		for (size_t w = 0; w < k;) {
			ssize_t n = pwrite(fd, buf + w, k - w, (off_t)(done + w));
			if (n <= 0) {
				mp_seterr("%s: frame %d: spool file in %s (%zu bytes):", in->name, in->frameno, dir, total);
				goto fail;
			}
			w += (size_t)n;
		}
		done += k;
	}
	free(buf);
	p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return mp_seterr("%s: frame %d: cannot map the spool file (%zu bytes):", in->name, in->frameno, total);
	mp_frame_clear_data(f);
	f->data = p;
	f->mapped = total;
	return 0;
fail:
	free(buf);
	close(fd);
	return -1;
}

#define MAP_MIN ((size_t)1 << 20)

int
mp_in_rest_map(mp_in *in, mp_frame *f)
{
	size_t total = in->left, buffered = in->len - in->pos;
	struct stat st;
	off_t cur, at, base;
	long pg = sysconf(_SC_PAGESIZE);
	void *p;

	/* raw, host order, from a regular file that holds all of it */
	if (in->mem || in->gzip || in->swap || total < MAP_MIN || buffered >= total || in->fd < 0 || pg <= 0 ||
	    fstat(in->fd, &st) < 0 || !S_ISREG(st.st_mode) || (cur = lseek(in->fd, 0, SEEK_CUR)) < 0)
		return mp_in_rest(in, f);
	at = cur - (off_t)buffered;   /* file offset of the frame's next data byte */
	if (at < 0 || (uint64_t)st.st_size < (uint64_t)at + total)
		return mp_in_rest(in, f);   /* short: the reader reports the truncation */
	/* the mapping starts on a page, so the data lies at the header's length
	 * modulo the page: after a header of odd length an int16 or float would
	 * be misaligned (undefined behaviour; UBSan stops there); such data is
	 * read into fresh memory instead */
	if (at % MP_DATA_ALIGN)
		return mp_in_rest(in, f);
	base = at - at % pg;
	p = mmap(NULL, total + (size_t)(at - base), PROT_READ | PROT_WRITE, MAP_PRIVATE, in->fd, base);
	if (p == MAP_FAILED)
		return mp_in_rest(in, f);
	if (lseek(in->fd, at + (off_t)total, SEEK_SET) < 0) {
		munmap(p, total + (size_t)(at - base));
		return mp_in_rest(in, f);
	}
	mp_frame_clear_data(f);
	f->data = (unsigned char *)p + (at - base);
	f->mapped = total;
	in->pos = in->len = 0;
	in->left = 0;
	return 0;
}

int
mp_in_rest(mp_in *in, mp_frame *f)
{
	size_t total = in->left, have = 0, cap;
	unsigned char *p;

	mp_frame_clear_data(f);
	/* grow as data arrives: a header that lies about its size cannot make
	 * us allocate more than twice what really came */
	cap = total < REST_CHUNK ? total : REST_CHUNK;
	p = malloc(cap ? cap : 1);
	if (!p)
		return mp_seterr("%s: frame %d: out of memory for %zu bytes", in->name, in->frameno, cap);
	while (have < total) {
		size_t k;
		if (have == cap) {
			size_t nc = cap * 2 < total ? cap * 2 : total;
			unsigned char *q = realloc(p, nc);
			if (!q) {
				free(p);
				return mp_seterr("%s: frame %d: out of memory for %zu bytes", in->name, in->frameno, nc);
			}
			p = q;
			cap = nc;
			mp_advise_huge(p, cap);
		}
		k = cap - have;
		if (in->swap)
			k -= k % in->elsize;
		if (mp_in_data(in, p + have, k) < 0) {
			free(p);
			return -1;
		}
		have += k;
	}
	f->data = p;
	return 0;
}

int
mp_in_skipdata(mp_in *in)
{
	unsigned char tmp[65536];

	while (in->left > 0) {
		size_t k = in->left < sizeof tmp ? in->left : sizeof tmp;
		if (in->swap)
			k -= k % in->elsize;
		if (k == 0)
			k = in->left;
		if (mp_in_data(in, tmp, k) < 0)
			return -1;
	}
	return 0;
}

int
mp_in_next(mp_in *in, mp_frame *f)
{
	int r = mp_in_header(in, f);

	if (r <= 0)
		return r;
	if (mp_in_rest(in, f) < 0) {
		mp_frame_free(f);
		return -1;
	}
	return 1;
}

/* ------------------------------------------------------------------ output */
struct mp_out {
	FILE *fp;
	char *name;
	mp_afile *af;
	int is_stdout;
	size_t left;     /* bytes of data the current frame still needs */
	size_t elsize;
	int frames;
	uint64_t pos;    /* bytes written so far */
};

static void
out_fail(mp_out *o)
{
	/* the reader downstream went away: end quietly (DESIGN.md) */
	if (errno == EPIPE && o->is_stdout)
		_exit(0);
}

mp_out *
mp_out_stdout(void)
{
	mp_out *o;

	if (isatty(1))
		mp_usage_die("refusing to write binary frames to a terminal; redirect or pipe the output");
	pipe_big(1);
	o = mp_xcalloc(1, sizeof *o);
	o->fp = stdout;
	o->name = mp_xstrdup("<stdout>");
	o->is_stdout = 1;
	return o;
}

mp_out *
mp_out_fp(FILE *fp, const char *name)
{
	mp_out *o = mp_xcalloc(1, sizeof *o);

	o->fp = fp;
	o->name = mp_xstrdup(name);
	return o;
}

mp_out *
mp_out_file(const char *path)
{
	mp_afile *a = mp_afile_open(path);
	mp_out *o;

	if (!a)
		return NULL;
	o = mp_out_fp(a->fp, path);
	o->af = a;
	return o;
}

static int
out_write(mp_out *o, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, o->fp) != n) {
		out_fail(o);
		return mp_seterr("%s: write error:", o->name);
	}
	o->pos += n;
	return 0;
}

int
mp_out_header(mp_out *o, const mp_frame *f)
{
	size_t len;
	char *h;
	int r;

	if (o->left)
		return mp_seterr("%s: frame %d: %zu bytes of data missing", o->name, o->frames, o->left);
	if (mp_frame_check(f) < 0)
		return mp_preerr("%s: frame %d", o->name, o->frames + 1);
	h = mp_nrrd_header_text(f, &len);
	/* a comment line ("#" and spaces) before the empty line puts the data at
	 * a multiple of MP_DATA_ALIGN bytes from the start of the output, so that
	 * a reader of the saved stream can map it (mp_in_rest_map) */
	size_t pad = (size_t)((MP_DATA_ALIGN - (o->pos + len) % MP_DATA_ALIGN) % MP_DATA_ALIGN);
	if (pad == 1)
		pad += MP_DATA_ALIGN;   /* the shortest comment line is "#\n" */
	if (pad && len >= 2 && h[len - 1] == '\n' && h[len - 2] == '\n') {
		h = mp_xrealloc(h, len + pad + 1);
		h[len - 1] = '#';
		memset(h + len, ' ', pad - 2);
		h[len + pad - 2] = '\n';
		h[len + pad - 1] = '\n';
		h[len + pad] = 0;
		len += pad;
	}
	r = out_write(o, h, len);
	free(h);
	o->frames++;
	o->left = mp_frame_nbytes(f);
	o->elsize = mp_type_size(f->type);
	return r;
}

int
mp_out_data(mp_out *o, const void *buf, size_t n)
{
	if (n > o->left)
		return mp_seterr("%s: frame %d: more data than the header says", o->name, o->frames);
	o->left -= n;
	if (mp_host_big() && o->elsize > 1) {
		unsigned char tmp[65536];
		const unsigned char *p = buf;
		size_t step = sizeof tmp - sizeof tmp % o->elsize;
		while (n > 0) {
			size_t k = n < step ? n : step;
			memcpy(tmp, p, k);
			mp_swap_bytes(tmp, o->elsize, k / o->elsize);
			if (out_write(o, tmp, k) < 0)
				return -1;
			p += k;
			n -= k;
		}
		return 0;
	}
	return out_write(o, buf, n);
}

int
mp_out_frame(mp_out *o, const mp_frame *f)
{
	if (!f->data)
		return mp_seterr("%s: frame %d: no data to write", o->name, o->frames + 1);
	if (mp_out_header(o, f) < 0)
		return -1;
	return mp_out_data(o, f->data, mp_frame_nbytes(f));
}

int
mp_out_close(mp_out *o)
{
	int rc = 0;

	if (!o)
		return 0;
	if (o->left) {
		mp_seterr("%s: frame %d: %zu bytes of data missing", o->name, o->frames, o->left);
		rc = -1;
	}
	if (o->af) {
		if (rc < 0)
			mp_afile_abort(o->af);
		else if (mp_afile_commit(o->af) < 0)
			rc = -1;
	} else if (fflush(o->fp) != 0 || ferror(o->fp)) {
		out_fail(o);
		if (rc == 0)
			mp_seterr("%s: write error:", o->name);
		rc = -1;
	}
	free(o->name);
	free(o);
	return rc;
}

/* frames up to this size are read whole before any byte goes out, so that a
 * truncated or corrupt input frame never reaches the reader downstream in part */
#define PASS_WHOLE ((size_t)64 << 20)

int
mp_pass(mp_in *in, mp_frame *f, mp_out *o)
{
	unsigned char tmp[1 << 16];

	if (in->left <= PASS_WHOLE) {
		size_t n = in->left;
		unsigned char *p = malloc(n);
		int rc;
		if (!p)
			return mp_seterr("%s: frame %d: out of memory for %zu bytes", in->name, in->frameno, n);
		if ((f->raw_ok && f->rawhdr ? read_raw(in, p, n) : mp_in_data(in, p, n)) < 0) {
			free(p);
			return -1;
		}
		if (f->raw_ok && f->rawhdr) {
			rc = o->left ? mp_seterr("%s: frame %d: %zu bytes of data missing", o->name, o->frames, o->left)
				     : out_write(o, f->rawhdr, f->rawhdr_len);
			if (rc == 0) {
				o->frames++;
				o->left = n;
				o->elsize = 1;
			}
		} else {
			rc = mp_out_header(o, f);
		}
		if (rc == 0)
			rc = mp_out_data(o, p, n);
		free(p);
		return rc;
	}

	if (f->raw_ok && f->rawhdr) {
		/* byte for byte: the header as it came, then the raw data */
		if (o->left)
			return mp_seterr("%s: frame %d: %zu bytes of data missing", o->name, o->frames, o->left);
		if (out_write(o, f->rawhdr, f->rawhdr_len) < 0)
			return -1;
		o->frames++;
		o->left = in->left;
		o->elsize = 1;
		/* out of the input buffer as it fills, no copy in between */
		while (in->left > 0) {
			size_t k;
			int r = refill(in);
			if (r < 0)
				return ferr(in, "data");
			if (r == 0)
				return mp_seterr("%s: frame %d: data: truncated (%zu bytes missing)", in->name, in->frameno, in->left);
			k = in->len - in->pos < in->left ? in->len - in->pos : in->left;
			if (mp_out_data(o, in->buf + in->pos, k) < 0)
				return -1;
			in->pos += k;
			in->left -= k;
		}
		return 0;
	}
	if (mp_out_header(o, f) < 0)
		return -1;
	while (in->left > 0) {
		size_t k = in->left < sizeof tmp ? in->left : sizeof tmp;
		if (in->swap)
			k -= k % in->elsize;
		if (mp_in_data(in, tmp, k) < 0 || mp_out_data(o, tmp, k) < 0)
			return -1;
	}
	return 0;
}

int
mp_out_held(mp_out *o, const mp_frame *f)
{
	if (!f->raw_ok || !f->rawhdr)
		return mp_out_frame(o, f);
	/* byte for byte: the header as it came, then the data as held */
	if (o->left)
		return mp_seterr("%s: frame %d: %zu bytes of data missing", o->name, o->frames, o->left);
	if (out_write(o, f->rawhdr, f->rawhdr_len) < 0)
		return -1;
	o->frames++;
	o->left = mp_frame_nbytes(f);
	o->elsize = 1;
	return mp_out_data(o, f->data, o->left);
}
