/* mp_keys.h - every medpipe.* key of a frame, defined once.
 *
 * The names are string macros (so that help texts can name them by string
 * concatenation: "recorded in " MP_K_HISTORY "."); MP_KEY_TABLE is the list
 * of every frame key with its meaning, compiled into mp_keys[] (keys.c).
 * man/man5/medpipe-vol.5 lists exactly the keys of the table
 * (tests/unit/test_keys.c), and no file of libcommon/, tools/ or opencl/
 * other than this one and keys.c spells a key out (tests/t/keys.sh).
 * A new key: a #define here, a row in MP_KEY_TABLE, an entry in the page.
 *
 * Readers and writers of the keys every program touches: mp_role, mp_case,
 * mp_set_role, mp_set_case (keys.c); the geometry history keys are read and
 * written by history.c only (mp_hist_*, mp_filter.h).
 */
#ifndef MP_KEYS_H
#define MP_KEYS_H

#include <stddef.h>

/* prefixes of groups of keys */
#define MP_K_PREFIX                 "medpipe."
#define MP_K_GRID0_PREFIX           "medpipe.grid0."
#define MP_K_DICOM_PREFIX           "medpipe.dicom."

/* every frame */
#define MP_K_CASE                   "medpipe.case"
#define MP_K_ROLE                   "medpipe.role"
#define MP_K_SOURCE                 "medpipe.source"
#define MP_K_LABEL_NAMES            "medpipe.label_names"
/* set by readers of files (fmt_*.c) */
#define MP_K_NIFTI_SCALING          "medpipe.nifti.scaling"
#define MP_K_NIFTI_INTENT           "medpipe.nifti.intent"
#define MP_K_NPZ_NAME               "medpipe.npz.name"
#define MP_K_SERIES                 "medpipe.series"
#define MP_K_SERIES_NAME            "medpipe.series.name"
#define MP_K_CHANNELS               "medpipe.channels"
#define MP_K_TIME                   "medpipe.time"
#define MP_K_IMAGE_BITS             "medpipe.image.bits"
#define MP_K_MINC_SCALING           "medpipe.minc.scaling"
#define MP_K_TIFF_PALETTE           "medpipe.tiff.palette"
/* geometry history (history.c) */
#define MP_K_GRID0_SIZES            "medpipe.grid0.sizes"
#define MP_K_GRID0_DIRECTIONS       "medpipe.grid0.directions"
#define MP_K_GRID0_ORIGIN           "medpipe.grid0.origin"
#define MP_K_HISTORY                "medpipe.history"
/* hu-window */
#define MP_K_WINDOW_LEVEL           "medpipe.window.level"
#define MP_K_WINDOW_WIDTH           "medpipe.window.width"
#define MP_K_WINDOW_MAPPING         "medpipe.window.mapping"
#define MP_K_WINDOW_IN              "medpipe.window.in"
#define MP_K_WINDOW_OUT             "medpipe.window.out"
#define MP_K_WINDOW_PRESET          "medpipe.window.preset"
#define MP_K_WINDOW_PERCENTILES     "medpipe.window.percentiles"
/* ccl-clean, label-map */
#define MP_K_CCL_CLEAN              "medpipe.ccl-clean"
#define MP_K_COMPONENTS             "medpipe.components"
#define MP_K_CONNECTIVITY           "medpipe.connectivity"
#define MP_K_INSTANCES              "medpipe.instances"
#define MP_K_LABEL_MAP              "medpipe.label-map"
/* dcm2vol (dicom.c) */
#define MP_K_MODALITY               "medpipe.modality"
#define MP_K_DICOM_SERIES_NUMBER    "medpipe.dicom.series_number"
#define MP_K_DICOM_SERIES_DESCRIPTION "medpipe.dicom.series_description"
#define MP_K_DICOM_MANUFACTURER     "medpipe.dicom.manufacturer"
#define MP_K_DICOM_MODEL            "medpipe.dicom.model"
#define MP_K_DICOM_KERNEL           "medpipe.dicom.kernel"
#define MP_K_DICOM_BODY_PART        "medpipe.dicom.body_part"
#define MP_K_DICOM_TRANSFER_SYNTAX  "medpipe.dicom.transfer_syntax"
#define MP_K_DICOM_WINDOW_CENTER    "medpipe.dicom.window_center"
#define MP_K_DICOM_WINDOW_WIDTH     "medpipe.dicom.window_width"
#define MP_K_DICOM_RESCALE          "medpipe.dicom.rescale"
#define MP_K_DICOM_SLICES           "medpipe.dicom.slices"
#define MP_K_DICOM_SLICE_THICKNESS  "medpipe.dicom.slice_thickness"
#define MP_K_DICOM_MOSAIC           "medpipe.dicom.mosaic"
#define MP_K_DICOM_INVERTED         "medpipe.dicom.inverted"
#define MP_K_DICOM_PADDING_TO       "medpipe.dicom.padding_to"
#define MP_K_DICOM_TILT             "medpipe.dicom.tilt"
#define MP_K_DICOM_TILT_MODE        "medpipe.dicom.tilt_mode"
#define MP_K_DICOM_UNEVEN           "medpipe.dicom.uneven"
#define MP_K_DICOM_UNEVEN_STEP      "medpipe.dicom.uneven_step"
#define MP_K_DICOM_GEOMETRY         "medpipe.dicom.geometry"
#define MP_K_DICOM_VOLUMES          "medpipe.dicom.volumes"
/* dcm2vol --keep-phi only */
#define MP_K_DICOM_PATIENT_NAME     "medpipe.dicom.patient_name"
#define MP_K_DICOM_PATIENT_ID       "medpipe.dicom.patient_id"
#define MP_K_DICOM_BIRTH_DATE       "medpipe.dicom.birth_date"
#define MP_K_DICOM_STUDY_DATE       "medpipe.dicom.study_date"
#define MP_K_DICOM_ACCESSION        "medpipe.dicom.accession"
#define MP_K_DICOM_INSTITUTION      "medpipe.dicom.institution"
#define MP_K_DICOM_STUDY_UID        "medpipe.dicom.study_uid"
#define MP_K_DICOM_SERIES_UID       "medpipe.dicom.series_uid"
/* vol-augment */
#define MP_K_AUGMENT                "medpipe.augment"
/* sam-embed (sam_frame.c), sam-decode */
#define MP_K_SAM_PREFIX             "medpipe.sam."   /* every sam key starts so */
#define MP_K_SAM_ARCH               "medpipe.sam.arch"
#define MP_K_SAM_WEIGHTS            "medpipe.sam.weights"
#define MP_K_SAM_WEIGHTS_ID         "medpipe.sam.weights_id"
#define MP_K_SAM_ADAPTER            "medpipe.sam.adapter"
#define MP_K_SAM_MODE               "medpipe.sam.mode"
#define MP_K_SAM_INTERP             "medpipe.sam.interp"
#define MP_K_SAM_INPUT              "medpipe.sam.input"
#define MP_K_SAM_IMAGE_SIZES        "medpipe.sam.image_sizes"
#define MP_K_SAM_IMAGE_DIRECTIONS   "medpipe.sam.image_directions"
#define MP_K_SAM_IMAGE_ORIGIN       "medpipe.sam.image_origin"
#define MP_K_SAM_IMAGE_DIM          "medpipe.sam.image_dim"
#define MP_K_SAM_SLICES             "medpipe.sam.slices"
#define MP_K_SAM_THRESHOLD          "medpipe.sam.threshold"
#define MP_K_SAM_IOU                "medpipe.sam.iou"
/* wsi-tile */
#define MP_K_WSI_LEVEL              "medpipe.wsi.level"
#define MP_K_WSI_DOWNSAMPLE         "medpipe.wsi.downsample"
#define MP_K_WSI_X                  "medpipe.wsi.x"
#define MP_K_WSI_Y                  "medpipe.wsi.y"
#define MP_K_WSI_COL                "medpipe.wsi.col"
#define MP_K_WSI_ROW                "medpipe.wsi.row"
#define MP_K_WSI_MPP                "medpipe.wsi.mpp"
#define MP_K_WSI_TISSUE             "medpipe.wsi.tissue"
#define MP_K_WSI_THRESHOLD          "medpipe.wsi.threshold"

/* not a frame key: the metadata entry of the adapter checkpoints sam-tune
 * writes (adapter_model.safetensors) */
#define MP_CKPT_ADAPTER             "medpipe.adapter"

/* the table: X(NAME, "meaning") for every frame key above */
#define MP_KEY_TABLE(X) \
	X(MP_K_CASE, "the case identifier; frames of a case are adjacent") \
	X(MP_K_ROLE, "what the frame is: image (default), label, mask, logits, embedding, instance") \
	X(MP_K_SOURCE, "the format the frame was read from") \
	X(MP_K_LABEL_NAMES, "class names of a label frame, \"1=spleen;2=kidney_right\"") \
	X(MP_K_NIFTI_SCALING, "NIfTI scl_slope/scl_inter applied on reading") \
	X(MP_K_NIFTI_INTENT, "a non-zero NIfTI intent code") \
	X(MP_K_NPZ_NAME, "the array name of a frame read from an .npz") \
	X(MP_K_SERIES, "TIFF/OME-TIFF series number (0-based)") \
	X(MP_K_SERIES_NAME, "the OME Image name") \
	X(MP_K_CHANNELS, "OME channel names, in the order of the first axis") \
	X(MP_K_TIME, "the time point of a TIFF series") \
	X(MP_K_IMAGE_BITS, "bits per sample of a PNG, JPEG or BMP") \
	X(MP_K_MINC_SCALING, "MINC voxels scaled by image-min/image-max") \
	X(MP_K_TIFF_PALETTE, "a palette TIFF read as its colour indices") \
	X(MP_K_GRID0_SIZES, "sizes of the grid before the first geometry change") \
	X(MP_K_GRID0_DIRECTIONS, "directions of that grid") \
	X(MP_K_GRID0_ORIGIN, "origin of that grid") \
	X(MP_K_HISTORY, "geometry operations since grid0, oldest first") \
	X(MP_K_WINDOW_LEVEL, "hu-window: the window level") \
	X(MP_K_WINDOW_WIDTH, "hu-window: the window width") \
	X(MP_K_WINDOW_MAPPING, "hu-window: the mapping used") \
	X(MP_K_WINDOW_IN, "hu-window: input values mapped to the range's ends") \
	X(MP_K_WINDOW_OUT, "hu-window: the output range") \
	X(MP_K_WINDOW_PRESET, "hu-window: the preset name") \
	X(MP_K_WINDOW_PERCENTILES, "hu-window: the percentiles used") \
	X(MP_K_CCL_CLEAN, "what ccl-clean removed") \
	X(MP_K_COMPONENTS, "number of components of an instance frame") \
	X(MP_K_CONNECTIVITY, "connectivity of an instance frame") \
	X(MP_K_INSTANCES, "the range of instance ids label-map gave") \
	X(MP_K_LABEL_MAP, "what label-map did") \
	X(MP_K_MODALITY, "DICOM Modality") \
	X(MP_K_DICOM_SERIES_NUMBER, "DICOM SeriesNumber") \
	X(MP_K_DICOM_SERIES_DESCRIPTION, "DICOM SeriesDescription") \
	X(MP_K_DICOM_MANUFACTURER, "DICOM Manufacturer") \
	X(MP_K_DICOM_MODEL, "DICOM ManufacturerModelName") \
	X(MP_K_DICOM_KERNEL, "DICOM ConvolutionKernel") \
	X(MP_K_DICOM_BODY_PART, "DICOM BodyPartExamined") \
	X(MP_K_DICOM_TRANSFER_SYNTAX, "DICOM transfer syntax") \
	X(MP_K_DICOM_WINDOW_CENTER, "the scanner's WindowCenter") \
	X(MP_K_DICOM_WINDOW_WIDTH, "the scanner's WindowWidth") \
	X(MP_K_DICOM_RESCALE, "RescaleSlope and RescaleIntercept applied") \
	X(MP_K_DICOM_SLICES, "slices used") \
	X(MP_K_DICOM_SLICE_THICKNESS, "SliceThickness (informative)") \
	X(MP_K_DICOM_MOSAIC, "Siemens mosaic tiles") \
	X(MP_K_DICOM_INVERTED, "MONOCHROME1 inverted") \
	X(MP_K_DICOM_PADDING_TO, "the value PixelPaddingValue was mapped to") \
	X(MP_K_DICOM_TILT, "gantry tilt in degrees") \
	X(MP_K_DICOM_TILT_MODE, "sheared or resampled tilt geometry") \
	X(MP_K_DICOM_UNEVEN, "uneven slice spacing: what was done, smallest and largest step") \
	X(MP_K_DICOM_UNEVEN_STEP, "the uniform step used for uneven spacing") \
	X(MP_K_DICOM_GEOMETRY, "a series without position/orientation") \
	X(MP_K_DICOM_VOLUMES, "volumes of a 4D series stacked on the last axis") \
	X(MP_K_DICOM_PATIENT_NAME, "--keep-phi: PatientName") \
	X(MP_K_DICOM_PATIENT_ID, "--keep-phi: PatientID") \
	X(MP_K_DICOM_BIRTH_DATE, "--keep-phi: PatientBirthDate") \
	X(MP_K_DICOM_STUDY_DATE, "--keep-phi: StudyDate") \
	X(MP_K_DICOM_ACCESSION, "--keep-phi: AccessionNumber") \
	X(MP_K_DICOM_INSTITUTION, "--keep-phi: InstitutionName") \
	X(MP_K_DICOM_STUDY_UID, "--keep-phi: StudyInstanceUID") \
	X(MP_K_DICOM_SERIES_UID, "--keep-phi: SeriesInstanceUID") \
	X(MP_K_AUGMENT, "vol-augment: the parameters of one augmented copy") \
	X(MP_K_SAM_ARCH, "the encoder architecture") \
	X(MP_K_SAM_WEIGHTS, "the checkpoint file name") \
	X(MP_K_SAM_WEIGHTS_ID, "a hash of the checkpoint's tensors") \
	X(MP_K_SAM_ADAPTER, "the adapter folder applied on top of the checkpoint (--adapter)") \
	X(MP_K_SAM_MODE, "the preprocessing: medsam, litemedsam or sam") \
	X(MP_K_SAM_INTERP, "the preprocessing's interpolation") \
	X(MP_K_SAM_INPUT, "the slice's size in the model input") \
	X(MP_K_SAM_IMAGE_SIZES, "sizes of the embedded image") \
	X(MP_K_SAM_IMAGE_DIRECTIONS, "directions of the embedded image") \
	X(MP_K_SAM_IMAGE_ORIGIN, "origin of the embedded image") \
	X(MP_K_SAM_IMAGE_DIM, "2 or 3: the embedded image's dimension") \
	X(MP_K_SAM_SLICES, "the image slices embedded, in order") \
	X(MP_K_SAM_THRESHOLD, "the threshold rule of a mask") \
	X(MP_K_SAM_IOU, "the predicted IoU per mask") \
	X(MP_K_WSI_LEVEL, "wsi-tile: the pyramid level") \
	X(MP_K_WSI_DOWNSAMPLE, "wsi-tile: the level's downsample") \
	X(MP_K_WSI_X, "wsi-tile: level-0 x of the top-left pixel") \
	X(MP_K_WSI_Y, "wsi-tile: level-0 y of the top-left pixel") \
	X(MP_K_WSI_COL, "wsi-tile: the tile's column") \
	X(MP_K_WSI_ROW, "wsi-tile: the tile's row") \
	X(MP_K_WSI_MPP, "wsi-tile: level-0 micrometres per pixel") \
	X(MP_K_WSI_TISSUE, "wsi-tile: the tile's tissue fraction") \
	X(MP_K_WSI_THRESHOLD, "wsi-tile: the tissue mask's threshold")

typedef struct mp_key_info {
	const char *name;      /* "medpipe.role" */
	const char *meaning;
} mp_key_info;
extern const mp_key_info mp_keys[];
extern const size_t mp_nkeys;
/* the table's entry of a key, NULL when it is not one of medpipe's */
const mp_key_info *mp_key_find(const char *name);

#endif
