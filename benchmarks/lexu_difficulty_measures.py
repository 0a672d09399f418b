"""LEXU example difficulty (lexu.txt §4.3), with more than the protocol reports: per
distortion and severity, the mean over the protocol's difficulty images of

* ``sum_H``: Σ Ĥ, the image-level uncertainty the protocol reports;
* ``disagreement``: 1 − the inter-head agreement (mean pairwise Dice, the paper's measure);
* ``sum_p``: Σ p of the prediction (how much structure the model sees);
* ``entropy``: Σ of the binary entropy of the prediction (nats);
* ``cv``: coefficient of variation of the heads' volumes Σ p_j (Roy et al., 2019);
* ``soft_dice``: the prediction against the raters' soft label S(M), i.e. whether the
  distortion made the image harder *for this model*.

The images, distortions (:func:`clinloop.evaluation.lexu_protocol.distort`) and seeds are
the protocol's (``clinloop evaluate --protocol lexu``: its first ``--cases`` held-out images
with a valid rater, distorted at the network's resolution), so ``sum_H`` and
``disagreement`` equal its ``.difficulty.json``.

    python benchmarks/lexu_difficulty_measures.py --model lexu-lidc --data ../shared/data/lidc [--out m.json]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

MEASURES = ("sum_H", "disagreement", "sum_p", "entropy", "cv", "soft_dice")


def measures(model: str, data: str, cases: int = 40, seed: int = 0) -> dict:
    """``{distortion: {"severity": [...], measure: [mean per severity]}}`` (module docstring)."""
    import torch
    import torch.nn.functional as F

    from clinloop import metrics
    from clinloop.data import fusion, load_dataset
    from clinloop.evaluation.lexu_protocol import DISTORTIONS, SEVERITIES, distort, select_cases
    from clinloop.models.lexu.heads import pairwise_agreement
    from clinloop.models.lexu.model import crop_box, load_lexu, prepare_images
    from clinloop.models.registry import resolve_model_dir

    md = resolve_model_dir(model)
    pr = load_lexu(md)
    cfg = pr.cfg
    ds = load_dataset(data)
    samples = [s for s in (ds[i] for i in select_cases(ds, md, "test")) if s.n_raters and s.rater_valid.any()]
    small, soft = [], []
    for s in samples[:cases]:
        y0, y1, x0, x1 = crop_box(s.image.shape[-2:], cfg.crop)
        t = torch.from_numpy(np.ascontiguousarray(s.image[:, y0:y1, x0:x1], dtype=np.float32))[None]
        small.append(F.interpolate(t, size=(cfg.size, cfg.size), mode="bilinear", antialias=True,
                                   align_corners=False)[0].numpy())
        soft.append(fusion.soft_label(pr.prepare_masks(s.masks).numpy().astype(bool), np.asarray(s.rater_valid, bool)))
    out = {}
    for kind in DISTORTIONS:
        rows = {k: [] for k in MEASURES}
        for sev in SEVERITIES:
            acc = {k: [] for k in MEASURES}
            for i, im in enumerate(small):  # seed + i: the protocol's per-image noise seed
                x = prepare_images([distort(im, kind, sev, seed + i)], cfg.size, cfg.in_channels, cfg.normalisation)
                r = pr.run_batch(x)
                p = r["prob"][0].double().clamp(1e-6, 1 - 1e-6)
                vol = r["samples"][0].double().sum((-2, -1))
                acc["sum_H"].append(float(r["image_uncertainty"][0]))
                acc["disagreement"].append(1 - float(pairwise_agreement(r["samples"][0:1])[0]))
                acc["sum_p"].append(float(p.sum()))
                acc["entropy"].append(float(-(p * p.log() + (1 - p) * (1 - p).log()).sum()))
                acc["cv"].append(float(vol.std(unbiased=False) / vol.mean().clamp_min(1e-6)))
                acc["soft_dice"].append(metrics.soft_dice(p.numpy(), soft[i]))
            for k in MEASURES:
                rows[k].append(round(float(np.mean(acc[k])), 4))
        out[kind] = {"severity": list(SEVERITIES), **rows}
    return {"model": model, "data": data, "n_cases": len(small), "distortions": out}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lexu-lidc")
    ap.add_argument("--data", required=True)
    ap.add_argument("--cases", type=int, default=40, help="the protocol's --difficulty-cases")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    res = measures(a.model, a.data, a.cases)
    for kind, d in res["distortions"].items():
        print(kind)
        for k in MEASURES:
            print(f"  {k:13s} " + " → ".join(f"{v:.3f}" for v in d[k]))
    if a.out:
        from clinloop.atomic import atomic_write_text

        atomic_write_text(a.out, json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
