/* eval.c - Dice and normalised surface Dice (see mp_eval.h).
 *
 * The surfel normal table below is the one that defines the metric in
 * DeepMind's surface-distance package (Apache-2.0; lookup_tables.py,
 * _NEIGHBOUR_CODE_TO_NORMALS), which MedSAM's SurfaceDice.py embeds: for each
 * of the 256 2x2x2 neighbourhood codes, the marching-cubes triangle normals
 * whose length is the triangle area. Only the magnitudes of the components
 * matter for the area, so each normal is stored as three digits, the
 * absolute components in units of 1/8, in numpy axis order (z, y, x).
 * Using the same table is what makes the numbers equal MedSAM's.
 */
#include "mp.h"
#include "mp_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const surfel_normals[256] = {
	"000", "111", "111", "220220", "111", "202202", "111111", "400222111",
	"111", "111111", "202202", "400222111", "220220", "400222111", "400222111", "400400",
	"111", "022022", "111111", "040222111", "111111", "004222111", "111111111", "111222222111",
	"111111", "022022111", "202202111", "111333022202", "111220220", "333022111220", "400111222111", "400111222",
	"111", "111111", "022022", "040111222", "111111", "111202202", "022022111", "333022111202",
	"111111", "111111111", "004222111", "222222111111", "111220220", "400222111111", "022333111220", "400222111",
	"220220", "040222111", "040111222", "040040", "220220111", "333202111220", "111040222111", "040222111",
	"111220220", "040222111111", "333220111202", "040222111", "220220220220", "220220111", "111220220", "220220",
	"111", "111111", "111111", "111220220", "022022", "004222111", "022022111", "333022111220",
	"111111", "111111111", "111202202", "400222111111", "040222111", "222222111111", "202333022111", "400222111",
	"202202", "004222111", "111202202", "202333220111", "004222111", "004004", "111111222004", "111222004",
	"202202111", "004222111111", "202202202202", "111202202", "202333220111", "004222111", "111202202", "202202",
	"111111", "111111111", "111022022", "040111222111", "022022111", "004222111111", "022022022022", "022022111",
	"111111111", "111111111111", "004222111111", "111111111", "040222111111", "111111111", "022022111", "111111",
	"400222111", "222111222111", "333022111202", "040222111", "333220022111", "111222004", "111022022", "022022",
	"400222111111", "111111111", "202202111", "111111", "220220111", "111111", "111111", "111",
	"111", "111111", "111111", "220220111", "111111", "202202111", "111111111", "400222111111",
	"022022", "111022022", "111222004", "333220022111", "040222111", "333022111202", "222111222111", "400222111",
	"111111", "022022111", "111111111", "040222111111", "111111111", "004222111111", "111111111111", "111111111",
	"022022111", "022022022022", "004222111111", "022022111", "040111222111", "111022022", "111111111", "111111",
	"202202", "111202202", "004222111", "202333220111", "111202202", "202202202202", "004222111111", "202202111",
	"111222004", "111111222004", "004004", "004222111", "202333220111", "111202202", "004222111", "202202",
	"400222111", "202333022111", "222222111111", "040222111", "400222111111", "111202202", "111111111", "111111",
	"333022111220", "022022111", "004222111", "022022", "111220220", "111111", "111111", "111",
	"220220", "111220220", "220220111", "220220220220", "040222111", "333220111202", "040222111111", "111220220",
	"040222111", "111040222111", "333202111220", "220220111", "040040", "040111222", "040222111", "220220",
	"400222111", "022333111220", "400222111111", "111220220", "222222111111", "004222111", "111111111", "111111",
	"333022111202", "022022111", "111202202", "111111", "040111222", "022022", "111111", "111",
	"400111222", "400111222111", "333022111220", "111220220", "111333022202", "202202111", "022022111", "111111",
	"111222222111", "111111111", "004222111", "111111", "040222111", "111111", "022022", "111",
	"400400", "400222111", "400222111", "220220", "400222111", "202202", "111111", "111",
	"400222111", "111111", "202202", "111", "220220", "111", "111", "000",
};

void
mp_surfel_areas(const double sp[3], double area[256])
{
	/* numpy axes: 0 = z, 1 = y, 2 = x */
	double s0 = sp[2], s1 = sp[1], s2 = sp[0];

	for (int c = 0; c < 256; c++) {
		const char *t = surfel_normals[c];
		double sum = 0;
		for (; t[0] && t[1] && t[2]; t += 3) {
			double n0 = (t[0] - '0') / 8.0 * s1 * s2;
			double n1 = (t[1] - '0') / 8.0 * s0 * s2;
			double n2 = (t[2] - '0') / 8.0 * s0 * s1;
			sum += sqrt(n0 * n0 + n1 * n1 + n2 * n2);
		}
		area[c] = sum;
	}
}

/* One line of the separable exact EDT (Felzenszwalb & Huttenlocher) with the
 * nearest feature carried along: g[i] in/out (squared distance, INFINITY for
 * none), ft[i] in/out; n points with step s mm. Scratch: v (n), zb (n+1),
 * gt (n), fo (n). */
static void
edt_line(double *g, int32_t *ft, size_t n, double s, size_t *v, double *zb, double *gt, int32_t *fo)
{
	size_t k = 0, q, m = 0;
	double s2 = s * s;

	for (q = 0; q < n; q++) {
		gt[q] = g[q];
		fo[q] = ft[q];
	}
	for (q = 0; q < n; q++) {
		if (isinf(gt[q]))
			continue;
		if (m == 0) {
			v[0] = q;
			zb[0] = -INFINITY;
			zb[1] = INFINITY;
			k = 0;
			m = 1;
			continue;
		}
		for (;;) {
			size_t r = v[k];
			double x = ((gt[q] + (double)q * q * s2) - (gt[r] + (double)r * r * s2)) /
			           (2.0 * s2 * ((double)q - (double)r));
			if (x <= zb[k] && k > 0) {
				k--;
				continue;
			}
			if (x <= zb[k]) {
				/* k == 0: q dominates everything so far */
				v[0] = q;
				zb[0] = -INFINITY;
				zb[1] = INFINITY;
				break;
			}
			k++;
			v[k] = q;
			zb[k] = x;
			zb[k + 1] = INFINITY;
			break;
		}
	}
	if (m == 0)
		return;
	k = 0;
	for (q = 0; q < n; q++) {
		while (zb[k + 1] < (double)q)
			k++;
		double d = ((double)q - (double)v[k]) * s;
		g[q] = gt[v[k]] + d * d;
		ft[q] = fo[v[k]];
	}
}

/* nearest feature (linear index) of every point of a c[0]*c[1]*c[2] grid;
 * -1 when there is no feature at all */
static int
feature_transform(const uint8_t *feat, const size_t c[3], const double sp[3], int32_t *ft)
{
	size_t n = c[0] * c[1] * c[2], mx = c[0];
	double *g = malloc(n * sizeof *g);

	if (c[1] > mx)
		mx = c[1];
	if (c[2] > mx)
		mx = c[2];
	size_t *v = malloc(mx * sizeof *v);
	double *zb = malloc((mx + 1) * sizeof *zb), *lg = malloc(mx * sizeof *lg), *gt = malloc(mx * sizeof *gt);
	int32_t *lf = malloc(mx * sizeof *lf), *fo = malloc(mx * sizeof *fo);
	if (!g || !v || !zb || !lg || !gt || !lf || !fo) {
		free(g); free(v); free(zb); free(lg); free(gt); free(lf); free(fo);
		return mp_seterr("surface distance: out of memory for %zu points", n);
	}
	for (size_t i = 0; i < n; i++) {
		g[i] = feat[i] ? 0.0 : INFINITY;
		ft[i] = feat[i] ? (int32_t)i : -1;
	}
	size_t stride[3] = { 1, c[0], c[0] * c[1] };
	for (int a = 0; a < 3; a++) {
		size_t len = c[a], st = stride[a];
		/* iterate over all lines along axis a */
		size_t o1 = (a == 0) ? 1 : 0, o2 = (a == 2) ? 1 : 2;
		for (size_t j2 = 0; j2 < c[o2]; j2++)
			for (size_t j1 = 0; j1 < c[o1]; j1++) {
				size_t base = j1 * stride[o1] + j2 * stride[o2];
				for (size_t i = 0; i < len; i++) {
					lg[i] = g[base + i * st];
					lf[i] = ft[base + i * st];
				}
				edt_line(lg, lf, len, sp[a], v, zb, gt, fo);
				for (size_t i = 0; i < len; i++) {
					g[base + i * st] = lg[i];
					ft[base + i * st] = lf[i];
				}
			}
	}
	free(g); free(v); free(zb); free(lg); free(gt); free(lf); free(fo);
	return 0;
}

/* distance as scipy's distance_transform_edt computes it from the feature:
 * sqrt(((dz*sz)^2 + (dy*sy)^2) + (dx*sx)^2) */
static double
feat_dist(size_t p, int32_t f, const size_t c[3], const double sp[3])
{
	if (f < 0)
		return INFINITY;
	size_t q = (size_t)f;
	double dx = ((double)(q % c[0]) - (double)(p % c[0])) * sp[0];
	double dy = ((double)(q / c[0] % c[1]) - (double)(p / c[0] % c[1])) * sp[1];
	double dz = ((double)(q / (c[0] * c[1])) - (double)(p / (c[0] * c[1]))) * sp[2];
	return sqrt((dz * dz + dy * dy) + dx * dx);
}

/* neighbourhood codes of the corner grid (dims c = b+1) of a crop of b voxels */
static void
corner_codes(const uint8_t *m, const size_t b[3], const size_t c[3], uint8_t *code)
{
	for (size_t k = 0; k < c[2]; k++)
		for (size_t j = 0; j < c[1]; j++)
			for (size_t i = 0; i < c[0]; i++) {
				unsigned v = 0;
				for (int dz = -1; dz <= 0; dz++) {
					if ((dz < 0 && k == 0) || (dz == 0 && k == b[2]))
						continue;
					for (int dy = -1; dy <= 0; dy++) {
						if ((dy < 0 && j == 0) || (dy == 0 && j == b[1]))
							continue;
						for (int dx = -1; dx <= 0; dx++) {
							if ((dx < 0 && i == 0) || (dx == 0 && i == b[0]))
								continue;
							size_t x = i + dx, y = j + dy, z = k + dz;
							if (m[(z * b[1] + y) * b[0] + x])
								v |= 1u << (4 * (dz < 0) + 2 * (dy < 0) + (dx < 0));
						}
					}
				}
				code[(k * c[1] + j) * c[0] + i] = (uint8_t)v;
			}
}

/* NSD of two crops (b voxels each, already cropped to the union's bounding box) */
static int
nsd_crop(const uint8_t *mr, const uint8_t *mp, const size_t b[3], const double sp[3],
         const double area[256], double tol, double *nsd, double *ar, double *ap)
{
	size_t c[3] = { b[0] + 1, b[1] + 1, b[2] + 1 };
	size_t n;
	if (mp_mulsize(c[0], c[1], &n) || mp_mulsize(n, c[2], &n) || n > INT32_MAX)
		return mp_seterr("surface distance: volume too large");
	uint8_t *cr = malloc(n), *cp = malloc(n), *br = malloc(n), *bp = malloc(n);
	int32_t *fr = malloc(n * sizeof *fr), *fp = malloc(n * sizeof *fp);
	int rc = -1;
	if (!cr || !cp || !br || !bp || !fr || !fp) {
		mp_seterr("surface distance: out of memory for %zu points", n);
		goto out;
	}
	corner_codes(mr, b, c, cr);
	corner_codes(mp, b, c, cp);
	int anyr = 0, anyp = 0;
	for (size_t i = 0; i < n; i++) {
		br[i] = cr[i] != 0 && cr[i] != 255;
		bp[i] = cp[i] != 0 && cp[i] != 255;
		anyr |= br[i];
		anyp |= bp[i];
	}
	if (feature_transform(br, c, sp, fr) || feature_transform(bp, c, sp, fp))
		goto out;
	double tot_r = 0, tot_p = 0, ov_r = 0, ov_p = 0;
	for (size_t i = 0; i < n; i++) {
		if (br[i]) {
			double a = area[cr[i]];
			tot_r += a;
			if (anyp && feat_dist(i, fp[i], c, sp) <= tol)
				ov_r += a;
		}
		if (bp[i]) {
			double a = area[cp[i]];
			tot_p += a;
			if (anyr && feat_dist(i, fr[i], c, sp) <= tol)
				ov_p += a;
		}
	}
	*nsd = (tot_r + tot_p) > 0 ? (ov_r + ov_p) / (tot_r + tot_p) : NAN;
	if (ar)
		*ar = tot_r;
	if (ap)
		*ap = tot_p;
	rc = 0;
out:
	free(cr); free(cp); free(br); free(bp); free(fr); free(fp);
	return rc;
}

int
mp_surface_dice(const uint8_t *ref, const uint8_t *pred, const size_t dim[3],
                const double sp[3], double tol, double *nsd, double *area_ref, double *area_pred)
{
	size_t lo[3] = { dim[0], dim[1], dim[2] }, hi[3] = { 0, 0, 0 };
	int any = 0;
	double area[256];

	for (size_t z = 0, i = 0; z < dim[2]; z++)
		for (size_t y = 0; y < dim[1]; y++)
			for (size_t x = 0; x < dim[0]; x++, i++) {
				if (!ref[i] && !pred[i])
					continue;
				size_t p[3] = { x, y, z };
				for (int a = 0; a < 3; a++) {
					if (p[a] < lo[a]) lo[a] = p[a];
					if (p[a] > hi[a]) hi[a] = p[a];
				}
				any = 1;
			}
	if (!any) {
		*nsd = NAN;
		if (area_ref) *area_ref = 0;
		if (area_pred) *area_pred = 0;
		return 0;
	}
	size_t b[3] = { hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1 };
	size_t nb = b[0] * b[1] * b[2];
	uint8_t *mr = malloc(nb), *mpd = malloc(nb);
	if (!mr || !mpd) {
		free(mr); free(mpd);
		return mp_seterr("surface distance: out of memory");
	}
	for (size_t z = 0, o = 0; z < b[2]; z++)
		for (size_t y = 0; y < b[1]; y++)
			for (size_t x = 0; x < b[0]; x++, o++) {
				size_t i = ((z + lo[2]) * dim[1] + y + lo[1]) * dim[0] + x + lo[0];
				mr[o] = ref[i] != 0;
				mpd[o] = pred[i] != 0;
			}
	mp_surfel_areas(sp, area);
	int rc = nsd_crop(mr, mpd, b, sp, area, tol, nsd, area_ref, area_pred);
	free(mr);
	free(mpd);
	return rc;
}

typedef struct {
	size_t lo[3], hi[3];
} bbox;

static size_t
find_label(const int32_t *labs, size_t n, int32_t v)
{
	size_t a = 0, b = n;
	while (a < b) {
		size_t m = (a + b) / 2;
		if (labs[m] < v)
			a = m + 1;
		else
			b = m;
	}
	return a;
}

int
mp_eval_labels(const int32_t *ref, const int32_t *pred, const size_t dim[3],
               const double sp[3], double tol, int want_nsd,
               mp_eval_label **out, size_t *nout)
{
	size_t nv = dim[0] * dim[1] * dim[2], nl = 0, cap = 64;
	int32_t *labs = malloc(cap * sizeof *labs);
	int32_t last = 0;

	*out = NULL;
	*nout = 0;
	if (!labs)
		return mp_seterr("evaluation: out of memory");
	/* distinct nonzero labels (fast path for runs of equal values) */
	for (int pass = 0; pass < 2; pass++) {
		const int32_t *m = pass ? pred : ref;
		last = 0;
		for (size_t i = 0; i < nv; i++) {
			if (m[i] == 0 || m[i] == last)
				continue;
			last = m[i];
			size_t p = find_label(labs, nl, last);
			if (p < nl && labs[p] == last)
				continue;
			if (nl == cap) {
				int32_t *t = realloc(labs, 2 * cap * sizeof *labs);
				if (!t) {
					free(labs);
					return mp_seterr("evaluation: out of memory");
				}
				labs = t;
				cap *= 2;
			}
			memmove(labs + p + 1, labs + p, (nl - p) * sizeof *labs);
			labs[p] = last;
			nl++;
		}
	}
	mp_eval_label *L = calloc(nl ? nl : 1, sizeof *L);
	bbox *B = calloc(nl ? nl : 1, sizeof *B);
	if (!L || !B) {
		free(labs); free(L); free(B);
		return mp_seterr("evaluation: out of memory");
	}
	for (size_t l = 0; l < nl; l++) {
		L[l].label = labs[l];
		L[l].nsd = NAN;
		for (int a = 0; a < 3; a++)
			B[l].lo[a] = dim[a];
	}
	for (size_t z = 0, i = 0; z < dim[2]; z++)
		for (size_t y = 0; y < dim[1]; y++)
			for (size_t x = 0; x < dim[0]; x++, i++) {
				int32_t r = ref[i], p = pred[i];
				size_t p3[3] = { x, y, z };
				for (int w = 0; w < 2; w++) {
					int32_t v = w ? p : r;
					if (v == 0 || (w && p == r))
						continue;
					size_t l = find_label(labs, nl, v);
					bbox *bb = &B[l];
					for (int a = 0; a < 3; a++) {
						if (p3[a] < bb->lo[a]) bb->lo[a] = p3[a];
						if (p3[a] > bb->hi[a]) bb->hi[a] = p3[a];
					}
					if (w)
						L[l].npred++;
					else {
						L[l].nref++;
						if (p == r) {
							L[l].npred++;
							L[l].ninter++;
						}
					}
				}
			}
	double area[256];
	mp_surfel_areas(sp, area);
	int rc = 0;
	for (size_t l = 0; l < nl && rc == 0; l++) {
		size_t s = L[l].nref + L[l].npred;
		L[l].dice = s ? 2.0 * (double)L[l].ninter / (double)s : NAN;
		if (!want_nsd || (want_nsd == 1 && L[l].nref == 0))
			continue;
		size_t b[3];
		for (int a = 0; a < 3; a++)
			b[a] = B[l].hi[a] - B[l].lo[a] + 1;
		size_t nb = b[0] * b[1] * b[2];
		uint8_t *mr = malloc(nb), *mpd = malloc(nb);
		if (!mr || !mpd) {
			free(mr); free(mpd);
			rc = mp_seterr("evaluation: out of memory");
			break;
		}
		for (size_t z = 0, o = 0; z < b[2]; z++)
			for (size_t y = 0; y < b[1]; y++)
				for (size_t x = 0; x < b[0]; x++, o++) {
					size_t i = ((z + B[l].lo[2]) * dim[1] + y + B[l].lo[1]) * dim[0] + x + B[l].lo[0];
					mr[o] = ref[i] == L[l].label;
					mpd[o] = pred[i] == L[l].label;
				}
		rc = nsd_crop(mr, mpd, b, sp, area, tol, &L[l].nsd, &L[l].area_ref, &L[l].area_pred);
		free(mr);
		free(mpd);
	}
	free(labs);
	free(B);
	if (rc) {
		free(L);
		return -1;
	}
	*out = L;
	*nout = nl;
	return 0;
}

void
mp_eval_case(const mp_eval_label *l, size_t n, double gate, double *dice, double *nsd)
{
	double sd = 0, sn = 0;
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (l[i].nref == 0)
			continue;
		sd += l[i].dice;
		sn += l[i].nsd;
		k++;
	}
	if (k == 0) {
		*dice = *nsd = NAN;
		return;
	}
	*dice = sd / (double)k;
	*nsd = (gate > 0 && !(*dice > gate)) ? 0.0 : sn / (double)k;
}
