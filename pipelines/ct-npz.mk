# pipelines/ct-npz.mk - every case of a CT dataset to an npz in MedSAM's layout
#
#   make -f pipelines/ct-npz.mk -j8 IN=DATASET OUT=RESULTS [SIZE=1024] [-k]
#
# Per case NAME (see common.mk for the input layouts and variables):
#   OUT/work/NAME.nrrd   the processed frames: window (CT: level/width with
#                        MedSAM's mapping to 0..255), small components removed
#                        from the labels, cropped to the labelled slices
#   OUT/npz/NAME.npz     imgs (Z,H,W uint8), gts (Z,H,W uint8), spacing
#                        (resized in-plane to SIZExSIZE when SIZE is set)
#   OUT/info/NAME.csv    and OUT/summary.csv: case, slices kept, size,
#                        spacing, labels with their voxel counts, status (ok,
#                        or skipped: no label left after the clean-up)
# One line per case shows progress; V=1 shows the commands.  A failed case
# leaves no output file; with -k the other cases go on.  Running make again
# rebuilds only cases whose inputs changed or whose outputs are missing.

all: npz

MODALITY ?= ct
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

NPZ := $(CASES:%=$(OUT)/npz/%.npz)

# a skipped case (empty work file) gets no npz: one line, every run
$(OUT)/npz/%.npz: $(OUT)/work/%.nrrd | $(OUT)/npz
	$(Q)if [ ! -s $< ]; then echo "skip   $*: $(SKIPPED)"; else echo "npz    $*"; \
	  $(if $(SIZE),$(P)vol-resize $(SIZE)x$(SIZE) < $< | $(P)vol2npz --layout medsam -o $@,$(P)vol2npz --layout medsam -o $@ $<); fi

$(OUT)/npz:
	@mkdir -p $@

.PHONY: npz summary
npz: $(NPZ) $(OUT)/summary.csv
summary: $(OUT)/summary.csv
