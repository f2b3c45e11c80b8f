/* cases.c - the frame loop of programs that work on whole cases: adjacent
 * frames with the same medpipe.case, held in memory (mp.h, mp_run_cases) */
#include "mp.h"

#include <stdlib.h>
#include <string.h>

void
mp_case_clear(mp_heldcase *c)
{
	for (size_t i = 0; i < c->n; i++)
		mp_frame_free(&c->f[i]);
	c->n = 0;
	free(c->name);
	c->name = NULL;
}

static void
flush(mp_heldcase *c, mp_out *o, mp_case_fn fn, void *ctx)
{
	if (c->n && fn(ctx, c, o) < 0)
		mp_die("%s", mp_err());
	mp_case_clear(c);
}

void
mp_run_cases(char **args, int nargs, mp_out *o, int per_input, mp_case_role_fn role, mp_case_check_fn check,
             mp_case_fn fn, void *ctx)
{
	mp_heldcase c;

	memset(&c, 0, sizeof c);
	for (int i = 0; i < (nargs ? nargs : 1); i++) {
		mp_in *in = mp_in_open(nargs ? args[i] : "-");
		mp_frame f;
		int r;

		if (!in)
			mp_die("%s", mp_err());
		while ((r = mp_in_header(in, &f)) == 1) {
			int act = role ? role(ctx, &f) : MP_CASE_HOLD;
			if (act != MP_CASE_HOLD) {
				int rc = act == MP_CASE_PASS ? mp_pass(in, &f, o) : mp_in_skipdata(in);
				mp_frame_free(&f);
				if (rc < 0)
					mp_die("%s", mp_err());
				continue;
			}
			if (mp_in_rest_map(in, &f) < 0)
				mp_die("%s", mp_err());
			if (c.n && strcmp(c.name, mp_case(&f)) != 0)
				flush(&c, o, fn, ctx);
			if (!c.n)
				c.name = mp_xstrdup(mp_case(&f));
			act = check ? check(ctx, in, &f, &c) : 0;
			if (act < 0)
				mp_die("%s", mp_err());
			if (act == MP_CASE_SKIP) {
				mp_frame_free(&f);
				continue;
			}
			if (c.n == c.cap) {
				c.cap = c.cap ? 2 * c.cap : 4;
				c.f = mp_xrealloc(c.f, c.cap * sizeof *c.f);
			}
			c.f[c.n++] = f;
			c.src = mp_in_name(in);
			c.frameno = mp_in_frameno(in);
		}
		if (r < 0)
			mp_die("%s", mp_err());
		if (mp_in_frameno(in) == 0)
			mp_in_die_empty(in);
		if (per_input)
			flush(&c, o, fn, ctx);
		else if (c.n) {
			/* the case may go on in the next input: keep its source's name */
			char *keep = mp_xstrdup(c.src);
			free(c.srcbuf);
			c.src = c.srcbuf = keep;
		}
		mp_in_close(in);
	}
	flush(&c, o, fn, ctx);
	free(c.f);
	free(c.srcbuf);
	if (o && mp_out_close(o) < 0)
		mp_die("%s", mp_err());
	free(args);
}
