"""Where a MECCA model's probabilities go, step by step, on held-back cases.

    OMP_NUM_THREADS=1 python benchmarks/mecca_probability_drift.py --model DIR \
        --data ../shared/data/lidc/lidc_crops_dev.npz --limit 40

For each of the ``--steps`` refinement steps of the protocol's simulated user
(``clinloop.models.mecca.model.simulate``) prints the share of the pixels/voxels of
all cases in 11 equal probability bins, separately for label background and
foreground. A policy that moves correct agents across 0.5 shows up as mass wandering
bin by bin toward the middle.
"""
from __future__ import annotations

import argparse
import json


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    import numpy as np

    from clinloop.evaluation.mecca_cases import iter_cases, open_dataset
    from clinloop.models.mecca.model import load_mecca, simulate

    m = load_mecca(a.model)
    ds = open_dataset(a.data, None, m.cfg.ndim)
    size = m.cfg.size if m.cfg.zoom == 1 and m.cfg.norm == "image" else 0
    rng = np.random.default_rng(a.seed)
    bins = np.linspace(0, 1, 12)
    hist = {"background": np.zeros((a.steps, 11)), "foreground": np.zeros((a.steps, 11))}
    for x, y, _sp, _cid in iter_cases(ds, m, "majority", size, a.limit, a.seed):
        out = simulate(m, x, y, a.steps, rng)
        for t, pr in enumerate(out["probabilities"]):
            hist["background"][t] += np.histogram(pr[~y], bins=bins)[0]
            hist["foreground"][t] += np.histogram(pr[y], bins=bins)[0]
    res = {"model": a.model, "bins": bins.round(3).tolist(),
           **{k: (h / h.sum(1, keepdims=True)).round(4).tolist() for k, h in hist.items()}}
    for k in ("background", "foreground"):
        for t, row in enumerate(res[k]):
            print(f"{k:10s} step {t + 1}: " + " ".join(f"{v:.3f}" for v in row))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
