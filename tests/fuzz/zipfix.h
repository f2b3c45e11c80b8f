/* zipfix.h - a libFuzzer custom mutator for zip archives (.npz): after the
 * usual mutation, the CRC-32 of every entry whose data can be found (stored,
 * or deflate that inflates) is recomputed and written into its central
 * directory record and its local header, so that mutations of the data reach
 * the parsers behind zipread.c's CRC check. The input keeps its size, and the
 * fixed bytes are what is saved, so a finding replays as it is. */
#ifndef MP_ZIPFIX_H
#define MP_ZIPFIX_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max, unsigned int seed);

static uint32_t
zf_le(const uint8_t *p, int n)
{
	uint32_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void
zf_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

/* CRC of the entry whose local header is at lo; -1 when it cannot be had */
static int
zf_crc(const uint8_t *b, size_t len, size_t lo, uint32_t csize, uint32_t usize, int method, uint32_t *crc)
{
	if (lo > len || len - lo < 30 || zf_le(b + lo, 4) != 0x04034b50u)
		return -1;
	size_t d = lo + 30 + zf_le(b + lo + 26, 2) + zf_le(b + lo + 28, 2);
	if (d > len || csize > len - d)
		return -1;
	if (method == 0) {
		*crc = (uint32_t)crc32(0L, b + d, csize);
		return 0;
	}
	if (method != 8 || usize > (1u << 24))
		return -1;
	uint8_t *o = malloc(usize ? usize : 1);
	z_stream z;
	memset(&z, 0, sizeof z);
	if (!o || inflateInit2(&z, -15) != Z_OK) {
		free(o);
		return -1;
	}
	z.next_in = (uint8_t *)(uintptr_t)(b + d);
	z.avail_in = csize;
	z.next_out = o;
	z.avail_out = usize;
	int r = inflate(&z, Z_FINISH);
	inflateEnd(&z);
	if (r == Z_STREAM_END)
		*crc = (uint32_t)crc32(0L, o, (uInt)z.total_out);
	free(o);
	return r == Z_STREAM_END ? 0 : -1;
}

static void
zf_fix(uint8_t *b, size_t len)
{
	for (size_t p = 0; p + 46 <= len; p++) {
		if (zf_le(b + p, 4) != 0x02014b50u)
			continue;
		uint32_t crc, lo = zf_le(b + p + 42, 4);
		if (zf_crc(b, len, lo, zf_le(b + p + 20, 4), zf_le(b + p + 24, 4), (int)zf_le(b + p + 10, 2), &crc) == 0) {
			zf_put32(b + p + 16, crc);
			zf_put32(b + lo + 14, crc);
		}
	}
}

size_t
LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max, unsigned int seed)
{
	(void)seed;
	size = LLVMFuzzerMutate(data, size, max);
	zf_fix(data, size);
	return size;
}

#endif
