"""Prompted segmentation on QUBIQ brain growth (neonatal brain MRI, 7 raters), out of LIDC's domain.

    cpujob .venv/bin/python benchmarks/spa_qubiq.py [--data ../shared/data/qubiq_brain_growth] [--model spa-lidc]
        [--limit N] [--threads 1] [--out results.json]

Per case, target = the strict rater majority (``majority_vote``); Dice of

* ``box``            the pretrained LiteMedSAM, the target's tight box (how MedSAM is used);
* ``point``          the pretrained LiteMedSAM, one positive click at the target's centre
                     (``largest_error_click`` against an empty prediction);
* ``spa-click``      the SPA model (default the shipped spa-lidc, trained on LIDC nodules only),
                     y_app after the same click;
* ``spa-3``          the SPA model after the click and two candidate choices by a user whose target
                     is the majority (picks the candidate with the highest Dice to it, accepts when
                     none beats the proposal).

Prints the mean/median/min over the cases and writes per-case rows with ``--out``.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


def run(data: str, model_name: str = "spa-lidc", limit: int | None = None) -> list[dict]:
    from clinloop.data import load_dataset
    from clinloop.data.fusion import majority_vote
    from clinloop.interaction.users import largest_error_click, tight_box
    from clinloop.models.registry import load_model
    from clinloop.models.litemedsam import build_litemedsam
    from clinloop.models.litemedsam.predictor import LiteMedSAMPredictor

    ds = load_dataset(data)
    pred = LiteMedSAMPredictor(build_litemedsam(True))
    spa = load_model(model_name)
    rows = []
    for i in range(len(ds) if limit is None else min(limit, len(ds))):
        s = ds[i]
        target = majority_vote(s.masks, s.rater_valid)
        if not target.any():
            continue
        img = s.image[0]
        pred.set_image(img)
        box, _, _ = pred.predict(box=list(tight_box(target)))
        (pt, _) = largest_error_click(target, None)
        point, _, _ = pred.predict(points=np.array([pt], float), point_labels=np.array([1]))
        st = spa.start(img[None], seed=0)
        p = st.click(pt, True)
        d = [dice(p.mask, target)]
        for _ in range(2):
            ds_c = [dice(c, target) for c in p.candidates]
            k = int(np.argmax(ds_c))
            if ds_c[k] > d[-1]:
                p = st.choose(k)
            d.append(dice(p.mask, target))
        rows.append({"case_id": ds.case_ids[i], "target_pixels": int(target.sum()), "box": dice(box[0], target),
                     "point": dice(point[0], target), "spa-click": d[0], "spa-3": d[-1]})
    return rows


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="default: ../shared/data/qubiq_brain_growth")
    ap.add_argument("--model", default="spa-lidc")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.data is None:
        from clinloop.paths import shared_data_dir

        d = shared_data_dir()
        if d is None:
            raise SystemExit("../shared/data is absent; pass --data")
        a.data = str(d / "qubiq_brain_growth")
    t0 = time.time()
    rows = run(a.data, a.model, a.limit)
    summary = {"n_cases": len(rows), "model": a.model, "seconds": round(time.time() - t0, 1)}
    for k in ("box", "point", "spa-click", "spa-3"):
        v = np.array([r[k] for r in rows])
        summary[k] = {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4),
                      "min": round(float(v.min()), 4)}
    print(json.dumps(summary, indent=2))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"summary": summary, "cases": rows}, f, indent=2)


if __name__ == "__main__":
    main()
