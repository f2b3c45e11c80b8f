/* sam_prompt.c - sam-decode's prompts: parsing, mapping into the model's
 * input, 3-D propagation and boxes from labels (mp_sam_prompt.h) */
#include "mp.h"
#include "mp_sam_prompt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static mp_sp_prompt *
newprompt(mp_sam_prompts *s)
{
	s->p = mp_xrealloc(s->p, (s->n + 1) * sizeof *s->p);
	memset(&s->p[s->n], 0, sizeof *s->p);
	s->p[s->n].z = -1;
	return &s->p[s->n++];
}

int
mp_sp_add_box(mp_sam_prompts *s, const double *v, int n, long defval)
{
	if (n < 4 || n > 6)
		return mp_seterr("box: want X0,Y0,X1,Y1[,Z[,LABEL]]");
	if (v[2] < v[0] || v[3] < v[1])
		return mp_seterr("box: X1,Y1 must not be below X0,Y0");
	mp_sp_prompt *p = newprompt(s);
	memcpy(p->box, v, 4 * sizeof(double));
	p->has_box = 1;
	p->z = n >= 5 ? (long)v[4] : -1;
	p->value = n >= 6 ? (long)v[5] : defval;
	if ((n >= 5 && (v[4] < 0 || v[4] != floor(v[4]))) || p->value < 1)
		return mp_seterr("box: slice must be a whole number >= 0 and label >= 1");
	return 0;
}

int
mp_sp_add_box3(mp_sam_prompts *s, const double *v, int n, long defval)
{
	if (n < 6 || n > 7)
		return mp_seterr("3-D box: want X0,Y0,Z0,X1,Y1,Z1[,LABEL]");
	if (v[3] < v[0] || v[4] < v[1] || v[5] <= v[2] || v[2] < 0 || v[2] != floor(v[2]) || v[5] != floor(v[5]))
		return mp_seterr("3-D box: want X0<=X1, Y0<=Y1, whole slices 0<=Z0<Z1");
	s->b3 = mp_xrealloc(s->b3, (s->nb3 + 1) * sizeof *s->b3);
	memcpy(s->b3[s->nb3].b, v, 6 * sizeof(double));
	s->b3[s->nb3].value = n == 7 ? (long)v[6] : defval;
	if (s->b3[s->nb3].value < 1)
		return mp_seterr("3-D box: label must be >= 1");
	s->nb3++;
	return 0;
}

int
mp_sp_add_point(mp_sam_prompts *s, const double *v, int n)
{
	long z;

	if (n < 2)
		return mp_seterr("point: want X,Y[,Z[,L]] (L: 1 foreground, 0 background)");
	z = n >= 3 ? (long)v[2] : -1;
	if (n >= 3 && (v[2] < 0 || v[2] != floor(v[2])))
		return mp_seterr("point: slice must be a whole number >= 0");
	if (n == 4 && v[3] != 0 && v[3] != 1)
		return mp_seterr("point: label must be 1 (foreground) or 0 (background)");
	/* join the first prompt of that slice, or start one */
	mp_sp_prompt *p = NULL;
	for (size_t i = 0; i < s->n; i++)
		if (s->p[i].z == z) {
			p = &s->p[i];
			break;
		}
	if (!p) {
		p = newprompt(s);
		p->z = z;
		p->value = (long)s->n;
	}
	if (p->npts >= MP_SP_MAXPTS)
		return mp_seterr("point: at most 16 points per slice");
	p->pts[2 * p->npts] = v[0];
	p->pts[2 * p->npts + 1] = v[1];
	p->plab[p->npts++] = n == 4 ? (int)v[3] : 1;
	return 0;
}

int
mp_sp_read_file(mp_sam_prompts *s, const char *path)
{
	size_t l = strlen(path);

	if (l > 4 && strcmp(path + l - 4, ".npz") == 0) {
		double *v = NULL;
		int64_t shape[MP_TL_MAXDIM];
		int nd;
		if (mp_tl_npz_array(path, "boxes", &v, shape, &nd))
			return -1;
		int64_t w = nd == 2 ? shape[1] : nd == 1 ? shape[0] : 0, rows = nd == 2 ? shape[0] : 1;
		if (w != 4 && w != 6) {
			free(v);
			return mp_seterr("%s: 'boxes' must be (N,4) or (N,6)", path);
		}
		for (int64_t r = 0; r < rows; r++) {
			int e = w == 4 ? mp_sp_add_box(s, v + r * w, 4, (long)r + 1)
			               : mp_sp_add_box3(s, v + r * w, 6, (long)r + 1);
			if (e) {
				free(v);
				return mp_preerr("%s: box %lld", path, (long long)r);
			}
		}
		free(v);
		return 0;
	}
	FILE *fp = fopen(path, "r");
	if (!fp)
		return mp_seterr("%s: cannot open:", path);
	char line[1024];
	int ln = 0, nb = 0;
	while (fgets(line, sizeof line, fp)) {
		ln++;
		char *c = line;
		while (*c == ' ' || *c == '\t')
			c++;
		if (!*c || *c == '\n' || *c == '#')
			continue;
		c[strcspn(c, "\r\n")] = 0;
		double v[6];
		int n = mp_parse_doubles(c, v, 6);
		if (n < 0) {
			if (ln == 1)
				continue;   /* header */
			fclose(fp);
			return mp_seterr("%s: line %d: %s", path, ln, mp_err());
		}
		if (mp_sp_add_box(s, v, n, (long)++nb)) {
			fclose(fp);
			return mp_preerr("%s: line %d", path, ln);
		}
	}
	fclose(fp);
	return 0;
}

void
mp_sp_free(mp_sam_prompts *s)
{
	free(s->p);
	free(s->b3);
	memset(s, 0, sizeof *s);
}

int
mp_sp_scale(const mp_sam_embinfo *in, int S, long z, const double *box, int npts, const double *pts,
            const int *plab, mp_sam_prompt *p, float *fp)
{
	if (box && (box[0] < 0 || box[1] < 0 || box[2] > (double)in->nx || box[3] > (double)in->ny))
		return mp_seterr("box %g,%g,%g,%g on slice %ld: outside the %zux%zu image", box[0], box[1], box[2],
		                 box[3], z, in->nx, in->ny);
	for (int i = 0; i < npts; i++)
		if (pts[2 * i] < 0 || pts[2 * i + 1] < 0 || pts[2 * i] >= (double)in->nx || pts[2 * i + 1] >= (double)in->ny)
			return mp_seterr("point %g,%g on slice %ld: outside the %zux%zu image", pts[2 * i], pts[2 * i + 1], z,
			                 in->nx, in->ny);
	double sx = (double)in->rw / (double)in->nx, sy = (double)in->rh / (double)in->ny;
	if (in->mode == MP_SAM_LITEMEDSAM)   /* LiteMedSAM: box / max(W,H) * 256 */
		sx = sy = (double)S / (double)(in->nx > in->ny ? in->nx : in->ny);
	memset(p, 0, sizeof *p);
	for (int i = 0; i < npts; i++) {
		fp[2 * i] = (float)(pts[2 * i] * sx);
		fp[2 * i + 1] = (float)(pts[2 * i + 1] * sy);
	}
	p->npts = npts;
	p->pts = fp;
	p->labels = plab;
	if (box) {
		p->has_box = 1;
		p->box[0] = (float)(box[0] * sx);
		p->box[1] = (float)(box[1] * sy);
		p->box[2] = (float)(box[2] * sx);
		p->box[3] = (float)(box[3] * sy);
	}
	return 0;
}

int
mp_sp_bbox(const unsigned char *bin, size_t nx, size_t ny, double *b)
{
	size_t x0 = nx, y0 = ny, x1 = 0, y1 = 0;
	int any = 0;

	for (size_t y = 0; y < ny; y++)
		for (size_t x = 0; x < nx; x++)
			if (bin[y * nx + x]) {
				any = 1;
				x0 = x < x0 ? x : x0;
				x1 = x > x1 ? x : x1;
				y0 = y < y0 ? y : y0;
				y1 = y > y1 ? y : y1;
			}
	b[0] = (double)x0;
	b[1] = (double)y0;
	b[2] = (double)x1;
	b[3] = (double)y1;
	return any;
}

int
mp_sp_bbox_grown(const unsigned char *bin, size_t nx, size_t ny, long grow, double *b)
{
	if (!mp_sp_bbox(bin, nx, ny, b))
		return 0;
	b[0] = fmax(0, b[0] - (double)grow);
	b[1] = fmax(0, b[1] - (double)grow);
	b[2] = fmin((double)nx, b[2] + (double)grow);
	b[3] = fmin((double)ny, b[3] + (double)grow);
	return 1;
}

void
mp_sp_rng_seed(mp_sp_rng *r, long seed)
{
	r->s = (uint64_t)seed * 0x9E3779B97F4A7C15ULL + 1;
}

long
mp_sp_rng_next(mp_sp_rng *r, long n)   /* 0..n */
{
	r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
	return n > 0 ? (long)((r->s >> 33) % (uint64_t)(n + 1)) : 0;
}

int
mp_sp_run(const mp_sam_prompts *s, size_t nx, size_t ny, size_t nz, long grow, mp_sp_decode_fn fn, void *ctx)
{
	size_t np = nx * ny;
	unsigned char *bin = mp_xmalloc(np), *prev = mp_xmalloc(np);
	int rc = -1;

	for (size_t i = 0; i < s->n; i++) {
		const mp_sp_prompt *p = &s->p[i];
		long z = p->z;
		if (z < 0) {
			if (nz != 1) {
				mp_seterr("prompt %zu has no slice, and the image has %zu slices", i + 1, nz);
				goto out;
			}
			z = 0;
		}
		if (fn(ctx, z, p->has_box ? p->box : NULL, p->npts, p->pts, p->plab, p->value, NULL))
			goto out;
	}
	for (size_t i = 0; i < s->nb3; i++) {
		const double *b = s->b3[i].b;
		long value = s->b3[i].value;
		long z0 = (long)b[2], z1 = (long)b[5], zm = (long)((z1 - z0) / 2 + z0);
		double mid[4] = { b[0], b[1], b[3], b[4] }, cur[4];
		long zend = z1 + 1 < (long)nz ? z1 + 1 : (long)nz;
		if (zm >= (long)nz) {
			mp_seterr("3-D box %zu: slices %ld-%ld beyond the image's %zu", i + 1, z0, z1, nz);
			goto out;
		}
		/* upwards from the middle slice, then downwards from it */
		unsigned char *midm = mp_xcalloc(np, 1);
		for (long z = zm; z < zend; z++) {
			if (z == zm || !mp_sp_bbox_grown(prev, nx, ny, grow, cur))
				memcpy(cur, mid, sizeof cur);
			if (fn(ctx, z, cur, 0, NULL, NULL, value, bin)) {
				free(midm);
				goto out;
			}
			memcpy(prev, bin, np);
			if (z == zm)
				memcpy(midm, bin, np);
		}
		memcpy(prev, midm, np);
		free(midm);
		for (long z = zm - 1; z >= z0; z--) {
			if (!mp_sp_bbox_grown(prev, nx, ny, grow, cur))
				memcpy(cur, mid, sizeof cur);
			if (fn(ctx, z, cur, 0, NULL, NULL, value, bin))
				goto out;
			memcpy(prev, bin, np);
		}
	}
	rc = 0;
out:
	free(bin);
	free(prev);
	return rc;
}

int
mp_sp_from_label(const mp_frame *lab, size_t nx, size_t ny, const size_t *sel, size_t nsel, long shift,
                 long seed, mp_sp_decode_fn fn, void *ctx)
{
	size_t np = nx * ny;
	unsigned char *bin = mp_xmalloc(np);
	mp_sp_rng rng;
	int rc = -1;

	mp_sp_rng_seed(&rng, seed);
	for (size_t jz = 0; jz < nsel; jz++) {
		size_t z = sel[jz];
		/* labels present on the slice, in increasing order */
		long vals[1024];
		int nv = 0;
		for (size_t q = 0; q < np; q++) {
			long v = (long)mp_get(lab->data, lab->type, z * np + q);
			if (v <= 0)
				continue;
			int k = 0;
			while (k < nv && vals[k] < v)
				k++;
			if (k < nv && vals[k] == v)
				continue;
			if (nv == 1024) {
				mp_seterr("--from-label: more than 1024 labels on slice %zu", z);
				goto out;
			}
			memmove(vals + k + 1, vals + k, (size_t)(nv - k) * sizeof *vals);
			vals[k] = v;
			nv++;
		}
		for (int k = 0; k < nv; k++) {
			for (size_t q = 0; q < np; q++)
				bin[q] = (long)mp_get(lab->data, lab->type, z * np + q) == vals[k];
			double b[4];
			mp_sp_bbox(bin, nx, ny, b);
			if (shift > 0) {
				b[0] = fmax(0, b[0] - (double)mp_sp_rng_next(&rng, shift));
				b[2] = fmin((double)nx, b[2] + (double)mp_sp_rng_next(&rng, shift));
				b[1] = fmax(0, b[1] - (double)mp_sp_rng_next(&rng, shift));
				b[3] = fmin((double)ny, b[3] + (double)mp_sp_rng_next(&rng, shift));
			}
			if (fn(ctx, (long)z, b, 0, NULL, NULL, vals[k], NULL))
				goto out;
		}
	}
	rc = 0;
out:
	free(bin);
	return rc;
}
