/* zipread.c - reading zip archives (.npz): the central directory (with
 * ZIP64), stored and deflated entries, CRC checked. Every offset and size
 * from the file is checked against the file's size before use. */
#include "mp_fmt.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define EOCD_SIG 0x06054b50u
#define Z64LOC_SIG 0x07064b50u
#define Z64EOCD_SIG 0x06064b50u
#define CEN_SIG 0x02014b50u
#define LOC_SIG 0x04034b50u
#define CD_MAX ((uint64_t)256 << 20)

static uint64_t
le(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* where the archive's bytes come from: a file, or memory (path NULL: messages
 * then start at "zip:", the caller names the file) */
typedef struct {
	FILE *fp;
	const unsigned char *mem;
	uint64_t size;
	const char *path;
} zsrc;

#define ZP(z) ((z)->path ? (z)->path : ""), ((z)->path ? ": " : "")

static int
rd_at(zsrc *z, uint64_t off, void *buf, size_t n)
{
	if (off > z->size || n > z->size - off)
		return mp_seterr("%s%szip: cannot read %zu bytes at offset %llu", ZP(z), n, (unsigned long long)off);
	if (z->mem) {
		memcpy(buf, z->mem + off, n);
		return 0;
	}
	if (fseeko(z->fp, (off_t)off, SEEK_SET) < 0 || fread(buf, 1, n, z->fp) != n)
		return mp_seterr("%s%szip: cannot read %zu bytes at offset %llu", ZP(z), n, (unsigned long long)off);
	return 0;
}

static int
zsrc_file(zsrc *z, const char *path)
{
	struct stat st;

	memset(z, 0, sizeof *z);
	z->path = path;
	z->fp = fopen(path, "rb");
	if (!z->fp)
		return mp_seterr("%s: cannot open:", path);
	if (fstat(fileno(z->fp), &st) < 0) {
		fclose(z->fp);
		return mp_seterr("%s: cannot read:", path);
	}
	z->size = (uint64_t)st.st_size;
	return 0;
}

void
mp_zip_entries_free(mp_zip_entry *e, size_t n)
{
	if (!e)
		return;
	for (size_t i = 0; i < n; i++)
		free(e[i].name);
	free(e);
}

static int
zip_list(zsrc *z, mp_zip_entry **ents, size_t *nents)
{
	uint64_t size = z->size, tail, eocd = 0, cdoff, cdsize, nent;
	unsigned char *buf = NULL, *cd = NULL;
	mp_zip_entry *e = NULL;
	size_t ne = 0;
	int found = 0;

	*ents = NULL;
	*nents = 0;
	if (size < 22) {
		mp_seterr("%s%snot a zip archive (%llu bytes)", ZP(z), (unsigned long long)size);
		goto fail;
	}
	/* the end of central directory record: in the last 64 KiB + 22 bytes */
	tail = size < 65557 ? size : 65557;
	buf = mp_xmalloc((size_t)tail);
	if (rd_at(z, size - tail, buf, (size_t)tail) < 0)
		goto fail;
	for (uint64_t i = tail - 22 + 1; i-- > 0;) {
		if (le(buf + i, 4) == EOCD_SIG && i + 22 + le(buf + i + 20, 2) <= tail) {
			eocd = size - tail + i;
			found = 1;
			break;
		}
	}
	if (!found) {
		mp_seterr("%s%snot a zip archive (no end of central directory)", ZP(z));
		goto fail;
	}
	{
		const unsigned char *p = buf + (eocd - (size - tail));
		nent = le(p + 10, 2);
		cdsize = le(p + 12, 4);
		cdoff = le(p + 16, 4);
		if (nent == 0xFFFF || cdsize == 0xFFFFFFFFu || cdoff == 0xFFFFFFFFu) {
			unsigned char loc[20], zr[56];
			uint64_t z64;
			if (eocd < 20 || rd_at(z, eocd - 20, loc, 20) < 0 || le(loc, 4) != Z64LOC_SIG) {
				mp_seterr("%s%szip: ZIP64 archive without its locator", ZP(z));
				goto fail;
			}
			z64 = le(loc + 8, 8);
			if (size < 56 || z64 > size - 56 || rd_at(z, z64, zr, 56) < 0 || le(zr, 4) != Z64EOCD_SIG) {
				mp_seterr("%s%szip: bad ZIP64 end of central directory", ZP(z));
				goto fail;
			}
			nent = le(zr + 32, 8);
			cdsize = le(zr + 40, 8);
			cdoff = le(zr + 48, 8);
		}
	}
	if (cdoff > size || cdsize > size - cdoff || cdsize > CD_MAX || nent > cdsize / 46) {
		mp_seterr("%s%szip: central directory out of bounds", ZP(z));
		goto fail;
	}
	cd = mp_xmalloc(cdsize ? (size_t)cdsize : 1);
	if (rd_at(z, cdoff, cd, (size_t)cdsize) < 0)
		goto fail;
	e = mp_xcalloc(nent ? (size_t)nent : 1, sizeof *e);
	{
		uint64_t pos = 0;
		for (uint64_t i = 0; i < nent; i++) {
			const unsigned char *p = cd + pos;
			uint64_t nl, xl, cl, usize, csize, lhoff, x;
			if (pos + 46 > cdsize || le(p, 4) != CEN_SIG) {
				mp_seterr("%s%szip: bad central directory entry %llu", ZP(z), (unsigned long long)i + 1);
				goto fail;
			}
			nl = le(p + 28, 2);
			xl = le(p + 30, 2);
			cl = le(p + 32, 2);
			if (pos + 46 + nl + xl + cl > cdsize) {
				mp_seterr("%s%szip: central directory entry %llu runs past its end", ZP(z), (unsigned long long)i + 1);
				goto fail;
			}
			e[ne].method = (int)le(p + 10, 2);
			e[ne].crc = (uint32_t)le(p + 16, 4);
			csize = le(p + 20, 4);
			usize = le(p + 24, 4);
			lhoff = le(p + 42, 4);
			/* ZIP64 extra field: the 64-bit values of the fields set to all ones */
			for (x = 0; x + 4 <= xl;) {
				const unsigned char *q = p + 46 + nl + x;
				uint64_t id = le(q, 2), len = le(q + 2, 2), k = 4;
				if (x + 4 + len > xl)
					break;
				if (id == 1) {
					if (usize == 0xFFFFFFFFu && k + 8 <= 4 + len) {
						usize = le(q + k, 8);
						k += 8;
					}
					if (csize == 0xFFFFFFFFu && k + 8 <= 4 + len) {
						csize = le(q + k, 8);
						k += 8;
					}
					if (lhoff == 0xFFFFFFFFu && k + 8 <= 4 + len)
						lhoff = le(q + k, 8);
				}
				x += 4 + len;
			}
			e[ne].csize = csize;
			e[ne].usize = usize;
			e[ne].lhoff = lhoff;
			e[ne].name = mp_xmalloc((size_t)nl + 1);
			memcpy(e[ne].name, p + 46, (size_t)nl);
			e[ne].name[nl] = 0;
			ne++;
			pos += 46 + nl + xl + cl;
		}
	}
	free(buf);
	free(cd);
	*ents = e;
	*nents = ne;
	return 0;
fail:
	free(buf);
	free(cd);
	mp_zip_entries_free(e, ne);
	return -1;
}

int
mp_zip_list(const char *path, mp_zip_entry **ents, size_t *nents)
{
	zsrc z;
	int r;

	*ents = NULL;
	*nents = 0;
	if (zsrc_file(&z, path) < 0)
		return -1;
	r = zip_list(&z, ents, nents);
	fclose(z.fp);
	return r;
}

int
mp_zip_list_mem(const unsigned char *buf, size_t len, mp_zip_entry **ents, size_t *n)
{
	zsrc z = { NULL, buf, len, NULL };

	return zip_list(&z, ents, n);
}

/* where the entry's data starts, after its sizes and method are checked */
static int
entry_check(zsrc *z, const mp_zip_entry *e, uint64_t *doff)
{
	unsigned char lh[30];
	uint64_t size = z->size;

	if (size < 30 || e->lhoff > size - 30 || rd_at(z, e->lhoff, lh, 30) < 0 || le(lh, 4) != LOC_SIG)
		return mp_seterr("%s%szip: entry %s: bad local header", ZP(z), e->name);
	*doff = e->lhoff + 30 + le(lh + 26, 2) + le(lh + 28, 2);
	if (*doff > size || e->csize > size - *doff)
		return mp_seterr("%s%szip: entry %s: data runs past the end of the file (truncated archive?)", ZP(z), e->name);
	if (e->usize > mp_max_bytes() + ((uint64_t)1 << 20))
		return mp_seterr("%s%szip: entry %s: %llu bytes exceed the limit (MEDPIPE_MAX_BYTES)", ZP(z), e->name,
				 (unsigned long long)e->usize);
	if (e->method == 0) {
		if (e->csize != e->usize)
			return mp_seterr("%s%szip: entry %s: stored sizes differ", ZP(z), e->name);
	} else if (e->method == 8) {
		/* deflate cannot expand more than about 1032:1 */
		if (e->usize > e->csize * 1032 + 1024)
			return mp_seterr("%s%szip: entry %s: sizes are implausible", ZP(z), e->name);
	} else
		return mp_seterr("%s%szip: entry %s: compression method %d not supported (stored or deflate)", ZP(z),
				 e->name, e->method);
	return 0;
}

/* inflate csize bytes of cbuf into a new buffer of exactly usize bytes */
static unsigned char *
inflate_all(zsrc *zs, const mp_zip_entry *e, const unsigned char *cbuf)
{
	z_stream z;
	int r;
	uint64_t done = 0, cin = 0;
	unsigned char *ubuf = malloc(e->usize ? (size_t)e->usize : 1);

	if (!ubuf) {
		mp_seterr("%s%sout of memory", ZP(zs));
		return NULL;
	}
	memset(&z, 0, sizeof z);
	if (inflateInit2(&z, -15) != Z_OK) {
		free(ubuf);
		mp_seterr("%s%szip: cannot start the decoder", ZP(zs));
		return NULL;
	}
	do {
		uint64_t ci = e->csize - cin, co = e->usize - done;
		z.next_in = (unsigned char *)(uintptr_t)(cbuf + cin);
		z.avail_in = (uInt)(ci > (1u << 30) ? (1u << 30) : ci);
		z.next_out = ubuf + done;
		z.avail_out = (uInt)(co > (1u << 30) ? (1u << 30) : co);
		{
			uInt ai = z.avail_in, ao = z.avail_out;
			r = inflate(&z, Z_NO_FLUSH);
			cin += ai - z.avail_in;
			done += ao - z.avail_out;
			if (r == Z_BUF_ERROR && ai == z.avail_in && ao == z.avail_out)
				break;
		}
	} while (r == Z_OK);
	inflateEnd(&z);
	if (r != Z_STREAM_END || done != e->usize) {
		free(ubuf);
		mp_seterr("%s%szip: entry %s: corrupt deflate data", ZP(zs), e->name);
		return NULL;
	}
	return ubuf;
}

static int
crc_check(zsrc *z, const mp_zip_entry *e, const unsigned char *ubuf)
{
	uLong c = crc32(0L, Z_NULL, 0);

	for (uint64_t o = 0; o < e->usize;) {
		uint64_t k = e->usize - o > (1u << 30) ? (1u << 30) : e->usize - o;
		c = crc32(c, ubuf + o, (uInt)k);
		o += k;
	}
	if ((uint32_t)c != e->crc)
		return mp_seterr("%s%szip: entry %s: CRC mismatch (corrupt archive)", ZP(z), e->name);
	return 0;
}

int
mp_zip_extract(const char *path, const mp_zip_entry *e, unsigned char **out, size_t *outlen)
{
	zsrc z;
	unsigned char *cbuf = NULL, *ubuf = NULL;
	uint64_t doff;

	*out = NULL;
	*outlen = 0;
	if (zsrc_file(&z, path) < 0)
		return -1;
	if (entry_check(&z, e, &doff) < 0)
		goto fail;
	cbuf = malloc(e->csize ? (size_t)e->csize : 1);
	if (!cbuf) {
		mp_seterr("%s: out of memory", path);
		goto fail;
	}
	if (e->csize && rd_at(&z, doff, cbuf, (size_t)e->csize) < 0)
		goto fail;
	if (e->method == 0) {
		ubuf = cbuf;
		cbuf = NULL;
	} else if (!(ubuf = inflate_all(&z, e, cbuf)))
		goto fail;
	if (crc_check(&z, e, ubuf) < 0)
		goto fail;
	free(cbuf);
	fclose(z.fp);
	*out = ubuf;
	*outlen = (size_t)e->usize;
	return 0;
fail:
	free(cbuf);
	free(ubuf);
	fclose(z.fp);
	return -1;
}

const unsigned char *
mp_zip_data_mem(const unsigned char *buf, size_t len, const mp_zip_entry *e, unsigned char **owned)
{
	zsrc z = { NULL, buf, len, NULL };
	uint64_t doff;
	const unsigned char *d;

	*owned = NULL;
	if (entry_check(&z, e, &doff) < 0)
		return NULL;
	if (e->method == 0)
		d = buf + doff;
	else if (!(d = *owned = inflate_all(&z, e, buf + doff)))
		return NULL;
	if (crc_check(&z, e, d) < 0) {
		free(*owned);
		*owned = NULL;
		return NULL;
	}
	return d;
}
