"""Inter-rater agreement of the synthetic raters (``clinloop.data.synthetic``): per seed, the
mean pairwise Dice of the default four styles on one sample, in 2-D and in 3-D.

    .venv/bin/python benchmarks/synthetic_agreement.py [--seeds-2d 8] [--seeds-3d 12] [--out r.json]
    .venv/bin/python benchmarks/synthetic_agreement.py --quick      # 2 seeds each

docs/data.md ("Synthetic raters"): mean pairwise Dice of ``DEFAULT_STYLES`` 0.907-0.930 at 128²
and 0.520-0.696 for small 3-D structures (32×48×48), seeds 0..7 and 0..11, one sample
(``make_synthetic_sample(shape, seed=s, return_truth=True)``, as tests/test_synthetic.py
builds them) per seed. Per seed: ``clinloop.metrics.pairwise_dice`` of the four masks and
``clinloop.metrics.dice`` of their ``majority_vote`` against the latent truth. Prints the
range and mean over seeds of each.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from _results import write_json  # noqa: E402  (benchmarks/ is the script's folder)


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.lower().replace("x", ",").split(","))


def agreement(shape: tuple[int, ...], seeds: range) -> dict:
    """Per seed: mean pairwise Dice of the default styles and majority-vs-truth Dice."""
    from clinloop.data.fusion import majority_vote
    from clinloop.data.synthetic import make_synthetic_sample
    from clinloop.metrics import dice, pairwise_dice

    pw, maj = [], []
    for s in seeds:
        sample, truth = make_synthetic_sample(shape, seed=s, return_truth=True)
        pw.append(round(pairwise_dice(sample.masks), 4))
        maj.append(round(dice(majority_vote(sample.masks, sample.rater_valid), truth), 4))
    return {"shape": list(shape), "seeds": [seeds.start, seeds.stop - 1], "pairwise_dice": pw, "majority_vs_truth": maj}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds-2d", type=int, default=8, help="seeds 0..N-1 in 2-D (default: %(default)s)")
    p.add_argument("--seeds-3d", type=int, default=12, help="seeds 0..N-1 in 3-D (default: %(default)s)")
    p.add_argument("--shape-2d", type=_shape, default=(128, 128), help="default: 128,128")
    p.add_argument("--shape-3d", type=_shape, default=(32, 48, 48), help="default: 32,48,48")
    p.add_argument("--out", default=None, help="write the per-seed figures as JSON here")
    p.add_argument("--quick", action="store_true", help="2 seeds each")
    a = p.parse_args(argv)
    if a.quick:
        a.seeds_2d = a.seeds_3d = 2
    res = {}
    for name, shape, n in (("2d", a.shape_2d, a.seeds_2d), ("3d", a.shape_3d, a.seeds_3d)):
        if n < 1:
            continue
        r = agreement(shape, range(n))
        res[name] = r
        pw, mj = r["pairwise_dice"], r["majority_vs_truth"]
        print(f"{'x'.join(map(str, shape))}, seeds 0..{n - 1}: mean pairwise Dice per seed {min(pw):.3f}-{max(pw):.3f} "
              f"(mean {np.mean(pw):.3f}); majority vs truth {min(mj):.3f}-{max(mj):.3f}", flush=True)
    write_json(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
