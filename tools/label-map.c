/* label-map - merge, remove and renumber labels; semantic to instance labels */
#include "mp.h"
#include "mp_label.h"

#include <stdlib.h>
#include <string.h>

static mp_lmap lm;
static const char *inst, *role = "label", *otype;
static long ioffset = 1, istart = -1, conn = 26;
static int renumber;
static char note[1024];

static void
note_add(const char *what, const char *arg)
{
	size_t n = strlen(note);

	snprintf(note + n, sizeof note - n, "%s%s %s", n ? "; " : "", what, arg);
}

static int
opt_map(void *ctx, const char *arg)
{
	(void)ctx;
	note_add("map", arg);
	return mp_lmap_add(&lm, arg);
}

static int
opt_mapfile(void *ctx, const char *arg)
{
	(void)ctx;
	note_add("map-file", arg);
	return mp_lmap_file(&lm, arg);
}

static int
opt_keep(void *ctx, const char *arg)
{
	(void)ctx;
	note_add("keep", arg);
	return mp_lmap_keep(&lm, arg);
}

static const mp_opt opts[] = {
	{ "map", 'm', MP_OPT_CALL, NULL, opt_map, "FROM:TO", "Map labels: FROM is a list like 12, 1,2,3 or 5-9; TO a label (0 removes). Repeatable; the rules act at once (--map 1:2 --map 2:3 sends 1 to 2 and 2 to 3), a later rule for the same label wins." },
	{ "map-file", 'f', MP_OPT_CALL, NULL, opt_mapfile, "FILE", "Map rules from a file: one per line, FROM:TO or FROM TO; '#' starts a comment." },
	{ "keep", 'k', MP_OPT_CALL, NULL, opt_keep, "LIST", "Keep only these labels (after mapping); all others become 0." },
	{ "instances", 'i', MP_OPT_STR, &inst, NULL, "LIST", "Semantic to instance labels: every connected component (--connectivity) of the voxels with these labels (after mapping) gets its own id, in raster order of its first voxel, starting at the largest other label plus --instance-offset." },
	{ "instance-offset", 0, MP_OPT_INT, &ioffset, NULL, "K", "First instance id = largest remaining label + K (default 1; MedSAM's pre_CT_MR.py numbers its tumour instances from max+2, i.e. K=2)." },
	{ "instance-start", 0, MP_OPT_INT, &istart, NULL, "N", "First instance id N (instead of --instance-offset)." },
	{ "connectivity", 'c', MP_OPT_INT, &conn, NULL, "C", "Connectivity of instances: 6, 18, 26 (default, as MedSAM) or per slice 4, 8." },
	{ "renumber", 'r', MP_OPT_FLAG, &renumber, NULL, NULL, "At the end, renumber the labels present to 1..K in increasing order." },
	{ "type", 't', MP_OPT_STR, &otype, NULL, "TYPE", "Output voxel type (uint8, int16, uint16, uint32...; default: the input's). Labels are converted first; one that does not fit is an error." },
	{ "role", 0, MP_OPT_STR, &role, NULL, "ROLE", "Act on frames of this role (default label); others pass through unchanged." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"label-map",
	"merge, remove, keep and renumber labels; semantic to instance labels",
	"[options] [FILE...]",
	"label-map reads frames (FILEs or standard input) and changes the values of every frame "
	"of role label (--role); other frames pass through unchanged. The steps run in this "
	"order: conversion to --type; the --map rules and --keep; --instances; --renumber. "
	"What was done is recorded in " MP_K_LABEL_MAP ".",
	"$ label-map --map 12:0 < case.vol > out.vol\n"
	"Remove label 12 (MedSAM removes the duodenum of FLARE22 this way).\n"
	"$ label-map --map 1,2,3:1 --keep 1 < seg.vol > liver.vol\n"
	"Merge labels 1, 2, 3 into 1 and drop the rest.\n"
	"$ label-map --instances 14 --instance-offset 2 < seg.vol > inst.vol\n"
	"Tumour label 14 to one id per connected component, as MedSAM's pre_CT_MR.py.",
	"ccl-clean(1), vol2npz(1), medpipe-vol(5)",
	opts, 1
};

static void
die_frame(mp_in *in, const char *why)
{
	mp_die("%s: frame %d: %s", mp_in_name(in), mp_in_frameno(in), why);
}

static int
relabel(mp_in *in, mp_frame *f, mp_out *o, mp_type ot, const int64_t *sel, size_t nsel)
{
	size_t nx, ny, nz, n;

	if (!mp_type_is_int(f->type)) {
		char w[128];
		snprintf(w, sizeof w, "%s frame is not of an integer type (%s)", role, mp_type_name(f->type));
		die_frame(in, w);
	}
	if (mp_frame_xyz(f, &nx, &ny, &nz) < 0 && (inst || f->dim < 1))
		die_frame(in, "instances need a 2D or 3D scalar volume");
	if (mp_in_rest(in, f) < 0)
		return -1;
	n = mp_frame_nvox(f);
	if (ot != MP_NONE && ot != f->type) {
		double mn, mx;
		void *d;
		mp_frame_minmax(f, &mn, &mx);
		if (n && (mn < mp_type_min(ot) || mx > mp_type_max(ot))) {
			char w[160];
			snprintf(w, sizeof w, "labels %g..%g do not fit %s", mn, mx, mp_type_name(ot));
			die_frame(in, w);
		}
		d = mp_xmalloc(n * mp_type_size(ot) + 1);
		mp_convert(d, ot, f->data, f->type, n);
		free(f->data);
		f->data = d;
		f->type = ot;
		mp_frame_touch(f);
	}
	if ((lm.n || lm.keep_only) && mp_lmap_apply(&lm, f->data, f->type, n) < 0)
		die_frame(in, mp_err());
	if (inst) {
		int64_t start = istart, k;
		if (istart < 0) {
			double mx = 0;
			for (size_t i = 0; i < n; i++) {
				double v = mp_get(f->data, f->type, i);
				int s = 0;
				for (size_t j = 0; j < nsel && !s; j++)
					s = v == (double)sel[j];
				if (!s && v > mx)
					mx = v;
			}
			start = (int64_t)mx + ioffset;
		}
		k = mp_instances(f->data, f->type, nx, ny, nz, (int)conn, sel, nsel, start);
		if (k < 0)
			die_frame(in, mp_err());
		mp_set_kvf(f, MP_K_INSTANCES, "%lld..%lld", (long long)start, (long long)(start + k - 1));
		mp_note("%s: frame %d: %lld instances from %lld", mp_in_name(in), mp_in_frameno(in), (long long)k, (long long)start);
	}
	if (renumber && mp_lmap_renumber(f->data, f->type, n) < 0)
		die_frame(in, mp_err());
	if (note[0])
		mp_set_kv(f, MP_K_LABEL_MAP, note);
	return mp_out_frame(o, f);
}

typedef struct { mp_type ot; const int64_t *sel; size_t nsel; } relabel_ctx;

static int
each_frame(void *ctx, mp_in *in, mp_frame *f, mp_out *o)
{
	const relabel_ctx *c = ctx;
	return strcmp(mp_role(f), role) == 0 ? relabel(in, f, o, c->ot, c->sel, c->nsel) : mp_pass(in, f, o);
}

int
main(int argc, char **argv)
{
	char **args;
	int nargs;
	mp_out *o;
	mp_type ot = MP_NONE;
	int64_t *sel = NULL;
	size_t nsel = 0;

	mp_lmap_init(&lm);
	nargs = mp_parse(&prog, argc, argv, &args);
	if (otype && ((ot = mp_type_parse(otype)) == MP_NONE || !mp_type_is_int(ot)))
		mp_usage_die("--type %s: want an integer type (uint8, int16, uint16, int32, uint32, ...)", otype);
	if (inst) {
		if (mp_parse_int_list(inst, &sel, &nsel) < 0)
			mp_usage_die("--instances: %s", mp_err());
		if (!mp_ccl_conn_ok((int)conn))
			mp_usage_die("--connectivity %ld: want 6, 18, 26, 4 or 8", conn);
		note_add("instances", inst);
	}
	if (istart >= 0 && ioffset != 1)
		mp_usage_die("--instance-start and --instance-offset contradict each other");
	if (renumber)
		note_add("renumber", "");
	if (!lm.n && !lm.keep_only && !inst && !renumber && ot == MP_NONE)
		mp_usage_die("nothing to do: give --map, --map-file, --keep, --instances, --renumber or --type");
	o = mp_out_stdout();
	relabel_ctx rc = { ot, sel, nsel };
	mp_run_filter(args, nargs, o, each_frame, &rc);
	mp_lmap_free(&lm);
	free(sel);
	return 0;
}
