"""Tight-box Dice of the pretrained LiteMedSAM on random LIDC slices, with TinyViT's attention
biases at zero (the default, what the reference outputs were produced with) and applied.

    .venv/bin/python benchmarks/litemedsam_box_dice.py [--data ../shared/data/lidc] [--cases 25] [--seed 0] [--out r.json]
    .venv/bin/python benchmarks/litemedsam_box_dice.py --quick      # 2 slices

README ("LiteMedSAM backbone"): tight-box Dice on random LIDC slices 0.834 (zero biases) vs
0.733 (stored biases); 0.835 over 25 random dev slices. Per slice: target = the strict
majority of the valid raters (``clinloop.data.fusion.majority_vote``), prompt = its tight
box (``clinloop.interaction.users.tight_box``), prediction = the box-prompted mask of
``box-litemedsam`` built on each backbone variant (``build_litemedsam(True,
apply_attention_biases=...)``). Slices: a seeded random order of the dataset, the first
``--cases`` with a non-empty target. The original draw of slices is not recorded, so the
digits may differ; the gap between the variants is the figure.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from _results import write_json  # noqa: E402  (benchmarks/ is the script's folder)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/lidc", help="LIDC folder (default: %(default)s)")
    p.add_argument("--cases", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write per-slice Dice as JSON here")
    p.add_argument("--quick", action="store_true", help="2 slices")
    a = p.parse_args(argv)
    if a.quick:
        a.cases = 2
    import torch
    from tqdm.auto import tqdm

    from clinloop.data import load_dataset
    from clinloop.data.fusion import majority_vote
    from clinloop.interaction.users import tight_box
    from clinloop.metrics import dice
    from clinloop.models.baselines.litemedsam_interactive import InteractiveLiteMedSAM
    from clinloop.models.litemedsam import build_litemedsam

    torch.set_num_threads(a.threads)
    ds = load_dataset(a.data)
    picked = []
    for i in np.random.default_rng(a.seed).permutation(len(ds)):
        if len(picked) >= a.cases:
            break
        s = ds[int(i)]
        if s.spatial_ndim == 2 and s.rater_valid.any() and majority_vote(s.masks, s.rater_valid).any():
            picked.append(int(i))
    variants = {"zero_biases": False, "stored_biases": True}
    res = {"cases": [ds.case_ids[i] for i in picked], "dice": {}}
    for name, flag in variants.items():
        model = InteractiveLiteMedSAM(build_litemedsam(True, apply_attention_biases=flag), "box-litemedsam", accepts_box=True)
        ds_ = []
        for i in tqdm(picked, desc=name):
            s = ds[i]
            target = majority_vote(s.masks, s.rater_valid)
            prop = model.start(s.image, seed=0).box(tight_box(target))
            ds_.append(round(dice(prop.mask, target), 4))
        res["dice"][name] = ds_
        print(f"{name}: mean tight-box Dice {np.mean(ds_):.3f} (median {np.median(ds_):.3f}) over {len(ds_)} slices",
              flush=True)
    write_json(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
