/* fmt_minc.c - MINC1 (NetCDF classic, libnetcdf) and MINC2 (HDF5, libhdf5),
 * also gzip'd (.mnc.gz): the file is read into memory (inflated when it is
 * gzip) and opened from there.
 *
 * As nibabel reads them: the image variable's dimensions in file order
 * (slowest first; frame axes are the reverse); the world (RAS) position of
 * voxel 0 is R * start, the step along a spatial dimension R[:, i] * step
 * (R: direction_cosines, default the unit vector of xspace/yspace/zspace);
 * x and y are negated for LPS. Integer data are scaled by image-min/image-max
 * (scalars or per slice of the first one or two dimensions):
 * v = clip(x, vmin, vmax) * s + (imin - vmin * s), s = (imax - imin) /
 * (vmax - vmin), with [vmin, vmax] the valid_range (MINC1 also valid_min/
 * valid_max) or the type's range; float data are not scaled. A non-spatial
 * dimension (time) is a frame axis without direction. */
#include "mp_fmt.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>
#include <netcdf.h>
#include <netcdf_mem.h>

typedef struct {
	char name[NC_MAX_NAME + 1];
	size_t len;
	double step, start, cos[3];
	int has_cos;
} mdim;

typedef struct {
	const char *path;
	int nd;
	mdim d[MP_MAXDIM];        /* file order */
	mp_type t;
	void *data;
	int has_vr;
	double vr[2];
	double *imin, *imax;      /* NULL: none (no scaling) */
	int nsc;                  /* scaling dimensions: the first nsc */
	size_t nscv;
} mvol;

static void
mvol_free(mvol *v)
{
	free(v->data);
	free(v->imin);
	free(v->imax);
}

static void
dim_defaults(mdim *d)
{
	d->step = 1;
	d->start = 0;
	d->has_cos = 0;
}

static int
spatial(const char *name)
{
	return strcmp(name, "xspace") == 0 ? 0 : strcmp(name, "yspace") == 0 ? 1 : strcmp(name, "zspace") == 0 ? 2 : -1;
}

static int
to_frame(mvol *v, mp_frame *f)
{
	int nd = v->nd, nsp = 0;
	size_t n = 1;
	double rot[3][3], starts[3] = { 0, 0, 0 };
	int spcol[MP_MAXDIM];

	mp_frame_init(f);
	if (nd < 1 || nd > MP_MAXDIM)
		return mp_seterr("%s: MINC: %d dimensions (1 to %d supported)", v->path, nd, MP_MAXDIM);
	f->dim = nd;
	f->type = v->t;
	for (int i = 0; i < nd; i++) {
		f->size[i] = v->d[nd - 1 - i].len;
		if (mp_mulsize(n, v->d[nd - 1 - i].len, &n) < 0)
			return mp_preerr("%s: MINC", v->path);
	}
	if (mp_frame_check(f) < 0)
		return mp_preerr("%s: MINC", v->path);
	/* the affine as nibabel builds it: spatial dimensions in file order */
	for (int i = 0; i < nd; i++) {
		spcol[i] = -1;
		int s = spatial(v->d[i].name);
		if (s < 0 || nsp >= 3)
			continue;
		for (int r = 0; r < 3; r++)
			rot[r][nsp] = v->d[i].has_cos ? v->d[i].cos[r] : (r == s);
		starts[nsp] = v->d[i].start;
		spcol[i] = nsp++;
	}
	f->space = 1;
	for (int i = 0; i < nd; i++) {
		int a = nd - 1 - i, c = spcol[i];
		if (c < 0) {
			snprintf(f->kind[a], sizeof f->kind[a], "%s", strcmp(v->d[i].name, "time") == 0 ? "time" : "list");
			continue;
		}
		f->has_dir[a] = 1;
		snprintf(f->kind[a], sizeof f->kind[a], "space");
		for (int r = 0; r < 3; r++)
			f->dir[a][r] = rot[r][c] * v->d[i].step * (r < 2 ? -1 : 1);
	}
	for (int r = 0; r < 3; r++) {
		double o = 0;
		for (int c = 0; c < nsp; c++)
			o += rot[r][c] * starts[c];
		f->origin[r] = o * (r < 2 ? -1 : 1);
	}
	/* scaling: a first pass finds whether every scaled value is a float32
	 * (and whether the scaling is the identity), the second writes the
	 * values straight into a buffer of that type (no float64 copy of the
	 * whole volume on the way: its peak is the data plus the output) */
	if (mp_type_is_int(v->t) && v->imin && v->imax) {
		double vmin = v->has_vr ? v->vr[0] : mp_type_min(v->t), vmax = v->has_vr ? v->vr[1] : mp_type_max(v->t);
		size_t per = 1, osz;
		int ident = 1, f32 = 1;
		void *out;
		if (v->has_vr && (vmin < mp_type_min(v->t) || vmax > mp_type_max(v->t)))
			return mp_seterr("%s: MINC: valid_range outside the data type's range", v->path);
		size_t cover;
		for (int i = v->nsc; i < nd; i++)
			per *= v->d[i].len;
		if (mp_mulsize(v->nscv, per, &cover) < 0 || cover != n)
			return mp_seterr("%s: MINC: image-max and image-min do not cover the image", v->path);
		for (int pass = 0; pass < 2; pass++) {
			if (pass == 1) {
				if (ident)
					break;
				osz = f32 ? sizeof(float) : sizeof(double);
				if (n > mp_max_bytes() / osz)
					return mp_seterr("%s: MINC: image too large once scaled to %s", v->path,
							 f32 ? "float32" : "float64");
				if (!(out = malloc(n * osz)))
					return mp_seterr("%s: MINC: out of memory", v->path);
			}
			for (size_t k = 0; k < v->nscv; k++) {
				double s = (v->imax[k] - v->imin[k]) / (vmax - vmin), in = v->imin[k] - vmin * s;
				if (s != 1 || in != 0)
					ident = 0;
				for (size_t j = k * per; j < (k + 1) * per && j < n; j++) {
					double x = mp_get(v->data, v->t, j);
					x = x < vmin ? vmin : x > vmax ? vmax : x;
					x = x * s + in;
					if (pass == 0) {
						if (f32 && (double)(float)x != x)
							f32 = 0;
					} else if (f32) {
						((float *)out)[j] = (float)x;
					} else {
						((double *)out)[j] = x;
					}
				}
			}
			if (pass == 1) {
				free(v->data);
				v->data = out;
				f->type = f32 ? MP_FLOAT32 : MP_FLOAT64;
				mp_set_kv(f, MP_K_MINC_SCALING, "image-min/image-max");
			}
		}
	}
	f->data = v->data;
	v->data = NULL;
	return 0;
}

/* whether the n voxels still fit MEDPIPE_MAX_BYTES once image-min/max scale
 * them (then to float32 at least: to_frame): asked before the data is read,
 * so that a small file declaring a huge scaled volume is refused before its
 * voxels are allocated and filled; -1 + mp_err when they do not */
static int
scaled_fits(const mvol *v, size_t n, const char *what)
{
	double vmin, vmax;

	if (!mp_type_is_int(v->t) || !v->imin || !v->imax)
		return 0;
	vmin = v->has_vr ? v->vr[0] : mp_type_min(v->t);
	vmax = v->has_vr ? v->vr[1] : mp_type_max(v->t);
	for (size_t k = 0; k < v->nscv; k++) {
		double sc = (v->imax[k] - v->imin[k]) / (vmax - vmin), in = v->imin[k] - vmin * sc;
		if ((sc != 1 || in != 0) && n > mp_max_bytes() / sizeof(float))
			return mp_seterr("%s: %s: image too large once scaled to float32", v->path, what);
	}
	return 0;
}

/* ---------------------------------------------------------------- MINC1 */
static mp_type
nc_mptype(nc_type t, int uns)
{
	switch (t) {
	case NC_BYTE: return uns ? MP_UINT8 : MP_INT8;
	case NC_UBYTE: return MP_UINT8;
	case NC_SHORT: return uns ? MP_UINT16 : MP_INT16;
	case NC_USHORT: return MP_UINT16;
	case NC_INT: return uns ? MP_UINT32 : MP_INT32;
	case NC_UINT: return MP_UINT32;
	case NC_FLOAT: return MP_FLOAT32;
	case NC_DOUBLE: return MP_FLOAT64;
	default: return MP_NONE;
	}
}

/* a numeric attribute of up to n values; returns the count, 0 when absent */
static size_t
nc_att(int nc, int var, const char *name, double *v, size_t n)
{
	size_t len;
	nc_type t;

	if (nc_inq_att(nc, var, name, &t, &len) != NC_NOERR || len == 0 || len > n || t == NC_CHAR || t == NC_STRING)
		return 0;
	return nc_get_att_double(nc, var, name, v) == NC_NOERR ? len : 0;
}

static int
read_scale_nc(int nc, mvol *v, const char *name, double **out)
{
	int id, nd, dims[NC_MAX_VAR_DIMS];
	size_t n = 1;

	if (nc_inq_varid(nc, name, &id) != NC_NOERR)
		return 0;
	if (nc_inq_varndims(nc, id, &nd) != NC_NOERR || nd > 2 || nc_inq_vardimid(nc, id, dims) != NC_NOERR)
		return mp_seterr("%s: MINC: bad %s variable", v->path, name);
	for (int i = 0; i < nd; i++) {
		char dn[NC_MAX_NAME + 1];
		size_t len;
		if (nc_inq_dim(nc, dims[i], dn, &len) != NC_NOERR || i >= v->nd || strcmp(dn, v->d[i].name) != 0)
			return mp_seterr("%s: MINC: %s and image dimensions do not match", v->path, name);
		n *= len;
	}
	v->nsc = nd;
	v->nscv = n;
	*out = mp_xmalloc((n ? n : 1) * sizeof **out);
	if (nc_get_var_double(nc, id, *out) != NC_NOERR)
		return mp_seterr("%s: MINC: cannot read %s", v->path, name);
	return 0;
}

/* the NetCDF classic header (CDF1, CDF2, CDF5) walked before libnetcdf sees
 * it: every count of dimensions, attributes, variables, values and name bytes
 * must fit in the bytes left. libnetcdf allocates a declared count first (a
 * 5 KB file declaring 2^27 dimensions cost it 1 GB of address space and 4 s);
 * -1 when a count cannot fit, 0 otherwise (also for what is not a classic
 * header: libnetcdf then says what it is) */
typedef struct {
	const unsigned char *b;
	size_t len, p, cs;      /* cs: bytes of a count (8 in CDF5) */
	int bad;
} ncw;

static uint64_t
ncw_u(ncw *w, size_t n)
{
	uint64_t v = 0;

	if (w->bad || w->len - w->p < n) {
		w->bad = 1;
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		v = v << 8 | w->b[w->p + i];
	w->p += n;
	return v;
}

static void
ncw_skip(ncw *w, uint64_t n)
{
	uint64_t pad = (4 - n % 4) % 4;

	if (w->bad || n > w->len - w->p || pad > w->len - w->p - n)
		w->bad = 1;
	else
		w->p += (size_t)(n + pad);
}

/* a count of elements of at least min bytes each */
static uint64_t
ncw_count(ncw *w, size_t min)
{
	uint64_t n = ncw_u(w, w->cs);

	if (!w->bad && n > (w->len - w->p) / min)
		w->bad = 1;
	return w->bad ? 0 : n;
}

static void
ncw_atts(ncw *w)
{
	static const unsigned char tsize[12] = { 0, 1, 1, 2, 4, 4, 8, 1, 2, 4, 8, 8 };
	uint32_t tag = (uint32_t)ncw_u(w, 4);
	uint64_t n = ncw_count(w, 2 * w->cs + 4);

	if (tag != 0 && tag != 0x0C)
		w->bad = 1;
	for (uint64_t i = 0; i < n && !w->bad; i++) {
		ncw_skip(w, ncw_count(w, 1));
		uint32_t t = (uint32_t)ncw_u(w, 4);
		if (t < 1 || t > 11) {
			w->bad = 1;
			break;
		}
		ncw_skip(w, ncw_count(w, tsize[t]) * tsize[t]);
	}
}

static int
ncw_check(const unsigned char *b, size_t len)
{
	ncw w = { b, len, 4, 4, 0 };

	if (len < 4 || memcmp(b, "CDF", 3) != 0 || (b[3] != 1 && b[3] != 2 && b[3] != 5))
		return 0;
	if (b[3] == 5)
		w.cs = 8;
	ncw_u(&w, w.cs);                          /* numrecs */
	uint32_t tag = (uint32_t)ncw_u(&w, 4);    /* dimensions */
	uint64_t n = ncw_count(&w, 2 * w.cs);
	if (tag != 0 && tag != 0x0A)
		w.bad = 1;
	for (uint64_t i = 0; i < n && !w.bad; i++) {
		ncw_skip(&w, ncw_count(&w, 1));
		ncw_u(&w, w.cs);
	}
	ncw_atts(&w);                             /* global attributes */
	tag = (uint32_t)ncw_u(&w, 4);             /* variables */
	n = ncw_count(&w, 3 * w.cs + 12);
	if (tag != 0 && tag != 0x0B)
		w.bad = 1;
	for (uint64_t i = 0; i < n && !w.bad; i++) {
		ncw_skip(&w, ncw_count(&w, 1));
		uint64_t nd = ncw_count(&w, w.cs);
		ncw_skip(&w, nd * w.cs);
		ncw_atts(&w);
		ncw_u(&w, 4);                     /* type */
		ncw_u(&w, w.cs);                  /* vsize */
		ncw_u(&w, b[3] == 1 ? 4 : 8);     /* begin */
	}
	return w.bad ? -1 : 0;
}

static int
minc1_read(const char *path, void *buf, size_t len, mvol *v)
{
	int nc, id, dims[NC_MAX_VAR_DIMS], rc = 0;
	nc_type t;
	char sign[32] = "";
	size_t n = 1;

	if (ncw_check(buf, len) < 0 || nc_open_mem(path, NC_NOWRITE, len, buf, &nc) != NC_NOERR)
		return mp_seterr("%s: MINC1: not a readable NetCDF file", path);
	if (nc_inq_varid(nc, "image", &id) != NC_NOERR) {
		nc_close(nc);
		return mp_seterr("%s: MINC1: no image variable", path);
	}
	if (nc_inq_var(nc, id, NULL, &t, &v->nd, NULL, NULL) != NC_NOERR || v->nd < 1 || v->nd > MP_MAXDIM ||
	    nc_inq_vardimid(nc, id, dims) != NC_NOERR) {
		nc_close(nc);
		return mp_seterr("%s: MINC1: image variable of %d dimensions (1 to %d supported)", path, v->nd, MP_MAXDIM);
	}
	{
		size_t al;
		nc_type at;
		if (nc_inq_att(nc, id, "signtype", &at, &al) == NC_NOERR && at == NC_CHAR && al < sizeof sign)
			nc_get_att_text(nc, id, "signtype", sign);
	}
	v->t = nc_mptype(t, sign[0] ? strncmp(sign, "unsigned", 8) == 0 : t == NC_BYTE);
	if (v->t == MP_NONE) {
		nc_close(nc);
		return mp_seterr("%s: MINC1: image of NetCDF type %d not supported", path, (int)t);
	}
	for (int i = 0; i < v->nd; i++) {
		mdim *d = &v->d[i];
		int dv;
		double x[3];
		dim_defaults(d);
		if (nc_inq_dim(nc, dims[i], d->name, &d->len) != NC_NOERR || mp_mulsize(n, d->len, &n) < 0) {
			nc_close(nc);
			return mp_seterr("%s: MINC1: bad dimension %d", path, i);
		}
		if (nc_inq_varid(nc, d->name, &dv) == NC_NOERR) {
			if (nc_att(nc, dv, "step", x, 1))
				d->step = x[0];
			if (nc_att(nc, dv, "start", x, 1))
				d->start = x[0];
			if (nc_att(nc, dv, "direction_cosines", x, 3) == 3)
				memcpy(d->cos, x, sizeof d->cos), d->has_cos = 1;
		}
	}
	if (nc_att(nc, id, "valid_range", v->vr, 2) == 2)
		v->has_vr = 1;
	else if (nc_att(nc, id, "valid_min", v->vr, 1) && nc_att(nc, id, "valid_max", v->vr + 1, 1))
		v->has_vr = 1;
	if (v->has_vr && v->vr[0] > v->vr[1]) {
		double s = v->vr[0];
		v->vr[0] = v->vr[1];
		v->vr[1] = s;
	}
	if (n > mp_max_bytes() / mp_type_size(v->t)) {
		nc_close(nc);
		return mp_seterr("%s: MINC1: image too large", path);
	}
	if (mp_type_is_int(v->t)) {
		rc = read_scale_nc(nc, v, "image-max", &v->imax);
		int nsc = v->nsc;
		if (rc == 0)
			rc = read_scale_nc(nc, v, "image-min", &v->imin);
		if (rc == 0 && v->imax && v->imin && nsc != v->nsc)
			rc = mp_seterr("%s: MINC1: image-max and image-min do not have the same dimensions", path);
		if (rc == 0)
			rc = scaled_fits(v, n, "MINC1");
	}
	if (rc == 0 && !(v->data = malloc((n ? n : 1) * mp_type_size(v->t))))
		rc = mp_seterr("%s: MINC1: out of memory", path);
	/* raw values in host order; unsigned types read through their bits */
	if (rc == 0 && nc_get_var(nc, id, v->data) != NC_NOERR)
		rc = mp_seterr("%s: MINC1: cannot read the image data (truncated or damaged)", path);
	nc_close(nc);
	return rc;
}

/* ---------------------------------------------------------------- MINC2 */
static int
h5_attr_doubles(hid_t obj, const char *name, double *v, size_t n)
{
	hid_t a, sp;
	hssize_t np;
	int r = 0;

	if (H5Aexists(obj, name) <= 0)
		return 0;
	if ((a = H5Aopen(obj, name, H5P_DEFAULT)) < 0)
		return 0;
	sp = H5Aget_space(a);
	np = H5Sget_simple_extent_npoints(sp);
	H5Sclose(sp);
	{
		hid_t t = H5Aget_type(a);
		H5T_class_t c = H5Tget_class(t);
		H5Tclose(t);
		if (c != H5T_INTEGER && c != H5T_FLOAT)
			np = 0;
	}
	if (np > 0 && (size_t)np <= n && H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0)
		r = (int)np;
	H5Aclose(a);
	return r;
}

static int
h5_attr_str(hid_t obj, const char *name, char *buf, size_t n)
{
	hid_t a, t, mt;
	int ok = 0;

	buf[0] = 0;
	if (H5Aexists(obj, name) <= 0 || (a = H5Aopen(obj, name, H5P_DEFAULT)) < 0)
		return 0;
	{
		/* one string: H5Aread writes every element of the attribute */
		hid_t sp = H5Aget_space(a);
		hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
		if (sp >= 0)
			H5Sclose(sp);
		if (np != 1) {
			H5Aclose(a);
			return 0;
		}
	}
	t = H5Aget_type(a);
	if (H5Tget_class(t) == H5T_STRING) {
		if (H5Tis_variable_str(t) > 0) {
			char *s = NULL;
			mt = H5Tcopy(H5T_C_S1);
			H5Tset_size(mt, H5T_VARIABLE);
			if (H5Aread(a, mt, &s) >= 0 && s) {
				snprintf(buf, n, "%s", s);
				ok = 1;
				H5free_memory(s);
			}
			H5Tclose(mt);
		} else {
			size_t sz = H5Tget_size(t);
			if (sz > 0 && sz < n) {
				mt = H5Tcopy(H5T_C_S1);
				H5Tset_size(mt, sz + 1);
				if (H5Aread(a, mt, buf) >= 0) {
					buf[sz] = 0;
					ok = 1;
				}
				H5Tclose(mt);
			}
		}
	}
	H5Tclose(t);
	H5Aclose(a);
	return ok;
}

static int
read_scale_h5(hid_t img0, mvol *v, const char *name, double **out, int *nsc)
{
	hid_t ds, sp;
	int nd;
	hssize_t np;

	if (H5Lexists(img0, name, H5P_DEFAULT) <= 0)
		return 0;
	if ((ds = H5Dopen2(img0, name, H5P_DEFAULT)) < 0)
		return mp_seterr("%s: MINC2: cannot open %s", v->path, name);
	sp = H5Dget_space(ds);
	nd = H5Sget_simple_extent_ndims(sp);
	np = H5Sget_simple_extent_npoints(sp);
	H5Sclose(sp);
	if (nd < 0 || nd > 2 || nd > v->nd || np < 1) {
		H5Dclose(ds);
		return mp_seterr("%s: MINC2: bad %s", v->path, name);
	}
	{
		size_t expect = 1;
		for (int i = 0; i < nd; i++)
			expect *= v->d[i].len;
		if ((size_t)np != expect) {
			H5Dclose(ds);
			return mp_seterr("%s: MINC2: %s and image dimensions do not match", v->path, name);
		}
	}
	*nsc = nd;
	v->nscv = (size_t)np;
	*out = mp_xmalloc((size_t)np * sizeof **out);
	if (H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0) {
		H5Dclose(ds);
		return mp_seterr("%s: MINC2: cannot read %s", v->path, name);
	}
	H5Dclose(ds);
	return 0;
}

static int
minc2_read(const char *path, void *buf, size_t len, mvol *v)
{
	hid_t fapl, file = -1, img0 = -1, ds = -1, sp = -1, t = -1, mt;
	hsize_t dims[32];
	char order[512], *tok, *save;
	int rc = 0, nd;
	size_t n = 1;

	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	fapl = H5Pcreate(H5P_FILE_ACCESS);
	H5Pset_fapl_core(fapl, 1 << 20, 0);
	/* the core driver refuses the name of an existing file: a name of its own */
	char iname[64];
	snprintf(iname, sizeof iname, "/nonexistent/medpipe-minc-image-%ld", (long)getpid());
	if (H5Pset_file_image(fapl, buf, len) < 0 || (file = H5Fopen(iname, H5F_ACC_RDONLY, fapl)) < 0) {
		H5Pclose(fapl);
		return mp_seterr("%s: MINC2: not a readable HDF5 file", path);
	}
	H5Pclose(fapl);
	if (H5Lexists(file, "/minc-2.0", H5P_DEFAULT) <= 0 || H5Lexists(file, "/minc-2.0/image", H5P_DEFAULT) <= 0 ||
	    H5Lexists(file, "/minc-2.0/image/0", H5P_DEFAULT) <= 0 ||
	    (img0 = H5Gopen2(file, "/minc-2.0/image/0", H5P_DEFAULT)) < 0 || H5Lexists(img0, "image", H5P_DEFAULT) <= 0 ||
	    (ds = H5Dopen2(img0, "image", H5P_DEFAULT)) < 0) {
		rc = mp_seterr("%s: MINC2: no /minc-2.0/image/0/image", path);
		goto out;
	}
	sp = H5Dget_space(ds);
	nd = H5Sget_simple_extent_ndims(sp);
	if (nd < 1 || nd > MP_MAXDIM || H5Sget_simple_extent_dims(sp, dims, NULL) != nd) {
		rc = mp_seterr("%s: MINC2: image of %d dimensions (1 to %d supported)", path, nd, MP_MAXDIM);
		goto out;
	}
	v->nd = nd;
	if (!h5_attr_str(ds, "dimorder", order, sizeof order)) {
		rc = mp_seterr("%s: MINC2: image without dimorder", path);
		goto out;
	}
	tok = strtok_r(order, ",", &save);
	for (int i = 0; i < nd; i++, tok = strtok_r(NULL, ",", &save)) {
		mdim *d = &v->d[i];
		char dp[600];
		double x[3];
		hid_t dd;
		dim_defaults(d);
		if (!tok || strlen(tok) > NC_MAX_NAME || strchr(tok, '/')) {
			rc = mp_seterr("%s: MINC2: dimorder names fewer dimensions than the image has", path);
			goto out;
		}
		snprintf(d->name, sizeof d->name, "%s", tok);
		d->len = (size_t)dims[i];
		if (mp_mulsize(n, d->len, &n) < 0) {
			rc = mp_preerr("%s: MINC2", path);
			goto out;
		}
		snprintf(dp, sizeof dp, "/minc-2.0/dimensions/%s", tok);
		if (H5Lexists(file, "/minc-2.0/dimensions", H5P_DEFAULT) > 0 && H5Lexists(file, dp, H5P_DEFAULT) > 0 &&
		    (dd = H5Oopen(file, dp, H5P_DEFAULT)) >= 0) {
			if (h5_attr_doubles(dd, "step", x, 1))
				d->step = x[0];
			if (h5_attr_doubles(dd, "start", x, 1))
				d->start = x[0];
			if (h5_attr_doubles(dd, "direction_cosines", x, 3) == 3)
				memcpy(d->cos, x, sizeof d->cos), d->has_cos = 1;
			H5Oclose(dd);
		}
	}
	t = H5Dget_type(ds);
	{
		H5T_class_t c = H5Tget_class(t);
		size_t sz = H5Tget_size(t);
		int sg = c == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_2;
		if (c == H5T_FLOAT)
			v->t = sz == 4 ? MP_FLOAT32 : sz == 8 ? MP_FLOAT64 : MP_NONE;
		else if (c == H5T_INTEGER)
			v->t = sz == 1 ? (sg ? MP_INT8 : MP_UINT8) : sz == 2 ? (sg ? MP_INT16 : MP_UINT16) :
			       sz == 4 ? (sg ? MP_INT32 : MP_UINT32) : MP_NONE;
		else
			v->t = MP_NONE;
	}
	if (v->t == MP_NONE) {
		rc = mp_seterr("%s: MINC2: image data type not supported", path);
		goto out;
	}
	if (n > mp_max_bytes() / mp_type_size(v->t)) {
		rc = mp_seterr("%s: MINC2: image too large", path);
		goto out;
	}
	switch (v->t) {
	case MP_INT8: mt = H5T_NATIVE_SCHAR; break;
	case MP_UINT8: mt = H5T_NATIVE_UCHAR; break;
	case MP_INT16: mt = H5T_NATIVE_SHORT; break;
	case MP_UINT16: mt = H5T_NATIVE_USHORT; break;
	case MP_INT32: mt = H5T_NATIVE_INT; break;
	case MP_UINT32: mt = H5T_NATIVE_UINT; break;
	case MP_FLOAT32: mt = H5T_NATIVE_FLOAT; break;
	default: mt = H5T_NATIVE_DOUBLE; break;
	}
	if (h5_attr_doubles(ds, "valid_range", v->vr, 2) == 2) {
		v->has_vr = 1;
		if (v->vr[0] > v->vr[1]) {
			double s = v->vr[0];
			v->vr[0] = v->vr[1];
			v->vr[1] = s;
		}
	}
	if (mp_type_is_int(v->t)) {
		int a = 0, b = 0;
		rc = read_scale_h5(img0, v, "image-max", &v->imax, &a);
		if (rc == 0)
			rc = read_scale_h5(img0, v, "image-min", &v->imin, &b);
		if (rc == 0 && v->imax && v->imin && a != b)
			rc = mp_seterr("%s: MINC2: image-max and image-min do not have the same dimensions", path);
		v->nsc = a;
		if (rc == 0)
			rc = scaled_fits(v, n, "MINC2");
		if (rc < 0)
			goto out;
	}
	v->data = malloc((n ? n : 1) * mp_type_size(v->t));
	if (!v->data) {
		rc = mp_seterr("%s: MINC2: out of memory", path);
		goto out;
	}
	if (H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v->data) < 0) {
		rc = mp_seterr("%s: MINC2: cannot read the image data (truncated or damaged)", path);
		goto out;
	}
out:
	if (t >= 0)
		H5Tclose(t);
	if (sp >= 0)
		H5Sclose(sp);
	if (ds >= 0)
		H5Dclose(ds);
	if (img0 >= 0)
		H5Gclose(img0);
	H5Fclose(file);
	return rc;
}

/* libhdf5 (1.10) and libnetcdf can crash on damaged files (out-of-bounds
 * reads in their metadata parsers): the file is first read in a child
 * process, and a child that dies makes a one-line error instead of a crash */
static int
guarded(const char *path, const char *lib, int (*rd)(const char *, void *, size_t, mvol *), void *buf, size_t len,
	mvol *v)
{
	pid_t pid;
	int st;

	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		mvol c = *v;
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, 2);   /* the child's only output is its exit status */
		signal(SIGPIPE, SIG_DFL);
		_exit(rd(path, buf, len, &c) < 0 ? 3 : 0);
	}
	if (pid > 0) {
		int w;
		while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
			;
		/* 0: read, 3: refused with a message; anything else: the library died
		 * (a signal, or a sanitizer's exit status) */
		if (w == pid && WIFSIGNALED(st))
			return mp_seterr("%s: MINC: damaged file: the %s library failed reading it (signal %d)", path, lib,
					 WTERMSIG(st));
		if (w == pid && WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 3)
			return mp_seterr("%s: MINC: damaged file: the %s library failed reading it", path, lib);
	}
	return rd(path, buf, len, v);
}

int
mp_minc_read(const char *path, mp_frame ***frames, size_t *n)
{
	mp_fsrc *s;
	unsigned char *buf = NULL, magic[4];
	size_t len = 0, cap = 0;
	long long r;
	mvol v;
	mp_frame *f;
	int rc;

	*frames = NULL;
	*n = 0;
	if (!(s = mp_fsrc_open(path)))
		return -1;
	if (mp_fsrc_read(s, magic, 2) == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
		if (mp_fsrc_seek(s, 0) < 0 || mp_fsrc_inflate(s) < 0) {
			mp_fsrc_close(s);
			return -1;
		}
	} else if (mp_fsrc_seek(s, 0) < 0) {
		mp_fsrc_close(s);
		return -1;
	}
	for (;;) {
		if (len == cap) {
			cap = cap ? 2 * cap : 1 << 20;
			if (cap > mp_max_bytes()) {
				free(buf);
				mp_fsrc_close(s);
				return mp_seterr("%s: MINC: file too large", path);
			}
			buf = mp_xrealloc(buf, cap);
		}
		r = mp_fsrc_read(s, buf + len, cap - len);
		if (r < 0) {
			free(buf);
			mp_fsrc_close(s);
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	mp_fsrc_close(s);
	memset(&v, 0, sizeof v);
	v.path = path;
	if (len >= 4 && memcmp(buf, "CDF", 3) == 0)
		rc = guarded(path, "NetCDF", minc1_read, buf, len, &v);
	else if (len >= 8 && memcmp(buf, "\x89HDF\r\n\x1a\n", 8) == 0)
		rc = guarded(path, "HDF5", minc2_read, buf, len, &v);
	else
		rc = mp_seterr("%s: MINC: neither NetCDF (MINC1) nor HDF5 (MINC2)", path);
	f = mp_xmalloc(sizeof *f);
	mp_frame_init(f);
	if (rc == 0)
		rc = to_frame(&v, f);
	free(buf);
	mvol_free(&v);
	if (rc < 0) {
		mp_frame_free(f);
		free(f);
		return -1;
	}
	*frames = mp_xmalloc(sizeof **frames);
	(*frames)[0] = f;
	*n = 1;
	return 0;
}
