# pipelines/common.mk - shared by ct-npz.mk, mr-npz.mk and sanity.mk; not run
# on its own.  A dataset is a folder IN holding cases in either layout:
#
#   nnU-Net:  IN/imagesTr/NAME_0000.nii.gz  +  IN/labelsTr/NAME.nii.gz
#   DICOM:    IN/NAME/dicom/...  (any depth)  +  IN/NAME/label.nii.gz
#
# (a case without its label file is processed as image only).  A case whose
# label map holds no label once components under MIN/MIN2D are removed is
# skipped, as MedSAM's pre_CT_MR.py does: roi-crop says so on one line, its
# OUT/work/NAME.nrrd is empty, it gets no npz, NIfTI or preview, and
# summary.csv lists it with status 'skipped'.  Every case is
# one target; results go under OUT.  Each step writes its file whole or not at
# all, so an interrupted run (Ctrl-C, a killed job, a failed case under -k)
# leaves no finished-looking file, and running make again redoes only what is
# missing or older than its inputs.
#
# Variables (make VAR=value):
#   IN, OUT         dataset and result folders (required)
#   MODALITY        ct (default) or mr
#   LEVEL, WIDTH    CT window (default 40 / 400, soft tissue), MedSAM's mapping
#   PERCENTILES     MR normalisation percentiles (default 0.5,99.5, over voxels > 0)
#   MIN, MIN2D      components smaller than MIN voxels (3D) and MIN2D pixels
#                   (per slice) are removed from labels (default 1000 / 100, MedSAM)
#   CROP            roi-crop options (default --slices labelled)
#   SIZE            in-plane size of the npz slices, e.g. 1024 (default empty:
#                   not resized, as MedSAM's CVPR 2024 npz files)
#   MEDPIPE_BIN     folder of the medpipe programs (default: this tree's bin/
#                   when built, else the PATH)
#   V=1             show the commands, not only one line per case
#   RUN             srun (with options): every recipe line runs as a Slurm job
#                   step; see "Slurm" below and man 7 medpipe

ifndef IN
$(error IN is not set: make -f pipelines/ct-npz.mk IN=DATASET OUT=RESULTS)
endif
ifndef OUT
$(error OUT is not set: make -f pipelines/ct-npz.mk IN=DATASET OUT=RESULTS)
endif

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
.DELETE_ON_ERROR:
.SUFFIXES:

PIPEDIR     := $(dir $(lastword $(filter %common.mk,$(MAKEFILE_LIST))))
MEDPIPE_BIN ?= $(abspath $(PIPEDIR)../bin)
P           := $(if $(wildcard $(MEDPIPE_BIN)/vol-info),$(MEDPIPE_BIN)/,)

MODALITY    ?= ct
LEVEL       ?= 40
WIDTH       ?= 400
PERCENTILES ?= 0.5,99.5
MIN         ?= 1000
MIN2D       ?= 100
CROP        ?= --slices labelled
SIZE        ?=

ifeq ($(MODALITY),ct)
WINDOW_OPTS ?= --level $(LEVEL) --width $(WIDTH) --mapping medsam
else ifeq ($(MODALITY),mr)
WINDOW_OPTS ?= --percentiles $(PERCENTILES) --nonzero --mapping medsam
else
$(error MODALITY must be ct or mr, not '$(MODALITY)')
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

# ------------------------------------------------------------------ cases
NNU_CASES := $(patsubst $(IN)/imagesTr/%_0000.nii.gz,%,$(wildcard $(IN)/imagesTr/*_0000.nii.gz))
DCM_CASES := $(patsubst $(IN)/%/dicom,%,$(wildcard $(IN)/*/dicom))
CASES     := $(sort $(NNU_CASES) $(DCM_CASES))
ifeq ($(strip $(CASES)),)
$(warning no cases under $(IN): expected $(IN)/imagesTr/NAME_0000.nii.gz or $(IN)/NAME/dicom/)
endif

# the input files of a case, and the command that streams its frames
# (image then label; medpipe.case set to NAME)
nnu_label = $(wildcard $(IN)/labelsTr/$(1).nii.gz)
dcm_label = $(firstword $(wildcard $(IN)/$(1)/label.nii.gz $(IN)/$(1)/label.nrrd $(IN)/$(1)/label.nii))
case_inputs = $(if $(filter $(1),$(NNU_CASES)),$(IN)/imagesTr/$(1)_0000.nii.gz $(call nnu_label,$(1)),$(shell find $(IN)/$(1)/dicom -type f 2>/dev/null | sort) $(call dcm_label,$(1)))
case_source = $(if $(filter $(1),$(NNU_CASES)),$(P)vol-cat --case $(1) $(IN)/imagesTr/$(1)_0000.nii.gz $(if $(call nnu_label,$(1)),--label $(call nnu_label,$(1))),$(P)dcm2vol $(IN)/$(1)/dicom | $(P)vol-cat --case $(1) - $(if $(call dcm_label,$(1)),--label $(call dcm_label,$(1))))

# the processed case: window, clean, crop (a frame stream, kept under
# OUT/work so that npz files, NIfTI files, previews and the summary come from
# the same frames)
define case_rules
$(OUT)/work/$(1).nrrd: $(call case_inputs,$(1)) | $(OUT)/work
	$$(info prep   $(1))
	$(Q)trap 'rm -f "$$@.tmp"' EXIT; trap 'trap "" HUP INT TERM; exit 1' HUP INT TERM; \
	  $(call case_source,$(1)) \
	  | $(P)hu-window $(WINDOW_OPTS) \
	  | $(P)ccl-clean --min $(MIN) --min2d $(MIN2D) \
	  | $(P)roi-crop --empty drop $(CROP) > $$@.tmp; \
	  mv -f $$@.tmp $$@
endef
$(foreach c,$(CASES),$(eval $(call case_rules,$(c))))

# a skipped case: its work file is empty
SKIPPED = no label left after the clean-up (MIN=$(MIN) MIN2D=$(MIN2D))

# one CSV line per case: case, slices, size, spacing, labels (label:voxels ...), status
$(OUT)/info/%.csv: $(OUT)/work/%.nrrd | $(OUT)/info
	$(Q)trap 'rm -f "$@.tmp"' EXIT; trap 'trap "" HUP INT TERM; exit 1' HUP INT TERM; \
	  if [ ! -s $< ]; then echo '$*,0,,,,skipped: $(SKIPPED)' > $@.tmp; mv -f $@.tmp $@; exit 0; fi; \
	  $(P)vol-info $< | awk -v c="$*" ' \
	  /^frame /            { f++ } \
	  /^  role:/           { role[f] = $$2 } \
	  /^  sizes:/          { sz[f] = $$2 "x" $$3 "x" $$4; nz[f] = $$4 } \
	  /^  spacing:/        { sp[f] = sprintf("%.6g" "x" "%.6g" "x" "%.6g", $$2, $$3, $$4) } \
	  /^  labels:/         { sub(/^  labels: *[0-9]+:? */, ""); gsub(/\(/, ":"); gsub(/\)/, ""); lab[f] = $$0 } \
	  END { for (i = 1; i <= f; i++) if (role[i] == "image") im = i; if (!im) im = 1; \
	        for (i = 1; i <= f; i++) if (role[i] == "label") lb = i; \
	        printf "%s,%s,%s,%s,%s,ok\n", c, nz[im], sz[im], sp[im], (lb ? lab[lb] : "") }' > $@.tmp; \
	  mv -f $@.tmp $@

$(OUT)/summary.csv: $(CASES:%=$(OUT)/info/%.csv) | $(OUT)
	$(Q)trap 'rm -f "$@.tmp"' EXIT; trap 'trap "" HUP INT TERM; exit 1' HUP INT TERM; \
	  { echo "case,slices,size,spacing_mm,labels,status"; cat $^ /dev/null; } > $@.tmp && mv -f $@.tmp $@; \
	  n=$$(grep -c ',skipped: ' $@ || true); echo "summary $@ ($(words $(CASES)) cases$$([ $$n -eq 0 ] || echo ", $$n skipped"))"

# the output folders, order-only prerequisites (| DIR) made once: a progress
# line is $(info ...) or part of the one recipe line, so that under Slurm
# (RUN=srun, below) a case costs one job step per file and not three
$(OUT) $(OUT)/work $(OUT)/info:
	@mkdir -p $@

# summary.csv is made only when every case succeeded; after a run with -k and
# failed cases, this writes OUT/summary-partial.csv from the cases that did
partial-summary:
	@mkdir -p $(OUT)
	$(Q){ echo "case,slices,size,spacing_mm,labels,status"; cat $(wildcard $(CASES:%=$(OUT)/info/%.csv)) /dev/null; } > $(OUT)/summary-partial.csv.tmp \
	  && mv -f $(OUT)/summary-partial.csv.tmp $(OUT)/summary-partial.csv
	@echo "summary $(OUT)/summary-partial.csv ($(words $(wildcard $(CASES:%=$(OUT)/info/%.csv))) of $(words $(CASES)) cases)"

.PHONY: all list clean-work partial-summary
list:
	@printf '%s\n' $(CASES)
clean-work:
	rm -rf $(OUT)/work

# ------------------------------------------------------------------ Slurm
# RUN=srun runs every recipe line as a job step: inside the allocation make
# runs in (salloc -n4 make -j4 RUN=srun ..., sbatch -n4 --wrap 'make -j4
# RUN=srun ...'), or as a job of its own when make runs outside one.  RUN may
# carry srun options: RUN='srun -c2' (2 CPUs per line), RUN='srun
# --gpus-per-task=1', RUN='srun -p gpu'.  SRUN_FLAGS, added after them, makes
# each line one task on one node that takes only what it asks for, so that
# make -jN runs N steps at once in an allocation of N tasks, and keeps srun
# from reading make's input.  Inside a job step already (make itself started
# by srun, or a recursive make from a recipe: SLURM_STEP_ID is set), lines run
# with plain bash, since a step that waits for a step of its own allocation
# can deadlock.  SHELL is set last, after the $(shell ...) calls above, so
# those run here and not as steps.
RUN        ?=
SRUN_FLAGS ?= --ntasks=1 --nodes=1 --exact --input=none --quiet
ifneq ($(strip $(RUN)),)
ifeq ($(SLURM_STEP_ID),)
SHELL       := $(firstword $(RUN))
.SHELLFLAGS := $(wordlist 2,$(words $(RUN)),$(RUN)) $(SRUN_FLAGS) /bin/bash -o pipefail -ec
endif
endif
