/* png.c - 8-bit RGB PNG output through libpng */
#include "mp.h"
#include "mp_preview.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

int
mp_rgb_init(mp_rgb *r, size_t w, size_t h, uint8_t grey)
{
	size_t n;
	r->w = w;
	r->h = h;
	r->px = NULL;
	if (w == 0 || h == 0 || w > 65535 || h > 65535 || mp_mulsize(w * h, 3, &n))
		return mp_seterr("image of %zux%zu pixels: size out of range", w, h);
	r->px = malloc(n);
	if (!r->px)
		return mp_seterr("image of %zux%zu pixels: out of memory", w, h);
	memset(r->px, grey, n);
	return 0;
}

void
mp_rgb_free(mp_rgb *r)
{
	free(r->px);
	r->px = NULL;
	r->w = r->h = 0;
}

static void
png_err(png_structp p, png_const_charp msg)
{
	mp_seterr("PNG: %s", msg);
	png_longjmp(p, 1);
}

static void
png_warnfn(png_structp p, png_const_charp msg)
{
	(void)p;
	(void)msg;
}

int
mp_png_write(FILE *fp, const char *name, const mp_rgb *r)
{
	png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_err, png_warnfn);
	png_infop info = p ? png_create_info_struct(p) : NULL;
	if (!p || !info) {
		png_destroy_write_struct(&p, NULL);
		return mp_seterr("%s: PNG: out of memory", name);
	}
	if (setjmp(png_jmpbuf(p))) {
		png_destroy_write_struct(&p, &info);
		return mp_preerr("%s", name);
	}
	png_init_io(p, fp);
	png_set_IHDR(p, info, (png_uint_32)r->w, (png_uint_32)r->h, 8, PNG_COLOR_TYPE_RGB,
	             PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_set_compression_level(p, 6);
	png_write_info(p, info);
	for (size_t y = 0; y < r->h; y++)
		png_write_row(p, r->px + y * r->w * 3);
	png_write_end(p, info);
	png_destroy_write_struct(&p, &info);
	if (fflush(fp) != 0 || ferror(fp))
		return mp_seterr("%s: write error:", name);
	return 0;
}

int
mp_png_save(const char *path, const mp_rgb *r)
{
	mp_afile *a = mp_afile_open(path);
	if (!a)
		return -1;
	if (mp_png_write(a->fp, path, r) < 0) {
		mp_afile_abort(a);
		return -1;
	}
	return mp_afile_commit(a);
}
