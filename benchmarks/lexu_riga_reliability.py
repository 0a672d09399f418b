"""How predictable is RIGA's image-level rater disagreement at all? Split-half
reliability of ``Σ H`` (LEXU's image-level target).

    .venv/bin/python benchmarks/lexu_riga_reliability.py [--structure cup] [--size 96] [--crop 1.0] [--out r.json]

For the photos with all six raters valid, every split of the raters into two
groups of three (10 splits) gives two independent measurements of each photo's
disagreement, ``Σ H_A`` and ``Σ H_B``. Their Spearman correlation over photos
is the split-half reliability ``r``; the Spearman–Brown formula ``2r / (1 + r)``
estimates the reliability of the six-rater ``Σ H``. A model that knew each
photo's true ambiguity exactly would still correlate with the six-rater
``Σ H`` at only about ``sqrt(reliability)`` (classical test theory), which
bounds what any method's image-level Spearman can reach on these photos.

It also prints the Spearman of ``Σ H`` with the majority mask's area and perimeter over all
photos (each with its valid raters). README figures (cup): split-half 0.357 (0.25-0.48) at
96², 0.351 with ``--crop 0.5625``, 0.350 at 512² (``--size 0``); disc 0.44
(``--structure disc``); area 0.02, perimeter 0.05 (96²).
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np


def split_half(masks: list[np.ndarray]) -> list[float]:
    """Spearman between ``Σ H`` of rater groups A and B over photos, one value per
    split of 6 raters into 3 + 3 (rater 0 always in A). ``masks``: per photo a
    bool ``(6, H, W)`` array."""
    from clinloop import metrics
    from clinloop.data import fusion

    out = []
    for a in itertools.combinations(range(6), 3):
        if 0 not in a:
            continue
        b = [k for k in range(6) if k not in a]
        sa = [fusion.rater_variance(m[list(a)], np.ones(3, bool)).sum() for m in masks]
        sb = [fusion.rater_variance(m[b], np.ones(3, bool)).sum() for m in masks]
        out.append(metrics.spearman(sa, sb))
    return out


def size_association(masks: list[np.ndarray], valid: list[np.ndarray]) -> dict[str, float]:
    """Spearman over photos of ``Σ H`` (each photo's valid raters) with the majority mask's
    area and perimeter (boundary pixels: mask minus its 8-neighbour erosion): is
    disagreement just the cup's size? ``masks``: per photo bool ``(R, H, W)``."""
    from scipy import ndimage

    from clinloop import metrics
    from clinloop.data import fusion

    sh = [fusion.rater_variance(m, v).sum() for m, v in zip(masks, valid)]
    maj = [fusion.majority_vote(m, v) for m, v in zip(masks, valid)]
    area = [float(x.sum()) for x in maj]
    perim = [float((x & ~ndimage.binary_erosion(x, np.ones((3, 3), bool))).sum()) for x in maj]
    return {"photos_for_size": len(masks), "spearman_area": metrics.spearman(sh, area),
            "spearman_perimeter": metrics.spearman(sh, perim)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--structure", default="cup", choices=["cup", "disc"])
    ap.add_argument("--size", type=int, default=96, help="mask resolution (0: the file's 512²)")
    ap.add_argument("--crop", type=float, default=1.0)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    a = ap.parse_args(argv)
    from clinloop.data import load_dataset
    from clinloop.models.lexu.model import prepare_masks
    from clinloop.paths import shared_data_dir

    ds = load_dataset(a.data or shared_data_dir() / "riga_binrushed2", format="riga", structure=a.structure)
    masks, every, valid = [], [], []
    for s in ds:
        m = s.masks.astype(bool) if a.size == 0 else prepare_masks(s.masks, a.size, a.crop).numpy().astype(bool)
        every.append(m)
        valid.append(s.rater_valid)
        if s.n_raters == 6 and s.rater_valid.all():
            masks.append(m)
    r = split_half(masks)
    rm = float(np.mean(r))
    print(f"RIGA {a.structure}, {len(masks)} photos with 6 valid raters, masks at {a.size or 512}² (crop {a.crop}):")
    print(f"split-half Spearman of sum(H): mean {rm:.3f} over {len(r)} splits (min {min(r):.3f}, max {max(r):.3f}); "
          f"Spearman-Brown (6 raters) {2 * rm / (1 + rm):.3f}; ceiling ~sqrt = {np.sqrt(2 * rm / (1 + rm)):.3f}")
    sz = size_association(every, valid)
    print(f"all {len(every)} photos (valid raters): Spearman of sum(H) with the majority's area "
          f"{sz['spearman_area']:.3f}, with its perimeter {sz['spearman_perimeter']:.3f}")
    if a.out:
        import json
        from pathlib import Path

        Path(a.out).write_text(json.dumps({"structure": a.structure, "size": a.size, "crop": a.crop, "photos": len(masks),
                                           "split_half": [float(v) for v in r], "mean": rm, **sz}, indent=2) + "\n")


if __name__ == "__main__":
    main()
