"""Tight box vs first click as the first interaction of SPA (issue 17), on held-back cases
(LIDC by default; any 2-D dataset with ``--data`` and, for RIGA, ``--structure``).

Cases: the spa protocol's selection (``select_cases(ds, "val")``, the first N with a
non-empty target, seed = position as in ``run_protocol``); target: the protocol's
preferred-rater target, and the raters' majority vote. Prints mean Dice@1 of
``Session.box(tight_box(target))`` and ``Session.click(largest_error_click(target))``.

    PYTHONPATH=src python benchmarks/measure_box_first.py [--data DIR] [--n 25] [--method spa]
        [--model spa-general] [--structure disc] [--nested cup]
"""
import argparse

import numpy as np

from clinloop.data import load_dataset
from clinloop.evaluation.spa_protocol import load_method
from clinloop.interaction.session import Session
from clinloop.interaction.users import PreferredRaterUser, dice, largest_error_click, tight_box
from clinloop.training.spa_data import select_cases


def main(data: str = "../shared/data/lidc", n: int = 25, method: str = "spa", model_name: str | None = None,
         structure: str | None = None, nested: str | None = None) -> None:
    ds = load_dataset(data, **({"structure": structure} if structure else {}))
    inner = load_dataset(data, structure=nested) if nested else None
    model = load_method(method, model_name)
    rows, nest = [], []
    for pos, i in enumerate(select_cases(ds, "val", limit=None)):
        if len(rows) >= n:
            break
        s = ds[i]
        target = PreferredRaterUser.from_raters(s.masks, seed=pos, rater_valid=s.rater_valid).target
        major = s.masks[np.asarray(s.rater_valid, bool)].mean(0) >= 0.5
        if not target.any() or not major.any():
            continue
        out = []
        img = s.image[0] if s.image.shape[0] == 1 else np.moveaxis(s.image, 0, -1)  # grey / RGB, as the protocol
        clicked = []  # (point, mask) of the click on each target
        for t in (target, major):
            b = tight_box(t)
            if b[0] == b[2] or b[1] == b[3]:
                b = (b[0] - 0.5, b[1] - 0.5, b[2] + 0.5, b[3] + 0.5)
            out.append(dice(Session(model, img, seed=pos).box(b).mask, t))
            pt, p = largest_error_click(t, None)
            clicked.append((pt, Session(model, img, seed=pos).click(pt, p).mask))
            out.append(dice(clicked[-1][1], t))
        rows.append(out)
        print(ds.case_ids[i], " ".join(f"{v:.3f}" for v in out), flush=True)
        if inner is not None:  # the click on the preferred-rater target vs the structure nested in it
            c = inner[i]
            c_major = c.masks[np.asarray(c.rater_valid, bool)].mean(0) >= 0.5
            (pt, m) = clicked[0]
            nest.append((dice(m, c_major), float(c_major[int(pt[1]), int(pt[0])])))
    r = np.array(rows)
    print(f"{method} ({model_name or 'default model'}), {len(r)} held-back cases of {data}, mean Dice@1:")
    print(f"  preferred-rater target: box {r[:, 0].mean():.3f}  click {r[:, 1].mean():.3f}")
    print(f"  majority-vote target:   box {r[:, 2].mean():.3f}  click {r[:, 3].mean():.3f}")
    if nest:
        q = np.array(nest)
        print(f"  the click's mask vs the {nested} (majority): Dice {q[:, 0].mean():.3f}; "
              f"clicks inside the {nested}: {int(q[:, 1].sum())} of {len(q)}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="tight box vs first click (Dice@1) on held-back LIDC slices")
    ap.add_argument("--data", default="../shared/data/lidc")
    ap.add_argument("--n", type=int, default=25, help="number of slices")
    ap.add_argument("--method", default="spa", help="spa, meduhip or box-litemedsam")
    ap.add_argument("--model", default=None, help="model folder or shipped name (default: the method's)")
    ap.add_argument("--structure", default=None, help="RIGA / Drishti-GS1: disc or cup")
    ap.add_argument("--nested", default=None,
                    help="a structure inside --structure (RIGA: cup inside disc): score the click's mask against it")
    a = ap.parse_args()
    main(a.data, a.n, a.method, a.model, a.structure, a.nested)
