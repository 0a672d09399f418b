"""How much of each structure the old 3-D MECCA input saw: label extent and the share of
the label inside a ``--size``³ crop centred on it (the LIDC 3-D pipeline: 32³ crops
at full resolution, ``clinloop.training.mecca_data.prepare``).

    OMP_NUM_THREADS=1 python benchmarks/mecca_volume_stats.py --data ../shared/data/brats2018_flair --size 32

Prints one JSON line per case and a summary (mean share of the label inside the crop,
mean share of the crop that is label).
"""
from __future__ import annotations

import argparse
import json


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args(argv)
    import numpy as np

    from clinloop.data import load_dataset
    from clinloop.training.mecca_data import crop_around, fuse_label

    ds = load_dataset(a.data)
    rows = []
    for i in range(len(ds) if a.limit is None else min(a.limit, len(ds))):
        s = ds[i]
        y = fuse_label(s, "majority")
        pts = np.argwhere(y)
        crop = crop_around(y, pts.mean(0), a.size)
        r = {"case": s.case_id, "shape": list(y.shape), "label_voxels": int(y.sum()),
             "extent": (pts.max(0) - pts.min(0) + 1).tolist(),
             "label_inside_crop": round(float(crop.sum() / y.sum()), 4),
             "crop_foreground": round(float(crop.mean()), 4)}
        rows.append(r)
        print(json.dumps(r), flush=True)
    print(json.dumps({"data": a.data, "size": a.size, "n": len(rows),
                      "mean_label_inside_crop": round(float(np.mean([r["label_inside_crop"] for r in rows])), 4),
                      "mean_crop_foreground": round(float(np.mean([r["crop_foreground"] for r in rows])), 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
