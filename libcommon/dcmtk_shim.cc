// dcmtk_shim.cc - the one C++ file of medpipe: a thin C API over DCMTK for
// reading tags and decoded pixel data (see dicom_shim.h).  No exception or
// DCMTK type crosses the C boundary.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <new>
#include <vector>

extern "C" {
#include "mp.h"
#include "dicom_shim.h"
}

struct mp_dcm {
	DcmFileFormat ff;
	char xfer[68];
	E_TransferSyntax xs;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void
do_init(void)
{
	OFLog::configure(OFLogger::OFF_LOG_LEVEL);
	DJDecoderRegistration::registerCodecs();
	DJLSDecoderRegistration::registerCodecs();
	DcmRLEDecoderRegistration::registerCodecs();
	// load the data dictionary now, in one thread
	(void)dcmDataDict.isDictionaryLoaded();
}

extern "C" void
mp_dcm_global_init(void)
{
	pthread_once(&init_once, do_init);
}

extern "C" mp_dcm *
mp_dcm_load(const char *path, int headers_only)
{
	mp_dcm_global_init();
	mp_dcm *d = new (std::nothrow) mp_dcm;
	if (!d) {
		mp_seterr("out of memory");
		return NULL;
	}
	try {
		OFCondition c;
		if (headers_only)
			c = d->ff.loadFileUntilTag(OFFilename(path), EXS_Unknown, EGL_noChange,
			                           4096, ERM_autoDetect, DCM_PixelData);
		else
			c = d->ff.loadFile(OFFilename(path), EXS_Unknown, EGL_noChange, 4096, ERM_autoDetect);
		if (c.bad()) {
			mp_seterr("not readable as DICOM: %s", c.text());
			delete d;
			return NULL;
		}
		DcmDataset *ds = d->ff.getDataset();
		d->xs = ds->getOriginalXfer();
		DcmXfer x(d->xs);
		snprintf(d->xfer, sizeof d->xfer, "%s", x.getXferID() ? x.getXferID() : "");
	} catch (...) {
		mp_seterr("DICOM parser failed");
		delete d;
		return NULL;
	}
	return d;
}

extern "C" void
mp_dcm_free(mp_dcm *d)
{
	delete d;
}

extern "C" const char *
mp_dcm_xfer(const mp_dcm *d)
{
	return d->xfer;
}

extern "C" int
mp_dcm_is_j2k(const mp_dcm *d)
{
	return d->xs == EXS_JPEG2000LosslessOnly || d->xs == EXS_JPEG2000 ||
	       d->xs == EXS_JPEG2000MulticomponentLosslessOnly || d->xs == EXS_JPEG2000Multicomponent;
}

// walk a path; returns the element or NULL
static DcmElement *
find(mp_dcm *d, const char *path, DcmSequenceOfItems **seqout)
{
	DcmItem *it = d->ff.getDataset();
	if (!strncmp(path, "0002,", 5) && d->ff.getMetaInfo())
		it = d->ff.getMetaInfo();   // file meta information
	const char *p = path;
	if (seqout)
		*seqout = NULL;
	for (;;) {
		unsigned g, e;
		int used = 0;
		if (sscanf(p, "%4x,%4x%n", &g, &e, &used) != 2 || used != 9)
			return NULL;
		p += used;
		DcmTagKey key((Uint16)g, (Uint16)e);
		if (*p == '[') {
			char *end;
			long idx = strtol(p + 1, &end, 10);
			if (*end != ']' || idx < 0)
				return NULL;
			p = end + 1;
			DcmItem *sub = NULL;
			if (it->findAndGetSequenceItem(key, sub, (signed long)idx).bad() || !sub)
				return NULL;
			it = sub;
			if (*p == '/')
				p++;
			continue;
		}
		DcmElement *el = NULL;
		if (it->findAndGetElement(key, el, OFFalse).bad() || !el)
			return NULL;
		if (*p == '/') {
			// a sequence without an item number: item 0
			DcmItem *sub = NULL;
			if (it->findAndGetSequenceItem(key, sub, 0).bad() || !sub)
				return NULL;
			it = sub;
			p++;
			continue;
		}
		if (*p)
			return NULL;
		if (seqout && (el->ident() == EVR_SQ))
			*seqout = OFstatic_cast(DcmSequenceOfItems *, el);
		return el;
	}
}

extern "C" int
mp_dcm_str(mp_dcm *d, const char *path, char *buf, size_t n)
{
	try {
		DcmElement *el = find(d, path, NULL);
		if (!el || n == 0)
			return -1;
		OFString s;
		if (el->ident() == EVR_UN || el->ident() == EVR_OB) {
			Uint8 *b = NULL;
			if (el->getUint8Array(b).bad() || !b)
				return -1;
			s.assign((const char *)b, el->getLength());
		} else if (el->getOFStringArray(s).bad())
			return -1;
		size_t len = s.length();
		while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\0'))
			len--;
		size_t st = 0;
		while (st < len && s[st] == ' ')
			st++;
		if (len == st)
			return -1;
		size_t m = len - st < n - 1 ? len - st : n - 1;
		memcpy(buf, s.c_str() + st, m);
		buf[m] = 0;
		return 0;
	} catch (...) {
		return -1;
	}
}

extern "C" int
mp_dcm_nums(mp_dcm *d, const char *path, double *v, int max)
{
	try {
		DcmElement *el = find(d, path, NULL);
		if (!el)
			return 0;
		DcmEVR vr = el->ident();
		unsigned long vm = el->getVM();
		int k = 0;
		for (unsigned long i = 0; i < vm && k < max; i++) {
			double x = 0;
			OFCondition c;
			switch (vr) {
			case EVR_US: { Uint16 u; c = el->getUint16(u, i); x = u; break; }
			case EVR_SS: { Sint16 u; c = el->getSint16(u, i); x = u; break; }
			case EVR_UL: { Uint32 u; c = el->getUint32(u, i); x = u; break; }
			case EVR_SL: { Sint32 u; c = el->getSint32(u, i); x = u; break; }
			case EVR_FL: { Float32 u; c = el->getFloat32(u, i); x = u; break; }
			case EVR_FD: { Float64 u; c = el->getFloat64(u, i); x = u; break; }
			case EVR_DS: case EVR_IS: case EVR_LO: case EVR_SH: case EVR_CS: {
				OFString s;
				c = el->getOFString(s, i);
				if (c.good()) {
					char *end;
					x = strtod(s.c_str(), &end);
					while (*end == ' ')
						end++;
					if (end == s.c_str() || *end)
						c = EC_IllegalCall;
				}
				break;
			}
			case EVR_UN: {
				// explicit VR files may carry standard numeric tags as UN: text
				char b[256];
				if (i > 0 || mp_dcm_str(d, path, b, sizeof b) < 0)
					return k;
				char *p = b;
				while (*p && k < max) {
					char *end;
					double y = strtod(p, &end);
					if (end == p)
						break;
					v[k++] = y;
					p = end;
					while (*p == ' ')
						p++;
					if (*p != '\\')
						break;
					p++;
				}
				return k;
			}
			default:
				return k;
			}
			if (c.bad())
				break;
			v[k++] = x;
		}
		return k;
	} catch (...) {
		return 0;
	}
}

extern "C" int
mp_dcm_bytes(mp_dcm *d, const char *path, const unsigned char **p, size_t *n)
{
	try {
		DcmElement *el = find(d, path, NULL);
		if (!el)
			return -1;
		Uint8 *b = NULL;
		if (el->getUint8Array(b).bad() || !b)
			return -1;
		*p = b;
		*n = el->getLength();
		return 0;
	} catch (...) {
		return -1;
	}
}

extern "C" int
mp_dcm_items(mp_dcm *d, const char *path)
{
	try {
		DcmSequenceOfItems *sq = NULL;
		if (!find(d, path, &sq) || !sq)
			return 0;
		return (int)sq->card();
	} catch (...) {
		return 0;
	}
}

extern "C" int
mp_dcm_has_pixels(mp_dcm *d)
{
	return d->ff.getDataset()->tagExists(DCM_PixelData) ? 1 : 0;
}

static DcmPixelData *
pixel_element(mp_dcm *d)
{
	DcmElement *el = NULL;
	if (d->ff.getDataset()->findAndGetElement(DCM_PixelData, el).bad() || !el) {
		mp_seterr("no pixel data");
		return NULL;
	}
	if (el->ident() != EVR_PixelData) {
		mp_seterr("pixel data element of unexpected type");
		return NULL;
	}
	return OFstatic_cast(DcmPixelData *, el);
}

extern "C" int
mp_dcm_frame(mp_dcm *d, unsigned frame, void *buf, size_t n, char *colormodel, size_t cmn)
{
	try {
		DcmPixelData *pd = pixel_element(d);
		if (!pd)
			return -1;
		DcmDataset *ds = d->ff.getDataset();
		if (!DcmXfer(d->xs).isEncapsulated()) {
			// native: the frame's bytes straight from the element (DCMTK
			// gives 16-bit words in host order); n is the caller's frame size
			Uint16 ba = 16;
			ds->findAndGetUint16(DCM_BitsAllocated, ba);
			Uint8 *b = NULL;
			OFCondition c;
			if (ba == 8)
				c = pd->getUint8Array(b);
			else {
				Uint16 *w = NULL;
				c = pd->getUint16Array(w);
				b = (Uint8 *)w;
			}
			if (c.bad() || !b) {
				mp_seterr("pixel data unreadable: %s", c.bad() ? c.text() : "empty");
				return -1;
			}
			size_t len = pd->getLength();
			if ((size_t)frame * n + n > len) {
				mp_seterr("pixel data holds %zu bytes, frame %u needs %zu (truncated?)", len, frame + 1,
				          (size_t)frame * n + n);
				return -1;
			}
			memcpy(buf, b + (size_t)frame * n, n);
			if (colormodel && cmn) {
				OFString pi;
				ds->findAndGetOFString(DCM_PhotometricInterpretation, pi);
				snprintf(colormodel, cmn, "%s", pi.c_str());
			}
			return 0;
		}
		Uint32 fsize = 0;
		if (pd->getUncompressedFrameSize(ds, fsize).bad()) {
			mp_seterr("cannot size the frame (image pixel attributes missing)");
			return -1;
		}
		if (fsize > n + 1 || n > 0xfffffff0u) {
			mp_seterr("frame size %lu does not match the image attributes", (unsigned long)fsize);
			return -1;
		}
		// decode into an even-sized buffer (odd frame sizes upset the decoders)
		std::vector<Uint8> tmp(((size_t)fsize + 1) & ~(size_t)1);
		Uint32 start = 0;
		OFString cm;
		OFCondition c = pd->getUncompressedFrame(ds, frame, start, tmp.data(), (Uint32)tmp.size(), cm, NULL);
		if (c.bad()) {
			mp_seterr("pixel data of frame %u: %s", frame + 1, c.text());
			return -1;
		}
		memcpy(buf, tmp.data(), n < tmp.size() ? n : tmp.size());
		if (colormodel && cmn)
			snprintf(colormodel, cmn, "%s", cm.c_str());
		return 0;
	} catch (...) {
		mp_seterr("pixel data of frame %u: decoder failed", frame + 1);
		return -1;
	}
}

extern "C" int
mp_dcm_frame_bytes(mp_dcm *d, unsigned frame, unsigned nframes, unsigned char **out, size_t *n)
{
	try {
		DcmPixelData *pd = pixel_element(d);
		if (!pd)
			return -1;
		DcmPixelSequence *seq = NULL;
		if (pd->getEncapsulatedRepresentation(d->xs, NULL, seq).bad() || !seq) {
			mp_seterr("pixel data is not encapsulated");
			return -1;
		}
		unsigned long nitems = seq->card();
		if (nitems < 2) {
			mp_seterr("encapsulated pixel data holds no fragment");
			return -1;
		}
		// fragments: items 1..nitems-1; item 0 is the basic offset table
		std::vector<Uint8 *> fp;
		std::vector<Uint32> fl;
		for (unsigned long i = 1; i < nitems; i++) {
			DcmPixelItem *it = NULL;
			if (seq->getItem(it, i).bad() || !it) {
				mp_seterr("fragment %lu unreadable", i);
				return -1;
			}
			Uint8 *b = NULL;
			Uint32 len = it->getLength();
			if (len && (it->getUint8Array(b).bad() || !b)) {
				mp_seterr("fragment %lu unreadable (truncated file?)", i);
				return -1;
			}
			fp.push_back(b);
			fl.push_back(len);
		}
		size_t nf = fp.size();
		size_t first = 0, last = 0; // fragment range [first, last)
		// offset table
		DcmPixelItem *bot = NULL;
		std::vector<Uint32> offs;
		if (seq->getItem(bot, 0).good() && bot && bot->getLength() >= 4) {
			Uint32 *o = NULL;
			Uint8 *ob = NULL;
			if (bot->getUint8Array(ob).good() && ob) {
				size_t k = bot->getLength() / 4;
				for (size_t i = 0; i < k; i++) {
					Uint32 v;
					memcpy(&v, ob + 4 * i, 4);
					offs.push_back(v); // DCMTK holds it in host order for LE syntaxes
				}
			}
			(void)o;
		}
		if (nframes == 1) {
			first = 0;
			last = nf;
		} else if (offs.size() == nframes) {
			// map offsets (from the first fragment's item tag) to fragments
			std::vector<size_t> fstart(nf);
			size_t pos = 0;
			for (size_t i = 0; i < nf; i++) {
				fstart[i] = pos;
				pos += 8 + (size_t)fl[i];
			}
			size_t want = offs[frame];
			size_t wantend = frame + 1 < nframes ? offs[frame + 1] : pos;
			first = nf;
			last = nf;
			for (size_t i = 0; i < nf; i++) {
				if (fstart[i] == want)
					first = i;
				if (fstart[i] == wantend)
					last = i;
			}
			if (first >= nf || last <= first) {
				mp_seterr("basic offset table does not match the fragments");
				return -1;
			}
		} else if (nf == nframes) {
			first = frame;
			last = frame + 1;
		} else {
			// split at JPEG 2000 codestream starts (SOC marker FF4F followed by SIZ FF51)
			std::vector<size_t> starts;
			for (size_t i = 0; i < nf; i++)
				if (fl[i] >= 4 && fp[i][0] == 0xff && fp[i][1] == 0x4f && fp[i][2] == 0xff && fp[i][3] == 0x51)
					starts.push_back(i);
			if (starts.size() != nframes) {
				mp_seterr("cannot tell which fragments belong to frame %u (%zu fragments, %u frames, no offset table)",
				          frame + 1, nf, nframes);
				return -1;
			}
			first = starts[frame];
			last = frame + 1 < nframes ? starts[frame + 1] : nf;
		}
		size_t tot = 0;
		for (size_t i = first; i < last; i++)
			tot += fl[i];
		unsigned char *b = (unsigned char *)malloc(tot ? tot : 1);
		if (!b) {
			mp_seterr("out of memory");
			return -1;
		}
		size_t pos = 0;
		for (size_t i = first; i < last; i++) {
			if (fl[i])
				memcpy(b + pos, fp[i], fl[i]);
			pos += fl[i];
		}
		*out = b;
		*n = tot;
		return 0;
	} catch (...) {
		mp_seterr("encapsulated pixel data unreadable");
		return -1;
	}
}
