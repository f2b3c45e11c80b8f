/* fz_torch.c - checkpoints as sam-embed -w loads them: torch zip + pickle, or
 * .safetensors (mp_tl_load, the file mapped as the tool maps it); zip CRCs
 * fixed by the mutator (zipread.c checks them) */
#include "fuzz.h"
#include "torchload.h"
#include "zipfix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mp_tdict d;

	if (mp_tl_load(fz_file("model.pth", data, size), &d) == 0)
		mp_tl_free(&d);
	return 0;
}
