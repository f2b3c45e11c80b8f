/* mp_filter.h - intensity windowing, in-plane resizing, resampling to a
 * spacing, cropping, and the geometry history that lets vol-restore undo
 * crops, pads and resizes.
 *
 * Buffers are plain arrays in the stream's layout (x fastest, then y, then z).
 * Every function here has a direct OpenCL counterpart in opencl/ (issue 6):
 * they take buffers, sizes and parameters only, never frames, except the
 * history helpers at the end (which work on frame keys).
 */
#ifndef MP_FILTER_H
#define MP_FILTER_H

#include "mp.h"

/* ================================================================ windowing */
typedef struct mp_win_preset {
	const char *name;
	double level, width;
	const char *what;         /* one line: what it is for */
} mp_win_preset;
/* the table of presets (NULL-name terminated) and a lookup by name */
const mp_win_preset *mp_win_presets(void);
const mp_win_preset *mp_win_preset_find(const char *name);

/* A linear intensity map, applied voxel by voxel:
 *   v = clamp(x, clip_lo, clip_hi)
 *   t = (v - in_lo) / (in_hi - in_lo)        (t = 0 when in_hi == in_lo)
 *   y = out_lo + t * (out_hi - out_lo)
 *   keep_zero: voxels with x == 0 give y = 0 (MedSAM's MR rule)
 *   trunc: integer outputs truncate toward zero (numpy's astype(uint8));
 *          otherwise they round half away from zero; both clamp to the type.
 *   single: compute in float (what numpy does for float32 input), else double.
 * clinical: in = clip = [L-W/2, L+W/2].
 * medsam:   clip = [L-W/2, L+W/2], in = [min, max] of the clipped volume. */
typedef struct mp_winmap {
	double clip_lo, clip_hi;
	double in_lo, in_hi;
	double out_lo, out_hi;
	int keep_zero, trunc, single;
} mp_winmap;
void mp_window_apply(void *dst, mp_type dt, const void *src, mp_type st, size_t n,
                     const mp_winmap *m);

/* hu-window's map for a held frame f (out_lo, out_hi, trunc and single of m
 * set by the caller): the window lo..hi is the percentiles pct[0], pct[1] of
 * the values (pct non-NULL; positive_only: of the values > 0, and zeros stay
 * 0), else level -/+ width/2; rounded to float when m->single; clip = in =
 * lo..hi, and with medsam in = the min and max of the clipped volume
 * (MedSAM's rule; NaNs ignored). *wlo, *whi get lo, hi. -1 + mp_err when no
 * value counts for the percentiles. (Works on a frame: the one exception
 * here besides the history helpers.) */
int mp_window_held(mp_winmap *m, const mp_frame *f, int medsam, const double *pct, int positive_only,
                   double level, double width, double *wlo, double *whi);

/* percentile p (0..100) of the n values of src as numpy.percentile computes it
 * (method 'linear'); positive_only: only values > 0 count (MedSAM's MR rule:
 * image_data[image_data > 0]). Returns 0, or -1 with mp_err when no value
 * counts. NaNs are ignored. np values at once into out[]. */
int mp_percentiles(const void *src, mp_type st, size_t n, int positive_only,
                   const double *p, int np, double *out);

/* MedSAM's 2D rules (pre_grey_rgb), in place on a held frame, result uint8:
 * an image that is not uint8 (16-bit) is first min-max scaled to 0..255 over
 * the whole frame, truncated; then a grey image (rgb 0) gets the percentiles
 * 0.5/99.5 of its pixels > 0, is clipped to them, min-max scaled (min and max
 * of the clipped image) to 0..255 and truncated, pixels that were 0 staying 0;
 * an RGB image (rgb 1) is left as it is. Computed in double, as numpy. */
typedef struct {
	int rescaled;          /* the 16-bit step ran: in_lo..in_hi mapped to 0..255 */
	double in_lo, in_hi;
	int pct;               /* the grey step ran with percentiles p_lo, p_hi */
	double p_lo, p_hi;
} mp_medsam2d_info;
int mp_medsam2d(mp_frame *f, int rgb, mp_medsam2d_info *info);

/* ================================================================ resizing */
typedef enum {
	MP_RS_NEAREST = 0,  /* centre of the output pixel, floor: src = floor((2i+1)*sn / (2*dn)) */
	MP_RS_LINEAR,       /* OpenCV INTER_LINEAR (half-pixel centres, replicated border, no anti-aliasing) */
	MP_RS_CUBIC,        /* OpenCV INTER_CUBIC: Keys cubic, a = -0.75 by default */
	MP_RS_AREA,         /* OpenCV INTER_AREA: pixel-area average when shrinking, OpenCV's area-linear when enlarging */
	MP_RS_BSPLINE3      /* scikit-image resize(order=3, mode='reflect', anti_aliasing=True, clip=True) */
} mp_rs_method;
const char *mp_rs_name(mp_rs_method m);
int mp_rs_parse(const char *s, mp_rs_method *m);   /* -1 + mp_err */

/* A 1-D resampling table: output sample i = sum_k w[i*ntap+k] * in[idx[i*ntap+k]].
 * Indices are already clamped/mirrored into 0..sn-1. */
typedef struct mp_rs_tab {
	size_t sn, dn, ntap;
	int32_t *idx;
	float *w;
} mp_rs_tab;
/* tables for a method along one axis (cubic_a used by MP_RS_CUBIC);
 * MP_RS_BSPLINE3 tables act on prefiltered coefficients (mp_bspline_prefilter).
 * -1 + mp_err on bad sizes / memory. */
int mp_rs_tab_make(mp_rs_tab *t, mp_rs_method m, size_t sn, size_t dn, double cubic_a);
/* the Gaussian anti-aliasing filter of scikit-image (sigma, truncate 4, mirror),
 * as a table of the same length n (a no-op table for sigma <= 0) */
int mp_rs_tab_gauss(mp_rs_tab *t, size_t n, double sigma);
/* linear or nearest resampling with origin-aligned samples: out i at in i*step
 * (used for resampling to a spacing); nearest rounds half up */
int mp_rs_tab_aligned(mp_rs_tab *t, int nearest, size_t sn, size_t dn, double step);
void mp_rs_tab_free(mp_rs_tab *t);

/* cubic B-spline prefilter in place along a line of n values with stride, mirror boundary
 * (scipy.ndimage.spline_filter1d(order=3, mode='mirror')) */
void mp_bspline_prefilter(double *line, size_t n);

/* Resizes one 2-D slice held as floats: src sw x sh -> dst dw x dh. The
 * workspace ws must hold mp_resize2d_ws(...) floats. For MP_RS_BSPLINE3
 * the slice is smoothed (when shrinking), prefiltered and interpolated, and
 * the result clipped to the slice's min..max as scikit-image does.
 * Returns 0 or -1 with mp_err. */
typedef struct mp_resizer {
	mp_rs_method m;
	size_t sw, sh, dw, dh;
	mp_rs_tab tx, ty;           /* interpolation tables */
	mp_rs_tab gx, gy;           /* bspline3: anti-aliasing */
	float *tmp, *tmp2;          /* workspace */
	double *line, *dimg;
	int zero_border;            /* bspline3: scikit-image mode='constant' (cval 0) */
	size_t pad;                 /* bspline3: zero padding of the prefiltered image */
	int nthreads;               /* threads for the two passes (set after init; default 1) */
} mp_resizer;
int mp_resizer_init(mp_resizer *r, mp_rs_method m, size_t sw, size_t sh, size_t dw, size_t dh,
                    double cubic_a);
/* zero_border: for MP_RS_BSPLINE3, scikit-image's mode='constant' (cval 0, as
 * MedSAM resizes its slices) instead of mode='reflect' */
int mp_resizer_init_border(mp_resizer *r, mp_rs_method m, size_t sw, size_t sh, size_t dw, size_t dh,
                           double cubic_a, int zero_border);
void mp_resizer_run(mp_resizer *r, const float *src, float *dst);
/* the same, writing dw*dh elements of type dt (rounded, clamped as mp_convert)
 * row by row: no full-size float image; -1 + mp_err only when out of memory */
int mp_resizer_run_to(mp_resizer *r, const float *src, void *dst, mp_type dt);
void mp_resizer_free(mp_resizer *r);
/* nearest-neighbour resize of any element size (labels: values copied, never converted) */
void mp_resize_nearest(void *dst, size_t dw, size_t dh, const void *src, size_t sw, size_t sh,
                       size_t elsize);
/* dst[y][x] = src[yi[y]][xi[x]] for elements of elsize bytes (sw: source row length) */
void mp_gather2d(void *dst, size_t dw, size_t dh, const void *src, size_t sw,
                 const int32_t *xi, const int32_t *yi, size_t elsize);
/* fast conversions to and from float (integers: round half away from zero, clamp;
 * the same results as mp_convert) */
void mp_to_float(float *dst, const void *src, mp_type st, size_t n);
void mp_from_float(void *dst, mp_type dt, const float *src, size_t n);
/* dst = (1-f)*a + f*b */
void mp_blend(float *dst, const float *a, const float *b, float f, size_t n);
/* apply a table along x (rows) or y (columns) of a float image */
void mp_rs_apply_x(const mp_rs_tab *t, const float *src, size_t h, float *dst);
void mp_rs_apply_y(const mp_rs_tab *t, const float *src, size_t w, float *dst);

/* resampling to a spacing (vol-resize --spacing), origin kept: for a frame f
 * of sizes s and the target spacing (mm; <= 0: axis kept; the third axis of
 * a 2-D frame kept), the output sizes d = round(s * spacing / target) and the
 * steps target / spacing (input voxels per output voxel) */
void mp_resample_plan(const mp_frame *f, const size_t s[3], const double target[3], size_t d[3], double step[3]);
/* the frame's data from in (s[2] slices of s[0] x s[1] of type st) resampled
 * to d as output of type dt written to o: in-plane by mp_rs_tab_aligned
 * tables, along z linearly between two cached in-plane-resampled slices
 * (near: nearest, half up, values copied); ends with the input's padding
 * skipped. Holds two slices. 0, or -1 + mp_err. */
int mp_resample_stream(mp_in *in, mp_out *o, int near, mp_type st, mp_type dt, const size_t s[3], const size_t d[3],
                       const double step[3]);

/* output size for the longest side n: SAM's ResizeLongestSide
 * (scale = n / max(w,h); new = (int)(old * scale + 0.5)) */
void mp_longest_side(size_t w, size_t h, size_t n, size_t *nw, size_t *nh);

/* ================================================================ cropping */
/* bounding box of voxels whose value is in the set (or any non-zero when
 * nlab == 0) of an integer label volume; lo/hi inclusive, per axis x,y,z.
 * zused (nz bytes, may be NULL) gets 1 for every slice holding such voxels.
 * Returns the number of such voxels (0: empty, box undefined), -1 on a
 * non-integer type. */
long long mp_label_bbox(const void *vol, mp_type t, size_t nx, size_t ny, size_t nz,
                        const int64_t *labs, size_t nlab, size_t lo[3], size_t hi[3],
                        unsigned char *zused);
/* copy the box x0..x0+cw-1, y0.., and the slices zlist[0..cd-1] (or z0..z0+cd-1 when
 * zlist is NULL) out of a volume of elsize-byte elements */
void mp_crop(void *dst, const void *src, size_t elsize, size_t nx, size_t ny,
             size_t x0, size_t y0, size_t cw, size_t ch, const size_t *zlist, size_t z0, size_t cd);
/* the same box written out as frame g (header, then the data straight from
 * src: whole slices as they lie, rows gathered 1 MiB at a time), so that no
 * copy of the cropped volume is made */
int mp_out_crop(mp_out *o, const mp_frame *g, const void *src, size_t elsize, size_t nx, size_t ny,
                size_t x0, size_t y0, size_t cw, size_t ch, const size_t *zlist, size_t z0, size_t cd);

/* ================================================================ geometry history
 * Keys (see medpipe-vol(5)):
 *   medpipe.grid0.sizes:=NX NY NZ          the grid before the first geometry change
 *   medpipe.grid0.directions:=(..) (..) (..)
 *   medpipe.grid0.origin:=(x,y,z)
 *   medpipe.history:=OP; OP; ...           oldest first
 * An OP maps a parent grid (its input) to a child grid (its output), per axis:
 *   crop PXxPYxPZ>CXxCYxCZ at X0,Y0,Z0     child i = parent i + X0 (per axis)
 *   slices PZ>CZ LIST                      child slice j = parent slice LIST[j];
 *                                          LIST: "a-b,c,..." (0-based, increasing)
 *   resize PXxPY>CXxCY METHOD              in-plane, pixel-area: child pixel i covers
 *                                          parent [i*P/C, (i+1)*P/C)
 *   pad PXxPYxPZ>CXxCYxCZ at X0,Y0,Z0      parent i sits at child i + X0
 *   resample PXxPYxPZ>CXxCYxCZ step SX,SY,SZ  child i sits at parent i*S (origin kept)
 */
#define MP_HIST_MAXOP 64
typedef enum { MP_OP_CROP, MP_OP_SLICES, MP_OP_RESIZE, MP_OP_PAD, MP_OP_RESAMPLE } mp_opkind;
typedef struct mp_histop {
	mp_opkind kind;
	size_t psz[3], csz[3];      /* parent and child sizes */
	long off[3];                /* crop / pad offsets */
	double step[3];             /* resample */
	size_t *list;               /* slices: csz[2] entries */
	char method[16];            /* resize */
} mp_histop;
typedef struct mp_history {
	int have_grid0;
	size_t size0[3];
	double dir0[3][3], origin0[3];
	int nop;
	mp_histop op[MP_HIST_MAXOP];
} mp_history;

/* read grid0 and the op list from a frame's keys (-1 + mp_err on bad text) */
int mp_hist_read(const mp_frame *f, mp_history *h);
void mp_hist_free(mp_history *h);
/* record grid0 from the frame's current geometry when absent */
void mp_hist_grid0(mp_frame *f);
/* append one op (text without "; ") to medpipe.history, setting grid0 first
 * when absent: call mp_hist_grid0 yourself BEFORE changing the frame's geometry */
void mp_hist_append(mp_frame *f, const char *op);
/* remove grid0 and the op list (the frame is on its original grid again) */
void mp_hist_clear(mp_frame *f);
/* helpers building op text */
void mp_hist_crop(mp_frame *f, const size_t psz[3], const size_t csz[3], const size_t off[3]);
void mp_hist_slices(mp_frame *f, size_t pz, const size_t *list, size_t cz);
void mp_hist_resize(mp_frame *f, size_t pw, size_t ph, size_t cw, size_t chh, const char *method);
void mp_hist_pad(mp_frame *f, const size_t psz[3], const size_t csz[3], const size_t off[3]);
void mp_hist_resample(mp_frame *f, const size_t psz[3], const size_t csz[3], const double step[3]);
/* For each axis a, map[a][q] (q in 0..size0[a]-1) = index in the final grid of
 * the voxel that grid0 voxel q became (nearest), or -1 when it was cut away.
 * Axis 2 maps slices. Requires have_grid0. maps are malloc'd. */
int mp_hist_maps(const mp_history *h, const size_t final[3], long *map[3]);

/* ================================================================ restoring (vol-restore)
 * A frame f (its header) put back onto the grid it came from: grid0 of its
 * history, or the grid of ref (NULL: grid0) -- directly through the history's
 * maps when ref is grid0 (mp_same_grid), else each ref voxel centre located in
 * grid0 and taken by nearest neighbour. Voxels cut away get bg. out gets the
 * header to write (history keys removed unless keep_hist). NULL + mp_err when
 * the frame cannot be restored (a frame without history restores onto ref
 * from its own grid). Then mp_restore_slice fills output slice k (out's
 * x*y elements) from the frame's whole data. */
typedef struct mp_restore mp_restore;
mp_restore *mp_restore_new(const mp_frame *f, const mp_frame *ref, double bg, int keep_hist,
                           mp_frame *out);
void mp_restore_slice(const mp_restore *r, const void *data, size_t k, void *slice);
void mp_restore_free(mp_restore *r);
/* same sizes, and voxel (0,0,0) and the unit steps within 1e-3 voxel */
int mp_same_grid(const mp_frame *a, const mp_frame *b);

#endif
