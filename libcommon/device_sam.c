/* device_sam.c - the SAM backend for a device (mp_device.h). In a file of
 * its own so that programs without SAM do not link the SAM code and with it
 * OpenBLAS, whose loading costs each of them ~3 ms of CPU at start-up. */
#include "mp_device.h"
#include "mp_cl.h"
#include "mp_sam.h"

#include <string.h>

const mp_sam_backend *
mp_dev_sam_backend(mp_dev *d, int nthreads)
{
	if (mp_dev_is_cl(d)) {
		const mp_sam_backend *be = mp_cl_sam_backend(mp_dev_cl(d));
		if (be)
			return be;
		if (mp_dev_after_cl(d, -1, "SAM") < 0)
			return NULL;
	}
	return mp_sam_cpu_backend(nthreads);
}

int
mp_dev_sam_retry(mp_dev *d, mp_sam *m, int nthreads)
{
	if (!mp_dev_is_cl(d) || !m->be || strcmp(m->be->name, "opencl") != 0 || mp_dev_after_cl(d, -1, "SAM") < 0)
		return 0;
	if (m->be->forget)
		m->be->forget(m->be->ctx);
	m->be = mp_sam_cpu_backend(nthreads);
	mp_sam_decode_forget(m);
	return 1;
}

int
mp_dev_sam_encode(mp_dev *d, mp_sam *m, const float *img, float *emb, int nthreads)
{
	int rc;

	while ((rc = mp_sam_encode(m, img, emb)) && mp_dev_sam_retry(d, m, nthreads))
		;
	return rc;
}

int
mp_dev_sam_decode_masks(mp_dev *d, mp_sam *m, const float *emb, size_t n, const mp_sam_prompt *p,
                        const mp_sam_masks *s, float *const *planes, float *iou, int nthreads)
{
	int rc;

	while ((rc = mp_sam_decode_masks(m, emb, n, p, s, planes, iou)) && mp_dev_sam_retry(d, m, nthreads))
		;
	return rc;
}
