/* vol-info - a readable summary of every frame of a stream */
#include "mp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int brief, showkeys;

static const mp_opt opts[] = {
	{ "brief", 'b', MP_OPT_FLAG, &brief, NULL, NULL, "One line per frame: number, case, role, type, sizes, spacing, orientation." },
	{ "keys", 'k', MP_OPT_FLAG, &showkeys, NULL, NULL, "Also list every key:=value pair of the frame." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"vol-info",
	"print a readable summary of every frame of a medpipe stream",
	"[options] [FILE...]",
	"vol-info reads frames from the FILEs (NRRD frame streams; '-' or none: standard input) "
	"and prints one block per frame: case, role, voxel type, sizes, spacing in mm, the "
	"orientation code of the axes (LPS, RAS, ...: the world direction each axis points to "
	"as it grows), the origin (LPS, mm), the space directions, the value range and, for "
	"frames of role label or mask, the labels present with their voxel counts.\n\n"
	"Frames are read slab by slab: a volume of any size is summarised in little memory.",
	"$ dcm2vol ct/ | vol-info\n"
	"Every DICOM series under ct/.\n"
	"$ vol-cat ct.nii.gz --label seg.nii.gz | vol-info --brief\n"
	"One line per frame.",
	"vol-cat(1), vol-save(1), medpipe-vol(5), medpipe(7)",
	opts, 0
};

typedef struct {
	double mn, mx;
	size_t nan;
	/* label histogram for integer frames */
	int track;
	long long lo;               /* value of hist[0] */
	size_t *hist;
	size_t nhist;
	int overflow;
} stats;

static void
stats_add(stats *s, const void *buf, mp_type t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		double v = mp_get(buf, t, i);
		if (isnan(v)) {
			s->nan++;
			continue;
		}
		if (v < s->mn)
			s->mn = v;
		if (v > s->mx)
			s->mx = v;
		if (s->track && !s->overflow) {
			double k = v - (double)s->lo;
			if (k < 0 || k >= (double)s->nhist)
				s->overflow = 1;
			else
				s->hist[(size_t)k]++;
		}
	}
}

static void
pvec(const double v[3])
{
	char a[40], b[40], c[40];

	mp_fmt_double(a, sizeof a, v[0]);
	mp_fmt_double(b, sizeof b, v[1]);
	mp_fmt_double(c, sizeof c, v[2]);
	printf("(%s, %s, %s)", a, b, c);
}

static int
info(mp_in *in, mp_frame *f)
{
	stats s = { INFINITY, -INFINITY, 0, 0, 0, NULL, 0, 0 };
	size_t n = mp_frame_nvox(f), el = mp_type_size(f->type), chunk = (4u << 20) / el;
	const char *role = mp_role(f);
	int islabel = strcmp(role, "label") == 0 || strcmp(role, "mask") == 0;
	unsigned char *buf = mp_xmalloc(chunk * el);
	char code[4], num[40];

	/* labels: a histogram over the type's range when it is small */
	if (islabel && mp_type_is_int(f->type)) {
		s.track = 1;
		s.lo = (long long)mp_type_min(f->type);
		s.nhist = f->type == MP_INT8 || f->type == MP_UINT8 ? 256 : f->type == MP_INT16 || f->type == MP_UINT16 ? 65536 : 0;
		if (s.nhist == 0) {
			s.lo = -1;
			s.nhist = 1 << 16;   /* ids beyond this are summarised as a count */
		}
		s.hist = mp_xcalloc(s.nhist, sizeof *s.hist);
	}
	for (size_t done = 0; done < n;) {
		size_t k = n - done < chunk ? n - done : chunk;
		if (mp_in_data(in, buf, k * el) < 0) {
			free(buf);
			free(s.hist);
			return -1;
		}
		stats_add(&s, buf, f->type, k);
		done += k;
	}
	free(buf);

	mp_orient_code(f, code);
	if (brief) {
		printf("%d\t%s\t%s\t%s\t", mp_in_frameno(in), *mp_case(f) ? mp_case(f) : "-", role, mp_type_name(f->type));
		for (int a = 0; a < f->dim; a++)
			printf("%s%zu", a ? "x" : "", f->size[a]);
		printf("\t");
		for (int a = 0; a < f->dim; a++) {
			mp_fmt_double(num, sizeof num, mp_spacing(f, a));
			printf("%s%s", a ? "x" : "", num);
		}
		printf("\t%s\n", code);
		free(s.hist);
		return 0;
	}
	printf("frame %d of %s\n", mp_in_frameno(in), mp_in_name(in));
	printf("  case:        %s\n", *mp_case(f) ? mp_case(f) : "(none)");
	printf("  role:        %s\n", role);
	printf("  type:        %s\n", mp_type_name(f->type));
	printf("  sizes:      ");
	for (int a = 0; a < f->dim; a++)
		printf(" %zu", f->size[a]);
	printf("  (%s", f->kind[0][0] ? f->kind[0] : "?");
	for (int a = 1; a < f->dim; a++)
		printf(" %s", f->kind[a][0] ? f->kind[a] : "?");
	printf(")\n  spacing:    ");
	for (int a = 0; a < f->dim; a++) {
		if (f->space && f->has_dir[a]) {
			mp_fmt_double(num, sizeof num, mp_spacing(f, a));
			printf(" %s", num);
		} else {
			printf(" -");
		}
	}
	printf(" mm\n  orientation: %s\n", code);
	printf("  origin:      ");
	pvec(f->origin);
	printf(" mm (LPS)\n  directions: ");
	for (int a = 0; a < f->dim; a++) {
		printf(" ");
		if (f->space && f->has_dir[a])
			pvec(f->dir[a]);
		else
			printf("none");
	}
	printf("\n");
	if (n == s.nan)
		printf("  range:       all NaN\n");
	else {
		char a[40], b[40];
		mp_fmt_double(a, sizeof a, s.mn);
		mp_fmt_double(b, sizeof b, s.mx);
		printf("  range:       %s .. %s%s\n", a, b, s.nan ? " (and NaN)" : "");
	}
	if (s.track) {
		size_t nl = 0;
		for (size_t i = 0; i < s.nhist; i++)
			if (s.hist[i] && (long long)i + s.lo != 0)
				nl++;
		printf("  labels:      %zu", nl);
		if (s.overflow)
			printf(" or more (values beyond %lld not counted)", s.lo + (long long)s.nhist - 1);
		if (nl) {
			size_t shown = 0;
			printf(":");
			for (size_t i = 0; i < s.nhist && shown < 64; i++)
				if (s.hist[i] && (long long)i + s.lo != 0) {
					printf(" %lld(%zu)", (long long)i + s.lo, s.hist[i]);
					shown++;
				}
			if (shown < nl)
				printf(" ...");
		}
		printf("\n");
	}
	if (showkeys)
		for (size_t i = 0; i < f->nkv; i++)
			printf("  %s:=%s\n", f->keys[i], f->vals[i]);
	free(s.hist);
	return 0;
}

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);
	int total = 0;

	for (int i = 0; i < (nargs ? nargs : 1); i++) {
		const char *path = nargs ? args[i] : "-";
		mp_in *in = mp_in_open(path);
		mp_frame f;
		int r;

		if (!in)
			mp_die("%s", mp_err());
		while ((r = mp_in_header(in, &f)) == 1) {
			if (info(in, &f) < 0)
				mp_die("%s", mp_err());
			mp_frame_free(&f);
			total++;
		}
		if (r < 0)
			mp_die("%s", mp_err());
		if (mp_in_frameno(in) == 0)
			mp_in_die_empty(in);
		mp_in_close(in);
	}
	if (fflush(stdout) != 0 || ferror(stdout))
		mp_die("<stdout>: write error:");
	free(args);
	return 0;
}
