/* mp_label.h - label volumes: connected components, small-component removal,
 * label maps, and npy/npz writing (zip with deflate or stored, ZIP64).
 *
 * Volumes are nx*ny*nz elements, x fastest (the stream's layout). Label
 * values are compared as bit patterns of their element size (1, 2, 4 or 8
 * bytes), so every integer type works and no value is ever converted.
 */
#ifndef MP_LABEL_H
#define MP_LABEL_H

#include "mp.h"

/* ---------------------------------------------------------------- components
 * conn: 6, 18, 26 (3D) or 4, 8 (2D: each z-slice labelled on its own,
 * numbering continuing across slices; no component spans two slices).
 * binary 0: a voxel joins a neighbour only of the same value (cc3d's
 * multi-label mode); binary 1: all non-zero voxels are one class.
 * ids (nx*ny*nz): 0 for background, components 1..N numbered in raster order
 * of their first voxel (the order scipy.ndimage.label gives).
 * The algorithm: one raster scan by runs (each run of one class joined to
 * the runs it touches in the up to 4 rows scanned before it; background
 * skipped 8 bytes at a time), union-find with the smaller provisional label
 * as root, then only the runs whose label changed are rewritten.
 * Returns N, or -1 with mp_err. */
int mp_ccl_conn_ok(int conn);
int64_t mp_ccl32(const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz,
                 int conn, int binary, uint32_t *ids);
int64_t mp_ccl64(const void *vol, size_t elsize, size_t nx, size_t ny, size_t nz,
                 int conn, int binary, uint64_t *ids);
/* a large buffer (not zeroed; free() it), 2 MiB aligned and marked for
 * transparent huge pages: fewer page faults for ids of a whole volume */
/* voxel count of every id: sizes[0..n] (sizes[0]: background) */
void mp_ccl_sizes32(const uint32_t *ids, size_t nvox, size_t n, uint64_t *sizes);
void mp_ccl_sizes64(const uint64_t *ids, size_t nvox, size_t n, uint64_t *sizes);

/* Remove components in place (set to 0): those with fewer than min voxels
 * (size < min, as cc3d.dust(threshold=min)), and with keep_largest all but
 * the largest component of each label (of all foreground when binary; ties
 * keep the first in raster order). conn as above (4/8: slice by slice).
 * *ncomp (if not NULL): components before removal; *nremoved: removed.
 * Returns 0 or -1 with mp_err. */
int mp_dust(void *vol, size_t elsize, size_t nx, size_t ny, size_t nz, int conn,
            int binary, double min, int keep_largest, uint64_t *ncomp, uint64_t *nremoved);

/* ---------------------------------------------------------------- label maps */
/* A label map: value -> value rules, applied to integer voxels. */
typedef struct mp_lmap {
	size_t n, cap;
	int64_t *from, *to;
	int keep_only;          /* 1: values not in keep[] (after mapping) become 0 */
	size_t nkeep;
	int64_t *keep;
} mp_lmap;
void mp_lmap_init(mp_lmap *m);
void mp_lmap_free(mp_lmap *m);
/* "A:B" or "A,B,C:D" (also ranges "A-B:D"); later rules override earlier ones */
int mp_lmap_add(mp_lmap *m, const char *spec);
/* a file of rules: one per line ("A:B", "A,B:C" or "A B"), '#' comments */
int mp_lmap_file(mp_lmap *m, const char *path);
/* "1,2,5-7": keep only these (output values) */
int mp_lmap_keep(mp_lmap *m, const char *list);
/* parse a list of integers and ranges "1,2,5-7" into *v (malloc'd) */
int mp_parse_int_list(const char *s, int64_t **v, size_t *n);
/* apply to n voxels of type t (in place); -1 + mp_err when a result does not
 * fit the type */
int mp_lmap_apply(const mp_lmap *m, void *buf, mp_type t, size_t n);
/* renumber the non-zero values to 1..K in increasing order; returns K or -1 */
int64_t mp_lmap_renumber(void *buf, mp_type t, size_t n);

/* Semantic to instance labels: every connected component (conn) of a voxel
 * whose value is in sel[] gets its own id, start, start+1, ... in raster order;
 * other voxels keep their value. vol of type t (integer) in place. Returns the
 * number of instances or -1 with mp_err (an id does not fit the type). */
int64_t mp_instances(void *vol, mp_type t, size_t nx, size_t ny, size_t nz, int conn,
                     const int64_t *sel, size_t nsel, int64_t start);

/* ---------------------------------------------------------------- zip / npz */
/* A zip archive writer: entries are written as they come (streaming), with
 * deflate (zlib, raw) or stored, CRC-32, and ZIP64 records where sizes or
 * offsets pass 4 GiB. Seekable outputs get exact local headers (patched);
 * others get data descriptors. */
typedef struct mp_zip mp_zip;
mp_zip *mp_zip_open(FILE *fp, const char *name, int level);  /* level 0: stored, 1..9 deflate */
/* start an entry; usize: its uncompressed size if known (for ZIP64 decisions), else -1 */
int mp_zip_begin(mp_zip *z, const char *entry, int64_t usize);
int mp_zip_write(mp_zip *z, const void *buf, size_t n);
int mp_zip_end(mp_zip *z);
/* write the central directory; frees z (does not close fp) */
int mp_zip_close(mp_zip *z);
void mp_zip_abort(mp_zip *z);

/* npy: the header of an array of type t with shape shp[0..nd-1] (C order,
 * shp[0] slowest), as numpy writes it (version 1.0, or 2.0 when long),
 * padded to a multiple of 64 bytes. Returns malloc'd bytes, *len their count. */
char *mp_npy_header(mp_type t, int nd, const size_t *shp, size_t *len);
/* a whole array to an open npz (entry NAME.npy) or to a FILE as .npy */
int mp_npz_add(mp_zip *z, const char *name, mp_type t, int nd, const size_t *shp, const void *data);
int mp_npy_write(FILE *fp, mp_type t, int nd, const size_t *shp, const void *data);

#endif
