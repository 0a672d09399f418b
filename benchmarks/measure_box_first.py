"""Tight box vs first click as the first interaction of SPA (issue 17), on held-back LIDC.

Cases: the spa protocol's selection (``select_cases(ds, "val")``, the first N with a
non-empty target, seed = position as in ``run_protocol``); target: the protocol's
preferred-rater target, and the raters' majority vote. Prints mean Dice@1 of
``Session.box(tight_box(target))`` and ``Session.click(largest_error_click(target))``.

    PYTHONPATH=src python benchmarks/measure_box_first.py [--data DIR] [--n 25] [--method spa]
"""
import argparse

import numpy as np

from clinloop.data import load_dataset
from clinloop.evaluation.spa_protocol import load_method
from clinloop.interaction.session import Session
from clinloop.interaction.users import PreferredRaterUser, dice, largest_error_click, tight_box
from clinloop.training.spa_data import select_cases


def main(data: str = "../shared/data/lidc", n: int = 25, method: str = "spa") -> None:
    ds = load_dataset(data)
    model = load_method(method, None)
    rows = []
    for pos, i in enumerate(select_cases(ds, "val", limit=None)):
        if len(rows) >= n:
            break
        s = ds[i]
        target = PreferredRaterUser.from_raters(s.masks, seed=pos, rater_valid=s.rater_valid).target
        major = s.masks[np.asarray(s.rater_valid, bool)].mean(0) >= 0.5
        if not target.any() or not major.any():
            continue
        out = []
        for t in (target, major):
            b = tight_box(t)
            if b[0] == b[2] or b[1] == b[3]:
                b = (b[0] - 0.5, b[1] - 0.5, b[2] + 0.5, b[3] + 0.5)
            out.append(dice(Session(model, s.image[0], seed=pos).box(b).mask, t))
            pt, p = largest_error_click(t, None)
            out.append(dice(Session(model, s.image[0], seed=pos).click(pt, p).mask, t))
        rows.append(out)
        print(ds.case_ids[i], " ".join(f"{v:.3f}" for v in out), flush=True)
    r = np.array(rows)
    print(f"{method}, {len(r)} held-back LIDC slices, mean Dice@1:")
    print(f"  preferred-rater target: box {r[:, 0].mean():.3f}  click {r[:, 1].mean():.3f}")
    print(f"  majority-vote target:   box {r[:, 2].mean():.3f}  click {r[:, 3].mean():.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="tight box vs first click (Dice@1) on held-back LIDC slices")
    ap.add_argument("--data", default="../shared/data/lidc")
    ap.add_argument("--n", type=int, default=25, help="number of slices")
    ap.add_argument("--method", default="spa", help="spa, meduhip or box-litemedsam")
    a = ap.parse_args()
    main(a.data, a.n, a.method)
