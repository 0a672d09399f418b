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
``disagreement`` equal its ``.difficulty.json``. ``--unseen`` adds the distortions of
``UNSEEN_DISTORTIONS`` (pixelation), which neither the protocol nor ``--intensity-augment``
uses: whether a model trained on the augmentation family also flags a shift it never saw.

    python benchmarks/lexu_difficulty_measures.py --model lexu-lidc --data ../shared/data/lidc [--unseen] [--out m.json]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

MEASURES = ("sum_H", "disagreement", "sum_p", "entropy", "cv", "soft_dice")


def measures(model: str, data: str, cases: int = 40, seed: int = 0, unseen: bool = False) -> dict:
    """``{distortion: {"severity": [...], measure: [mean per severity]}}`` (module docstring)."""
    from clinloop import metrics
    from clinloop.data import fusion, load_dataset
    from clinloop.evaluation.lexu_protocol import (DISTORTIONS, SEVERITIES, UNSEEN_DISTORTIONS, difficulty_inputs,
                                                   select_cases)
    from clinloop.models.lexu.heads import pairwise_agreement
    from clinloop.models.lexu.model import load_lexu
    from clinloop.models.registry import resolve_model_dir

    md = resolve_model_dir(model)
    pr = load_lexu(md)
    ds = load_dataset(data)
    samples = [s for s in (ds[i] for i in select_cases(ds, md, "test")) if s.n_raters and s.rater_valid.any()]
    samples = samples[:cases]
    soft = [fusion.soft_label(pr.prepare_masks(s.masks).numpy().astype(bool), np.asarray(s.rater_valid, bool))
            for s in samples]
    out = {}
    kinds = DISTORTIONS + (UNSEEN_DISTORTIONS if unseen else ())
    for kind, _, xs in difficulty_inputs(pr.cfg, samples, seed, kinds):
        acc = {k: [] for k in MEASURES}
        for i, x in enumerate(xs):
            r = pr.run_batch(x)
            p = r["prob"][0].double().clamp(1e-6, 1 - 1e-6)
            vol = r["samples"][0].double().sum((-2, -1))
            acc["sum_H"].append(float(r["image_uncertainty"][0]))
            acc["disagreement"].append(1 - float(pairwise_agreement(r["samples"][0:1])[0]))
            acc["sum_p"].append(float(p.sum()))
            acc["entropy"].append(float(-(p * p.log() + (1 - p) * (1 - p).log()).sum()))
            acc["cv"].append(float(vol.std(unbiased=False) / vol.mean().clamp_min(1e-6)))
            acc["soft_dice"].append(metrics.soft_dice(p.numpy(), soft[i]))
        row = out.setdefault(kind, {"severity": list(SEVERITIES), **{k: [] for k in MEASURES}})
        for k in MEASURES:
            row[k].append(round(float(np.mean(acc[k])), 4))
    return {"model": model, "data": data, "n_cases": len(samples), "distortions": out}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lexu-lidc")
    ap.add_argument("--data", required=True)
    ap.add_argument("--cases", type=int, default=40, help="the protocol's --difficulty-cases")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--unseen", action="store_true", help="also the distortions outside the augmentation family")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    res = measures(a.model, a.data, a.cases, unseen=a.unseen)
    for kind, d in res["distortions"].items():
        print(kind)
        for k in MEASURES:
            print(f"  {k:13s} " + " → ".join(f"{v:.3f}" for v in d[k]))
    if a.out:
        from clinloop.atomic import atomic_write_text

        atomic_write_text(a.out, json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
