/* fz_file.c - one harness per file format read by mp_file_read: the input is
 * written to a file whose extension is FZ_EXT (a compile-time string), then
 * read as vol-cat would. FZ_PAIR: the first FZ_PAIR bytes go to the header
 * (FZ_EXT, e.g. ".hdr"), the rest to FZ_PAIR_EXT (".img"). FZ_SPLIT: a
 * detached header and its data file: the bytes before the first NUL go to the
 * header (FZ_EXT: ".nhdr", ".mhd"), the bytes after it to the file named
 * FZ_SPLIT ("d"; the seeds' headers name it). */
#include "fuzz.h"
#include "mp_fmt.h"

#include <string.h>

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
#elif defined FZ_SPLIT
	const uint8_t *z = size ? memchr(data, 0, size) : NULL;
	size_t h = z ? (size_t)(z - data) : size;
	path = fz_file("in" FZ_EXT, data, h);
	fz_file(FZ_SPLIT, data + h + (z != NULL), size - h - (z != NULL));
#else
	path = fz_file("in" FZ_EXT, data, size);
#endif
	if (mp_file_read(path, &fr, &n) == 0)
		mp_frames_free(fr, n);
	return 0;
}
