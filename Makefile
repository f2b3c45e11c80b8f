# medpipe - see README.md.  `make`, `make check`, `make demo`, `make bench`,
# `make install PREFIX=...`, `make check SANITIZE=1`, `make fuzz FUZZ_SECONDS=60`.
#
# Everything is discovered: libcommon/*.c|*.cc -> build/libmedpipe.a,
# opencl/*.c -> the same library (opencl/*.cl embedded), tools/NAME.c -> bin/NAME,
# tests/unit/NAME.c -> build/tests/NAME.  Adding a file needs no edit here.

PREFIX   ?= /usr/local
CC       ?= cc
CXX      ?= c++
SANITIZE ?= 0
OPT      ?= -O2

WARN     = -Wall -Wextra -Werror
# include and library flags of the pkg-config-aware dependencies, asked once
PKGS     = libopenjp2 OpenCL libpng zlib nettle libisal
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lopenjp2 -lOpenCL -lpng -lz -lnettle -lisal)
BLAS_LIBS  := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
CPPFLAGS = -D_GNU_SOURCE -Ilibcommon -Iopencl -Ibuild/gen $(PKG_CFLAGS)
CFLAGS   = -std=c11 $(OPT) -g $(WARN) -pthread -fno-strict-aliasing
CXXFLAGS = -std=c++17 $(OPT) -g $(WARN) -pthread
LDFLAGS  = -pthread
ifeq ($(SANITIZE),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CXXFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif

# the libraries every program may use (see DESIGN.md, Dependencies)
DCMTK_LIBS = -ldcmjpls -ldcmjpeg -ldcmimage -ldcmimgle -ldcmdata -loflog -lofstd \
             -lijg8 -lijg12 -lijg16 -ldcmtkcharls
# 2D pictures, TIFF/OME-TIFF, whole slides, MINC2 (HDF5), MINC1 (NetCDF)
MODAL_PKGS = libtiff-4 libxml-2.0 libjpeg openslide hdf5 netcdf
CPPFLAGS += $(shell pkg-config --cflags $(MODAL_PKGS))
# nifti_clib (libnifti2-dev) has no .pc file on Debian: its headers sit in include/nifti
NIFTI_CFLAGS := $(shell pkg-config --cflags nifti2 2>/dev/null || echo -I/usr/include/nifti)
NIFTI_LIBS   := $(shell pkg-config --libs nifti2 2>/dev/null || echo -lnifti2)
CPPFLAGS += $(NIFTI_CFLAGS)
LDLIBS   = -Wl,--as-needed $(DCMTK_LIBS) $(PKG_LIBS) $(NIFTI_LIBS) $(shell pkg-config --libs $(MODAL_PKGS)) $(BLAS_LIBS) -lm -lstdc++

# MPI for data-parallel sam-tune, where Open MPI's mpicc is present (MPI=0:
# without): only libcommon/sam_train_mpi.c is compiled with its flags and
# only sam-tune links it
MPICC    ?= mpicc
ifneq ($(MPI),0)
MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null || pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   := $(shell $(MPICC) --showme:link 2>/dev/null || pkg-config --libs ompi-c 2>/dev/null)
endif
ifneq ($(strip $(MPI_LIBS)),)
build/libcommon/sam_train_mpi.o: CPPFLAGS += -DMP_HAVE_MPI $(MPI_CFLAGS)
# the training ops' element loops (exp, erf, sums in lanes) vectorize (results unchanged)
build/libcommon/sam_train_ops.o build/libcommon/sam_train_lora.o: CFLAGS += -O3 -fno-trapping-math -fno-math-errno
bin/sam-tune: LDLIBS += $(MPI_LIBS)
endif

LIB_C    = $(sort $(wildcard libcommon/*.c) $(wildcard opencl/*.c))
LIB_CC   = $(sort $(wildcard libcommon/*.cc))
CL_SRC   = $(sort $(wildcard opencl/*.cl))
TOOLS    = $(sort $(basename $(notdir $(wildcard tools/*.c))))
UNITS    = $(sort $(basename $(notdir $(wildcard tests/unit/*.c))))
LIB_OBJ  = $(LIB_C:%.c=build/%.o) $(LIB_CC:%.cc=build/%.o)
BINS     = $(TOOLS:%=bin/%)
UNIT_BINS= $(UNITS:%=build/tests/%)
LIB      = build/libmedpipe.a

.PHONY: all check demo bench install clean deps man distclean mutants fuzz fuzz-build
.DELETE_ON_ERROR:
.SUFFIXES:
# the programs' and unit tests' objects are kept (a second `make` has nothing to do)
.SECONDARY: $(TOOLS:%=build/tools/%.o) $(UNITS:%=build/tests/unit/%.o)

all: $(BINS) $(UNIT_BINS)

# rebuild everything when the flags change (e.g. SANITIZE=1 after a plain
# build): build/flags is out of date only when the flags it holds differ from
# these, so an unchanged build stays up to date (`make -q` says so)
FLAGS_NOW := $(strip $(CC) $(CXX) $(CPPFLAGS) $(CFLAGS) $(CXXFLAGS) $(LDFLAGS) $(LDLIBS) $(MPI_LIBS))
ifneq ($(FLAGS_NOW),$(strip $(shell cat build/flags 2>/dev/null)))
build/flags: FORCE
	@mkdir -p build
	@echo '$(FLAGS_NOW)' > $@
FORCE:
endif

# OpenCL kernel sources compiled into the binaries
build/gen/mp_cl_sources.h: $(CL_SRC) opencl/embed.sh
	@mkdir -p build/gen
	sh opencl/embed.sh $(CL_SRC) > $@.tmp && mv $@.tmp $@

# the kernel header is made before any compile (order-only); after that only
# the objects whose .d file names it are rebuilt when a kernel changes
build/%.o: %.c build/flags | build/gen/mp_cl_sources.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

build/%.o: %.cc build/flags
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

bin/%: build/tools/%.o $(LIB)
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

build/tests/%: build/tests/unit/%.o $(LIB)
	@mkdir -p build/tests
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

-include $(LIB_OBJ:.o=.d) $(TOOLS:%=build/tools/%.d) $(UNITS:%=build/tests/unit/%.d)

deps:
	@sh tests/deps.sh

check: deps all
	@SANITIZE=$(SANITIZE) sh tests/run.sh

demo: deps all
	@sh examples/demo.sh

bench: deps all
	@sh tests/bench/run.sh

# deliberate bugs (tests/mutants/list) that the tests must catch; not part of check
mutants: deps all
	@/usr/bin/python3 tests/mutants/run.py

# libFuzzer harnesses (tests/fuzz/README): built with clang in build/fuzz/,
# run FUZZ_SECONDS each; fails on any finding
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) sh tests/fuzz/run.sh
fuzz-build:
	@$(MAKE) --no-print-directory -f tests/fuzz/fuzz.mk 'MP_CPPFLAGS=$(CPPFLAGS)' 'MP_LDLIBS=$(LDLIBS)'

# man pages are generated from each program's option table (--man) and kept
# in the repository; tests/t/man.sh checks they are in step with the code
man: $(BINS)
	@for t in $(TOOLS); do bin/$$t --man > man/man1/$$t.1.tmp && mv man/man1/$$t.1.tmp man/man1/$$t.1; done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 man/man1/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/man5/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 man/man7/*.7 $(DESTDIR)$(PREFIX)/share/man/man7/

clean:
	rm -rf build bin

distclean: clean
	rm -rf .venv
