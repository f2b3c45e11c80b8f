/* wsi.c - whole-slide images (OpenSlide) and tissue detection */
#include "mp.h"
#include "mp_wsi.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openslide.h>
#include <tiffio.h>

struct mp_wsi {
	openslide_t *osr;
	char *path;
	const char *vendor;
};

/* a TIFF-based slide whose page declares more tiles (or strips) than the
 * file can hold offsets for (4 bytes each, at least) is damaged: OpenSlide
 * would allocate its tile table from that count (31 GB seen). 0: fine or not
 * a TIFF (OpenSlide decides); -1: mp_err set. */
static int
tiff_counts_ok(const char *path)
{
	TIFF *t;
	FILE *fp = fopen(path, "rb");
	long long fsize;
	int d = 0, rc = 0;

	if (!fp)
		return 0;
	fseek(fp, 0, SEEK_END);
	fsize = ftell(fp);
	fclose(fp);
	if (!(t = TIFFOpen(path, "rm")))
		return 0;
	do {
		uint32_t w = 0, h = 0, tw = 0, th = 0, rps = 0;
		uint16_t spp = 1, pc = PLANARCONFIG_CONTIG;
		uint64_t n;
		TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w);
		TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
		TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
		TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &pc);
		if (TIFFIsTiled(t)) {
			TIFFGetField(t, TIFFTAG_TILEWIDTH, &tw);
			TIFFGetField(t, TIFFTAG_TILELENGTH, &th);
			n = tw && th ? ((uint64_t)w + tw - 1) / tw * (((uint64_t)h + th - 1) / th) : 0;
		} else {
			TIFFGetFieldDefaulted(t, TIFFTAG_ROWSPERSTRIP, &rps);
			n = rps ? ((uint64_t)h + rps - 1) / rps : 0;
		}
		if (pc == PLANARCONFIG_SEPARATE)
			n *= spp;
		if (n > (uint64_t)fsize / 4) {
			rc = mp_seterr("%s: TIFF page %d declares %llu %s, more than the file's %lld bytes can hold (damaged)",
				       path, d, (unsigned long long)n, TIFFIsTiled(t) ? "tiles" : "strips", fsize);
			break;
		}
	} while (++d < 100000 && TIFFReadDirectory(t));
	TIFFClose(t);
	return rc;
}

/* every tag of every IFD (classic and BigTIFF) holds at most as many bytes
 * as the file has: OpenSlide allocates a tag's value (an ICC profile of
 * 31 GB was seen) from its declared count before reading it. 0: fine or not
 * a TIFF; -1: mp_err set. */
static uint64_t
rdn(const unsigned char *p, int n, int big)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[big ? n - 1 - i : i] << (8 * i);
	return v;
}

static int
tiff_tags_ok(const char *path)
{
	static const unsigned char tsz[19] = { 0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 0, 0, 8, 8, 8 };
	FILE *fp = fopen(path, "rb");
	unsigned char h[16], e[20];
	long long fsize;
	uint64_t off;
	int big, bt, rc = 0;

	if (!fp)
		return 0;
	fseek(fp, 0, SEEK_END);
	fsize = ftell(fp);
	rewind(fp);
	if (fsize < 8 || fread(h, 1, 16 <= fsize ? 16 : 8, fp) < 8 || !((h[0] == 'I' && h[1] == 'I') || (h[0] == 'M' && h[1] == 'M'))) {
		fclose(fp);
		return 0;
	}
	big = h[0] == 'M';
	bt = rdn(h + 2, 2, big) == 43;
	if (!bt && rdn(h + 2, 2, big) != 42) {
		fclose(fp);
		return 0;
	}
	off = bt ? (fsize >= 16 ? rdn(h + 8, 8, big) : 0) : rdn(h + 4, 4, big);
	for (int d = 0; off && d < 100000 && rc == 0; d++) {
		unsigned char c[8];
		uint64_t n;
		int es = bt ? 20 : 12;
		if (off > (uint64_t)fsize || fseek(fp, (long)off, SEEK_SET) || fread(c, 1, bt ? 8 : 2, fp) != (size_t)(bt ? 8 : 2))
			break;   /* OpenSlide reports a broken chain itself */
		n = rdn(c, bt ? 8 : 2, big);
		if (n > (uint64_t)fsize / (uint64_t)es)
			break;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t cnt, ty;
			if (fread(e, 1, (size_t)es, fp) != (size_t)es)
				break;
			ty = rdn(e + 2, 2, big);
			cnt = rdn(e + 4, bt ? 8 : 4, big);
			if (ty < sizeof tsz && tsz[ty] && cnt > (uint64_t)fsize / tsz[ty]) {
				rc = mp_seterr("%s: TIFF page %d: tag %u declares %llu values, more than the file's %lld bytes hold (damaged)",
					       path, d, (unsigned)rdn(e, 2, big), (unsigned long long)cnt, fsize);
				break;
			}
		}
		if (rc || fread(c, 1, bt ? 8 : 4, fp) != (size_t)(bt ? 8 : 4))
			break;
		off = rdn(c, bt ? 8 : 4, big);
	}
	fclose(fp);
	return rc;
}

mp_wsi *
mp_wsi_open(const char *path)
{
	const char *vendor, *e;
	openslide_t *osr;
	mp_wsi *w;
	FILE *fp = fopen(path, "rb");

	if (!fp) {
		mp_seterr("%s: cannot open:", path);
		return NULL;
	}
	fclose(fp);
	/* libtiff's warnings (e.g. about tiles wider than a level) are noise here,
	 * and its errors too: OpenSlide reports the failure (openslide_get_error),
	 * and a damaged slide gets one line on stderr, not libtiff's as well */
	TIFFSetWarningHandler(NULL);
	TIFFSetErrorHandler(NULL);
	if (tiff_tags_ok(path) < 0 || tiff_counts_ok(path) < 0)
		return NULL;
	vendor = openslide_detect_vendor(path);
	if (!vendor) {
		mp_seterr("%s: not a slide format OpenSlide reads", path);
		return NULL;
	}
	osr = openslide_open(path);
	if (!osr) {
		mp_seterr("%s: OpenSlide (%s) cannot open it", path, vendor);
		return NULL;
	}
	if ((e = openslide_get_error(osr))) {
		mp_seterr("%s: OpenSlide: %s", path, e);
		openslide_close(osr);
		return NULL;
	}
	if (openslide_get_level_count(osr) < 1) {
		mp_seterr("%s: OpenSlide: no levels", path);
		openslide_close(osr);
		return NULL;
	}
	w = mp_xcalloc(1, sizeof *w);
	w->osr = osr;
	w->path = mp_xstrdup(path);
	w->vendor = vendor;
	return w;
}

void
mp_wsi_close(mp_wsi *w)
{
	if (!w)
		return;
	openslide_close(w->osr);
	free(w->path);
	free(w);
}

int
mp_wsi_levels(const mp_wsi *w)
{
	return openslide_get_level_count(w->osr);
}

void
mp_wsi_level_size(const mp_wsi *w, int level, int64_t *lw, int64_t *lh)
{
	openslide_get_level_dimensions(w->osr, level, lw, lh);
}

double
mp_wsi_downsample(const mp_wsi *w, int level)
{
	return openslide_get_level_downsample(w->osr, level);
}

static double
prop(const mp_wsi *w, const char *name)
{
	const char *v = openslide_get_property_value(w->osr, name);
	char *e;
	double d;

	if (!v)
		return 0;
	d = strtod(v, &e);
	return e != v && isfinite(d) && d > 0 ? d : 0;
}

void
mp_wsi_mpp(const mp_wsi *w, double *mx, double *my)
{
	*mx = prop(w, OPENSLIDE_PROPERTY_NAME_MPP_X);
	*my = prop(w, OPENSLIDE_PROPERTY_NAME_MPP_Y);
	if (!(*mx > 0) || !(*my > 0))
		*mx = *my = 0;
}

const char *
mp_wsi_vendor(const mp_wsi *w)
{
	return w->vendor;
}

int
mp_wsi_best_level(const mp_wsi *w, double ds)
{
	return openslide_get_best_level_for_downsample(w->osr, ds);
}

int
mp_wsi_read_rgb(mp_wsi *s, int64_t x, int64_t y, int level, int64_t w, int64_t h, uint8_t *rgb)
{
	size_t n;
	uint32_t *buf;
	const char *e;

	if (w <= 0 || h <= 0 || mp_mulsize((size_t)w, (size_t)h, &n) < 0 || n > ((size_t)1 << 31))
		return mp_seterr("region of %lld x %lld pixels", (long long)w, (long long)h);
	/* zeroed: OpenSlide leaves some pixels of some levels unwritten (seen on
	 * generic tiled TIFF pyramids); they read as transparent black, as
	 * openslide-python's zero-filled buffer gives, not as heap garbage */
	buf = calloc(n, sizeof *buf);
	if (!buf)
		return mp_seterr("out of memory for a %lld x %lld region", (long long)w, (long long)h);
	openslide_read_region(s->osr, buf, x, y, level, w, h);
	if ((e = openslide_get_error(s->osr))) {
		free(buf);
		return mp_seterr("OpenSlide: %s", e);
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t v = buf[i];
		unsigned a = v >> 24, c[3] = { v >> 16 & 255, v >> 8 & 255, v & 255 };
		if (a == 0) {
			/* openslide-python leaves such a pixel as it is: its bytes in
			 * memory read as RGBA (on little-endian hosts B, G, R); usually 0 */
			uint8_t b[4];
			memcpy(b, &v, 4);
			memcpy(rgb + 3 * i, b, 3);
			continue;
		}
		for (int k = 0; k < 3; k++)
			rgb[3 * i + k] = a == 255 ? (uint8_t)c[k] : (uint8_t)(255 * c[k] / a);
	}
	free(buf);
	return 0;
}

/* ---------------------------------------------------------------- tissue */
static void
median_u8(const uint8_t *src, size_t w, size_t h, int k, uint8_t *dst)
{
	int r = k / 2, half = (k * k) / 2;

	for (size_t y = 0; y < h; y++) {
		unsigned hist[256];
		memset(hist, 0, sizeof hist);
		/* window at x = 0, replicated border */
		for (int dy = -r; dy <= r; dy++) {
			long yy = (long)y + dy;
			yy = yy < 0 ? 0 : yy >= (long)h ? (long)h - 1 : yy;
			for (int dx = -r; dx <= r; dx++) {
				long xx = dx < 0 ? 0 : dx >= (long)w ? (long)w - 1 : dx;
				hist[src[(size_t)yy * w + (size_t)xx]]++;
			}
		}
		for (size_t x = 0; x < w; x++) {
			int acc = 0, m = 0;
			if (x > 0) {
				long xo = (long)x - 1 - r, xn = (long)x + r;
				xo = xo < 0 ? 0 : xo;
				xn = xn >= (long)w ? (long)w - 1 : xn;
				for (int dy = -r; dy <= r; dy++) {
					long yy = (long)y + dy;
					yy = yy < 0 ? 0 : yy >= (long)h ? (long)h - 1 : yy;
					hist[src[(size_t)yy * w + (size_t)xo]]--;
					hist[src[(size_t)yy * w + (size_t)xn]]++;
				}
			}
			while ((acc += (int)hist[m]) <= half)
				m++;
			dst[y * w + x] = (uint8_t)m;
		}
	}
}

static int
otsu_u8(const uint8_t *v, size_t n)
{
	double hist[256] = { 0 }, mu = 0, q1 = 0, mu1 = 0, best = 0;
	int t = 0;

	for (size_t i = 0; i < n; i++)
		hist[v[i]]++;
	for (int i = 0; i < 256; i++) {
		hist[i] /= (double)n;
		mu += i * hist[i];
	}
	/* as OpenCV: between-class variance, the first maximum */
	for (int i = 0; i < 256; i++) {
		double p = hist[i], q2, mu2, s;
		mu1 *= q1;
		q1 += p;
		q2 = 1 - q1;
		/* (OpenCV leaves mu1 unnormalised when it skips a level) */
		if (fmin(q1, q2) < FLT_EPSILON || fmax(q1, q2) > 1 - FLT_EPSILON)
			continue;
		mu1 = (mu1 + i * p) / q1;
		mu2 = (mu - q1 * mu1) / q2;
		s = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
		if (s > best) {
			best = s;
			t = i;
		}
	}
	return t;
}

int
mp_tissue_mask(const uint8_t *rgb, size_t w, size_t h, int median, int otsu, int thresh, uint8_t *mask, int *used)
{
	size_t n;
	uint8_t *s, *m;
	int tab[256];

	if (mp_mulsize(w, h, &n) < 0)
		return -1;
	if (median < 1 || median % 2 == 0)
		return mp_seterr("median size %d: want an odd number", median);
	s = malloc(n ? n : 1);
	m = malloc(n ? n : 1);
	if (!s || !m) {
		free(s);
		free(m);
		return mp_seterr("out of memory for a %zu x %zu tissue mask", w, h);
	}
	/* OpenCV's RGB2HSV for 8 bits: sdiv_table[v] = round((255 << 12) / v) */
	tab[0] = 0;
	for (int v = 1; v < 256; v++)
		tab[v] = (int)lround((255 << 12) / (double)v);
	for (size_t i = 0; i < n; i++) {
		int r = rgb[3 * i], g = rgb[3 * i + 1], b = rgb[3 * i + 2];
		int mx = r > g ? r : g, mn = r < g ? r : g;
		mx = b > mx ? b : mx;
		mn = b < mn ? b : mn;
		s[i] = (uint8_t)(((mx - mn) * tab[mx] + (1 << 11)) >> 12);
	}
	if (median > 1)
		median_u8(s, w, h, median, m);
	else
		memcpy(m, s, n);
	if (otsu)
		thresh = otsu_u8(m, n);
	for (size_t i = 0; i < n; i++)
		mask[i] = m[i] > thresh ? 255 : 0;
	if (used)
		*used = thresh;
	free(s);
	free(m);
	return 0;
}
