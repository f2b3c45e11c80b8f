/* fz_npz.c - .npz archives (zipread.c + the npy parser), CRCs fixed by the mutator */
#define FZ_EXT ".npz"
#include "zipfix.h"
#include "fz_file.c"
