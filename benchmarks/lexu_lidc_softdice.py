"""Why LEXU's LIDC soft Dice is low: the metric's ceiling on LIDC and where the
model loses against it.

    .venv/bin/python benchmarks/lexu_lidc_softdice.py [--model lexu-lidc] [--data ../shared/data/lidc] [--limit 300] [--out r.json]

On the model's held-out slices (``data.json``; the first ``--limit``, as
``clinloop evaluate --protocol lexu --limit 300``), at the model's resolution,
soft Dice = 2 Σ p·S / (Σ p + Σ S) against the soft majority S(M) (the lexu
protocol's ``soft_dice``) of:

* ``model``: the model's prediction (the protocol's figure), ``model_binary``:
  the same thresholded at 0.5, ``heads``: each head (decoder order, last = M̂_1);
* oracles that know the raters: ``oracle_soft`` (p = S(M) itself: what a
  perfectly calibrated prediction, LEXU's BCE(S(M), M̂_1) optimum, scores),
  ``oracle_majority`` (p = majority vote), ``oracle_best_binary`` (the best
  binary mask for each slice: the pixels with S ≥ τ for the best τ; soft Dice is
  linear-fractional in p, so its maximum over p ∈ [0, 1] is such a mask);

and the slices' majority-vote area (empty majority: fewer than 3 of the 4
radiologists marked any one pixel) and the QC protocol's poor slices (Dice of
p > 0.5 with the majority < 0.7), split into empty-majority and non-empty slices;
``native``: the same oracles at the crops' own 128² (is 64² the limit?).

``distortions``: on the protocol's difficulty slices (the first 40), per noise /
colour / blur severity 0, 0.5, 1 (``clinloop.evaluation.lexu_protocol.distort``):
the prediction's mass Σ p, the heads' mean foreground area (p > 0.5, pixels) and
the image-level uncertainty — does the uncertainty fall because the model stops
seeing the nodule?
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def best_binary_soft_dice(soft: np.ndarray) -> float:
    """max over τ of soft Dice(1[S ≥ τ], S); 1.0 for an all-zero S."""
    from clinloop import metrics

    levels = np.unique(soft[soft > 0])
    if levels.size == 0:
        return 1.0
    return max(metrics.soft_dice((soft >= t).astype(np.float64), soft) for t in levels)


def oracles(ds, idx, size: int | None) -> dict:
    """Oracle soft Dice (p = S(M)) and empty-majority count at ``size`` (None: native)."""
    from clinloop import metrics
    from clinloop.data import fusion
    from clinloop.models.lexu.model import prepare_masks

    soft_dice, empty = [], 0
    for i in idx:
        s = ds[i]
        valid = np.asarray(s.rater_valid, bool)
        if not valid.any():
            continue
        m = np.asarray(s.masks, bool) if size is None else prepare_masks(s.masks, size).numpy().astype(bool)
        soft = fusion.soft_label(m, valid)
        soft_dice.append(metrics.soft_dice(soft, soft))
        empty += int(fusion.majority_vote(m, valid).sum() == 0)
    return {"oracle_soft": float(np.mean(soft_dice)), "empty_majority": empty, "n": len(soft_dice)}


def distortions(pred, samples, n: int = 40) -> dict:
    """Σ p, mean head foreground pixels and Σ Ĥ per distortion and severity (means over slices)."""
    import torch
    import torch.nn.functional as F

    from clinloop.evaluation.lexu_protocol import distort
    from clinloop.models.lexu.model import prepare_images

    cfg = pred.cfg
    small = [F.interpolate(torch.from_numpy(np.asarray(s.image, np.float32))[None], size=(cfg.size, cfg.size),
                           mode="bilinear", antialias=True, align_corners=False)[0].numpy() for s in samples[:n]]
    out = {}
    for kind in ("noise", "colour", "blur"):
        for sev in (0.0, 0.5, 1.0):
            mass, fg, unc = [], [], []
            for i, im in enumerate(small):  # seed i: the protocol's seeds (seed 0 + image index)
                r = pred.run_batch(prepare_images([distort(im, kind, sev, i)], cfg.size, cfg.in_channels,
                                                  cfg.normalisation))
                mass.append(float(r["prob"].sum()))
                fg.append(float((r["samples"][0] > 0.5).float().sum(dim=(-2, -1)).mean()))
                unc.append(float(r["image_uncertainty"][0]))
            out[f"{kind} {sev}"] = {"prob_mass": float(np.mean(mass)), "head_foreground_px": float(np.mean(fg)),
                                    "image_uncertainty": float(np.mean(unc))}
    return out


def measure(model: str, data: str, limit: int | None) -> dict:
    import torch

    from clinloop import metrics
    from clinloop.data import fusion, load_dataset
    from clinloop.evaluation.lexu_protocol import select_cases
    from clinloop.models.lexu.model import load_lexu
    from clinloop.models.registry import resolve_model_dir

    torch.set_num_threads(1)
    folder = resolve_model_dir(model)
    pred = load_lexu(folder)
    ds = load_dataset(data)
    idx = select_cases(ds, folder, "test")[:limit]
    rows, samples = [], []
    for i in idx:
        s = ds[i]
        if not (s.n_raters and s.rater_valid.any()):
            continue
        samples.append(s)
        r = pred.run_batch(pred.prepare([s.image]))
        masks = pred.prepare_masks(s.masks).numpy().astype(bool)
        valid = np.asarray(s.rater_valid, bool)
        soft, mv = fusion.soft_label(masks, valid), fusion.majority_vote(masks, valid)
        prob = r["prob"][0].numpy().astype(np.float64).clip(0, 1)
        heads = r["samples"][0].numpy().astype(np.float64).clip(0, 1)
        rows.append({
            "model": metrics.soft_dice(prob, soft),
            "model_binary": metrics.soft_dice((prob > 0.5).astype(np.float64), soft),
            "heads": [metrics.soft_dice(h, soft) for h in heads],
            "oracle_soft": metrics.soft_dice(soft, soft),
            "oracle_majority": metrics.soft_dice(mv.astype(np.float64), soft),
            "oracle_best_binary": best_binary_soft_dice(soft),
            "majority_area": int(mv.sum()),
            "poor": metrics.dice(prob > 0.5, mv) < 0.7,  # the lexu protocol's QC label (LIDC: Dice < 0.7)
            "prob_mass_ratio": float(prob.sum() / max(soft.sum(), 1e-9)),
        })
    keys = ("model", "model_binary", "oracle_soft", "oracle_majority", "oracle_best_binary")
    empty = np.array([r["majority_area"] == 0 for r in rows])

    def means(sel):
        return ({k: float(np.mean([r[k] for r, s in zip(rows, sel) if s])) for k in keys}
                | {"n": int(sel.sum()), "poor": int(sum(r["poor"] for r, s in zip(rows, sel) if s))})

    return {
        "model": model, "size": pred.cfg.size, "n": len(rows),
        "all": means(np.ones(len(rows), bool)), "empty_majority": means(empty), "non_empty_majority": means(~empty),
        "heads": np.mean([r["heads"] for r in rows], 0).round(4).tolist(),
        "majority_area_mean": float(np.mean([r["majority_area"] for r in rows])),
        "prob_mass_ratio_median": float(np.median([r["prob_mass_ratio"] for r in rows])),
        "native": oracles(ds, idx, None),
        "distortions": distortions(pred, samples),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lexu-lidc")
    ap.add_argument("--data", default="../shared/data/lidc")
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="20 slices")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    res = measure(a.model, a.data, 20 if a.quick else a.limit)
    print(json.dumps(res, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
