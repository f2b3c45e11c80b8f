/* fz_dicomdir.c - a DICOMDIR (the files it lists are absent) */
#define FZ_NAME "DICOMDIR"
#include "fz_dicom.c"
