"""MECCA as the workstation runs it (``Session``, the path ``clinloop serve`` drives):
the whole input against the region around the first click, and what one hint does.

    OMP_NUM_THREADS=1 python benchmarks/mecca_workstation.py [--model mecca-lidc3d] [--data ../shared/data/lidc/lidc_crops_dev.npz]
    OMP_NUM_THREADS=1 python benchmarks/mecca_workstation.py --brats ../shared/data/brats2018_flair   # + BraTS case 0 (~20 s)

1. LIDC nodule volumes (``--cases``): one include click at the majority label's centre,
   Dice to that label and seconds, on the whole volume (``roi=False``) and on the
   region (the default: :mod:`clinloop.models.mecca.roi`).
2. The synthetic nodule of ``tests/test_server_mecca.py``: from the same first click, an
   include and an exclude hint at 6 points; the mask sizes and which side the clicked
   voxel ends on.
3. With ``--brats``: the same click on BraTS case 0 (whole volume and region).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

CASES = "LIDC-IDRI-0003/n3,LIDC-IDRI-0016/n5,LIDC-IDRI-0015/n0"
POINTS = [(26, 22, 9), (33, 22, 6), (26, 30, 6), (18, 22, 6), (26, 22, 6), (26, 14, 4)]


class WithROI:
    """The model with ``start(..., roi=roi)``: ``None`` = the default (a region when needed), False = whole."""

    def __init__(self, model, roi):
        self.model, self.roi, self.name, self.spatial_ndims = model, roi, model.name, model.spatial_ndims

    def start(self, image, *, seed=0, profile=None):
        return self.model.start(image, seed=seed, profile=profile, roi=self.roi)


def one_click(model, sample, label, roi):
    from clinloop.interaction.session import Session
    from clinloop.metrics import dice

    z, y, x = np.argwhere(label).mean(0).round().astype(int)
    t0 = time.perf_counter()
    s = Session(WithROI(model, roi), sample)
    p = s.click((float(x), float(y), float(z)), True)
    return {"dice": round(float(dice(p.mask, label)), 3), "fraction": round(float(p.mask.mean()), 3),
            "seconds": round(time.perf_counter() - t0, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mecca-lidc3d")
    ap.add_argument("--data", default="../shared/data/lidc/lidc_crops_dev.npz")
    ap.add_argument("--cases", default=CASES)
    ap.add_argument("--brats", default=None, help="BraTS folder: also case 0 (slow on the whole volume)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from clinloop.data.registry import load_dataset
    from clinloop.interaction.session import Session
    from clinloop.models.registry import load_model

    model = load_model(a.model)
    ds = load_dataset(a.data, volumes=True)
    want = a.cases.split(",")
    by_id = {}
    for i in range(len(ds)):
        smp = ds[i]
        if smp.case_id in want:
            by_id[smp.case_id] = smp
        if len(by_id) == len(want):
            break
    print("1. one click at the label centre (majority of the raters)")
    for cid in want:
        smp = by_id[cid]
        lab = smp.masks.sum(0) >= (smp.masks.shape[0] + 1) // 2
        print(f"  {cid} {tuple(smp.image.shape[1:])}: whole {one_click(model, smp, lab, False)}  "
              f"region {one_click(model, smp, lab, None)}")

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_server_mecca import FIRST, nodule_case

    print("2. include vs exclude hint at the same voxel, after one include click at", FIRST)
    smp = nodule_case()
    for pt in POINTS:
        out = {}
        for pos in (True, False):
            s = Session(model, smp)
            s.click(FIRST, True)
            out[pos] = s.hint([(pt, pos)]).mask
        x, y, z = pt
        print(f"  {pt} label {bool(smp.masks[0][z, y, x])}: include area {int(out[True].sum())} voxel "
              f"{bool(out[True][z, y, x])}; exclude area {int(out[False].sum())} voxel {bool(out[False][z, y, x])}")
    if a.brats:
        smp = load_dataset(a.brats)[0]
        lab = smp.masks[0].astype(bool)
        print(f"3. BraTS {smp.case_id} {tuple(smp.image.shape[1:])}: whole {one_click(model, smp, lab, False)}  "
              f"region {one_click(model, smp, lab, None)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
