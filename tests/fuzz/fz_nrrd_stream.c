/* fz_nrrd_stream.c - the NRRD frame stream every tool reads (mp_in_*) */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mp_in *in = mp_in_mem(data, size, "stdin");
	mp_frame f;
	int r, k = 0;

	mp_frame_init(&f);
	while ((r = mp_in_header(in, &f)) == 1) {
		/* alternate the two ways tools take the data */
		r = (k++ & 1) ? mp_in_skipdata(in) : mp_in_rest(in, &f);
		mp_frame_free(&f);
		mp_frame_init(&f);
		if (r < 0)
			break;
	}
	mp_frame_free(&f);
	mp_in_close(in);
	return 0;
}
