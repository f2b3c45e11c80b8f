/* window.cl - the linear intensity map of mp_window_apply (libcommon/window.c),
 * operation for operation, in double (win_d) or, for float input with
 * single != 0, in float (win_f). */

#define WIN_BODY(REAL)                                                            \
	size_t i = get_global_id(0);                                              \
	REAL x, v, t, y;                                                          \
	if (i >= n)                                                               \
		return;                                                           \
	x = (REAL)ld(src, stype, i);                                              \
	if (keep_zero && x == 0) {                                                \
		y = 0;                                                            \
	} else {                                                                  \
		v = x < clo ? clo : x > chi ? chi : x;                            \
		t = den != 0 ? (v - ilo) / den : (REAL)0;                         \
		y = olo == 0 ? t * orng : olo + t * orng;                         \
	}                                                                         \
	if (u8)                                                                   \
		((__global uchar *)dst)[i] = y <= 0 || y != y ? 0 : y >= 255 ? 255 : (uchar)y; \
	else if (f32)                                                             \
		((__global float *)dst)[i] = (float)y;                            \
	else {                                                                    \
		real w = (real)y;                                                 \
		if (trunc_ && dtype != T_FLOAT32 && dtype != T_FLOAT64)           \
			w = isnan(w) ? 0 : trunc(w);                              \
		st(dst, dtype, i, w);                                             \
	}

#if MP_FP64
__kernel void
win_d(__global const void *src, int stype, __global void *dst, int dtype, ulong n,
      double clo, double chi, double ilo, double den, double olo, double orng,
      int keep_zero, int trunc_, int u8, int f32)
{
	WIN_BODY(double)
}
#endif

__kernel void
win_f(__global const void *src, int stype, __global void *dst, int dtype, ulong n,
      float clo, float chi, float ilo, float den, float olo, float orng,
      int keep_zero, int trunc_, int u8, int f32)
{
	WIN_BODY(float)
}
