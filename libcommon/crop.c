/* crop.c - bounding boxes of labels and box/slice copies */
#include "mp_filter.h"

#include <stdlib.h>
#include <string.h>

static int
inset(int64_t v, const int64_t *labs, size_t nlab)
{
	if (nlab == 0)
		return v != 0;
	for (size_t i = 0; i < nlab; i++)
		if (labs[i] == v)
			return 1;
	return 0;
}

/* a row y of slice z whose labelled voxels run from x = a to x = b: into the box */
static inline void
box_add(size_t a, size_t b, size_t y, size_t z, size_t lo[3], size_t hi[3], unsigned char *zused)
{
	if (a < lo[0]) lo[0] = a;
	if (b > hi[0]) hi[0] = b;
	if (y < lo[1]) lo[1] = y;
	if (y > hi[1]) hi[1] = y;
	if (z < lo[2]) lo[2] = z;
	if (z > hi[2]) hi[2] = z;
	if (zused) zused[z] = 1;
}

/* row by row: the count of labelled voxels of a row, then (when it has one)
 * its first and last. Any non-zero value (no label list): the count in one
 * vectorisable pass, then the ends looked for from both sides. */
#define BBOX_LOOP(T)                                                        \
	do {                                                                \
		const T *p = vol;                                           \
		for (size_t z = 0; z < nz; z++)                             \
			for (size_t y = 0; y < ny; y++) {                   \
				const T *row = p + (z * ny + y) * nx;       \
				size_t c = 0, a = 0, b = nx - 1;            \
				if (nlab == 0) {                            \
					for (size_t x = 0; x < nx; x++)     \
						c += row[x] != 0;           \
					if (c == 0)                         \
						continue;                   \
					while (row[a] == 0)                 \
						a++;                        \
					while (row[b] == 0)                 \
						b--;                        \
				} else {                                    \
					for (size_t x = 0; x < nx; x++)     \
						if (inset((int64_t)row[x], labs, nlab)) { \
							a = c++ ? a : x;    \
							b = x;              \
						}                           \
					if (c == 0)                         \
						continue;                   \
				}                                           \
				cnt += (long long)c;                        \
				box_add(a, b, y, z, lo, hi, zused);         \
			}                                                   \
	} while (0)

long long
mp_label_bbox(const void *vol, mp_type t, size_t nx, size_t ny, size_t nz,
              const int64_t *labs, size_t nlab, size_t lo[3], size_t hi[3], unsigned char *zused)
{
	long long cnt = 0;

	lo[0] = nx, lo[1] = ny, lo[2] = nz;
	hi[0] = hi[1] = hi[2] = 0;
	if (zused)
		memset(zused, 0, nz);
	switch (t) {
	case MP_INT8: BBOX_LOOP(int8_t); break;
	case MP_UINT8: BBOX_LOOP(uint8_t); break;
	case MP_INT16: BBOX_LOOP(int16_t); break;
	case MP_UINT16: BBOX_LOOP(uint16_t); break;
	case MP_INT32: BBOX_LOOP(int32_t); break;
	case MP_UINT32: BBOX_LOOP(uint32_t); break;
	case MP_INT64: BBOX_LOOP(int64_t); break;
	case MP_UINT64: BBOX_LOOP(uint64_t); break;
	default:
		return -1;
	}
	return cnt;
}

void
mp_crop(void *dst, const void *src, size_t elsize, size_t nx, size_t ny,
        size_t x0, size_t y0, size_t cw, size_t ch, const size_t *zlist, size_t z0, size_t cd)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	for (size_t k = 0; k < cd; k++) {
		size_t z = zlist ? zlist[k] : z0 + k;
		for (size_t y = 0; y < ch; y++) {
			memcpy(d, s + ((z * ny + y0 + y) * nx + x0) * elsize, cw * elsize);
			d += cw * elsize;
		}
	}
}

int
mp_out_crop(mp_out *o, const mp_frame *g, const void *src, size_t elsize, size_t nx, size_t ny,
            size_t x0, size_t y0, size_t cw, size_t ch, const size_t *zlist, size_t z0, size_t cd)
{
	const unsigned char *s = src;
	size_t row = cw * elsize, cap = (size_t)1 << 20, fill = 0;
	unsigned char *buf = NULL;
	int rc = -1;

	if (mp_out_header(o, g) < 0)
		return -1;
	if (cw == nx) {
		/* rows y0.. of a slice lie together, and so do slices z0.. */
		for (size_t k = 0; k < cd;) {
			size_t z = zlist ? zlist[k] : z0 + k, n = 1;
			if (ch == ny)
				while (k + n < cd && (zlist ? zlist[k + n] : z0 + k + n) == z + n)
					n++;
			if (mp_out_data(o, s + (z * ny + y0) * nx * elsize, ((n - 1) * ny + ch) * row) < 0)
				return -1;
			k += n;
		}
		return 0;
	}
	if (cap < row)
		cap = row;
	if (!(buf = malloc(cap)))
		return mp_seterr("out of memory");
	for (size_t k = 0; k < cd; k++) {
		size_t z = zlist ? zlist[k] : z0 + k;
		for (size_t y = 0; y < ch; y++) {
			if (cap - fill < row) {
				if (mp_out_data(o, buf, fill) < 0)
					goto done;
				fill = 0;
			}
			memcpy(buf + fill, s + ((z * ny + y0 + y) * nx + x0) * elsize, row);
			fill += row;
		}
	}
	if (fill && mp_out_data(o, buf, fill) < 0)
		goto done;
	rc = 0;
done:
	free(buf);
	return rc;
}
