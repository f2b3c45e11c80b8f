/* mp_preview.h - PNG writing and slice previews: montages of slices with
 * label maps drawn over the image, and a legend. */
#ifndef MP_PREVIEW_H
#define MP_PREVIEW_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* an 8-bit RGB raster */
typedef struct {
	size_t w, h;
	uint8_t *px;           /* w*h*3 */
} mp_rgb;

int mp_rgb_init(mp_rgb *r, size_t w, size_t h, uint8_t grey);   /* -1 + mp_err */
void mp_rgb_free(mp_rgb *r);
/* 8-bit RGB PNG through libpng (deterministic: no time chunk) */
int mp_png_write(FILE *fp, const char *name, const mp_rgb *r);
/* written whole or not at all (temporary name, renamed) */
int mp_png_save(const char *path, const mp_rgb *r);

/* fixed colour of a label (labels 1..: a table of distinct colours, then a hash) */
void mp_label_colour(long label, uint8_t rgb[3]);

/* which plane: 0 axial (x right, y down), 1 coronal (x right, z up), 2 sagittal (y right, z up) */
typedef struct {
	int axis;              /* 0 axial, 1 coronal, 2 sagittal */
	double lo, hi;         /* grey window: lo -> black, hi -> white */
	double alpha;          /* fill opacity of labels; 0: outlines only */
	int outline;           /* draw label outlines (also with fill) */
	double scale;          /* output pixels per mm of the finest displayed axis spacing x this */
} mp_preview_opts;

/* the number of slices along the chosen plane's normal and the displayed
 * pixel size of one slice (with the aspect from the spacing) */
size_t mp_preview_nslices(const size_t dim[3], int axis);
void mp_preview_size(const size_t dim[3], const double sp[3], const mp_preview_opts *o, size_t *w, size_t *h);

/* draw slice s of a volume into r at (x0,y0), of the size mp_preview_size
 * gives. img: a frame of any scalar type, or NULL for black; labs: nlabs label
 * frames of any integer type. Voxels are read in their own type (a whole CT
 * is not converted first) */
void mp_preview_slice(mp_rgb *r, size_t x0, size_t y0, const mp_frame *img,
                      const mp_frame *labs, size_t nlabs,
                      const size_t dim[3], const double sp[3], size_t s,
                      const mp_preview_opts *o);

/* text in a built-in 5x7 font (digits, letters, a few signs), scale k */
void mp_draw_text(mp_rgb *r, size_t x, size_t y, const char *s, int k, const uint8_t rgb[3]);
size_t mp_text_width(const char *s, int k);
void mp_fill_rect(mp_rgb *r, size_t x, size_t y, size_t w, size_t h, const uint8_t rgb[3]);
/* ---------------------------------------------------------------- montages
 * (vol-preview) */
/* the volume index (x fastest) of in-plane element u of slice s, in the order
 * axial x then y, coronal x then z, sagittal y then z */
size_t mp_preview_voxel(const size_t dim[3], int axis, size_t s, size_t u);
/* the slices spec names ('labelled': those where a label frame is non-zero;
 * 'all'; 'every:N'; a list '3,10,20', sorted) into sel (room for
 * mp_preview_nslices entries). 0, -1 + mp_err (a slice beyond the volume),
 * -2 + mp_err (a spec that does not parse) */
int mp_preview_select(const char *spec, const mp_frame *labs, size_t nlabs, const size_t dim[3], int axis,
                      size_t *sel, size_t *nsel);
/* at most max (> 0) of the nsel slices, evenly spread */
void mp_preview_spread(size_t *sel, size_t *nsel, size_t max);
/* the distinct non-zero labels on the slices sel, increasing (*out malloc'd) */
size_t mp_preview_labels(const mp_frame *labs, size_t nlabs, const size_t dim[3], int axis, const size_t *sel,
                         size_t nsel, int32_t **out);
/* the montage of slices sel into r (initialised here): tiles of
 * mp_preview_size in cols columns (0: about square), 4 pixels apart; with a
 * title (NULL: no title and no slice numbers) above and a legend of the labels
 * shown below (with_legend). -1 + mp_err when out of memory */
int mp_preview_montage(mp_rgb *r, const mp_frame *img, const mp_frame *labs, size_t nlabs, const size_t dim[3],
                       const double sp[3], const size_t *sel, size_t nsel, const mp_preview_opts *o, size_t cols,
                       int with_legend, const char *title);
#endif
