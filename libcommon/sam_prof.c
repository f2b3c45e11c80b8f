/* sam_prof.c - per-operation CPU time of the ViT image encoder, kept when
 * MEDPIPE_SAM_PROFILE is set (non-empty, not "0") and printed to standard
 * error after each encoded image (see sam_ld.h). */
#include "sam_ld.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int on = -1;
static double last, acc[MP_SP_N], tacc[64][MP_SP_N];
static const char *names[MP_SP_N] = {
	"patch embedding", "layer norm 1 + window partition", "qkv product + bias", "attention",
	"  pack q (+ k, v in windows)", "  q k^T products", "  rel. pos. products (old: + add)",
	"  softmax (new: + rel. pos. add)", "  attn v products",
	"proj product + bias", "window unpartition + residual", "layer norm 2", "lin1 product",
	"bias + GELU", "lin2 product + bias + residual",
	"MLP by blocks of rows (all of it)", "neck",
};

int
mp_sam_prof_on(void)
{
	if (on < 0) {
		const char *e = getenv("MEDPIPE_SAM_PROFILE");
		on = e && *e && strcmp(e, "0") != 0;
	}
	return on;
}

void
mp_sam_prof_lap(int cat)
{
	if (!mp_sam_prof_on())
		return;
	double t = mp_cpu_clock();
	if (cat >= 0 && cat < MP_SP_N)
		acc[cat] += t - last;
	else
		memset(acc, 0, sizeof acc), memset(tacc, 0, sizeof tacc);
	last = t;
}

double
mp_sam_prof_thread(void)
{
	return mp_sam_prof_on() ? mp_thread_clock() : 0;
}

void
mp_sam_prof_tadd(int tid, int cat, double *t0)
{
	if (!mp_sam_prof_on() || tid < 0 || tid >= 64)
		return;
	double t = mp_thread_clock();
	tacc[tid][cat] += t - *t0;
	*t0 = t;
}

void
mp_sam_prof_report(void)
{
	if (!mp_sam_prof_on())
		return;
	double tot = 0;
	for (int c = 0; c < MP_SP_N; c++) {
		for (int t = 0; t < 64; t++)
			acc[c] += tacc[t][c];
		if (names[c][0] != ' ')
			tot += acc[c];
	}
	fprintf(stderr, "sam profile (CPU seconds of the process; indented: parts, thread CPU time):\n");
	for (int c = 0; c < MP_SP_N; c++)
		fprintf(stderr, "  %-34s %8.3f s %5.1f%%\n", names[c], acc[c], tot > 0 ? 100 * acc[c] / tot : 0);
	fprintf(stderr, "  %-34s %8.3f s\n", "total", tot);
}
