/* fmt_tiff.c - TIFF, BigTIFF, multi-page stacks, ImageJ/SCIFIO hyperstacks
 * and OME-TIFF (libtiff; OME-XML through libxml2).
 *
 * Frames: one per series (OME Image; else every full-resolution page of one
 * shape forms one series) and per time point. Sizes: [C,] X, Y[, Z]; a
 * first axis of C channels (kind "vector", or RGB-color for one RGB page)
 * in channel order. Spacing in mm from OME PhysicalSizeX/Y/Z and their units
 * (micrometres when no unit is named), else from an ImageJ/SCIFIO
 * description (spacing=, scales=, unit=) and XResolution/YResolution
 * (ResolutionUnit inch or cm, or ImageJ's unit), else 1. Reduced-resolution
 * pages (pyramids, thumbnails: NewSubfileType bit 0) are skipped. */
#include "mp_fmt.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <tiffio.h>

static _Thread_local char tiff_msg[256];

static void
tiff_on_error(const char *mod, const char *fmt, va_list ap)
{
	(void)mod;
	if (!tiff_msg[0])
		vsnprintf(tiff_msg, sizeof tiff_msg, fmt, ap);
}

static void
tiff_on_warn(const char *mod, const char *fmt, va_list ap)
{
	(void)mod;
	(void)fmt;
	(void)ap;
}

/* one page (IFD) */
typedef struct {
	tdir_t dir;
	uint32_t w, h;
	uint16_t spp, bps, fmt, planar, photo, comp;
	int tiled;
	mp_type t;
} page;

typedef struct {
	const char *path;
	TIFF *tif;
	page *pg;       /* every page, by IFD number */
	size_t npg;
} tfile;

static int
terr(const tfile *tf, const char *what)
{
	return mp_seterr("%s: TIFF: %s%s%s", tf->path, what, tiff_msg[0] ? ": " : "", tiff_msg);
}

static mp_type
page_type(uint16_t bps, uint16_t fmt)
{
	if (fmt == SAMPLEFORMAT_IEEEFP)
		return bps == 32 ? MP_FLOAT32 : bps == 64 ? MP_FLOAT64 : MP_NONE;
	if (fmt == SAMPLEFORMAT_INT)
		return bps == 8 ? MP_INT8 : bps == 16 ? MP_INT16 : bps == 32 ? MP_INT32 : bps == 64 ? MP_INT64 : MP_NONE;
	if (fmt == SAMPLEFORMAT_UINT || fmt == SAMPLEFORMAT_VOID || fmt == 0)
		return bps == 8 ? MP_UINT8 : bps == 16 ? MP_UINT16 : bps == 32 ? MP_UINT32 : bps == 64 ? MP_UINT64 : MP_NONE;
	return MP_NONE;
}

static int
scan_pages(tfile *tf)
{
	size_t cap = 0;

	do {
		page p;
		uint32_t sub = 0;
		memset(&p, 0, sizeof p);
		p.dir = TIFFCurrentDirectory(tf->tif);
		if (!TIFFGetField(tf->tif, TIFFTAG_IMAGEWIDTH, &p.w) || !TIFFGetField(tf->tif, TIFFTAG_IMAGELENGTH, &p.h))
			return terr(tf, "page without image size");
		TIFFGetFieldDefaulted(tf->tif, TIFFTAG_SAMPLESPERPIXEL, &p.spp);
		TIFFGetFieldDefaulted(tf->tif, TIFFTAG_BITSPERSAMPLE, &p.bps);
		TIFFGetFieldDefaulted(tf->tif, TIFFTAG_SAMPLEFORMAT, &p.fmt);
		TIFFGetFieldDefaulted(tf->tif, TIFFTAG_PLANARCONFIG, &p.planar);
		TIFFGetFieldDefaulted(tf->tif, TIFFTAG_COMPRESSION, &p.comp);
		if (!TIFFGetField(tf->tif, TIFFTAG_PHOTOMETRIC, &p.photo))
			p.photo = p.spp >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK;
		TIFFGetField(tf->tif, TIFFTAG_SUBFILETYPE, &sub);
		p.tiled = TIFFIsTiled(tf->tif);
		p.t = page_type(p.bps, p.fmt);
		if (sub & FILETYPE_REDUCEDIMAGE)
			p.t = MP_NONE, p.w = 0;   /* a thumbnail or pyramid level: skipped */
		if (tf->npg == cap) {
			cap = cap ? 2 * cap : 16;
			tf->pg = mp_xrealloc(tf->pg, cap * sizeof *tf->pg);
		}
		tf->pg[tf->npg++] = p;
		if (tf->npg > 1000000)
			return terr(tf, "too many pages");
	} while (TIFFReadDirectory(tf->tif));
	if (tiff_msg[0])
		return terr(tf, "damaged page directory");
	return 0;
}

/* the samples of page d into dst: sample s of pixel (x, y) at element
 * c0 + s + cstride * (x + w * y) */
static int
read_page(tfile *tf, size_t d, void *dst, size_t c0, size_t cstride)
{
	page *p = &tf->pg[d];
	size_t es = mp_type_size(p->t), w = p->w, h = p->h, spp = p->spp;
	unsigned char *o = dst, *buf;
	int sep = p->planar == PLANARCONFIG_SEPARATE && spp > 1;
	size_t nsamp = sep ? 1 : spp;

	if (p->t == MP_NONE)
		return mp_seterr("%s: TIFF: page %zu: %u-bit samples of format %u not supported", tf->path, d, p->bps, p->fmt);
	if (!TIFFSetDirectory(tf->tif, p->dir))
		return terr(tf, "cannot read page directory");
	if (p->comp == COMPRESSION_JPEG && p->photo == PHOTOMETRIC_YCBCR)
		TIFFSetField(tf->tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
	else if (p->photo == PHOTOMETRIC_YCBCR)
		return mp_seterr("%s: TIFF: page %zu: YCbCr without JPEG compression not supported", tf->path, d);
	if (p->tiled) {
		uint32_t tw = 0, th = 0;
		TIFFGetField(tf->tif, TIFFTAG_TILEWIDTH, &tw);
		TIFFGetField(tf->tif, TIFFTAG_TILELENGTH, &th);
		tmsize_t ts = TIFFTileSize(tf->tif);
		/* tw * th * nsamp * es <= ts, without overflow */
		if (tw == 0 || th == 0 || ts <= 0 || (uint64_t)ts / tw / th / nsamp / es == 0 ||
		    (uint64_t)ts / ((uint64_t)nsamp * es) / tw < th)
			return terr(tf, "bad tile size");
		/* a tile larger than a whole frame may be is a damaged size (a 16 GB
		 * one was seen), not a buffer to ask for */
		if ((uint64_t)ts > mp_max_bytes())
			return mp_seterr("%s: TIFF: page %zu: tiles of %lld bytes (damaged tile size?)", tf->path, d,
					 (long long)ts);
		buf = malloc((size_t)ts);
		if (!buf)
			return mp_seterr("%s: TIFF: out of memory", tf->path);
		for (size_t s = 0; s < (sep ? spp : 1); s++)
			for (uint32_t ty = 0; ty < h; ty += th)
				for (uint32_t tx = 0; tx < w; tx += tw) {
					if (TIFFReadTile(tf->tif, buf, tx, ty, 0, (uint16_t)s) < 0) {
						free(buf);
						return terr(tf, "cannot read tile");
					}
					for (uint32_t y = ty; y < ty + th && y < h; y++)
						for (uint32_t x = tx; x < tx + tw && x < w; x++)
							for (size_t k = 0; k < nsamp; k++)
								memcpy(o + (c0 + s + k + cstride * (x + w * y)) * es,
								       buf + (((size_t)(y - ty) * tw + (x - tx)) * nsamp + k) * es, es);
				}
		free(buf);
	} else {
		tmsize_t ls = TIFFScanlineSize(tf->tif);
		if (ls <= 0 || (uint64_t)ls < (uint64_t)w * nsamp * es)
			return terr(tf, "bad scanline size");
		buf = malloc((size_t)ls);
		if (!buf)
			return mp_seterr("%s: TIFF: out of memory", tf->path);
		for (size_t s = 0; s < (sep ? spp : 1); s++)
			for (uint32_t y = 0; y < h; y++) {
				if (TIFFReadScanline(tf->tif, buf, y, (uint16_t)s) < 0) {
					free(buf);
					return terr(tf, "cannot read strip data");
				}
				if (cstride == nsamp && !sep)
					memcpy(o + (c0 + cstride * w * y) * es, buf, w * nsamp * es);
				else
					for (uint32_t x = 0; x < w; x++)
						for (size_t k = 0; k < nsamp; k++)
							memcpy(o + (c0 + s + k + cstride * (x + w * y)) * es,
							       buf + (x * nsamp + k) * es, es);
			}
		free(buf);
	}
	if (tiff_msg[0])
		return terr(tf, "damaged data");
	return 0;
}

/* ---------------------------------------------------------------- units */
/* mm per unit; 0 when unknown */
static double
unit_mm(const char *u)
{
	static const struct {
		const char *n;
		double mm;
	} t[] = { { "nm", 1e-6 }, { "nanometer", 1e-6 }, { "um", 1e-3 }, { "\xc2\xb5m", 1e-3 }, { "\xce\xbcm", 1e-3 },
		  { "micron", 1e-3 }, { "microns", 1e-3 }, { "micrometer", 1e-3 }, { "micrometre", 1e-3 },
		  { "\\u00B5m", 1e-3 }, { "mm", 1 }, { "millimeter", 1 }, { "cm", 10 }, { "centimeter", 10 },
		  { "m", 1000 }, { "meter", 1000 }, { "inch", 25.4 }, { "in", 25.4 }, { "pm", 1e-9 }, { "\xc3\x85", 1e-7 } };

	if (!u)
		return 0;
	while (isspace((unsigned char)*u))
		u++;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (strcasecmp(u, t[i].n) == 0)
			return t[i].mm;
	return 0;
}

/* XResolution/YResolution as mm per pixel; ijunit: ImageJ's unit for
 * ResolutionUnit none */
static void
res_spacing(TIFF *tif, double ijunit, double *sx, double *sy)
{
	float rx = 0, ry = 0;
	uint16_t ru = RESUNIT_INCH;
	double u;

	if (!TIFFGetField(tif, TIFFTAG_XRESOLUTION, &rx) || !TIFFGetField(tif, TIFFTAG_YRESOLUTION, &ry))
		return;
	TIFFGetFieldDefaulted(tif, TIFFTAG_RESOLUTIONUNIT, &ru);
	u = ru == RESUNIT_INCH ? 25.4 : ru == RESUNIT_CENTIMETER ? 10 : ijunit;
	if (u > 0 && rx > 0 && ry > 0 && isfinite(rx) && isfinite(ry)) {
		*sx = u / rx;
		*sy = u / ry;
	}
}

/* "key=value" line of an ImageJ/SCIFIO description, copied into v */
static int
desc_val(const char *d, const char *key, char *v, size_t n)
{
	size_t k = strlen(key);

	for (const char *l = d; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		if (strncmp(l, key, k) == 0 && l[k] == '=') {
			size_t m = strcspn(l + k + 1, "\n\r");
			if (m >= n)
				m = n - 1;
			memcpy(v, l + k + 1, m);
			v[m] = 0;
			return 1;
		}
	return 0;
}

/* ---------------------------------------------------------------- frames */
typedef struct {
	size_t X, Y, Z, C, T, spp;
	mp_type t;
	double sp[3];
	size_t *ifd;      /* Z*(C/spp)*T page numbers, index z + Z*(c + Cp*t); SIZE_MAX missing */
	char name[128];
	char *chnames;
} series;

static int
emit(tfile *tf, series *s, int sno, mp_frame ***fr, size_t *nfr)
{
	size_t cp = s->C / s->spp;

	for (size_t t = 0; t < s->T; t++) {
		mp_frame *f = mp_xmalloc(sizeof *f);
		size_t plane = s->C * s->X * s->Y;
		const page *p0 = NULL;
		if (mp_img_frame(f, s->t, (int)s->C, s->C == 3 && s->spp == 3 ? "RGB-color" : "vector", s->X, s->Y, s->Z,
				 s->sp[0], s->sp[1], s->sp[2]) < 0) {
			free(f);
			return mp_preerr("%s: series %d", tf->path, sno);
		}
		for (size_t z = 0; z < s->Z; z++)
			for (size_t c = 0; c < cp; c++) {
				size_t d = s->ifd[z + s->Z * (c + cp * t)];
				int bad = d >= tf->npg;
				const page *p = bad ? NULL : &tf->pg[d];
				if (!bad && (p->w != s->X || p->h != s->Y || p->spp != s->spp || p->t != s->t))
					bad = 1;
				if (bad) {
					mp_frame_free(f);
					free(f);
					return mp_seterr("%s: series %d: plane z=%zu c=%zu t=%zu: %s", tf->path, sno, z, c, t,
							 d >= tf->npg ? "no such page in the file" : "page of another size or type");
				}
				p0 = p;
				if (read_page(tf, d, (unsigned char *)f->data + z * plane * mp_type_size(s->t), c * s->spp,
					      s->C) < 0) {
					mp_frame_free(f);
					free(f);
					return -1;
				}
			}
		mp_set_kvf(f, MP_K_SERIES, "%d", sno);
		if (s->T > 1)
			mp_set_kvf(f, MP_K_TIME, "%zu", t);
		if (s->name[0])
			mp_set_kv(f, MP_K_SERIES_NAME, s->name);
		if (s->chnames)
			mp_set_kv(f, MP_K_CHANNELS, s->chnames);
		if (p0 && p0->photo == PHOTOMETRIC_PALETTE)
			mp_set_kv(f, MP_K_TIFF_PALETTE, "indices");
		*fr = mp_xrealloc(*fr, (*nfr + 1) * sizeof **fr);
		(*fr)[(*nfr)++] = f;
	}
	return 0;
}

static const char *
xattr(xmlNode *n, const char *a, char *buf, size_t len)
{
	xmlChar *v = xmlGetProp(n, (const xmlChar *)a);

	if (!v)
		return NULL;
	snprintf(buf, len, "%s", (const char *)v);
	xmlFree(v);
	return buf;
}

static long
xattr_long(xmlNode *n, const char *a, long dflt)
{
	char b[64], *e;
	long v;

	if (!xattr(n, a, b, sizeof b))
		return dflt;
	v = strtol(b, &e, 10);
	return *e || e == b ? -1 : v;
}

static int
isname(xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* a TiffData UUID naming this very file (the OME root's UUID): renamed files */
static int
same_uuid(xmlNode *root, xmlNode *u)
{
	xmlChar *a = xmlGetProp(root, (const xmlChar *)"UUID"), *b = xmlNodeGetContent(u);
	int same = a && b && strcmp((const char *)a, (const char *)b) == 0;

	xmlFree(a);
	xmlFree(b);
	return same;
}

static mp_type
ome_type(const char *s)
{
	static const struct {
		const char *n;
		mp_type t;
	} t[] = { { "int8", MP_INT8 }, { "int16", MP_INT16 }, { "int32", MP_INT32 }, { "uint8", MP_UINT8 },
		  { "uint16", MP_UINT16 }, { "uint32", MP_UINT32 }, { "float", MP_FLOAT32 }, { "double", MP_FLOAT64 } };

	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (strcmp(s, t[i].n) == 0)
			return t[i].t;
	return MP_NONE;
}

static int
read_ome(tfile *tf, const char *xml, mp_frame ***fr, size_t *nfr)
{
	xmlDoc *doc = xmlReadMemory(xml, (int)strlen(xml), "ome.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmlNode *root;
	int sno = 0, rc = 0;
	size_t seq = 0;   /* next IFD for images without TiffData */
	const char *base = strrchr(tf->path, '/');

	base = base ? base + 1 : tf->path;
	if (!doc)
		return mp_seterr("%s: OME-TIFF: the OME-XML description does not parse", tf->path);
	root = xmlDocGetRootElement(doc);
	for (xmlNode *im = root ? root->children : NULL; im && rc == 0; im = im->next) {
		xmlNode *px = NULL;
		series s;
		char b[256];
		long v[5];
		if (!isname(im, "Image"))
			continue;
		for (xmlNode *c = im->children; c; c = c->next)
			if (isname(c, "Pixels"))
				px = c;
		if (!px) {
			rc = mp_seterr("%s: OME-TIFF: Image %d without Pixels", tf->path, sno);
			break;
		}
		memset(&s, 0, sizeof s);
		xattr(im, "Name", s.name, sizeof s.name);
		v[0] = xattr_long(px, "SizeX", -1), v[1] = xattr_long(px, "SizeY", -1), v[2] = xattr_long(px, "SizeZ", 1);
		v[3] = xattr_long(px, "SizeC", 1), v[4] = xattr_long(px, "SizeT", 1);
		for (int i = 0; i < 5; i++)
			if (v[i] < 1 || v[i] > (1L << 24)) {
				rc = mp_seterr("%s: OME-TIFF: Image %d: bad Size%c", tf->path, sno, "XYZCT"[i]);
				break;
			}
		if (rc)
			break;
		s.X = (size_t)v[0], s.Y = (size_t)v[1], s.Z = (size_t)v[2], s.C = (size_t)v[3], s.T = (size_t)v[4];
		s.t = ome_type(xattr(px, "Type", b, sizeof b) ? b : "");
		if (s.t == MP_NONE) {
			rc = mp_seterr("%s: OME-TIFF: Image %d: pixel type '%s' not supported", tf->path, sno, b);
			break;
		}
		for (int a = 0; a < 3; a++) {
			char key[32], ub[64], *e;
			double val, um;
			s.sp[a] = 1;
			snprintf(key, sizeof key, "PhysicalSize%c", "XYZ"[a]);
			if (!xattr(px, key, b, sizeof b))
				continue;
			val = strtod(b, &e);
			strcat(key, "Unit");
			um = xattr(px, key, ub, sizeof ub) ? unit_mm(ub) : 1e-3;
			if (!*e && val > 0 && isfinite(val) && um > 0)
				s.sp[a] = val * um;
		}
		/* samples per IFD: the first channel's SamplesPerPixel */
		s.spp = 1;
		{
			size_t nch = 0, len = 0;
			for (xmlNode *c = px->children; c; c = c->next)
				if (isname(c, "Channel")) {
					long sp = xattr_long(c, "SamplesPerPixel", 1);
					char nm[128];
					if (nch == 0 && sp > 1 && s.C % (size_t)sp == 0)
						s.spp = (size_t)sp;
					if (!xattr(c, "Name", nm, sizeof nm))
						snprintf(nm, sizeof nm, "%zu", nch);
					for (char *q = nm; *q; q++)
						if (*q == ',' || *q == '\n')
							*q = ' ';
					s.chnames = mp_xrealloc(s.chnames, len + strlen(nm) + 2);
					len += (size_t)sprintf(s.chnames + len, "%s%s", nch ? "," : "", nm);
					nch++;
				}
		}
		char order[8] = "XYZCT";
		xattr(px, "DimensionOrder", order, sizeof order);
		size_t cp = s.C / s.spp, np, stride[3] = { 0, 0, 0 };   /* z, c, t */
		/* every plane is a page of this file: no more planes than pages (and
		 * no overflow in Z * C * T) */
		if (mp_mulsize(s.Z, cp, &np) < 0 || mp_mulsize(np, s.T, &np) < 0 || np > tf->npg) {
			rc = mp_seterr("%s: OME-TIFF: Image %d: %zu x %zu x %zu planes, but the file has %zu pages", tf->path,
				       sno, s.Z, cp, s.T, tf->npg);
			free(s.chnames);
			break;
		}
		{
			size_t m = 1;
			int seen = 0;
			if (strlen(order) != 5 || order[0] != 'X' || order[1] != 'Y') {
				rc = mp_seterr("%s: OME-TIFF: Image %d: bad DimensionOrder '%s'", tf->path, sno, order);
				free(s.chnames);
				break;
			}
			for (int i = 2; i < 5; i++) {
				int k = order[i] == 'Z' ? 0 : order[i] == 'C' ? 1 : order[i] == 'T' ? 2 : -1;
				/* Z, C and T once each */
				if (k < 0 || (seen & 1 << k)) {
					rc = mp_seterr("%s: OME-TIFF: Image %d: bad DimensionOrder '%s'", tf->path, sno, order);
					break;
				}
				seen |= 1 << k;
				stride[k] = m;
				m *= k == 0 ? s.Z : k == 1 ? cp : s.T;
			}
			if (rc) {
				free(s.chnames);
				break;
			}
		}
		/* plane number (in DimensionOrder) -> IFD */
		size_t *byorder = mp_xmalloc(np * sizeof *byorder);
		int anytd = 0;
		for (size_t i = 0; i < np; i++)
			byorder[i] = SIZE_MAX;
		for (xmlNode *td = px->children; td && rc == 0; td = td->next) {
			if (!isname(td, "TiffData"))
				continue;
			anytd = 1;
			for (xmlNode *u = td->children; u; u = u->next)
				if (isname(u, "UUID") && xattr(u, "FileName", b, sizeof b) && strcmp(b, base) != 0 &&
				    !same_uuid(root, u))
					rc = mp_seterr("%s: OME-TIFF: Image %d: planes in another file (%s): multi-file OME-TIFF not supported",
						       tf->path, sno, b);
			long ifd = xattr_long(td, "IFD", 0), fz = xattr_long(td, "FirstZ", 0), fc = xattr_long(td, "FirstC", 0),
			     ft = xattr_long(td, "FirstT", 0);
			int hasattr = td->properties != NULL;
			long pc = xattr_long(td, "PlaneCount", hasattr ? 1 : (long)np);
			if (ifd < 0 || fz < 0 || fc < 0 || ft < 0 || pc < 0 || (size_t)fz >= s.Z || (size_t)fc >= cp ||
			    (size_t)ft >= s.T) {
				if (!rc)
					rc = mp_seterr("%s: OME-TIFF: Image %d: bad TiffData", tf->path, sno);
				break;
			}
			size_t first = (size_t)fz * stride[0] + (size_t)fc * stride[1] + (size_t)ft * stride[2];
			for (size_t k = 0; k < (size_t)pc && first + k < np; k++)
				byorder[first + k] = (size_t)ifd + k;
		}
		if (!anytd)
			for (size_t i = 0; i < np; i++)
				byorder[i] = seq + i;
		seq += np;
		s.ifd = mp_xmalloc(np * sizeof *s.ifd);
		for (size_t t = 0; t < s.T; t++)
			for (size_t c = 0; c < cp; c++)
				for (size_t z = 0; z < s.Z; z++)
					s.ifd[z + s.Z * (c + cp * t)] = byorder[z * stride[0] + c * stride[1] + t * stride[2]];
		free(byorder);
		if (rc == 0)
			rc = emit(tf, &s, sno, fr, nfr);
		free(s.ifd);
		free(s.chnames);
		sno++;
	}
	xmlFreeDoc(doc);
	if (rc == 0 && sno == 0)
		rc = mp_seterr("%s: OME-TIFF: the OME-XML names no Image", tf->path);
	return rc;
}

/* a plain TIFF, a multi-page stack or an ImageJ/SCIFIO hyperstack: the
 * full-resolution pages; pages of the first page's shape form series 0,
 * each other shape its own series */
static int
read_plain(tfile *tf, const char *desc, mp_frame ***fr, size_t *nfr)
{
	size_t *used = mp_xcalloc(tf->npg, sizeof *used);
	int sno = 0, rc = 0;
	char v[256], ax0[128];
	double ijunit = 0, zsp = 0;
	long ijc = 0, ijz = 0, ijt = 0, ijn = 0;

	if (desc && (strncmp(desc, "ImageJ=", 7) == 0 || strncmp(desc, "SCIFIO=", 7) == 0)) {
		if (desc_val(desc, "unit", v, sizeof v))
			ijunit = unit_mm(v);
		if (desc_val(desc, "spacing", v, sizeof v))
			zsp = strtod(v, NULL);
		else if (desc_val(desc, "scales", v, sizeof v) && desc_val(desc, "axes", ax0, sizeof ax0)) {
			/* SCIFIO: scales listed in the order of axes */
			char *sc = v, *ax = ax0;
			for (int i = 0; *ax; i++) {
				double x = strtod(sc, &sc);
				if (*ax == 'Z')
					zsp = x;
				ax += strcspn(ax, ",");
				if (*ax) ax++;
				if (*sc == ',') sc++;
			}
		}
		if (desc_val(desc, "channels", v, sizeof v))
			ijc = atol(v);
		if (desc_val(desc, "slices", v, sizeof v))
			ijz = atol(v);
		if (desc_val(desc, "frames", v, sizeof v))
			ijt = atol(v);
		if (desc_val(desc, "images", v, sizeof v))
			ijn = atol(v);
	}
	for (size_t i = 0; i < tf->npg && rc == 0; i++) {
		series s;
		size_t n = 0, *list;
		const page *p = &tf->pg[i];
		if (used[i] || p->w == 0)
			continue;
		list = mp_xmalloc(tf->npg * sizeof *list);
		for (size_t j = i; j < tf->npg; j++) {
			const page *q = &tf->pg[j];
			if (!used[j] && q->w == p->w && q->h == p->h && q->spp == p->spp && q->t == p->t) {
				used[j] = 1;
				list[n++] = j;
			}
		}
		memset(&s, 0, sizeof s);
		s.X = p->w, s.Y = p->h, s.spp = p->spp, s.t = p->t, s.C = p->spp, s.Z = n, s.T = 1;
		s.sp[0] = s.sp[1] = s.sp[2] = 1;
		if (!TIFFSetDirectory(tf->tif, p->dir)) {
			free(list);
			rc = terr(tf, "cannot read page directory");
			break;
		}
		res_spacing(tf->tif, ijunit, &s.sp[0], &s.sp[1]);
		if (sno == 0 && ijn > 1 && (size_t)ijn > n && p->spp == 1) {
			free(list);
			rc = mp_seterr("%s: TIFF: ImageJ stack of %ld images stored in %zu pages (a contiguous stack past 4 GB) is not supported",
				       tf->path, ijn, n);
			break;
		}
		if (sno == 0 && (ijc > 1 || ijt > 1) && p->spp == 1) {
			/* ImageJ hyperstack: pages in CZT order */
			size_t c = ijc > 0 ? (size_t)ijc : 1, z = ijz > 0 ? (size_t)ijz : 1, t = ijt > 0 ? (size_t)ijt : 1, czt;
			/* each at most n: c * z * t cannot wrap around to n */
			if (c <= n && z <= n && t <= n && mp_mulsize(c, z, &czt) == 0 && mp_mulsize(czt, t, &czt) == 0 &&
			    czt == n) {
				s.C = c, s.Z = z, s.T = t;
			}
		}
		if (zsp > 0 && isfinite(zsp) && s.Z > 1)
			s.sp[2] = zsp * (ijunit > 0 ? ijunit : 1);
		s.ifd = mp_xmalloc(n * sizeof *s.ifd);
		{
			size_t cp = s.C / s.spp;
			for (size_t t = 0; t < s.T; t++)
				for (size_t c = 0; c < cp; c++)
					for (size_t z = 0; z < s.Z; z++)
						s.ifd[z + s.Z * (c + cp * t)] = list[c + cp * (z + s.Z * t)];
		}
		free(list);
		rc = emit(tf, &s, sno, fr, nfr);
		free(s.ifd);
		sno++;
	}
	free(used);
	if (rc == 0 && sno == 0)
		rc = mp_seterr("%s: TIFF: no full-resolution image in the file", tf->path);
	return rc;
}

int
mp_tiff_read(const char *path, mp_frame ***frames, size_t *n)
{
	tfile tf;
	char *desc = NULL;
	int rc;

	*frames = NULL;
	*n = 0;
	memset(&tf, 0, sizeof tf);
	tf.path = path;
	tiff_msg[0] = 0;
	TIFFSetErrorHandler(tiff_on_error);
	TIFFSetWarningHandler(tiff_on_warn);
	tf.tif = TIFFOpen(path, "rm");
	if (!tf.tif) {
		FILE *fp = fopen(path, "rb");
		if (!fp)
			return mp_seterr("%s: cannot open:", path);
		fclose(fp);
		return terr(&tf, "cannot open");
	}
	{
		char *d0 = NULL;
		if (TIFFGetField(tf.tif, TIFFTAG_IMAGEDESCRIPTION, &d0) && d0)
			desc = mp_xstrdup(d0);
	}
	rc = scan_pages(&tf);
	if (rc == 0) {
		if (desc && strstr(desc, "<OME") && strstr(desc, "Pixels"))
			rc = read_ome(&tf, desc, frames, n);
		else
			rc = read_plain(&tf, desc, frames, n);
	}
	TIFFClose(tf.tif);
	free(tf.pg);
	free(desc);
	if (rc < 0) {
		mp_frames_free(*frames, *n);
		*frames = NULL;
		*n = 0;
	}
	return rc;
}
