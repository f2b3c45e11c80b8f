/* fmt_minc.c - MINC1 and MINC2 (placeholder until the reader lands) */
#include "mp_fmt.h"

int
mp_minc_read(const char *path, mp_frame ***frames, size_t *n)
{
	*frames = NULL;
	*n = 0;
	return mp_seterr("%s: MINC is not read yet", path);
}
