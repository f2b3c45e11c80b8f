/* eval_csv.c - seg-eval after its options: predictions and references read
 * from frame streams or image files, matched by case (or in order), their
 * per-label and per-case metrics (eval.c) written as CSV at the end.
 */
#include "mp.h"
#include "mp_eval.h"
#include "mp_fmt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the options of this run, set by mp_seg_eval_stream */
static const char *ref_role, *pred_role, *ref_file, *outpath;
static double tol, gate;
static long digits;
static int no_nsd, summary, all_nsd;

typedef struct {
	char *casename;
	int frameno;
	size_t dim[3];
	double sp[3];
	int32_t *lab;
	char *src;
} vol;

static void
vol_free(vol *v)
{
	free(v->casename);
	free(v->lab);
	free(v->src);
	memset(v, 0, sizeof *v);
}

/* a frame whose data is loaded, from file src (frame number fno) */
static int
frame_vol(mp_frame *f, const char *src, int fno, vol *v)
{
	size_t nx, ny, nz;
	if (mp_frame_xyz(f, &nx, &ny, &nz) < 0)
		return mp_seterr("%s: frame %d: not a scalar 2D or 3D frame", src, fno);
	size_t n = nx * ny * nz;
	v->dim[0] = nx; v->dim[1] = ny; v->dim[2] = nz;
	for (int a = 0; a < 3; a++)
		v->sp[a] = a < f->dim ? mp_spacing(f, a) : 1.0;
	v->lab = mp_xmalloc(n * sizeof *v->lab);
	/* exact integer types: a plain widening copy */
	switch (f->type) {
	case MP_UINT8: { const uint8_t *d = f->data; for (size_t i = 0; i < n; i++) v->lab[i] = d[i]; n = 0; break; }
	case MP_INT8: { const int8_t *d = f->data; for (size_t i = 0; i < n; i++) v->lab[i] = d[i]; n = 0; break; }
	case MP_UINT16: { const uint16_t *d = f->data; for (size_t i = 0; i < n; i++) v->lab[i] = d[i]; n = 0; break; }
	case MP_INT16: { const int16_t *d = f->data; for (size_t i = 0; i < n; i++) v->lab[i] = d[i]; n = 0; break; }
	case MP_INT32: memcpy(v->lab, f->data, n * sizeof *v->lab); n = 0; break;
	default: break;
	}
	for (size_t i = 0; i < n; i++) {
		double d = mp_get(f->data, f->type, i);
		if (!(d >= INT32_MIN && d <= INT32_MAX) || d != floor(d)) {
			free(v->lab);
			v->lab = NULL;
			return mp_seterr("%s: frame %d: voxel %zu: value %g is not an integer label",
			                 src, fno, i, d);
		}
		v->lab[i] = (int32_t)d;
	}
	if (*mp_case(f) || strcmp(src, "<stdin>") == 0 || strcmp(src, "-") == 0)
		v->casename = mp_xstrdup(mp_case(f));
	else
		v->casename = mp_fmt_stem(src);   /* no case: the file's name */
	v->frameno = fno;
	v->src = mp_xstrdup(src);
	mp_frame_clear_data(f);
	return 0;
}

static int
read_vol(mp_in *in, mp_frame *f, vol *v)
{
	size_t nx, ny, nz;
	if (mp_frame_xyz(f, &nx, &ny, &nz) < 0)
		return mp_seterr("%s: frame %d: not a scalar 2D or 3D frame", mp_in_name(in), mp_in_frameno(in));
	if (mp_in_rest(in, f) < 0)
		return -1;
	return frame_vol(f, mp_in_name(in), mp_in_frameno(in), v);
}

/* a frame of role image: a CT next to its labels, skipped with --ref.  A
 * frame without medpipe.role (a plain .nrrd from 3D Slicer, pyradiomics, ...)
 * counts whatever it holds, as an image file does. */
static int
is_image_role(const mp_frame *f)
{
	const char *r = mp_get_kv(f, MP_K_ROLE);

	return r && strcmp(r, "image") == 0;
}

/* a path that is not a frame stream but an image file (NIfTI, MetaImage, ...) */
static int
is_image_file(const char *path)
{
	if (strcmp(path, "-") == 0)
		return 0;
	mp_fmt t = mp_fmt_detect(path);
	return t != MP_FMT_UNKNOWN && t != MP_FMT_NRRD;
}

/* every frame of an image file as vols appended to *vs */
static void
read_image_file(const char *path, vol **vs, size_t *nv)
{
	mp_frame **fr;
	size_t n;
	if (mp_file_read(path, &fr, &n) < 0)
		mp_die("%s", mp_err());
	for (size_t k = 0; k < n; k++) {
		*vs = mp_xrealloc(*vs, (*nv + 1) * sizeof **vs);
		memset(&(*vs)[*nv], 0, sizeof **vs);
		if (frame_vol(fr[k], path, (int)k + 1, &(*vs)[*nv]) < 0)
			mp_die("%s", mp_err());
		(*nv)++;
	}
	mp_frames_free(fr, n);
}

static FILE *out;

static void
csv_field(const char *s)
{
	if (strpbrk(s, ",\"\n")) {
		fputc('"', out);
		for (; *s; s++) {
			if (*s == '"')
				fputc('"', out);
			fputc(*s, out);
		}
		fputc('"', out);
	} else
		fputs(s, out);
}

static void
num(double d, int empty)
{
	if (empty)
		return;
	if (isnan(d))
		fputs("nan", out);
	else
		fprintf(out, "%.*f", (int)digits, d);
}

static void
evaluate(const vol *r, const vol *p)
{
	if (r->dim[0] != p->dim[0] || r->dim[1] != p->dim[1] || r->dim[2] != p->dim[2])
		mp_die("%s: frame %d: sizes %zux%zux%zu differ from the reference's %zux%zux%zu (%s frame %d)",
		       p->src, p->frameno, p->dim[0], p->dim[1], p->dim[2], r->dim[0], r->dim[1], r->dim[2],
		       r->src, r->frameno);
	for (int a = 0; a < 3; a++)
		if (fabs(r->sp[a] - p->sp[a]) > 1e-4 * fabs(r->sp[a]))
			mp_die("%s: frame %d: spacing %g of axis %d differs from the reference's %g",
			       p->src, p->frameno, p->sp[a], a, r->sp[a]);
	mp_eval_label *L;
	size_t nl;
	if (mp_eval_labels(r->lab, p->lab, r->dim, r->sp, tol, no_nsd ? 0 : all_nsd ? 2 : 1, &L, &nl) < 0)
		mp_die("%s: frame %d: %s", p->src, p->frameno, mp_err());
	if (!summary)
		for (size_t i = 0; i < nl; i++) {
			csv_field(p->casename);
			fprintf(out, ",%d,%ld,%zu,%zu,", p->frameno, (long)L[i].label, L[i].nref, L[i].npred);
			num(L[i].dice, 0);
			fputc(',', out);
			num(L[i].nsd, no_nsd || (L[i].nref == 0 && !all_nsd));
			fputc('\n', out);
		}
	double d, s;
	mp_eval_case(L, nl, no_nsd ? 0 : gate, &d, &s);
	size_t tr = 0, tp = 0;
	for (size_t i = 0; i < nl; i++) {
		tr += L[i].nref;
		tp += L[i].npred;
	}
	csv_field(p->casename);
	fprintf(out, ",%d,all,%zu,%zu,", p->frameno, tr, tp);
	num(d, 0);
	fputc(',', out);
	num(s, no_nsd);
	fputc('\n', out);
	free(L);
}

/* ---------------------------------------------------------------- the frame loop */
static vol *refs;            /* --ref: the references, in order */
static size_t nrefs, used;
static int npreds, refseen;

/* --ref FILE as a frame stream: every frame but images is a reference */
static int
refs_role(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	(void)ctx, (void)in, (void)c;
	refseen++;
	return is_image_role(f) ? MP_CASE_SKIP : MP_CASE_READ;   /* a CT is not a reference */
}

static int
ref_frame(void *ctx, mp_in *in, mp_frame *f, mp_out *o)
{
	(void)ctx, (void)o;
	refs = mp_xrealloc(refs, (nrefs + 1) * sizeof *refs);
	memset(&refs[nrefs], 0, sizeof *refs);
	if (read_vol(in, f, &refs[nrefs]) < 0)
		return -1;
	nrefs++;
	return 0;
}

/* a prediction against the reference of its case, else the next one */
static void
evaluate_next(vol *p)
{
	const vol *rv = NULL;
	if (*p->casename)
		for (size_t k = 0; k < nrefs && !rv; k++)
			if (strcmp(refs[k].casename, p->casename) == 0)
				rv = &refs[k];
	if (!rv) {
		if (used >= nrefs)
			mp_die("%s: frame %d: no reference for this prediction (case '%s')", p->src, p->frameno, p->casename);
		rv = &refs[used];
	}
	used++;
	evaluate(rv, p);
	npreds++;
	vol_free(p);
}

/* an input that is an image file (with --ref): its frames are predictions */
static int
image_input(void *ctx, const char *path)
{
	(void)ctx;
	if (!is_image_file(path))
		return 0;
	if (!ref_file)
		mp_usage_die("%s: an image file as input needs --ref (or make it a frame stream with vol-cat)", path);
	vol *ps = NULL;
	size_t np = 0;
	read_image_file(path, &ps, &np);
	for (size_t k = 0; k < np; k++) {
		if (used >= nrefs)
			mp_die("%s: frame %zu: no reference left for this prediction", path, k + 1);
		evaluate(&refs[used++], &ps[k]);
		npreds++;
		vol_free(&ps[k]);
	}
	free(ps);
	return 1;
}

/* with --ref every frame but images is a prediction; else frames of the
 * reference and prediction roles are held by case */
static int
frame_role(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	const char *role = mp_role(f);

	(void)ctx, (void)in, (void)c;
	if (ref_file)
		return is_image_role(f) ? MP_CASE_SKIP : MP_CASE_HOLD;
	return strcmp(role, ref_role) == 0 || strcmp(role, pred_role) == 0 ? MP_CASE_HOLD : MP_CASE_SKIP;
}

static int
frame_check(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	size_t nx, ny, nz;

	(void)ctx;
	if (mp_frame_xyz(f, &nx, &ny, &nz) < 0)
		return mp_seterr("%s: frame %d: not a scalar 2D or 3D frame", mp_in_name(in), mp_in_frameno(in));
	if (!ref_file && strcmp(mp_role(f), ref_role) == 0)
		for (size_t k = 0; k < c->n; k++)
			if (strcmp(mp_role(&c->f[k]), ref_role) == 0)
				return mp_seterr("%s: frame %d: a second reference (role %s) for case '%s'", mp_in_name(in),
				                 mp_in_frameno(in), ref_role, c->name);
	return 0;
}

static void
held_vol(mp_heldcase *c, size_t k, vol *v)
{
	memset(v, 0, sizeof *v);
	if (frame_vol(&c->f[k], c->fsrc[k], c->fno[k], v) < 0)
		mp_die("%s", mp_err());
}

/* a case: its predictions, in order, against its reference */
static int
each_case(void *ctx, mp_heldcase *c, mp_out *o)
{
	size_t r = 0, npend = 0;
	vol ref, *pend = mp_xmalloc((c->n + 1) * sizeof *pend);

	(void)ctx, (void)o;
	if (ref_file) {
		for (size_t k = 0; k < c->n; k++) {
			held_vol(c, k, &pend[0]);
			evaluate_next(&pend[0]);
		}
		free(pend);
		return 0;
	}
	while (r < c->n && strcmp(mp_role(&c->f[r]), ref_role) != 0)
		held_vol(c, r++, &pend[npend++]);   /* predictions before the reference */
	if (r == c->n && npend)
		mp_die("%s: frame %d: no reference (role %s) for case '%s'", pend[0].src, pend[0].frameno, ref_role, c->name);
	if (r < c->n) {
		held_vol(c, r, &ref);
		for (size_t k = 0; k < c->n; k++) {
			if (k == r)
				continue;
			if (k > r)
				held_vol(c, k, &pend[k - 1]);
			evaluate(&ref, &pend[k - (k > r)]);
			vol_free(&pend[k - (k > r)]);
			npreds++;
		}
		vol_free(&ref);
	}
	free(pend);
	return 0;
}

void
mp_seg_eval_stream(const mp_seg_eval_opts *opt, char **args, int nargs)
{
	mp_afile *af = NULL;

	ref_role = opt->ref_role ? opt->ref_role : "label", pred_role = opt->pred_role ? opt->pred_role : "mask";
	ref_file = opt->ref_file, outpath = opt->output;
	tol = opt->tolerance, gate = opt->gate, digits = opt->digits;
	no_nsd = opt->no_nsd, summary = opt->summary, all_nsd = opt->all_nsd;
	if (!(tol >= 0))
		mp_usage_die("--tolerance: must be >= 0");
	if (digits < 0 || digits > 17)
		mp_usage_die("--digits: must be 0..17");
	if (ref_file && is_image_file(ref_file)) {
		read_image_file(ref_file, &refs, &nrefs);
	} else if (ref_file) {
		char *one[] = { (char *)ref_file };
		mp_read_frames(one, 1, NULL, &(mp_reader){ refs_role, NULL, ref_frame, NULL, NULL, 0, 1 }, NULL);
		if (nrefs == 0)
			mp_die("%s: no reference frame in it (%s)", ref_file, refseen ? "only images" : "empty stream");
	}
	for (int i = 0; i < nargs; i++)
		if (!ref_file && is_image_file(args[i]))
			mp_usage_die("%s: an image file as input needs --ref (or make it a frame stream with vol-cat)", args[i]);
	/* the CSV is kept in memory and written at the end: a run that fails
	 * half way writes nothing */
	char *csv = NULL;
	size_t csvlen = 0;
	out = open_memstream(&csv, &csvlen);
	if (!out)
		mp_die("out of memory:");
	fputs("case,pred,label,ref_voxels,pred_voxels,dice,nsd\n", out);

	mp_read_frames(args, nargs, NULL,
	               &(mp_reader){ frame_role, frame_check, NULL, each_case, image_input, ref_file != NULL, 0 }, NULL);
	if (npreds == 0)
		mp_die("no prediction frames (role %s) in the input", ref_file ? "not image" : pred_role);
	for (size_t k = 0; k < nrefs; k++)
		vol_free(&refs[k]);
	free(refs);
	free(args);
	if (fclose(out) != 0)
		mp_die("out of memory:");
	if (outpath) {
		af = mp_afile_open(outpath);
		if (!af)
			mp_die("%s", mp_err());
		fwrite(csv, 1, csvlen, af->fp);
		if (mp_afile_commit(af) < 0)
			mp_die("%s", mp_err());
	} else if (fwrite(csv, 1, csvlen, stdout) != csvlen || fflush(stdout) != 0 || ferror(stdout))
		mp_die("<stdout>: write error:");
	free(csv);
}
