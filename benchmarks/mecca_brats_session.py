"""A MECCA interactive session (``MECCAModel.start`` + ``hint``, advice regions included) on
the BraTS sample's whole FLAIR volume, clicks simulated from the edema label: time per
``hint`` call, SLIC segment counts, Dice, and where the 5 advice regions lie.

    cpujob .venv/bin/python benchmarks/mecca_brats_session.py [--model mecca-lidc3d] [--steps 5] [--threads 1] [--out s.json]
    .venv/bin/python benchmarks/mecca_brats_session.py --model mecca-brats --data ../shared/data/brats2018_flair/case_0/FLAIR.nii.gz --label ../shared/data/brats2018_flair/case_0/GT_W.nii.gz
    .venv/bin/python benchmarks/mecca_brats_session.py --quick      # a 40³ crop around the edema, 2 steps

README (MECCA, "BraTS sample", "Sessions" and "Advice regions"): 3.7-4.9 s per ``hint`` call
on 104×160×160 voxels, mostly SLIC at a new segment count (100, 85, 72, 61, 52 over the 5
steps); the 5 advice regions are 30-61 k-voxel supervoxels with mean confidence 0.10-0.97,
all in the background or at the volume's border (edema fraction <= 0.0001). Those figures
came from the earlier 500-iteration ``mecca-lidc3d``; the default here is the shipped model.

Before each step the simulated user clicks up to the model's ``hint_points`` wrongly
predicted boundary voxels of the current mask (``clinloop.models.mecca.hints.simulate_clicks``,
the protocol's user), seeded by ``--seed``. Per step it prints the wall time of ``hint``,
the model's own step time, the segment count, Dice to the label, and per advice region its
size, mean confidence (1 − uncertainty), label fraction (the share of its voxels inside
``--label``: the edema for the default sample, the whole tumour for BraTS 2018) and
whether it touches the border.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DATA = "../shared/data/brats_sample/BraTS2021_01646_flair.nii.gz"
LABEL = "../shared/data/brats_sample/BraTS2021_01646_edema_label.nii.gz"


def crop_around_label(image: np.ndarray, label: np.ndarray, size: int):
    """A ``size``³ box (clipped to the volume) centred on the label's centre of mass."""
    c = np.argwhere(label).mean(0).round().astype(int)
    sl = tuple(slice(max(0, min(ci - size // 2, n - size)), max(0, min(ci - size // 2, n - size)) + size)
               for ci, n in zip(c, label.shape))
    return image[(slice(None),) + sl], label[sl]


def touches_border(region: np.ndarray) -> bool:
    return any(np.take(region, idx, axis=ax).any() for ax in range(region.ndim) for idx in (0, -1))


def run(model, image: np.ndarray, label: np.ndarray, steps: int, seed: int) -> list[dict]:
    from clinloop.metrics import dice
    from clinloop.models.mecca import volumes as vol
    from clinloop.models.mecca.hints import simulate_clicks

    rng = np.random.default_rng(seed)
    state = model.start(image, seed=seed, roi=False)  # the whole volume (no region around the first click)
    # the user sees the full-size mask (zoomed models keep p on their coarse grid)
    mask = vol.upsample(state.p, label.shape, model.cfg.zoom)[0, 0].numpy() > 0.5
    rows = []
    for t in range(steps):
        clicks = simulate_clicks(mask, label, model.cfg.hint_points, rng)
        t0 = time.perf_counter()
        prop = state.hint(clicks)
        wall = time.perf_counter() - t0
        mask = prop.mask
        conf = 1.0 - prop.uncertainty
        regions = [{"voxels": int(r.sum()), "mean_confidence": round(float(conf[r].mean()), 3),
                    "label_fraction": round(float(label[r].mean()), 5), "touches_border": touches_border(r)}
                   for r in prop.advice]
        rows.append({"step": t + 1, "clicks": len(clicks), "hint_seconds": round(wall, 3),
                     "refine_seconds": round(prop.extra["refine_seconds"], 3), "n_segments": prop.extra["n_segments"],
                     "dice": round(dice(prop.mask, label), 4), "advice": regions})
        print(f"step {t + 1}: hint {wall:.2f} s (model {prop.extra['refine_seconds']:.2f} s), "
              f"{prop.extra['n_segments']} segments, Dice {rows[-1]['dice']:.3f}", flush=True)
        for r in regions:
            print(f"    advice: {r['voxels']} voxels, confidence {r['mean_confidence']:.2f}, "
                  f"label {r['label_fraction']:.4f}, border {r['touches_border']}")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mecca-lidc3d", help="3-D MECCA model folder or shipped name")
    p.add_argument("--data", default=DATA, help="FLAIR volume (default: %(default)s)")
    p.add_argument("--label", default=LABEL, help="the structure's label (default: the sample's edema), used only for clicks and scoring")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--crop", type=int, default=None, help="evaluate a crop³ box around the label instead of the volume")
    p.add_argument("--out", default=None, help="write the per-step rows as JSON here")
    p.add_argument("--quick", action="store_true", help="--crop 40 --steps 2")
    a = p.parse_args(argv)
    if a.quick:
        a.crop, a.steps = 40, 2
    import torch

    from clinloop.data.io import read_image, read_mask
    from clinloop.models.registry import load_model

    torch.set_num_threads(a.threads)
    image = read_image(a.data)[0]
    label = read_mask(a.label, like_shape=image.shape[1:])
    if not label.any():
        raise ValueError(f"{a.label}: the label is empty")
    if a.crop:
        image, label = crop_around_label(image, label, a.crop)
    model = load_model(a.model)
    if model.cfg.ndim != 3:
        raise ValueError(f"{a.model} is a {model.cfg.ndim}-D model; this session needs a 3-D one")
    print(f"{a.model} on {image.shape[1:]} voxels, {a.steps} steps", flush=True)
    rows = run(model, image, label, a.steps, a.seed)
    print(f"hint seconds per step: {[r['hint_seconds'] for r in rows]}")
    if a.out:
        Path(a.out).write_text(json.dumps({"model": a.model, "shape": list(image.shape[1:]), "rows": rows}, indent=2) + "\n")
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
