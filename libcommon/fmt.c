/* fmt.c - file formats: choosing the format (extension, magic bytes),
 * dispatch to the readers and writers, and the byte sources and sinks they
 * share (plain, gzip or zlib; sizes checked before anything is allocated). */
#include "mp_fmt.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <isa-l/igzip_lib.h>

#define CHUNK ((size_t)64 << 20)
#define ZBUF (1 << 16)

/* ---------------------------------------------------------------- names */
int
mp_fmt_ends(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

mp_fmt
mp_fmt_from_name(const char *path)
{
	static const struct {
		const char *ext;
		mp_fmt f;
	} t[] = {
		{ ".nii.gz", MP_FMT_NIFTI }, { ".nii", MP_FMT_NIFTI },
		{ ".hdr.gz", MP_FMT_ANALYZE }, { ".img.gz", MP_FMT_ANALYZE },
		{ ".hdr", MP_FMT_ANALYZE }, { ".img", MP_FMT_ANALYZE },
		{ ".nrrd", MP_FMT_NRRD }, { ".nhdr", MP_FMT_NHDR },
		{ ".mha", MP_FMT_MHA }, { ".mhd", MP_FMT_MHD },
		{ ".npy", MP_FMT_NPY }, { ".npz", MP_FMT_NPZ },
		{ ".dcm", MP_FMT_DICOM }, { ".dicom", MP_FMT_DICOM }, { ".ima", MP_FMT_DICOM },
		{ ".png", MP_FMT_PNG }, { ".jpg", MP_FMT_JPEG }, { ".jpeg", MP_FMT_JPEG }, { ".bmp", MP_FMT_BMP },
		{ ".tif", MP_FMT_TIFF }, { ".tiff", MP_FMT_TIFF }, { ".btf", MP_FMT_TIFF },
		{ ".mnc", MP_FMT_MINC }, { ".mnc.gz", MP_FMT_MINC },
	};

	if (!path)
		return MP_FMT_UNKNOWN;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (mp_fmt_ends(path, t[i].ext))
			return t[i].f;
	return MP_FMT_UNKNOWN;
}

const char *
mp_fmt_name(mp_fmt t)
{
	switch (t) {
	case MP_FMT_NRRD: return "NRRD";
	case MP_FMT_NHDR: return "NRRD (detached)";
	case MP_FMT_NIFTI: return "NIfTI";
	case MP_FMT_ANALYZE: return "Analyze/NIfTI pair";
	case MP_FMT_MHA: return "MetaImage";
	case MP_FMT_MHD: return "MetaImage (detached)";
	case MP_FMT_NPY: return "npy";
	case MP_FMT_NPZ: return "npz";
	case MP_FMT_DICOM: return "DICOM";
	case MP_FMT_PNG: return "PNG";
	case MP_FMT_JPEG: return "JPEG";
	case MP_FMT_BMP: return "BMP";
	case MP_FMT_TIFF: return "TIFF";
	case MP_FMT_MINC: return "MINC";
	default: return "unknown";
	}
}

char *
mp_fmt_stem(const char *path)
{
	static const char *ext[] = { ".nii.gz", ".hdr.gz", ".img.gz", ".nrrd.gz", ".nii", ".hdr", ".img",
				     ".nrrd", ".nhdr", ".mha", ".mhd", ".npy", ".npz", ".dcm", ".ome.tiff", ".ome.tif", ".tiff",
				     ".tif", ".png", ".jpg", ".jpeg", ".bmp", ".mnc.gz", ".mnc", ".gz", NULL };
	const char *b = strrchr(path, '/');
	char *s;

	s = mp_xstrdup(b ? b + 1 : path);
	for (int i = 0; ext[i]; i++)
		if (mp_fmt_ends(s, ext[i]) && strlen(s) > strlen(ext[i])) {
			s[strlen(s) - strlen(ext[i])] = 0;
			break;
		}
	return s;
}

static uint32_t
rd32(const unsigned char *p, int big)
{
	return big ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
		   : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static mp_fmt
sniff_buf(const unsigned char *b, size_t n)
{
	if (n >= 7 && memcmp(b, "NRRD000", 7) == 0)
		return MP_FMT_NRRD;
	if (n >= 6 && memcmp(b, "\x93NUMPY", 6) == 0)
		return MP_FMT_NPY;
	if (n >= 4 && (memcmp(b, "PK\3\4", 4) == 0 || memcmp(b, "PK\5\6", 4) == 0))
		return MP_FMT_NPZ;
	if (n >= 348 && (rd32(b, 0) == 348 || rd32(b, 1) == 348)) {
		if (memcmp(b + 344, "n+1", 4) == 0)
			return MP_FMT_NIFTI;
		return MP_FMT_ANALYZE;
	}
	if (n >= 540 && (rd32(b, 0) == 540 || rd32(b, 1) == 540)) {
		if (memcmp(b + 4, "n+2", 4) == 0)
			return MP_FMT_NIFTI;
		if (memcmp(b + 4, "ni2", 4) == 0)
			return MP_FMT_ANALYZE;
	}
	if (n >= 132 && memcmp(b + 128, "DICM", 4) == 0)
		return MP_FMT_DICOM;
	if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
		return MP_FMT_PNG;
	if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
		return MP_FMT_JPEG;
	if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0 || memcmp(b, "II+\0", 4) == 0 ||
		       memcmp(b, "MM\0+", 4) == 0))
		return MP_FMT_TIFF;
	if (n >= 4 && (memcmp(b, "CDF\1", 4) == 0 || memcmp(b, "CDF\2", 4) == 0 || memcmp(b, "\x89HDF", 4) == 0))
		return MP_FMT_MINC;
	if (n >= 26 && b[0] == 'B' && b[1] == 'M' && rd32(b + 14, 0) >= 40 && rd32(b + 14, 0) <= 1024)
		return MP_FMT_BMP;
	/* a DICOM file without preamble: group 0008 (or 0002) first, little endian,
	 * then an explicit VR (two capitals) or an implicit length */
	if (n >= 8 && (b[0] == 8 || b[0] == 2) && b[1] == 0 && b[3] == 0) {
		if (isupper(b[4]) && isupper(b[5]))
			return MP_FMT_DICOM;
		if (rd32(b + 4, 0) < 1024)
			return MP_FMT_DICOM;
	}
	{
		/* MetaImage: "Key = value" text starting with a MetaIO key */
		static const char *keys[] = { "ObjectType", "NDims", "Comment", "ObjectSubType", "TransformType", NULL };
		for (int i = 0; keys[i]; i++) {
			size_t k = strlen(keys[i]);
			if (n > k && strncasecmp((const char *)b, keys[i], k) == 0) {
				size_t j = k;
				while (j < n && b[j] == ' ')
					j++;
				if (j < n && b[j] == '=')
					return MP_FMT_MHA;
			}
		}
	}
	return MP_FMT_UNKNOWN;
}

mp_fmt
mp_fmt_sniff(const char *path)
{
	unsigned char b[1024];
	long long n;
	mp_fmt r;
	mp_fsrc *s = mp_fsrc_open(path);

	if (!s)
		return MP_FMT_UNKNOWN;
	n = mp_fsrc_read(s, b, sizeof b);
	if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
		/* gzip: look inside (.nii.gz without its extension) */
		if (mp_fsrc_seek(s, 0) == 0 && mp_fsrc_inflate(s) == 0) {
			n = mp_fsrc_read(s, b, sizeof b);
			r = n > 0 ? sniff_buf(b, (size_t)n) : MP_FMT_UNKNOWN;
			mp_fsrc_close(s);
			return r == MP_FMT_NIFTI || r == MP_FMT_MINC ? r : MP_FMT_UNKNOWN;
		}
	}
	mp_fsrc_close(s);
	return n > 0 ? sniff_buf(b, (size_t)n) : MP_FMT_UNKNOWN;
}

mp_fmt
mp_fmt_detect(const char *path)
{
	mp_fmt t = mp_fmt_from_name(path);

	return t != MP_FMT_UNKNOWN ? t : mp_fmt_sniff(path);
}

char *
mp_fmt_sibling(const char *hdrpath, const char *name)
{
	const char *slash = strrchr(hdrpath, '/');
	size_t dl = slash ? (size_t)(slash - hdrpath + 1) : 0, n;
	char *p;

	if (name[0] == '/' || dl == 0)
		return mp_xstrdup(name);
	n = dl + strlen(name) + 1;
	p = mp_xmalloc(n);
	snprintf(p, n, "%.*s%s", (int)dl, hdrpath, name);
	return p;
}

char *
mp_fmt_swap_ext(const char *path, const char *ext, const char *next)
{
	size_t n = strlen(path), k = strlen(ext), m;
	char *p;

	if (!mp_fmt_ends(path, ext))
		k = 0;
	m = n - k + strlen(next) + 1;
	p = mp_xmalloc(m);
	snprintf(p, m, "%.*s%s", (int)(n - k), path, next);
	/* keep the case of the original extension: .HDR -> .IMG */
	if (k && isupper((unsigned char)path[n - k + 1]))
		for (char *q = p + n - k; *q; q++)
			*q = (char)toupper((unsigned char)*q);
	return p;
}

/* ---------------------------------------------------------------- geometry */
static int
vector_kind(const char *k)
{
	return k[0] && strcmp(k, "domain") != 0 && strcmp(k, "space") != 0;
}

int
mp_fmt_spatial_axes(const mp_frame *f, int ax[MP_MAXDIM])
{
	int n = 0;

	for (int i = 0; i < f->dim && n < 3; i++) {
		if (f->space ? f->has_dir[i] : !vector_kind(f->kind[i]))
			ax[n++] = i;
	}
	return n;
}

void
mp_fmt_dirs3(const mp_frame *f, const int *ax, int nsp, double m[3][3])
{
	double col[3][3] = { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } };
	int i;

	for (i = 0; i < nsp && i < 3; i++) {
		if (f->space)
			memcpy(col[i], f->dir[ax[i]], sizeof col[i]);
		else {
			memset(col[i], 0, sizeof col[i]);
			col[i][i] = 1;
		}
	}
	if (nsp == 1) {
		/* a unit vector away from the first axis, made orthogonal to it */
		double u[3], d;
		int best = 0;
		memcpy(u, col[0], sizeof u);
		if (mp_vec3_unit(u) < 0) {
			u[0] = 1;
			u[1] = u[2] = 0;
		}
		for (int c = 1; c < 3; c++)
			if (fabs(u[c]) < fabs(u[best]))
				best = c;
		memset(col[1], 0, sizeof col[1]);
		col[1][best] = 1;
		d = col[1][0] * u[0] + col[1][1] * u[1] + col[1][2] * u[2];
		for (int c = 0; c < 3; c++)
			col[1][c] -= d * u[c];
		if (mp_vec3_unit(col[1]) < 0) {
			memset(col[1], 0, sizeof col[1]);
			col[1][1] = 1;
		}
	}
	if (nsp >= 1 && nsp <= 2) {
		double a[3], b[3];
		memcpy(a, col[0], sizeof a);
		memcpy(b, col[1], sizeof b);
		if (mp_vec3_unit(a) == 0 && mp_vec3_unit(b) == 0) {
			mp_vec3_cross(a, b, col[2]);
			if (mp_vec3_unit(col[2]) < 0) {
				memset(col[2], 0, sizeof col[2]);
				col[2][2] = 1;
			}
		}
	}
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			m[r][c] = col[c][r];
}

/* ---------------------------------------------------------------- sources */
struct mp_fsrc {
	FILE *fp;
	const unsigned char *mem;
	uint64_t size, rpos;   /* file size, raw position */
	char *name;
	int z, zinit, zend, zeof;
	z_stream zs;
	struct inflate_state *is;   /* gzip data: ISA-L's inflate (about 3x zlib's speed) */
	unsigned char *ib;
};

mp_fsrc *
mp_fsrc_open(const char *path)
{
	struct stat st;
	mp_fsrc *s;
	FILE *fp = fopen(path, "rb");

	if (!fp) {
		mp_seterr("%s: cannot open:", path);
		return NULL;
	}
	if (fstat(fileno(fp), &st) < 0 || !S_ISREG(st.st_mode)) {
		if (errno == 0 || S_ISDIR(st.st_mode))
			mp_seterr("%s: not a regular file", path);
		else
			mp_seterr("%s: cannot read:", path);
		fclose(fp);
		return NULL;
	}
	s = mp_xcalloc(1, sizeof *s);
	s->fp = fp;
	s->size = (uint64_t)st.st_size;
	s->name = mp_xstrdup(path);
	return s;
}

mp_fsrc *
mp_fsrc_mem(const void *buf, size_t n, const char *name)
{
	mp_fsrc *s = mp_xcalloc(1, sizeof *s);

	s->mem = buf;
	s->size = n;
	s->name = mp_xstrdup(name);
	return s;
}

static void
zstop(mp_fsrc *s)
{
	if (s->zinit)
		inflateEnd(&s->zs);
	s->zinit = s->z = s->zend = s->zeof = 0;
	free(s->ib);
	s->ib = NULL;
	free(s->is);
	s->is = NULL;
}

void
mp_fsrc_close(mp_fsrc *s)
{
	if (!s)
		return;
	zstop(s);
	if (s->fp)
		fclose(s->fp);
	free(s->name);
	free(s);
}

uint64_t
mp_fsrc_size(const mp_fsrc *s)
{
	return s->size;
}

uint64_t
mp_fsrc_pos(const mp_fsrc *s)
{
	return s->rpos;
}

const char *
mp_fsrc_name(const mp_fsrc *s)
{
	return s->name;
}

int
mp_fsrc_seek(mp_fsrc *s, uint64_t off)
{
	zstop(s);
	if (off > s->size)
		return mp_seterr("%s: offset %llu is past the end of the file (%llu bytes)", s->name,
				 (unsigned long long)off, (unsigned long long)s->size);
	if (s->fp && fseeko(s->fp, (off_t)off, SEEK_SET) < 0)
		return mp_seterr("%s: cannot seek:", s->name);
	s->rpos = off;
	return 0;
}

static size_t
raw_read(mp_fsrc *s, void *buf, size_t n)
{
	size_t k;

	if (s->mem) {
		k = s->size - s->rpos < n ? (size_t)(s->size - s->rpos) : n;
		memcpy(buf, s->mem + s->rpos, k);
	} else {
		k = fread(buf, 1, n, s->fp);
	}
	s->rpos += k;
	return k;
}

int
mp_fsrc_inflate(mp_fsrc *s)
{
	unsigned char m[2];
	uint64_t at;

	zstop(s);
	/* gzip (the magic bytes): ISA-L; zlib streams (MetaImage): zlib */
	at = s->rpos;
	if (raw_read(s, m, 2) == 2 && m[0] == 0x1f && m[1] == 0x8b) {
		if (mp_fsrc_seek(s, at) < 0)
			return -1;
		s->is = mp_xmalloc(sizeof *s->is);
		isal_inflate_init(s->is);
		s->is->crc_flag = ISAL_GZIP;
		s->z = 1;
		s->ib = mp_xmalloc(ZBUF);
		return 0;
	}
	if (mp_fsrc_seek(s, at) < 0)
		return -1;
	memset(&s->zs, 0, sizeof s->zs);
	if (inflateInit2(&s->zs, 15 + 32) != Z_OK)
		return mp_seterr("%s: cannot start the zlib decoder", s->name);
	s->zinit = s->z = 1;
	s->ib = mp_xmalloc(ZBUF);
	return 0;
}

/* the gzip members of the file, through ISA-L (CRC-32 and size checked) */
static long long
read_isal(mp_fsrc *s, unsigned char *out, size_t n)
{
	struct inflate_state *z = s->is;
	size_t got = 0;

	while (got < n && !s->zend) {
		size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
		int r;
		if (z->avail_in == 0 && !s->zeof) {
			size_t k = raw_read(s, s->ib, ZBUF);
			if (k == 0) {
				if (s->fp && ferror(s->fp))
					return mp_seterr("%s: read error:", s->name);
				s->zeof = 1;
			}
			z->next_in = s->ib;
			z->avail_in = (uint32_t)k;
		}
		z->next_out = out + got;
		z->avail_out = (uint32_t)want;
		r = isal_inflate(z);
		got += want - z->avail_out;
		if (r < 0)
			return mp_seterr("%s: corrupt compressed data (%s)", s->name,
					 r == ISAL_INCORRECT_CHECKSUM ? "incorrect data check" :
					 r == ISAL_INVALID_WRAPPER || r == ISAL_UNSUPPORTED_METHOD ? "bad gzip header" :
					 "invalid deflate data");
		if (z->block_state == ISAL_BLOCK_FINISH) {
			/* another gzip member may follow */
			if (z->avail_in == 0 && !s->zeof) {
				size_t k = raw_read(s, s->ib, ZBUF);
				z->next_in = s->ib;
				z->avail_in = (uint32_t)k;
				if (k == 0)
					s->zeof = 1;
			}
			if (z->avail_in >= 2 && z->next_in[0] == 0x1f && z->next_in[1] == 0x8b) {
				uint8_t *ni = z->next_in;
				uint32_t ai = z->avail_in;
				isal_inflate_reset(z);
				z->crc_flag = ISAL_GZIP;
				z->next_in = ni;
				z->avail_in = ai;
				continue;
			}
			s->zend = 1;
		} else if (z->avail_in == 0 && s->zeof && z->avail_out > 0) {
			return mp_seterr("%s: truncated compressed data", s->name);
		}
	}
	return (long long)got;
}

long long
mp_fsrc_read(mp_fsrc *s, void *buf, size_t n)
{
	unsigned char *out = buf;
	size_t got = 0;

	if (!s->z) {
		got = raw_read(s, buf, n);
		if (got < n && s->fp && ferror(s->fp))
			return mp_seterr("%s: read error:", s->name);
		return (long long)got;
	}
	if (s->is)
		return read_isal(s, out, n);
	while (got < n && !s->zend) {
		int r;
		size_t want = n - got > (1u << 30) ? (1u << 30) : n - got, before;
		if (s->zs.avail_in == 0 && !s->zeof) {
			size_t k = raw_read(s, s->ib, ZBUF);
			if (k == 0) {
				if (s->fp && ferror(s->fp))
					return mp_seterr("%s: read error:", s->name);
				s->zeof = 1;
			}
			s->zs.next_in = s->ib;
			s->zs.avail_in = (uInt)k;
		}
		s->zs.next_out = out + got;
		s->zs.avail_out = (uInt)want;
		before = want;
		r = inflate(&s->zs, Z_NO_FLUSH);
		got += before - s->zs.avail_out;
		if (r == Z_STREAM_END) {
			/* another gzip member may follow */
			if (s->zs.avail_in == 0 && !s->zeof) {
				size_t k = raw_read(s, s->ib, ZBUF);
				s->zs.next_in = s->ib;
				s->zs.avail_in = (uInt)k;
				if (k == 0)
					s->zeof = 1;
			}
			if (s->zs.avail_in >= 2 && s->zs.next_in[0] == 0x1f && s->zs.next_in[1] == 0x8b) {
				inflateReset(&s->zs);
				continue;
			}
			s->zend = 1;
		} else if (r == Z_BUF_ERROR) {
			if (s->zeof)
				return mp_seterr("%s: truncated compressed data", s->name);
		} else if (r != Z_OK) {
			return mp_seterr("%s: corrupt compressed data (%s)", s->name, s->zs.msg ? s->zs.msg : "inflate failed");
		}
	}
	return (long long)got;
}

int
mp_fsrc_need(mp_fsrc *s, void *buf, size_t n, const char *what)
{
	long long k = mp_fsrc_read(s, buf, n);

	if (k < 0)
		return -1;
	if ((size_t)k < n)
		return mp_seterr("%s: %s: truncated (%llu of %zu bytes)", s->name, what, k, n);
	return 0;
}

int
mp_fsrc_skip(mp_fsrc *s, uint64_t n, const char *what)
{
	unsigned char tmp[65536];

	if (!s->z) {
		if (n > s->size - s->rpos)
			return mp_seterr("%s: %s: the file ends before offset %llu", s->name, what,
					 (unsigned long long)(s->rpos + n));
		return mp_fsrc_seek(s, s->rpos + n);
	}
	while (n > 0) {
		size_t k = n < sizeof tmp ? (size_t)n : sizeof tmp;
		if (mp_fsrc_need(s, tmp, k, what) < 0)
			return -1;
		n -= k;
	}
	return 0;
}

static void
swap_if(mp_frame *f, int big)
{
	size_t es = mp_type_size(f->type);

	if (es > 1 && big != mp_host_big())
		mp_swap_bytes(f->data, es, mp_frame_nvox(f));
}

/* raw data of 1 MiB or more at an offset that is a multiple of MP_DATA_ALIGN: mapped
 * from the file (private, copy on write), no copy and no fresh memory; the
 * frame frees it with mp_frame_clear_data */
static int
map_data(mp_fsrc *s, mp_frame *f, size_t total)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t at = s->rpos, base;
	void *p;

	/* the data would lie at its file offset modulo the page: unless that is
	 * a multiple of MP_DATA_ALIGN, a value could be misaligned (read it instead) */
	if (pg <= 0 || at % MP_DATA_ALIGN)
		return -1;
	base = at - at % (uint64_t)pg;
	p = mmap(NULL, total + (size_t)(at - base), PROT_READ | PROT_WRITE, MAP_PRIVATE, fileno(s->fp), (off_t)base);
	if (p == MAP_FAILED)
		return -1;
	if (mp_fsrc_seek(s, at + total) < 0) {
		munmap(p, total + (size_t)(at - base));
		return -1;
	}
	f->data = (unsigned char *)p + (at - base);
	f->mapped = total;
	return 0;
}

int
mp_fsrc_frame_data(mp_fsrc *s, mp_frame *f, int big)
{
	size_t total, have = 0, cap;
	unsigned char *p;

	if (mp_frame_check(f) < 0)
		return mp_preerr("%s", s->name);
	total = mp_frame_nbytes(f);
	mp_frame_clear_data(f);
	if (!s->z) {
		uint64_t left = s->size - s->rpos;
		if (left < total)
			return mp_seterr("%s: data: the file holds %llu bytes of data, the header needs %zu",
					 s->name, (unsigned long long)left, total);
		if (s->fp && total >= ((size_t)1 << 20) && map_data(s, f, total) == 0) {
			swap_if(f, big);
			return 0;
		}
		p = malloc(total ? total : 1);
		if (!p)
			return mp_seterr("%s: out of memory for %zu bytes", s->name, total);
		if (mp_fsrc_need(s, p, total, "data") < 0) {
			free(p);
			return -1;
		}
		f->data = p;
		swap_if(f, big);
		return 0;
	}
	/* compressed: deflate expands at most about 1032:1, so when the rest of
	 * the file could hold the data, allocate it at once; otherwise grow as
	 * data arrives, so a lying header cannot make us allocate much more than
	 * what is really there */
	cap = total < CHUNK ? total : CHUNK;
	if (s->size - s->rpos < (uint64_t)SIZE_MAX / 1100 && total <= (s->size - s->rpos) * 1032 + 65536)
		cap = total;
	p = malloc(cap ? cap : 1);
	if (!p)
		return mp_seterr("%s: out of memory for %zu bytes", s->name, cap);
	while (have < total) {
		long long k;
		if (have == cap) {
			size_t nc = cap * 2 < total ? cap * 2 : total;
			unsigned char *q = realloc(p, nc);
			if (!q) {
				free(p);
				return mp_seterr("%s: out of memory for %zu bytes", s->name, nc);
			}
			p = q;
			cap = nc;
		}
		k = mp_fsrc_read(s, p + have, cap - have);
		if (k < 0) {
			free(p);
			return -1;
		}
		if (k == 0) {
			free(p);
			return mp_seterr("%s: data: the compressed data hold %zu bytes, the header needs %zu", s->name, have, total);
		}
		have += (size_t)k;
	}
	f->data = p;
	swap_if(f, big);
	return 0;
}

int
mp_fsrc_frame_data_tail(mp_fsrc *s, mp_frame *f, int big)
{
	size_t total, pos = 0;
	uint64_t seen = 0;
	unsigned char *p, *tmp;

	if (mp_frame_check(f) < 0)
		return mp_preerr("%s", s->name);
	total = mp_frame_nbytes(f);
	if (!s->z) {
		if (s->size - s->rpos < total)
			return mp_seterr("%s: data: the file holds %llu bytes of data, the header needs %zu",
					 s->name, (unsigned long long)(s->size - s->rpos), total);
		if (mp_fsrc_seek(s, s->size - total) < 0)
			return -1;
		return mp_fsrc_frame_data(s, f, big);
	}
	/* compressed: keep the last total bytes in a ring */
	p = malloc(total ? total : 1);
	if (!p)
		return mp_seterr("%s: out of memory for %zu bytes", s->name, total);
	tmp = mp_xmalloc(1 << 16);
	for (;;) {
		long long k = mp_fsrc_read(s, tmp, 1 << 16);
		if (k < 0) {
			free(p);
			free(tmp);
			return -1;
		}
		if (k == 0)
			break;
		for (size_t i = 0; i < (size_t)k;) {
			size_t room = total - pos, m = (size_t)k - i < room ? (size_t)k - i : room;
			memcpy(p + pos, tmp + i, m);
			pos = (pos + m) % total;
			i += m;
		}
		seen += (uint64_t)k;
	}
	free(tmp);
	if (seen < total) {
		free(p);
		return mp_seterr("%s: data: the compressed data hold %llu bytes, the header needs %zu", s->name,
				 (unsigned long long)seen, total);
	}
	if (pos) {
		/* rotate so that the oldest byte comes first */
		unsigned char *q = malloc(total);
		if (!q) {
			free(p);
			return mp_seterr("%s: out of memory for %zu bytes", s->name, total);
		}
		memcpy(q, p + pos, total - pos);
		memcpy(q + total - pos, p, pos);
		free(p);
		p = q;
	}
	mp_frame_clear_data(f);
	f->data = p;
	swap_if(f, big);
	return 0;
}

/* ---------------------------------------------------------------- sinks */
struct mp_fsink {
	mp_afile *a;
	int zmode, zinit, finished;
	z_stream zs;
	unsigned char *ob;
	uint64_t bytes;
	char *path;
};

int
mp_fsink_zstart(mp_fsink *s, int zmode, int level)
{
	if (s->zmode || !zmode)
		return 0;
	if (level < 1 || level > 9)
		level = 1; /* fast: a few % larger than 6, about 5x quicker on CT */
	if (deflateInit2(&s->zs, level, Z_DEFLATED, zmode == 1 ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return mp_seterr("%s: cannot start the zlib encoder", s->path);
	s->zmode = zmode;
	s->zinit = 1;
	s->ob = mp_xmalloc(ZBUF);
	return 0;
}

mp_fsink *
mp_fsink_open(const char *path, int zmode, int level)
{
	mp_fsink *s;
	mp_afile *a = mp_afile_open(path);

	if (!a)
		return NULL;
	s = mp_xcalloc(1, sizeof *s);
	s->a = a;
	s->path = mp_xstrdup(path);
	if (mp_fsink_zstart(s, zmode, level) < 0) {
		mp_fsink_abort(s);
		return NULL;
	}
	return s;
}

static int
sink_raw(mp_fsink *s, const void *buf, size_t n)
{
	if (n && fwrite(buf, 1, n, s->a->fp) != n)
		return mp_seterr("%s: write error:", s->path);
	s->bytes += n;
	return 0;
}

static int
sink_deflate(mp_fsink *s, const void *buf, size_t n, int flush)
{
	const unsigned char *p = buf;

	do {
		size_t k = n > (1u << 30) ? (1u << 30) : n;
		int r;
		s->zs.next_in = (unsigned char *)(uintptr_t)p;
		s->zs.avail_in = (uInt)k;
		do {
			s->zs.next_out = s->ob;
			s->zs.avail_out = ZBUF;
			r = deflate(&s->zs, (k == n) ? flush : Z_NO_FLUSH);
			if (r == Z_STREAM_ERROR)
				return mp_seterr("%s: zlib encoder failed", s->path);
			if (sink_raw(s, s->ob, ZBUF - s->zs.avail_out) < 0)
				return -1;
		} while (s->zs.avail_out == 0 || (flush == Z_FINISH && k == n && r != Z_STREAM_END));
		p += k;
		n -= k;
	} while (n > 0);
	return 0;
}

int
mp_fsink_write(mp_fsink *s, const void *buf, size_t n)
{
	if (s->finished)
		return mp_seterr("%s: write after the end", s->path);
	return s->zmode ? sink_deflate(s, buf, n, Z_NO_FLUSH) : sink_raw(s, buf, n);
}

int
mp_fsink_write_le(mp_fsink *s, const void *buf, mp_type t, size_t nvox)
{
	size_t es = mp_type_size(t), nb = es * nvox;

	if (es == 1 || !mp_host_big())
		return mp_fsink_write(s, buf, nb);
	{
		unsigned char *tmp = mp_xmalloc(1 << 20);
		size_t step = ((size_t)1 << 20) / es * es;
		const unsigned char *p = buf;
		for (size_t done = 0; done < nb; done += step) {
			size_t k = nb - done < step ? nb - done : step;
			memcpy(tmp, p + done, k);
			mp_swap_bytes(tmp, es, k / es);
			if (mp_fsink_write(s, tmp, k) < 0) {
				free(tmp);
				return -1;
			}
		}
		free(tmp);
	}
	return 0;
}

int
mp_fsink_finish(mp_fsink *s)
{
	if (s->finished)
		return 0;
	if (s->zmode && sink_deflate(s, "", 0, Z_FINISH) < 0)
		return -1;
	s->finished = 1;
	if (fflush(s->a->fp) != 0 || ferror(s->a->fp))
		return mp_seterr("%s: write error:", s->path);
	return 0;
}

static void
sink_free(mp_fsink *s)
{
	if (s->zinit)
		deflateEnd(&s->zs);
	free(s->ob);
	free(s->path);
	free(s);
}

int
mp_fsink_commit(mp_fsink *s)
{
	int rc;

	if (mp_fsink_finish(s) < 0) {
		mp_fsink_abort(s);
		return -1;
	}
	rc = mp_afile_commit(s->a);
	s->a = NULL;
	sink_free(s);
	return rc;
}

void
mp_fsink_abort(mp_fsink *s)
{
	if (!s)
		return;
	if (s->a)
		mp_afile_abort(s->a);
	sink_free(s);
}

int
mp_fsink_commit_pair(mp_fsink *hdr, mp_fsink *data)
{
	if (data && data != hdr) {
		if (mp_fsink_finish(data) < 0 || mp_fsink_finish(hdr) < 0) {
			mp_fsink_abort(data);
			mp_fsink_abort(hdr);
			return -1;
		}
		if (mp_fsink_commit(data) < 0) {
			mp_fsink_abort(hdr);
			return -1;
		}
	}
	return mp_fsink_commit(hdr);
}

uint64_t
mp_fsink_bytes(const mp_fsink *s)
{
	return s->bytes;
}

int
mp_fmt_zlib_mem(const void *buf, size_t n, int level, unsigned char **out, size_t *outn)
{
	uLongf cap = compressBound((uLong)n);
	unsigned char *p = malloc(cap ? cap : 1);

	if (!p)
		return mp_seterr("out of memory for %lu bytes", (unsigned long)cap);
	if (level < 1 || level > 9)
		level = 1; /* fast: a few % larger than 6, about 5x quicker on CT */
	if (compress2(p, &cap, buf, (uLong)n, level) != Z_OK) {
		free(p);
		return mp_seterr("zlib compression failed");
	}
	*out = p;
	*outn = cap;
	return 0;
}

/* ---------------------------------------------------------------- dispatch */
void
mp_frames_free(mp_frame **fr, size_t n)
{
	if (!fr)
		return;
	for (size_t i = 0; i < n; i++) {
		if (fr[i])
			mp_frame_free(fr[i]);
		free(fr[i]);
	}
	free(fr);
}

int
mp_file_read(const char *path, mp_frame ***frames, size_t *n)
{
	mp_fmt t = mp_fmt_from_name(path);
	mp_frame *f;
	int r;

	*frames = NULL;
	*n = 0;
	if (t == MP_FMT_UNKNOWN) {
		t = mp_fmt_sniff(path);
		if (t == MP_FMT_UNKNOWN) {
			FILE *fp = fopen(path, "rb");
			if (!fp)
				return mp_seterr("%s: cannot open:", path);
			fclose(fp);
			return mp_seterr("%s: unknown file format (neither the name nor the content is one medpipe reads)", path);
		}
	}
	if (t == MP_FMT_NPZ)
		return mp_npz_read(path, frames, n);
	if (t == MP_FMT_TIFF)
		return mp_tiff_read(path, frames, n);
	if (t == MP_FMT_MINC)
		return mp_minc_read(path, frames, n);
	if (t == MP_FMT_DICOM)
		return mp_seterr("%s: DICOM file: read DICOM with dcm2vol", path);
	f = mp_xmalloc(sizeof *f);
	mp_frame_init(f);
	switch (t) {
	case MP_FMT_NRRD:
	case MP_FMT_NHDR:
		r = mp_nrrdfile_read(path, f);
		break;
	case MP_FMT_NIFTI:
	case MP_FMT_ANALYZE:
		r = mp_nifti_read(path, f);
		break;
	case MP_FMT_MHA:
	case MP_FMT_MHD:
		r = mp_meta_read(path, f);
		break;
	case MP_FMT_NPY:
		r = mp_npy_read(path, f);
		break;
	case MP_FMT_PNG:
		r = mp_png_read(path, f);
		break;
	case MP_FMT_JPEG:
		r = mp_jpeg_read(path, f);
		break;
	case MP_FMT_BMP:
		r = mp_bmp_read(path, f);
		break;
	default:
		r = mp_seterr("%s: unsupported format", path);
		break;
	}
	if (r < 0) {
		mp_frame_free(f);
		free(f);
		return -1;
	}
	*frames = mp_xmalloc(sizeof **frames);
	(*frames)[0] = f;
	*n = 1;
	return 0;
}

int
mp_file_read1(const char *path, mp_frame *f)
{
	mp_frame **fr;
	size_t n;

	mp_frame_init(f);
	if (mp_file_read(path, &fr, &n) < 0)
		return -1;
	if (n != 1) {
		mp_frames_free(fr, n);
		return mp_seterr("%s: holds %zu arrays, expected one", path, n);
	}
	*f = *fr[0];
	free(fr[0]);
	free(fr);
	return 0;
}

int
mp_file_write_opts(const char *path, const mp_frame *f, const mp_fmt_opts *o)
{
	static const mp_fmt_opts none = { 0 };
	int fmt = mp_fmt_from_name(path);

	if (!o)
		o = &none;
	if (!f->data && !(o->src && (fmt == MP_FMT_NIFTI || fmt == MP_FMT_ANALYZE)))
		return mp_seterr("%s: the frame has no data", path);
	if (mp_frame_check(f) < 0)
		return mp_preerr("%s", path);
	switch (fmt) {
	case MP_FMT_NRRD:
	case MP_FMT_NHDR:
		return mp_nrrdfile_write(path, f, o);
	case MP_FMT_NIFTI:
	case MP_FMT_ANALYZE:
		return mp_nifti_write(path, f, o);
	case MP_FMT_MHA:
	case MP_FMT_MHD:
		return mp_meta_write(path, f, o);
	case MP_FMT_NPY:
		return mp_npy_write_file(path, f);
	case MP_FMT_NPZ:
		return mp_seterr("%s: write .npz files with vol2npz", path);
	case MP_FMT_DICOM:
		return mp_seterr("%s: writing DICOM is not supported", path);
	default:
		return mp_seterr("%s: unknown output format (use .nrrd .nhdr .nii .nii.gz .hdr .mha .mhd or .npy)", path);
	}
}

int
mp_file_write(const char *path, const mp_frame *f)
{
	return mp_file_write_opts(path, f, NULL);
}
