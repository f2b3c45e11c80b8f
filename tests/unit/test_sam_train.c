/* test_sam_train.c - the training operations of mp_train.h.
 *
 * Without arguments: each backward against central finite differences of
 * its forward (float32, so loosely: 2 % of the gradient's largest value).
 * With arguments it is the driver of tests/t/sam_tune.py, which checks the
 * same operations, the whole decoder and AdamW against torch's autograd:
 *
 *   test_sam_train OP ARGS < IN > OUT      (raw little-endian float32)
 *   linear N IN OUT          in: x w b dy              out: y dx dw db
 *   layernorm N D EPS        in: x w b dy              out: y dx dw db
 *   gelu N / relu N          in: x dy                  out: y dx
 *   attn NQ NK D HEADS       in: q k v do              out: o dq dk dv
 *   convt2 H W CIN COUT      in: x wt b dy             out: y dx dwt db
 *   bilinear SW SH DW DH     in: src ddst              out: dst dsrc
 *   loss N                   in: x gt                  out: loss dice bce dx
 *   decoder CKPT B LR        in: B x (emb box gt)      out: loss dice bce, B low-res masks,
 *                                                      the gradients (tensor order; names on stderr)
 *   lora CKPT B LR RANK ALPHA [OUT.pth [PEFTDIR]]
 *                            in: per block A_q B_q A_v B_v, B x (image box gt)
 *                            out: loss, the gradients (decoder then LoRA; names on stderr);
 *                            OUT.pth: the checkpoint with LoRA merged; PEFTDIR: the PEFT adapter
 *   full CKPT B LR [OUT.pth] in: B x (image box gt)    out: loss, the gradients (decoder then
 *                            encoder; names on stderr)
 *   adapter CKPT B LR [OUT.pth [DIR]]
 *                            in: per block the 8 adapter tensors, B x (image box gt); out: as full;
 *                            DIR: the adapters' safetensors
 *                            ($MEDPIPE_TRAIN_ATTN_KEEP for lora, full, adapter: the
 *                            bytes of attention kept, see mp_sam_tune.attn_keep)
 *   sgemm M N K REPS         REPS x C (M x N) = A (M x K) B (K x N) through the library's
 *                            BLAS, nothing out (tests/bench/sam_tune.sh: the SGEMM rate)
 *   adamw CKPT B LR STEPS [OUT.pth [STATE]]
 *                            in: STEPS x B x (emb box gt)  out: loss per step, the parameters;
 *                            OUT.pth: the tuned checkpoint; STATE: the optimizer state
 */
#include "mp_train.h"
#include "mp_train_peft.h"
#include "mp.h"
#include "sam_ld.h"
#include "t.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* threads of the driver: $MEDPIPE_TRAIN_THREADS (the benchmark), default 1 */
static int
nthreads(void)
{
	const char *s = getenv("MEDPIPE_TRAIN_THREADS");
	return s && atoi(s) > 0 ? atoi(s) : 1;
}

/* $MEDPIPE_TRAIN_ATTN_KEEP: t->attn_keep in bytes, "all": SIZE_MAX (the
 * image modes; tests/t/sam_tune.py compares kept and recomputed attention) */
static void
attn_keep(mp_sam_tune *t)
{
	const char *s = getenv("MEDPIPE_TRAIN_ATTN_KEEP");
	if (s && *s)
		t->attn_keep = strcmp(s, "all") == 0 ? SIZE_MAX : (size_t)strtoull(s, NULL, 10);
}

/* every buffer of the driver and the self-test, freed at exit (LeakSanitizer) */
static float **bufs;
static size_t nbufs;

static float *
keep(float *p)
{
	bufs = realloc(bufs, (nbufs + 1) * sizeof *bufs);
	if (!bufs)
		mp_die("out of memory");
	bufs[nbufs++] = p;
	return p;
}

static void
drop(float *p)   /* a kept buffer freed before the end */
{
	for (size_t i = nbufs; i-- > 0;)
		if (bufs[i] == p) {
			bufs[i] = bufs[--nbufs];
			break;
		}
	free(p);
}

static void
free_bufs(void)
{
	for (size_t i = 0; i < nbufs; i++)
		free(bufs[i]);
	free(bufs);
}

static float *
rd(size_t n)
{
	float *p = keep(mp_xcalloc(n ? n : 1, sizeof(float)));
	if (fread(p, sizeof(float), n, stdin) != n)
		mp_die("short input (%zu floats wanted)", n);
	return p;
}

static void
wr(const float *p, size_t n)
{
	fwrite(p, sizeof(float), n, stdout);
}

static float *
zf(size_t n)
{
	return keep(mp_xcalloc(n ? n : 1, sizeof(float)));
}

static void fill(float *p, size_t n, float s);

/* the BLAS thread holds (sam_cpu.c mp_sam_cpu_blas_one) from two threads at
 * once, as two devices' decoders: held, the count is 1; after the last
 * release it is the count from before (a save/set/restore per caller lost
 * it when the holds interleaved) */
static int hold_bad;
static pthread_barrier_t hold_go;

static void *
hold_loop(void *v)
{
	(void)v;
	pthread_barrier_wait(&hold_go);
	for (int i = 0; i < 2000; i++) {
		mp_sam_cpu_blas_one(1);
		sched_yield();    /* the other thread's hold and release in between */
		if (openblas_get_num_threads() != 1)
			hold_bad = 1;
		mp_sam_cpu_blas_one(0);
		sched_yield();
	}
	return NULL;
}

static void
blas_holds(void)
{
	pthread_t th[2];
	int before;

	mp_sam_cpu_backend(2);
	before = openblas_get_num_threads();
	mp_sam_cpu_blas_one(1);
	mp_sam_cpu_blas_one(1);
	int held = openblas_get_num_threads() == 1;
	mp_sam_cpu_blas_one(0);
	held = held && openblas_get_num_threads() == 1;
	mp_sam_cpu_blas_one(0);
	T_OK(held && openblas_get_num_threads() == before, "blas-hold-nested");
	pthread_barrier_init(&hold_go, NULL, 2);
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, hold_loop, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&hold_go);
	T_OK(!hold_bad && openblas_get_num_threads() == before, "blas-hold-two-threads");
}

static int
driver(int argc, char **argv)
{
	const char *op = argv[1];
	long a[6] = { 0 };
	for (int i = 2; i < argc && i < 8; i++)
		a[i - 2] = strtol(argv[i], NULL, 10);
	if (strcmp(op, "sgemm") == 0) {
		int M = (int)a[0], N = (int)a[1], K = (int)a[2], reps = (int)a[3];
		mp_sam_cpu_backend(nthreads());
		float *A = zf((size_t)M * K), *Bm = zf((size_t)K * N), *Cm = zf((size_t)M * N);
		fill(A, (size_t)M * K, 1.0f), fill(Bm, (size_t)K * N, 1.0f);
		for (int r = 0; r < reps; r++)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, Bm, N, 0.0f, Cm, N);
	} else if (strcmp(op, "linear") == 0) {
		int n = (int)a[0], in = (int)a[1], out = (int)a[2];
		float *x = rd((size_t)n * in), *w = rd((size_t)out * in), *b = rd((size_t)out), *dy = rd((size_t)n * out);
		float *y = zf((size_t)n * out), *dx = zf((size_t)n * in), *dw = zf((size_t)out * in), *db = zf((size_t)out);
		mp_tr_linear_fwd(y, x, w, b, n, in, out);
		mp_tr_linear_bwd(dx, dw, db, dy, x, w, n, in, out);
		wr(y, (size_t)n * out), wr(dx, (size_t)n * in), wr(dw, (size_t)out * in), wr(db, (size_t)out);
	} else if (strcmp(op, "layernorm") == 0) {
		int n = (int)a[0], d = (int)a[1];
		float eps = (float)strtod(argv[4], NULL);
		float *x = rd((size_t)n * d), *w = rd((size_t)d), *b = rd((size_t)d), *dy = rd((size_t)n * d);
		float *y = zf((size_t)n * d), *dx = zf((size_t)n * d), *dw = zf((size_t)d), *db = zf((size_t)d);
		float *mu = zf((size_t)n), *rs = zf((size_t)n);
		mp_tr_layernorm_fwd(y, mu, rs, x, w, b, n, d, eps);
		mp_tr_layernorm_bwd(dx, dw, db, dy, x, mu, rs, w, n, d);
		wr(y, (size_t)n * d), wr(dx, (size_t)n * d), wr(dw, (size_t)d), wr(db, (size_t)d);
	} else if (strcmp(op, "gelu") == 0 || strcmp(op, "relu") == 0) {
		size_t n = (size_t)a[0];
		float *x = rd(n), *dy = rd(n), *y = zf(n), *dx = zf(n);
		if (op[0] == 'g') {
			mp_tr_gelu_fwd(y, x, n);
			mp_tr_gelu_bwd(dx, dy, x, n);
		} else {
			mp_tr_relu_fwd(y, x, n);
			mp_tr_relu_bwd(dx, dy, y, n);
		}
		wr(y, n), wr(dx, n);
	} else if (strcmp(op, "attn") == 0) {
		int nq = (int)a[0], nk = (int)a[1], d = (int)a[2], h = (int)a[3];
		float *q = rd((size_t)nq * d), *k = rd((size_t)nk * d), *v = rd((size_t)nk * d), *dO = rd((size_t)nq * d);
		float *o = zf((size_t)nq * d), *p = zf((size_t)h * nq * nk), *ws = zf((size_t)nq * nk);
		float *dq = zf((size_t)nq * d), *dk = zf((size_t)nk * d), *dv = zf((size_t)nk * d);
		mp_tr_attn_fwd(o, p, q, k, v, nq, nk, d, h);
		mp_tr_attn_bwd(dq, dk, dv, dO, p, q, k, v, nq, nk, d, h, ws);
		wr(o, (size_t)nq * d), wr(dq, (size_t)nq * d), wr(dk, (size_t)nk * d), wr(dv, (size_t)nk * d);
	} else if (strcmp(op, "convt2") == 0) {
		int h = (int)a[0], w = (int)a[1], ci = (int)a[2], co = (int)a[3];
		size_t nx = (size_t)h * w * ci, ny = (size_t)4 * h * w * co, nw = (size_t)ci * co * 4;
		float *x = rd(nx), *wt = rd(nw), *b = rd((size_t)co), *dy = rd(ny);
		float *y = zf(ny), *dx = zf(nx), *dw = zf(nw), *db = zf((size_t)co), *ws = zf(ny);
		mp_tr_convt2_fwd(y, x, wt, b, h, w, ci, co, ws);
		mp_tr_convt2_bwd(dx, dw, db, dy, x, wt, h, w, ci, co, ws);
		wr(y, ny), wr(dx, nx), wr(dw, nw), wr(db, (size_t)co);
	} else if (strcmp(op, "bilinear") == 0) {
		int sw = (int)a[0], sh = (int)a[1], dw = (int)a[2], dh = (int)a[3];
		float *src = rd((size_t)sw * sh), *dd = rd((size_t)dw * dh), *dst = zf((size_t)dw * dh), *ds = zf((size_t)sw * sh);
		mp_tr_bilinear_fwd(dst, dw, dh, src, sw, sh);
		mp_tr_bilinear_bwd(ds, sw, sh, dd, dw, dh);
		wr(dst, (size_t)dw * dh), wr(ds, (size_t)sw * sh);
	} else if (strcmp(op, "dwconvbn") == 0) {
		/* x (R x R x C), w (C x 1 x k x k), BN weight, bias, running mean,
		 * var, dy (Ro x Ro x C); the BN folded as sam_tinyvit.c does */
		int R = (int)a[0], C = (int)a[1], k = (int)a[2], st = (int)a[3], Ro = (R + 2 * (k / 2) - k) / st + 1;
		size_t nx = (size_t)R * R * C, ny = (size_t)Ro * Ro * C, kk = (size_t)k * k;
		float *x = rd(nx), *w = rd((size_t)C * kk), *g = rd((size_t)C), *be = rd((size_t)C), *mu = rd((size_t)C);
		float *var = rd((size_t)C), *dy = rd(ny), *y = zf(ny), *dx = zf(nx), *fw = zf((size_t)C * kk), *fb = zf((size_t)C);
		for (int o = 0; o < C; o++) {
			double sc = (double)g[o] / sqrt((double)var[o] + 1e-5);
			fb[o] = (float)((double)be[o] - (double)mu[o] * sc);
			for (size_t j = 0; j < kk; j++)
				fw[j * C + o] = (float)((double)w[(size_t)o * kk + j] * sc);
		}
		mp_tr_dwconv_fwd(y, x, fw, fb, R, C, k, st);
		mp_tr_dwconv_bwd(dx, NULL, dy, x, fw, R, C, k, st);
		wr(y, ny), wr(dx, nx);
	} else if (strcmp(op, "attnbias") == 0) {
		int n = (int)a[0], d = (int)a[1], h = (int)a[2];
		float *qkv = rd((size_t)n * 3 * d), *bias = rd((size_t)h * n * n), *dO = rd((size_t)n * d);
		float *o = zf((size_t)n * d), *p = zf((size_t)h * n * n), *ws = zf((size_t)n * n), *dqkv = zf((size_t)n * 3 * d);
		mp_tr_attnbias_fwd(o, p, qkv, bias, n, d, h);
		mp_tr_attnbias_bwd(dqkv, NULL, dO, p, qkv, n, d, h, ws);
		wr(o, (size_t)n * d), wr(dqkv, (size_t)n * 3 * d);
	} else if (strcmp(op, "conv3") == 0) {
		/* 3x3 conv pad 1 through im2col3 / col2im3: x (G x G x C), w (Co x C x 3 x 3), dy (G x G x Co) */
		int G = (int)a[0], C = (int)a[1], Co = (int)a[2];
		size_t T = (size_t)G * G;
		float *x = rd(T * C), *w = rd((size_t)Co * C * 9), *dy = rd(T * Co), *cols = zf(T * 9 * C), *y = zf(T * Co);
		float *dcols = zf(T * 9 * C), *dx = zf(T * C);
		mp_tr_im2col3(cols, x, G, C);
		mp_tr_linear_fwd(y, cols, w, NULL, (int)T, 9 * C, Co);
		mp_tr_linear_bwd(dcols, NULL, NULL, dy, NULL, w, (int)T, 9 * C, Co);
		mp_tr_col2im3(dx, dcols, G, C);
		wr(y, T * Co), wr(dx, T * C);
	} else if (strcmp(op, "loss") == 0) {
		size_t n = (size_t)a[0];
		float *x = rd(n), *gt = rd(n), *dx = zf(n), r[3];
		double dl, bl, l = mp_tr_dice_bce(x, gt, n, dx, 1.0, &dl, &bl);
		r[0] = (float)l, r[1] = (float)dl, r[2] = (float)bl;
		wr(r, 3), wr(dx, n);
	} else if (strcmp(op, "decoder") == 0 || strcmp(op, "adamw") == 0) {
		int adam = op[0] == 'a';
		mp_sam m;
		mp_sam_tune t;
		if (argc < 5 || (adam && argc < 6))
			mp_usage_die("%s: missing arguments", op);
		if (mp_sam_load(&m, argv[2], mp_sam_cpu_backend(nthreads())) || mp_tune_init(&t, &m, (int)a[2]))
			mp_die("%s", mp_err());
		int B = (int)a[1], LR = t.loss_res, L4 = 4 * m.cfg.grid, steps = adam ? (int)a[3] : 1;
		size_t ne = (size_t)m.cfg.out_chans * m.cfg.grid * m.cfg.grid, ng = (size_t)LR * LR;
		float *low = zf((size_t)B * L4 * L4), *losses = zf((size_t)steps + 1);
		for (int s = 0; s < steps; s++) {
			double L = 0, D = 0, Bc = 0;
			mp_tune_zero_grad(&t);
			for (int b = 0; b < B; b++) {
				float *emb = rd(ne), *box = rd(4), *gt = rd(ng);
				double l, d, bc;
				if (mp_tune_sample(&t, emb, box, gt, 1.0 / B, &l, &d, &bc, low + (size_t)b * L4 * L4, NULL))
					mp_die("%s", mp_err());
				L += l / B, D += d / B, Bc += bc / B;
				drop(emb), drop(box), drop(gt);
			}
			losses[s] = (float)L;
			if (!adam) {
				float r[3] = { (float)L, (float)D, (float)Bc };
				wr(r, 3);
				wr(low, (size_t)B * L4 * L4);
				for (size_t i = 0; i < t.nt; i++) {
					wr(t.g + t.t[i].off, t.t[i].n);
					fprintf(stderr, "%s %zu %d\n", t.t[i].name, t.t[i].n, t.t[i].train);
				}
			} else
				mp_tune_adamw(&t, t.opt.lr);
		}
		if (adam) {
			wr(losses, (size_t)steps);
			for (size_t i = 0; i < t.nt; i++)
				wr(t.p + t.t[i].off, t.t[i].n);
			if (argc > 6 && mp_tune_save(&t, argv[6]))
				mp_die("%s", mp_err());
			if (argc > 7 && mp_tune_save_state(&t, argv[7], 0))
				mp_die("%s", mp_err());
		}
		mp_tune_free(&t);
		mp_sam_free(&m);
	} else if (strcmp(op, "loraadam") == 0) {
		/* CK B LR RANK ALPHA STEPS LRATE: the LoRA matrices, then per step
		 * B x (image, box, gt); out: the loss of every step, then every
		 * trained tensor after the last AdamW step */
		mp_sam m;
		mp_sam_tune t;
		if (argc < 9)
			mp_usage_die("loraadam: missing arguments");
		if (mp_sam_load(&m, argv[2], mp_sam_cpu_backend(nthreads())) || mp_tune_init(&t, &m, (int)a[2]) ||
		    mp_tune_add_lora(&t, (int)a[3], strtod(argv[6], NULL), 1))
			mp_die("%s", mp_err());
		int B = (int)a[1], S = m.cfg.img_size, steps = atoi(argv[7]);
		double lrate = strtod(argv[8], NULL);
		for (size_t i = 0; i < t.nt; i++)
			if (strstr(t.t[i].name, ".lora_")) {
				float *v = rd(t.t[i].n);
				memcpy(t.p + t.t[i].off, v, t.t[i].n * sizeof(float));
				drop(v);
			}
		float *losses = zf((size_t)steps + 1);
		for (int st = 0; st < steps; st++) {
			double L = 0;
			mp_tune_zero_grad(&t);
			for (int b = 0; b < B; b++) {
				float *img = rd((size_t)3 * S * S), *box = rd(4), *gt = rd((size_t)t.loss_res * t.loss_res);
				double l;
				if (mp_tune_sample_image(&t, img, box, gt, 1.0 / B, &l, NULL, NULL))
					mp_die("%s", mp_err());
				L += l / B;
				drop(img), drop(box), drop(gt);
			}
			losses[st] = (float)L;
			mp_tune_adamw(&t, lrate);
		}
		wr(losses, (size_t)steps);
		for (size_t i = 0; i < t.nt; i++) {
			wr(t.p + t.t[i].off, t.t[i].n);
			fprintf(stderr, "%s %zu %d\n", t.t[i].name, t.t[i].n, t.t[i].train);
		}
		mp_tune_free(&t);
		mp_sam_free(&m);
	} else if (strcmp(op, "lora") == 0) {
		mp_sam m;
		mp_sam_tune t;
		if (argc < 7)
			mp_usage_die("lora: missing arguments");
		if (mp_sam_load(&m, argv[2], mp_sam_cpu_backend(nthreads())) || mp_tune_init(&t, &m, (int)a[2]) ||
		    mp_tune_add_lora(&t, (int)a[3], strtod(argv[6], NULL), 1))
			mp_die("%s", mp_err());
		attn_keep(&t);
		int B = (int)a[1], S = m.cfg.img_size;
		for (size_t i = 0; i < t.nt; i++)
			if (strstr(t.t[i].name, ".lora_")) {
				float *v = rd(t.t[i].n);
				memcpy(t.p + t.t[i].off, v, t.t[i].n * sizeof(float));
				drop(v);
			}
		double L = 0;
		mp_tune_zero_grad(&t);
		for (int b = 0; b < B; b++) {
			float *img = rd((size_t)3 * S * S), *box = rd(4), *gt = rd((size_t)t.loss_res * t.loss_res);
			double l;
			if (mp_tune_sample_image(&t, img, box, gt, 1.0 / B, &l, NULL, NULL))
				mp_die("%s", mp_err());
			L += l / B;
			drop(img), drop(box), drop(gt);
		}
		float lf = (float)L;
		wr(&lf, 1);
		for (size_t i = 0; i < t.nt; i++) {
			wr(t.g + t.t[i].off, t.t[i].n);
			fprintf(stderr, "%s %zu %d\n", t.t[i].name, t.t[i].n, t.t[i].train);
		}
		if (argc > 7 && mp_tune_save(&t, argv[7]))
			mp_die("%s", mp_err());
		if (argc > 8 && mp_tune_save_peft(&t, argv[8]))
			mp_die("%s", mp_err());
		mp_tune_free(&t);
		mp_sam_free(&m);
	} else if (strcmp(op, "full") == 0 || strcmp(op, "adapter") == 0) {
		mp_sam m;
		mp_sam_tune t;
		int ad = op[0] == 'a';
		if (argc < 5)
			mp_usage_die("%s: missing arguments", op);
		if (mp_sam_load(&m, argv[2], mp_sam_cpu_backend(nthreads())) || mp_tune_init(&t, &m, (int)a[2]) ||
		    (ad ? mp_tune_add_adapter(&t, 1) : mp_tune_add_full(&t)))
			mp_die("%s", mp_err());
		attn_keep(&t);
		int B = (int)a[1], S = m.cfg.img_size;
		for (size_t i = 0; ad && i < t.nt; i++)
			if (strstr(t.t[i].name, "_Adapter.")) {
				float *v = rd(t.t[i].n);
				memcpy(t.p + t.t[i].off, v, t.t[i].n * sizeof(float));
				drop(v);
			}
		double L = 0;
		mp_tune_zero_grad(&t);
		for (int b = 0; b < B; b++) {
			float *img = rd((size_t)3 * S * S), *box = rd(4), *gt = rd((size_t)t.loss_res * t.loss_res);
			double l;
			if (mp_tune_sample_image(&t, img, box, gt, 1.0 / B, &l, NULL, NULL))
				mp_die("%s", mp_err());
			L += l / B;
			drop(img), drop(box), drop(gt);
		}
		float lf = (float)L;
		wr(&lf, 1);
		for (size_t i = 0; i < t.nt; i++) {
			wr(t.g + t.t[i].off, t.t[i].n);
			fprintf(stderr, "%s %zu %d\n", t.t[i].name, t.t[i].n, t.t[i].train);
		}
		if (argc > 5 && mp_tune_save(&t, argv[5]))
			mp_die("%s", mp_err());
		if (argc > 6 && mp_tune_save_adapters(&t, argv[6]))
			mp_die("%s", mp_err());
		mp_tune_free(&t);
		mp_sam_free(&m);
	} else
		mp_usage_die("unknown operation %s", op);
	return fflush(stdout) ? 1 : 0;
}

/* ---------------------------------------------------------------- self-test */
static unsigned long long rs = 88172645463325252ULL;
static float
urand(void)
{
	rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
	return (float)((double)(rs >> 11) / 9007199254740992.0) * 2 - 1;
}

static void
fill(float *p, size_t n, float s)
{
	for (size_t i = 0; i < n; i++)
		p[i] = s * urand();
}

/* |analytic - numeric| <= 2e-2 * max |analytic| over probes of one input */
static int
probe(const char *name, float *x, size_t n, const float *grad, double (*f)(void *), void *ctx)
{
	double mx = 0, err = 0;
	for (size_t i = 0; i < n; i++)
		mx = fmax(mx, fabs(grad[i]));
	for (size_t k = 0; k < 8; k++) {
		size_t i = (k * 7919) % n;
		float keep = x[i], h = 1e-2f;
		x[i] = keep + h;
		double fp = f(ctx);
		x[i] = keep - h;
		double fm = f(ctx);
		x[i] = keep;
		err = fmax(err, fabs((fp - fm) / (2 * h) - grad[i]));
	}
	if (err <= 2e-2 * mx + 1e-6)
		T_PASS(name);
	else
		T_FAIL(name, "finite differences differ by %g (gradient max %g)", err, mx);
	return 0;
}

/* scalar objectives: sum(out * r) with fixed r */
typedef struct { int n, d, nk, h; float *x, *w, *b, *r, *y, *mu, *rsd, *k, *v, *p, *gt; } ctx;

static double
dot(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

static double
f_ln(void *v)
{
	ctx *c = v;
	mp_tr_layernorm_fwd(c->y, c->mu, c->rsd, c->x, c->w, c->b, c->n, c->d, 1e-5f);
	return dot(c->y, c->r, (size_t)c->n * c->d);
}

static double
f_attn(void *v)
{
	ctx *c = v;
	mp_tr_attn_fwd(c->y, c->p, c->x, c->k, c->v, c->n, c->nk, c->d, c->h);
	return dot(c->y, c->r, (size_t)c->n * c->d);
}

static double
f_gelu(void *v)
{
	ctx *c = v;
	mp_tr_gelu_fwd(c->y, c->x, (size_t)c->n);
	return dot(c->y, c->r, (size_t)c->n);
}

static double
f_loss(void *v)
{
	ctx *c = v;
	return mp_tr_dice_bce(c->x, c->gt, (size_t)c->n, NULL, 1, NULL, NULL);
}

static void
selftest(void)
{
	ctx c = { 0 };
	c.n = 6, c.d = 16, c.nk = 9, c.h = 2;
	size_t nd = (size_t)c.n * c.d;
	c.x = zf(nd), c.w = zf((size_t)c.d), c.b = zf((size_t)c.d), c.r = zf(nd), c.y = zf(nd);
	c.mu = zf((size_t)c.n), c.rsd = zf((size_t)c.n);
	fill(c.x, nd, 2), fill(c.w, (size_t)c.d, 1), fill(c.b, (size_t)c.d, 1), fill(c.r, nd, 1);
	float *dx = zf(nd), *dw = zf((size_t)c.d);
	f_ln(&c);
	mp_tr_layernorm_bwd(dx, dw, NULL, c.r, c.x, c.mu, c.rsd, c.w, c.n, c.d);
	probe("train layernorm dx", c.x, nd, dx, f_ln, &c);
	probe("train layernorm dw", c.w, (size_t)c.d, dw, f_ln, &c);

	c.k = zf((size_t)c.nk * c.d), c.v = zf((size_t)c.nk * c.d), c.p = zf((size_t)c.h * c.n * c.nk);
	fill(c.k, (size_t)c.nk * c.d, 1), fill(c.v, (size_t)c.nk * c.d, 1);
	float *dq = zf(nd), *dk = zf((size_t)c.nk * c.d), *dv = zf((size_t)c.nk * c.d), *ws = zf((size_t)c.n * c.nk);
	f_attn(&c);
	mp_tr_attn_bwd(dq, dk, dv, c.r, c.p, c.x, c.k, c.v, c.n, c.nk, c.d, c.h, ws);
	probe("train attention dq", c.x, nd, dq, f_attn, &c);
	probe("train attention dk", c.k, (size_t)c.nk * c.d, dk, f_attn, &c);
	probe("train attention dv", c.v, (size_t)c.nk * c.d, dv, f_attn, &c);

	memset(dx, 0, nd * sizeof(float));
	f_gelu(&c);
	c.n = (int)nd;
	mp_tr_gelu_bwd(dx, c.r, c.x, nd);
	probe("train gelu", c.x, nd, dx, f_gelu, &c);

	c.gt = zf(nd);
	for (size_t i = 0; i < nd; i++)
		c.gt[i] = urand() > 0;
	memset(dx, 0, nd * sizeof(float));
	mp_tr_dice_bce(c.x, c.gt, nd, dx, 1, NULL, NULL);
	probe("train dice+bce", c.x, nd, dx, f_loss, &c);

}

int
main(int argc, char **argv)
{
	mp_progname = "test_sam_train";
	atexit(free_bufs);
	if (argc > 1)
		return driver(argc, argv);
	selftest();
	blas_holds();
	return t_failed ? 1 : 0;
}
