#!/bin/sh
# examples/phantom-dataset.sh DIR [N] - make a small dataset of N phantom CT
# cases (default 4) in both layouts the dataset Makefiles read, then run the
# dataset job on it:
#
#   DIR/imagesTr/phNN_0000.nii.gz + DIR/labelsTr/phNN.nii.gz   (nnU-Net)
#   DIR/dcNN/dicom/IM*.dcm        + DIR/dcNN/label.nii.gz      (DICOM, via DCMTK)
#
#   examples/phantom-dataset.sh ph                             # makes ph/, 4 cases
#   make -f pipelines/ct-npz.mk -j2 -k IN=ph OUT=ph-out         # npz + summary.csv
#   make -f pipelines/sanity.mk -j2 -k IN=ph OUT=ph-out         # NIfTI + PNG per case
cd "$(dirname "$0")/.." || exit 1
DIR=${1:?usage: examples/phantom-dataset.sh DIR [N]}
N=${2:-4}
PY=${PY:-/usr/bin/python3}
mkdir -p "$DIR/imagesTr" "$DIR/labelsTr" || exit 1
i=1
while [ $i -le "$N" ]; do
	c=$(printf 'ph%02d' $i)
	"$PY" tests/gen/phantom.py --seed $i --size 96x96x32 --case $c \
		--image "$DIR/imagesTr/${c}_0000.nii.gz" --label "$DIR/labelsTr/$c.nii.gz" || exit 1
	if [ $((i % 2)) -eq 0 ] && command -v dump2dcm > /dev/null; then
		d=$(printf 'dc%02d' $i)
		"$PY" tests/gen/phantom.py --seed $((100 + i)) --size 96x96x32 --case $d \
			--dicom "$DIR/$d/dicom" --label "$DIR/$d/label.nii.gz" || exit 1
	fi
	i=$((i + 1))
done
echo "dataset in $DIR:"
make --no-print-directory -f pipelines/ct-npz.mk IN="$DIR" OUT="$DIR-out" list | sed 's/^/  /'
echo "now:"
echo "  make -f pipelines/ct-npz.mk -j2 -k IN=$DIR OUT=$DIR-out"
echo "  make -f pipelines/sanity.mk -j2 -k IN=$DIR OUT=$DIR-out"
