/* fmt_image.c - 2D picture formats: PNG (libpng), JPEG (libjpeg-turbo), BMP
 * (a reader of its own), and the frame layout they share with TIFF.
 *
 * A grey picture is a 2D frame (sizes W H); a colour one has a first axis of
 * 3 samples (kind RGB-color); alpha is dropped. Axis x runs along L, y along
 * P, the origin is 0; spacing 1 mm unless the file states a physical
 * resolution (PNG pHYs in metres, JPEG JFIF density in inches or cm). */
#include "mp_fmt.h"

#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>

int
mp_img_frame(mp_frame *f, mp_type t, int ch, const char *kind0, size_t w, size_t h, size_t d, double sx, double sy,
	     double sz)
{
	int a = 0;

	mp_frame_init(f);
	f->type = t;
	if (ch > 1) {
		f->size[a] = (size_t)ch;
		snprintf(f->kind[a], sizeof f->kind[a], "%s", kind0 ? kind0 : "vector");
		a++;
	}
	f->size[a] = w;
	f->size[a + 1] = h;
	if (d > 1)
		f->size[a + 2] = d;
	f->dim = a + (d > 1 ? 3 : 2);
	f->space = 1;
	for (int i = a, k = 0; i < f->dim; i++, k++) {
		f->has_dir[i] = 1;
		f->dir[i][k] = k == 0 ? sx : k == 1 ? sy : sz;
		snprintf(f->kind[i], sizeof f->kind[i], "space");
	}
	if (mp_frame_check(f) < 0)
		return -1;
	return mp_frame_alloc(f);
}

/* ---------------------------------------------------------------- PNG */
typedef struct {
	jmp_buf jb;
	char msg[200];
} png_err;

static void
png_on_error(png_structp p, png_const_charp m)
{
	png_err *e = png_get_error_ptr(p);

	snprintf(e->msg, sizeof e->msg, "%s", m);
	longjmp(e->jb, 1);
}

static void
png_on_warn(png_structp p, png_const_charp m)
{
	(void)p;
	(void)m;
}

int
mp_png_read(const char *path, mp_frame *f)
{
	FILE *fp = fopen(path, "rb");
	png_structp p = NULL;
	png_infop info = NULL;
	png_err e;
	png_bytep *volatile rows = NULL;
	unsigned char sig[8];

	mp_frame_init(f);
	if (!fp)
		return mp_seterr("%s: cannot open:", path);
	if (fread(sig, 1, 8, fp) != 8 || png_sig_cmp(sig, 0, 8)) {
		fclose(fp);
		return mp_seterr("%s: not a PNG file (bad signature)", path);
	}
	e.msg[0] = 0;
	p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &e, png_on_error, png_on_warn);
	if (!p || !(info = png_create_info_struct(p))) {
		png_destroy_read_struct(&p, NULL, NULL);
		fclose(fp);
		return mp_seterr("%s: out of memory", path);
	}
	if (setjmp(e.jb)) {
		png_destroy_read_struct(&p, &info, NULL);
		fclose(fp);
		free(rows);
		mp_frame_free(f);
		return mp_seterr("%s: PNG: %s", path, e.msg[0] ? e.msg : "damaged file");
	}
	png_init_io(p, fp);
	png_set_sig_bytes(p, 8);
	png_set_user_limits(p, 1u << 20, 1u << 20);
	png_read_info(p, info);
	{
		png_uint_32 w = png_get_image_width(p, info), h = png_get_image_height(p, info);
		int bd = png_get_bit_depth(p, info), ct = png_get_color_type(p, info), ch;
		double sx = 1, sy = 1;
		png_uint_32 rx, ry;
		int unit;

		if (ct == PNG_COLOR_TYPE_PALETTE)
			png_set_palette_to_rgb(p);
		if (bd < 8)
			png_set_packing(p);
		if (ct & PNG_COLOR_MASK_ALPHA)
			png_set_strip_alpha(p);
		if (bd == 16 && !mp_host_big())
			png_set_swap(p);
		png_set_interlace_handling(p);
		png_read_update_info(p, info);
		ch = png_get_channels(p, info);
		if (ch != 1 && ch != 3)
			png_error(p, "unexpected channel count");
		if (png_get_pHYs(p, info, &rx, &ry, &unit) && unit == PNG_RESOLUTION_METER && rx > 0 && ry > 0) {
			sx = 1000.0 / rx;
			sy = 1000.0 / ry;
		}
		if (mp_img_frame(f, bd == 16 ? MP_UINT16 : MP_UINT8, ch, "RGB-color", w, h, 1, sx, sy, 1) < 0) {
			png_destroy_read_struct(&p, &info, NULL);
			fclose(fp);
			return mp_preerr("%s", path);
		}
		rows = malloc(h * sizeof *rows);
		if (!rows)
			png_error(p, "out of memory");
		size_t stride = (size_t)w * (size_t)ch * (bd == 16 ? 2 : 1);
		if (png_get_rowbytes(p, info) != stride)
			png_error(p, "unexpected row size");
		for (png_uint_32 y = 0; y < h; y++)
			rows[y] = (png_bytep)f->data + (size_t)y * stride;
		png_read_image(p, rows);
		png_read_end(p, NULL);
		mp_set_kvf(f, MP_K_IMAGE_BITS, "%d", bd);
	}
	png_destroy_read_struct(&p, &info, NULL);
	free(rows);
	fclose(fp);
	return 0;
}

/* ---------------------------------------------------------------- JPEG */
typedef struct {
	struct jpeg_error_mgr pub;
	jmp_buf jb;
	char msg[JMSG_LENGTH_MAX];
} jpg_err;

static void
jpg_on_error(j_common_ptr c)
{
	jpg_err *e = (jpg_err *)c->err;

	c->err->format_message(c, e->msg);
	longjmp(e->jb, 1);
}

static void
jpg_on_msg(j_common_ptr c, int level)
{
	(void)c;
	(void)level;
}

int
mp_jpeg_read(const char *path, mp_frame *f)
{
	FILE *fp = fopen(path, "rb");
	struct jpeg_decompress_struct d;
	jpg_err e;

	mp_frame_init(f);
	if (!fp)
		return mp_seterr("%s: cannot open:", path);
	d.err = jpeg_std_error(&e.pub);
	e.pub.error_exit = jpg_on_error;
	e.pub.emit_message = jpg_on_msg;
	e.msg[0] = 0;
	if (setjmp(e.jb)) {
		jpeg_destroy_decompress(&d);
		fclose(fp);
		mp_frame_free(f);
		return mp_seterr("%s: JPEG: %s", path, e.msg[0] ? e.msg : "damaged file");
	}
	jpeg_create_decompress(&d);
	jpeg_stdio_src(&d, fp);
	jpeg_read_header(&d, TRUE);
	if (d.num_components == 1)
		d.out_color_space = JCS_GRAYSCALE;
	else if (d.jpeg_color_space == JCS_YCbCr || d.jpeg_color_space == JCS_RGB)
		d.out_color_space = JCS_RGB;
	else {
		snprintf(e.msg, sizeof e.msg, "colour space %d (CMYK/YCCK) not supported", (int)d.jpeg_color_space);
		longjmp(e.jb, 1);
	}
	{
		/* every 8x8 block of the full-resolution component codes at least
		 * one Huffman symbol (its DC difference) of at least one bit, so a
		 * Huffman-coded file holds at least blocks/8 bytes: a damaged
		 * header declaring a vast image is refused here, before libjpeg
		 * sizes its buffers by it (a multi-scan file makes it hold every
		 * coefficient: 25 GB for a 402-byte file) */
		struct stat st;
		double blocks = ceil(d.image_width / 8.0) * ceil(d.image_height / 8.0);
		double bytes = (double)d.image_width * d.image_height * (d.num_components == 1 ? 1 : 3);
		if (!d.arith_code && fstat(fileno(fp), &st) == 0 && blocks > 8.0 * (double)st.st_size + 64) {
			snprintf(e.msg, sizeof e.msg, "damaged header: %ux%u pixels cannot fit in %lld bytes",
			         (unsigned)d.image_width, (unsigned)d.image_height, (long long)st.st_size);
			longjmp(e.jb, 1);
		}
		if (bytes > (double)mp_max_bytes()) {
			snprintf(e.msg, sizeof e.msg, "%ux%u pixels: more than MEDPIPE_MAX_BYTES (%zu bytes)",
			         (unsigned)d.image_width, (unsigned)d.image_height, mp_max_bytes());
			longjmp(e.jb, 1);
		}
		/* libjpeg's own buffers (a multi-scan image's coefficients: 2 bytes
		 * a sample) stay within a few times the image's size */
		d.mem->max_memory_to_use = (long)(4 * bytes + (64 << 20) < (double)LONG_MAX / 2 ? 4 * bytes + (64 << 20)
		                                                                            : (double)LONG_MAX / 2);
	}
	jpeg_start_decompress(&d);
	{
		int ch = d.output_components;
		double sx = 1, sy = 1;
		if (d.saw_JFIF_marker && d.X_density > 0 && d.Y_density > 0 && (d.density_unit == 1 || d.density_unit == 2)) {
			double u = d.density_unit == 1 ? 25.4 : 10.0;
			sx = u / d.X_density;
			sy = u / d.Y_density;
		}
		if (mp_img_frame(f, MP_UINT8, ch, "RGB-color", d.output_width, d.output_height, 1, sx, sy, 1) < 0) {
			jpeg_destroy_decompress(&d);
			fclose(fp);
			return mp_preerr("%s", path);
		}
		size_t stride = (size_t)d.output_width * (size_t)ch;
		while (d.output_scanline < d.output_height) {
			JSAMPROW row = (JSAMPROW)f->data + (size_t)d.output_scanline * stride;
			jpeg_read_scanlines(&d, &row, 1);
		}
	}
	if (d.err->num_warnings > 0) {
		/* libjpeg fills a truncated stream with grey and warns: refuse it */
		char m[JMSG_LENGTH_MAX];
		d.err->format_message((j_common_ptr)&d, m);
		jpeg_destroy_decompress(&d);
		fclose(fp);
		mp_frame_free(f);
		return mp_seterr("%s: JPEG: damaged data: %s", path, m);
	}
	jpeg_finish_decompress(&d);
	jpeg_destroy_decompress(&d);
	fclose(fp);
	mp_set_kv(f, MP_K_IMAGE_BITS, "8");
	return 0;
}

/* ---------------------------------------------------------------- BMP */
static uint32_t
le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned
le16(const unsigned char *p)
{
	return (unsigned)p[0] | (unsigned)p[1] << 8;
}

int
mp_bmp_read(const char *path, mp_frame *f)
{
	FILE *fp = fopen(path, "rb");
	unsigned char h[54 + 12], pal[256 * 4], *row = NULL;
	long fsize;
	uint32_t off, hsz, comp, ncol;
	int32_t w, hh;
	unsigned bpp, planes;
	int grey = 1, topdown;
	size_t stride, H;
	uint32_t mask[3] = { 0, 0, 0 };

	mp_frame_init(f);
	if (!fp)
		return mp_seterr("%s: cannot open:", path);
	fseek(fp, 0, SEEK_END);
	fsize = ftell(fp);
	rewind(fp);
	if (fread(h, 1, 54, fp) != 54 || h[0] != 'B' || h[1] != 'M')
		goto bad_hdr;
	off = le32(h + 10);
	hsz = le32(h + 14);
	if (hsz < 40 || hsz > 1024)
		goto bad_hdr;
	w = (int32_t)le32(h + 18);
	hh = (int32_t)le32(h + 22);
	planes = le16(h + 26);
	bpp = le16(h + 28);
	comp = le32(h + 30);
	ncol = le32(h + 46);
	if (planes != 1 || w <= 0 || hh == 0 || hh == INT32_MIN || w > (1 << 20) || hh > (1 << 20) || hh < -(1 << 20))
		goto bad_hdr;
	if (!(bpp == 8 || bpp == 24 || bpp == 32 || bpp == 1 || bpp == 4))
		return fclose(fp), mp_seterr("%s: BMP: %u bits per pixel not supported", path, bpp);
	if (!(comp == 0 || (comp == 3 && bpp == 32)))
		return fclose(fp), mp_seterr("%s: BMP: compression %u not supported (only uncompressed)", path, comp);
	if (comp == 3) {
		unsigned char m[12];
		if (hsz >= 52) {
			if (fseek(fp, 14 + 40, SEEK_SET) || fread(m, 1, 12, fp) != 12)
				goto bad_hdr;
		} else if (fread(m, 1, 12, fp) != 12)
			goto bad_hdr;
		for (int i = 0; i < 3; i++) {
			uint32_t k = mask[i] = le32(m + 4 * i);
			/* each mask one run of 1 to 16 bits, no two overlapping */
			while (k && !(k & 1))
				k >>= 1;
			if ((k & (k + 1)) != 0 || k > 0xffff || (i > 0 && (mask[i] & mask[i - 1])) ||
			    (i == 2 && (mask[2] & mask[0])))
				return fclose(fp), mp_seterr("%s: BMP: bad bit-field masks", path);
		}
	}
	topdown = hh < 0;
	H = (size_t)(hh < 0 ? -(int64_t)hh : hh);
	if (bpp <= 8) {
		if (ncol == 0)
			ncol = 1u << bpp;
		if (ncol > (1u << bpp))
			goto bad_hdr;
		if (fseek(fp, 14 + (long)hsz, SEEK_SET) || fread(pal, 4, ncol, fp) != ncol)
			goto bad_hdr;
		for (uint32_t i = 0; i < ncol; i++)
			if (pal[4 * i] != pal[4 * i + 1] || pal[4 * i] != pal[4 * i + 2])
				grey = 0;
	} else
		grey = 0;
	stride = (((size_t)w * bpp + 31) / 32) * 4;
	if (off < 14 + hsz || (uint64_t)off + (uint64_t)stride * H > (uint64_t)fsize) {
		fclose(fp);
		return mp_seterr("%s: BMP: truncated: pixel data needs %llu bytes, the file has %ld", path,
				 (unsigned long long)off + (unsigned long long)stride * H, fsize);
	}
	if (mp_img_frame(f, MP_UINT8, grey ? 1 : 3, "RGB-color", (size_t)w, H, 1, 1, 1, 1) < 0) {
		fclose(fp);
		return mp_preerr("%s", path);
	}
	row = mp_xmalloc(stride);
	if (fseek(fp, (long)off, SEEK_SET))
		goto trunc;
	for (size_t y = 0; y < H; y++) {
		size_t oy = topdown ? y : H - 1 - y;
		unsigned char *o = (unsigned char *)f->data + oy * (size_t)w * (grey ? 1 : 3);
		if (fread(row, 1, stride, fp) != stride)
			goto trunc;
		for (size_t x = 0; x < (size_t)w; x++) {
			unsigned idx, r, g, b;
			if (bpp <= 8) {
				size_t bit = x * bpp;
				idx = (row[bit / 8] >> (8 - bpp - bit % 8)) & ((1u << bpp) - 1);
				if (idx >= ncol)
					idx = 0;
				b = pal[4 * idx], g = pal[4 * idx + 1], r = pal[4 * idx + 2];
			} else if (bpp == 24) {
				b = row[3 * x], g = row[3 * x + 1], r = row[3 * x + 2];
			} else {
				uint32_t v = le32(row + 4 * x);
				if (comp == 3) {
					unsigned c[3];
					for (int i = 0; i < 3; i++) {
						uint32_t m = mask[i];
						if (!m) {
							c[i] = 0;
							continue;
						}
						int sh = 0, nb = 0;
						while (!(m & 1)) m >>= 1, sh++;
						while (m & 1) m >>= 1, nb++;
						uint32_t val = (v >> sh) & ((1u << nb) - 1);
						c[i] = nb >= 8 ? val >> (nb - 8) : (unsigned)((val * 255 + ((1u << nb) - 1) / 2) / ((1u << nb) - 1));
					}
					r = c[0], g = c[1], b = c[2];
				} else
					b = v & 255, g = v >> 8 & 255, r = v >> 16 & 255;
			}
			if (grey)
				o[x] = (unsigned char)r;
			else
				o[3 * x] = (unsigned char)r, o[3 * x + 1] = (unsigned char)g, o[3 * x + 2] = (unsigned char)b;
		}
	}
	free(row);
	fclose(fp);
	mp_set_kv(f, MP_K_IMAGE_BITS, "8");
	return 0;
trunc:
	free(row);
	fclose(fp);
	mp_frame_free(f);
	return mp_seterr("%s: BMP: truncated pixel data", path);
bad_hdr:
	fclose(fp);
	return mp_seterr("%s: BMP: damaged or unsupported header", path);
}
