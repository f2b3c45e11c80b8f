/* seg-eval - Dice and normalised surface Dice per label and per case, as CSV */
#include "mp.h"
#include "mp_eval.h"
#include "mp_fmt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *ref_role = "label", *pred_role = "mask", *ref_file, *outpath;
static double tol = 2.0, gate = 0.2;
static long digits = 4;
static int no_nsd, summary, all_nsd;

static const mp_opt opts[] = {
	{ "tolerance", 't', MP_OPT_DBL, &tol, NULL, "MM", "Tolerance of the surface Dice in mm (default 2)." },
	{ "ref", 'r', MP_OPT_STR, &ref_file, NULL, "FILE", "Read the reference frames from FILE: a frame stream (its frames of every role but image, so a stream of CT and labels can be given as it is) or an image file (.nii.gz, .nrrd, .mha, .npz, ...: every frame it holds, whatever its role; a .nrrd from another program, without " MP_K_ROLE ", counts as such a file); each prediction is matched to the reference of its case, or, when cases are not set, to the next reference in order. Every input frame that is not of role image (a frame without " MP_K_ROLE " included) is then a prediction, and inputs may be image files too." },
	{ "ref-role", 0, MP_OPT_STR, &ref_role, NULL, "ROLE", "Role of the reference frames in the input stream (default label)." },
	{ "pred-role", 0, MP_OPT_STR, &pred_role, NULL, "ROLE", "Role of the prediction frames in the input stream (default mask)." },
	{ "no-nsd", 0, MP_OPT_FLAG, &no_nsd, NULL, NULL, "Dice only (the nsd column is empty)." },
	{ "gate", 0, MP_OPT_DBL, &gate, NULL, "D", "Case NSD is 0 when the case Dice is <= D, as in MedSAM's evaluation (default 0.2; 0 turns it off)." },
	{ "all-labels-nsd", 0, MP_OPT_FLAG, &all_nsd, NULL, NULL, "Also compute the NSD of labels that are only in the prediction (always 0 when computed; by default left empty)." },
	{ "summary", 's', MP_OPT_FLAG, &summary, NULL, NULL, "Only the per-case rows (label 'all')." },
	{ "digits", 'd', MP_OPT_INT, &digits, NULL, "N", "Decimals of dice and nsd (default 4, as MedSAM's CSV)." },
	{ "output", 'o', MP_OPT_STR, &outpath, NULL, "FILE", "Write the CSV to FILE (atomically) instead of standard output." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"seg-eval",
	"Dice and normalised surface Dice of predictions against a reference, as CSV",
	"[options] [FILE...]",
	"seg-eval reads frames from the FILEs (none or '-': standard input) and compares every "
	"prediction frame (role mask) with the reference frame (role label) of the same case "
	"(" MP_K_CASE "; frames of a case are adjacent, the reference may come before or after its "
	"predictions). With --ref, the references come from a separate stream instead. Frames of "
	"other roles are skipped. Reference and prediction must have the same sizes and spacing.\n\n"
	"For every label present in either frame it prints a CSV row: case (the prediction's "
	MP_K_CASE "; for a file without one, the file's name without extension), pred (the "
	"prediction's frame number in its input), label, ref_voxels, pred_voxels, dice, nsd; then "
	"one row with label 'all': the case summary. The CSV is written at the end (to standard "
	"output, or atomically to --output): a run that fails writes none.\n\n"
	"The numbers are those of MedSAM's CVPR 2024 evaluation (compute_metrics.py with "
	"SurfaceDice.py, the method of DeepMind's surface-distance): Dice = 2|A and B|/(|A|+|B|); "
	"NSD: surface elements at the corners of the voxel grid whose 2x2x2 neighbourhood is neither "
	"empty nor full, each with an area from the marching-cubes table scaled by the spacing, "
	"distances from an exact Euclidean distance transform with the spacing; NSD = (area of "
	"reference surface within the tolerance of the predicted surface + area of predicted surface "
	"within the tolerance of the reference surface) / (area of both surfaces). The spacing of "
	"each axis comes from the frame (space directions), so a volume of numpy shape (Z,Y,X) is "
	"measured with spacing (sz,sy,sx).\n\n"
	"Empty labels: the case summary (label 'all') is the mean over the labels present in the "
	"reference, as MedSAM computes it; a label only in the prediction gets a row (dice 0, nsd "
	"empty unless --all-labels-nsd) but does not count in the case summary. A reference label "
	"missing from the prediction has dice 0 and nsd 0. A reference with no label at all gives "
	"nan in the summary row. If the case Dice is <= 0.2 the case NSD is 0 (MedSAM's gate; "
	"--gate). 2D frames are one slice thick: the surface includes both faces, as MedSAM's "
	"expand_dims evaluation of 2D images does (MedSAM uses spacing 1,1,1 there; the frame's "
	"spacing is used here).",
	"$ seg-eval --ref seg.nii.gz pred.nii.gz\n"
	"Compare a prediction with a reference, both NIfTI files.\n"
	"$ vol-cat --label ref.nii.gz --mask pred.nii.gz | seg-eval -t 1 -o metrics.csv\n"
	"Both in one stream, tolerance 1 mm, CSV to a file.",
	"vol-cat(1), vol-preview(1), sam-decode(1), medpipe(7)",
	opts, 0
};

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

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);
	mp_afile *af = NULL;

	if (!(tol >= 0))
		mp_usage_die("--tolerance: must be >= 0");
	if (digits < 0 || digits > 17)
		mp_usage_die("--digits: must be 0..17");
	vol *refs = NULL;
	size_t nrefs = 0, used = 0;
	if (ref_file && is_image_file(ref_file)) {
		read_image_file(ref_file, &refs, &nrefs);
	} else if (ref_file) {
		mp_in *in = mp_in_open(ref_file);
		mp_frame f;
		int r;
		if (!in)
			mp_die("%s", mp_err());
		while ((r = mp_in_header(in, &f)) == 1) {
			if (is_image_role(&f)) {   /* a CT is not a reference */
				if (mp_in_skipdata(in) < 0)
					mp_die("%s", mp_err());
				mp_frame_free(&f);
				continue;
			}
			refs = mp_xrealloc(refs, (nrefs + 1) * sizeof *refs);
			memset(&refs[nrefs], 0, sizeof *refs);
			if (read_vol(in, &f, &refs[nrefs]) < 0)
				mp_die("%s", mp_err());
			nrefs++;
			mp_frame_free(&f);
		}
		if (r < 0)
			mp_die("%s", mp_err());
		if (nrefs == 0)
			mp_die("%s: no reference frame in it (%s)", ref_file,
			       mp_in_frameno(in) ? "only images" : "empty stream");
		mp_in_close(in);
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

	/* in-stream mode: the frames of the current case */
	vol cur_ref = { 0 };
	vol *pend = NULL;
	size_t npend = 0;
	int have_ref = 0, npreds = 0;
	char *curcase = NULL;

	for (int i = 0; i < (nargs ? nargs : 1); i++) {
		const char *path = nargs ? args[i] : "-";
		if (is_image_file(path)) {
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
			continue;
		}
		mp_in *in = mp_in_open(path);
		mp_frame f;
		int r;
		if (!in)
			mp_die("%s", mp_err());
		while ((r = mp_in_header(in, &f)) == 1) {
			const char *role = mp_role(&f);
			if (ref_file) {
				if (is_image_role(&f)) {
					if (mp_in_skipdata(in) < 0)
						mp_die("%s", mp_err());
					mp_frame_free(&f);
					continue;
				}
				vol p = { 0 };
				if (read_vol(in, &f, &p) < 0)
					mp_die("%s", mp_err());
				const vol *rv = NULL;
				if (*p.casename)
					for (size_t k = 0; k < nrefs && !rv; k++)
						if (strcmp(refs[k].casename, p.casename) == 0)
							rv = &refs[k];
				if (!rv) {
					if (used >= nrefs)
						mp_die("%s: frame %d: no reference for this prediction (case '%s')",
						       p.src, p.frameno, p.casename);
					rv = &refs[used];
				}
				used++;
				evaluate(rv, &p);
				npreds++;
				vol_free(&p);
				mp_frame_free(&f);
				continue;
			}
			int isref = strcmp(role, ref_role) == 0, ispred = strcmp(role, pred_role) == 0;
			if (!isref && !ispred) {
				if (mp_in_skipdata(in) < 0)
					mp_die("%s", mp_err());
				mp_frame_free(&f);
				continue;
			}
			if (curcase && strcmp(curcase, mp_case(&f)) != 0) {
				/* case ended: predictions that came before their reference */
				if (npend && !have_ref)
					mp_die("%s: frame %d: no reference (role %s) for case '%s'",
					       pend[0].src, pend[0].frameno, ref_role, curcase);
				for (size_t k = 0; k < npend; k++) {
					evaluate(&cur_ref, &pend[k]);
					vol_free(&pend[k]);
				}
				npend = 0;
				vol_free(&cur_ref);
				have_ref = 0;
			}
			free(curcase);
			curcase = mp_xstrdup(mp_case(&f));
			vol v = { 0 };
			if (read_vol(in, &f, &v) < 0)
				mp_die("%s", mp_err());
			if (isref) {
				if (have_ref)
					mp_die("%s: frame %d: a second reference (role %s) for case '%s'",
					       v.src, v.frameno, ref_role, curcase);
				cur_ref = v;
				have_ref = 1;
				for (size_t k = 0; k < npend; k++) {
					evaluate(&cur_ref, &pend[k]);
					vol_free(&pend[k]);
				}
				npend = 0;
			} else if (have_ref) {
				evaluate(&cur_ref, &v);
				vol_free(&v);
				npreds++;
			} else {
				pend = mp_xrealloc(pend, (npend + 1) * sizeof *pend);
				pend[npend++] = v;
				npreds++;
			}
			mp_frame_free(&f);
		}
		if (r < 0)
			mp_die("%s", mp_err());
		if (mp_in_frameno(in) == 0)
			mp_in_die_empty(in);
		mp_in_close(in);
	}
	if (npend && !have_ref)
		mp_die("%s: frame %d: no reference (role %s) for case '%s'",
		       pend[0].src, pend[0].frameno, ref_role, curcase ? curcase : "");
	for (size_t k = 0; k < npend; k++) {
		evaluate(&cur_ref, &pend[k]);
		vol_free(&pend[k]);
	}
	if (npreds == 0)
		mp_die("no prediction frames (role %s) in the input", ref_file ? "not image" : pred_role);
	vol_free(&cur_ref);
	free(pend);
	free(curcase);
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
	return 0;
}
