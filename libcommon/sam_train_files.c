/* sam_train_files.c - MedSAM's training files for sam-tune: npz files
 * (imgs, gts) and per-slice npy folders (imgs/CASE-NNN.npy, gts/CASE-NNN.npy)
 * as image + label frame pairs (mp_train.h). The containers are read by the
 * project's own readers (mp_npz_read, mp_npy_read). */
#include "mp_train.h"
#include "mp.h"
#include "mp_fmt.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int
is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int
ends(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

int
mp_tune_files_is(const char *path)
{
	if (ends(path, ".npz") || ends(path, ".NPZ"))
		return 1;
	if (!is_dir(path))
		return 0;
	size_t n = strlen(path) + 8;
	char *a = mp_xmalloc(n), *b = mp_xmalloc(n);
	snprintf(a, n, "%s/imgs", path);
	snprintf(b, n, "%s/gts", path);
	int r = is_dir(a) && is_dir(b);
	free(a);
	free(b);
	return r;
}

/* a colour frame (first axis of 3 or 4 samples) whose channels are equal
 * becomes grey in place (type kept, or float32 when tofloat); a grey frame
 * is left alone (converted to float32 when tofloat) */
static int
to_grey(mp_frame *f, const char *what, int tofloat)
{
	int colour = f->dim >= 3 && (f->size[0] == 3 || f->size[0] == 4) &&
	             (strcmp(f->kind[0], "RGB-color") == 0 || strcmp(f->kind[0], "RGBA-color") == 0);
	mp_type t = tofloat ? MP_FLOAT32 : f->type;
	if (!colour) {
		if (t != f->type) {
			size_t n = mp_frame_nvox(f);
			void *g = mp_xmalloc(n * sizeof(float));
			mp_convert(g, t, f->data, f->type, n);
			mp_frame_clear_data(f);
			f->data = g;
			f->type = t;
			mp_frame_touch(f);
		}
		return 0;
	}
	size_t nc = f->size[0], np = mp_frame_nvox(f) / nc;
	for (size_t i = 0; i < np; i++)
		for (size_t c = 1; c < 3; c++)
			if (mp_get(f->data, f->type, i * nc + c) != mp_get(f->data, f->type, i * nc))
				return mp_seterr("%s: a colour image (its channels differ): only grey images (repeated to 3 "
				                 "channels) are supported", what);
	void *g = mp_xmalloc((np ? np : 1) * mp_type_size(t));
	for (size_t i = 0; i < np; i++)
		mp_put(g, t, i, mp_get(f->data, f->type, i * nc));
	mp_frame_clear_data(f);
	f->data = g;
	f->type = t;
	for (int a = 1; a < f->dim; a++) {
		f->size[a - 1] = f->size[a];
		f->has_dir[a - 1] = f->has_dir[a];
		memcpy(f->dir[a - 1], f->dir[a], sizeof f->dir[a]);
		memcpy(f->kind[a - 1], f->kind[a], sizeof f->kind[a]);
	}
	f->dim--;
	mp_frame_touch(f);
	return 0;
}

static int
read_npz(const char *path, mp_frame ***frames, size_t *n)
{
	mp_frame **fr;
	size_t nf;

	if (mp_npz_read(path, &fr, &nf))
		return -1;
	mp_frame *img = NULL, *gts = NULL;
	for (size_t i = 0; i < nf; i++) {
		const char *nm = mp_get_kv(fr[i], MP_K_NPZ_NAME);
		if (nm && strcmp(nm, "imgs") == 0)
			img = fr[i];
		else if (nm && strcmp(nm, "gts") == 0)
			gts = fr[i];
	}
	if (!img || !gts) {
		mp_frames_free(fr, nf);
		return mp_seterr("%s: no '%s' array (MedSAM's npz holds imgs and gts)", path, img ? "gts" : "imgs");
	}
	char what[600];
	snprintf(what, sizeof what, "%s: imgs", path);
	if (to_grey(img, what, 0)) {
		mp_frames_free(fr, nf);
		return -1;
	}
	char *stem = mp_fmt_stem(path);
	mp_frame **out = mp_xmalloc(2 * sizeof *out);
	out[0] = img;
	out[1] = gts;
	for (int k = 0; k < 2; k++) {
		mp_set_case(out[k], stem);
		mp_set_role(out[k], k ? "label" : "image");
		mp_del_kv(out[k], MP_K_NPZ_NAME);
	}
	free(stem);
	for (size_t i = 0; i < nf; i++)
		if (fr[i] != img && fr[i] != gts) {
			mp_frame_free(fr[i]);
			free(fr[i]);
		}
	free(fr);
	*frames = out;
	*n = 2;
	return 0;
}

typedef struct {
	char *name, *cs;    /* file name; its case (the part before -NNN) */
	long num;
} slice_file;

static int
cmp_sf(const void *a, const void *b)
{
	const slice_file *x = a, *y = b;
	int c = strcmp(x->cs, y->cs);
	return c ? c : (x->num > y->num) - (x->num < y->num);
}

static void
sf_free(slice_file *sf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(sf[i].name);
		free(sf[i].cs);
	}
	free(sf);
}

static int
read_npy_dir(const char *dir, mp_frame ***frames, size_t *n)
{
	size_t plen = strlen(dir) + 16;
	char *idir = mp_xmalloc(plen);
	snprintf(idir, plen, "%s/imgs", dir);
	DIR *dp = opendir(idir);
	if (!dp) {
		mp_seterr("%s: cannot open the folder", idir);
		free(idir);
		return -1;
	}
	slice_file *sf = NULL;
	size_t nsf = 0;
	struct dirent *de;
	while ((de = readdir(dp))) {
		const char *nm = de->d_name;
		size_t k = strlen(nm);
		if (k < 5 || strcmp(nm + k - 4, ".npy") != 0)
			continue;
		const char *dash = NULL;
		for (const char *p = nm; p < nm + k - 4; p++)
			if (*p == '-')
				dash = p;
		int ok = dash && dash > nm && dash + 1 < nm + k - 4;
		for (const char *p = dash ? dash + 1 : nm; ok && p < nm + k - 4; p++)
			ok = *p >= '0' && *p <= '9';
		if (!ok) {
			mp_seterr("%s/%s: not named CASE-NNN.npy (MedSAM's per-slice names)", idir, nm);
			closedir(dp);
			sf_free(sf, nsf);
			free(idir);
			return -1;
		}
		sf = mp_xrealloc(sf, (nsf + 1) * sizeof *sf);
		sf[nsf].name = mp_xstrdup(nm);
		sf[nsf].cs = mp_xstrdup(nm);
		sf[nsf].cs[dash - nm] = 0;
		sf[nsf].num = strtol(dash + 1, NULL, 10);
		nsf++;
	}
	closedir(dp);
	free(idir);
	if (!nsf) {
		sf_free(sf, nsf);
		return mp_seterr("%s/imgs: no .npy files", dir);
	}
	qsort(sf, nsf, sizeof *sf, cmp_sf);

	mp_frame **out = NULL;
	size_t nout = 0;
	char *path = NULL;
	int rc = -1;
	for (size_t a = 0, b; a < nsf; a = b) {
		for (b = a; b < nsf && strcmp(sf[b].cs, sf[a].cs) == 0; b++)
			;
		/* the labelled slices of case sf[a].cs */
		mp_frame **gl = mp_xcalloc(b - a, sizeof *gl);
		size_t nx = 0, ny = 0, nl = 0, *which = mp_xmalloc((b - a) * sizeof *which);
		int bad = 0;
		for (size_t i = a; i < b && !bad; i++) {
			mp_frame g;
			path = mp_xrealloc(path, strlen(dir) + strlen(sf[i].name) + 16);
			sprintf(path, "%s/gts/%s", dir, sf[i].name);
			if (mp_npy_read(path, &g)) {
				bad = 1;
				break;
			}
			size_t gx, gy, gz;
			if (mp_frame_xyz(&g, &gx, &gy, &gz) < 0 || gz != 1 || !mp_type_is_int(g.type)) {
				mp_seterr("%s: not a 2-D integer label slice", path);
				mp_frame_free(&g);
				bad = 1;
				break;
			}
			int any = 0;
			for (size_t q = 0; q < gx * gy && !any; q++)
				any = mp_get(g.data, g.type, q) != 0;
			if (!any) {
				mp_frame_free(&g);
				continue;
			}
			if (nl && (gx != nx || gy != ny)) {
				mp_seterr("%s: %zux%zu, but the case's other slices are %zux%zu", path, gx, gy, nx, ny);
				mp_frame_free(&g);
				bad = 1;
				break;
			}
			nx = gx;
			ny = gy;
			gl[nl] = mp_xmalloc(sizeof(mp_frame));
			*gl[nl] = g;
			which[nl++] = i;
		}
		mp_frame img, lab;
		mp_frame_init(&img);
		mp_frame_init(&lab);
		if (!bad && nl) {
			img.dim = lab.dim = 3;
			img.size[0] = lab.size[0] = nx;
			img.size[1] = lab.size[1] = ny;
			img.size[2] = lab.size[2] = nl;
			img.type = MP_FLOAT32;
			lab.type = MP_UINT8;
			for (int k = 0; k < 3; k++) {
				strcpy(img.kind[k], "domain");
				strcpy(lab.kind[k], "domain");
			}
			if (mp_frame_alloc(&img) || mp_frame_alloc(&lab))
				bad = 1;
		}
		for (size_t k = 0; k < nl && !bad; k++) {
			size_t i = which[k], np = nx * ny;
			mp_frame f;
			sprintf(path, "%s/imgs/%s", dir, sf[i].name);
			if (mp_npy_read(path, &f)) {
				bad = 1;
				break;
			}
			size_t fx = 0, fy = 0, fz = 0;
			if (to_grey(&f, path, 1) ||
			    ((mp_frame_xyz(&f, &fx, &fy, &fz) < 0 || fz != 1 || fx != nx || fy != ny) &&
			     mp_seterr("%s: not a %zux%zu image slice like its gts file", path, nx, ny))) {
				mp_frame_free(&f);
				bad = 1;
				break;
			}
			memcpy((float *)img.data + k * np, f.data, np * sizeof(float));
			mp_frame_free(&f);
			for (size_t q = 0; q < np; q++) {
				double v = mp_get(gl[k]->data, gl[k]->type, q);
				if (v < 0 || v > 255) {
					mp_seterr("%s/gts/%s: label %g outside 0..255", dir, sf[i].name, v);
					bad = 1;
					break;
				}
				((unsigned char *)lab.data)[k * np + q] = (unsigned char)v;
			}
		}
		for (size_t k = 0; k < nl; k++) {
			mp_frame_free(gl[k]);
			free(gl[k]);
		}
		free(gl);
		free(which);
		if (bad) {
			mp_frame_free(&img);
			mp_frame_free(&lab);
			goto out;
		}
		if (!nl)
			continue;
		mp_set_case(&img, sf[a].cs);
		mp_set_case(&lab, sf[a].cs);
		mp_set_role(&lab, "label");
		out = mp_xrealloc(out, (nout + 2) * sizeof *out);
		out[nout] = mp_xmalloc(sizeof(mp_frame));
		*out[nout++] = img;
		out[nout] = mp_xmalloc(sizeof(mp_frame));
		*out[nout++] = lab;
	}
	if (!nout) {
		mp_seterr("%s: no slice holds a label", dir);
		goto out;
	}
	rc = 0;
out:
	free(path);
	sf_free(sf, nsf);
	if (rc) {
		mp_frames_free(out, nout);
		return -1;
	}
	*frames = out;
	*n = nout;
	return 0;
}

int
mp_tune_files_read(const char *path, mp_frame ***frames, size_t *n)
{
	*frames = NULL;
	*n = 0;
	return is_dir(path) ? read_npy_dir(path, frames, n) : read_npz(path, frames, n);
}
