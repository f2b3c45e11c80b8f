/* test_fmt.c - unit tests of the file formats (mp_fmt.h): names and magic,
 * round trips of voxels and geometry through every format and every pair of
 * formats, every voxel type, channels, 2D/4D, compression options, NIfTI
 * scaling and byte order, and malformed files (each refused with one line
 * naming the file).
 *
 * With arguments it is also a small converter used by tests/t/formats*.py:
 *   test_fmt cat FILE...          frames of the files to standard output
 *   test_fmt conv IN OUT [-z]     read IN (one frame), write OUT (-z: compress)
 *   test_fmt save OUT [-z]        one frame from standard input to OUT
 */
#include "mp_fmt.h"
#include "t.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char dir[256];
static void write_file(const char *path, const void *buf, size_t n);

static char *
tp(const char *name)
{
	static char b[4][512];
	static int k;

	k = (k + 1) % 4;
	snprintf(b[k], sizeof b[k], "%s/%s", dir, name);
	return b[k];
}

/* a 3D frame with a rotated, anisotropic, shifted grid */
static void
sample(mp_frame *f, mp_type t, size_t nx, size_t ny, size_t nz)
{
	double c = cos(0.3), s = sin(0.3);

	mp_frame_init(f);
	f->dim = 3;
	f->size[0] = nx;
	f->size[1] = ny;
	f->size[2] = nz;
	f->type = t;
	f->space = 1;
	for (int a = 0; a < 3; a++)
		f->has_dir[a] = 1;
	f->dir[0][0] = 0.7 * c;
	f->dir[0][1] = 0.7 * s;
	f->dir[1][0] = -0.8 * s;
	f->dir[1][1] = 0.8 * c;
	f->dir[2][2] = 2.5;
	f->origin[0] = -120.25;
	f->origin[1] = 33.5;
	f->origin[2] = -7.125;
	if (mp_frame_alloc(f) < 0)
		abort();
	for (size_t i = 0; i < mp_frame_nvox(f); i++) {
		double v = (double)((i * 37) % 251);
		if (!mp_type_is_int(t))
			v = v / 8.0 - 10.0;
		else if (mp_type_is_signed(t))
			v -= 100;
		mp_put(f->data, t, i, v);
	}
}

static int
same_data(const mp_frame *a, const mp_frame *b)
{
	if (a->dim != b->dim || a->type != b->type)
		return 0;
	for (int i = 0; i < a->dim; i++)
		if (a->size[i] != b->size[i])
			return 0;
	return memcmp(a->data, b->data, mp_frame_nbytes(a)) == 0;
}

/* world geometry equal within tol (mm); frames without space count as identity */
static int
same_geom(const mp_frame *a, const mp_frame *b, double tol)
{
	for (int i = 0; i < a->dim && i < 3; i++) {
		double ia[3] = { 0, 0, 0 }, wa[3], wb[3];
		ia[i] = (double)a->size[i] - 1;
		mp_vox2world(a, ia, wa);
		mp_vox2world(b, ia, wb);
		for (int c = 0; c < 3; c++)
			if (!(fabs(wa[c] - wb[c]) <= tol))   /* NaN-aware */
				return 0;
	}
	{
		double z[3] = { 0, 0, 0 }, wa[3], wb[3];
		mp_vox2world(a, z, wa);
		mp_vox2world(b, z, wb);
		for (int c = 0; c < 3; c++)
			if (!(fabs(wa[c] - wb[c]) <= tol))   /* NaN-aware */
				return 0;
	}
	return 1;
}

static const char *exts[] = { "nrrd", "nhdr", "nii", "nii.gz", "hdr", "mha", "mhd", "npy" };
#define NEXT (sizeof exts / sizeof exts[0])

static double
tol_of(const char *ext)
{
	/* NIfTI-1 keeps geometry in float32 */
	return strncmp(ext, "nii", 3) == 0 || strcmp(ext, "hdr") == 0 ? 1e-3 : 1e-9;
}

static void
names(void)
{
	T_OK(mp_fmt_from_name("a/b.nii.gz") == MP_FMT_NIFTI && mp_fmt_from_name("x.NII") == MP_FMT_NIFTI, "name-nifti");
	T_OK(mp_fmt_from_name("x.hdr") == MP_FMT_ANALYZE && mp_fmt_from_name("x.img.gz") == MP_FMT_ANALYZE, "name-analyze");
	T_OK(mp_fmt_from_name("x.nrrd") == MP_FMT_NRRD && mp_fmt_from_name("x.nhdr") == MP_FMT_NHDR, "name-nrrd");
	T_OK(mp_fmt_from_name("x.mha") == MP_FMT_MHA && mp_fmt_from_name("x.mhd") == MP_FMT_MHD, "name-meta");
	T_OK(mp_fmt_from_name("x.npy") == MP_FMT_NPY && mp_fmt_from_name("x.npz") == MP_FMT_NPZ, "name-npy");
	T_OK(mp_fmt_from_name("x.dcm") == MP_FMT_DICOM && mp_fmt_from_name("x.txt") == MP_FMT_UNKNOWN, "name-other");
	{
		char *s = mp_fmt_stem("/a/b/ct.nii.gz"), *t = mp_fmt_stem("seg.nrrd");
		T_OK(strcmp(s, "ct") == 0 && strcmp(t, "seg") == 0, "stem");
		free(s);
		free(t);
	}
}

static void
sniff(void)
{
	mp_frame f;
	int ok = 1;
	static const struct {
		const char *ext;
		mp_fmt want;
	} w[] = { { "nrrd", MP_FMT_NRRD }, { "nii", MP_FMT_NIFTI }, { "nii.gz", MP_FMT_NIFTI }, { "mha", MP_FMT_MHA },
		  { "npy", MP_FMT_NPY }, { "hdr", MP_FMT_ANALYZE } };

	sample(&f, MP_INT16, 4, 3, 2);
	for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
		char p[64], q[64];
		snprintf(p, sizeof p, "sniff.%s", w[i].ext);
		snprintf(q, sizeof q, "sniff-%s.bin", w[i].ext);
		if (mp_file_write(tp(p), &f) < 0 || rename(tp(p), tp(q)) < 0) {
			T_FAIL("sniff", "%s", mp_err());
			ok = 0;
			continue;
		}
		if (mp_fmt_sniff(tp(q)) != w[i].want) {
			T_FAIL("sniff", "%s sniffed as %s", w[i].ext, mp_fmt_name(mp_fmt_sniff(tp(q))));
			ok = 0;
		}
		if (w[i].want != MP_FMT_ANALYZE) {
			/* and read without its extension */
			mp_frame g;
			if (mp_file_read1(tp(q), &g) < 0 || !same_data(&f, &g)) {
				T_FAIL("sniff-read", "%s: %s", w[i].ext, mp_err());
				ok = 0;
			}
			mp_frame_free(&g);
		}
	}
	{
		FILE *fp = fopen(tp("dicm.bin"), "wb");
		char pre[132] = { 0 };
		memcpy(pre + 128, "DICM", 4);
		fwrite(pre, 1, sizeof pre, fp);
		fclose(fp);
		ok &= mp_fmt_sniff(tp("dicm.bin")) == MP_FMT_DICOM;
	}
	if (ok)
		T_PASS("sniff");
	mp_frame_free(&f);
}

static void
roundtrips(void)
{
	mp_frame f;

	sample(&f, MP_INT16, 7, 5, 4);
	for (size_t i = 0; i < NEXT; i++) {
		char p[64], name[80];
		mp_frame g;
		snprintf(p, sizeof p, "rt.%s", exts[i]);
		snprintf(name, sizeof name, "roundtrip-%s", exts[i]);
		if (mp_file_write(tp(p), &f) < 0 || mp_file_read1(tp(p), &g) < 0) {
			T_FAIL(name, "%s", mp_err());
			continue;
		}
		if (!same_data(&f, &g))
			T_FAIL(name, "voxels differ");
		else if (strcmp(exts[i], "npy") != 0 && !same_geom(&f, &g, tol_of(exts[i])))
			T_FAIL(name, "geometry differs");
		else
			T_PASS(name);
		mp_frame_free(&g);
	}
	/* every pair: A -> read -> B -> read equals the original */
	{
		int bad = 0, n = 0;
		for (size_t a = 0; a < NEXT; a++)
			for (size_t b = 0; b < NEXT; b++) {
				char pa[64], pb[64];
				mp_frame g, h;
				int geo = strcmp(exts[a], "npy") != 0 && strcmp(exts[b], "npy") != 0;
				double tol = tol_of(exts[a]) > tol_of(exts[b]) ? tol_of(exts[a]) : tol_of(exts[b]);
				snprintf(pa, sizeof pa, "pa.%s", exts[a]);
				snprintf(pb, sizeof pb, "pb.%s", exts[b]);
				n++;
				if (mp_file_write(tp(pa), &f) < 0 || mp_file_read1(tp(pa), &g) < 0) {
					T_FAIL("pairs", "%s: %s", exts[a], mp_err());
					bad++;
					continue;
				}
				if (mp_file_write(tp(pb), &g) < 0 || mp_file_read1(tp(pb), &h) < 0) {
					T_FAIL("pairs", "%s -> %s: %s", exts[a], exts[b], mp_err());
					bad++;
					mp_frame_free(&g);
					continue;
				}
				if (!same_data(&f, &h) || (geo && !same_geom(&f, &h, tol))) {
					T_FAIL("pairs", "%s -> %s: %s differ", exts[a], exts[b], same_data(&f, &h) ? "geometry" : "voxels");
					bad++;
				}
				mp_frame_free(&g);
				mp_frame_free(&h);
			}
		if (!bad)
			printf("PASS roundtrip-all-%d-pairs\n", n);
	}
	mp_frame_free(&f);
}

static void
types(void)
{
	static const mp_type ts[] = { MP_INT8, MP_UINT8, MP_INT16, MP_UINT16, MP_INT32, MP_UINT32,
				      MP_INT64, MP_UINT64, MP_FLOAT32, MP_FLOAT64 };
	int bad = 0;

	for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
		mp_frame f;
		sample(&f, ts[t], 3, 4, 5);
		for (size_t i = 0; i < NEXT; i++) {
			char p[64];
			mp_frame g;
			snprintf(p, sizeof p, "ty.%s", exts[i]);
			if (mp_file_write(tp(p), &f) < 0 || mp_file_read1(tp(p), &g) < 0) {
				T_FAIL("types", "%s %s: %s", mp_type_name(ts[t]), exts[i], mp_err());
				bad++;
				continue;
			}
			if (!same_data(&f, &g)) {
				T_FAIL("types", "%s %s: voxels differ", mp_type_name(ts[t]), exts[i]);
				bad++;
			}
			mp_frame_free(&g);
		}
		mp_frame_free(&f);
	}
	if (!bad)
		T_PASS("every-type-every-format");
}

static void
shapes(void)
{
	mp_frame f, g;
	int bad = 0;

	/* 2D in the z=0 plane, 2D tilted in space, 4D, vector channels first */
	for (int k = 0; k < 4; k++) {
		sample(&f, MP_FLOAT32, 6, 5, 4);
		if (k == 0 || k == 1) {
			f.dim = 2;
			f.size[2] = 1;
			if (k == 1) {
				f.dir[1][2] = 0.3;
				f.origin[2] = 12;
			} else {
				f.origin[2] = 0;
			}
		} else if (k == 2) {
			f.dim = 4;
			f.size[2] = 2;
			f.size[3] = 2;
			f.has_dir[3] = 0;
		} else {
			/* 6 = 3 channels x 2: sizes 3, 2, 5, 4 */
			f.dim = 4;
			f.size[0] = 3;
			f.size[1] = 2;
			f.size[2] = 5;
			f.size[3] = 4;
			f.has_dir[0] = 0;
			memcpy(f.dir[3], f.dir[2], sizeof f.dir[3]);
			memcpy(f.dir[2], f.dir[1], sizeof f.dir[3]);
			memcpy(f.dir[1], f.dir[0], sizeof f.dir[3]);
			f.has_dir[3] = 1;
			snprintf(f.kind[0], sizeof f.kind[0], "vector");
		}
		for (size_t i = 0; i < NEXT; i++) {
			char p[64];
			snprintf(p, sizeof p, "sh%d.%s", k, exts[i]);
			if (mp_file_write(tp(p), &f) < 0 || mp_file_read1(tp(p), &g) < 0) {
				T_FAIL("shapes", "case %d %s: %s", k, exts[i], mp_err());
				bad++;
				continue;
			}
			/* a tilted 2D image becomes 3D with one slice in MetaImage and NIfTI */
			if (g.dim == 3 && f.dim == 2 && g.size[2] == 1)
				g.dim = 2;
			if (g.dim == 4 && f.dim == 2 && g.size[2] == 1 && g.size[3] == 1)
				g.dim = 2;
			if (!same_data(&f, &g) ||
			    (strcmp(exts[i], "npy") != 0 && k != 3 && !same_geom(&f, &g, tol_of(exts[i])))) {
				T_FAIL("shapes", "case %d %s: %s differ", k, exts[i], same_data(&f, &g) ? "geometry" : "voxels");
				bad++;
			} else if (k == 3 && strcmp(exts[i], "npy") != 0) {
				int ok = g.space && !g.has_dir[0];
				for (int a = 1; a < 4; a++)
					for (int c = 0; c < 3; c++)
						ok &= fabs(g.dir[a][c] - f.dir[a][c]) < tol_of(exts[i]);
				if (!ok) {
					T_FAIL("shapes", "channels %s: geometry differs", exts[i]);
					bad++;
				}
			}
			mp_frame_free(&g);
		}
		mp_frame_free(&f);
	}
	if (!bad)
		T_PASS("2d-4d-channels-every-format");
}

static void
rgb(void)
{
	mp_frame f, g;
	int ok = 1;
	unsigned char b[16];
	FILE *fp;

	sample(&f, MP_UINT8, 3, 5, 4);
	f.dim = 4;
	f.size[3] = 3;
	memmove(f.dir[1], f.dir[0], 3 * sizeof f.dir[0]);
	memmove(f.has_dir + 1, f.has_dir, 3 * sizeof f.has_dir[0]);
	f.has_dir[0] = 0;
	f.dir[3][0] = f.dir[3][1] = 0;
	f.dir[3][2] = 2.5;
	f.size[0] = 3;
	f.size[1] = 3;
	f.size[2] = 5;
	f.size[3] = 4;
	snprintf(f.kind[0], sizeof f.kind[0], "RGB-color");
	if (mp_frame_alloc(&f) < 0)
		abort();
	for (size_t i = 0; i < mp_frame_nvox(&f); i++)
		((unsigned char *)f.data)[i] = (unsigned char)(i * 7);
	ok &= mp_file_write(tp("rgb.nii"), &f) == 0 && mp_file_read1(tp("rgb.nii"), &g) == 0 && same_data(&f, &g) &&
	      strcmp(g.kind[0], "RGB-color") == 0;
	mp_frame_free(&g);
	/* stored as DT_RGB24 (128), bitpix 24 */
	fp = fopen(tp("rgb.nii"), "rb");
	ok &= fp && fseek(fp, 70, SEEK_SET) == 0 && fread(b, 1, 4, fp) == 4 && b[0] == 128 && b[1] == 0 && b[2] == 24;
	if (fp)
		fclose(fp);
	T_OK(ok, "nifti-rgb24");
	mp_frame_free(&f);
}

/* hand-written MetaImage headers: HeaderSize, big endian, a data file in a
 * sub-folder, Position/Orientation spellings, channels */
static void
meta_variants(void)
{
	int16_t v[6] = { 1, -2, 300, -400, 5000, -6000 }, be[6];
	unsigned char pad[16] = { 0 };
	mp_frame g;
	int ok;
	FILE *fp;
	const char *h;

	memcpy(be, v, sizeof v);
	if (!mp_host_big())
		mp_swap_bytes(be, 2, 6);
	fp = fopen(tp("mv.raw"), "wb");
	fwrite(pad, 1, 16, fp);
	fwrite(be, 2, 6, fp);
	fclose(fp);
	h = "ObjectType = Image\nNDims = 2\nBinaryData = True\nBinaryDataByteOrderMSB = True\n"
	    "Position = 1.5 -2\nOrientation = 0 1 -1 0\nElementSpacing = 2 3\nDimSize = 3 2\n"
	    "HeaderSize = 16\nElementType = MET_SHORT\nElementDataFile = mv.raw\n";
	write_file(tp("mv.mhd"), h, strlen(h));
	ok = mp_file_read1(tp("mv.mhd"), &g) == 0 && g.dim == 2 && g.type == MP_INT16 && memcmp(g.data, v, sizeof v) == 0 &&
	     g.dir[0][0] == 0 && g.dir[0][1] == 2 && g.dir[1][0] == -3 && g.dir[1][1] == 0 && g.origin[0] == 1.5 &&
	     g.origin[1] == -2;
	T_OK(ok, "meta-headersize-msb-position-orientation");
	mp_frame_free(&g);
	h = "NDims = 2\nDimSize = 3 2\nHeaderSize = -1\nElementByteOrderMSB = True\nElementType = MET_SHORT\n"
	    "ElementDataFile = mv.raw\n";
	write_file(tp("mv2.mhd"), h, strlen(h));
	ok = mp_file_read1(tp("mv2.mhd"), &g) == 0 && memcmp(g.data, v, sizeof v) == 0;
	T_OK(ok, "meta-headersize-minus-1");
	mp_frame_free(&g);
	h = "NDims = 1\nDimSize = 2\nElementNumberOfChannels = 3\nElementType = MET_SHORT\nElementDataFile = mv.raw\n";
	write_file(tp("mv3.mhd"), h, strlen(h));
	ok = mp_file_read1(tp("mv3.mhd"), &g) == 0 && g.dim == 2 && g.size[0] == 3 && g.size[1] == 2 && !g.has_dir[0] &&
	     g.has_dir[1] && strcmp(g.kind[0], "vector") == 0;
	T_OK(ok, "meta-channels");
	mp_frame_free(&g);
}

static void
label_names(void)
{
	mp_frame f, g;
	const char *names = "1=spleen;2=kidney_right;17=a b";
	int ok = 1;

	sample(&f, MP_UINT8, 4, 3, 2);
	mp_set_kv(&f, "medpipe.label_names", names);
	for (int i = 0; i < 3; i++) {
		const char *p = tp(i == 0 ? "ln.nii" : i == 1 ? "ln.nii.gz" : "ln.hdr");
		int r = mp_file_write(p, &f) == 0 && mp_file_read1(p, &g) == 0 && same_data(&f, &g) &&
			mp_get_kv(&g, "medpipe.label_names") && strcmp(mp_get_kv(&g, "medpipe.label_names"), names) == 0;
		if (!r)
			T_FAIL("nifti-label-names", "%s: %s", p, mp_err());
		ok &= r;
		mp_frame_free(&g);
	}
	if (ok)
		T_PASS("nifti-label-names");
	mp_frame_free(&f);
}

static void
options(void)
{
	mp_frame f, g;
	mp_fmt_opts o = { .compress = 1, .level = 9 };
	int ok = 1;

	sample(&f, MP_UINT16, 20, 10, 3);
	ok &= mp_file_write_opts(tp("z.nrrd"), &f, &o) == 0 && mp_file_read1(tp("z.nrrd"), &g) == 0 && same_data(&f, &g);
	mp_frame_free(&g);
	ok &= mp_file_write_opts(tp("z.nhdr"), &f, &o) == 0 && access(tp("z.raw.gz"), F_OK) == 0 &&
	      mp_file_read1(tp("z.nhdr"), &g) == 0 && same_data(&f, &g);
	mp_frame_free(&g);
	ok &= mp_file_write_opts(tp("z.mhd"), &f, &o) == 0 && access(tp("z.zraw"), F_OK) == 0 &&
	      mp_file_read1(tp("z.mhd"), &g) == 0 && same_data(&f, &g);
	mp_frame_free(&g);
	ok &= mp_file_write_opts(tp("z.mha"), &f, &o) == 0 && mp_file_read1(tp("z.mha"), &g) == 0 && same_data(&f, &g);
	mp_frame_free(&g);
	o.compress = 0;
	o.nifti2 = 1;
	ok &= mp_file_write_opts(tp("n2.nii"), &f, &o) == 0 && mp_file_read1(tp("n2.nii"), &g) == 0 && same_data(&f, &g) &&
	      same_geom(&f, &g, 1e-9);
	mp_frame_free(&g);
	T_OK(ok, "compressed-nrrd-nhdr-mha-mhd-nifti2");
	{
		/* sizes over 32767 make NIfTI-2 */
		mp_frame h;
		sample(&h, MP_UINT8, 40000, 1, 1);
		h.dim = 1;
		ok = mp_file_write(tp("long.nii"), &h) == 0 && mp_file_read1(tp("long.nii"), &g) == 0 && same_data(&h, &g);
		{
			FILE *fp = fopen(tp("long.nii"), "rb");
			int32_t sz = 0;
			ok &= fp && fread(&sz, 4, 1, fp) == 1 && sz == 540;
			if (fp)
				fclose(fp);
		}
		T_OK(ok, "nifti2-for-large-sizes");
		mp_frame_free(&g);
		mp_frame_free(&h);
	}
	mp_frame_free(&f);
}

/* write a NIfTI-1 header field in place */
static void
patch(const char *path, long off, const void *v, size_t n)
{
	FILE *fp = fopen(path, "r+b");

	if (!fp)
		return;
	fseek(fp, off, SEEK_SET);
	fwrite(v, 1, n, fp);
	fclose(fp);
}

static void
nifti_scaling(void)
{
	mp_frame f, g;
	float slope = 2, inter = -1024;
	int ok;

	sample(&f, MP_UINT16, 4, 3, 2);
	mp_file_write(tp("sc.nii"), &f);
	patch(tp("sc.nii"), 112, &slope, 4);
	patch(tp("sc.nii"), 116, &inter, 4);
	ok = mp_file_read1(tp("sc.nii"), &g) == 0 && g.type == MP_INT16;
	for (size_t i = 0; ok && i < mp_frame_nvox(&f); i++)
		ok = mp_get(g.data, g.type, i) == mp_get(f.data, f.type, i) * 2 - 1024;
	T_OK(ok, "nifti-scaling-integral-to-int16");
	mp_frame_free(&g);
	slope = 0.1f;
	inter = 0;
	patch(tp("sc.nii"), 112, &slope, 4);
	patch(tp("sc.nii"), 116, &inter, 4);
	ok = mp_file_read1(tp("sc.nii"), &g) == 0 && (g.type == MP_FLOAT32 || g.type == MP_FLOAT64);
	for (size_t i = 0; ok && i < mp_frame_nvox(&f); i++)
		ok = mp_get(g.data, g.type, i) == mp_get(f.data, f.type, i) * (double)0.1f;
	T_OK(ok, "nifti-scaling-as-nibabel-float64-values");
	mp_frame_free(&g);
	slope = 0;
	inter = 5;
	patch(tp("sc.nii"), 112, &slope, 4);
	patch(tp("sc.nii"), 116, &inter, 4);
	ok = mp_file_read1(tp("sc.nii"), &g) == 0 && same_data(&f, &g);
	T_OK(ok, "nifti-slope-0-means-none");
	mp_frame_free(&g);
	mp_frame_free(&f);
}

static void
nifti_bigendian(void)
{
	mp_frame f, g;
	unsigned char h[352];
	FILE *fp;
	int ok = 0;

	/* byte-swap every header field and the data of a file we wrote */
	sample(&f, MP_INT16, 4, 3, 2);
	mp_file_write(tp("le.nii"), &f);
	fp = fopen(tp("le.nii"), "rb");
	if (fp && fread(h, 1, 352, fp) == 352) {
		static const struct {
			int off, size, count;
		} fl[] = { { 0, 4, 1 }, { 32, 4, 1 }, { 36, 2, 1 }, { 40, 2, 8 }, { 56, 4, 3 }, { 68, 2, 4 }, { 76, 4, 8 },
			   { 108, 4, 3 }, { 120, 2, 1 }, { 124, 4, 4 }, { 140, 4, 2 }, { 252, 2, 2 }, { 256, 4, 6 },
			   { 280, 4, 12 } };
		unsigned char d[48];
		for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++)
			mp_swap_bytes(h + fl[i].off, (size_t)fl[i].size, (size_t)fl[i].count);
		if (fread(d, 1, 48, fp) == 48) {
			FILE *o = fopen(tp("be.nii"), "wb");
			mp_swap_bytes(d, 2, 24);
			fwrite(h, 1, 352, o);
			fwrite(d, 1, 48, o);
			fclose(o);
			ok = mp_file_read1(tp("be.nii"), &g) == 0 && same_data(&f, &g) && same_geom(&f, &g, 1e-3);
			mp_frame_free(&g);
		}
	}
	if (fp)
		fclose(fp);
	T_OK(ok, "nifti-big-endian");
	mp_frame_free(&f);
}

static void
write_file(const char *path, const void *buf, size_t n)
{
	FILE *fp = fopen(path, "wb");

	if (fp) {
		fwrite(buf, 1, n, fp);
		fclose(fp);
	}
}

/* the file must be refused with one line that names it */
static void
refuse(const char *name, const char *path, const char *want)
{
	mp_frame **fr;
	size_t n;

	if (mp_file_read(path, &fr, &n) == 0) {
		T_FAIL(name, "accepted");
		mp_frames_free(fr, n);
		return;
	}
	if (!strstr(mp_err(), path) || strchr(mp_err(), '\n'))
		T_FAIL(name, "message does not name the file on one line: %s", mp_err());
	else if (want && !strstr(mp_err(), want))
		T_FAIL(name, "message '%s' lacks '%s'", mp_err(), want);
	else
		T_PASS(name);
}

static void
truncate_copy(const char *src, const char *dst, long keep)
{
	FILE *fp = fopen(src, "rb");
	char *b = malloc((size_t)keep);
	long k = fp ? (long)fread(b, 1, (size_t)keep, fp) : 0;

	if (fp)
		fclose(fp);
	write_file(dst, b, (size_t)k);
	free(b);
}

static void
malformed(void)
{
	mp_frame f;

	sample(&f, MP_INT16, 10, 10, 10);
	write_file(tp("empty.nii"), "", 0);
	refuse("bad-empty-nii", tp("empty.nii"), NULL);
	write_file(tp("empty.nrrd"), "", 0);
	refuse("bad-empty-nrrd", tp("empty.nrrd"), NULL);
	write_file(tp("garbage.mha"), "\x01\x02garbage\xff\xfe", 11);
	refuse("bad-garbage-mha", tp("garbage.mha"), NULL);
	write_file(tp("garbage.bin"), "\x01\x02garbage\xff\xfe", 11);
	refuse("bad-unknown-format", tp("garbage.bin"), "unknown");
	mp_file_write(tp("full.nii"), &f);
	truncate_copy(tp("full.nii"), tp("trunc.nii"), 352 + 1000);
	refuse("bad-truncated-nii", tp("trunc.nii"), "header needs");
	truncate_copy(tp("full.nii"), tp("trunc-hdr.nii"), 200);
	refuse("bad-truncated-nii-header", tp("trunc-hdr.nii"), NULL);
	mp_file_write(tp("full.nii.gz"), &f);
	{
		FILE *fp = fopen(tp("full.nii.gz"), "rb");
		long n;
		fseek(fp, 0, SEEK_END);
		n = ftell(fp);
		fclose(fp);
		truncate_copy(tp("full.nii.gz"), tp("trunc.nii.gz"), n / 2);
	}
	refuse("bad-truncated-nii-gz", tp("trunc.nii.gz"), NULL);
	mp_file_write(tp("full.nrrd"), &f);
	truncate_copy(tp("full.nrrd"), tp("trunc.nrrd"), 600);
	refuse("bad-truncated-nrrd", tp("trunc.nrrd"), "header needs");
	{
		const char *h = "NRRD0004\ntype: int16\ndimension: 3\nsizes: 100000 100000 100000\nendian: little\nencoding: raw\n\n";
		write_file(tp("absurd.nrrd"), h, strlen(h));
		refuse("bad-absurd-sizes-nrrd", tp("absurd.nrrd"), NULL);
		h = "NRRD0004\ntype: int13\ndimension: 1\nsizes: 4\nencoding: raw\n\nabcd";
		write_file(tp("type.nrrd"), h, strlen(h));
		refuse("bad-unknown-type-nrrd", tp("type.nrrd"), "type");
		h = "NRRD0004\ntype: int8\ndimension: 1\nsizes: 4\nencoding: bzip2\n\nBZh9";
		write_file(tp("bz.nrrd"), h, strlen(h));
		refuse("bad-bzip2-nrrd", tp("bz.nrrd"), "bzip2");
		h = "NRRD0004\ntype: int8\ndimension: 1\nsizes: 4\nencoding: raw\ndata file: nothere.raw\n\n";
		write_file(tp("miss.nhdr"), h, strlen(h));
		refuse("bad-missing-nhdr-data", tp("miss.nhdr"), "nothere.raw");
		h = "NRRD0004\ntype: int8\ndimension: 1\nsizes: 4\nencoding: gzip\n\nnot gzip at all";
		write_file(tp("gz.nrrd"), h, strlen(h));
		refuse("bad-corrupt-gzip-nrrd", tp("gz.nrrd"), NULL);
		h = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\nElementDataFile = gone.raw\n";
		write_file(tp("miss.mhd"), h, strlen(h));
		refuse("bad-missing-mhd-data", tp("miss.mhd"), "gone.raw");
		h = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_COMPLEX\nElementDataFile = LOCAL\n";
		write_file(tp("type.mha"), h, strlen(h));
		refuse("bad-unknown-type-mha", tp("type.mha"), "ElementType");
		h = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\nElementDataFile = LOCAL\nabc";
		write_file(tp("short.mha"), h, strlen(h));
		refuse("bad-short-data-mha", tp("short.mha"), "header needs");
		h = "ObjectType = Image\nNDims = 3\nDimSize = 2 -2 2\nElementType = MET_SHORT\nElementDataFile = LOCAL\n";
		write_file(tp("neg.mha"), h, strlen(h));
		refuse("bad-negative-size-mha", tp("neg.mha"), NULL);
	}
	{
		/* npy: bad header, shape/data mismatch */
		const char h[] = "\x93NUMPY\x01\x00\x46\x00{'descr': '<c8', 'fortran_order': False, 'shape': (2, 2), }          \n";
		write_file(tp("c.npy"), h, sizeof h - 1);
		refuse("bad-npy-dtype", tp("c.npy"), "dtype");
		mp_file_write(tp("ok.npy"), &f);
		truncate_copy(tp("ok.npy"), tp("short.npy"), 500);
		refuse("bad-npy-short", tp("short.npy"), "header needs");
	}
	{
		/* a NIfTI header whose dims are negative, and one with an absurd dim[0] */
		int16_t v = -5;
		mp_file_write(tp("neg.nii"), &f);
		patch(tp("neg.nii"), 42, &v, 2);
		refuse("bad-nifti-negative-dim", tp("neg.nii"), NULL);
		v = 9;
		mp_file_write(tp("d0.nii"), &f);
		patch(tp("d0.nii"), 40, &v, 2);
		refuse("bad-nifti-dim0", tp("d0.nii"), NULL);
		v = 77;
		mp_file_write(tp("dt.nii"), &f);
		patch(tp("dt.nii"), 70, &v, 2);
		refuse("bad-nifti-datatype", tp("dt.nii"), "datatype");
		mp_file_write(tp("pair.hdr"), &f);
		unlink(tp("pair.img"));
		refuse("bad-missing-img", tp("pair.hdr"), "pair.img");
	}
	{
		/* npz: a garbage zip, a bad CRC */
		write_file(tp("g.npz"), "PK\3\4 this is not really a zip", 29);
		refuse("bad-npz-garbage", tp("g.npz"), NULL);
	}
	mp_frame_free(&f);
}

static int
tool(int argc, char **argv)
{
	mp_init("test_fmt");
	if (strcmp(argv[1], "cat") == 0) {
		mp_out *o = mp_out_stdout();
		for (int i = 2; i < argc; i++) {
			mp_frame **fr;
			size_t n;
			if (mp_file_read(argv[i], &fr, &n) < 0)
				mp_die("%s", mp_err());
			for (size_t k = 0; k < n; k++)
				if (mp_out_frame(o, fr[k]) < 0)
					mp_die("%s", mp_err());
			mp_frames_free(fr, n);
		}
		if (mp_out_close(o) < 0)
			mp_die("%s", mp_err());
		return 0;
	}
	if ((strcmp(argv[1], "conv") == 0 && argc >= 4) || (strcmp(argv[1], "save") == 0 && argc >= 3)) {
		int conv = argv[1][0] == 'c';
		const char *out = argv[conv ? 3 : 2];
		mp_fmt_opts o = { 0 };
		mp_frame f;
		if (argc > (conv ? 4 : 3) && strcmp(argv[conv ? 4 : 3], "-z") == 0)
			o.compress = 1;
		if (conv) {
			if (mp_file_read1(argv[2], &f) < 0)
				mp_die("%s", mp_err());
		} else {
			mp_in *in = mp_in_open("-");
			if (mp_in_next(in, &f) != 1)
				mp_die("%s", mp_err());
			mp_in_close(in);
		}
		if (mp_file_write_opts(out, &f, &o) < 0)
			mp_die("%s", mp_err());
		mp_frame_free(&f);
		return 0;
	}
	fprintf(stderr, "usage: test_fmt [cat FILE... | conv IN OUT [-z] | save OUT [-z]]\n");
	return 2;
}

int
main(int argc, char **argv)
{
	if (argc > 1)
		return tool(argc, argv);
	snprintf(dir, sizeof dir, "%s/test_fmt.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	names();
	sniff();
	roundtrips();
	types();
	shapes();
	rgb();
	meta_variants();
	label_names();
	options();
	nifti_scaling();
	nifti_bigendian();
	malformed();
	{
		char cmd[600];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	return t_failed ? 1 : 0;
}
