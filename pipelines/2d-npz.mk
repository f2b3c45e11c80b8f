# pipelines/2d-npz.mk - a folder of 2D images (PNG, JPEG, BMP, TIFF) and
# their masks to MedSAM's 2D npz files, as MedSAM's pre_grey_rgb.py does
#
#   make -f pipelines/2d-npz.mk -j8 IN=DATASET OUT=RESULTS [NPY=1] [SIZE=1024] [-k]
#
# Cases: IN/images/NAME.EXT (EXT: png jpg jpeg bmp tif tiff) with the mask
# IN/masks/NAME.png (or .tif; a grey label image, 0 = background).  Per case:
#   OUT/npz/NAME.npz         imgs (H,W,3 uint8): hu-window --medsam-2d (16-bit
#                            min-max to 0..255; grey: percentiles 0.5/99.5 of
#                            pixels > 0, zeros kept, repeated to 3 channels;
#                            RGB unchanged), gts (H,W uint8)
#   OUT/npy/{imgs,gts}/NAME-000.npy   with NPY=1: the SIZExSIZE training files
#                            (order-3 B-spline, mode constant, min-max to
#                            [0,1]; gts nearest)
# One line per case; a failed case leaves no output file; -k goes on; running
# make again redoes only what is missing or older than its inputs.
# MEDPIPE_BIN: folder of the medpipe programs (default: this tree's bin/).

ifndef IN
$(error IN is not set: make -f pipelines/2d-npz.mk IN=DATASET OUT=RESULTS)
endif
ifndef OUT
$(error OUT is not set: make -f pipelines/2d-npz.mk IN=DATASET OUT=RESULTS)
endif

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
.DELETE_ON_ERROR:
.SUFFIXES:

PIPEDIR     := $(dir $(lastword $(MAKEFILE_LIST)))
MEDPIPE_BIN ?= $(abspath $(PIPEDIR)../bin)
P           := $(if $(wildcard $(MEDPIPE_BIN)/vol-info),$(MEDPIPE_BIN)/,)
SIZE        ?= 1024
NPY         ?=
Q           := $(if $(filter 1,$(V)),,@)

EXTS   := png jpg jpeg bmp tif tiff PNG JPG JPEG BMP TIF TIFF
IMAGES := $(foreach e,$(EXTS),$(wildcard $(IN)/images/*.$(e)))
CASES  := $(sort $(basename $(notdir $(IMAGES))))
ifeq ($(strip $(CASES)),)
$(warning no images under $(IN)/images)
endif
image_of = $(firstword $(filter $(IN)/images/$(1).%,$(IMAGES)))
mask_of  = $(firstword $(wildcard $(IN)/masks/$(1).png $(IN)/masks/$(1).tif $(IN)/masks/$(1).tiff))

NPZ := $(CASES:%=$(OUT)/npz/%.npz)
all: $(NPZ)

.SECONDEXPANSION:
$(OUT)/npz/%.npz: $$(call image_of,%) $$(call mask_of,%)
	@mkdir -p $(@D)
	@echo "2d     $*"
	$(Q)$(if $(call mask_of,$*),,echo "$*: no mask in $(IN)/masks" >&2; exit 1;) \
	$(P)vol-cat --case $* $(call image_of,$*) --label $(call mask_of,$*) | $(P)hu-window --medsam-2d \
	  | $(P)vol2npz --layout medsam --border constant -o $@ $(if $(NPY),--slices $(OUT)/npy --size $(SIZE))

.PHONY: all
