/* test_algo.c - unit tests of algorithms that tools call (issue 12): the
 * restore resampling, sam-decode's prompts, vol-preview's slice choice and
 * legend, hu-window's MedSAM rule, vol-resize's grid for a spacing */
#include "mp.h"
#include "mp_filter.h"
#include "mp_preview.h"
#include "mp_sam_prompt.h"
#include "t.h"

#include <math.h>
#include <stdlib.h>

static void
grid(mp_frame *f, size_t nx, size_t ny, size_t nz, mp_type t)
{
	mp_frame_init(f);
	f->dim = 3;
	f->space = 1;
	f->size[0] = nx;
	f->size[1] = ny;
	f->size[2] = nz;
	f->type = t;
	for (int a = 0; a < 3; a++) {
		f->has_dir[a] = 1;
		f->dir[a][a] = 1;
		strcpy(f->kind[a], "domain");
	}
}

static void
restore(void)
{
	mp_frame f, out;
	uint8_t d[4] = { 1, 2, 3, 4 }, slice[16];

	grid(&f, 2, 2, 1, MP_UINT8);
	mp_set_kv(&f, "medpipe.grid0.sizes", "4 4 1");
	mp_set_kv(&f, "medpipe.grid0.directions", "(1,0,0) (0,1,0) (0,0,1)");
	mp_set_kv(&f, "medpipe.grid0.origin", "(0,0,0)");
	mp_set_kv(&f, "medpipe.history", "crop 4x4x1>2x2x1 at 1,1,0");
	mp_restore *r = mp_restore_new(&f, NULL, 7, 0, &out);
	T_OK(r && out.size[0] == 4 && out.size[1] == 4 && !mp_get_kv(&out, "medpipe.history") &&
	     !mp_get_kv(&out, "medpipe.grid0.sizes"), "restore-header");
	if (r) {
		mp_restore_slice(r, d, 0, slice);
		T_OK(slice[5] == 1 && slice[6] == 2 && slice[9] == 3 && slice[10] == 4 && slice[0] == 7 && slice[15] == 7,
		     "restore-crop-undone");
		mp_restore_free(r);
	}
	mp_frame_free(&out);
	mp_del_kv(&f, "medpipe.grid0.sizes");
	mp_del_kv(&f, "medpipe.grid0.directions");
	mp_del_kv(&f, "medpipe.grid0.origin");
	mp_del_kv(&f, "medpipe.history");
	T_OK(!mp_restore_new(&f, NULL, 0, 0, &out) && strstr(mp_err(), "no recorded original grid"), "restore-needs-grid0");
	mp_frame_free(&out);
	mp_frame_free(&f);
}

static long zs[32];
static int nzs;

static int
record(void *ctx, long z, const double *box, int npts, const double *pts, const int *plab, long value,
       unsigned char *bin)
{
	(void)ctx, (void)npts, (void)pts, (void)plab, (void)value;
	zs[nzs++] = z;
	if (!bin)   /* the mask is not needed */
		return 0;
	/* the mask: the box shrunk by one pixel, empty on slice 6 */
	memset(bin, 0, 10 * 10);
	if (z != 6)
		for (long y = (long)box[1] + 1; y < (long)box[3]; y++)
			for (long x = (long)box[0] + 1; x < (long)box[2]; x++)
				bin[y * 10 + x] = 1;
	return 0;
}

static void
prompts(void)
{
	mp_sam_prompts s = { 0 };
	double b3[6] = { 1, 1, 2, 8, 8, 6 }, pt[4] = { 3, 4, 5, 0 }, bx[5] = { 0, 0, 9, 9, 5 };
	unsigned char bin[100] = { 0 };
	double b[4];

	T_OK(mp_sp_add_box3(&s, b3, 6, 1) == 0 && mp_sp_add_box(&s, bx, 5, 2) == 0 && mp_sp_add_point(&s, pt, 4) == 0 &&
	     s.n == 1 && s.p[0].npts == 1 && s.p[0].plab[0] == 0, "prompt-point-joins-box");
	T_OK(mp_sp_add_box(&s, bx, 3, 1) < 0 && mp_sp_add_point(&s, (double[]){ 1, 1, 0.5 }, 3) < 0, "prompt-bad-rejected");
	nzs = 0;
	T_OK(mp_sp_run(&s, 10, 10, 8, 0, record, NULL) == 0, "prompt-run");
	/* the 2-D prompt, then the 3-D box: middle slice 4 up to 6, then 3 down to 2 */
	T_OK(nzs == 6 && zs[0] == 5 && zs[1] == 4 && zs[2] == 5 && zs[3] == 6 && zs[4] == 3 && zs[5] == 2,
	     "prompt-3d-order");
	bin[3 * 10 + 2] = bin[7 * 10 + 5] = 1;
	T_OK(mp_sp_bbox(bin, 10, 10, b) && b[0] == 2 && b[1] == 3 && b[2] == 5 && b[3] == 7, "prompt-bbox");
	T_OK(mp_sp_bbox_grown(bin, 10, 10, 4, b) && b[0] == 0 && b[1] == 0 && b[2] == 9 && b[3] == 10, "prompt-bbox-grown-clipped");
	mp_sp_rng r1, r2;
	int same = 1, inrange = 1;
	mp_sp_rng_seed(&r1, 3);
	mp_sp_rng_seed(&r2, 3);
	for (int i = 0; i < 100; i++) {
		long a = mp_sp_rng_next(&r1, 5), c = mp_sp_rng_next(&r2, 5);
		same &= a == c;
		inrange &= a >= 0 && a <= 5;
	}
	T_OK(same && inrange && mp_sp_rng_next(&r1, 0) == 0, "prompt-shift-rng");
	mp_sam_embinfo in = { 0 };
	in.mode = MP_SAM_LITEMEDSAM;
	in.nx = 512;
	in.ny = 256;
	mp_sam_prompt p;
	float fp[2];
	T_OK(mp_sp_scale(&in, 256, 0, (double[]){ 10, 20, 100, 200 }, 0, NULL, NULL, &p, fp) == 0 && p.has_box &&
	     p.box[0] == 5 && p.box[3] == 100, "prompt-scale-litemedsam");
	T_OK(mp_sp_scale(&in, 256, 0, (double[]){ 10, 20, 600, 200 }, 0, NULL, NULL, &p, fp) < 0, "prompt-outside");
	mp_sp_free(&s);
}

static void
preview(void)
{
	size_t dim[3] = { 4, 3, 6 }, sel[6], nsel;
	mp_frame lab;

	grid(&lab, 4, 3, 6, MP_UINT8);
	mp_frame_alloc(&lab);
	((uint8_t *)lab.data)[2 * 12 + 5] = 3;
	((uint8_t *)lab.data)[4 * 12 + 0] = 1;
	T_OK(mp_preview_select("labelled", &lab, 1, dim, 0, sel, &nsel) == 0 && nsel == 2 && sel[0] == 2 && sel[1] == 4,
	     "preview-labelled");
	T_OK(mp_preview_select("5,1,3", &lab, 1, dim, 0, sel, &nsel) == 0 && nsel == 3 && sel[0] == 1 && sel[2] == 5,
	     "preview-list-sorted");
	T_OK(mp_preview_select("9", &lab, 1, dim, 0, sel, &nsel) == -1 && mp_preview_select("x", &lab, 1, dim, 0, sel, &nsel) == -2,
	     "preview-bad-spec");
	T_OK(mp_preview_select("every:2", &lab, 1, dim, 1, sel, &nsel) == 0 && nsel == 2 && sel[1] == 2, "preview-every-coronal");
	size_t many[6] = { 0, 1, 2, 3, 4, 5 }, nm = 6;
	mp_preview_spread(many, &nm, 3);
	T_OK(nm == 3 && many[0] == 1 && many[1] == 3 && many[2] == 5, "preview-spread");
	int32_t *shown;
	size_t all[6] = { 0, 1, 2, 3, 4, 5 };
	size_t ns = mp_preview_labels(&lab, 1, dim, 0, all, 6, &shown);
	T_OK(ns == 2 && shown[0] == 1 && shown[1] == 3, "preview-legend-labels");
	free(shown);
	mp_frame_free(&lab);
}

static void
window(void)
{
	mp_frame f;
	mp_winmap m = { 0 };
	double lo, hi;

	grid(&f, 4, 1, 1, MP_INT16);
	mp_frame_alloc(&f);
	int16_t *v = f.data;
	v[0] = -1000, v[1] = 10, v[2] = 50, v[3] = 3000;
	T_OK(mp_window_held(&m, &f, 1, NULL, 0, 40, 400, &lo, &hi) == 0 && lo == -160 && hi == 240 && m.in_lo == -160 &&
	     m.in_hi == 240, "window-medsam-clipped-minmax");
	v[0] = 0, v[3] = 100;
	T_OK(mp_window_held(&m, &f, 1, NULL, 0, 40, 400, &lo, &hi) == 0 && m.in_lo == 0 && m.in_hi == 100 &&
	     m.clip_lo == -160, "window-medsam-minmax-inside");
	mp_frame_free(&f);
}

static void
resample(void)
{
	mp_frame f;
	size_t s[3] = { 10, 20, 5 }, d[3];
	double step[3], target[3] = { 2, 0, 1 };

	grid(&f, 10, 20, 5, MP_UINT8);
	f.dir[0][0] = 0.5;
	f.dir[2][2] = 2.5;
	mp_resample_plan(&f, s, target, d, step);
	T_OK(d[0] == 3 && d[1] == 20 && d[2] == 13 && step[0] == 4 && step[1] == 1 && step[2] == 0.4, "resample-plan");
	mp_frame_free(&f);
}

int
main(void)
{
	restore();
	prompts();
	preview();
	window();
	resample();
	return t_failed != 0;
}
