/* mp_wsi.h - whole-slide images through OpenSlide, and tissue detection.
 *
 * Regions come out as 8-bit RGB: OpenSlide's premultiplied ARGB is
 * un-premultiplied as openslide-python does (a = 255: as is; else each
 * channel 255 * c / a, truncated; a = 0: the pixel's bytes left as they are,
 * read as RGBA, which is 0 outside the slide). */
#ifndef MP_WSI_H
#define MP_WSI_H
#include <stddef.h>
#include <stdint.h>

typedef struct mp_wsi mp_wsi;

mp_wsi *mp_wsi_open(const char *path);            /* NULL + one-line mp_err */
void mp_wsi_close(mp_wsi *w);
int mp_wsi_levels(const mp_wsi *w);
void mp_wsi_level_size(const mp_wsi *w, int level, int64_t *lw, int64_t *lh);
double mp_wsi_downsample(const mp_wsi *w, int level);
/* micrometres per level-0 pixel (openslide.mpp-x/-y); 0 when unknown */
void mp_wsi_mpp(const mp_wsi *w, double *mx, double *my);
const char *mp_wsi_vendor(const mp_wsi *w);
/* the level OpenSlide chooses for a downsample (the largest not above it) */
int mp_wsi_best_level(const mp_wsi *w, double ds);
/* w x h pixels of a level from level-0 position (x, y) into rgb (w*h*3) */
int mp_wsi_read_rgb(mp_wsi *s, int64_t x, int64_t y, int level, int64_t w, int64_t h, uint8_t *rgb);

/* tissue mask (0/255) of an RGB raster: the saturation of HSV as OpenCV
 * computes it for 8-bit images (s = round(255 * (max - min) / max) through
 * its 12-bit fixed-point table), a median filter of size median (odd,
 * replicated border, as cv2.medianBlur), then s > thresh, or with otsu the
 * threshold Otsu's method picks on the filtered saturation (as
 * cv2.THRESH_OTSU); *used gets the threshold. */
int mp_tissue_mask(const uint8_t *rgb, size_t w, size_t h, int median, int otsu, int thresh, uint8_t *mask, int *used);

#endif
