"""One click, a 3-D mask: volumetric SPA sessions on LIDC nodule volumes and BraTS.

    .venv/bin/python benchmarks/bench_volume_session.py [--model spa-lidc] [--lidc PATH.npz] [--n 20]
        [--brats DIR --n-brats 2] [--threads 2] [--out results.json] [--box/--point/--mask ...]

LIDC: the consecutive slices of one (patient, nodule) of ``lidc_crops_dev.npz``
stacked into a ``(D, 128, 128)`` volume; target = majority vote (>= 2 of the 4
radiologists). Only patients the model did not train on are used (those absent
from its ``data.json`` ``train_case_ids``, i.e. the held-back side of the
patient split it was trained with). One positive click at the target's
interior point (farthest from its boundary) on its largest slice; reports 3-D
Dice of y_app against the target, the fraction of the target's slices the
mask reaches, and the seconds from the click to the full 3-D mask (encoding of
the reached slices included: a fresh session per volume; the on-disk
embedding cache is off).

BraTS (``brats2018_flair`` case folders): the same click on the whole tumour's
largest axial slice, for timing (spa-lidc is a lung-nodule model: Dice is low).

Measured (spa-lidc, box propagation, 2 threads; the shared 2-core machine at
load average 11-13 from other jobs, so the seconds are ~20x an idle machine's):
LIDC, 20 held-back nodule volumes (2-10 slices): mean 3-D Dice 0.822 (median
0.814, min 0.706), 97 % of the target's slices reached (17 of 20 volumes
fully), stops by the "uncertain" rule on the first slice past the nodule; 91
slices encoded in all, 116 s median click -> 3-D mask (~30 s per encoded slice
under that load; the encoder alone is ~1.3 s per slice idle). The synthetic
quality test (tests/test_session_volume.py, 8-slice ellipsoid): 3-D Dice 0.987.
BraTS (155 x 240 x 240, FLAIR whole tumour), 2 cases: 3-D Dice 0.912 / 0.838
(mean 0.875), 77 % / 76 % of the tumour's slices reached (the faint ends are
dropped), 64 / 57 slices encoded; click -> 3-D mask 634 s (full test suite
running beside it, 9.9 s per slice) / 113 s (machine nearly idle: 2.0 s per
slice, encoding + decoding).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def lidc_volumes(path: Path, model: str, n: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Held-back LIDC nodule volumes with >= 2 target slices: (case, (D, H, W) image, majority target)."""
    from clinloop.data import load_dataset
    from clinloop.evaluation.spa3d_protocol import held_back, target_of

    ds = load_dataset(path, "lidc", volumes=True)
    out = []
    for i in held_back(ds, model, "spa")[0]:
        s = ds[i]
        target = target_of(s.masks, s.rater_valid)  # (D, H, W) majority of 4
        if target.any((1, 2)).sum() >= 2:
            out.append((ds.case_ids[i], s.image[0], target))
        if len(out) == n:
            break
    return out


def run_one(model, vol, target, config, seed=0) -> dict:
    from clinloop.evaluation.spa3d_protocol import click_point
    from clinloop.interaction.session import Session
    from clinloop.metrics import dice

    s = Session(model, vol, seed=seed, volume_config=config)
    t0 = time.perf_counter()
    p = s.click(click_point(target))
    sec = time.perf_counter() - t0
    reached = target.any((1, 2))
    return {"dice3d": dice(p.mask, target), "slices_target": int(reached.sum()),
            "slices_covered": float((p.mask.any((1, 2)) & reached).sum() / reached.sum()),
            "slices_mask": int(p.mask.any((1, 2)).sum()), "encoded": p.extra["encoded_slices"],
            "stops": p.extra["stops"], "seconds": sec, "depth": int(target.shape[0])}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="spa-lidc")
    ap.add_argument("--lidc", default="../shared/data/lidc/lidc_crops_dev.npz")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--brats", default="../shared/data/brats2018_flair")
    ap.add_argument("--n-brats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--prompt", default="box", help="propagation prompt: '+'-joined of box, point, mask")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    import clinloop
    from clinloop.interaction.propagation import VolumeConfig

    parts = set(a.prompt.split("+"))
    cfg = VolumeConfig(use_box="box" in parts, use_point="point" in parts, use_mask="mask" in parts,
                       orthogonal=False)  # the propagation's prompts alone
    model = clinloop.load_model(a.model)
    model.disk_cache = False  # time the encoding too
    results: dict = {"model": a.model, "prompt": a.prompt, "threads": a.threads, "lidc": [], "brats": []}
    if a.n > 0:
        for name, vol, target in lidc_volumes(Path(a.lidc), a.model, a.n):
            r = {"case": name, **run_one(model, vol, target, cfg)}
            results["lidc"].append(r)
            print(f"LIDC {name}: D={r['depth']} Dice3D {r['dice3d']:.3f} covered {r['slices_covered']:.2f} "
                  f"({r['slices_mask']} mask / {r['slices_target']} target slices) {r['seconds']:.1f} s", flush=True)
    if a.n_brats > 0:
        from clinloop.data import load_dataset

        ds = load_dataset(a.brats)
        for i in range(min(a.n_brats, len(ds))):
            smp = ds[i]
            target = smp.masks.any(0)
            r = {"case": smp.case_id, **run_one(model, smp, target, cfg)}
            results["brats"].append(r)
            print(f"BraTS {smp.case_id}: D={r['depth']} Dice3D {r['dice3d']:.3f} covered {r['slices_covered']:.2f} "
                  f"{r['encoded']} slices encoded {r['seconds']:.1f} s", flush=True)
    for k in ("lidc", "brats"):
        rows = results[k]
        if rows:
            results[f"{k}_mean_dice3d"] = statistics.mean(r["dice3d"] for r in rows)
            results[f"{k}_mean_covered"] = statistics.mean(r["slices_covered"] for r in rows)
            results[f"{k}_median_seconds"] = statistics.median(r["seconds"] for r in rows)
            print(f"{k}: n={len(rows)} mean 3-D Dice {results[f'{k}_mean_dice3d']:.3f}, slices covered "
                  f"{results[f'{k}_mean_covered']:.2f}, median seconds click->3-D mask {results[f'{k}_median_seconds']:.1f}")
    if a.out:
        from clinloop.atomic import atomic_write_text

        atomic_write_text(Path(a.out), json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
