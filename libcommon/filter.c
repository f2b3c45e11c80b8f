/* filter.c - the frame loop every filter program shares */
#include "mp.h"

#include <stdlib.h>

void
mp_run_filter(char **args, int nargs, mp_out *o, mp_frame_fn fn, void *ctx)
{
	for (int i = 0; i < (nargs ? nargs : 1); i++) {
		mp_in *in = mp_in_open(nargs ? args[i] : "-");
		mp_frame f;
		int r;

		if (!in)
			mp_die("%s", mp_err());
		while ((r = mp_in_header(in, &f)) == 1) {
			int rc = fn(ctx, in, &f, o);
			mp_frame_free(&f);
			if (rc < 0)
				mp_die("%s", mp_err());
		}
		if (r < 0)
			mp_die("%s", mp_err());
		if (mp_in_frameno(in) == 0)
			mp_in_die_empty(in);
		mp_in_close(in);
	}
	if (mp_out_close(o) < 0)
		mp_die("%s", mp_err());
	free(args);
}
