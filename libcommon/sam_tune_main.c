/* sam_tune_main.c - the whole of sam-tune after its options: the inputs read
 * and held (frame streams, .npz files, npy folders), each sample's label
 * frame, and the training driver (data, validation, steps, logs, the
 * checkpoints, the optimizer state). */
#include "mp.h"
#include "mp_filter.h"
#include "mp_train.h"   /* includes mp_sam.h (whose frame part is outside its include guard) */
#include "mp_train_peft.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* the options, copied from mp_sam_tune_opts by mp_sam_tune_run */
static const char *weights;
static const char *out;
static const char *modestr;
static const char *logpath;
static const char *statepath;
static const char *resumepath;
static const char *prepstr;
static const char *interpstr;
static const char *adapterout;
static const char *schedstr;
static const char *vallogpath;
static long batch;
static long steps;
static long epochs;
static long lossres;
static long shift;
static long seed;
static long threads;
static long rank;
static long warmup;
static long schedsteps;
static long accum;
static double lr;
static double wd;
static double alpha;
static double valfrac;
static const char **valfiles;
static size_t nvalfiles;


typedef struct {
	mp_frame f;
	mp_sam_embinfo info;
	int is_emb;         /* a sample frame: embeddings, or an image (is_img) */
	int is_img, val;
} held;

static held *h;
static size_t nh;
static mp_sam model;
static char id[96];

static held *
hold(const mp_frame *f, int val)
{
	h = mp_xrealloc(h, (nh + 1) * sizeof *h);
	held *x = &h[nh++];
	memset(x, 0, sizeof *x);
	x->f = *f;
	x->is_emb = strcmp(mp_role(f), "label") != 0;
	x->is_img = strcmp(mp_role(f), "image") == 0;
	x->val = val;
	return x;
}

/* the inputs read: frame streams, .npz files and npy folders */
typedef struct {
	int enc, val;       /* embeddings frames are left out when the encoder trains */
	const char *path;   /* the input being read */
} srcs;

static int
src_input(void *ctx, const char *src)
{
	srcs *s = ctx;
	mp_frame **fr;
	size_t n;

	s->path = src;
	if (!mp_tune_files_is(src))
		return 0;
	if (mp_tune_files_read(src, &fr, &n))
		mp_die("%s", mp_err());
	for (size_t i = 0; i < n; i++) {
		hold(fr[i], s->val);
		free(fr[i]);
	}
	free(fr);
	return 1;
}

static int
src_role(void *ctx, mp_in *in, const mp_frame *f, const mp_heldcase *c)
{
	const srcs *s = ctx;
	const char *role = mp_role(f);

	(void)in, (void)c;
	return strcmp(role, "image") == 0 || (!s->enc && strcmp(role, "embedding") == 0) || strcmp(role, "label") == 0
	               ? MP_CASE_READ
	               : MP_CASE_SKIP;
}

/* a sample or label frame, kept */
static int
src_frame(void *ctx, mp_in *in, mp_frame *f, mp_out *o)
{
	const srcs *s = ctx;
	int no = mp_in_frameno(in);

	(void)o;
	if (mp_in_rest_spool(in, f, (size_t)1 << 30) < 0)
		return -1;
	held *x = hold(f, s->val);
	mp_frame_init(f);   /* x owns its data */
	if (x->is_emb && !x->is_img) {
		if (mp_sam_emb_read(&x->f, &x->info))
			mp_die("%s: frame %d: %s", s->path, no, mp_err());
		if (x->info.G != model.cfg.grid || x->info.C != model.cfg.out_chans || strcmp(x->info.weights_id, id) != 0)
			mp_die("%s: frame %d: embeddings made by weights %s (%s), not by %s (%s)", s->path, no,
			       mp_get_kv(&x->f, MP_K_SAM_WEIGHTS) ? mp_get_kv(&x->f, MP_K_SAM_WEIGHTS) : "?",
			       x->info.weights_id, weights, id);
	}
	return 0;
}

/* every sample and label frame of n inputs (0: standard input) */
static void
read_src(char **src, int n, int enc, int val)
{
	srcs s = { enc, val, NULL };

	mp_read_frames(src, n, NULL, &(mp_reader){ src_role, NULL, src_frame, NULL, src_input, 0, 1 }, &s);
}

/* the label frame of sample frame i */
static const held *
label_of(size_t i)
{
	const held *lab = NULL;
	for (size_t k = 0; k < nh; k++)
		if (!h[k].is_emb && h[k].val == h[i].val && strcmp(mp_case(&h[k].f), mp_case(&h[i].f)) == 0) {
			if (lab)   /* two files of the same name, or a stream with two */
				mp_die("two label frames of case '%s' in the %s data: which one belongs to the %s is unclear",
				       mp_case(&h[i].f), h[i].val ? "validation" : "training", h[i].is_img ? "image" : "embeddings");
			lab = &h[k];
		}
	if (lab)
		return lab;
	mp_die("%s of case '%s': no label frame of that case in the input", h[i].is_img ? "image" : "embeddings",
	       mp_case(&h[i].f));
	return NULL;
}

void
mp_sam_tune_run(const mp_sam_tune_opts *o, char **args, int nargs, int argc, char **argv)
{
	mp_sam_tune t;
	weights = o->weights;
	out = o->out;
	modestr = o->modestr;
	logpath = o->logpath;
	statepath = o->statepath;
	resumepath = o->resumepath;
	prepstr = o->prepstr;
	interpstr = o->interpstr;
	adapterout = o->adapterout;
	schedstr = o->schedstr;
	vallogpath = o->vallogpath;
	batch = o->batch;
	steps = o->steps;
	epochs = o->epochs;
	lossres = o->lossres;
	shift = o->shift;
	seed = o->seed;
	threads = o->threads;
	rank = o->rank;
	warmup = o->warmup;
	schedsteps = o->schedsteps;
	accum = o->accum;
	lr = o->lr;
	wd = o->wd;
	alpha = o->alpha;
	valfrac = o->valfrac;
	valfiles = o->valfiles;
	nvalfiles = o->nvalfiles;
	mp_tune_data d;
	int sched;

	int lora = strcmp(modestr, "lora") == 0, full = strcmp(modestr, "full") == 0, adapter = strcmp(modestr, "adapter") == 0;
	int enc = lora || full || adapter;   /* trains on images through the encoder */
	mp_sam_mode prep;
	mp_rs_method rm;
	if (!enc && strcmp(modestr, "decoder") != 0)
		mp_usage_die("--mode %s: decoder, lora, adapter or full", modestr);
	if (prepstr && mp_sam_mode_parse(prepstr, &prep))
		mp_usage_die("--prep: %s", mp_err());
	if (interpstr && mp_rs_parse(interpstr, &rm))
		mp_usage_die("--interp: %s", mp_err());
	if (rank < 1 || rank > 1024)
		mp_usage_die("--rank %ld: want 1..1024", rank);
	if (alpha < 0)
		alpha = (double)rank;
	if (!weights)
		weights = getenv("MEDPIPE_SAM_WEIGHTS");
	if (!weights || !*weights)
		mp_usage_die("--weights FILE is required (or MEDPIPE_SAM_WEIGHTS)");
	if (!out)
		mp_usage_die("--out FILE is required");
	if (adapterout && !lora && !adapter)
		mp_usage_die("--adapter-out: needs --mode lora or adapter");
	if (adapter && !adapterout)
		mp_usage_die("--mode adapter needs --adapter-out DIR (the adapters are not part of a SAM checkpoint)");
	if (batch < 1 || batch > 4096)
		mp_usage_die("--batch %ld: want 1..4096", batch);
	if (epochs < 1 || steps == 0 || steps < -1)
		mp_usage_die("--epochs and --steps must be positive");
	if (!(lr > 0) || !(wd >= 0) || shift < -1 || lossres < 0)
		mp_usage_die("--lr must be positive; --weight-decay, --bbox-shift and --loss-res not negative");
	if (threads < 0 || threads > 64)
		mp_usage_die("--threads %ld: want 1..64", threads);
	if (mp_tune_sched_parse(schedstr, &sched))
		mp_usage_die("--schedule %s", mp_err());
	if (warmup < 0 || schedsteps < 0 || accum < 1 || accum > 4096 || batch * accum > 65536)
		mp_usage_die("--warmup and --schedule-steps must not be negative, --accum 1..4096");
	if (vallogpath && !valfrac && !nvalfiles)
		mp_usage_die("--val-log needs --val");
	if (mp_dist_init(&argc, &argv))
		mp_die("%s", mp_err());
	int R = mp_dist_rank(), N = mp_dist_size();
	if (batch * accum < N)
		mp_usage_die("--batch %ld x --accum %ld: at least one sample per rank (%d ranks)", batch, accum, N);
	for (int i = 0; N > 1 && i < (nargs ? nargs : 1); i++)
		if (!nargs || strcmp(args[i], "-") == 0)
			mp_usage_die("%d MPI ranks read the input from files, not standard input (mpirun gives it to rank 0 only)", N);
	if (R)
		mp_verbose = 0;
	if (!threads && N > 1)
		threads = mp_dist_threads();
	if (mp_sam_load(&model, weights, mp_sam_cpu_backend((int)threads)))
		mp_die("%s", mp_err());
	for (int i = 0; enc && !model.tv && i < model.cfg.depth; i++)
		if (model.blk[i].sa1.w || model.blk[i].ma1.w)
			mp_die("%s: holds Medical-SAM-Adapter adapters; --mode %s trains the plain SAM encoder", weights, modestr);
	/* the model's own preprocessing, as sam-embed's, unless --prep/--interp say otherwise */
	if (!prepstr)
		prep = mp_sam_model_mode(&model);
	if (!interpstr && mp_rs_parse(mp_sam_mode_interp(prep), &rm))
		mp_die("%s", mp_err());
	if (shift < 0)
		shift = 20L * model.cfg.img_size / 1024;
	if (mp_tune_init(&t, &model, (int)lossres))
		mp_die("%s: --loss-res: %s", weights, mp_err());
	t.opt.wd = wd;
	if ((lora && mp_tune_add_lora(&t, (int)rank, alpha, (uint64_t)seed)) || (full && mp_tune_add_full(&t)) ||
	    (adapter && mp_tune_add_adapter(&t, (uint64_t)seed)))
		mp_die("%s: %s", weights, mp_err());
	mp_sam_weights_id(&model, id, sizeof id);

	/* every frame: embeddings or images, and labels */
	read_src(args, nargs, enc, 0);
	if (nvalfiles)
		read_src((char **)valfiles, (int)nvalfiles, enc, 1);
	/* --val F: whole cases of the input held out */
	if (valfrac > 0) {
		const char **cs = NULL;
		size_t nc = 0;
		for (size_t i = 0; i < nh; i++) {
			size_t k = 0;
			while (k < nc && strcmp(cs[k], mp_case(&h[i].f)) != 0)
				k++;
			if (h[i].is_emb && k == nc) {
				cs = mp_xrealloc(cs, (nc + 1) * sizeof *cs);
				cs[nc++] = mp_case(&h[i].f);
			}
		}
		size_t nv = (size_t)(valfrac * (double)nc + 0.5);
		nv = nv < 1 ? 1 : nv;
		if (nc < 2 || nv >= nc) {
			free(cs);   /* the names belong to the frames */
			mp_die("--val %g: %zu case%s in the input, too few to hold out %zu", valfrac, nc, nc == 1 ? "" : "s", nv);
		}
		unsigned char *sel = mp_xmalloc(nc);
		mp_tune_val_split(cs, nc, nv, (uint64_t)seed, sel);
		for (size_t i = 0; i < nh; i++)
			for (size_t k = 0; k < nc; k++)
				if (sel[k] && strcmp(cs[k], mp_case(&h[i].f)) == 0)
					h[i].val = 1;
		free(sel);
		free(cs);
	}
	mp_tune_data_init(&d, model.cfg.img_size, t.loss_res, (int)shift, (int)(batch * accum), (uint64_t)seed);
	size_t nemb = 0, nval = 0, nimg = 0;
	for (size_t i = 0; i < nh; i++) {
		if (!h[i].is_emb || h[i].val)
			continue;
		nemb++;
		const held *lab = label_of(i);
		nimg += h[i].is_img;
		if (h[i].is_img ? mp_tune_data_add_image(&d, &h[i].f, prep, &lab->f) : mp_tune_data_add(&d, &h[i].f, &h[i].info, &lab->f))
			mp_die("%s", mp_err());
	}
	if (!nemb)
		mp_die(enc ? "no image frames in the input" : "no embedding or image frames in the input (make embeddings with sam-embed)");
	if (!d.n)
		mp_die("no embedded slice holds a label");
	/* validation cases: one set of slices each */
	mp_tune_data *vd = NULL;
	mp_sam_mode *vmode = NULL;
	const char **vcase = NULL;
	for (size_t i = 0; i < nh; i++) {
		if (!h[i].is_emb || !h[i].val)
			continue;
		const held *lab = label_of(i);
		vd = mp_xrealloc(vd, (nval + 1) * sizeof *vd);
		vmode = mp_xrealloc(vmode, (nval + 1) * sizeof *vmode);
		vcase = mp_xrealloc(vcase, (nval + 1) * sizeof *vcase);
		mp_tune_data_init(&vd[nval], model.cfg.img_size, t.loss_res, (int)shift, 1, (uint64_t)seed);
		vmode[nval] = h[i].is_img ? prep : h[i].info.mode;
		vcase[nval] = mp_case(&h[i].f);
		if (h[i].is_img ? mp_tune_data_add_image(&vd[nval], &h[i].f, prep, &lab->f) : mp_tune_data_add(&vd[nval], &h[i].f, &h[i].info, &lab->f))
			mp_die("--val: %s", mp_err());
		nimg += h[i].is_img;
		nval++;
	}
	if ((valfrac > 0 || nvalfiles) && !nval)
		mp_die("--val: no %s frames with a label frame in the validation data", enc ? "image" : "embedding or image");
	if (nval) {   /* under --verbose: which cases train, which validate */
		for (int v = 0; v < 2; v++) {
			char *list = NULL;
			size_t len = 0;
			for (size_t i = 0; i < nh; i++)
				if (h[i].is_emb && h[i].val == v) {
					const char *c = mp_case(&h[i].f);
					list = mp_xrealloc(list, len + strlen(c) + 2);
					len += (size_t)sprintf(list + len, "%s%s", len ? "," : "", c);
				}
			mp_note("%s cases: %s", v ? "validation" : "training", list ? list : "");
			free(list);
		}
	}
	/* decoder mode on images: each slice embedded once by the frozen encoder */
	if (!enc && nimg) {
		mp_note("embedding the labelled slices of %zu image frames with the frozen encoder", nimg);
		if (mp_tune_data_embed(&d, &model, prep, (int)rm))
			mp_die("%s", mp_err());
		for (size_t k = 0; k < nval; k++)
			if (mp_tune_data_embed(&vd[k], &model, prep, (int)rm))
				mp_die("--val: %s", mp_err());
	}
	long spe = mp_tune_data_steps_per_epoch(&d), total = steps > 0 ? steps : epochs * spe;
	long horizon = schedsteps > 0 ? schedsteps : total;
	uint64_t hash = mp_tune_data_hash(&d) ^ (lora ? 0x4c6f5241ULL * (uint64_t)rank + (uint64_t)prep :
	                                         full ? 0x46554c4cULL + (uint64_t)prep : adapter ? 0x41445054ULL + (uint64_t)prep : 0);
	if (sched != MP_TUNE_CONSTANT || warmup)   /* the schedule is part of what a resumed run must repeat */
		hash ^= 0x5343484544ULL * (uint64_t)(sched + 1) + 0x9e3779b9ULL * (uint64_t)warmup +
		        (sched != MP_TUNE_CONSTANT ? (uint64_t)horizon << 24 : 0);
	if (resumepath) {
		uint64_t u;
		if (mp_tune_load_state(&t, resumepath, &u))
			mp_die("--resume: %s", mp_err());
		if (u != hash)
			mp_die("--resume: %s: made with other data or other --batch, --seed, --loss-res, --bbox-shift or schedule",
			       resumepath);
		if (t.step > total)
			mp_die("--resume: %s: already at step %ld, past --steps %ld", resumepath, t.step, total);
	}
	mp_note("%zu labelled slices, %ld steps per epoch; steps %ld..%ld, batch %ld, loss at %d x %d", d.n, spe,
	        t.step + 1, total, batch, t.loss_res, t.loss_res);
	if (N > 1)
		mp_note("%d MPI ranks, %ld threads each", N, threads ? threads : 0);
	const char *gdump = R ? NULL : getenv("MEDPIPE_TUNE_GRADS");

	mp_afile *log = NULL;
	if (logpath && !R) {
		if (!(log = mp_afile_open(logpath)))
			mp_die("%s", mp_err());
		fprintf(log->fp, "step,epoch,loss,dice,bce,lr,ms\n");
	}
	mp_afile *vlog = NULL;
	if (vallogpath && !R) {
		if (!(vlog = mp_afile_open(vallogpath)))
			mp_die("%s", mp_err());
		fprintf(vlog->fp, "epoch,step,case,dice\n");
	}
	long nb = batch * accum;
	int tty = isatty(2) && !mp_verbose && !R;
	float *gt = mp_xmalloc((size_t)t.loss_res * t.loss_res * sizeof(float));
	int S = model.cfg.img_size;
	float *img = enc ? mp_xmalloc((size_t)3 * S * S * sizeof(float)) : NULL, *plane = NULL;
	while (t.step < total) {
		double t0 = mp_clock(), L = 0, D = 0, B = 0;
		long s = t.step;
		mp_tune_zero_grad(&t);
		for (long j = R; j < nb; j += N) {
			float box[4];
			double l, dc, bc;
			const mp_tune_slice *sl = mp_tune_data_pick(&d, s, j, box, gt, NULL);
			int er;
			if (enc) {
				size_t n = sl->nx * sl->ny;
				plane = mp_xrealloc(plane, n * sizeof(float));
				mp_convert(plane, MP_FLOAT32, (const char *)sl->img->data + sl->z * n * mp_type_size(sl->img->type),
				           sl->img->type, n);
				er = mp_sam_preprocess(prep, (int)rm, S, plane, sl->nx, sl->ny, 1, img) ||
				     mp_tune_sample_image(&t, img, box, gt, 1.0 / (double)nb, &l, &dc, &bc);
			} else
				er = mp_tune_sample(&t, sl->emb, box, gt, 1.0 / (double)nb, &l, &dc, &bc, NULL, NULL);
			if (er)
				mp_die("step %ld: %s", s + 1, mp_err());
			L += l / (double)nb;
			D += dc / (double)nb;
			B += bc / (double)nb;
		}
		double sums[3] = { L, D, B };
		if (mp_dist_sum_f(t.g, t.np) || mp_dist_sum_d(sums, 3))
			mp_die("step %ld: %s", s + 1, mp_err());
		L = sums[0], D = sums[1], B = sums[2];
		if (gdump) {
			FILE *gf = fopen(gdump, "ab");
			if (!gf || fwrite(t.g, sizeof(float), t.np, gf) != t.np || fclose(gf))
				mp_die("%s: cannot write", gdump);
		}
		double lrs = mp_tune_sched_lr(lr, sched, warmup, horizon, s);
		mp_tune_adamw(&t, lrs);
		double ms = 1e3 * (mp_clock() - t0);
		if (log)
			fprintf(log->fp, "%ld,%ld,%.7g,%.7g,%.7g,%.15g,%.1f\n", s + 1, s / spe + 1, L, D, B, lrs, ms);
		if (tty)
			fprintf(stderr, "\rsam-tune: step %ld/%ld  loss %.4f  dice %.4f  bce %.4f  %.0f ms ", s + 1, total, L, D, B,
			        ms);
		mp_note("step %ld/%ld: loss %.5f (dice %.5f, bce %.5f), %.0f ms", s + 1, total, L, D, B, ms);
		/* validation after each epoch and after the last step */
		if (nval && !R && ((s + 1) % spe == 0 || s + 1 == total)) {   /* rank 0 alone */
			double sum = 0;
			size_t cnt = 0;
			for (size_t k = 0; k < nval; k++) {
				double dc;
				if (mp_tune_val_case(&t, &vd[k], vmode[k], (int)rm, &dc))
					mp_die("--val: case '%s': %s", vcase[k], mp_err());
				if (vlog)
					fprintf(vlog->fp, "%ld,%ld,%s,%.9g\n", s / spe + 1, s + 1, vcase[k], dc);
				mp_note("epoch %ld: validation case '%s': Dice %.4f", s / spe + 1, vcase[k], dc);
				if (dc == dc) {
					sum += dc;
					cnt++;
				}
			}
			double mean = cnt ? sum / (double)cnt : 0.0 / 0.0;
			if (vlog)
				fprintf(vlog->fp, "%ld,%ld,mean,%.9g\n", s / spe + 1, s + 1, mean);
			mp_note("epoch %ld (step %ld): validation Dice %.4f, mean of %zu cases", s / spe + 1, s + 1, mean, cnt);
		}
	}
	if (tty)
		fprintf(stderr, "\n");
	int same = mp_dist_same(t.p, t.np * sizeof(float));
	if (same < 0)
		mp_die("%s", mp_err());
	if (!same)
		mp_die("the ranks' parameters differ after step %ld (MPI_Allreduce gave the ranks different sums)", t.step);
	if (!R && adapterout && (lora ? mp_tune_save_peft(&t, adapterout) : mp_tune_save_adapters(&t, adapterout)))
		mp_die("%s", mp_err());
	if (!R && mp_tune_save(&t, out))
		mp_die("%s", mp_err());
	if (!R && statepath && mp_tune_save_state(&t, statepath, hash))
		mp_die("%s", mp_err());
	if (log && mp_afile_commit(log))
		mp_die("%s: %s", logpath, mp_err());
	if (vlog && mp_afile_commit(vlog))
		mp_die("%s: %s", vallogpath, mp_err());
	for (size_t k = 0; k < nval; k++)
		mp_tune_data_free(&vd[k]);
	free(vd);
	free(vmode);
	free(vcase);
	free(valfiles);
	mp_dist_finalize();
	free(gt);
	free(img);
	free(plane);
	mp_tune_data_free(&d);
	mp_tune_free(&t);
	for (size_t i = 0; i < nh; i++) {
		if (h[i].is_emb && !h[i].is_img)
			mp_sam_emb_free(&h[i].info);
		mp_frame_free(&h[i].f);
	}
	free(h);
	mp_sam_free(&model);
	free(args);
}
