"""Inter-rater agreement on LIDC restricted to the slices where every rater drew something:
the figure that compares with the 0.80 quoted in ``../shared/data/README.md``.

    .venv/bin/python benchmarks/lidc_agreement.py [--data ../shared/data/lidc/lidc_crops_dev.npz] [--out r.json]
    .venv/bin/python benchmarks/lidc_agreement.py --quick      # the first 200 slices

README ("clinloop data info"): over the 1,882 slices where all four raters drew something the
mean pairwise Dice is 0.791 (``clinloop data info`` gives 0.524 over all pairs, where an empty
mask against a drawn one scores 0, and 0.754 over the non-empty masks of every slice with at
least two). Pairwise Dice: ``clinloop.metrics.pairwise_dice`` over the valid raters.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from _results import write_json  # noqa: E402  (benchmarks/ is the script's folder)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/lidc/lidc_crops_dev.npz", help="LIDC file (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="only the first N slices")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--quick", action="store_true", help="--limit 200")
    a = p.parse_args(argv)
    if a.quick:
        a.limit = 200
    from tqdm.auto import tqdm

    from clinloop.data import load_dataset
    from clinloop.metrics import pairwise_dice

    ds = load_dataset(a.data)
    n = len(ds) if a.limit is None else min(a.limit, len(ds))
    full = []
    for i in tqdm(range(n), desc="slices"):
        s = ds[i]
        m = s.masks[s.rater_valid]
        if len(m) == s.masks.shape[0] and len(m) >= 2 and m.reshape(len(m), -1).any(1).all():
            full.append(pairwise_dice(m))
    if not full:
        raise ValueError(f"{a.data}: no slice where every rater drew something")
    res = {"slices": n, "slices_all_raters_drew": len(full), "mean_pairwise_dice": round(float(np.mean(full)), 4)}
    print(f"{len(full)} of {n} slices have a mask from every rater; mean pairwise Dice there {np.mean(full):.3f}")
    write_json(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
