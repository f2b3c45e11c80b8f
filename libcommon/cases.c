/* cases.c - the frame loop every program shares: frames handed over one by
 * one as they are read, or adjacent frames with the same medpipe.case held
 * in memory as a case (mp.h: mp_read_frames, mp_run_cases, mp_run_filter) */
#include "mp.h"

#include <stdlib.h>
#include <string.h>

void
mp_case_clear(mp_heldcase *c)
{
	for (size_t i = 0; i < c->n; i++) {
		mp_frame_free(&c->f[i]);
		free(c->fsrc[i]);
	}
	c->n = 0;
	c->src = NULL;
	c->frameno = 0;
	free(c->name);
	c->name = NULL;
}

static void
flush(mp_heldcase *c, mp_out *o, const mp_reader *r, void *ctx)
{
	if (c->name && r->fn && r->fn(ctx, c, o) < 0)
		mp_die("%s", mp_err());
	mp_case_clear(c);
}

static void
hold(mp_heldcase *c, mp_in *in, const mp_frame *f)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 4;
		c->f = mp_xrealloc(c->f, c->cap * sizeof *c->f);
		c->fno = mp_xrealloc(c->fno, c->cap * sizeof *c->fno);
		c->fsrc = mp_xrealloc(c->fsrc, c->cap * sizeof *c->fsrc);
	}
	c->f[c->n] = *f;
	c->fno[c->n] = c->frameno = mp_in_frameno(in);
	c->src = c->fsrc[c->n] = mp_xstrdup(mp_in_name(in));
	c->n++;
}

/* the data of a frame not read: skipped (or passed), then the frame freed */
static void
over(mp_in *in, mp_frame *f, mp_out *o, int pass)
{
	int rc = pass ? mp_pass(in, f, o) : mp_in_skipdata(in);

	mp_frame_free(f);
	if (rc < 0)
		mp_die("%s", mp_err());
}

void
mp_read_frames_wait(char **args, int nargs, mp_out *o, const mp_reader *r, const mp_reader_wait *w, void *ctx)
{
	static const mp_reader_wait none;
	mp_heldcase c;

	if (!w)
		w = &none;

	memset(&c, 0, sizeof c);
	for (int i = 0; i < (nargs ? nargs : 1); i++) {
		const char *path = nargs ? args[i] : "-";
		int took = r->input ? r->input(ctx, path) : 0;
		mp_in *in;
		mp_frame f;
		int rc;

		if (took < 0)
			mp_die("%s", mp_err());
		if (took)
			continue;
		if (!(in = mp_in_open(path)))
			mp_die("%s", mp_err());
		while ((rc = mp_in_header(in, &f)) == 1) {
			int act = r->role ? r->role(ctx, in, &f, &c) : r->frame ? MP_CASE_READ : MP_CASE_HOLD;
			if (act < 0)
				mp_die("%s", mp_err());
			if (act == MP_CASE_PASS || act == MP_CASE_SKIP) {
				/* ordered: nothing goes out ahead of a held frame */
				if (w->ordered && act == MP_CASE_PASS)
					flush(&c, o, r, ctx);
				over(in, &f, o, act == MP_CASE_PASS);
				continue;
			}
			/* a frame of another case ends the case so far */
			if (c.name && strcmp(c.name, mp_case(&f)) != 0)
				flush(&c, o, r, ctx);
			int fresh = !c.name;
			if (!c.name)
				c.name = mp_xstrdup(mp_case(&f));
			if (act == MP_CASE_READ) {
				act = r->frame(ctx, in, &f, o);
				mp_frame_free(&f);
				if (act < 0)
					mp_die("%s", mp_err());
				continue;
			}
			act = r->check ? r->check(ctx, in, &f, &c) : 0;
			if (act < 0)
				mp_die("%s", mp_err());
			if (act == MP_CASE_SKIP) {
				over(in, &f, o, 0);
				continue;
			}
			if (act == MP_CASE_END && !fresh) {   /* the case so far first */
				flush(&c, o, r, ctx);
				c.name = mp_xstrdup(mp_case(&f));
			}
			if ((w->spool ? mp_in_rest_spool(in, &f, w->spool) : mp_in_rest_map(in, &f)) < 0)
				mp_die("%s", mp_err());
			hold(&c, in, &f);
			act = w->ready ? w->ready(ctx, &c) : 0;
			if (act < 0)
				mp_die("%s", mp_err());
			if (act)
				flush(&c, o, r, ctx);
		}
		if (rc < 0)
			mp_die("%s", mp_err());
		if (!r->empty_ok && mp_in_frameno(in) == 0)
			mp_in_die_empty(in);
		if (r->per_input)
			flush(&c, o, r, ctx);
		mp_in_close(in);
	}
	flush(&c, o, r, ctx);
	free(c.f);
	free(c.fno);
	free(c.fsrc);
	if (o && mp_out_close(o) < 0)
		mp_die("%s", mp_err());
}

void
mp_read_frames(char **args, int nargs, mp_out *o, const mp_reader *r, void *ctx)
{
	mp_read_frames_wait(args, nargs, o, r, NULL, ctx);
}

void
mp_run_cases(char **args, int nargs, mp_out *o, int per_input, mp_case_role_fn role, mp_case_check_fn check,
             mp_case_fn fn, void *ctx)
{
	mp_reader r = { .role = role, .check = check, .fn = fn, .per_input = per_input };

	mp_read_frames(args, nargs, o, &r, ctx);
	free(args);
}

void
mp_run_filter(char **args, int nargs, mp_out *o, mp_frame_fn fn, void *ctx)
{
	mp_reader r = { .frame = fn };

	mp_read_frames(args, nargs, o, &r, ctx);
	free(args);
}
