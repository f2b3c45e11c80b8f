/* dicom.c - DICOM files and folders to one volume per series: scanning,
 * header reading in threads, grouping, slice ordering, geometry (tilt,
 * uneven spacing), pixel decoding and value conversion.  DCMTK is reached
 * through dicom_shim.h; JPEG 2000 through dicom_j2k.c. */
#include "mp.h"
#include "mp_dicom.h"
#include "dicom_shim.h"

#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PI 3.14159265358979323846

/* ------------------------------------------------------------ records */
enum { FS_OK = 0, FS_NOTDICOM, FS_FAILED, FS_SKIPPED };

typedef struct {
	int encaps;             /* encapsulated (compressed) pixel data */
	char suid[72], series_no[16], desc[72], modality[20], manufacturer[72], model[72],
	     kernel[72], bodypart[20], wc[40], ww[40], xfer[68], imagetype[72], sop[72];
	/* identifying: only written with --keep-phi */
	char pname[80], pid[72], birth[20], sdate[20], accession[24], institution[72], stuid[72];
} dmeta;

typedef struct {
	char *path;
	int status;
	char *msg;              /* error or note */
	dmeta *meta;
} dfile;

typedef struct {
	int file, frame, tile;  /* tile: index in a Siemens mosaic, -1 none */
	int nframes, mosaic;
	int rows, cols;         /* of the slice */
	int frows, fcols;       /* of the stored frame (mosaic size) */
	int spp, balloc, bstored, hibit, pixrep, planar;
	char photo[20];
	int has_geo;
	double ipp[3], iop[6], ps[2];
	double slope, inter;
	int has_pad, has_padlim;
	double pad, padlim;
	int echo, acq, inst;
	double sbs, thick;
	int localizer;
	double d;               /* position along the group normal */
} dslice;

typedef struct {
	int *sl, n;             /* slices, in order */
	int splitpart;          /* 0, or 1.. when a series was split */
	int vols, volidx;       /* volume volidx of vols (repeated positions: 4D), vols 0: 3D */
	char *err;              /* set: loading fails with this */
	/* output geometry */
	int nx, ny, nz;
	double dir[3][3], origin[3];
	double tilt;            /* degrees, 0 none */
	int uneven;             /* 1 uneven spacing found */
	double smin, smax;      /* input steps along the normal */
	int resample_z;         /* output slices at d0 + k*step */
	double d0, step;
	int ortho;              /* tilt removed by in-plane shifts */
	double shift[2];        /* in-plane shift (voxels x,y) per slice for ortho */
	int ox0, oy0;           /* ortho: output grid offset (voxels) */
	int nx_in, ny_in;
	char name[160];
} dseries;

struct mp_dicom_scan {
	mp_dicom_opts o;
	dfile *files;
	size_t nfiles, capfiles;
	dslice *sl;
	size_t nsl, capsl;
	dseries *ser;
	int nser, capser;
	size_t nskipped;
	char **errs;
	size_t nerrs;
	pthread_mutex_t mu;
};

static int nthreads(const mp_dicom_opts *o)
{
	if (o->threads > 0)
		return o->threads;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > 16)
		n = 16;
	return (int)n;
}

void
mp_dicom_opts_init(mp_dicom_opts *o)
{
	memset(o, 0, sizeof *o);
}

/* ------------------------------------------------------------ file walk */
static void
add_file(mp_dicom_scan *s, const char *path)
{
	if (s->nfiles == s->capfiles) {
		s->capfiles = s->capfiles ? 2 * s->capfiles : 256;
		s->files = mp_xrealloc(s->files, s->capfiles * sizeof *s->files);
	}
	dfile *f = &s->files[s->nfiles++];
	memset(f, 0, sizeof *f);
	f->path = mp_xstrdup(path);
}

static void
add_err(mp_dicom_scan *s, const char *msg)
{
	s->errs = mp_xrealloc(s->errs, (s->nerrs + 1) * sizeof *s->errs);
	s->errs[s->nerrs++] = mp_xstrdup(msg);
}

static int
cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
walk(mp_dicom_scan *s, const char *path, int depth)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		char b[600];
		snprintf(b, sizeof b, "%s: %s", path, strerror(errno));
		add_err(s, b);
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		if (S_ISREG(st.st_mode))
			add_file(s, path);
		return;
	}
	if (depth > 64)
		return;
	DIR *dp = opendir(path);
	if (!dp) {
		char b[600];
		snprintf(b, sizeof b, "%s: %s", path, strerror(errno));
		add_err(s, b);
		return;
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(dp))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		names = mp_xrealloc(names, (n + 1) * sizeof *names);
		size_t l = strlen(path) + strlen(e->d_name) + 2;
		names[n] = mp_xmalloc(l);
		snprintf(names[n], l, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/", e->d_name);
		n++;
	}
	closedir(dp);
	if (n)
		qsort(names, n, sizeof *names, cmpstr);
	for (size_t i = 0; i < n; i++) {
		struct stat ls;
		/* do not follow links to folders (loops) */
		if (lstat(names[i], &ls) == 0 && S_ISLNK(ls.st_mode) && stat(names[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			free(names[i]);
			continue;
		}
		walk(s, names[i], depth + 1);
		free(names[i]);
	}
	free(names);
}

/* a quick look at the first bytes: Part 10 preamble, or a plausible first
 * element of a bare dataset (group 0002/0008 in either byte order) */
static int
looks_dicom(const char *path)
{
	unsigned char b[132];
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return -1;
	size_t n = fread(b, 1, sizeof b, fp);
	fclose(fp);
	if (n >= 132 && !memcmp(b + 128, "DICM", 4))
		return 1;
	if (n < 8)
		return 0;
	unsigned gl = b[0] | b[1] << 8, gb = b[0] << 8 | b[1];
	unsigned el = b[2] | b[3] << 8, eb = b[2] << 8 | b[3];
	if ((gl == 0x0002 || gl == 0x0008) && el < 0x2000)
		return 1;
	if ((gb == 0x0002 || gb == 0x0008) && eb < 0x2000)
		return 1;
	return 0;
}

/* ------------------------------------------------------------ header reading */
static void
gs(mp_dcm *d, const char *tag, char *buf, size_t n)
{
	if (mp_dcm_str(d, tag, buf, n) < 0)
		buf[0] = 0;
	/* keep one line, printable */
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 32)
			*p = ' ';
}

static int
gi(mp_dcm *d, const char *tag, int def)
{
	double v;
	return mp_dcm_nums(d, tag, &v, 1) == 1 && fabs(v) < 2e9 ? (int)lround(v) : def;
}

/* first path of a list that has n numbers */
static int
gnums(mp_dcm *d, const char *const *paths, int np, double *v, int n)
{
	for (int i = 0; i < np; i++)
		if (paths[i] && mp_dcm_nums(d, paths[i], v, n) == n)
			return 1;
	return 0;
}

/* Siemens CSA header (SV10): the numbers of an entry, by name */
static int
csa_nums(const unsigned char *p, size_t n, const char *name, double *v, int max)
{
	if (n < 16 || memcmp(p, "SV10", 4))
		return 0;
	uint32_t ntags;
	memcpy(&ntags, p + 8, 4);
	size_t pos = 16;
	if (ntags > 1000)
		return 0;
	for (uint32_t t = 0; t < ntags; t++) {
		if (pos + 84 > n)
			return 0;
		char tname[65];
		memcpy(tname, p + pos, 64);
		tname[64] = 0;
		int32_t nitems;
		memcpy(&nitems, p + pos + 76, 4);
		pos += 84;
		if (nitems < 0 || nitems > 10000)
			return 0;
		int match = !strcmp(tname, name), k = 0;
		for (int32_t i = 0; i < nitems; i++) {
			if (pos + 16 > n)
				return 0;
			int32_t len;
			memcpy(&len, p + pos + 4, 4);
			pos += 16;
			if (len < 0 || (size_t)len > n - pos)
				return 0;
			if (match && k < max && len > 0) {
				char b[64];
				size_t l = (size_t)len < sizeof b - 1 ? (size_t)len : sizeof b - 1;
				memcpy(b, p + pos, l);
				b[l] = 0;
				char *end;
				double x = strtod(b, &end);
				if (end != b)
					v[k++] = x;
			}
			pos += ((size_t)len + 3) & ~(size_t)3;
		}
		if (match)
			return k;
	}
	return 0;
}

typedef struct {
	mp_dicom_scan *s;
	atomic_size_t next;
} scanjob;

static void
push_slice(mp_dicom_scan *s, const dslice *x)
{
	if (s->nsl == s->capsl) {
		s->capsl = s->capsl ? 2 * s->capsl : 256;
		s->sl = mp_xrealloc(s->sl, s->capsl * sizeof *s->sl);
	}
	s->sl[s->nsl++] = *x;
}

static void
file_fail(dfile *f, int status, const char *fmt, const char *why)
{
	char b[800];
	snprintf(b, sizeof b, fmt, f->path, why);
	f->status = status;
	f->msg = mp_xstrdup(b);
}

/* read one file's headers; slices are appended under the lock */
static void
read_file(mp_dicom_scan *s, size_t fi)
{
	dfile *f = &s->files[fi];
	int lk = looks_dicom(f->path);
	if (lk < 0) {
		file_fail(f, FS_FAILED, "%s: %s", strerror(errno));
		return;
	}
	if (lk == 0) {
		f->status = FS_NOTDICOM;
		return;
	}
	mp_dcm *d = mp_dcm_load(f->path, 1);
	if (!d) {
		file_fail(f, FS_FAILED, "%s: %s", mp_err());
		return;
	}
	dmeta *m = mp_xcalloc(1, sizeof *m);
	f->meta = m;
	gs(d, "0020,000e", m->suid, sizeof m->suid);
	gs(d, "0020,0011", m->series_no, sizeof m->series_no);
	gs(d, "0008,103e", m->desc, sizeof m->desc);
	gs(d, "0008,0060", m->modality, sizeof m->modality);
	gs(d, "0008,0070", m->manufacturer, sizeof m->manufacturer);
	gs(d, "0008,1090", m->model, sizeof m->model);
	gs(d, "0018,1210", m->kernel, sizeof m->kernel);
	gs(d, "0018,0015", m->bodypart, sizeof m->bodypart);
	gs(d, "0028,1050", m->wc, sizeof m->wc);
	gs(d, "0028,1051", m->ww, sizeof m->ww);
	gs(d, "0008,0008", m->imagetype, sizeof m->imagetype);
	gs(d, "0008,0016", m->sop, sizeof m->sop);
	if (!m->sop[0])
		gs(d, "0002,0002", m->sop, sizeof m->sop);
	snprintf(m->xfer, sizeof m->xfer, "%s", mp_dcm_xfer(d));
	m->encaps = strncmp(m->xfer, "1.2.840.10008.1.2.4", 19) == 0 || !strcmp(m->xfer, "1.2.840.10008.1.2.5");
	gs(d, "0010,0010", m->pname, sizeof m->pname);
	gs(d, "0010,0020", m->pid, sizeof m->pid);
	gs(d, "0010,0030", m->birth, sizeof m->birth);
	gs(d, "0008,0020", m->sdate, sizeof m->sdate);
	gs(d, "0008,0050", m->accession, sizeof m->accession);
	gs(d, "0008,0080", m->institution, sizeof m->institution);
	gs(d, "0020,000d", m->stuid, sizeof m->stuid);

	dslice x;
	memset(&x, 0, sizeof x);
	x.file = (int)fi;
	x.tile = -1;
	x.rows = gi(d, "0028,0010", 0);
	x.cols = gi(d, "0028,0011", 0);
	if (x.rows <= 0 || x.cols <= 0 || !strcmp(m->modality, "SEG") || !strcmp(m->modality, "SR") ||
	    !strcmp(m->modality, "PR") || !strcmp(m->modality, "RTSTRUCT") || !strcmp(m->modality, "RTPLAN") ||
	    !strcmp(m->modality, "KO") || !strcmp(m->modality, "ECG")) {
		char why[100];
		if (!strcmp(m->sop, "1.2.840.10008.1.3.10"))
			snprintf(why, sizeof why, "not an image (DICOMDIR; the files it lists are read when found)");
		else
			snprintf(why, sizeof why, "not an image (modality %s)", m->modality[0] ? m->modality : "unknown");
		file_fail(f, FS_SKIPPED, "%s: skipped: %s", why);
		mp_dcm_free(d);
		return;
	}
	x.frows = x.rows;
	x.fcols = x.cols;
	x.spp = gi(d, "0028,0002", 1);
	x.balloc = gi(d, "0028,0100", 16);
	x.bstored = gi(d, "0028,0101", x.balloc);
	x.hibit = gi(d, "0028,0102", x.bstored - 1);
	x.pixrep = gi(d, "0028,0103", 0);
	x.planar = gi(d, "0028,0006", 0);
	gs(d, "0028,0004", x.photo, sizeof x.photo);
	if (!x.photo[0])
		snprintf(x.photo, sizeof x.photo, "%s", x.spp == 3 ? "RGB" : "MONOCHROME2");
	x.nframes = gi(d, "0028,0008", 1);
	if (x.nframes < 1)
		x.nframes = 1;
	x.echo = gi(d, "0018,0086", 0);
	x.acq = gi(d, "0020,0012", 0);
	x.inst = gi(d, "0020,0013", 0);
	x.localizer = strstr(m->imagetype, "LOCALIZER") != NULL;
	double v[6];
	x.sbs = mp_dcm_nums(d, "0018,0088", v, 1) == 1 ? v[0] : 0;
	x.thick = mp_dcm_nums(d, "0018,0050", v, 1) == 1 ? v[0] : 0;
	x.has_pad = mp_dcm_nums(d, "0028,0120", v, 1) == 1;
	x.pad = x.has_pad ? v[0] : 0;
	x.has_padlim = mp_dcm_nums(d, "0028,0121", v, 1) == 1;
	x.padlim = x.has_padlim ? v[0] : 0;
	if (x.has_pad && x.pixrep && x.balloc == 16 && x.pad > 32767)   /* stored as US */
		x.pad -= 65536;
	if (x.has_padlim && x.pixrep && x.balloc == 16 && x.padlim > 32767)
		x.padlim -= 65536;

	if (x.balloc != 8 && x.balloc != 16 && x.balloc != 32) {
		char why[100];
		snprintf(why, sizeof why, "BitsAllocated %d not supported", x.balloc);
		file_fail(f, FS_FAILED, "%s: %s", why);
		mp_dcm_free(d);
		return;
	}
	if (x.bstored < 1 || x.bstored > x.balloc || x.hibit < x.bstored - 1 || x.hibit >= x.balloc)
		x.bstored = x.balloc, x.hibit = x.balloc - 1;
	if (x.spp != 1 && x.spp != 3) {
		char why[100];
		snprintf(why, sizeof why, "SamplesPerPixel %d not supported", x.spp);
		file_fail(f, FS_FAILED, "%s: %s", why);
		mp_dcm_free(d);
		return;
	}
	/* Rows and Columns are US; every product of sizes later on must fit */
	{
		size_t nb = 0;
		if (x.rows > 65535 || x.cols > 65535 ||
		    mp_mulsize((size_t)x.rows * (size_t)x.cols * (size_t)x.spp * (size_t)(x.balloc / 8),
			       (size_t)x.nframes, &nb) < 0 || nb > mp_max_bytes()) {
			char why[100];
			snprintf(why, sizeof why, "%dx%d pixels x %d frames: too large", x.cols, x.rows, x.nframes);
			file_fail(f, FS_FAILED, "%s: %s", why);
			mp_dcm_free(d);
			return;
		}
	}

	int nper = mp_dcm_items(d, "5200,9230");
	int enhanced = nper > 0 && nper == x.nframes;
	double base_ipp[3], base_iop[6], base_ps[2], base_resc[2];
	static const char *const p_ipp[] = { "5200,9229[0]/0020,9113[0]/0020,0032", "0020,0032" };
	static const char *const p_iop[] = { "5200,9229[0]/0020,9116[0]/0020,0037", "0020,0037" };
	static const char *const p_ps[] = { "5200,9229[0]/0028,9110[0]/0028,0030", "0028,0030", "0018,1164" };
	int hipp = gnums(d, p_ipp, 2, base_ipp, 3);
	int hiop = gnums(d, p_iop, 2, base_iop, 6);
	if (!gnums(d, p_ps, 3, base_ps, 2))
		base_ps[0] = base_ps[1] = 1;
	if (!(base_ps[0] > 0 && base_ps[1] > 0))
		base_ps[0] = base_ps[1] = 1;
	if (enhanced && x.sbs == 0)
		x.sbs = mp_dcm_nums(d, "5200,9229[0]/0028,9110[0]/0018,0088", v, 1) == 1 ? v[0] : 0;
	if (enhanced && x.thick == 0)
		x.thick = mp_dcm_nums(d, "5200,9229[0]/0028,9110[0]/0018,0050", v, 1) == 1 ? v[0] : 0;
	base_resc[0] = mp_dcm_nums(d, "5200,9229[0]/0028,9145[0]/0028,1053", v, 1) == 1 ? v[0] :
	               mp_dcm_nums(d, "0028,1053", v, 1) == 1 ? v[0] : 1;
	base_resc[1] = mp_dcm_nums(d, "5200,9229[0]/0028,9145[0]/0028,1052", v, 1) == 1 ? v[0] :
	               mp_dcm_nums(d, "0028,1052", v, 1) == 1 ? v[0] : 0;
	if (base_resc[0] == 0)
		base_resc[0] = 1;
	if (!strcmp(m->modality, "RTDOSE") && mp_dcm_nums(d, "3004,000e", v, 1) == 1 && v[0] > 0)
		base_resc[0] *= v[0];   /* DoseGridScaling: stored values to Gy */
	for (int k = 0; k < 3; k++)
		if (!isfinite(base_ipp[k]))
			hipp = 0;
	for (int k = 0; k < 6; k++)
		if (!isfinite(base_iop[k]))
			hiop = 0;
	if (!(isfinite(base_ps[0]) && isfinite(base_ps[1]) && base_ps[0] < 1e6 && base_ps[1] < 1e6))
		base_ps[0] = base_ps[1] = 1;
	if (hiop) {
		double a = mp_vec3_norm(base_iop), b = mp_vec3_norm(base_iop + 3);
		if (!(a > 0.5 && a < 1.5 && b > 0.5 && b < 1.5))
			hiop = 0;
		else
			for (int k = 0; k < 3; k++)
				base_iop[k] /= a, base_iop[3 + k] /= b;
	}

	/* Siemens mosaic */
	int mosaic = 0;
	double csan[3];
	int has_csan = 0;
	if (strstr(m->imagetype, "MOSAIC")) {
		const unsigned char *cp;
		size_t cn;
		double t[3];
		if (mp_dcm_bytes(d, "0029,1010", &cp, &cn) == 0) {
			if (csa_nums(cp, cn, "NumberOfImagesInMosaic", t, 1) == 1)
				mosaic = (int)t[0];
			if (csa_nums(cp, cn, "SliceNormalVector", csan, 3) == 3 && mp_vec3_norm(csan) > 0.5)
				has_csan = 1;
		}
		if (mosaic <= 0) {
			if (mp_dcm_nums(d, "0019,100a", t, 1) == 1)
				mosaic = (int)t[0];
			else if (mp_dcm_bytes(d, "0019,100a", &cp, &cn) == 0 && cn >= 2)
				mosaic = cp[0] | cp[1] << 8;
		}
		if (mosaic < 1)
			mosaic = 0;
	}
	mp_dcm_free(d);

	pthread_mutex_lock(&s->mu);
	if (mosaic > 1 && x.nframes == 1) {
		int tiles = (int)ceil(sqrt((double)mosaic));
		if (x.rows % tiles || x.cols % tiles || !hipp || !hiop) {
			pthread_mutex_unlock(&s->mu);
			file_fail(f, FS_FAILED, "%s: %s", "mosaic size does not divide into tiles, or no geometry");
			return;
		}
		double r[3] = { base_iop[0], base_iop[1], base_iop[2] }, c[3] = { base_iop[3], base_iop[4], base_iop[5] }, n[3];
		mp_vec3_cross(r, c, n);
		if (has_csan) {
			double l = mp_vec3_norm(csan);
			for (int k = 0; k < 3; k++)
				csan[k] /= l;
		} else
			memcpy(csan, n, sizeof n);
		int tr = x.rows / tiles, tc = x.cols / tiles;
		double sp = x.sbs > 0 ? x.sbs : x.thick > 0 ? x.thick : 1;
		double p0[3];
		for (int k = 0; k < 3; k++)
			p0[k] = base_ipp[k] + r[k] * base_ps[1] * (x.cols - tc) / 2.0 + c[k] * base_ps[0] * (x.rows - tr) / 2.0;
		for (int t = 0; t < mosaic; t++) {
			dslice y = x;
			y.mosaic = mosaic;
			y.tile = t;
			y.rows = tr;
			y.cols = tc;
			y.has_geo = 1;
			for (int k = 0; k < 3; k++)
				y.ipp[k] = p0[k] + t * sp * csan[k];
			memcpy(y.iop, base_iop, sizeof y.iop);
			memcpy(y.ps, base_ps, sizeof y.ps);
			y.slope = base_resc[0];
			y.inter = base_resc[1];
			push_slice(s, &y);
		}
		pthread_mutex_unlock(&s->mu);
		return;
	}
	pthread_mutex_unlock(&s->mu);

	/* per frame geometry (enhanced objects), or frames stacked along the normal */
	dslice *fr = mp_xcalloc((size_t)x.nframes, sizeof *fr);
	double *offs = NULL;   /* frames of a plain multi-frame object: GridFrameOffsetVector or a regular step */
	mp_dcm *dd = NULL;
	if (enhanced || x.nframes > 1) {
		dd = mp_dcm_load(f->path, 1);
		if (!dd) {
			free(fr);
			file_fail(f, FS_FAILED, "%s: %s", mp_err());
			return;
		}
		if (!enhanced) {
			offs = mp_xcalloc((size_t)x.nframes, sizeof *offs);
			if (mp_dcm_nums(dd, "3004,000c", offs, x.nframes) != x.nframes) {
				double sp = x.sbs > 0 ? x.sbs : x.thick > 0 ? x.thick : 1;
				for (int k = 0; k < x.nframes; k++)
					offs[k] = k * sp;
			}
		}
	}
	for (int fn = 0; fn < x.nframes; fn++) {
		dslice y = x;
		y.frame = fn;
		memcpy(y.ipp, base_ipp, sizeof y.ipp);
		memcpy(y.iop, base_iop, sizeof y.iop);
		memcpy(y.ps, base_ps, sizeof y.ps);
		y.slope = base_resc[0];
		y.inter = base_resc[1];
		y.has_geo = hipp && hiop;
		if (enhanced) {
			char p[80];
			snprintf(p, sizeof p, "5200,9230[%d]/0020,9113[0]/0020,0032", fn);
			int a = mp_dcm_nums(dd, p, y.ipp, 3) == 3;
			snprintf(p, sizeof p, "5200,9230[%d]/0020,9116[0]/0020,0037", fn);
			int b = mp_dcm_nums(dd, p, y.iop, 6) == 6;
			if (b) {
				double la = mp_vec3_norm(y.iop), lb = mp_vec3_norm(y.iop + 3);
				if (la > 0.5 && lb > 0.5)
					for (int k = 0; k < 3; k++)
						y.iop[k] /= la, y.iop[3 + k] /= lb;
			}
			y.has_geo = (a || hipp) && (b || hiop);
			for (int k = 0; k < 6; k++)
				if (!isfinite(y.iop[k]) || (k < 3 && !isfinite(y.ipp[k])))
					y.has_geo = 0;
			if (!(y.ps[0] > 0 && y.ps[1] > 0 && isfinite(y.ps[0]) && isfinite(y.ps[1])))
				y.ps[0] = y.ps[1] = 1;
			snprintf(p, sizeof p, "5200,9230[%d]/0028,9110[0]/0028,0030", fn);
			mp_dcm_nums(dd, p, y.ps, 2);
			snprintf(p, sizeof p, "5200,9230[%d]/0028,9145[0]/0028,1053", fn);
			if (mp_dcm_nums(dd, p, v, 1) == 1 && v[0] != 0)
				y.slope = v[0];
			snprintf(p, sizeof p, "5200,9230[%d]/0028,9145[0]/0028,1052", fn);
			if (mp_dcm_nums(dd, p, v, 1) == 1)
				y.inter = v[0];
		} else if (x.nframes > 1 && y.has_geo) {
			double n[3];
			mp_vec3_cross(y.iop, y.iop + 3, n);
			for (int k = 0; k < 3; k++)
				y.ipp[k] = base_ipp[k] + offs[fn] * n[k];
		}
		fr[fn] = y;
	}
	if (dd)
		mp_dcm_free(dd);
	free(offs);
	pthread_mutex_lock(&s->mu);
	for (int fn = 0; fn < x.nframes; fn++)
		push_slice(s, &fr[fn]);
	pthread_mutex_unlock(&s->mu);
	free(fr);
}

static void *
scan_worker(void *arg)
{
	scanjob *j = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&j->next, 1);
		if (i >= j->s->nfiles)
			break;
		read_file(j->s, i);
	}
	return NULL;
}

/* ------------------------------------------------------------ grouping */
static int
same_orient(const dslice *a, const dslice *b)
{
	if (a->has_geo != b->has_geo)
		return 0;
	if (!a->has_geo)
		return 1;
	for (int k = 0; k < 6; k++)
		if (fabs(a->iop[k] - b->iop[k]) > 1e-3)
			return 0;
	return 1;
}

static int
same_group(const mp_dicom_scan *s, const dslice *a, const dslice *b)
{
	const dmeta *ma = s->files[a->file].meta, *mb = s->files[b->file].meta;
	if (strcmp(ma->suid, mb->suid))
		return 0;
	if (strcmp(ma->series_no, mb->series_no))
		return 0;
	if (a->rows != b->rows || a->cols != b->cols || a->spp != b->spp || a->balloc != b->balloc ||
	    a->pixrep != b->pixrep || a->echo != b->echo || strcmp(a->photo, b->photo))
		return 0;
	if (fabs(a->ps[0] - b->ps[0]) > 1e-4 || fabs(a->ps[1] - b->ps[1]) > 1e-4)
		return 0;
	return same_orient(a, b);
}

static const mp_dicom_scan *sort_scan;

static int
cmp_slice(const void *pa, const void *pb)
{
	const dslice *a = &sort_scan->sl[*(const int *)pa], *b = &sort_scan->sl[*(const int *)pb];
	if (a->has_geo && b->has_geo && a->d != b->d)
		return a->d < b->d ? -1 : 1;
	if (a->inst != b->inst)
		return a->inst < b->inst ? -1 : 1;
	if (a->file != b->file)
		return a->file < b->file ? -1 : 1;
	if (a->frame != b->frame)
		return a->frame < b->frame ? -1 : 1;
	return a->tile < b->tile ? -1 : a->tile > b->tile;
}

/* acquisition order of the slices at one position: acquisition number,
 * instance number, file, frame */
static int
cmp_acq(const void *pa, const void *pb)
{
	const dslice *a = &sort_scan->sl[*(const int *)pa], *b = &sort_scan->sl[*(const int *)pb];
	if (a->acq != b->acq)
		return a->acq < b->acq ? -1 : 1;
	if (a->inst != b->inst)
		return a->inst < b->inst ? -1 : 1;
	if (a->file != b->file)
		return a->file < b->file ? -1 : 1;
	return a->frame < b->frame ? -1 : a->frame > b->frame;
}

static dseries *
new_series(mp_dicom_scan *s)
{
	if (s->nser == s->capser) {
		s->capser = s->capser ? 2 * s->capser : 16;
		s->ser = mp_xrealloc(s->ser, (size_t)s->capser * sizeof *s->ser);
	}
	dseries *r = &s->ser[s->nser++];
	memset(r, 0, sizeof *r);
	return r;
}

static void ser_err(dseries *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
ser_err(dseries *r, const char *fmt, ...)
{
	char buf[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	free(r->err);
	r->err = mp_xstrdup(buf);
}

static int
cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* geometry of a sorted group (r->sl, r->n) */
static void
plan_geometry(mp_dicom_scan *s, dseries *r)
{
	const dslice *f0 = &s->sl[r->sl[0]], *fl = &s->sl[r->sl[r->n - 1]];
	r->nx = r->nx_in = f0->cols;
	r->ny = r->ny_in = f0->rows;
	r->nz = r->n;
	memset(r->dir, 0, sizeof r->dir);
	if (!f0->has_geo) {
		r->dir[0][0] = f0->ps[1];
		r->dir[1][1] = f0->ps[0];
		r->dir[2][2] = f0->sbs > 0 ? f0->sbs : f0->thick > 0 ? f0->thick : 1;
		memset(r->origin, 0, sizeof r->origin);
		return;
	}
	double n[3];
	mp_vec3_cross(f0->iop, f0->iop + 3, n);
	for (int k = 0; k < 3; k++) {
		r->dir[0][k] = f0->iop[k] * f0->ps[1];
		r->dir[1][k] = f0->iop[3 + k] * f0->ps[0];
		r->origin[k] = f0->ipp[k];
	}
	if (r->n == 1) {
		double sp = f0->sbs > 0 ? f0->sbs : f0->thick > 0 ? f0->thick : 1;
		for (int k = 0; k < 3; k++)
			r->dir[2][k] = n[k] * sp;
		return;
	}
	double span = fl->d - f0->d;
	if (!(span > 0)) {
		for (int k = 0; k < 3; k++)
			r->dir[2][k] = n[k];
		return;
	}
	double smin = INFINITY, smax = 0;
	for (int i = 0; i + 1 < r->n; i++) {
		double st = s->sl[r->sl[i + 1]].d - s->sl[r->sl[i]].d;
		if (st < smin)
			smin = st;
		if (st > smax)
			smax = st;
	}
	r->smin = smin;
	r->smax = smax;
	double u[3];  /* world step per mm along the normal */
	for (int k = 0; k < 3; k++)
		u[k] = (fl->ipp[k] - f0->ipp[k]) / span;
	double w[3] = { u[0] - n[0], u[1] - n[1], u[2] - n[2] };
	double tanang = mp_vec3_norm(w);
	if (tanang > 1e-3)
		r->tilt = atan(tanang) * 180 / PI;
	double mean = span / (r->n - 1);
	if (smax - smin > fmax(0.01, 0.02 * smin)) {
		r->uneven = 1;
		if (s->o.uneven == MP_UNEVEN_RESAMPLE) {
			/* the smallest step that occurs at least twice (an isolated short
			 * step is an overlap, not the scan's spacing), else the median */
			double *st = mp_xmalloc((size_t)r->n * sizeof *st), step = -1;
			for (int i = 0; i + 1 < r->n; i++)
				st[i] = s->sl[r->sl[i + 1]].d - s->sl[r->sl[i]].d;
			qsort(st, (size_t)r->n - 1, sizeof *st, cmp_dbl);
			for (int i = 0; i + 2 < r->n && step < 0; i++)
				if (st[i + 1] - st[i] <= fmax(0.01, 0.02 * st[i]))
					step = st[i];
			if (step < 0)
				step = st[(r->n - 1) / 2];
			free(st);
			if (step < span / (4.0 * r->n))
				step = span / (4.0 * r->n);
			int nz = (int)lround(span / step) + 1;
			r->nz = nz;
			r->resample_z = 1;
			r->d0 = f0->d;
			r->step = span / (nz - 1);
			mean = r->step;
		}
	}
	for (int k = 0; k < 3; k++)
		r->dir[2][k] = u[k] * mean;
	if (r->tilt > 0 && s->o.tilt == MP_TILT_ORTHO) {
		/* shear per slice, in voxels of x and y; output grid enlarged to hold all */
		double sh[3];
		for (int k = 0; k < 3; k++)
			sh[k] = r->dir[2][k] - n[k] * mean;
		r->ortho = 1;
		r->shift[0] = mp_vec3_dot(sh, f0->iop) / f0->ps[1];
		r->shift[1] = mp_vec3_dot(sh, f0->iop + 3) / f0->ps[0];
		double lo[2], hi[2];
		for (int a = 0; a < 2; a++) {
			double e = r->shift[a] * (r->nz - 1);
			lo[a] = fmin(0, e);
			hi[a] = fmax(0, e);
		}
		r->ox0 = (int)floor(lo[0] + 1e-6);
		r->oy0 = (int)floor(lo[1] + 1e-6);
		r->nx = r->nx_in + (int)ceil(hi[0] - 1e-6) - r->ox0;
		r->ny = r->ny_in + (int)ceil(hi[1] - 1e-6) - r->oy0;
		for (int k = 0; k < 3; k++) {
			r->origin[k] += r->ox0 * r->dir[0][k] + r->oy0 * r->dir[1][k];
			r->dir[2][k] = n[k] * mean;
		}
	}
}

static int
cmp_series(const void *pa, const void *pb)
{
	const dseries *a = pa, *b = pb;
	const dmeta *ma = sort_scan->files[sort_scan->sl[a->sl[0]].file].meta;
	const dmeta *mb = sort_scan->files[sort_scan->sl[b->sl[0]].file].meta;
	long na = atol(ma->series_no), nb = atol(mb->series_no);
	if (na != nb)
		return na < nb ? -1 : 1;
	int c = strcmp(ma->suid, mb->suid);
	if (c)
		return c;
	if (a->splitpart != b->splitpart)
		return a->splitpart < b->splitpart ? -1 : 1;
	/* groups of one series: by first file then position */
	return a->sl[0] < b->sl[0] ? -1 : a->sl[0] > b->sl[0];
}

static void
make_series(mp_dicom_scan *s)
{
	size_t ns = s->nsl;
	int *grp = mp_xmalloc((ns ? ns : 1) * sizeof *grp);
	int *rep = NULL;   /* representative slice of each group */
	int ng = 0;
	for (size_t i = 0; i < ns; i++) {
		dslice *x = &s->sl[i];
		if (x->localizer && !s->o.keep_scouts) {
			grp[i] = -1;
			dfile *f = &s->files[x->file];
			if (f->status == FS_OK) {
				f->status = FS_SKIPPED;
				char b[700];
				snprintf(b, sizeof b, "%s: skipped: localizer (scout) image", f->path);
				f->msg = mp_xstrdup(b);
			}
			continue;
		}
		int g;
		for (g = ng - 1; g >= 0; g--)
			if (same_group(s, &s->sl[rep[g]], x))
				break;
		if (g < 0) {
			rep = mp_xrealloc(rep, (size_t)(ng + 1) * sizeof *rep);
			rep[ng] = (int)i;
			g = ng++;
		}
		grp[i] = g;
	}
	/* members of each group */
	int *cnt = mp_xcalloc((size_t)ng + 1, sizeof *cnt);
	for (size_t i = 0; i < ns; i++)
		if (grp[i] >= 0)
			cnt[grp[i]]++;
	/* scouts: a single slice whose orientation differs from a larger group of the same series */
	for (int g = 0; g < ng && !s->o.keep_scouts; g++) {
		if (cnt[g] != 1)
			continue;
		const dslice *a = &s->sl[rep[g]];
		for (int h = 0; h < ng; h++) {
			const dslice *b = &s->sl[rep[h]];
			if (h == g || cnt[h] < 2 || strcmp(s->files[a->file].meta->suid, s->files[b->file].meta->suid) ||
			    same_orient(a, b))
				continue;
			cnt[g] = 0;
			for (size_t i = 0; i < ns; i++)
				if (grp[i] == g)
					grp[i] = -1;
			dfile *f = &s->files[a->file];
			if (f->status == FS_OK) {
				f->status = FS_SKIPPED;
				char bb[700];
				snprintf(bb, sizeof bb, "%s: skipped: single slice of another orientation (scout)", f->path);
				f->msg = mp_xstrdup(bb);
			}
			break;
		}
	}
	sort_scan = s;
	for (int g = 0; g < ng; g++) {
		if (!cnt[g])
			continue;
		int *m = mp_xmalloc((size_t)cnt[g] * sizeof *m);
		int k = 0;
		for (size_t i = 0; i < ns; i++)
			if (grp[i] == g)
				m[k++] = (int)i;
		const dslice *f0 = &s->sl[m[0]];
		double n[3] = { 0, 0, 1 };
		if (f0->has_geo)
			mp_vec3_cross(f0->iop, f0->iop + 3, n);
		for (int i = 0; i < k; i++)
			s->sl[m[i]].d = mp_vec3_dot(s->sl[m[i]].ipp, n);
		qsort(m, (size_t)k, sizeof *m, cmp_slice);
		/* duplicate positions: split by acquisition number, else fail */
		int dup = 0;
		for (int i = 0; i + 1 < k && f0->has_geo; i++)
			if (fabs(s->sl[m[i + 1]].d - s->sl[m[i]].d) < 1e-3)
				dup = 1;
		if (dup) {
			/* every position holding the same number V of slices: V volumes
			 * (time points, b-values, ...), each slice's volume given by its
			 * rank in acquisition order at its position, as dcm2niix's 4D */
			int npos = 0, nv = -1, eq = 1;
			for (int i = 0; i < k;) {
				int j = i + 1;
				while (j < k && fabs(s->sl[m[j]].d - s->sl[m[i]].d) < 1e-3)
					j++;
				if (nv < 0)
					nv = j - i;
				else if (j - i != nv)
					eq = 0;
				npos++;
				i = j;
			}
			if (eq && nv > 1) {
				for (int p = 0; p < npos; p++)
					qsort(m + (size_t)p * (size_t)nv, (size_t)nv, sizeof *m, cmp_acq);
				for (int v = 0; v < nv; v++) {
					dseries *r = new_series(s);
					r->sl = mp_xmalloc((size_t)npos * sizeof *r->sl);
					for (int p = 0; p < npos; p++)
						r->sl[r->n++] = m[p * nv + v];
					r->splitpart = v + 1;
					r->vols = nv;
					r->volidx = v;
					plan_geometry(s, r);
				}
				free(m);
				continue;
			}
			int acqs[64], na = 0;
			for (int i = 0; i < k && na < 64; i++) {
				int a = s->sl[m[i]].acq, j;
				for (j = 0; j < na && acqs[j] != a; j++)
					;
				if (j == na)
					acqs[na++] = a;
			}
			if (na > 1 && na < 64) {
				for (int j = 0; j < na; j++) {
					dseries *r = new_series(s);
					r->sl = mp_xmalloc((size_t)k * sizeof *r->sl);
					for (int i = 0; i < k; i++)
						if (s->sl[m[i]].acq == acqs[j])
							r->sl[r->n++] = m[i];
					r->splitpart = j + 1;
					for (int i = 0; i + 1 < r->n; i++)
						if (fabs(s->sl[r->sl[i + 1]].d - s->sl[r->sl[i]].d) < 1e-3)
							ser_err(r, "slices share a position (several volumes in one series?)");
					if (!r->err)
						plan_geometry(s, r);
				}
				free(m);
				continue;
			}
			dseries *r = new_series(s);
			r->sl = m;
			r->n = k;
			plan_geometry(s, r);
			ser_err(r, "slices share a position (%d slices; several volumes in one series?)", k);
			continue;
		}
		dseries *r = new_series(s);
		r->sl = m;
		r->n = k;
		plan_geometry(s, r);
		if (r->uneven && s->o.uneven == MP_UNEVEN_FAIL)
			ser_err(r, "uneven slice spacing (%g to %g mm) and --uneven fail", r->smin, r->smax);
		else if (r->uneven && s->o.uneven == MP_UNEVEN_SPLIT) {
			/* runs of equal steps become series of their own */
			int *all = r->sl, n = r->n, start = 0, part = 0;
			s->nser--;
			while (start < n) {
				int end = start + 1;
				if (end < n) {
					double st = s->sl[all[end]].d - s->sl[all[start]].d;
					while (end + 1 < n) {
						double st2 = s->sl[all[end + 1]].d - s->sl[all[end]].d;
						if (fabs(st2 - st) > fmax(0.01, 0.02 * fmin(st, st2)))
							break;
						end++;
					}
					end++;
				}
				dseries *q = new_series(s);
				q->sl = mp_xmalloc((size_t)(end - start) * sizeof *q->sl);
				memcpy(q->sl, all + start, (size_t)(end - start) * sizeof *q->sl);
				q->n = end - start;
				q->splitpart = ++part;
				plan_geometry(s, q);
				q->uneven = 2;  /* split */
				start = end;
			}
			free(all);
		}
	}
	free(cnt);
	free(rep);
	free(grp);
	if (s->nser > 1)
		qsort(s->ser, (size_t)s->nser, sizeof *s->ser, cmp_series);
	for (int i = 0; i < s->nser; i++) {
		dseries *r = &s->ser[i];
		const dmeta *m = s->files[s->sl[r->sl[0]].file].meta;
		char part[16] = "";
		if (r->splitpart)
			snprintf(part, sizeof part, ".%d", r->splitpart);
		snprintf(r->name, sizeof r->name, "series %d (#%s%s%s%.60s%s)", i + 1, m->series_no[0] ? m->series_no : "?",
		         part, m->desc[0] ? " '" : "", m->desc, m->desc[0] ? "'" : "");
	}
}

mp_dicom_scan *
mp_dicom_scan_paths(char *const *paths, int npaths, const mp_dicom_opts *o)
{
	mp_dicom_scan *s = mp_xcalloc(1, sizeof *s);
	s->o = *o;
	pthread_mutex_init(&s->mu, NULL);
	mp_dcm_global_init();
	for (int i = 0; i < npaths; i++)
		walk(s, paths[i], 0);
	scanjob j;
	j.s = s;
	atomic_init(&j.next, 0);
	int nt = nthreads(o);
	if ((size_t)nt > s->nfiles)
		nt = s->nfiles ? (int)s->nfiles : 1;
	pthread_t th[16];
	int started = 0;
	for (int t = 1; t < nt; t++)
		if (pthread_create(&th[started], NULL, scan_worker, &j) == 0)
			started++;
	scan_worker(&j);
	for (int t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	/* deterministic slice order regardless of threads: by file, frame, tile */
	sort_scan = s;
	if (s->nsl > 1) {
		/* sort the records themselves by (file, frame, tile) */
		int *idx = mp_xmalloc(s->nsl * sizeof *idx);
		for (size_t i = 0; i < s->nsl; i++)
			idx[i] = (int)i;
		/* simple stable order through a key comparison */
		dslice *copy = mp_xmalloc(s->nsl * sizeof *copy);
		memcpy(copy, s->sl, s->nsl * sizeof *copy);
		size_t *cntf = mp_xcalloc(s->nfiles + 1, sizeof *cntf);
		for (size_t i = 0; i < s->nsl; i++)
			cntf[copy[i].file + 1]++;
		for (size_t f = 0; f < s->nfiles; f++)
			cntf[f + 1] += cntf[f];
		for (size_t i = 0; i < s->nsl; i++)
			s->sl[cntf[copy[i].file]++] = copy[i];   /* per-file order is as pushed (frame, tile order) */
		free(cntf);
		free(copy);
		free(idx);
	}
	for (size_t i = 0; i < s->nfiles; i++)
		if (s->files[i].status == FS_FAILED)
			add_err(s, s->files[i].msg);
	make_series(s);
	for (size_t i = 0; i < s->nfiles; i++)
		if (s->files[i].status == FS_SKIPPED) {
			s->nskipped++;
			mp_note("%s", s->files[i].msg);
		}
	return s;
}

void
mp_dicom_scan_free(mp_dicom_scan *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nfiles; i++) {
		free(s->files[i].path);
		free(s->files[i].msg);
		free(s->files[i].meta);
	}
	for (int i = 0; i < s->nser; i++) {
		free(s->ser[i].sl);
		free(s->ser[i].err);
	}
	for (size_t i = 0; i < s->nerrs; i++)
		free(s->errs[i]);
	free(s->errs);
	free(s->files);
	free(s->sl);
	free(s->ser);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int
mp_dicom_volumes(const mp_dicom_scan *s, int i, int *idx)
{
	const dseries *r = &s->ser[i];

	if (idx)
		*idx = r->volidx;
	return r->vols;
}

int
mp_dicom_load4d(mp_dicom_scan *s, int i, mp_frame *f)
{
	int nv = s->ser[i].vols;
	mp_frame *v;
	mp_type t;
	size_t nvox, esz;
	int allint = 1, f64 = 0;

	mp_frame_init(f);
	if (nv < 2 || s->ser[i].volidx != 0 || i + nv > s->nser)
		return mp_dicom_load(s, i, f);
	v = mp_xcalloc((size_t)nv, sizeof *v);
	for (int k = 0; k < nv; k++) {
		if (mp_dicom_load(s, i + k, &v[k]) < 0)
			goto fail;
		if (v[k].dim != v[0].dim || memcmp(v[k].size, v[0].size, sizeof v[0].size) ||
		    memcmp(v[k].dir, v[0].dir, sizeof v[0].dir) || v[k].dim != 3) {
			mp_seterr("%s: volume %d of %d: another grid than volume 1 (or not 3D)", s->ser[i].name, k + 1, nv);
			goto fail;
		}
		if (!mp_type_is_int(v[k].type))
			allint = 0;
		if (v[k].type == MP_FLOAT64)
			f64 = 1;
	}
	t = v[0].type;
	for (int k = 1; k < nv; k++)
		if (v[k].type != t)
			t = allint ? MP_INT32 : f64 ? MP_FLOAT64 : MP_FLOAT32;
	nvox = mp_frame_nvox(&v[0]);
	esz = mp_type_size(t);
	mp_frame_copy_header(f, &v[0]);
	f->dim = 4;
	f->size[3] = (size_t)nv;
	f->has_dir[3] = 0;
	memset(f->dir[3], 0, sizeof f->dir[3]);
	snprintf(f->kind[3], sizeof f->kind[3], "list");
	f->type = t;
	if (mp_frame_check(f) < 0 || mp_frame_alloc(f) < 0)
		goto fail;
	for (int k = 0; k < nv; k++) {
		mp_convert((char *)f->data + (size_t)k * nvox * esz, t, v[k].data, v[k].type, nvox);
		mp_frame_free(&v[k]);
	}
	free(v);
	mp_set_kvf(f, MP_K_DICOM_VOLUMES, "%d", nv);
	mp_frame_touch(f);
	return 0;
fail:
	for (int k = 0; k < nv; k++)
		mp_frame_free(&v[k]);
	free(v);
	mp_frame_free(f);
	return -1;
}

int
mp_dicom_nseries(const mp_dicom_scan *s)
{
	return s->nser;
}

void
mp_dicom_counts(const mp_dicom_scan *s, size_t *files, size_t *notdicom, size_t *skipped, size_t *failed)
{
	size_t nd = 0, fl = 0;
	for (size_t i = 0; i < s->nfiles; i++) {
		nd += s->files[i].status == FS_NOTDICOM;
		fl += s->files[i].status == FS_FAILED;
	}
	*files = s->nfiles;
	*notdicom = nd;
	*skipped = s->nskipped;
	*failed = fl;
}

size_t
mp_dicom_nfile_errors(const mp_dicom_scan *s)
{
	return s->nerrs;
}

const char *
mp_dicom_file_error(const mp_dicom_scan *s, size_t i)
{
	return i < s->nerrs ? s->errs[i] : NULL;
}

const char *
mp_dicom_series_name(const mp_dicom_scan *s, int i)
{
	return s->ser[i].name;
}

void
mp_dicom_list(const mp_dicom_scan *s, FILE *fp)
{
	fprintf(fp, "%3s  %-6s %-4s %6s  %-13s %-22s %s\n", "#", "series", "mod", "slices", "size", "spacing (mm)", "description");
	for (int i = 0; i < s->nser; i++) {
		const dseries *r = &s->ser[i];
		const dslice *f0 = &s->sl[r->sl[0]];
		const dmeta *m = s->files[f0->file].meta;
		char num[24], sz[40], sp[60], extra[120] = "";
		snprintf(num, sizeof num, "%s%s", m->series_no[0] ? m->series_no : "-", "");
		if (r->splitpart)
			snprintf(num + strlen(num), sizeof num - strlen(num), ".%d", r->splitpart);
		snprintf(sz, sizeof sz, "%dx%dx%d%s", r->nx, r->ny, r->nz, f0->spp == 3 ? " RGB" : "");
		snprintf(sp, sizeof sp, "%.4gx%.4gx%.4g", mp_vec3_norm(r->dir[0]), mp_vec3_norm(r->dir[1]), mp_vec3_norm(r->dir[2]));
		if (r->tilt > 0)
			snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " [tilt %.1f deg]", r->tilt);
		if (r->uneven == 1)
			snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " [uneven %.4g..%.4g mm]", r->smin, r->smax);
		if (r->err)
			snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " [error: %.60s]", r->err);
		fprintf(fp, "%3d  %-6s %-4s %6d  %-13s %-22s %s%s\n", i + 1, num, m->modality[0] ? m->modality : "-", r->n, sz, sp,
		        m->desc[0] ? m->desc : "-", extra);
	}
}

/* ------------------------------------------------------------ pixels */
static double rawget(const void *p, size_t i, size_t esz, int sg);
static void slice_range(const void *p, size_t npix, size_t esz, int sg, const dslice *x, double *mnp, double *mxp,
                        int *anypad);

typedef struct {
	mp_dicom_scan *s;
	dseries *r;
	int *order;             /* positions k sorted by file */
	int norder;
	atomic_int next;
	void *raw;              /* n slices of rows*cols*spp elements */
	size_t esz;             /* bytes per element of raw */
	int is_signed;
	double *smn, *smx;      /* per slice stored range (grey images) */
	int *spad;
	pthread_mutex_t mu;
	char *err;
} loadjob;

static void
job_range(loadjob *j, int kk, const dslice *y, size_t npix)
{
	if (y->spp != 1)
		return;
	slice_range((const unsigned char *)j->raw + (size_t)kk * npix * j->esz, npix, j->esz, y->pixrep != 0, y,
	            &j->smn[kk], &j->smx[kk], &j->spad[kk]);
}

static void
job_err(loadjob *j, const char *path, const char *why)
{
	pthread_mutex_lock(&j->mu);
	if (!j->err) {
		size_t l = strlen(path) + strlen(why) + 4;
		j->err = mp_xmalloc(l);
		snprintf(j->err, l, "%s: %s", path, why);
	}
	pthread_mutex_unlock(&j->mu);
}

static inline double
clampd(double v, double lo, double hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* YCbCr (full range) to RGB, in place, 8 bit interleaved */
static void
ybr_to_rgb(uint8_t *p, size_t npix)
{
	for (size_t i = 0; i < npix; i++) {
		double y = p[3 * i], cb = p[3 * i + 1] - 128.0, cr = p[3 * i + 2] - 128.0;
		p[3 * i] = (uint8_t)lround(clampd(y + 1.402 * cr, 0, 255));
		p[3 * i + 1] = (uint8_t)lround(clampd(y - 0.344136 * cb - 0.714136 * cr, 0, 255));
		p[3 * i + 2] = (uint8_t)lround(clampd(y + 1.772 * cb, 0, 255));
	}
}

static uint32_t
le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* DICOM RLE (PS3.5 annex G): the frame starts with a 64-byte header, the
 * number of segments (one per byte of each sample, at most 15) and their
 * offsets from the frame's start: the first 64, each larger than the one
 * before, all inside the frame's bytes. DCMTK's decoder trusts these
 * offsets, so a frame whose header says otherwise never reaches it. */
static int
rle_check(mp_dcm *d, const dslice *x)
{
	unsigned char *b;
	size_t n;
	uint32_t ns, want = (uint32_t)x->spp * (uint32_t)((x->balloc + 7) / 8), prev = 0;

	if (mp_dcm_frame_bytes(d, (unsigned)x->frame, (unsigned)x->nframes, &b, &n) < 0)
		return -1;
	if (n < 64) {
		free(b);
		return mp_seterr("RLE frame %d: %zu bytes, shorter than its 64-byte header", x->frame + 1, n);
	}
	ns = le32(b);
	if (ns < 1 || ns > 15 || ns != want) {
		free(b);
		return mp_seterr("RLE frame %d: %u segments (%u expected for %d samples of %d bits)", x->frame + 1,
				 (unsigned)ns, (unsigned)want, x->spp, x->balloc);
	}
	for (uint32_t i = 0; i < ns; i++) {
		uint32_t o = le32(b + 4 + 4 * i);
		if ((i == 0 && o != 64) || (i > 0 && o <= prev) || o >= n) {
			free(b);
			return mp_seterr("RLE frame %d: segment %u starts at byte %u, outside the frame's %zu bytes "
					 "or out of order", x->frame + 1, (unsigned)i + 1, (unsigned)o, n);
		}
		prev = o;
	}
	free(b);
	return 0;
}

/* JPEG (PS3.5 8.2.1, ISO 10918) and JPEG-LS (8.2.3): the frame's SOF
 * (or JPEG-LS SOF55) segment must describe the image the DICOM header does
 * (columns, rows, samples, a precision that fits BitsAllocated) before the
 * IJG / CharLS decoders inside DCMTK write into a buffer sized by the header */
static int
jpeg_check(mp_dcm *d, const dslice *x)
{
	unsigned char *b;
	size_t n, p = 2;
	int rc = -1;

	if (mp_dcm_frame_bytes(d, (unsigned)x->frame, (unsigned)x->nframes, &b, &n) < 0)
		return -1;
	if (n < 4 || b[0] != 0xff || b[1] != 0xd8) {
		mp_seterr("JPEG frame %d: no start of image marker", x->frame + 1);
		goto out;
	}
	while (p + 4 <= n) {
		unsigned m, len;
		if (b[p] != 0xff) {
			mp_seterr("JPEG frame %d: marker expected at byte %zu", x->frame + 1, p);
			goto out;
		}
		m = b[p + 1];
		if (m == 0xff) {        /* fill byte */
			p++;
			continue;
		}
		len = (unsigned)b[p + 2] << 8 | b[p + 3];
		if (len < 2 || len > n - p - 2) {
			mp_seterr("JPEG frame %d: marker segment %02X runs past the frame", x->frame + 1, m);
			goto out;
		}
		if ((m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) || m == 0xf7) {
			const unsigned char *q = b + p + 4;
			unsigned prec, rows, cols, nc;
			if (len < 8) {
				mp_seterr("JPEG frame %d: short frame header", x->frame + 1);
				goto out;
			}
			prec = q[0];
			rows = (unsigned)q[1] << 8 | q[2];
			cols = (unsigned)q[3] << 8 | q[4];
			nc = q[5];
			if (rows != (unsigned)x->frows || cols != (unsigned)x->fcols || nc != (unsigned)x->spp ||
			    prec < 2 || prec > (unsigned)x->balloc) {
				mp_seterr("JPEG frame %d is %ux%u, %u samples of %u bits; the header says %dx%d, %d samples "
					  "in %d bits", x->frame + 1, cols, rows, nc, prec, x->fcols, x->frows, x->spp,
					  x->balloc);
				goto out;
			}
			rc = 0;
			goto out;
		}
		if (m == 0xda)
			break;
		p += 2 + len;
	}
	mp_seterr("JPEG frame %d: no frame header before the scan", x->frame + 1);
out:
	free(b);
	return rc;
}

/* decode the frame of slice x into dst (rows*cols*spp elements of esz bytes) */
static int
decode_frame(mp_dcm *d, const dslice *x, void *fbuf, size_t fbytes, size_t rbytes)
{
	char cm[32] = "";
	const char *xs = mp_dcm_xfer(d);
	if (!strcmp(xs, "1.2.840.10008.1.2.5") && rle_check(d, x) < 0)
		return -1;
	/* JPEG baseline, extended, lossless (57, 70), JPEG-LS (80, 81) */
	if (!strncmp(xs, "1.2.840.10008.1.2.4.", 20) &&
	    (!strcmp(xs + 20, "50") || !strcmp(xs + 20, "51") || !strcmp(xs + 20, "57") || !strcmp(xs + 20, "70") ||
	     !strcmp(xs + 20, "80") || !strcmp(xs + 20, "81")) && jpeg_check(d, x) < 0)
		return -1;
	if (mp_dcm_is_j2k(d)) {
		unsigned char *b;
		size_t n;
		if (mp_dcm_frame_bytes(d, (unsigned)x->frame, (unsigned)x->nframes, &b, &n) < 0)
			return -1;
		int sg = 0;
		int rc = mp_j2k_decode(b, n, x->frows, x->fcols, x->spp, x->balloc / 8, fbuf, &sg);
		free(b);
		if (rc < 0)
			return -1;
		return 0;   /* OpenJPEG output is colour-by-pixel and RGB after its inverse MCT */
	}
	if (mp_dcm_frame(d, (unsigned)x->frame, fbuf, rbytes, cm, sizeof cm) < 0)
		return -1;
	if (rbytes < fbytes) {
		/* native YBR_FULL_422: Y0 Y1 Cb Cr for each pair of pixels, expanded
		 * from the end so that it works in place */
		uint8_t *p = fbuf;
		size_t np = (size_t)x->frows * x->fcols;
		for (size_t i = np / 2; i-- > 0;) {
			uint8_t y0 = p[4 * i], y1 = p[4 * i + 1], cb = p[4 * i + 2], cr = p[4 * i + 3];
			p[6 * i] = y0, p[6 * i + 1] = cb, p[6 * i + 2] = cr;
			p[6 * i + 3] = y1, p[6 * i + 4] = cb, p[6 * i + 5] = cr;
		}
		snprintf(cm, sizeof cm, "YBR_FULL");
	}
	if (x->balloc == 32 && !strcmp(mp_dcm_xfer(d), "1.2.840.10008.1.2.2")) {
		/* DCMTK swaps big endian pixel data as 16-bit words (OW): put the
		 * halves of each 32-bit value in order */
		uint32_t *q = fbuf;
		for (size_t i = 0; i < fbytes / 4; i++)
			q[i] = q[i] << 16 | q[i] >> 16;
	}
	if (x->spp == 3) {
		size_t np = (size_t)x->frows * x->fcols;
		int native = strstr(cm, "YBR") == NULL && strcmp(cm, x->photo) == 0;
		/* planar configuration 1: colour by plane -> by pixel */
		if (x->planar == 1 && x->balloc == 8) {
			uint8_t *t = mp_xmalloc(3 * np), *p = fbuf;
			for (size_t i = 0; i < np; i++)
				for (int c = 0; c < 3; c++)
					t[3 * i + c] = p[c * np + i];
			memcpy(p, t, 3 * np);
			free(t);
		} else if (x->planar == 1 && x->balloc == 16) {
			uint16_t *t = mp_xmalloc(6 * np), *p = fbuf;
			for (size_t i = 0; i < np; i++)
				for (int c = 0; c < 3; c++)
					t[3 * i + c] = p[c * np + i];
			memcpy(p, t, 6 * np);
			free(t);
		}
		(void)native;
		if (x->balloc == 8 && !strncmp(cm, "YBR_FULL", 8))
			ybr_to_rgb(fbuf, np);
	}
	return 0;
}

static void
fix_bits(void *p, size_t n, const dslice *x)
{
	int shift = x->hibit + 1 - x->bstored;
	if (x->balloc == 16) {
		if (x->bstored == 16)
			return;
		uint16_t *q = p, mask = (uint16_t)((1u << x->bstored) - 1);
		if (x->pixrep) {
			int sh = 16 - x->bstored;
			for (size_t i = 0; i < n; i++)
				q[i] = (uint16_t)(int16_t)((int16_t)(uint16_t)(((q[i] >> shift) & mask) << sh) >> sh);
		} else
			for (size_t i = 0; i < n; i++)
				q[i] = (q[i] >> shift) & mask;
	} else if (x->balloc == 8) {
		if (x->bstored == 8)
			return;
		uint8_t *q = p, mask = (uint8_t)((1u << x->bstored) - 1);
		int sh = 8 - x->bstored;
		for (size_t i = 0; i < n; i++)
			q[i] = x->pixrep ? (uint8_t)(int8_t)((int8_t)(uint8_t)(((q[i] >> shift) & mask) << sh) >> sh)
			                 : (uint8_t)((q[i] >> shift) & mask);
	} else if (x->balloc == 32 && x->bstored < 32) {
		uint32_t *q = p, mask = (1u << x->bstored) - 1;
		int sh = 32 - x->bstored;
		for (size_t i = 0; i < n; i++)
			q[i] = x->pixrep ? (uint32_t)((int32_t)(((q[i] >> shift) & mask) << sh) >> sh) : (q[i] >> shift) & mask;
	}
}

#if defined(__GNUC__) && !defined(__clang__)
#define HOT __attribute__((optimize("O3")))
#else
#define HOT
#endif

HOT static void
range_i16(const int16_t *q, size_t n, int16_t *mn, int16_t *mx)
{
	int16_t a = INT16_MAX, b = INT16_MIN;
	for (size_t i = 0; i < n; i++) {
		a = q[i] < a ? q[i] : a;
		b = q[i] > b ? q[i] : b;
	}
	*mn = a;
	*mx = b;
}

HOT static void
range_u16(const uint16_t *q, size_t n, uint16_t *mn, uint16_t *mx)
{
	uint16_t a = UINT16_MAX, b = 0;
	for (size_t i = 0; i < n; i++) {
		a = q[i] < a ? q[i] : a;
		b = q[i] > b ? q[i] : b;
	}
	*mn = a;
	*mx = b;
}

/* o = q * sl + in, the result known to fit int16 */
HOT static void
lin_i16(int16_t *o, const int16_t *q, size_t n, int sl, int in)
{
	for (size_t i = 0; i < n; i++)
		o[i] = (int16_t)(q[i] * sl + in);
}

HOT static void
lin_u16(int16_t *o, const uint16_t *q, size_t n, int sl, int in)
{
	for (size_t i = 0; i < n; i++)
		o[i] = (int16_t)(q[i] * sl + in);
}

/* stored value range of one slice, padding values left out */
static void
slice_range(const void *p, size_t npix, size_t esz, int sg, const dslice *x, double *mnp, double *mxp, int *anypad)
{
	double plo = x->has_pad ? x->pad : 0, phi = x->has_padlim ? x->padlim : plo;
	if (plo > phi) {
		double t = plo;
		plo = phi;
		phi = t;
	}
	double mn = INFINITY, mx = -INFINITY;
	if (!x->has_pad && esz == 2) {
		/* the common case, without conversions */
		if (sg) {
			int16_t a, b;
			range_i16(p, npix, &a, &b);
			mn = a, mx = b;
		} else {
			uint16_t a, b;
			range_u16(p, npix, &a, &b);
			mn = a, mx = b;
		}
		if (!npix)
			mn = INFINITY, mx = -INFINITY;
	}
	for (size_t i = 0; i < npix && !(!x->has_pad && esz == 2); i++) {
		double v = rawget(p, i, esz, sg);
		if (x->has_pad && v >= plo && v <= phi) {
			*anypad = 1;
			continue;
		}
		if (v < mn)
			mn = v;
		if (v > mx)
			mx = v;
	}
	*mnp = mn;
	*mxp = mx;
}

/* Native little endian pixel data is nearly always the last element of the
 * file: find it from the end (checking the element header in front of it)
 * and read the frames with pread, without a second DICOM parse.  Returns
 * the file offset of the pixel data, or -1 when this does not apply. */
static long long
native_pixel_offset(int fd, const dslice *x, const dmeta *m, size_t fbytes)
{
	int expl = !strcmp(m->xfer, "1.2.840.10008.1.2.1");
	if (!expl && strcmp(m->xfer, "1.2.840.10008.1.2"))
		return -1;
	if (x->balloc == 32 || !strncmp(x->photo, "YBR_FULL_422", 12))
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -1;
	size_t need = fbytes * (size_t)x->nframes;
	for (int pad = 0; pad < 2; pad++) {
		size_t len = need + (size_t)pad;
		size_t hl = expl ? 12 : 8;
		if ((size_t)st.st_size < len + hl + 132)
			continue;
		long long off = (long long)st.st_size - (long long)len;
		unsigned char h[12];
		if (pread(fd, h, hl, off - (long long)hl) != (ssize_t)hl)
			return -1;
		if (h[0] != 0xe0 || h[1] != 0x7f || h[2] != 0x10 || h[3] != 0x00)
			continue;
		const unsigned char *lp = h + 4;
		if (expl) {
			if (!(h[4] == 'O' && (h[5] == 'W' || h[5] == 'B') && h[6] == 0 && h[7] == 0))
				continue;
			lp = h + 8;
		}
		uint32_t l = (uint32_t)lp[0] | (uint32_t)lp[1] << 8 | (uint32_t)lp[2] << 16 | (uint32_t)lp[3] << 24;
		if (l == len)
			return off;
	}
	return -1;
}

static void *
load_worker(void *arg)
{
	loadjob *j = arg;
	dseries *r = j->r;
	size_t sbytes = (size_t)r->nx_in * r->ny_in * j->s->sl[r->sl[0]].spp * j->esz;
	void *fbuf = NULL;
	size_t fcap = 0;
	for (;;) {
		int i = atomic_fetch_add(&j->next, 1);
		if (i >= j->norder)
			break;
		/* a unit: all positions of one file (only the first of a run starts it) */
		int k = j->order[i];
		const dslice *x = &j->s->sl[r->sl[k]];
		if (i > 0 && j->s->sl[r->sl[j->order[i - 1]]].file == x->file)
			continue;
		if (j->err)
			break;
		const char *path = j->s->files[x->file].path;
		const dmeta *fm = j->s->files[x->file].meta;
		if (x->spp == 1 && x->tile < 0) {
			int fd = open(path, O_RDONLY);
			size_t fb = (size_t)x->frows * x->fcols * (x->balloc / 8);
			long long off = fd >= 0 && fb == sbytes ? native_pixel_offset(fd, x, fm, fb) : -1;
			if (off >= 0) {
				int bad = 0;
				for (int q = i; q < j->norder; q++) {
					int kk = j->order[q];
					const dslice *y = &j->s->sl[r->sl[kk]];
					if (y->file != x->file)
						break;
					unsigned char *dst = (unsigned char *)j->raw + (size_t)kk * sbytes;
					size_t got = 0;
					while (got < fb) {
						ssize_t g = pread(fd, dst + got, fb - got, off + (long long)y->frame * (long long)fb + (long long)got);
						if (g <= 0)
							break;
						got += (size_t)g;
					}
					if (got != fb) {
						bad = 1;
						break;
					}
					fix_bits(dst, (size_t)y->frows * y->fcols, y);
					job_range(j, kk, y, (size_t)y->rows * y->cols);
				}
				close(fd);
				if (!bad)
					continue;
			} else if (fd >= 0)
				close(fd);
		}
		mp_dcm *d = mp_dcm_load(path, 0);
		if (!d) {
			job_err(j, path, mp_err());
			break;
		}
		int lastframe = -1;
		for (int q = i; q < j->norder; q++) {
			int kk = j->order[q];
			const dslice *y = &j->s->sl[r->sl[kk]];
			if (y->file != x->file)
				break;
			size_t fbytes = (size_t)y->frows * y->fcols * y->spp * (y->balloc / 8);
			size_t rbytes = fbytes;   /* bytes stored per frame */
			if (!strcmp(y->photo, "YBR_FULL_422") && y->balloc == 8 && !j->s->files[y->file].meta->encaps) {
				/* 2 bytes per pixel stored, 3 samples after expansion */
				if (y->spp != 3) {
					char why[80];
					snprintf(why, sizeof why, "YBR_FULL_422 pixels need 3 samples per pixel, not %d", y->spp);
					job_err(j, path, why);
					break;
				}
				rbytes = (size_t)y->frows * y->fcols * 2;
			}
			if (fbytes > fcap) {
				free(fbuf);
				fbuf = mp_xmalloc(fbytes);
				fcap = fbytes;
			}
			unsigned char *dst = (unsigned char *)j->raw + (size_t)kk * sbytes;
			if (y->tile < 0 && y->spp == 1 && fbytes == sbytes && !mp_dcm_is_j2k(d)) {
				/* straight into the volume */
				if (decode_frame(d, y, dst, fbytes, rbytes) < 0) {
					job_err(j, path, mp_err());
					break;
				}
				fix_bits(dst, (size_t)y->frows * y->fcols, y);
				job_range(j, kk, y, (size_t)y->rows * y->cols);
				lastframe = -1;
				continue;
			}
			if (y->frame != lastframe) {
				if (decode_frame(d, y, fbuf, fbytes, rbytes) < 0) {
					job_err(j, path, mp_err());
					break;
				}
				fix_bits(fbuf, (size_t)y->frows * y->fcols * y->spp, y);
				lastframe = y->frame;
			}
			if (y->tile < 0)
				memcpy(dst, fbuf, sbytes);
			else {
				int tiles = y->fcols / y->cols;
				int tx = y->tile % tiles, ty = y->tile / tiles;
				size_t row = (size_t)y->cols * j->esz;
				for (int yy = 0; yy < y->rows; yy++)
					memcpy(dst + yy * row,
					       (unsigned char *)fbuf + (((size_t)(ty * y->rows + yy) * y->fcols) + (size_t)tx * y->cols) * j->esz,
					       row);
			}
			job_range(j, kk, y, (size_t)y->rows * y->cols);
		}
		mp_dcm_free(d);
	}
	free(fbuf);
	return NULL;
}

static double
rawget(const void *p, size_t i, size_t esz, int sg)
{
	switch (esz) {
	case 1: return sg ? ((const int8_t *)p)[i] : ((const uint8_t *)p)[i];
	case 2: return sg ? ((const int16_t *)p)[i] : ((const uint16_t *)p)[i];
	default: return sg ? (double)((const int32_t *)p)[i] : (double)((const uint32_t *)p)[i];
	}
}

static int
is_int(double v)
{
	return v == floor(v) && fabs(v) < 1e9;
}

static int s_by_file_cmp(const void *a, const void *b);
static const int *s_order_sl;
static const dslice *s_order_base;

static int
s_by_file_cmp(const void *a, const void *b)
{
	const dslice *x = &s_order_base[s_order_sl[*(const int *)a]], *y = &s_order_base[s_order_sl[*(const int *)b]];
	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	if (x->frame != y->frame)
		return x->frame < y->frame ? -1 : 1;
	return x->tile < y->tile ? -1 : x->tile > y->tile;
}

static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;

static void
add_keys(mp_dicom_scan *s, dseries *r, mp_frame *f, const dslice *f0, double slope_used, double inter_used)
{
	const dmeta *m = s->files[f0->file].meta;
	char hex[65];
	mp_sha256_hex(m->suid, strlen(m->suid), hex);
	hex[16] = 0;
	if (r->splitpart)
		mp_set_kvf(f, MP_K_CASE, "%s-%d", hex, r->splitpart);
	else
		mp_set_case(f, hex);
	mp_set_role(f, "image");
	mp_set_kv(f, MP_K_SOURCE, "dicom");
	if (m->modality[0])
		mp_set_kv(f, MP_K_MODALITY, m->modality);
	if (m->series_no[0])
		mp_set_kv(f, MP_K_DICOM_SERIES_NUMBER, m->series_no);
	if (m->desc[0])
		mp_set_kv(f, MP_K_DICOM_SERIES_DESCRIPTION, m->desc);
	if (m->manufacturer[0])
		mp_set_kv(f, MP_K_DICOM_MANUFACTURER, m->manufacturer);
	if (m->model[0])
		mp_set_kv(f, MP_K_DICOM_MODEL, m->model);
	if (m->kernel[0])
		mp_set_kv(f, MP_K_DICOM_KERNEL, m->kernel);
	if (m->bodypart[0])
		mp_set_kv(f, MP_K_DICOM_BODY_PART, m->bodypart);
	if (m->wc[0])
		mp_set_kv(f, MP_K_DICOM_WINDOW_CENTER, m->wc);
	if (m->ww[0])
		mp_set_kv(f, MP_K_DICOM_WINDOW_WIDTH, m->ww);
	if (m->xfer[0])
		mp_set_kv(f, MP_K_DICOM_TRANSFER_SYNTAX, m->xfer);
	if (f0->thick > 0)
		mp_set_kvf(f, MP_K_DICOM_SLICE_THICKNESS, "%g", f0->thick);
	mp_set_kvf(f, MP_K_DICOM_SLICES, "%d", r->n);
	char a[40], b[40];
	if (isnan(slope_used))
		mp_set_kv(f, MP_K_DICOM_RESCALE, "per-slice");
	else {
		mp_fmt_double(a, sizeof a, slope_used);
		mp_fmt_double(b, sizeof b, inter_used);
		mp_set_kvf(f, MP_K_DICOM_RESCALE, "%s %s", a, b);
	}
	if (f0->mosaic)
		mp_set_kvf(f, MP_K_DICOM_MOSAIC, "%d", f0->mosaic);
	if (!strcmp(f0->photo, "MONOCHROME1"))
		mp_set_kv(f, MP_K_DICOM_INVERTED, "MONOCHROME1");
	if (r->tilt > 0) {
		mp_set_kvf(f, MP_K_DICOM_TILT, "%.4f", r->tilt);
		mp_set_kv(f, MP_K_DICOM_TILT_MODE, r->ortho ? "resampled" : "sheared");
	}
	if (r->uneven) {
		mp_set_kvf(f, MP_K_DICOM_UNEVEN, "%s %.6g %.6g", r->uneven == 2 ? "split" : r->resample_z ? "resampled" : "kept",
		           r->smin, r->smax);
		if (r->resample_z)
			mp_set_kvf(f, MP_K_DICOM_UNEVEN_STEP, "%.6g", r->step);
	}
	if (!f0->has_geo)
		mp_set_kv(f, MP_K_DICOM_GEOMETRY, "none (no ImagePositionPatient/ImageOrientationPatient)");
	if (s->o.keep_phi) {
		const char *kv[][2] = { { MP_K_DICOM_PATIENT_NAME, m->pname }, { MP_K_DICOM_PATIENT_ID, m->pid },
		                        { MP_K_DICOM_BIRTH_DATE, m->birth }, { MP_K_DICOM_STUDY_DATE, m->sdate },
		                        { MP_K_DICOM_ACCESSION, m->accession }, { MP_K_DICOM_INSTITUTION, m->institution },
		                        { MP_K_DICOM_STUDY_UID, m->stuid }, { MP_K_DICOM_SERIES_UID, m->suid } };
		for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
			if (kv[i][1][0])
				mp_set_kv(f, kv[i][0], kv[i][1]);
	}
}

int
mp_dicom_load(mp_dicom_scan *s, int si, mp_frame *f)
{
	dseries *r = &s->ser[si];
	if (r->err)
		return mp_seterr("%s: %s", r->name, r->err);
	const dslice *f0 = &s->sl[r->sl[0]];
	int spp = f0->spp;
	size_t esz = (size_t)f0->balloc / 8;
	size_t npix = (size_t)r->nx_in * r->ny_in, nin = npix * spp * (size_t)r->n;
	size_t bytes;
	if (mp_mulsize(nin, esz, &bytes) < 0 || bytes > mp_max_bytes())
		return mp_seterr("%s: too large", r->name);
	loadjob j;
	memset(&j, 0, sizeof j);
	j.s = s;
	j.r = r;
	j.esz = esz;
	j.raw = malloc(bytes ? bytes : 1);
	if (!j.raw)
		return mp_seterr("%s: out of memory for %zu bytes", r->name, bytes);
	j.norder = r->n;
	j.smn = mp_xmalloc((size_t)r->n * sizeof *j.smn);
	j.smx = mp_xmalloc((size_t)r->n * sizeof *j.smx);
	j.spad = mp_xcalloc((size_t)r->n, sizeof *j.spad);
	j.order = mp_xmalloc((size_t)r->n * sizeof *j.order);
	for (int i = 0; i < r->n; i++)
		j.order[i] = i;
	pthread_mutex_lock(&order_mu);
	s_order_sl = r->sl;
	s_order_base = s->sl;
	qsort(j.order, (size_t)r->n, sizeof *j.order, s_by_file_cmp);
	pthread_mutex_unlock(&order_mu);
	pthread_mutex_init(&j.mu, NULL);
	atomic_init(&j.next, 0);
	int nt = nthreads(&s->o);
	if (nt > r->n)
		nt = r->n;
	pthread_t th[16];
	int started = 0;
	for (int t = 1; t < nt; t++)
		if (pthread_create(&th[started], NULL, load_worker, &j) == 0)
			started++;
	load_worker(&j);
	for (int t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	pthread_mutex_destroy(&j.mu);
	free(j.order);
	if (j.err || spp != 1) {
		free(j.smn);
		free(j.smx);
		free(j.spad);
	}
	if (j.err) {
		mp_seterr("%s: %s", r->name, j.err);
		free(j.err);
		free(j.raw);
		return -1;
	}
	int sg = f0->pixrep != 0;
	mp_frame_init(f);
	f->type = MP_NONE;
	double slope_used = f0->slope, inter_used = f0->inter;

	if (spp == 3) {
		f->dim = 4;
		f->size[0] = 3;
		f->size[1] = (size_t)r->nx_in;
		f->size[2] = (size_t)r->ny_in;
		f->size[3] = (size_t)r->n;
		f->type = esz == 1 ? MP_UINT8 : esz == 2 ? MP_UINT16 : MP_UINT32;
		f->data = j.raw;
		snprintf(f->kind[0], sizeof f->kind[0], "RGB-color");
		for (int a = 1; a < 4; a++)
			snprintf(f->kind[a], sizeof f->kind[a], "space");
		f->space = 1;
		f->has_dir[0] = 0;
		for (int a = 0; a < 3; a++) {
			f->has_dir[a + 1] = 1;
			memcpy(f->dir[a + 1], r->dir[a], sizeof r->dir[a]);
		}
		memcpy(f->origin, r->origin, sizeof f->origin);
		add_keys(s, r, f, f0, 1, 0);
		return 0;
	}

	/* value range, padding, inversion, rescale -> output type */
	int inv = !strcmp(f0->photo, "MONOCHROME1");
	double smin = sg ? -ldexp(1, f0->bstored - 1) : 0, smax = sg ? ldexp(1, f0->bstored - 1) - 1 : ldexp(1, f0->bstored) - 1;
	double lo = INFINITY, hi = -INFINITY;
	int allint = 1, any_pad = 0, uniform_rescale = 1;
	for (int k = 0; k < r->n; k++) {
		const dslice *x = &s->sl[r->sl[k]];
		if (!is_int(x->slope) || !is_int(x->inter))
			allint = 0;
		if (x->slope != f0->slope || x->inter != f0->inter)
			uniform_rescale = 0;
		double mn = j.smn[k], mx = j.smx[k];
		any_pad |= j.spad[k];
		if (mn > mx)
			continue;
		if (inv) {
			double t = smin + smax - mx;
			mx = smin + smax - mn;
			mn = t;
		}
		double a = mn * x->slope + x->inter, b = mx * x->slope + x->inter;
		if (a > b) {
			double t = a;
			a = b;
			b = t;
		}
		if (a < lo)
			lo = a;
		if (b > hi)
			hi = b;
	}
	free(j.smn);
	free(j.smx);
	free(j.spad);
	if (lo > hi)
		lo = hi = 0;
	mp_type ot;
	if (s->o.float_out || !allint)
		ot = MP_FLOAT32;
	else if (lo >= 0 && hi <= 255 && esz == 1)
		ot = MP_UINT8;
	else if (lo >= -32768 && hi <= 32767)
		ot = MP_INT16;
	else if (lo >= 0 && hi <= 65535)
		ot = MP_UINT16;
	else if (lo >= -2147483648.0 && hi <= 2147483647.0)
		ot = MP_INT32;
	else
		ot = MP_FLOAT32;
	double padval = lo;
	size_t osz = mp_type_size(ot);
	void *out = j.raw;
	int ident = uniform_rescale && f0->slope == 1 && f0->inter == 0 && !any_pad && !inv && osz == esz &&
	            ((ot == MP_INT16 && sg && esz == 2) || (ot == MP_UINT16 && !sg && esz == 2) ||
	             (ot == MP_UINT8 && !sg && esz == 1) || (ot == MP_INT32 && sg && esz == 4));
	if (!ident) {
		if (osz != esz) {
			size_t ob;
			if (mp_mulsize(npix * (size_t)r->n, osz, &ob) < 0 || !(out = malloc(ob ? ob : 1))) {
				free(j.raw);
				return mp_seterr("%s: out of memory", r->name);
			}
		}
		/* in place works front to back when sizes are equal */
		for (int k = 0; k < r->n; k++) {
			const dslice *x = &s->sl[r->sl[k]];
			const void *p = (const unsigned char *)j.raw + (size_t)k * npix * esz;
			size_t base = (size_t)k * npix;
			double plo = x->has_pad ? x->pad : 0, phi = x->has_padlim ? x->padlim : plo;
			if (plo > phi) {
				double t = plo;
				plo = phi;
				phi = t;
			}
			if (ot == MP_INT16 && esz == 2 && !inv && !x->has_pad && is_int(x->slope) && is_int(x->inter)) {
				/* the common CT case */
				int16_t *o = (int16_t *)out + base;
				long sl = (long)x->slope, in = (long)x->inter;
				if (sg)
					lin_i16(o, p, npix, (int)sl, (int)in);
				else
					lin_u16(o, p, npix, (int)sl, (int)in);
				continue;
			}
			for (size_t i = 0; i < npix; i++) {
				double v = rawget(p, i, esz, sg), w;
				if (x->has_pad && v >= plo && v <= phi)
					w = padval;
				else {
					if (inv)
						v = smin + smax - v;
					w = v * x->slope + x->inter;
				}
				mp_put(out, ot, base + i, w);
			}
		}
		if (out != j.raw)
			free(j.raw);
	}
	if (!uniform_rescale)
		slope_used = NAN;
	f->dim = 3;
	f->size[0] = (size_t)r->nx_in;
	f->size[1] = (size_t)r->ny_in;
	f->size[2] = (size_t)r->n;
	f->type = ot;
	f->data = out;

	/* uneven spacing: linear interpolation along the stack at d0 + k*step */
	if (r->resample_z) {
		size_t ob;
		if (mp_mulsize(npix * (size_t)r->nz, osz, &ob) < 0) {
			mp_frame_free(f);
			return mp_seterr("%s: too large", r->name);
		}
		void *o2 = malloc(ob ? ob : 1);
		if (!o2) {
			mp_frame_free(f);
			return mp_seterr("%s: out of memory", r->name);
		}
		int a = 0;
		for (int k = 0; k < r->nz; k++) {
			double dk = r->d0 + k * r->step;
			while (a + 2 < r->n && s->sl[r->sl[a + 1]].d <= dk + 1e-9)
				a++;
			double da = s->sl[r->sl[a]].d, db = s->sl[r->sl[a + 1]].d;
			double t = (dk - da) / (db - da);
			if (t < 0)
				t = 0;
			if (t > 1)
				t = 1;
			if (fabs(t) < 1e-6 || fabs(t - 1) < 1e-6) {
				int src = a + (t > 0.5);
				memcpy((unsigned char *)o2 + (size_t)k * npix * osz, (unsigned char *)out + (size_t)src * npix * osz, npix * osz);
				continue;
			}
			for (size_t i = 0; i < npix; i++) {
				double va = mp_get(out, ot, (size_t)a * npix + i), vb = mp_get(out, ot, (size_t)(a + 1) * npix + i);
				mp_put(o2, ot, (size_t)k * npix + i, va + t * (vb - va));
			}
		}
		free(out);
		out = o2;
		f->data = out;
		f->size[2] = (size_t)r->nz;
	}
	/* tilt: shift each slice in plane (bilinear) onto an orthogonal grid */
	if (r->ortho) {
		size_t onpix = (size_t)r->nx * r->ny, ob;
		if (mp_mulsize(onpix * (size_t)r->nz, osz, &ob) < 0) {
			mp_frame_free(f);
			return mp_seterr("%s: too large", r->name);
		}
		void *o3 = malloc(ob ? ob : 1);
		if (!o3) {
			mp_frame_free(f);
			return mp_seterr("%s: out of memory", r->name);
		}
		for (int k = 0; k < r->nz; k++) {
			for (int y = 0; y < r->ny; y++)
				for (int x = 0; x < r->nx; x++) {
					double xi = x + r->ox0 - k * r->shift[0], yi = y + r->oy0 - k * r->shift[1];
					double w = padval;
					int x0 = (int)floor(xi), y0 = (int)floor(yi);
					if (xi > -1e-6 && yi > -1e-6 && xi < r->nx_in - 1 + 1e-6 && yi < r->ny_in - 1 + 1e-6) {
						double fx = xi - x0, fy = yi - y0;
						int x1 = x0 + 1 < r->nx_in ? x0 + 1 : x0, y1 = y0 + 1 < r->ny_in ? y0 + 1 : y0;
						if (x0 < 0)
							x0 = 0;
						if (y0 < 0)
							y0 = 0;
						size_t b = (size_t)k * npix;
						double v00 = mp_get(out, ot, b + (size_t)y0 * r->nx_in + x0);
						double v10 = mp_get(out, ot, b + (size_t)y0 * r->nx_in + x1);
						double v01 = mp_get(out, ot, b + (size_t)y1 * r->nx_in + x0);
						double v11 = mp_get(out, ot, b + (size_t)y1 * r->nx_in + x1);
						w = (v00 * (1 - fx) + v10 * fx) * (1 - fy) + (v01 * (1 - fx) + v11 * fx) * fy;
					}
					mp_put(o3, ot, (size_t)k * onpix + (size_t)y * r->nx + x, w);
				}
		}
		free(out);
		f->data = o3;
		f->size[0] = (size_t)r->nx;
		f->size[1] = (size_t)r->ny;
	}
	f->space = 1;
	for (int a = 0; a < 3; a++) {
		f->has_dir[a] = 1;
		memcpy(f->dir[a], r->dir[a], sizeof r->dir[a]);
		snprintf(f->kind[a], sizeof f->kind[a], "space");
	}
	memcpy(f->origin, r->origin, sizeof f->origin);
	add_keys(s, r, f, f0, slope_used, inter_used);
	if (any_pad) {
		char pv[40];
		mp_fmt_double(pv, sizeof pv, padval);
		mp_set_kv(f, MP_K_DICOM_PADDING_TO, pv);
	}
	return 0;
}
