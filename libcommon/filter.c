/* filter.c - a frame made slab by slab (mp_out_slabs; the frame loop of
 * filters, mp_run_filter, is in cases.c) */
#include "mp.h"

#include <stdlib.h>

int
mp_out_slabs(mp_out *o, const mp_frame *f, mp_in *in, const void *src, mp_type st, size_t n, mp_slab_fn fn,
             void *ctx)
{
	size_t chunk = 1 << 20, ssz = mp_type_size(st), dsz = mp_type_size(f->type);
	void *sb = src ? NULL : malloc(chunk * ssz), *db = malloc(chunk * dsz);
	int rc = -1;

	if ((!src && !sb) || !db) {
		mp_seterr("out of memory");
		goto done;
	}
	if (mp_out_header(o, f) < 0)
		goto done;
	for (size_t done = 0; done < n;) {
		size_t k = n - done < chunk ? n - done : chunk;
		const void *s = src ? (const unsigned char *)src + done * ssz : sb;
		if (!src && mp_in_data(in, sb, k * ssz) < 0)
			goto done;
		if (fn(ctx, db, f->type, s, st, k) < 0 || mp_out_data(o, db, k * dsz) < 0)
			goto done;
		done += k;
	}
	rc = 0;
done:
	free(sb);
	free(db);
	return rc;
}
