/* convert.cl - type conversion, as mp_convert (libcommon/types.c) for the
 * types up to 32 bits and float/double: integer targets round half away from
 * zero and clamp, NaN becomes 0. */
__kernel void
convert(__global const void *src, int stype, __global void *dst, int dtype, ulong n)
{
	size_t i = get_global_id(0);
	if (i >= n)
		return;
	st(dst, dtype, i, ld(src, stype, i));
}
