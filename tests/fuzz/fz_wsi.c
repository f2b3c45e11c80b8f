/* fz_wsi.c - the whole-slide reader (wsi.c over OpenSlide) as wsi-tile uses
 * it: the input is written to in.tiff, opened, and of every level a corner
 * region of up to 64 x 64 pixels is read; the smallest level, when it is at
 * most 256 x 256, gets a tissue mask as wsi-tile --tissue otsu does.
 * (OpenSlide and libtiff are not instrumented: only crashes in them show.) */
#include "fuzz.h"
#include "mp_wsi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fz_file("in.tiff", data, size);
	mp_wsi *w = mp_wsi_open(path);
	double mx, my;
	int nl, used;

	if (!w)
		return 0;
	mp_wsi_mpp(w, &mx, &my);
	nl = mp_wsi_levels(w);
	(void)mp_wsi_best_level(w, 2.0);
	for (int l = 0; l < nl && l < 8; l++) {
		int64_t lw = 0, lh = 0, rw, rh;
		uint8_t *rgb, *mask;

		mp_wsi_level_size(w, l, &lw, &lh);
		(void)mp_wsi_downsample(w, l);
		if (lw <= 0 || lh <= 0)
			continue;
		rw = lw < 64 ? lw : 64;
		rh = lh < 64 ? lh : 64;
		if (l == nl - 1 && lw <= 256 && lh <= 256) {
			rw = lw;
			rh = lh;
		}
		rgb = mp_xmalloc((size_t)(rw * rh * 3));
		mask = mp_xmalloc((size_t)(rw * rh));
		if (mp_wsi_read_rgb(w, 0, 0, l, rw, rh, rgb) == 0 && l == nl - 1)
			(void)mp_tissue_mask(rgb, (size_t)rw, (size_t)rh, 5, 1, 0, mask, &used);
		free(rgb);
		free(mask);
	}
	mp_wsi_close(w);
	return 0;
}
