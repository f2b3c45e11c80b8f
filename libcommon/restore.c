/* restore.c - vol-restore's resampling: a frame that went through crops,
 * slice selections, pads and resizes (medpipe.history) put back onto its
 * original grid (medpipe.grid0.*) or onto a reference grid, by nearest
 * neighbour. */
#include "mp.h"
#include "mp_filter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mp_restore {
	mp_history h;
	long *map[3];
	size_t fin[3], tsz[3];
	mp_type type;
	int direct;
	double A[3][4];                 /* !direct: target voxel -> grid0 voxel */
	unsigned char bgv[16];
};

static void
grid_frame(mp_frame *g, const size_t s[3], const double dir[3][3], const double org[3])
{
	mp_frame_init(g);
	g->dim = 3;
	g->space = 1;
	for (int a = 0; a < 3; a++) {
		g->size[a] = s[a];
		g->has_dir[a] = 1;
		memcpy(g->dir[a], dir[a], sizeof g->dir[a]);
		strcpy(g->kind[a], "domain");
	}
	memcpy(g->origin, org, sizeof g->origin);
	g->type = MP_UINT8;
}

int
mp_same_grid(const mp_frame *a, const mp_frame *b)
{
	double w[3], v[3];

	for (int i = 0; i < 3; i++) {
		size_t sa = i < a->dim ? a->size[i] : 1, sb = i < b->dim ? b->size[i] : 1;
		if (sa != sb)
			return 0;
	}
	/* the voxel centres (0,0,0) and the unit steps agree within 1e-3 voxel */
	for (int i = -1; i < 3; i++) {
		double ijk[3] = { 0, 0, 0 };
		if (i >= 0)
			ijk[i] = 1;
		mp_vox2world(a, ijk, w);
		if (mp_world2vox(b, w, v) < 0)
			return 0;
		for (int c = 0; c < 3; c++)
			if (fabs(v[c] - ijk[c]) > 1e-3)
				return 0;
	}
	return 1;
}

void
mp_restore_free(mp_restore *r)
{
	if (!r)
		return;
	for (int a = 0; a < 3; a++)
		free(r->map[a]);
	mp_hist_free(&r->h);
	free(r);
}

mp_restore *
mp_restore_new(const mp_frame *f, const mp_frame *ref, double bg, int keep_hist, mp_frame *out)
{
	mp_restore *r = mp_xcalloc(1, sizeof *r);
	mp_history *h = &r->h;
	size_t *fin = r->fin;
	mp_frame g0;

	r->type = f->type;
	mp_frame_init(out);
	if (mp_frame_xyz(f, &fin[0], &fin[1], &fin[2]) < 0) {
		free(r);
		mp_seterr("not a 2-D or 3-D scalar frame");
		return NULL;
	}
	if (mp_hist_read(f, h) < 0) {
		free(r);
		return NULL;
	}
	if (!h->have_grid0) {
		if (!ref) {
			mp_restore_free(r);
			mp_seterr("no recorded original grid (" MP_K_GRID0_PREFIX "*) and no --ref: nothing to restore onto");
			return NULL;
		}
		/* identity history: the frame's own grid is grid 0 */
		double z[3] = { 0, 0, 0 }, w0[3];
		mp_vox2world(f, z, w0);
		h->have_grid0 = 1;
		memcpy(h->size0, fin, sizeof h->size0);
		memcpy(h->origin0, w0, sizeof w0);
		for (int a = 0; a < 3; a++) {
			double e[3] = { 0, 0, 0 }, w[3];
			e[a] = 1;
			mp_vox2world(f, e, w);
			for (int c = 0; c < 3; c++)
				h->dir0[a][c] = w[c] - w0[c];
		}
	}
	if (mp_hist_maps(h, fin, r->map) < 0) {
		mp_restore_free(r);
		return NULL;
	}
	grid_frame(&g0, h->size0, h->dir0, h->origin0);

	/* the output frame */
	mp_frame_copy_header(out, f);
	if (ref) {
		mp_frame_copy_grid(out, ref);
		r->direct = mp_same_grid(ref, &g0);
	} else {
		out->dim = f->dim == 2 && h->size0[2] == 1 ? 2 : 3;
		out->space = 1;
		for (int a = 0; a < 3; a++) {
			out->size[a] = h->size0[a];
			out->has_dir[a] = a < out->dim;
			memcpy(out->dir[a], h->dir0[a], sizeof out->dir[a]);
			strcpy(out->kind[a], a < out->dim ? "domain" : "");
		}
		memcpy(out->origin, h->origin0, sizeof out->origin);
		r->direct = 1;
	}
	if (mp_frame_xyz(out, &r->tsz[0], &r->tsz[1], &r->tsz[2]) < 0) {
		mp_seterr("the reference is not a 2-D or 3-D scalar frame");
		goto fail;
	}
	if (!r->direct) {
		/* reference voxel -> grid0 voxel, affine */
		double z[3] = { 0, 0, 0 }, w[3], q0[3];
		mp_vox2world(out, z, w);
		if (mp_world2vox(&g0, w, q0) < 0)
			goto fail;
		for (int a = 0; a < 3; a++) {
			double e[3] = { 0, 0, 0 }, q[3];
			e[a] = 1;
			mp_vox2world(out, e, w);
			if (mp_world2vox(&g0, w, q) < 0)
				goto fail;
			for (int c = 0; c < 3; c++)
				r->A[c][a] = q[c] - q0[c];
		}
		for (int c = 0; c < 3; c++)
			r->A[c][3] = q0[c];
	}
	if (!keep_hist)
		mp_hist_clear(out);
	mp_frame_touch(out);
	mp_put(r->bgv, f->type, 0, bg);
	mp_frame_free(&g0);
	return r;
fail:
	mp_frame_free(&g0);
	mp_frame_free(out);
	mp_restore_free(r);
	return NULL;
}

void
mp_restore_slice(const mp_restore *r, const void *data, size_t k, void *slice)
{
	const unsigned char *src = data;
	const size_t *tsz = r->tsz, *fin = r->fin;
	size_t el = mp_type_size(r->type);

	for (size_t j = 0; j < tsz[1]; j++) {
		unsigned char *d = (unsigned char *)slice + j * tsz[0] * el;
		for (size_t i = 0; i < tsz[0]; i++) {
			long q[3];
			int inside = 1;
			if (r->direct) {
				q[0] = r->map[0][i];
				q[1] = r->map[1][j];
				q[2] = r->map[2][k];
			} else {
				for (int c = 0; c < 3 && inside; c++) {
					double v = r->A[c][0] * (double)i + r->A[c][1] * (double)j + r->A[c][2] * (double)k + r->A[c][3];
					double rr = floor(v + 0.5);
					if (!(rr >= 0 && rr < (double)r->h.size0[c]))
						inside = 0;
					else
						q[c] = r->map[c][(size_t)rr];
				}
			}
			if (inside && q[0] >= 0 && q[1] >= 0 && q[2] >= 0)
				memcpy(d + i * el, src + (((size_t)q[2] * fin[1] + (size_t)q[1]) * fin[0] + (size_t)q[0]) * el, el);
			else
				memcpy(d + i * el, r->bgv, el);
		}
	}
}
