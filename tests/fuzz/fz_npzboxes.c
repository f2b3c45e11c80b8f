/* fz_npzboxes.c - the LiteMedSAM boxes .npz of sam-decode --boxes
 * (torchload.c's mp_tl_npz_array), CRCs fixed by the mutator */
#include "fuzz.h"
#include "torchload.h"
#include "zipfix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	double *v = NULL;
	int64_t shape[MP_TL_MAXDIM];
	int nd;

	if (mp_tl_npz_array(fz_file("boxes.npz", data, size), "boxes", &v, shape, &nd) == 0)
		free(v);
	return 0;
}
