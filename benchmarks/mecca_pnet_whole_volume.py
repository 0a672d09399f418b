"""Does a MECCA volume P-Net segment the whole volume as well as its training crops?

    OMP_NUM_THREADS=2 python benchmarks/mecca_pnet_whole_volume.py --model models/pnet-brats --data ../shared/data/brats2018_flair

For every case of the dataset, prints the P-Net's Dice (threshold 0.5, on the model's
coarse working grid, label pooled by majority) on the label-centred training crop
(``cfg.crop``, as ``clinloop.training.mecca_data.prepare_volume`` cuts it) and on the
whole volume, and marks the patients the model was trained on. A large gap means the
network learnt where the crop border lies rather than what the structure looks like
(docs/methods/mecca.md, "Whole volumes"). Full-resolution figures on held-back
patients come from ``clinloop evaluate --protocol mecca --method pnet``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / s if s else 1.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("--model", required=True, help="a mecca-unet (P-Net) model folder")
    p.add_argument("--data", required=True)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    from clinloop.data import load_dataset
    from clinloop.models.mecca.model import load_mecca
    from clinloop.training.mecca_data import prepare_volume

    torch.set_num_threads(a.threads)
    model = load_mecca(a.model)
    cfg = model.cfg
    if cfg.method != "mecca-unet":
        raise SystemExit(f"{a.model}: wants a mecca-unet (P-Net) folder, got {cfg.method}")
    trained = set(json.loads((Path(a.model) / "data.json").read_text()).get("train_patients", []))
    ds = load_dataset(a.data)
    net = model.nets["net"]
    rows = []
    for i in range(len(ds)):
        s = ds[i]
        out = {}
        for name, crop in (("crop", cfg.crop or None), ("whole", None)):
            x, y = prepare_volume(s, cfg.fusion, cfg.zoom, cfg.norm, crop)
            with torch.no_grad():
                pred = torch.sigmoid(net(torch.from_numpy(x)[None]))[0, 0].numpy() > 0.5
            out[name] = dice(pred, y)
        held = ds.patient_ids[i] not in trained
        rows.append((held, out["crop"], out["whole"]))
        print(f"{s.case_id:>10}  {'held back' if held else 'trained  '}  crop Dice {out['crop']:.3f}  "
              f"whole-volume Dice {out['whole']:.3f}", flush=True)
    for held in (False, True):
        r = [(c, w) for h, c, w in rows if h == held]
        if r:
            c, w = np.mean(r, 0)
            print(f"mean over {len(r)} {'held-back' if held else 'trained'} cases: crop {c:.3f}, whole volume {w:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
