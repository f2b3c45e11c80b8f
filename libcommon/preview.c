/* preview.c - slices of a volume drawn with label maps over them, text */
#include "mp.h"
#include "mp_preview.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* distinct colours for labels 1..20 (then a hash of the label) */
static const uint8_t palette[20][3] = {
	{ 230, 25, 75 }, { 60, 180, 75 }, { 255, 225, 25 }, { 0, 130, 200 }, { 245, 130, 48 },
	{ 145, 30, 180 }, { 70, 240, 240 }, { 240, 50, 230 }, { 210, 245, 60 }, { 250, 190, 212 },
	{ 0, 128, 128 }, { 220, 190, 255 }, { 170, 110, 40 }, { 255, 250, 200 }, { 128, 0, 0 },
	{ 170, 255, 195 }, { 128, 128, 0 }, { 255, 215, 180 }, { 0, 0, 128 }, { 255, 128, 128 },
};

void
mp_label_colour(long label, uint8_t rgb[3])
{
	if (label >= 1 && label <= 20) {
		memcpy(rgb, palette[label - 1], 3);
		return;
	}
	uint32_t h = (uint32_t)label * 2654435761u;
	h ^= h >> 15;
	h *= 2246822519u;
	h ^= h >> 13;
	rgb[0] = (uint8_t)(64 + (h & 0xbf));
	rgb[1] = (uint8_t)(64 + ((h >> 8) & 0xbf));
	rgb[2] = (uint8_t)(64 + ((h >> 16) & 0xbf));
}

size_t
mp_preview_nslices(const size_t dim[3], int axis)
{
	return axis == 0 ? dim[2] : axis == 1 ? dim[1] : dim[0];
}

/* the in-plane axes (u horizontal, v vertical) of a plane */
static void
plane_axes(int axis, int *u, int *v)
{
	*u = axis == 2 ? 1 : 0;
	*v = axis == 0 ? 1 : 2;
}

void
mp_preview_size(const size_t dim[3], const double sp[3], const mp_preview_opts *o, size_t *w, size_t *h)
{
	int u, v;
	plane_axes(o->axis, &u, &v);
	double su = sp[u] > 0 ? sp[u] : 1, sv = sp[v] > 0 ? sp[v] : 1;
	double base = su < sv ? su : sv;
	double k = o->scale > 0 ? o->scale : 1;
	double fw = floor(dim[u] * su / base * k + 0.5), fh = floor(dim[v] * sv / base * k + 0.5);
	*w = fw < 1 ? 1 : (size_t)fw;
	*h = fh < 1 ? 1 : (size_t)fh;
}

/* voxel index of output pixel (px,py) of slice s */
static size_t
src_index(const size_t dim[3], int axis, size_t s, size_t px, size_t py, size_t w, size_t h)
{
	int u, v;
	plane_axes(axis, &u, &v);
	size_t iu = (size_t)(((double)px + 0.5) * dim[u] / w);
	size_t iv = (size_t)(((double)py + 0.5) * dim[v] / h);
	if (iu >= dim[u])
		iu = dim[u] - 1;
	if (iv >= dim[v])
		iv = dim[v] - 1;
	if (v == 2)              /* superior up */
		iv = dim[2] - 1 - iv;
	size_t p[3];
	p[u] = iu;
	p[v] = iv;
	p[axis == 0 ? 2 : axis == 1 ? 1 : 0] = s;
	return (p[2] * dim[1] + p[1]) * dim[0] + p[0];
}

void
mp_preview_slice(mp_rgb *r, size_t x0, size_t y0, const mp_frame *img,
                 const mp_frame *labs, size_t nlabs,
                 const size_t dim[3], const double sp[3], size_t s,
                 const mp_preview_opts *o)
{
	size_t w, h;
	mp_preview_size(dim, sp, o, &w, &h);
	size_t *idx = mp_xmalloc(w * h * sizeof *idx);
	for (size_t py = 0; py < h; py++)
		for (size_t px = 0; px < w; px++)
			idx[py * w + px] = src_index(dim, o->axis, s, px, py, w, h);
	double span = o->hi - o->lo;
	for (size_t py = 0; py < h; py++) {
		if (y0 + py >= r->h)
			break;
		for (size_t px = 0; px < w; px++) {
			if (x0 + px >= r->w)
				break;
			uint8_t *q = r->px + ((y0 + py) * r->w + x0 + px) * 3;
			double g = 0;
			if (img) {
				double val = mp_get(img->data, img->type, idx[py * w + px]);
				g = span > 0 ? (val - o->lo) / span : (val >= o->hi ? 1 : 0);
				if (!(g > 0))
					g = 0;
				if (g > 1)
					g = 1;
			}
			uint8_t gv = (uint8_t)floor(g * 255 + 0.5);
			q[0] = q[1] = q[2] = gv;
		}
	}
	int32_t *L = mp_xmalloc(w * h * sizeof *L);
	for (size_t m = 0; m < nlabs; m++) {
		/* this slice of label frame m, as the tool shows labels (int32) */
		for (size_t i = 0; i < w * h; i++)
			L[i] = (int32_t)mp_get(labs[m].data, labs[m].type, idx[i]);
		for (size_t py = 0; py < h && y0 + py < r->h; py++)
			for (size_t px = 0; px < w && x0 + px < r->w; px++) {
				int32_t l = L[py * w + px];
				if (l == 0)
					continue;
				uint8_t c[3];
				mp_label_colour(l, c);
				int edge = 0;
				if (o->outline || o->alpha <= 0) {
					edge = px == 0 || py == 0 || px + 1 == w || py + 1 == h ||
					       L[py * w + px - 1] != l || L[py * w + px + 1] != l ||
					       L[(py - 1) * w + px] != l || L[(py + 1) * w + px] != l;
				}
				uint8_t *q = r->px + ((y0 + py) * r->w + x0 + px) * 3;
				if (edge) {
					memcpy(q, c, 3);
				} else if (o->alpha > 0) {
					for (int k = 0; k < 3; k++)
						q[k] = (uint8_t)floor((1 - o->alpha) * q[k] + o->alpha * c[k] + 0.5);
				}
			}
	}
	free(L);
	free(idx);
}

/* ---------------------------------------------------------------- text */
typedef struct {
	char c;
	uint8_t row[7];
} glyph;

static const glyph font[] = {
	{ '0', { 0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E } },
	{ '1', { 0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E } },
	{ '2', { 0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F } },
	{ '3', { 0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E } },
	{ '4', { 0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02 } },
	{ '5', { 0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E } },
	{ '6', { 0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E } },
	{ '7', { 0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08 } },
	{ '8', { 0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E } },
	{ '9', { 0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C } },
	{ 'A', { 0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11 } },
	{ 'B', { 0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E } },
	{ 'C', { 0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E } },
	{ 'D', { 0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C } },
	{ 'E', { 0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F } },
	{ 'F', { 0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10 } },
	{ 'G', { 0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F } },
	{ 'H', { 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11 } },
	{ 'I', { 0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E } },
	{ 'J', { 0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C } },
	{ 'K', { 0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11 } },
	{ 'L', { 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F } },
	{ 'M', { 0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11 } },
	{ 'N', { 0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11 } },
	{ 'O', { 0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E } },
	{ 'P', { 0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10 } },
	{ 'Q', { 0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D } },
	{ 'R', { 0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11 } },
	{ 'S', { 0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E } },
	{ 'T', { 0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04 } },
	{ 'U', { 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E } },
	{ 'V', { 0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04 } },
	{ 'W', { 0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A } },
	{ 'X', { 0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11 } },
	{ 'Y', { 0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04 } },
	{ 'Z', { 0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F } },
	{ '-', { 0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00 } },
	{ '_', { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F } },
	{ '.', { 0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C } },
	{ ',', { 0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08 } },
	{ ':', { 0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00 } },
	{ '/', { 0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10 } },
	{ '=', { 0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00 } },
	{ '(', { 0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02 } },
	{ ')', { 0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08 } },
	{ '+', { 0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00 } },
	{ '#', { 0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A } },
};

static const uint8_t *
glyph_rows(char c)
{
	if (c >= 'a' && c <= 'z')
		c = (char)(c - 'a' + 'A');
	for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
		if (font[i].c == c)
			return font[i].row;
	return NULL;
}

size_t
mp_text_width(const char *s, int k)
{
	size_t n = strlen(s);
	return n ? (n * 6 - 1) * (size_t)k : 0;
}

void
mp_fill_rect(mp_rgb *r, size_t x, size_t y, size_t w, size_t h, const uint8_t rgb[3])
{
	for (size_t j = y; j < y + h && j < r->h; j++)
		for (size_t i = x; i < x + w && i < r->w; i++)
			memcpy(r->px + (j * r->w + i) * 3, rgb, 3);
}

void
mp_draw_text(mp_rgb *r, size_t x, size_t y, const char *s, int k, const uint8_t rgb[3])
{
	for (; *s; s++, x += 6 * (size_t)k) {
		const uint8_t *g = glyph_rows(*s);
		if (!g)
			continue;
		for (int row = 0; row < 7; row++)
			for (int col = 0; col < 5; col++)
				if (g[row] & (0x10 >> col))
					mp_fill_rect(r, x + (size_t)col * k, y + (size_t)row * k, (size_t)k, (size_t)k, rgb);
	}
}

/* ---------------------------------------------------------------- montages */
size_t
mp_preview_voxel(const size_t dim[3], int axis, size_t s, size_t u)
{
	size_t p[3];

	if (axis == 0) { p[0] = u % dim[0]; p[1] = u / dim[0]; p[2] = s; }
	else if (axis == 1) { p[0] = u % dim[0]; p[2] = u / dim[0]; p[1] = s; }
	else { p[1] = u % dim[1]; p[2] = u / dim[1]; p[0] = s; }
	return (p[2] * dim[1] + p[1]) * dim[0] + p[0];
}

static const char *const plane_name[3] = { "axial", "coronal", "sagittal" };

static int
cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return (x > y) - (x < y);
}

int
mp_preview_select(const char *spec, const mp_frame *labs, size_t nlabs, const size_t dim[3], int axis,
                  size_t *sel, size_t *nsel)
{
	size_t ns = mp_preview_nslices(dim, axis), plane = dim[0] * dim[1] * dim[2] / (ns ? ns : 1);

	*nsel = 0;
	if (strcmp(spec, "labelled") == 0 || strcmp(spec, "all") == 0 || strncmp(spec, "every:", 6) == 0) {
		long every = 1;
		if (strncmp(spec, "every:", 6) == 0 && (mp_parse_long(spec + 6, &every) < 0 || every < 1)) {
			mp_seterr("--slices: bad 'every:N': %s", spec);
			return -2;
		}
		int lab = strcmp(spec, "labelled") == 0;
		for (size_t s = 0; s < ns; s += (size_t)every) {
			if (lab) {
				int any = 0;
				for (size_t m = 0; m < nlabs && !any; m++)
					for (size_t i = 0; i < plane && !any; i++)
						any = mp_get(labs[m].data, labs[m].type, mp_preview_voxel(dim, axis, s, i)) != 0;
				if (!any)
					continue;
			}
			sel[(*nsel)++] = s;
		}
		return 0;
	}
	const char *p = spec;
	while (*p) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v < 0 || (*end && *end != ',')) {
			mp_seterr("--slices: expected labelled, all, every:N or a list of numbers: %s", spec);
			return -2;
		}
		if ((size_t)v >= ns)
			return mp_seterr("--slices: slice %ld is beyond the %zu slices of the %s plane", v, ns,
			                 plane_name[axis]);
		if (*nsel < ns)
			sel[(*nsel)++] = (size_t)v;
		p = *end ? end + 1 : end;
	}
	qsort(sel, *nsel, sizeof *sel, cmp_size);
	return 0;
}

void
mp_preview_spread(size_t *sel, size_t *nsel, size_t max)
{
	if (max > 0 && *nsel > max) {
		for (size_t i = 0; i < max; i++)
			sel[i] = sel[(size_t)((i + 0.5) * *nsel / max)];
		*nsel = max;
	}
}

size_t
mp_preview_labels(const mp_frame *labs, size_t nlabs, const size_t dim[3], int axis, const size_t *sel,
                  size_t nsel, int32_t **out)
{
	size_t ns = mp_preview_nslices(dim, axis), plane = dim[0] * dim[1] * dim[2] / (ns ? ns : 1);
	int32_t *shown = NULL;
	size_t nshown = 0;

	for (size_t m = 0; m < nlabs; m++)
		for (size_t si = 0; si < nsel; si++)
			for (size_t i = 0; i < plane; i++) {
				int32_t l = (int32_t)mp_get(labs[m].data, labs[m].type, mp_preview_voxel(dim, axis, sel[si], i));
				if (l == 0)
					continue;
				size_t j;
				for (j = 0; j < nshown && shown[j] != l; j++)
					;
				if (j == nshown) {
					shown = mp_xrealloc(shown, (nshown + 1) * sizeof *shown);
					shown[nshown++] = l;
				}
			}
	for (size_t a = 1; a < nshown; a++)    /* sort */
		for (size_t b = a; b > 0 && shown[b - 1] > shown[b]; b--) {
			int32_t t = shown[b];
			shown[b] = shown[b - 1];
			shown[b - 1] = t;
		}
	*out = shown;
	return nshown;
}

/* the legend: entries of label j at (x, y) from (x0, y0), wrapping at width W;
 * draw: also draw them. Returns the number of rows. */
static size_t
legend(mp_rgb *r, const int32_t *shown, size_t nshown, size_t W, size_t gap, size_t y0, int draw)
{
	const uint8_t white[3] = { 255, 255, 255 };
	size_t lx = gap, ly = y0, lrows = nshown ? 1 : 0, entry_h = 20;

	for (size_t j = 0; j < nshown; j++) {
		char t[32];
		snprintf(t, sizeof t, "%ld", (long)shown[j]);
		size_t ew = 16 + 4 + mp_text_width(t, 2) + 12;
		if (lx + ew > W && lx > gap) {
			lrows++;
			ly += entry_h;
			lx = gap;
		}
		if (draw) {
			uint8_t c[3];
			mp_label_colour(shown[j], c);
			mp_fill_rect(r, lx, ly + 1, 16, 16, c);
			mp_draw_text(r, lx + 20, ly + 2, t, 2, white);
		}
		lx += ew;
	}
	return lrows;
}

int
mp_preview_montage(mp_rgb *r, const mp_frame *img, const mp_frame *labs, size_t nlabs, const size_t dim[3],
                   const double sp[3], const size_t *sel, size_t nsel, const mp_preview_opts *o, size_t cols,
                   int with_legend, const char *title)
{
	size_t tw, th;
	mp_preview_size(dim, sp, o, &tw, &th);
	size_t nc = cols > 0 ? cols : (size_t)ceil(sqrt((double)nsel));
	if (nc > nsel)
		nc = nsel;
	size_t nr = (nsel + nc - 1) / nc, gap = 4;
	int ts = tw >= 200 ? 2 : 1;
	size_t title_h = !title ? 0 : 7 * 2 + 10;
	size_t W = nc * tw + (nc + 1) * gap, H = title_h + nr * th + (nr + 1) * gap;

	/* labels shown, for the legend */
	int32_t *shown = NULL;
	size_t nshown = with_legend ? mp_preview_labels(labs, nlabs, dim, o->axis, sel, nsel, &shown) : 0;
	size_t lrows = legend(NULL, shown, nshown, W, gap, 0, 0), entry_h = 20;
	H += lrows * entry_h + (lrows ? gap : 0);

	if (mp_rgb_init(r, W, H, 24) < 0) {
		free(shown);
		return -1;
	}
	const uint8_t white[3] = { 255, 255, 255 }, yellow[3] = { 255, 255, 0 };
	if (title)   /* in the large font when it fits, else the small one */
		mp_draw_text(r, gap, 5, title, mp_text_width(title, 2) + 2 * gap <= W ? 2 : 1, white);
	for (size_t si = 0; si < nsel; si++) {
		size_t cx = si % nc, cy = si / nc;
		size_t x0 = gap + cx * (tw + gap), y0 = title_h + gap + cy * (th + gap);
		mp_preview_slice(r, x0, y0, img, labs, nlabs, dim, sp, sel[si], o);
		if (title) {
			char t[32];
			snprintf(t, sizeof t, "%zu", sel[si]);
			mp_draw_text(r, x0 + 2, y0 + 2, t, ts, yellow);
		}
	}
	legend(r, shown, nshown, W, gap, title_h + nr * th + (nr + 1) * gap, 1);
	free(shown);
	return 0;
}
