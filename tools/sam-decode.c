/* sam-decode - the SAM / MedSAM prompt encoder and mask decoder: embeddings
 * plus box or point prompts to masks on the original slice grid */
#include "mp.h"
#include "mp_device.h"
#include "mp_sam.h"
#include "mp_sam_prompt.h"

static mp_sam_decode_opts d = { .seed = 1 };

static int
opt_box(void *ctx, const char *arg)
{
	double v[6];
	int n = mp_parse_doubles(arg, v, 6);

	(void)ctx;
	if (n < 0)
		return -1;
	return mp_sp_add_box(&d.prompts, v, n, (long)d.prompts.n + 1);
}

static int
opt_box3(void *ctx, const char *arg)
{
	double v[7];
	int n = mp_parse_doubles(arg, v, 7);

	(void)ctx;
	if (n < 0)
		return -1;
	return mp_sp_add_box3(&d.prompts, v, n, (long)d.prompts.nb3 + 1);
}

static int
opt_point(void *ctx, const char *arg)
{
	double v[4];
	int n = mp_parse_doubles(arg, v, 4);

	(void)ctx;
	return mp_sp_add_point(&d.prompts, v, n);
}

static const mp_opt opts[] = {
	{ "weights", 'w', MP_OPT_STR, &d.weights, NULL, "FILE", "The checkpoint that made the embeddings (see sam-embed(1)). Default: $MEDPIPE_SAM_WEIGHTS." },
	{ "adapter", 'a', MP_OPT_STR, &d.adapter, NULL, "DIR", "The adapter folder the embeddings were made with (sam-embed --adapter DIR, written by sam-tune --adapter-out DIR): a PEFT LoRA adapter's modules_to_save (the mask decoder sam-tune --mode lora trained) replace the checkpoint's tensors, its LoRA is merged; Medical-SAM-Adapter's adapters (sam-tune --mode adapter) act in the encoder only, and their mask decoder is in sam-tune's --out checkpoint." },
	{ "box", 'b', MP_OPT_CALL, NULL, opt_box, "X0,Y0,X1,Y1[,Z[,LABEL]]", "A box prompt in pixel indices of the original slice (x0,y0 top left, x1,y1 bottom right, inclusive as MedSAM's boxes), on slice Z (0-based; may be left out for a 2-D image); its mask gets LABEL (default: the prompt's number, from 1). Repeatable." },
	{ "box3d", 'B', MP_OPT_CALL, NULL, opt_box3, "X0,Y0,Z0,X1,Y1,Z1[,LABEL]", "A 3-D box, segmented as LiteMedSAM does: the box prompts the middle slice; each next slice up to Z1 and down to Z0 is prompted with the bounding box of the previous slice's mask, grown by --grow pixels (the middle box when that mask is empty). Repeatable." },
	{ "point", 'p', MP_OPT_CALL, NULL, opt_point, "X,Y[,Z[,L]]", "A point prompt, L 1 (foreground, default) or 0 (background). Points of a slice join that slice's first box prompt, or form a prompt of their own. Repeatable." },
	{ "boxes", 0, MP_OPT_STR, &d.boxes, NULL, "FILE", "Boxes from a file: a CSV of lines X0,Y0,X1,Y1[,Z[,LABEL]] (a header line is skipped), or a LiteMedSAM .npz whose 'boxes' array is (N,4) for 2-D boxes or (N,6) [x0,y0,z0,x1,y1,z1] for 3-D boxes (propagated as --box3d); labels 1..N." },
	{ "from-label", 'l', MP_OPT_FLAG, &d.fromlabel, NULL, NULL, "Derive the prompts from the label frame of the same case in the stream: the bounding box of every label on every embedded slice (as MedSAM's evaluation); the mask gets the label's value. The label frame passes through after the mask." },
	{ "shift", 0, MP_OPT_INT, &d.shift, NULL, "N", "With --from-label: move every side of each box outwards by a random 0..N pixels (MedSAM's bbox_shift), clipped to the image." },
	{ "seed", 0, MP_OPT_INT, &d.seed, NULL, "N", "Seed of --shift (default 1)." },
	{ "grow", 0, MP_OPT_INT, &d.grow, NULL, "N", "With 3-D boxes: grow the box taken from the previous slice's mask by N pixels on every side, clipped to the image (default 0; LiteMedSAM grows it by 3 pixels of its 256-pixel input, i.e. about 3*max(W,H)/256)." },
	{ "threshold", 'T', MP_OPT_STR, &d.threshold, NULL, "RULE", "'medsam': sigmoid of the low-resolution logits resized bilinearly, mask where > 0.5 (MedSAM's inference); 'litemedsam': logits resized bilinearly, then sigmoid, mask where > 0.5 (LiteMedSAM's inference); 'sam': logits resized, mask where > 0 (SAM's predictor). Default: the embeddings' mode." },
	{ "multimask", 0, MP_OPT_FLAG, &d.multimask, NULL, NULL, "Use SAM's three-mask output and keep the mask with the highest predicted IoU (default: the single-mask output, as MedSAM)." },
	{ "logits", 0, MP_OPT_FLAG, &d.logits, NULL, NULL, "Also write a frame of role logits after each mask: float, on the same grid, per voxel the largest value over the prompts (probability for --threshold medsam or litemedsam, logit for sam; 0 or -100 where no prompt was)." },
	{ "threads", 't', MP_OPT_INT, &d.threads, NULL, "N", "Threads of the C path (default: every CPU)." },
	{ "device", 0, MP_OPT_CALL, &d.devspec, mp_sam_devs_optfn, "DEV", MP_DEV_HELP MP_SAM_DEVS_HELP("sam-decode", "the prompts go to the devices by slice (the i-th embedded slice to device i mod count), a model on each, and the masks are painted in the prompts' order, the same bytes as one device of that kind gives. The slices of a 3-D box run one after another, each prompted from the previous one's mask.") },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"sam-decode",
	"SAM / MedSAM mask decoder: embeddings plus box or point prompts to masks",
	"[options] --weights FILE [FILE...]",
	"sam-decode reads embedding frames made by sam-embed(1) and prompts, runs the prompt encoder and "
	"mask decoder of Segment Anything (SAM) or MedSAM, and writes for each embedding frame one mask "
	"frame on the original image grid (the sizes, directions, origin and keys the image had: "
	"vol-restore(1) can take it further back), role mask, uint8 (uint16 or int32 when a label needs "
	"it), each prompt's mask painted with its label, later prompts over earlier ones. Slices without "
	"a prompt are 0. The predicted IoU of every prompt is recorded in the key " MP_K_SAM_IOU " "
	"(LABEL@SLICE=IOU, ...). Frames other than embeddings pass through.\n\n"
	"Prompts are given in pixel indices of the original slice (x to the right, y down, as numpy's "
	"[y, x]): --box, --point, --box3d, --boxes (CSV or LiteMedSAM .npz), or derived from a label "
	"frame with --from-label. They are mapped into the model's input as SAM's ResizeLongestSide (sam "
	"mode), MedSAM's box/W*1024 (medsam mode) or LiteMedSAM's box/max(W,H)*256 (litemedsam mode) do. "
	"The model (ViT SAM / MedSAM, LiteMedSAM or MobileSAM) is recognised from the checkpoint. The same prompts apply to every embedding frame "
	"of the input.\n\n"
	"Errors: embeddings made by other weights than --weights and --adapter (" MP_K_SAM_WEIGHTS_ID "), a box outside "
	"the image, or a prompt on a slice without an embedding: one line, exit status 1.\n\n"
	"Weights: see sam-embed(1) (SAM sam_vit_b_01ec64.pth, MedSAM medsam_vit_b.pth, .safetensors); "
	"--adapter DIR as there (sam-tune --adapter-out): give sam-decode the --weights and --adapter that "
	"sam-embed had.\n\n"
	"Devices: --device chooses where the decoder's matrix products, layer norms, GELU and attention "
	"run, as for sam-embed(1): the C path (OpenBLAS) or OpenCL kernels through the same model code, "
	"agreeing within float rounding (logits within 1e-5). On OpenCL the image side of the decoder "
	"stays on the device: a slice's image tokens go up once, each prompt's masks come down, and the "
	"prompt tokens' side (a few rows per prompt) goes through the kernels op by op. --verbose names "
	"the device and prints the bytes per slice. With several "
	"devices (--device opencl:all or opencl:A,B,...) the prompts waiting to be decoded (up to 16 per "
	"device) run on the devices of their slices at once, a thread per device; the slices of a 3-D box "
	"depend on each other and run one at a time. On the C path the prompts of one slice (up to 32 at a time) "
	"are decoded as a batch, a prompt per thread (--threads), computing only the mask that is kept.\n\n"
	"Memory: an embedding frame is 16 MiB per slice (ViT-B); one of more than 1 GiB (the embeddings "
	"of a whole CT) is copied to an unlinked file in $TMPDIR (default /tmp) and mapped rather than "
	"held on the heap, so the kernel can page it (MEDPIPE_SPOOL_BYTES sets the threshold in bytes).",
	"$ sam-decode -w medsam_vit_b.pth --box 120,80,260,210,6 < emb.nrrd > mask.nrrd\n"
	"Segments the box on slice 6 (of a 2-D image, leave the slice out).\n"
	"$ sam-decode -w medsam_vit_b.pth --box3d 100,90,2,180,160,10 < emb.nrrd | vol-save --as mask=pred.nii.gz\n"
	"Segments a 3-D box slice by slice from the middle outwards, as LiteMedSAM.",
	"sam-embed(1), seg-eval(1), vol-restore(1), medpipe-vol(5)",
	opts, 1
};

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);

	mp_sam_decode_stream(&d, args, nargs);
	return 0;
}
