/* zipwrite.c - a streaming zip writer (the container of .npz files).
 *
 * Entries are written as their data arrives: deflate (raw zlib stream) or
 * stored, CRC-32 computed on the way. On a seekable output the local header
 * is patched with the CRC and sizes afterwards (no data descriptor); on a pipe
 * general-purpose bit 3 is set and a data descriptor follows the data. ZIP64
 * extra fields are written for entries that may reach 4 GiB, and ZIP64 end
 * records when the archive's offsets or entry count need them. Timestamps are
 * fixed (1980-01-01 00:00) so that the same input gives the same bytes.
 *
 * Levels 1..3 deflate with ISA-L's igzip (its levels 1..3: about zlib level
 * 1's output at a fifth of its CPU time), 4..9 with zlib; CRC-32 is ISA-L's.
 */
#include "mp_label.h"

#include <errno.h>
#include <pthread.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>

#define ZBUF (256u << 10)
#define PIECE (1u << 20)
#define DICT (32u << 10)
#define MAXTHR 16
#define BIG 0xFFFFFFFFu
/* entries that may pass this size get ZIP64 local headers */
#define ZIP64_AT 0xF0000000ull

typedef struct {
	char *name;
	uint32_t crc;
	uint64_t csize, usize, off;
	int method, flags, z64local;
} zentry;

struct mp_zip {
	FILE *fp;
	char *name;
	int level, seekable, failed;
	int force64;            /* MEDPIPE_ZIP64=1: ZIP64 records everywhere (tests) */
	uint64_t pos;
	zentry *e;
	size_t ne, cap;
	/* the current entry */
	int open;
	unsigned char *obuf;
	/* deflate: a batch of nthr pieces, compressed in parallel */
	int nthr;
	unsigned char *batch;       /* nthr * PIECE bytes of input */
	size_t fill;
	unsigned char dict[DICT];   /* the input before the batch */
	size_t dictlen;
	struct piece {
		z_stream zs;
		struct isal_zstream iz;     /* levels 1..3 */
		unsigned char *lbuf;        /* its level buffer */
		int init, flush, err, level;
		const unsigned char *in, *dict;
		size_t len, dictlen, olen, ocap;
		unsigned char *out;
	} pc[MAXTHR];
};

static void
put16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8);
}

static void
put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void
put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static int
zout(mp_zip *z, const void *buf, size_t n)
{
	if (n && fwrite(buf, 1, n, z->fp) != n) {
		z->failed = 1;
		return mp_seterr("%s: write error: %s", z->name, strerror(errno));
	}
	z->pos += n;
	return 0;
}

mp_zip *
mp_zip_open(FILE *fp, const char *name, int level)
{
	mp_zip *z = mp_xcalloc(1, sizeof *z);
	off_t at;

	z->fp = fp;
	z->name = mp_xstrdup(name ? name : "<zip>");
	z->level = level < 0 ? 0 : level > 9 ? 9 : level;
	at = ftello(fp);
	z->seekable = at >= 0 && fseeko(fp, at, SEEK_SET) == 0;
	z->pos = at > 0 ? (uint64_t)at : 0;
	z->obuf = mp_xmalloc(ZBUF);
	{
		const char *t = getenv("MEDPIPE_THREADS");
		long n = t ? strtol(t, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
		z->nthr = n < 1 ? 1 : n > MAXTHR ? MAXTHR : (int)n;
	}
	z->force64 = getenv("MEDPIPE_ZIP64") && strcmp(getenv("MEDPIPE_ZIP64"), "1") == 0;
	return z;
}

int
mp_zip_begin(mp_zip *z, const char *entry, int64_t usize)
{
	unsigned char h[30 + 20];
	size_t nl = strlen(entry);
	zentry *e;

	if (z->open)
		return mp_seterr("%s: entry %s: the previous entry is still open", z->name, entry);
	if (nl == 0 || nl > 0xFFFF)
		return mp_seterr("%s: entry name of %zu bytes", z->name, nl);
	if (z->ne == z->cap) {
		z->cap = z->cap ? 2 * z->cap : 16;
		z->e = mp_xrealloc(z->e, z->cap * sizeof *z->e);
	}
	e = &z->e[z->ne];
	memset(e, 0, sizeof *e);
	e->name = mp_xstrdup(entry);
	e->off = z->pos;
	e->method = z->level > 0 ? 8 : 0;
	e->flags = z->seekable ? 0 : 8;
	if (e->method == 8) {
		/* level 1..2: "fast" flag bits (2, 4) as zip tools set them */
		e->flags |= z->level <= 2 ? 4 : z->level >= 8 ? 2 : 0;
	}
	e->z64local = z->force64 || usize < 0 || (uint64_t)usize >= ZIP64_AT;
	memset(h, 0, sizeof h);
	put32(h, 0x04034b50);
	put16(h + 4, e->z64local ? 45 : 20);
	put16(h + 6, (unsigned)e->flags);
	put16(h + 8, (unsigned)e->method);
	put16(h + 10, 0);               /* time 00:00 */
	put16(h + 12, (0 << 9) | (1 << 5) | 1);  /* 1980-01-01 */
	/* crc and sizes: patched later or in the data descriptor */
	if (e->z64local) {
		put32(h + 18, BIG);
		put32(h + 22, BIG);
	}
	put16(h + 26, (unsigned)nl);
	put16(h + 28, e->z64local ? 20 : 0);
	if (zout(z, h, 30) < 0 || zout(z, entry, nl) < 0)
		return -1;
	if (e->z64local) {
		put16(h + 30, 1);
		put16(h + 32, 16);
		/* 16 bytes of sizes, zero for now */
		if (zout(z, h + 30, 20) < 0)
			return -1;
	}
	z->ne++;
	if (e->method == 8) {
		if (!z->batch)
			z->batch = mp_xmalloc((size_t)z->nthr * PIECE);
		z->fill = 0;
		z->dictlen = 0;
	}
	z->open = 1;
	return 0;
}

/* ISA-L: the output buffer grows until the piece is all out */
static void
piece_isal(struct piece *p, int level)
{
	struct isal_zstream *z = &p->iz;
	size_t need = p->len + p->len / 16 + 4096;
	static const uint32_t lbs[] = { ISAL_DEF_LVL0_DEFAULT, ISAL_DEF_LVL1_DEFAULT, ISAL_DEF_LVL2_DEFAULT,
					ISAL_DEF_LVL3_DEFAULT };

	if (!p->lbuf && !(p->lbuf = malloc(lbs[level]))) {
		p->err = 1;
		return;
	}
	isal_deflate_init(z);
	z->level = (uint32_t)level;
	z->level_buf = p->lbuf;
	z->level_buf_size = lbs[level];
	z->gzip_flag = IGZIP_DEFLATE;
	if (p->dictlen && isal_deflate_set_dict(z, (uint8_t *)(uintptr_t)p->dict, (uint32_t)p->dictlen) != COMP_OK) {
		p->err = 1;
		return;
	}
	z->next_in = (uint8_t *)(uintptr_t)p->in;
	z->avail_in = (uint32_t)p->len;
	z->end_of_stream = p->flush == Z_FINISH;
	z->flush = p->flush == Z_FINISH ? NO_FLUSH : SYNC_FLUSH;
	p->olen = 0;
	for (;;) {
		if (p->ocap - p->olen < 4096 || p->ocap < need) {
			size_t nc = p->ocap < need ? need : 2 * p->ocap;
			unsigned char *q = realloc(p->out, nc);
			if (!q) {
				p->err = 1;
				return;
			}
			p->out = q;
			p->ocap = nc;
		}
		z->next_out = p->out + p->olen;
		z->avail_out = (uint32_t)(p->ocap - p->olen);
		if (isal_deflate(z) != COMP_OK) {
			p->err = 1;
			return;
		}
		p->olen = p->ocap - z->avail_out;
		/* all out: input taken, and the stream ended or the flush block written */
		if (z->avail_in == 0 && z->avail_out > 0 &&
		    (z->end_of_stream ? z->internal_state.state == ZSTATE_END : z->internal_state.state == ZSTATE_NEW_HDR))
			return;
		if (z->avail_out > 0) {     /* no progress possible: should not happen */
			p->err = 1;
			return;
		}
	}
}

static void *
piece_run(void *arg)
{
	struct piece *p = arg;
	size_t need;

	p->err = 0;
	if (p->level <= 3) {
		piece_isal(p, p->level);
		return NULL;
	}
	need = deflateBound(&p->zs, (uLong)p->len) + 64;
	if (p->ocap < need) {
		free(p->out);
		p->out = malloc(need);
		p->ocap = p->out ? need : 0;
		if (!p->out) {
			p->err = 1;
			return NULL;
		}
	}
	if (deflateReset(&p->zs) != Z_OK ||
	    (p->dictlen && deflateSetDictionary(&p->zs, p->dict, (uInt)p->dictlen) != Z_OK)) {
		p->err = 1;
		return NULL;
	}
	p->zs.next_in = (unsigned char *)(uintptr_t)p->in;
	p->zs.avail_in = (uInt)p->len;
	p->zs.next_out = p->out;
	p->zs.avail_out = (uInt)p->ocap;
	if (deflate(&p->zs, p->flush) == Z_STREAM_ERROR || p->zs.avail_in != 0 ||
	    (p->flush == Z_FINISH && p->zs.avail_out == 0))
		p->err = 1;
	p->olen = p->ocap - p->zs.avail_out;
	return NULL;
}

/* compress the batch (the last one of the entry when last) and write it */
static int
flush_batch(mp_zip *z, zentry *e, int last)
{
	size_t np = (z->fill + PIECE - 1) / PIECE;
	pthread_t th[MAXTHR];
	int started[MAXTHR] = { 0 };

	if (np == 0 && !last)
		return 0;
	if (np == 0)
		np = 1;     /* an empty final block */
	for (size_t i = 0; i < np; i++) {
		struct piece *p = &z->pc[i];
		p->level = z->level;
		if (!p->init && z->level > 3) {
			memset(&p->zs, 0, sizeof p->zs);
			if (deflateInit2(&p->zs, z->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
				return mp_seterr("%s: zlib: cannot start deflate", z->name);
			p->init = 1;
		}
		p->in = z->batch + i * PIECE;
		p->len = i + 1 < np ? PIECE : z->fill - i * PIECE;
		if (z->fill == 0)
			p->len = 0;
		p->dict = i ? p->in - DICT : z->dict;
		p->dictlen = i ? DICT : z->dictlen;
		p->flush = last && i + 1 == np ? Z_FINISH : Z_SYNC_FLUSH;
	}
	for (size_t i = 1; i < np; i++)
		started[i] = pthread_create(&th[i], NULL, piece_run, &z->pc[i]) == 0;
	piece_run(&z->pc[0]);
	for (size_t i = 1; i < np; i++) {
		if (started[i])
			pthread_join(th[i], NULL);
		else
			piece_run(&z->pc[i]);
	}
	for (size_t i = 0; i < np; i++) {
		if (z->pc[i].err)
			return mp_seterr("%s: zlib: deflate failed", z->name);
		if (zout(z, z->pc[i].out, z->pc[i].olen) < 0)
			return -1;
		e->csize += z->pc[i].olen;
	}
	if (z->fill >= DICT) {
		memcpy(z->dict, z->batch + z->fill - DICT, DICT);
		z->dictlen = DICT;
	}
	z->fill = 0;
	return 0;
}

int
mp_zip_write(mp_zip *z, const void *buf, size_t n)
{
	zentry *e = &z->e[z->ne - 1];
	const unsigned char *p = buf;

	if (!z->open)
		return mp_seterr("%s: write outside an entry", z->name);
	while (n) {
		size_t k = n > (1u << 30) ? (1u << 30) : n;
		e->crc = crc32_gzip_refl(e->crc, p, k);
		e->usize += k;
		if (e->method == 0) {
			if (zout(z, p, k) < 0)
				return -1;
			e->csize += k;
		} else {
			size_t cap = (size_t)z->nthr * PIECE, done = 0;
			while (done < k) {
				size_t m = cap - z->fill < k - done ? cap - z->fill : k - done;
				memcpy(z->batch + z->fill, p + done, m);
				z->fill += m;
				done += m;
				if (z->fill == cap && flush_batch(z, e, 0) < 0)
					return -1;
			}
		}
		p += k;
		n -= k;
	}
	if (!e->z64local && e->csize >= BIG - ZBUF)
		return mp_seterr("%s: entry %s grew past 4 GiB although its size was given as smaller", z->name, e->name);
	return 0;
}

int
mp_zip_end(mp_zip *z)
{
	zentry *e = &z->e[z->ne - 1];
	unsigned char d[24];

	if (!z->open)
		return mp_seterr("%s: no entry to end", z->name);
	if (e->method == 8 && flush_batch(z, e, 1) < 0)
		return -1;
	z->open = 0;
	if (!e->z64local && (e->usize >= BIG || e->csize >= BIG))
		return mp_seterr("%s: entry %s passed 4 GiB without ZIP64 header", z->name, e->name);
	if (z->seekable) {
		off_t end = (off_t)z->pos;
		put32(d, e->crc);
		if (fseeko(z->fp, (off_t)e->off + 14, SEEK_SET) != 0 || fwrite(d, 1, 4, z->fp) != 4)
			goto ioerr;
		if (!e->z64local) {
			put32(d, (uint32_t)e->csize);
			put32(d + 4, (uint32_t)e->usize);
			if (fwrite(d, 1, 8, z->fp) != 8)
				goto ioerr;
		} else {
			put64(d, e->usize);
			put64(d + 8, e->csize);
			if (fseeko(z->fp, (off_t)e->off + 30 + (off_t)strlen(e->name) + 4, SEEK_SET) != 0 ||
			    fwrite(d, 1, 16, z->fp) != 16)
				goto ioerr;
		}
		if (fseeko(z->fp, end, SEEK_SET) != 0)
			goto ioerr;
		return 0;
	}
	put32(d, 0x08074b50);
	put32(d + 4, e->crc);
	if (e->z64local) {
		put64(d + 8, e->csize);
		put64(d + 16, e->usize);
		return zout(z, d, 24);
	}
	put32(d + 8, (uint32_t)e->csize);
	put32(d + 12, (uint32_t)e->usize);
	return zout(z, d, 16);
ioerr:
	z->failed = 1;
	return mp_seterr("%s: cannot update a local header: %s", z->name, strerror(errno));
}

static void
zip_free(mp_zip *z)
{
	for (int i = 0; i < MAXTHR; i++) {
		if (z->pc[i].init)
			deflateEnd(&z->pc[i].zs);
		free(z->pc[i].out);
		free(z->pc[i].lbuf);
	}
	free(z->batch);
	for (size_t i = 0; i < z->ne; i++)
		free(z->e[i].name);
	free(z->e);
	free(z->obuf);
	free(z->name);
	free(z);
}

void
mp_zip_abort(mp_zip *z)
{
	if (z)
		zip_free(z);
}

int
mp_zip_close(mp_zip *z)
{
	uint64_t cdoff = z->pos, cdsize;
	unsigned char h[80];
	int r = 0;

	if (z->open && mp_zip_end(z) < 0)
		r = -1;
	for (size_t i = 0; i < z->ne && r == 0; i++) {
		zentry *e = &z->e[i];
		size_t nl = strlen(e->name);
		unsigned char x[28];
		size_t nx = 4;
		int f = z->force64, need64 = f || e->usize >= BIG || e->csize >= BIG || e->off >= BIG;

		if (need64) {
			if (f || e->usize >= BIG) put64(x + nx, e->usize), nx += 8;
			if (f || e->csize >= BIG) put64(x + nx, e->csize), nx += 8;
			if (f || e->off >= BIG) put64(x + nx, e->off), nx += 8;
			put16(x, 1);
			put16(x + 2, (unsigned)(nx - 4));
		} else {
			nx = 0;
		}
		memset(h, 0, 46);
		put32(h, 0x02014b50);
		put16(h + 4, (3 << 8) | 45);       /* made by: unix, zip 4.5 */
		put16(h + 6, e->z64local || need64 ? 45 : 20);
		put16(h + 8, (unsigned)e->flags);
		put16(h + 10, (unsigned)e->method);
		put16(h + 12, 0);
		put16(h + 14, (0 << 9) | (1 << 5) | 1);
		put32(h + 16, e->crc);
		put32(h + 20, f || e->csize >= BIG ? BIG : (uint32_t)e->csize);
		put32(h + 24, f || e->usize >= BIG ? BIG : (uint32_t)e->usize);
		put16(h + 28, (unsigned)nl);
		put16(h + 30, (unsigned)nx);
		put32(h + 38, 0100644u << 16);     /* regular file, rw-r--r-- */
		put32(h + 42, f || e->off >= BIG ? BIG : (uint32_t)e->off);
		if (zout(z, h, 46) < 0 || zout(z, e->name, nl) < 0 || zout(z, x, nx) < 0)
			r = -1;
	}
	cdsize = z->pos - cdoff;
	int end64 = z->force64 || z->ne >= 0xFFFF || cdoff >= BIG || cdsize >= BIG;
	if (r == 0 && end64) {
		uint64_t at = z->pos;
		memset(h, 0, 56 + 20);
		put32(h, 0x06064b50);
		put64(h + 4, 44);
		put16(h + 12, (3 << 8) | 45);
		put16(h + 14, 45);
		put64(h + 24, z->ne);
		put64(h + 32, z->ne);
		put64(h + 40, cdsize);
		put64(h + 48, cdoff);
		put32(h + 56, 0x07064b50);
		put32(h + 60, 0);
		put64(h + 64, at);
		put32(h + 72, 1);
		if (zout(z, h, 76) < 0)
			r = -1;
	}
	if (r == 0) {
		memset(h, 0, 22);
		put32(h, 0x06054b50);
		put16(h + 8, end64 ? 0xFFFF : (unsigned)z->ne);
		put16(h + 10, end64 ? 0xFFFF : (unsigned)z->ne);
		put32(h + 12, end64 ? BIG : (uint32_t)cdsize);
		put32(h + 16, end64 ? BIG : (uint32_t)cdoff);
		if (zout(z, h, 22) < 0)
			r = -1;
	}
	if (r == 0 && fflush(z->fp) != 0)
		r = mp_seterr("%s: write error: %s", z->name, strerror(errno));
	zip_free(z);
	return r;
}
