/* torchload.h - reading tensors out of PyTorch checkpoints and .safetensors
 * files without Python.
 *
 * PyTorch's format (torch.save since 1.6) is a zip archive: ARCHIVE/data.pkl
 * holds a pickle of the object saved, and every tensor storage is the entry
 * ARCHIVE/data/KEY (raw little-endian elements), referenced from the pickle by
 * persistent ids. The unpickler here is deliberately tiny: it accepts only the
 * opcodes and globals a state dict (or a training checkpoint of plain dicts,
 * lists, numbers and strings around one) needs, and refuses anything else
 * with a message naming the opcode or the global. Nothing is ever executed.
 *
 * Allowed globals: collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * torch._utils._rebuild_parameter, torch._utils._rebuild_parameter_with_state,
 * torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage.
 *
 * A checkpoint that nests its state dict under "model" or "state_dict" is
 * unwrapped; a "module." prefix on every name (DataParallel) is removed.
 * Every floating-point tensor is converted to float32 on load.
 */
#ifndef TORCHLOAD_H
#define TORCHLOAD_H

#include <stddef.h>
#include <stdint.h>

#define MP_TL_MAXDIM 8

typedef enum {
	MP_TL_F32, MP_TL_F16, MP_TL_BF16, MP_TL_F64,
	MP_TL_I64, MP_TL_I32, MP_TL_I16, MP_TL_I8, MP_TL_U8, MP_TL_BOOL
} mp_tl_dtype;

typedef struct mp_tensor {
	char *name;
	int ndim;
	int64_t shape[MP_TL_MAXDIM];
	mp_tl_dtype dtype;          /* type as stored in the file */
	size_t n;                   /* number of elements */
	float *data;                /* float32 copy (NULL for non-float types) */
	int64_t *idata;             /* int64 copy of an integer or bool tensor of <= 64 elements, else NULL */
} mp_tensor;

typedef struct mp_tdict {
	size_t n;
	mp_tensor *t;
	char id[32];                /* short checksum of the file's contents (weights identity) */
	char format[16];            /* "torch-zip" or "safetensors" */
} mp_tdict;

const char *mp_tl_dtype_name(mp_tl_dtype d);
int mp_tl_is_float(mp_tl_dtype d);

/* Load every tensor of a checkpoint (torch zip or .safetensors, detected by
 * content). 0, or -1 with mp_err ("FILE: what: why"). */
int mp_tl_load(const char *path, mp_tdict *d);
/* the same from a buffer held in memory (not copied; must outlive the call) */
int mp_tl_load_mem(const unsigned char *buf, size_t len, const char *name, mp_tdict *d);
void mp_tl_free(mp_tdict *d);
/* the tensor called name, or NULL */
mp_tensor *mp_tl_find(const mp_tdict *d, const char *name);
/* "(a, b, c)" */
void mp_tl_shape_str(const int64_t *shape, int ndim, char *buf, size_t n);

/* one array of an .npz (numpy savez) as doubles: little-endian integer or
 * float elements, C order; *vals malloc'd. 0 or -1 + mp_err. */
int mp_tl_npz_array(const char *path, const char *name, double **vals, int64_t *shape, int *ndim);

#endif
