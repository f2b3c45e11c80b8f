# pipelines/sanity.mk - per case, files a person looks at: the processed image
# and label as NIfTI (open them in 3D Slicer or ITK-SNAP) and a PNG preview of
# the labelled slices with the labels drawn over the image.
#
#   make -f pipelines/sanity.mk -j8 IN=DATASET OUT=RESULTS [MODALITY=mr]
#
# Per case NAME (inputs and variables: see common.mk; the processed frames in
# OUT/work are shared with ct-npz.mk / mr-npz.mk and made once):
#   OUT/sanity/NAME_image.nii.gz, OUT/sanity/NAME_label.nii.gz
#   OUT/preview/NAME.png         (PREVIEW: vol-preview options)

all: sanity

include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

PREVIEW ?= --range 0,255 --max 16

SANITY := $(foreach c,$(CASES),$(OUT)/sanity/$(c)_image.nii.gz $(OUT)/preview/$(c).png)

# the label file only exists for cases with labels: made with the image
$(OUT)/sanity/%_image.nii.gz: $(OUT)/work/%.nrrd | $(OUT)/sanity
	$(Q)if [ ! -s $< ]; then echo "skip   $*: $(SKIPPED)"; else echo "nifti  $*"; \
	  $(P)vol-save -p -i $< '$(OUT)/sanity/{case}_{role}.nii.gz'; fi

$(OUT)/preview/%.png: $(OUT)/work/%.nrrd | $(OUT)/preview
	$(Q)if [ -s $< ]; then echo "png    $*"; $(P)vol-preview $(PREVIEW) -o $@ $<; fi
$(OUT)/sanity $(OUT)/preview:
	@mkdir -p $@

.PHONY: sanity
sanity: $(SANITY)
