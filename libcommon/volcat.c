/* volcat.c - the whole of vol-cat after its options: files of every
 * format, DICOM files or folders, and frame streams read in order into one
 * frame stream, with roles, cases and label maps made whole. */
#include "mp.h"
#include "mp_dicom.h"
#include "mp_fmt.h"

#include <sys/stat.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef mp_volcat_input input;

/* "dir/case01_0000.nii.gz" -> "case01" */
static char *
case_from_path(const char *path)
{
	char *c = mp_fmt_stem(path);
	size_t n = strlen(c);

	if (n > 5 && c[n - 5] == '_' && strspn(c + n - 4, "0123456789") == 4)
		c[n - 5] = 0;
	return c;
}

/* the file is a frame stream when it starts with a NRRD magic and its first
 * header asks for nothing only a file reader handles */
static int
is_stream(const char *path)
{
	char buf[8192];
	FILE *fp;
	size_t n;

	if (strcmp(path, "-") == 0)
		return 1;
	fp = fopen(path, "rb");
	if (!fp)
		return 0;
	n = fread(buf, 1, sizeof buf - 1, fp);
	fclose(fp);
	buf[n] = 0;
	if (n < 8 || strncmp(buf, "NRRD000", 7) != 0)
		return 0;
	{
		char *end = strstr(buf, "\n\n");
		if (end)
			end[1] = 0;
	}
	if (strstr(buf, "\ndata file:") || strstr(buf, "\ndatafile:") || strstr(buf, "\nbyte skip:") ||
	    strstr(buf, "\nline skip:") || strstr(buf, "\nencoding: ascii") || strstr(buf, "\nencoding: text") ||
	    strstr(buf, "\nencoding: txt") || strstr(buf, "\nencoding: bz"))
		return 0;
	return 1;
}

/* a label map must hold whole numbers; floating point ones become integers */
static int
fix_label(mp_frame *f, const char *path, int nolabelfix)
{
	size_t n = mp_frame_nvox(f);
	double mn = INFINITY, mx = -INFINITY;
	mp_type t;
	void *d;

	if (mp_type_is_int(f->type) || nolabelfix)
		return 0;
	for (size_t i = 0; i < n; i++) {
		double v = mp_get(f->data, f->type, i);
		if (v != floor(v) || !isfinite(v))
			return mp_seterr("%s: label map holds a value that is not a whole number (%g at voxel %zu)", path, v, i);
		if (v < mn)
			mn = v;
		if (v > mx)
			mx = v;
	}
	t = mn >= 0 && mx <= 255 ? MP_UINT8 : mn >= -32768 && mx <= 32767 ? MP_INT16 :
	    mn >= 0 && mx <= 65535 ? MP_UINT16 : MP_INT32;
	if (mn < -2147483648.0 || mx > 2147483647.0)
		return mp_seterr("%s: label values out of the int32 range", path);
	d = mp_xmalloc(n * mp_type_size(t));
	mp_convert(d, t, f->data, f->type, n);
	mp_frame_clear_data(f);
	f->data = d;
	f->type = t;
	mp_frame_touch(f);
	mp_note("%s: floating-point label map stored as %s", path, mp_type_name(t));
	return 0;
}

/* a label map read from a colour picture (a mask PNG stored as RGB): its
 * first channel, as MedSAM's pre_grey_rgb.py takes gt[:, :, 0] */
static void
grey_label(mp_frame *f, const char *path)
{
	size_t n, differ = 0;
	uint8_t *d;

	if (f->dim != 3 || f->size[0] != 3 || f->type != MP_UINT8 || strcmp(f->kind[0], "RGB-color") != 0)
		return;
	n = f->size[1] * f->size[2];
	d = mp_xmalloc(n ? n : 1);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = (const uint8_t *)f->data + 3 * i;
		d[i] = p[0];
		differ += p[0] != p[1] || p[0] != p[2];
	}
	mp_frame_clear_data(f);
	f->data = d;
	f->dim = 2;
	f->size[0] = f->size[1];
	f->size[1] = f->size[2];
	f->size[2] = 0;
	f->has_dir[0] = f->has_dir[1], f->has_dir[1] = f->has_dir[2], f->has_dir[2] = 0;
	memcpy(f->dir[0], f->dir[1], sizeof f->dir[0]);
	memcpy(f->dir[1], f->dir[2], sizeof f->dir[1]);
	memset(f->dir[2], 0, sizeof f->dir[2]);
	memcpy(f->kind[0], f->kind[1], sizeof f->kind[0]);
	memcpy(f->kind[1], f->kind[2], sizeof f->kind[1]);
	f->kind[2][0] = 0;
	mp_frame_touch(f);
	if (differ)
		mp_note("%s: colour label map: its first (red) channel kept (%zu pixels had other values in green/blue)", path, differ);
}

/* a folder, or a file that is DICOM by name or content */
static int
is_dicom(const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 1;
	return mp_fmt_detect(path) == MP_FMT_DICOM;
}

/* every image series under a DICOM file or folder, as dcm2vol converts it
 * (default options: no identifying tags); the case is dcm2vol's unless given */
static int
read_dicom(const input *in, mp_out *o, char **lastcase, int split4d)
{
	mp_dicom_opts opt;
	mp_dicom_scan *s;
	char *paths[1] = { (char *)in->path };
	int ns, rc = 0;

	mp_dicom_opts_init(&opt);
	s = mp_dicom_scan_paths(paths, 1, &opt);
	if (!s)
		return -1;
	ns = mp_dicom_nseries(s);
	if (ns == 0) {
		size_t e = mp_dicom_nfile_errors(s);
		rc = e ? mp_seterr("%s", mp_dicom_file_error(s, 0)) : mp_seterr("%s: no DICOM image series found", in->path);
	}
	for (int i = 0; i < ns && rc == 0; i++) {
		mp_frame f;
		int vi, nv = mp_dicom_volumes(s, i, &vi);
		mp_frame_init(&f);
		if (nv > 1 && !split4d && vi > 0)
			continue;   /* in the 4D frame of its first volume */
		if ((nv > 1 && !split4d ? mp_dicom_load4d(s, i, &f) : mp_dicom_load(s, i, &f)) < 0) {
			rc = mp_preerr("%s: %s", in->path, mp_dicom_series_name(s, i));
			break;
		}
		if (in->role)
			mp_set_role(&f, in->role);
		else if (!mp_get_kv(&f, MP_K_ROLE))
			mp_set_role(&f, "image");
		if (in->kase)
			mp_set_case(&f, in->kase);
		if (!mp_get_kv(&f, MP_K_SOURCE))
			mp_set_kv(&f, MP_K_SOURCE, "DICOM");
		free(*lastcase);
		*lastcase = mp_xstrdup(mp_case(&f));
		rc = mp_out_frame(o, &f);
		mp_frame_free(&f);
	}
	mp_dicom_scan_free(s);
	return rc;
}

void
mp_volcat_stream(const mp_volcat_opts *opt, const mp_volcat_input *inputs, size_t ninputs)
{
	static const mp_volcat_input stdin_input = { "-", NULL, NULL };
	int nolabelfix = opt->nolabelfix;
	long series = opt->series;
	mp_out *o;
	char *lastcase = NULL;
	size_t nframes = 0;

	if (opt->nocolour)
		mp_npy_set_colour(0);
	if (ninputs == 0)
		inputs = &stdin_input, ninputs = 1;
	o = mp_out_stdout();
	for (size_t i = 0; i < ninputs; i++) {
		const input *in = &inputs[i];
		if (is_stream(in->path)) {
			mp_in *s = mp_in_open(in->path);
			mp_frame f;
			int r;
			if (!s)
				mp_die("%s", mp_err());
			while ((r = mp_in_header(s, &f)) == 1) {
				int plain = !mp_get_kv(&f, MP_K_ROLE);   /* a NRRD from elsewhere */
				if (in->role)
					mp_set_role(&f, in->role);
				else if (plain)
					mp_set_role(&f, "image");
				if (in->kase)
					mp_set_case(&f, in->kase);
				else if (!mp_get_kv(&f, MP_K_CASE) && strcmp(in->path, "-") != 0) {
					/* a NRRD file from elsewhere: a case as for other files */
					char *c = strcmp(mp_role(&f), "image") != 0 && lastcase ? mp_xstrdup(lastcase)
												 : case_from_path(in->path);
					mp_set_case(&f, c);
					free(c);
				}
				if (plain && strcmp(mp_role(&f), "label") == 0 && !mp_type_is_int(f.type) && !nolabelfix) {
					/* a floating-point label map from elsewhere, as for other files */
					if (mp_in_rest(s, &f) < 0 || fix_label(&f, in->path, nolabelfix) < 0 || mp_out_frame(o, &f) < 0)
						mp_die("%s", mp_err());
				} else if (mp_pass(s, &f, o) < 0)
					mp_die("%s", mp_err());
				free(lastcase);
				lastcase = mp_xstrdup(mp_case(&f));
				mp_frame_free(&f);
				nframes++;
			}
			if (r < 0)
				mp_die("%s", mp_err());
			if (mp_in_frameno(s) == 0)
				mp_in_die_empty(s);
			mp_in_close(s);
			continue;
		}
		if (is_dicom(in->path)) {
			char *kase = NULL;
			if (read_dicom(in, o, &kase, opt->split4d) < 0)
				mp_die("%s", mp_err());
			free(lastcase);
			lastcase = kase;
			nframes++;
			continue;
		}
		{
			mp_frame **fr = NULL;
			size_t n = 0;
			const char *role = in->role ? in->role : "image", *src;
			char *kase;
			if (mp_file_read(in->path, &fr, &n) < 0)
				mp_die("%s", mp_err());
			src = mp_fmt_name(mp_fmt_detect(in->path));
			if (in->kase)
				kase = mp_xstrdup(in->kase);
			else if (strcmp(role, "image") != 0 && lastcase)
				kase = mp_xstrdup(lastcase);
			else
				kase = case_from_path(in->path);
			size_t kept = 0, nseries = 0;
			for (size_t k = 0; k < n; k++) {
				mp_frame *f = fr[k];
				const char *sk = mp_get_kv(f, MP_K_SERIES);
				if (sk && (size_t)atol(sk) + 1 > nseries)
					nseries = (size_t)atol(sk) + 1;
				if (series >= 0 && (!sk || atol(sk) != series)) {
					mp_frame_free(f);
					free(f);
					continue;
				}
				kept++;
				if (in->role || !mp_get_kv(f, MP_K_ROLE))
					mp_set_role(f, role);
				mp_set_case(f, kase);
				if (!mp_get_kv(f, MP_K_SOURCE))
					mp_set_kv(f, MP_K_SOURCE, src);
				if (strcmp(mp_role(f), "label") == 0)
					grey_label(f, in->path);
				if (strcmp(mp_role(f), "label") == 0 && fix_label(f, in->path, nolabelfix) < 0)
					mp_die("%s", mp_err());
				if (mp_out_frame(o, f) < 0)
					mp_die("%s", mp_err());
				mp_frame_free(f);
				free(f);
				nframes++;
			}
			free(fr);
			if (series >= 0 && kept == 0)
				mp_die("%s: no series %ld (the file holds %zu)", in->path, series, nseries ? nseries : 1);
			free(lastcase);
			lastcase = kase;
		}
	}
	if (mp_out_close(o) < 0)
		mp_die("%s", mp_err());
	mp_note("%zu frames from %zu inputs", nframes, ninputs);
	free(lastcase);
}
