/* test_cl_data.h - real volumes from ../shared/data for the OpenCL
 * equivalence tests: gzip NIfTI-1 (TotalSegmentator) and the zlib MetaImage
 * frog label volume, read with zlib only (no medpipe reader involved). */
#ifndef TEST_CL_DATA_H
#define TEST_CL_DATA_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* NIfTI-1 .nii.gz: returns data (malloc'd), dims, mp_type; NULL if absent */
static __attribute__((unused)) void *
td_nifti(const char *rel, size_t dim[3], mp_type *t)
{
	char path[1024];
	gzFile g;
	unsigned char h[352];
	int16_t d[8], dt;
	float vo;
	size_t n, es;
	void *buf;

	snprintf(path, sizeof path, "%s/%s", T_DATA, rel);
	if (!(g = gzopen(path, "rb")))
		return NULL;
	if (gzread(g, h, 352) != 352) {
		gzclose(g);
		return NULL;
	}
	memcpy(d, h + 40, 16);
	memcpy(&dt, h + 70, 2);
	memcpy(&vo, h + 108, 4);
	*t = dt == 2 ? MP_UINT8 : dt == 4 ? MP_INT16 : dt == 8 ? MP_INT32 : dt == 16 ? MP_FLOAT32 : dt == 512 ? MP_UINT16 : MP_NONE;
	if (*t == MP_NONE || d[0] < 3) {
		gzclose(g);
		return NULL;
	}
	dim[0] = (size_t)d[1];
	dim[1] = (size_t)d[2];
	dim[2] = (size_t)d[3];
	es = mp_type_size(*t);
	n = dim[0] * dim[1] * dim[2];
	gzseek(g, (z_off_t)vo, SEEK_SET);
	buf = malloc(n * es);
	if ((size_t)gzread(g, buf, (unsigned)(n * es)) != n * es) {
		free(buf);
		buf = NULL;
	}
	gzclose(g);
	return buf;
}

/* the frog: 500x470x136 uint8 labels (zlib) */
static __attribute__((unused)) uint8_t *
td_frog(size_t dim[3])
{
	char path[1024];
	FILE *fp;
	long zn;
	unsigned char *z;
	uLongf n = 500ul * 470 * 136;
	uint8_t *buf;

	snprintf(path, sizeof path, "%s/meta/frog/frogtissue.zraw", T_DATA);
	if (!(fp = fopen(path, "rb")))
		return NULL;
	fseek(fp, 0, SEEK_END);
	zn = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	z = malloc((size_t)zn);
	if (fread(z, 1, (size_t)zn, fp) != (size_t)zn) {
		fclose(fp);
		free(z);
		return NULL;
	}
	fclose(fp);
	buf = malloc(n);
	if (uncompress(buf, &n, z, (uLong)zn) != Z_OK || n != 500ul * 470 * 136) {
		free(buf);
		buf = NULL;
	}
	free(z);
	dim[0] = 500;
	dim[1] = 470;
	dim[2] = 136;
	return buf;
}
#endif
