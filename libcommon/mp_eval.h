/* mp_eval.h - segmentation metrics: Dice and normalised surface Dice (NSD).
 *
 * The surface Dice follows the method of DeepMind's surface-distance package
 * as used by MedSAM's evaluation (SurfaceDice.py, CVPR 2024 compute_metrics.py):
 * surface elements ("surfels") are the corners of the voxel grid whose 2x2x2
 * neighbourhood is neither empty nor full; each gets an area from a 256-entry
 * table of marching-cubes normals scaled by the spacing; distances between
 * surfels of the two masks come from an exact Euclidean distance transform
 * with the spacing; NSD = (area of reference surfels within the tolerance of
 * the prediction's surface + the same the other way round) / (total area of
 * both surfaces).
 *
 * Volumes are nx*ny*nz, x fastest (a numpy (Z,Y,X) C-order array); spacing
 * sp[0..2] is the step along x, y, z in mm.
 */
#ifndef MP_EVAL_H
#define MP_EVAL_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
	int32_t label;
	size_t nref, npred, ninter;   /* voxel counts */
	double dice;                  /* 2*inter/(nref+npred); NaN if both are empty */
	double nsd;                   /* NaN when not computed or both surfaces empty */
	double area_ref, area_pred;   /* surface area, mm^2 */
} mp_eval_label;

/* area in mm^2 of the surface element of each of the 256 neighbourhood codes
 * (bit 1<<(4*(dz==-1)+2*(dy==-1)+(dx==-1)) set when the voxel at offset
 * (dx,dy,dz) in {-1,0}^3 from the corner is inside) for the spacing sp (x,y,z) */
void mp_surfel_areas(const double sp[3], double area[256]);

/* NSD of two binary masks (nonzero = inside) at tolerance tol mm.
 * Returns 0 and sets *nsd (NaN if both surfaces are empty; 0 if exactly one
 * is empty), *area_ref, *area_pred (may be NULL); -1 + mp_err on failure. */
int mp_surface_dice(const uint8_t *ref, const uint8_t *pred, const size_t dim[3],
                    const double sp[3], double tol, double *nsd,
                    double *area_ref, double *area_pred);

/* Per-label metrics of two label maps (int32 labels, 0 background): every
 * label present in either map, ascending. want_nsd: 0 none, 1 for labels
 * present in the reference, 2 for all labels. *out is malloc'd. */
int mp_eval_labels(const int32_t *ref, const int32_t *pred, const size_t dim[3],
                   const double sp[3], double tol, int want_nsd,
                   mp_eval_label **out, size_t *nout);

/* MedSAM's case summary: the means of Dice and of NSD over the labels present
 * in the reference (labels only in the prediction do not count). If gate > 0
 * and the mean Dice is <= gate, NSD is 0 (MedSAM: gate 0.2). NaN when the
 * reference has no labels. */
void mp_eval_case(const mp_eval_label *l, size_t n, double gate, double *dice, double *nsd);

/* seg-eval after its options (eval_csv.c): the predictions in args (standard
 * input when nargs is 0) against the references of their case (ref_role in
 * the same stream, or every frame of ref_file), the CSV to output (NULL:
 * standard output) at the end; NULL roles take the defaults (label, mask).
 * Bad usage or any failure: one line, exit 2 or 1. Frees args. */
typedef struct mp_seg_eval_opts {
	const char *ref_role, *pred_role, *ref_file, *output;
	double tolerance, gate;
	long digits;
	int no_nsd, summary, all_nsd;
} mp_seg_eval_opts;
void mp_seg_eval_stream(const mp_seg_eval_opts *opt, char **args, int nargs);
#endif
