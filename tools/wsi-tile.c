/* wsi-tile - a whole-slide image (OpenSlide) to a stream of RGB tile frames */
#include "mp.h"
#include "mp_fmt.h"
#include "mp_wsi.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static long level = -1, tile = 1024, stride = 0, median = 7, sat = 8;
static double mpp = 0, mintissue = -1;
static const char *tissue = "none", *kase;
static int emitmask;

static const mp_opt opts[] = {
	{ "level", 'l', MP_OPT_INT, &level, NULL, "L", "Pyramid level to tile (0: full resolution, the default)." },
	{ "mpp", 'm', MP_OPT_DBL, &mpp, NULL, "F", "Tile the level OpenSlide picks for F micrometres per pixel (the largest downsample not above F / the slide's MPP); no resampling: the tiles carry the level's real spacing." },
	{ "tile", 't', MP_OPT_INT, &tile, NULL, "N", "Tile size in pixels of the level (default 1024)." },
	{ "stride", 's', MP_OPT_INT, &stride, NULL, "N", "Step between tiles (default: the tile size; smaller values overlap)." },
	{ "tissue", 0, MP_OPT_STR, &tissue, NULL, "M", "Tissue detection: none (the default: every tile), sat (saturation above --sat-threshold) or otsu (Otsu's threshold of the saturation), on the lowest-resolution level after a median filter." },
	{ "sat-threshold", 0, MP_OPT_INT, &sat, NULL, "T", "Saturation threshold 0..255 for --tissue sat (default 8)." },
	{ "median", 0, MP_OPT_INT, &median, NULL, "K", "Median filter size (odd) before the threshold (default 7)." },
	{ "min-tissue", 0, MP_OPT_DBL, &mintissue, NULL, "F", "Keep tiles whose tissue fraction is at least F (0..1; default 0.05 with --tissue sat/otsu)." },
	{ "emit-mask", 0, MP_OPT_FLAG, &emitmask, NULL, NULL, "Write the tissue mask (uint8 0/255, role mask, the geometry of its level) as the first frame." },
	{ "case", 'c', MP_OPT_STR, &kase, NULL, "ID", "Case identifier of the frames (default: the slide's file name without extension)." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"wsi-tile",
	"cut a whole-slide image (OpenSlide) into RGB tile frames",
	"[options] SLIDE",
	"wsi-tile opens SLIDE with OpenSlide (Aperio SVS, generic tiled TIFF, Hamamatsu, MIRAX, Philips, "
	"Leica, Ventana, ...) and writes tiles of one pyramid level as frames (see medpipe-vol(5)) to "
	"standard output: uint8 RGB, sizes 3 N N (kind RGB-color), role image. Tiles start at "
	"level pixels 0, stride, 2 stride, ... while inside the level; a tile that reaches past the "
	"right or bottom edge is padded with zeros, as MedSAM's patching pads. Pixels come from "
	"openslide_read_region and are un-premultiplied as openslide-python's read_region does "
	"(255 c / a, truncated; a pixel of alpha 0 keeps its stored bytes, which are 0 outside the slide): each tile equals "
	"read_region((x, y), level, (N, N)).convert('RGB').\n\n"
	"Geometry: spacing MPP x downsample in mm (1 x downsample when the slide has no MPP); the "
	"origin is the centre of the tile's first pixel in level-0 pixels times the MPP "
	"((x + (downsample - 1) / 2) MPP), so tiles of every level line up in one physical space "
	"and vol-save writes tiles a viewer places correctly. Keys: " MP_K_WSI_LEVEL ", "
	MP_K_WSI_DOWNSAMPLE ", " MP_K_WSI_X " and " MP_K_WSI_Y " (level-0 position of the "
	"top-left pixel, what read_region takes), " MP_K_WSI_COL ", " MP_K_WSI_ROW ", "
	MP_K_WSI_MPP " (level 0, micrometres, or 'unknown'), " MP_K_WSI_TISSUE " (the tissue "
	"fraction, with --tissue).\n\n"
	"Tissue detection (--tissue sat or otsu) reads the lowest-resolution level, takes the HSV "
	"saturation as OpenCV computes it, a median filter (--median) and a threshold (fixed, "
	"or Otsu's), as common pathology pipelines do; a tile's tissue fraction is the share of "
	"mask pixels under it (outside the slide counts as background), and tiles below "
	"--min-tissue are left out.\n\n"
	"A file OpenSlide cannot open or read makes wsi-tile exit with status 1 and one line.",
	"$ wsi-tile --tile 1024 slide.svs | hu-window --medsam-2d | vol2npz -o '{case}.npz'\n"
	"Every 1024 x 1024 tile of level 0.\n"
	"$ wsi-tile --mpp 2 --tissue otsu --min-tissue 0.2 slide.svs | vol-save -p 'tiles/{case}_{n}.nrrd'\n"
	"Tiles at about 2 um/pixel that are at least 20% tissue.",
	"vol-cat(1), hu-window(1), vol2npz(1), vol-save(1), medpipe-vol(5), medpipe-formats(5)",
	opts, 1
};

static void
set_keyf(mp_frame *f, const char *k, double v)
{
	char b[40];

	mp_fmt_double(b, sizeof b, v);
	mp_set_kv(f, k, b);
}

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args), mth, lev, ml;
	mp_wsi *w;
	mp_out *o;
	double mx, my, ds, mds = 1;
	int64_t lw, lh, mw = 0, mh = 0;
	uint8_t *mask = NULL;
	char *cs;
	size_t ntiles = 0, kept = 0;

	if (nargs != 1)
		mp_usage_die("want one SLIDE");
	if (level >= 0 && mpp > 0)
		mp_usage_die("--level and --mpp exclude each other");
	if (mpp < 0 || !isfinite(mpp))
		mp_usage_die("--mpp must be > 0");
	if (tile < 1 || tile > 16384)
		mp_usage_die("--tile must be 1..16384");
	if (stride == 0)
		stride = tile;
	if (stride < 1)
		mp_usage_die("--stride must be > 0");
	mth = strcmp(tissue, "none") == 0 ? 0 : strcmp(tissue, "sat") == 0 ? 1 : strcmp(tissue, "otsu") == 0 ? 2 : -1;
	if (mth < 0)
		mp_usage_die("--tissue: want none, sat or otsu, not '%s'", tissue);
	if (median < 1 || median % 2 == 0 || median > 255)
		mp_usage_die("--median must be odd, 1..255");
	if (sat < 0 || sat > 255)
		mp_usage_die("--sat-threshold must be 0..255");
	if (mintissue < 0)
		mintissue = mth ? 0.05 : 0;
	if (mintissue > 1)
		mp_usage_die("--min-tissue must be 0..1");
	if (emitmask && !mth)
		mp_usage_die("--emit-mask needs --tissue sat or otsu");

	if (!(w = mp_wsi_open(args[0])))
		mp_die("%s", mp_err());
	mp_wsi_mpp(w, &mx, &my);
	if (mpp > 0) {
		if (!(mx > 0))
			mp_die("%s: --mpp: the slide states no microns per pixel", args[0]);
		lev = mp_wsi_best_level(w, mpp / mx);
	} else
		lev = level < 0 ? 0 : (int)level;
	if (lev < 0 || lev >= mp_wsi_levels(w))
		mp_die("%s: no level %d (the slide has %d)", args[0], lev, mp_wsi_levels(w));
	mp_wsi_level_size(w, lev, &lw, &lh);
	ds = mp_wsi_downsample(w, lev);
	if (lw <= 0 || lh <= 0 || !(ds > 0))
		mp_die("%s: level %d: bad size or downsample", args[0], lev);
	cs = kase ? mp_xstrdup(kase) : mp_fmt_stem(args[0]);
	{
		/* the stem of "a/slide.svs" */
		char *dot = strrchr(cs, '.');
		if (!kase && dot && dot != cs)
			*dot = 0;
	}
	o = mp_out_stdout();
	if (mth) {
		uint8_t *rgb;
		int used;
		ml = mp_wsi_levels(w) - 1;
		mp_wsi_level_size(w, ml, &mw, &mh);
		mds = mp_wsi_downsample(w, ml);
		if (mw <= 0 || mh <= 0 || (double)mw * (double)mh > 1e9)
			mp_die("%s: level %d is too large for a tissue mask", args[0], ml);
		rgb = mp_xmalloc((size_t)mw * (size_t)mh * 3);
		mask = mp_xmalloc((size_t)mw * (size_t)mh);
		if (mp_wsi_read_rgb(w, 0, 0, ml, mw, mh, rgb) < 0 ||
		    mp_tissue_mask(rgb, (size_t)mw, (size_t)mh, (int)median, mth == 2, (int)sat, mask, &used) < 0)
			mp_die("%s: tissue mask: %s", args[0], mp_err());
		free(rgb);
		mp_note("tissue mask on level %d (%lld x %lld), threshold %d", ml, (long long)mw, (long long)mh, used);
		if (emitmask) {
			mp_frame f;
			double sx = (mx > 0 ? mx : 1000) * mds / 1000, sy = (my > 0 ? my : 1000) * mds / 1000;
			if (mp_img_frame(&f, MP_UINT8, 1, NULL, (size_t)mw, (size_t)mh, 1, sx, sy, 1) < 0)
				mp_die("%s: %s", args[0], mp_err());
			memcpy(f.data, mask, (size_t)mw * (size_t)mh);
			f.origin[0] = (mds - 1) / 2 * (mx > 0 ? mx : 1000) / 1000;
			f.origin[1] = (mds - 1) / 2 * (my > 0 ? my : 1000) / 1000;
			mp_set_case(&f, cs);
			mp_set_role(&f, "mask");
			mp_set_kvf(&f, MP_K_WSI_LEVEL, "%d", ml);
			set_keyf(&f, MP_K_WSI_DOWNSAMPLE, mds);
			mp_set_kvf(&f, MP_K_WSI_THRESHOLD, "%d", used);
			if (mp_out_frame(o, &f) < 0)
				mp_die("%s", mp_err());
			mp_frame_free(&f);
		}
	}
	{
		double umx = mx > 0 ? mx : 1000, umy = my > 0 ? my : 1000;
		for (int64_t ly = 0, row = 0; ly < lh; ly += stride, row++)
			for (int64_t lx = 0, col = 0; lx < lw; lx += stride, col++) {
				int64_t X = llround((double)lx * ds), Y = llround((double)ly * ds);
				double frac = -1;
				mp_frame f;
				ntiles++;
				if (mth) {
					/* the tile's level-0 rectangle on the mask level */
					double e0x = (double)X / mds, e0y = (double)Y / mds;
					double e1x = ((double)X + (double)tile * ds) / mds, e1y = ((double)Y + (double)tile * ds) / mds;
					int64_t x0 = (int64_t)floor(e0x), y0 = (int64_t)floor(e0y);
					int64_t x1 = (int64_t)ceil(e1x), y1 = (int64_t)ceil(e1y);
					size_t cnt = 0, tot = (size_t)((x1 - x0) * (y1 - y0));
					for (int64_t yy = y0; yy < y1 && yy < mh; yy++)
						for (int64_t xx = x0; xx < x1 && xx < mw; xx++)
							cnt += mask[(size_t)yy * (size_t)mw + (size_t)xx] != 0;
					frac = tot ? (double)cnt / (double)tot : 0;
					if (frac < mintissue)
						continue;
				}
				if (mp_img_frame(&f, MP_UINT8, 3, "RGB-color", (size_t)tile, (size_t)tile, 1, umx * ds / 1000,
						 umy * ds / 1000, 1) < 0)
					mp_die("%s: %s", args[0], mp_err());
				if (mp_wsi_read_rgb(w, X, Y, lev, tile, tile, f.data) < 0)
					mp_die("%s: level %d tile at (%lld, %lld): %s", args[0], lev, (long long)X, (long long)Y,
					       mp_err());
				f.origin[0] = ((double)X + (ds - 1) / 2) * umx / 1000;
				f.origin[1] = ((double)Y + (ds - 1) / 2) * umy / 1000;
				mp_set_case(&f, cs);
				mp_set_role(&f, "image");
				mp_set_kvf(&f, MP_K_SOURCE, "OpenSlide %s", mp_wsi_vendor(w));
				mp_set_kvf(&f, MP_K_WSI_LEVEL, "%d", lev);
				set_keyf(&f, MP_K_WSI_DOWNSAMPLE, ds);
				mp_set_kvf(&f, MP_K_WSI_X, "%lld", (long long)X);
				mp_set_kvf(&f, MP_K_WSI_Y, "%lld", (long long)Y);
				mp_set_kvf(&f, MP_K_WSI_COL, "%lld", (long long)col);
				mp_set_kvf(&f, MP_K_WSI_ROW, "%lld", (long long)row);
				if (mx > 0) {
					char a[40], b[40];
					mp_fmt_double(a, sizeof a, mx);
					mp_fmt_double(b, sizeof b, my);
					mp_set_kvf(&f, MP_K_WSI_MPP, "%s,%s", a, b);
				} else
					mp_set_kv(&f, MP_K_WSI_MPP, "unknown");
				if (frac >= 0)
					set_keyf(&f, MP_K_WSI_TISSUE, frac);
				if (mp_out_frame(o, &f) < 0)
					mp_die("%s", mp_err());
				mp_frame_free(&f);
				kept++;
			}
	}
	if (mp_out_close(o) < 0)
		mp_die("%s", mp_err());
	mp_note("%s: level %d (%lld x %lld, downsample %g): %zu of %zu tiles", args[0], lev, (long long)lw,
		(long long)lh, ds, kept, ntiles);
	free(mask);
	free(cs);
	mp_wsi_close(w);
	free(args);
	return 0;
}
