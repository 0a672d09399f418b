"""How predictable is RIGA's image-level rater disagreement at all? Split-half
reliability of ``Σ H`` (LEXU's image-level target).

    .venv/bin/python benchmarks/lexu_riga_reliability.py [--structure cup] [--size 96] [--crop 1.0]

For the photos with all six raters valid, every split of the raters into two
groups of three (10 splits) gives two independent measurements of each photo's
disagreement, ``Σ H_A`` and ``Σ H_B``. Their Spearman correlation over photos
is the split-half reliability ``r``; the Spearman–Brown formula ``2r / (1 + r)``
estimates the reliability of the six-rater ``Σ H``. A model that knew each
photo's true ambiguity exactly would still correlate with the six-rater
``Σ H`` at only about ``sqrt(reliability)`` (classical test theory), which
bounds what any method's image-level Spearman can reach on these photos.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--structure", default="cup", choices=["cup", "disc"])
    ap.add_argument("--size", type=int, default=96, help="mask resolution (0: the file's 512²)")
    ap.add_argument("--crop", type=float, default=1.0)
    a = ap.parse_args()
    from clinloop.data import load_dataset
    from clinloop.models.lexu.model import prepare_masks
    from clinloop.paths import shared_data_dir

    ds = load_dataset(a.data or shared_data_dir() / "riga_binrushed2", format="riga", structure=a.structure)
    masks = []
    for s in ds:
        if s.n_raters == 6 and s.rater_valid.all():
            m = s.masks.astype(bool) if a.size == 0 else prepare_masks(s.masks, a.size, a.crop).numpy().astype(bool)
            masks.append(m)
    r = split_half(masks)
    rm = float(np.mean(r))
    print(f"RIGA {a.structure}, {len(masks)} photos with 6 valid raters, masks at {a.size or 512}² (crop {a.crop}):")
    print(f"split-half Spearman of sum(H): mean {rm:.3f} over {len(r)} splits (min {min(r):.3f}, max {max(r):.3f}); "
          f"Spearman-Brown (6 raters) {2 * rm / (1 + rm):.3f}; ceiling ~sqrt = {np.sqrt(2 * rm / (1 + rm)):.3f}")


if __name__ == "__main__":
    main()
