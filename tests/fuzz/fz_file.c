/* fz_file.c - one harness per file format read by mp_file_read: the input is
 * written to a file whose extension is FZ_EXT (a compile-time string), then
 * read as vol-cat would. FZ_PAIR: the first FZ_PAIR bytes go to the header
 * (FZ_EXT, e.g. ".hdr"), the rest to FZ_PAIR_EXT (".img"). */
#include "fuzz.h"
#include "mp_fmt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mp_frame **fr = NULL;
	size_t n = 0;
	const char *path;

#ifdef FZ_PAIR
	size_t h = size < FZ_PAIR ? size : FZ_PAIR;
	path = fz_file("in" FZ_EXT, data, h);
	fz_file("in" FZ_PAIR_EXT, data + h, size - h);
#else
	path = fz_file("in" FZ_EXT, data, size);
#endif
	if (mp_file_read(path, &fr, &n) == 0)
		mp_frames_free(fr, n);
	return 0;
}
