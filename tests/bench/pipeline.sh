#!/bin/sh
# The whole MedSAM CT preprocessing (window 40/400 MedSAM's way, components
# below 1000 voxels (26) then below 100 pixels per slice (8) removed, only
# labelled slices, npz with imgs/gts/spacing) on a CT-sized case
# (TotalSegmentator's example CT and labels enlarged to 512x512x300):
#   medpipe:  hu-window | ccl-clean | roi-crop | vol2npz, from the frames
#             (from vol-cat on the .nii when vol-cat is built)
#   Python:   MedSAM's pre_CT_MR.py steps (SimpleITK, cc3d, numpy,
#             savez_compressed) from the same case as an uncompressed .nii,
#             timed in the process after the imports.
# Per-slice 1024x1024 files are left out of both. Best of 3.
# Repeat: BENCH=pipeline make bench
cd "$(dirname "$0")/../.." || exit 1
VPY=${VPY:-.venv/bin/python3}; [ -x "$VPY" ] || VPY=/usr/bin/python3
DATA=${DATA:-../shared/data}
exec "$VPY" - "$DATA" <<'EOF'
import os, subprocess, sys, tempfile, time
import numpy as np
try:
    import SimpleITK as sitk
    import cc3d
    import nibabel as nib
    import scipy.ndimage as ndi
except ImportError as e:
    print("pipeline: skipped: no %s in the venv" % e.name)
    sys.exit(0)
ts = os.path.join(sys.argv[1], "nifti/totalseg")
if not os.path.exists(os.path.join(ts, "example_ct_sm.nii.gz")):
    print("pipeline: skipped: %s absent" % ts)
    sys.exit(0)
for t in ("hu-window", "ccl-clean", "roi-crop", "vol2npz"):
    if not os.access("bin/" + t, os.X_OK):
        print("pipeline: skipped: bin/%s not built" % t)
        sys.exit(0)

T = tempfile.mkdtemp()
shape = (300, 512, 512)
ci = nib.load(os.path.join(ts, "example_ct_sm.nii.gz"))
ct = np.asanyarray(ci.dataobj).astype(np.int16)
sg = np.asanyarray(nib.load(os.path.join(ts, "example_seg.nii.gz")).dataobj).astype(np.uint8)
zf = [a / b for a, b in zip(shape[::-1], ct.shape)]
ct = ndi.zoom(ct, zf, order=1)
sg = ndi.zoom(sg, zf, order=0)
aff = ci.affine.copy()
aff[:3, :3] = aff[:3, :3] / np.array(zf)
ctp, sgp = os.path.join(T, "ct.nii"), os.path.join(T, "seg.nii")
nib.save(nib.Nifti1Image(ct, aff), ctp)
nib.save(nib.Nifti1Image(sg, aff), sgp)


def frame(path, role):
    img = nib.load(path)
    a = np.ascontiguousarray(np.asanyarray(img.dataobj).transpose(2, 1, 0))
    A = img.affine.copy()
    A[:2] *= -1
    dirs = " ".join("(%r,%r,%r)" % tuple(float(v) for v in A[:3, c]) for c in range(3))
    h = ("NRRD0004\ntype: %s\ndimension: 3\nspace: left-posterior-superior\nsizes: %d %d %d\n"
         "space directions: %s\nendian: little\nencoding: raw\nspace origin: (%r,%r,%r)\n"
         "medpipe.case:=bench\nmedpipe.role:=%s\n\n"
         % ({"i2": "int16", "u1": "uint8"}[a.dtype.str[1:]], a.shape[2], a.shape[1], a.shape[0], dirs,
            float(A[0, 3]), float(A[1, 3]), float(A[2, 3]), role))
    return h.encode() + a.tobytes()


frames = os.path.join(T, "case.vol")
with open(frames, "wb") as fp:
    fp.write(frame(ctp, "image") + frame(sgp, "label"))


def medsam_py(out, st=None):
    c = [time.process_time()]
    lap = (lambda nm: (st.append((nm, time.process_time() - c[0])), c.__setitem__(0, time.process_time()))) if st is not None else (lambda nm: None)
    gt_sitk = sitk.ReadImage(sgp)
    gt = np.uint8(sitk.GetArrayFromImage(gt_sitk))
    lap("read labels")
    gt = cc3d.dust(gt, threshold=1000, connectivity=26, in_place=True)
    for i in range(gt.shape[0]):
        gt[i, :, :] = cc3d.dust(gt[i, :, :], threshold=100, connectivity=8, in_place=True)
    z = np.unique(np.where(gt > 0)[0])
    lap("dust+slices")
    img_sitk = sitk.ReadImage(ctp)
    image = sitk.GetArrayFromImage(img_sitk)
    lap("read CT")
    pre = np.clip(image, -160.0, 240.0)
    pre = (pre - np.min(pre)) / (np.max(pre) - np.min(pre)) * 255.0
    pre = np.uint8(pre)
    lap("window")
    np.savez_compressed(out, imgs=pre[z, :, :], gts=gt[z, :, :], spacing=img_sitk.GetSpacing())
    lap("savez_compressed")


src = "bin/vol-cat %s --label %s" % (ctp, sgp) if os.access("bin/vol-cat", os.X_OK) else "cat " + frames
ours_cmd = ("%s | bin/hu-window --preset soft-tissue --mapping medsam | bin/ccl-clean --min 1000 --min2d 100"
            " | bin/roi-crop --slices labelled | bin/vol2npz --layout medsam -o %s" % (src, os.path.join(T, "ours.npz")))


def best(fn, n=3):
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t)


to = best(lambda: subprocess.run(ours_cmd, shell=True, check=True))
tp = best(lambda: medsam_py(os.path.join(T, "py.npz")))
a, b = np.load(os.path.join(T, "ours.npz")), np.load(os.path.join(T, "py.npz"))
same = all(np.array_equal(a[k], b[k]) for k in ("imgs", "gts", "spacing"))
print("pipeline: MedSAM CT preprocessing, %dx%dx%d int16 CT + labels, load average %.1f on %d cores"
      % (shape[2], shape[1], shape[0], os.getloadavg()[0], os.cpu_count()))
print("pipeline: medpipe (%s) %.3f s  Python (SimpleITK+cc3d+numpy) %.3f s  ratio %.2fx  outputs %s"
      % ("vol-cat" if src.startswith("bin/vol-cat") else "frames", to, tp, tp / to, "identical" if same else "DIFFER"))
# where medpipe's time goes: each stage alone, file to file, CPU seconds (user+sys)
import resource
stages = [("vol-cat", "%s > %s/s0" % (src, T)),
          ("hu-window", "bin/hu-window --preset soft-tissue --mapping medsam %s/s0 > %s/s1" % (T, T)),
          ("ccl-clean", "bin/ccl-clean --min 1000 --min2d 100 %s/s1 > %s/s2" % (T, T)),
          ("roi-crop", "bin/roi-crop --slices labelled %s/s2 > %s/s3" % (T, T)),
          ("vol2npz", "bin/vol2npz --layout medsam -o %s/s.npz %s/s3" % (T, T))]
parts = []
for nm, cmd in stages:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, shell=True, check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    parts.append("%s %.2f" % (nm if nm != "vol-cat" or src.startswith("bin/") else "cat", (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)))
c0 = time.process_time()
pst = []
medsam_py(os.path.join(T, "py.npz"), pst)
print("pipeline: CPU seconds per medpipe stage: %s; Python: %.2f (%s)" % (", ".join(parts), time.process_time() - c0,
                                                                  ", ".join("%s %.2f" % p for p in pst)))
subprocess.run(["rm", "-rf", T])
EOF
