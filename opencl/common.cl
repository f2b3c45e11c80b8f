/* common.cl - prepended to every other program by the runtime (cl_runtime.c):
 * voxel types as in mp.h, loads to `real` and stores that round and clamp
 * exactly as mp_put in libcommon/types.c does. */
#pragma OPENCL FP_CONTRACT OFF
#if MP_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double real;
#else
typedef float real;
#endif

/* mp_type codes (mp.h) */
#define T_INT8 1
#define T_UINT8 2
#define T_INT16 3
#define T_UINT16 4
#define T_INT32 5
#define T_UINT32 6
#define T_INT64 7
#define T_UINT64 8
#define T_FLOAT32 9
#define T_FLOAT64 10

inline real
ld(__global const void *p, int t, size_t i)
{
	switch (t) {
	case T_INT8: return (real)((__global const char *)p)[i];
	case T_UINT8: return (real)((__global const uchar *)p)[i];
	case T_INT16: return (real)((__global const short *)p)[i];
	case T_UINT16: return (real)((__global const ushort *)p)[i];
	case T_INT32: return (real)((__global const int *)p)[i];
	case T_UINT32: return (real)((__global const uint *)p)[i];
	case T_FLOAT32: return (real)((__global const float *)p)[i];
#if MP_FP64
	case T_FLOAT64: return ((__global const double *)p)[i];
#endif
	default: return 0;
	}
}

/* round half away from zero, clamp to the type; NaN becomes 0 */
inline real
toint(real v, real lo, real hi)
{
	if (isnan(v))
		return 0;
	v = round(v);
	return v < lo ? lo : v > hi ? hi : v;
}

inline void
st(__global void *p, int t, size_t i, real v)
{
	switch (t) {
	case T_INT8: ((__global char *)p)[i] = (char)toint(v, -128, 127); break;
	case T_UINT8: ((__global uchar *)p)[i] = (uchar)toint(v, 0, 255); break;
	case T_INT16: ((__global short *)p)[i] = (short)toint(v, -32768, 32767); break;
	case T_UINT16: ((__global ushort *)p)[i] = (ushort)toint(v, 0, 65535); break;
	case T_INT32: ((__global int *)p)[i] = (int)toint(v, -2147483648.0, 2147483647.0); break;
	case T_UINT32: ((__global uint *)p)[i] = (uint)toint(v, 0, 4294967295.0); break;
	case T_FLOAT32: ((__global float *)p)[i] = (float)v; break;
#if MP_FP64
	case T_FLOAT64: ((__global double *)p)[i] = v; break;
#endif
	default: break;
	}
}

/* integer voxel value (for label comparisons); float types compare by bits */
inline uint
ldu(__global const void *p, int t, size_t i)
{
	switch (t) {
	case T_INT8: return (uint)(int)((__global const char *)p)[i];
	case T_UINT8: return ((__global const uchar *)p)[i];
	case T_INT16: return (uint)(int)((__global const short *)p)[i];
	case T_UINT16: return ((__global const ushort *)p)[i];
	case T_INT32: case T_UINT32: case T_FLOAT32: return ((__global const uint *)p)[i];
	default: return 0;
	}
}
