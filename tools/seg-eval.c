/* seg-eval - Dice and normalised surface Dice per label and per case, as CSV */
#include "mp.h"
#include "mp_eval.h"

static mp_seg_eval_opts o = { .ref_role = "label", .pred_role = "mask", .tolerance = 2.0, .gate = 0.2, .digits = 4 };

static const mp_opt opts[] = {
	{ "tolerance", 't', MP_OPT_DBL, &o.tolerance, NULL, "MM", "Tolerance of the surface Dice in mm (default 2)." },
	{ "ref", 'r', MP_OPT_STR, &o.ref_file, NULL, "FILE", "Read the reference frames from FILE: a frame stream (its frames of every role but image, so a stream of CT and labels can be given as it is) or an image file (.nii.gz, .nrrd, .mha, .npz, ...: every frame it holds, whatever its role; a .nrrd from another program, without " MP_K_ROLE ", counts as such a file); each prediction is matched to the reference of its case, or, when cases are not set, to the next reference in order. Every input frame that is not of role image (a frame without " MP_K_ROLE " included) is then a prediction, and inputs may be image files too." },
	{ "ref-role", 0, MP_OPT_STR, &o.ref_role, NULL, "ROLE", "Role of the reference frames in the input stream (default label)." },
	{ "pred-role", 0, MP_OPT_STR, &o.pred_role, NULL, "ROLE", "Role of the prediction frames in the input stream (default mask)." },
	{ "no-nsd", 0, MP_OPT_FLAG, &o.no_nsd, NULL, NULL, "Dice only (the nsd column is empty)." },
	{ "gate", 0, MP_OPT_DBL, &o.gate, NULL, "D", "Case NSD is 0 when the case Dice is <= D, as in MedSAM's evaluation (default 0.2; 0 turns it off)." },
	{ "all-labels-nsd", 0, MP_OPT_FLAG, &o.all_nsd, NULL, NULL, "Also compute the NSD of labels that are only in the prediction (always 0 when computed; by default left empty)." },
	{ "summary", 's', MP_OPT_FLAG, &o.summary, NULL, NULL, "Only the per-case rows (label 'all')." },
	{ "digits", 'd', MP_OPT_INT, &o.digits, NULL, "N", "Decimals of dice and nsd (default 4, as MedSAM's CSV)." },
	{ "output", 'o', MP_OPT_STR, &o.output, NULL, "FILE", "Write the CSV to FILE (atomically) instead of standard output." },
	{ NULL, 0, MP_OPT_END, NULL, NULL, NULL, NULL }
};

static const mp_prog prog = {
	"seg-eval",
	"Dice and normalised surface Dice of predictions against a reference, as CSV",
	"[options] [FILE...]",
	"seg-eval reads frames from the FILEs (none or '-': standard input) and compares every "
	"prediction frame (role mask) with the reference frame (role label) of the same case "
	"(" MP_K_CASE "; frames of a case are adjacent, the reference may come before or after its "
	"predictions). With --ref, the references come from a separate stream instead. Frames of "
	"other roles are skipped. Reference and prediction must have the same sizes and spacing.\n\n"
	"For every label present in either frame it prints a CSV row: case (the prediction's "
	MP_K_CASE "; for a file without one, the file's name without extension), pred (the "
	"prediction's frame number in its input), label, ref_voxels, pred_voxels, dice, nsd; then "
	"one row with label 'all': the case summary. The CSV is written at the end (to standard "
	"output, or atomically to --output): a run that fails writes none.\n\n"
	"The numbers are those of MedSAM's CVPR 2024 evaluation (compute_metrics.py with "
	"SurfaceDice.py, the method of DeepMind's surface-distance): Dice = 2|A and B|/(|A|+|B|); "
	"NSD: surface elements at the corners of the voxel grid whose 2x2x2 neighbourhood is neither "
	"empty nor full, each with an area from the marching-cubes table scaled by the spacing, "
	"distances from an exact Euclidean distance transform with the spacing; NSD = (area of "
	"reference surface within the tolerance of the predicted surface + area of predicted surface "
	"within the tolerance of the reference surface) / (area of both surfaces). The spacing of "
	"each axis comes from the frame (space directions), so a volume of numpy shape (Z,Y,X) is "
	"measured with spacing (sz,sy,sx).\n\n"
	"Empty labels: the case summary (label 'all') is the mean over the labels present in the "
	"reference, as MedSAM computes it; a label only in the prediction gets a row (dice 0, nsd "
	"empty unless --all-labels-nsd) but does not count in the case summary. A reference label "
	"missing from the prediction has dice 0 and nsd 0. A reference with no label at all gives "
	"nan in the summary row. If the case Dice is <= 0.2 the case NSD is 0 (MedSAM's gate; "
	"--gate). 2D frames are one slice thick: the surface includes both faces, as MedSAM's "
	"expand_dims evaluation of 2D images does (MedSAM uses spacing 1,1,1 there; the frame's "
	"spacing is used here).",
	"$ seg-eval --ref seg.nii.gz pred.nii.gz\n"
	"Compare a prediction with a reference, both NIfTI files.\n"
	"$ vol-cat --label ref.nii.gz --mask pred.nii.gz | seg-eval -t 1 -o metrics.csv\n"
	"Both in one stream, tolerance 1 mm, CSV to a file.",
	"vol-cat(1), vol-preview(1), sam-decode(1), medpipe(7)",
	opts, 0
};

int
main(int argc, char **argv)
{
	char **args;
	int nargs = mp_parse(&prog, argc, argv, &args);

	mp_seg_eval_stream(&o, args, nargs);
	return 0;
}
