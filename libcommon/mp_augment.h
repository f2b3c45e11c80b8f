/* mp_augment.h - seeded geometric and intensity augmentation of a case:
 * rotation, scaling, flips and elastic deformation (one transform for the
 * image and its labels: linear for images, nearest for labels, so no new
 * label value appears), gamma, contrast and noise on images. */
#ifndef MP_AUGMENT_H
#define MP_AUGMENT_H
#include <stddef.h>
#include <stdint.h>

/* a small, fast, seedable generator (xoshiro256**, seeded by splitmix64) */
typedef struct { uint64_t s[4]; } mp_rng;
void mp_rng_seed(mp_rng *r, uint64_t seed);
uint64_t mp_splitmix64(uint64_t *state); /* one SplitMix64 step */
uint64_t mp_rng_next(mp_rng *r);
double mp_rng_uniform(mp_rng *r, double lo, double hi);   /* [lo, hi) */
double mp_rng_normal(mp_rng *r);                           /* N(0,1) */
uint64_t mp_hash64(const void *buf, size_t n, uint64_t h); /* FNV-1a then mixed */

/* ranges the parameters are drawn from; a zero range turns a step off */
typedef struct {
	double rot[3];            /* max |angle| in degrees about the x, y, z axes */
	double scale_lo, scale_hi;/* isotropic zoom factor range (1,1: none) */
	int flip[3];              /* flip along axis a with probability 1/2 */
	double elastic_alpha;     /* displacement std in mm (0: none) */
	double elastic_sigma;     /* control point spacing in mm */
	double gamma_lo, gamma_hi;
	double contrast_lo, contrast_hi;
	double noise;             /* Gaussian noise std, image units */
} mp_aug_ranges;

typedef struct {
	uint64_t seed;
	double rot[3], scale;
	int flip[3];
	double gamma, contrast;
	double M[3][3];           /* output mm offset -> source mm offset */
	size_t dim[3];
	double sp[3];
	/* elastic control grid: g[3] points per axis, step gs[3] mm, 3 floats per point */
	size_t g[3];
	double gs[3];
	float *disp;
	double alpha;
	double noise;
} mp_aug_xform;

/* draw one transform for a volume of dim voxels with spacing sp (mm) */
int mp_aug_draw(const mp_aug_ranges *r, uint64_t seed, const size_t dim[3], const double sp[3], mp_aug_xform *x);
void mp_aug_free(mp_aug_xform *x);
/* "seed=... rot=a,b,c scale=s flip=x,y,z elastic=alpha/sigma gamma=g contrast=c noise=n" */
void mp_aug_describe(const mp_aug_xform *x, char *buf, size_t n);
/* geometric warp: images trilinear from src of type st to float (outside the
 * volume: fill); labels nearest, elements of es bytes copied as they are
 * (outside: 0), so no conversion and no new values */
void mp_aug_warp_image(const mp_aug_xform *x, const void *src, mp_type st, float *dst, float fill);
void mp_aug_warp_labels(const mp_aug_xform *x, const void *src, void *dst, size_t es);
/* gamma (on the [lo,hi] range), contrast about the mean, noise; n values */
void mp_aug_intensity(const mp_aug_xform *x, float *v, size_t n, double lo, double hi);
#endif
