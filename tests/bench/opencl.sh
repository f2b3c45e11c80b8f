#!/bin/sh
# OpenCL kernels vs the C path vs the peer (numpy, OpenCV, scikit-image, cc3d)
# on the same inputs, in the same run: windowing, every resize mode, connected
# components.  Library-level timings (no I/O), best of 3, OpenCL warm (kernels
# built and cached).  Repeat: BENCH=opencl make bench
cd "$(dirname "$0")/../.." || exit 1
VPY=${VPY:-.venv/bin/python3}; [ -x "$VPY" ] || VPY=/usr/bin/python3
[ -x build/tests/test_cl_bench ] || { echo "opencl: build/tests/test_cl_bench missing (make)"; exit 1; }
exec "$VPY" tests/bench/opencl.py
