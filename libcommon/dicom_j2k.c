/* dicom_j2k.c - JPEG 2000 frames of DICOM objects through OpenJPEG */
#include "mp.h"
#include "mp_dicom.h"

#include <openjpeg.h>
#include <stdint.h>
#include <string.h>

typedef struct {
	const unsigned char *p;
	size_t n, pos;
} memsrc;

static OPJ_SIZE_T
mread(void *buf, OPJ_SIZE_T n, void *u)
{
	memsrc *m = u;
	if (m->pos >= m->n)
		return (OPJ_SIZE_T)-1;
	size_t k = m->n - m->pos < n ? m->n - m->pos : n;
	memcpy(buf, m->p + m->pos, k);
	m->pos += k;
	return k;
}

static OPJ_OFF_T
mskip(OPJ_OFF_T n, void *u)
{
	memsrc *m = u;
	if (n < 0) {
		if ((size_t)-n > m->pos)
			n = -(OPJ_OFF_T)m->pos;
	} else if ((size_t)n > m->n - m->pos)
		n = (OPJ_OFF_T)(m->n - m->pos);
	m->pos += n;
	return n;
}

static OPJ_BOOL
mseek(OPJ_OFF_T n, void *u)
{
	memsrc *m = u;
	if (n < 0 || (size_t)n > m->n)
		return OPJ_FALSE;
	m->pos = (size_t)n;
	return OPJ_TRUE;
}

static void
quiet(const char *msg, void *u)
{
	(void)msg;
	(void)u;
}

static void
keep_err(const char *msg, void *u)
{
	char *e = u;
	if (!e[0]) {
		snprintf(e, 200, "%s", msg);
		size_t l = strlen(e);
		while (l && (e[l - 1] == '\n' || e[l - 1] == ' '))
			e[--l] = 0;
	}
}

int
mp_j2k_decode(const unsigned char *data, size_t n, int rows, int cols, int spp,
              int bps, void *buf, int *is_signed)
{
	char err[200] = "";
	/* skip leading zero padding some writers leave */
	if (n < 4)
		return mp_seterr("JPEG 2000 stream too short (%zu bytes)", n);
	OPJ_CODEC_FORMAT fmt;
	if (data[0] == 0xff && data[1] == 0x4f)
		fmt = OPJ_CODEC_J2K;
	else if (n >= 12 && !memcmp(data + 4, "jP  ", 4))
		fmt = OPJ_CODEC_JP2;
	else
		return mp_seterr("JPEG 2000 frame does not start with a codestream or JP2 signature");
	opj_codec_t *c = opj_create_decompress(fmt);
	opj_stream_t *st = opj_stream_create(1 << 16, OPJ_TRUE);
	opj_image_t *img = NULL;
	memsrc m = { data, n, 0 };
	int rc = -1;
	if (!c || !st) {
		mp_seterr("OpenJPEG: cannot create a decoder");
		goto out;
	}
	opj_set_info_handler(c, quiet, NULL);
	opj_set_warning_handler(c, quiet, NULL);
	opj_set_error_handler(c, keep_err, err);
	opj_stream_set_user_data(st, &m, NULL);
	opj_stream_set_user_data_length(st, n);
	opj_stream_set_read_function(st, mread);
	opj_stream_set_skip_function(st, mskip);
	opj_stream_set_seek_function(st, mseek);
	opj_dparameters_t par;
	opj_set_default_decoder_parameters(&par);
	if (!opj_setup_decoder(c, &par) || !opj_read_header(st, c, &img) || !img) {
		mp_seterr("JPEG 2000 header: %s", err[0] ? err : "unreadable");
		goto out;
	}
	/* the size the codestream declares, checked before OpenJPEG allocates
	 * and decodes it (a damaged SIZ can ask for gigabytes) */
	if (img->x1 <= img->x0 || img->y1 <= img->y0 || img->x1 - img->x0 != (OPJ_UINT32)cols ||
	    img->y1 - img->y0 != (OPJ_UINT32)rows || (int)img->numcomps < spp) {
		mp_seterr("JPEG 2000 frame is %ux%u with %u components, the header says %dx%d with %d",
			  img->x1 > img->x0 ? img->x1 - img->x0 : 0, img->y1 > img->y0 ? img->y1 - img->y0 : 0,
			  img->numcomps, cols, rows, spp);
		goto out;
	}
	if (!opj_decode(c, st, img) || !opj_end_decompress(c, st)) {
		mp_seterr("JPEG 2000 data: %s", err[0] ? err : "cannot decode (truncated?)");
		goto out;
	}
	if ((int)img->numcomps < spp) {
		mp_seterr("JPEG 2000 frame has %u components, the header says %d", img->numcomps, spp);
		goto out;
	}
	for (int k = 0; k < spp; k++) {
		opj_image_comp_t *cp = &img->comps[k];
		if ((int)cp->w != cols || (int)cp->h != rows || !cp->data) {
			mp_seterr("JPEG 2000 frame is %ux%u, the header says %dx%d", cp->w, cp->h, cols, rows);
			goto out;
		}
		if ((bps == 1 && cp->prec > 8) || cp->prec > 16) {
			mp_seterr("JPEG 2000 component precision %u does not fit BitsAllocated", cp->prec);
			goto out;
		}
	}
	*is_signed = img->comps[0].sgnd ? 1 : 0;
	size_t np = (size_t)rows * (size_t)cols;
	for (int k = 0; k < spp; k++) {
		const OPJ_INT32 *s = img->comps[k].data;
		if (bps == 1) {
			uint8_t *d = buf;
			for (size_t i = 0; i < np; i++)
				d[i * spp + k] = (uint8_t)s[i];
		} else {
			uint16_t *d = buf;
			for (size_t i = 0; i < np; i++)
				d[i * spp + k] = (uint16_t)s[i];
		}
	}
	rc = 0;
out:
	if (img)
		opj_image_destroy(img);
	if (st)
		opj_stream_destroy(st);
	if (c)
		opj_destroy_codec(c);
	return rc;
}
