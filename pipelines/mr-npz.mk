# pipelines/mr-npz.mk - the MR twin of ct-npz.mk: the same steps, with MR's
# normalisation (percentiles PERCENTILES, default 0.5,99.5, of the voxels > 0,
# MedSAM's mapping to 0..255, zeros kept at 0) instead of a CT window.
#
#   make -f pipelines/mr-npz.mk -j8 IN=DATASET OUT=RESULTS [SIZE=1024] [-k]

MODALITY := mr
include $(dir $(lastword $(MAKEFILE_LIST)))ct-npz.mk
