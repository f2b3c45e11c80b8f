# tests/fuzz/fuzz.mk - the libFuzzer harnesses, built with clang into
# build/fuzz/ (the library sources compiled again there with the fuzzer's
# coverage, ASan and UBSan; the normal gcc build is left alone).
# Used by `make fuzz` (see tests/fuzz/README).

FUZZ_CC  ?= clang
FUZZ_CXX ?= clang++
B        = build/fuzz
SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# the include and library flags are the main Makefile's (MP_CPPFLAGS,
# MP_LDLIBS, passed by `make fuzz`), so a new dependency needs no edit here
CPPFLAGS = $(MP_CPPFLAGS) -Itests/fuzz
CFLAGS   = -std=c11 -O1 -g -pthread -fno-strict-aliasing $(SAN) -fsanitize=fuzzer-no-link -Wno-unused-command-line-argument
CXXFLAGS = -std=c++17 -O1 -g -pthread $(SAN) -fno-sanitize=vptr -fsanitize=fuzzer-no-link
LDLIBS   = $(MP_LDLIBS)

LIB_C    = $(sort $(wildcard libcommon/*.c) $(wildcard opencl/*.c))
LIB_CC   = $(sort $(wildcard libcommon/*.cc))
LIB_OBJ  = $(LIB_C:%.c=$(B)/%.o) $(LIB_CC:%.cc=$(B)/%.o)

# harness name: source and defines
FZ_nrrd_stream = fz_nrrd_stream.c
FZ_nrrd        = fz_file.c -DFZ_EXT='".nrrd"'
FZ_nifti       = fz_file.c -DFZ_EXT='".nii"'
FZ_analyze     = fz_file.c -DFZ_EXT='".hdr"' -DFZ_PAIR=348 -DFZ_PAIR_EXT='".img"'
FZ_meta        = fz_file.c -DFZ_EXT='".mha"'
FZ_npy         = fz_file.c -DFZ_EXT='".npy"'
FZ_npz         = fz_npz.c
FZ_npzboxes    = fz_npzboxes.c
FZ_torch       = fz_torch.c
FZ_safetensors = fz_torch.c
FZ_dicom       = fz_dicom.c
FZ_dicomdir    = fz_dicomdir.c
FZ_png         = fz_file.c -DFZ_EXT='".png"'
FZ_jpeg        = fz_file.c -DFZ_EXT='".jpg"'
FZ_bmp         = fz_file.c -DFZ_EXT='".bmp"'
FZ_tiff        = fz_file.c -DFZ_EXT='".tif"'
FZ_minc        = fz_file.c -DFZ_EXT='".mnc"' -DFZ_CHILD_QUIET
FZ_niigz       = fz_file.c -DFZ_EXT='".nii.gz"'
FZ_nhdr        = fz_file.c -DFZ_EXT='".nhdr"' -DFZ_SPLIT='"d"'
FZ_mhd         = fz_file.c -DFZ_EXT='".mhd"' -DFZ_SPLIT='"d"'
FZ_wsi         = fz_wsi.c
FZ_adapter     = fz_adapter.c
HARNESSES = nrrd_stream nrrd nifti analyze meta npy npz npzboxes torch safetensors dicom dicomdir \
	png jpeg bmp tiff minc niigz nhdr mhd wsi adapter

ifndef MP_LDLIBS
$(error run through the main Makefile: make fuzz)
endif

.PHONY: all
.DELETE_ON_ERROR:
all: $(HARNESSES:%=$(B)/bin/%)

build/gen/mp_cl_sources.h: $(sort $(wildcard opencl/*.cl)) opencl/embed.sh
	@mkdir -p build/gen
	sh opencl/embed.sh $(sort $(wildcard opencl/*.cl)) > $@.tmp && mv $@.tmp $@

$(B)/%.o: %.c build/gen/mp_cl_sources.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(B)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(CPPFLAGS) $(CXXFLAGS) -MMD -MP -c -o $@ $<

$(B)/libmedpipe.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/bin/%: tests/fuzz/fz_*.c tests/fuzz/*.h $(B)/libmedpipe.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(CFLAGS) -fsanitize=fuzzer -o $@ tests/fuzz/$(FZ_$*) $(B)/libmedpipe.a $(LDLIBS)

-include $(LIB_OBJ:.o=.d)
