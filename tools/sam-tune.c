/* sam-tune - fine-tune SAM / MedSAM: the mask decoder on cached embeddings,
 * or LoRA on the image encoder with the mask decoder */
#include "mp.h"
#include "mp_filter.h"
#include "mp_train.h"   /* includes mp_sam.h (whose frame part is outside its include guard) */

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *weights, *out, *modestr = "decoder", *logpath, *statepath, *resumepath;
static const char *prepstr = "medsam", *interpstr;
static long batch = 2, steps = -1, epochs = 1, lossres, shift = 20, seed = 1, threads, rank = 4;
static double lr = 1e-4, wd = 0.01, alpha = -1;

static const mp_opt opts[] = {
	{ "mode", 'm', MP_OPT_STR, &modestr, NULL, "MODE", "What is trained: decoder (the mask decoder, on embeddings cached by sam-embed; default) or lora (low-rank adapters on the q and v projections of every image-encoder block, SAMed's scheme, plus the mask decoder, on images)." },
	{ "rank", 'r', MP_OPT_INT, &rank, NULL, "N", "LoRA rank (default 4)." },
	{ "alpha", 0, MP_OPT_DBL, &alpha, NULL, "X", "LoRA scale numerator: the update is (alpha/rank) B A x (default alpha = rank, SAMed's scale 1)." },
	{ "prep", 0, MP_OPT_STR, &prepstr, NULL, "MODE", "With --mode lora: how slices become the encoder's input, as sam-embed --mode: medsam (default) or sam." },
	{ "interp", 'i', MP_OPT_STR, &interpstr, NULL, "METHOD", "With --mode lora: the resize method, as sam-embed --interp (default bspline3 for medsam, linear for sam)." },
	{ "weights", 'w', MP_OPT_STR, &weights, NULL, "FILE", "The checkpoint to start from (as sam-embed(1)); the embeddings must have been made with it. Default: $MEDPIPE_SAM_WEIGHTS." },
	{ "out", 'o', MP_OPT_STR, &out, NULL, "FILE", "The tuned checkpoint: the whole SAM state dict (torch zip), written at the end." },
	{ "batch", 'b', MP_OPT_INT, &batch, NULL, "N", "Prompts per step (default 2, as MedSAM), over all MPI ranks together." },
	{ "epochs", 'e', MP_OPT_INT, &epochs, NULL, "N", "Epochs (default 1): every labelled slice once per epoch, in a seeded random order, batches of --batch (a last incomplete batch is dropped)." },
	{ "steps", 's', MP_OPT_INT, &steps, NULL, "N", "Optimizer steps in all, instead of --epochs (with --resume: the step to stop at)." },
	{ "lr", 0, MP_OPT_DBL, &lr, NULL, "X", "AdamW learning rate (default 1e-4)." },
	{ "weight-decay", 0, MP_OPT_DBL, &wd, NULL, "X", "AdamW's decoupled weight decay (default 0.01)." },
	{ "loss-res", 0, MP_OPT_INT, &lossres, NULL, "N", "Where the loss is taken: the input size (1024 for SAM; default: the low-resolution logits upsampled bilinearly, as MedSAM) or 4 x the embedding grid (256: the low-resolution logits against the mask taken every 4th pixel; about 3x cheaper)." },
	{ "bbox-shift", 0, MP_OPT_INT, &shift, NULL, "N", "Move every side of each box outwards by a random 0..N pixels of the model input (default 20, MedSAM's at 1024)." },
	{ "seed", 0, MP_OPT_INT, &seed, NULL, "N", "Seed of the slice order, the label drawn per slice and the box shifts (default 1)." },
	{ "log", 'l', MP_OPT_STR, &logpath, NULL, "FILE", "A CSV line per step: step,epoch,loss,dice,bce,lr,ms (loss = dice + bce, means over the batch)." },
	{ "state", 0, MP_OPT_STR, &statepath, NULL, "FILE", "Also write the optimizer state (step, parameters, AdamW moments) at the end, for --resume." },
	{ "resume", 0, MP_OPT_STR, &resumepath, NULL, "FILE", "Continue from a --state file: the same data, --weights, --batch, --seed, --loss-res and --bbox-shift give bit for bit what one run would have." },
	{ "threads", 't', MP_OPT_INT, &threads, NULL, "N", "Threads (default: every CPU; under MPI, the CPUs the rank is bound to, else the CPUs of the node shared among its ranks)." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"sam-tune",
	"fine-tune SAM / MedSAM: the mask decoder on cached embeddings, or LoRA",
	"[options] --weights FILE --out FILE [FILE...]",
	"sam-tune trains the mask decoder of a SAM or MedSAM checkpoint (--mode decoder, MedSAM's cheap "
	"recipe: image and prompt encoders frozen), or LoRA adapters of its image encoder together with "
	"the mask decoder (--mode lora), and writes the whole model (LoRA merged into the qkv weights) as a PyTorch checkpoint "
	"that the official code loads with torch.load(weights_only=True) and a strict load_state_dict "
	"(sam_model_registry[\"vit_b\"](checkpoint=FILE)), and that sam-embed(1) and sam-decode(1) read.\n\n"
	"Input: the frames of the FILEs (none or '-': standard input): embedding frames made by "
	"sam-embed(1) with --weights, each with the label frame of the same case (any order; "
	"`sam-embed --slices labelled` passes it on). Every embedded slice holding a label is a sample. "
	"Each step takes --batch samples; each sample one label of its slice at random, that label's "
	"mask and its bounding box moved outwards by a random 0..--bbox-shift pixels, as MedSAM's "
	"training does. All samples stay in memory (16 MiB per ViT-B slice).\n\n"
	"With --mode lora the input is grey image frames (2-D or 3-D) with their label frames instead: "
	"every slice holding a label is a sample, preprocessed for the encoder each time it is drawn "
	"(--prep, --interp, as sam-embed). LoRA: A (rank x width) kaiming-uniform from --seed, B zero. "
	"Memory: every attention matrix of the encoder is kept for the backward pass, which suits reduced "
	"models; ViT-B at 1024 needs about 6 GB per sample by count of what is kept (recomputation per head is not written yet).\n\n"
	"Training, as MedSAM: the box through the frozen prompt encoder, the mask decoder's single-mask "
	"output (multimask_output=False), loss = Dice (sigmoid, squared denominators: MONAI's "
	"DiceLoss(sigmoid=True, squared_pred=True)) + binary cross-entropy with logits, means over the "
	"batch; AdamW (torch.optim.AdamW: betas 0.9/0.999, eps 1e-8, decoupled weight decay), constant "
	"learning rate. The IoU head gets no gradient (the loss does not use it) and is left unchanged. "
	"Gradients equal PyTorch's autograd within float32 rounding (tests/t/sam_tune.py).\n\n"
	"Cost: about 11 GFLOP per sample and step for ViT-B's decoder.\n\n"
	"Adapters, full fine-tuning and LoRA for TinyViT (LiteMedSAM) are not written yet.\n\n"
	"sam-decode(1) checks that embeddings were made by its --weights: embed again with the tuned "
	"checkpoint (its image encoder is unchanged) before decoding with it.\n\n"
	"Distributed (data-parallel) training: started by an MPI launcher (mpirun -np N, or srun --mpi=pmix in a "
	"Slurm allocation), sam-tune runs as N ranks, each holding the whole model and reading all the input. "
	"--batch stays the batch of a step over all ranks: rank r takes the samples r, r+N, r+2N ... of each batch "
	"of the one seeded sampling sequence, so N ranks draw exactly the samples one process draws with the same "
	"--batch (it must be at least N). The gradients of each rank (scaled by 1/--batch) and its loss sums are "
	"summed over the ranks by MPI_Allreduce before every AdamW step, which every rank then takes alike; the "
	"result equals one process with the same options up to float rounding (the order of the sums differs: "
	"tests/t/sam_tune_mpi.py measures gradients within 1e-6 and parameters after 5 steps within 1e-5, relative "
	"L2), and a --state of one run resumes in a run of any number of ranks (bit for bit with the same number). "
	"The input must be files (mpirun passes standard input to rank 0 only). Rank 0 alone writes --out, --state and --log; the other ranks print nothing but errors, and an error on "
	"one rank ends them all. Each rank trains on the CPU (see --threads). MPI is built in where Open MPI's "
	"mpicc was present at build time (--version says so); as root, Open MPI's mpirun also wants "
	"--allow-run-as-root, and more ranks than cores --oversubscribe. Under Slurm: "
	"sbatch -n N --wrap 'srun --mpi=pmix sam-tune ...', or mpirun inside the job's script (medpipe(7)).\n\n"
	"MEDPIPE_TUNE_GRADS=FILE (for tests): rank 0 appends the summed gradient buffer of every step (float32, "
	"before AdamW) to FILE.",
	"$ sam-embed -w medsam_vit_b.pth --slices labelled ct.nrrd > emb.nrrd\n"
	"Embeds the labelled slices of an image+label stream (the label frame passes through).\n"
	"$ sam-tune -w medsam_vit_b.pth -o tuned.pth --epochs 10 --log train.csv emb.nrrd\n"
	"Trains the mask decoder for 10 epochs.\n"
	"$ sam-embed -w tuned.pth --slices labelled test.nrrd | sam-decode -w tuned.pth --from-label | seg-eval\n"
	"Segments held-back slices with the tuned model and scores them.\n"
	"$ sam-tune -w medsam_vit_b.pth -o a.pth --steps 100 --state a.state emb.nrrd\n"
	"$ sam-tune -w medsam_vit_b.pth -o b.pth --steps 200 --resume a.state emb.nrrd\n"
	"Trains 100 steps, then 100 more: b.pth equals a 200-step run.\n"
	"$ vol-cat ct.nii.gz --label seg.nii.gz | hu-window --preset soft-tissue --mapping medsam | roi-crop --slices labelled \\\n"
	"    | sam-tune --mode lora --rank 4 -w medsam_vit_b.pth -o lora.pth --epochs 5\n"
	"Trains LoRA adapters and the mask decoder on the labelled slices of a CT.\n"
	"$ mpirun -np 2 sam-tune -w medsam_vit_b.pth -o tuned.pth --steps 10 --batch 4 emb.nrrd\n"
	"Two ranks, each computing two of the four samples of a step: the result of one process with --batch 4.",
	"sam-embed(1), sam-decode(1), seg-eval(1), medpipe(7)",
	opts, 0
};

typedef struct {
	mp_frame f;
	mp_sam_embinfo info;
	int is_emb;
} held;

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int
main(int argc, char **argv)
{
	char **args;
	mp_version_note = mp_dist_about();
	int nargs = mp_parse(&prog, argc, argv, &args);
	mp_sam model;
	mp_sam_tune t;
	mp_tune_data d;
	char id[96];
	held *h = NULL;
	size_t nh = 0;

	int lora = strcmp(modestr, "lora") == 0;
	mp_sam_mode prep;
	mp_rs_method rm;
	if (!lora && strcmp(modestr, "decoder") != 0)
		mp_usage_die("--mode %s: decoder or lora (adapter and full are not written yet)", modestr);
	if (mp_sam_mode_parse(prepstr, &prep))
		mp_usage_die("--prep: %s", mp_err());
	if (mp_rs_parse(interpstr ? interpstr : prep == MP_SAM_MEDSAM ? "bspline3" : "linear", &rm))
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
	if (batch < 1 || batch > 4096)
		mp_usage_die("--batch %ld: want 1..4096", batch);
	if (epochs < 1 || steps == 0 || steps < -1)
		mp_usage_die("--epochs and --steps must be positive");
	if (!(lr > 0) || !(wd >= 0) || shift < 0 || lossres < 0)
		mp_usage_die("--lr must be positive; --weight-decay, --bbox-shift and --loss-res not negative");
	if (threads < 0 || threads > 64)
		mp_usage_die("--threads %ld: want 1..64", threads);
	if (mp_dist_init(&argc, &argv))
		mp_die("%s", mp_err());
	int R = mp_dist_rank(), N = mp_dist_size();
	if (batch < N)
		mp_usage_die("--batch %ld: at least one sample per rank (%d ranks)", batch, N);
	for (int i = 0; N > 1 && i < (nargs ? nargs : 1); i++)
		if (!nargs || strcmp(args[i], "-") == 0)
			mp_usage_die("%d MPI ranks read the input from files, not standard input (mpirun gives it to rank 0 only)", N);
	if (R)
		mp_verbose = 0;
	if (!threads && N > 1)
		threads = mp_dist_threads();
	if (mp_sam_load(&model, weights, mp_sam_cpu_backend((int)threads)))
		mp_die("%s", mp_err());
	if (mp_tune_init(&t, &model, (int)lossres))
		mp_die("%s: --loss-res: %s", weights, mp_err());
	t.opt.wd = wd;
	if (lora && mp_tune_add_lora(&t, (int)rank, alpha, (uint64_t)seed))
		mp_die("%s: %s", weights, mp_err());
	mp_sam_weights_id(&model, id, sizeof id);

	/* every frame: embeddings and labels */
	for (int i = 0; i < (nargs ? nargs : 1); i++) {
		const char *src = nargs ? args[i] : "-";
		mp_in *in = mp_in_open(src);
		mp_frame f;
		int r;
		if (!in)
			mp_die("%s", mp_err());
		while ((r = mp_in_header(in, &f)) == 1) {
			const char *role = mp_role(&f);
			int no = mp_in_frameno(in);
			if (strcmp(role, lora ? "image" : "embedding") != 0 && strcmp(role, "label") != 0) {
				mp_frame_free(&f);
				if (mp_in_skipdata(in) < 0)
					mp_die("%s", mp_err());
				continue;
			}
			if (mp_in_rest_spool(in, &f, (size_t)1 << 30) < 0)
				mp_die("%s", mp_err());
			h = mp_xrealloc(h, (nh + 1) * sizeof *h);
			held *x = &h[nh++];
			memset(x, 0, sizeof *x);
			x->f = f;
			x->is_emb = strcmp(role, "label") != 0;
			if (x->is_emb && !lora) {
				if (mp_sam_emb_read(&x->f, &x->info))
					mp_die("%s: frame %d: %s", src, no, mp_err());
				if (x->info.G != model.cfg.grid || x->info.C != model.cfg.out_chans ||
				    strcmp(x->info.weights_id, id) != 0)
					mp_die("%s: frame %d: embeddings made by weights %s (%s), not by %s (%s)", src, no,
					       mp_get_kv(&x->f, "medpipe.sam.weights") ? mp_get_kv(&x->f, "medpipe.sam.weights") : "?",
					       x->info.weights_id, weights, id);
			}
		}
		if (r < 0)
			mp_die("%s", mp_err());
		mp_in_close(in);
	}
	mp_tune_data_init(&d, model.cfg.img_size, t.loss_res, (int)shift, (int)batch, (uint64_t)seed);
	size_t nemb = 0;
	for (size_t i = 0; i < nh; i++) {
		if (!h[i].is_emb)
			continue;
		nemb++;
		const held *lab = NULL;
		for (size_t k = 0; k < nh && !lab; k++)
			if (!h[k].is_emb && strcmp(mp_case(&h[k].f), mp_case(&h[i].f)) == 0)
				lab = &h[k];
		if (!lab)
			mp_die("%s of case '%s': no label frame of that case in the input", lora ? "image" : "embeddings",
			       mp_case(&h[i].f));
		if (lora ? mp_tune_data_add_image(&d, &h[i].f, prep, &lab->f) : mp_tune_data_add(&d, &h[i].f, &h[i].info, &lab->f))
			mp_die("%s", mp_err());
	}
	if (!nemb)
		mp_die(lora ? "no image frames in the input" : "no embedding frames in the input (make them with sam-embed)");
	if (!d.n)
		mp_die("no embedded slice holds a label");
	long spe = mp_tune_data_steps_per_epoch(&d), total = steps > 0 ? steps : epochs * spe;
	uint64_t hash = mp_tune_data_hash(&d) ^ (lora ? 0x4c6f5241ULL * (uint64_t)rank + (uint64_t)prep : 0);
	if (resumepath) {
		uint64_t u;
		if (mp_tune_load_state(&t, resumepath, &u))
			mp_die("--resume: %s", mp_err());
		if (u != hash)
			mp_die("--resume: %s: made with other data or other --batch, --seed, --loss-res or --bbox-shift",
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
	int tty = isatty(2) && !mp_verbose && !R;
	float *gt = mp_xmalloc((size_t)t.loss_res * t.loss_res * sizeof(float));
	int S = model.cfg.img_size;
	float *img = lora ? mp_xmalloc((size_t)3 * S * S * sizeof(float)) : NULL, *plane = NULL;
	while (t.step < total) {
		double t0 = now(), L = 0, D = 0, B = 0;
		long s = t.step;
		mp_tune_zero_grad(&t);
		for (int j = R; j < batch; j += N) {
			float box[4];
			double l, dc, bc;
			const mp_tune_slice *sl = mp_tune_data_pick(&d, s, j, box, gt, NULL);
			int er;
			if (lora) {
				size_t n = sl->nx * sl->ny;
				plane = mp_xrealloc(plane, n * sizeof(float));
				mp_convert(plane, MP_FLOAT32, (const char *)sl->img->data + sl->z * n * mp_type_size(sl->img->type),
				           sl->img->type, n);
				er = mp_sam_preprocess(prep, (int)rm, S, plane, sl->nx, sl->ny, 1, img) ||
				     mp_tune_sample_image(&t, img, box, gt, 1.0 / (double)batch, &l, &dc, &bc);
			} else
				er = mp_tune_sample(&t, sl->emb, box, gt, 1.0 / (double)batch, &l, &dc, &bc, NULL, NULL);
			if (er)
				mp_die("step %ld: %s", s + 1, mp_err());
			L += l / (double)batch;
			D += dc / (double)batch;
			B += bc / (double)batch;
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
		mp_tune_adamw(&t, lr);
		double ms = 1e3 * (now() - t0);
		if (log)
			fprintf(log->fp, "%ld,%ld,%.7g,%.7g,%.7g,%.7g,%.1f\n", s + 1, s / spe + 1, L, D, B, lr, ms);
		if (tty)
			fprintf(stderr, "\rsam-tune: step %ld/%ld  loss %.4f  dice %.4f  bce %.4f  %.0f ms ", s + 1, total, L, D, B,
			        ms);
		mp_note("step %ld/%ld: loss %.5f (dice %.5f, bce %.5f), %.0f ms", s + 1, total, L, D, B, ms);
	}
	if (tty)
		fprintf(stderr, "\n");
	int same = mp_dist_same(t.p, t.np * sizeof(float));
	if (same < 0)
		mp_die("%s", mp_err());
	if (!same)
		mp_die("the ranks' parameters differ after step %ld (MPI_Allreduce gave the ranks different sums)", t.step);
	if (!R && mp_tune_save(&t, out))
		mp_die("%s", mp_err());
	if (!R && statepath && mp_tune_save_state(&t, statepath, hash))
		mp_die("%s", mp_err());
	if (log && mp_afile_commit(log))
		mp_die("%s: %s", logpath, mp_err());
	mp_dist_finalize();
	free(gt);
	free(img);
	free(plane);
	mp_tune_data_free(&d);
	mp_tune_free(&t);
	for (size_t i = 0; i < nh; i++) {
		if (h[i].is_emb && !lora)
			mp_sam_emb_free(&h[i].info);
		mp_frame_free(&h[i].f);
	}
	free(h);
	mp_sam_free(&model);
	free(args);
	return 0;
}
