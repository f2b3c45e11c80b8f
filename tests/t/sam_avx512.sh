#!/bin/sh
# The ViT encoder's attention kernels with 16-float registers (AVX-512F,
# libcommon/sam_vitatt.c: tiles_qk16, tiles_pv16) make the same sums in the
# same order as the 8-float ones, so the embeddings must be equal to the
# bit with and without them (MEDPIPE_SAM_AVX512=0); the 8-float path is
# checked against the official code by sam.py and sam_vitb.py. Random-weight
# models (tests/gen/sam_ckpt.py): tiny (heads of 32 values; a 7-wide
# window's relative-position table is one 16-row panel: the lone last
# panel) and tiny_hd48 (heads of 48: the last 16 channels alone), global
# and windowed blocks.
# Skips where the CPU has no AVX-512F, or without torch/segment_anything.
. tests/lib.sh
grep -qw avx512f /proc/cpuinfo 2> /dev/null || { skip sam_avx512 "this CPU has no AVX-512F"; exit 0; }
"$VPY" -c 'import sys; sys.path.insert(0, "tests/gen"); import numpy as np, nrrdframe
rng = np.random.default_rng(5)
open(sys.argv[1], "wb").write(nrrdframe.frame(rng.uniform(0, 255, (2, 256, 256)).astype(np.float32)))' "$T/img.nrrd" \
	|| { fail sam_avx512/fixture "could not write the image"; exit 0; }
for cfg in tiny tiny_hd48; do
	if ! "$VPY" tests/gen/sam_ckpt.py "$T/$cfg.pth" --config $cfg > "$T/ck.log" 2>&1; then
		skip sam_avx512-$cfg "no random-weight model: $(tail -n 1 "$T/ck.log")"
		continue
	fi
	for v in 1 0; do
		MEDPIPE_SAM_AVX512=$v sam-embed -w "$T/$cfg.pth" --mode sam "$T/img.nrrd" > "$T/e$v.nrrd" 2> "$T/e$v.err" \
			|| fail "sam_avx512-$cfg-run-$v" "$(cat "$T/e$v.err")"
	done
	check "sam_avx512-$cfg-same-bits" cmp "$T/e1.nrrd" "$T/e0.nrrd"
done
