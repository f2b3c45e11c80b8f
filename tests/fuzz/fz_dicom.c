/* fz_dicom.c - dcm2vol's reader: the input is one DICOM file (FZ_NAME) in an
 * empty folder, scanned and every series found loaded */
#include "fuzz.h"
#include "mp_dicom.h"

#ifndef FZ_NAME
#define FZ_NAME "x.dcm"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mp_dicom_opts o;
	char *paths[1] = { fz_dir };

	fz_file(FZ_NAME, data, size);
	mp_dicom_opts_init(&o);
	o.threads = 1;
	mp_dicom_scan *s = mp_dicom_scan_paths(paths, 1, &o);
	for (int i = 0; s && i < mp_dicom_nseries(s); i++) {
		mp_frame f;
		mp_frame_init(&f);
		mp_dicom_load(s, i, &f);
		mp_frame_free(&f);
	}
	mp_dicom_scan_free(s);
	fz_unlink(FZ_NAME);
	return 0;
}
