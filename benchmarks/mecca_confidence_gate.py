"""MECCA on whole held-back volumes with and without the confidence gate.

    OMP_NUM_THREADS=2 python benchmarks/mecca_confidence_gate.py --model models/mecca-brats --data ../shared/data/brats2018_flair

For each ``--gates`` value g (0 = the paper's update: every agent acts), the model's
``confidence_gate`` is set to g (``clinloop.models.mecca.model.gate_actions``: an agent
whose chosen action has C(s, a) < g keeps its probability) and the ``mecca`` protocol's
rollout runs on the held-back cases (``clinloop.evaluation.mecca_cases``: whole volumes at
full resolution, 5 boundary-error clicks per step, seed 0), so a gate equal to the
model's own reproduces ``clinloop evaluate --protocol mecca`` to the digit. Printed per
gate and step: Dice and ASSD (means over cases), the misunderstanding count (Definition 1)
and, per case, the false positives and negatives, with those more than ``--far`` mm
outside the label (agents far from the structure that switched on) and inside it
(agents deep in the structure that switched off); docs/methods/mecca.md,
"Confidence-gated actions".
"""
from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch


def error_counts(mask: np.ndarray, label: np.ndarray, spacing, far_mm: float) -> dict:
    """False positives / negatives of ``mask`` against ``label``: all of them, and those
    more than ``far_mm`` outside the label (``far_fp``) or inside it (``deep_fn``)."""
    from scipy import ndimage

    fp, fn = mask & ~label, ~mask & label
    out_dist = ndimage.distance_transform_edt(~label, sampling=spacing)
    in_dist = ndimage.distance_transform_edt(label, sampling=spacing)
    return {"fp": int(fp.sum()), "far_fp": int((fp & (out_dist > far_mm)).sum()),
            "fn": int(fn.sum()), "deep_fn": int((fn & (in_dist > far_mm)).sum())}


def run_gate(model, cases, steps: int, seed: int, far_mm: float) -> dict:
    """The protocol's rollout (:func:`clinloop.evaluation.mecca_cases.evaluate_cases`) with
    :func:`error_counts` per case and step."""
    from clinloop.evaluation.mecca_cases import evaluate_cases

    res = evaluate_cases(model, cases, steps, seed, per_case=True,
                         on_case=lambda cid, label, spacing, masks: [error_counts(m, label, spacing, far_mm)
                                                                     for m in masks])
    for row, errors in zip(res["per_case"], res.pop("on_case")):
        row["errors"] = errors
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("--model", required=True, help="a mecca or mecca-no-confidence volume model: folder or shipped name")
    p.add_argument("--data", required=True)
    p.add_argument("--gates", default="0,0.5", help="comma-separated confidence gates")
    p.add_argument("--click-reach", type=float, default=None,
                   help="MECCAConfig.click_reach for every gate (default: the model's; 0: every agent acts)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--far", type=float, default=10.0, help="mm from the label beyond which a false positive is 'far'")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    a = p.parse_args(argv)
    from clinloop.evaluation.mecca_cases import iter_cases, open_dataset
    from clinloop.models.mecca.model import load_mecca
    from clinloop.models.registry import resolve_model_dir

    torch.set_num_threads(a.threads)
    model = load_mecca(resolve_model_dir(a.model))
    if not model.cfg.is_rl:
        p.error(f"{a.model}: a {model.cfg.method!r} model has no action confidence to gate")
    if a.click_reach is not None:
        model.cfg = dataclasses.replace(model.cfg, click_reach=a.click_reach)
    ds = open_dataset(a.data, None, model.cfg.ndim)
    cases = list(iter_cases(ds, model, model.cfg.fusion, 0, None, a.seed))
    results = {}
    for g in (float(v) for v in a.gates.split(",")):
        model.cfg = dataclasses.replace(model.cfg, confidence_gate=g)
        r = results[str(g)] = run_gate(model, cases, a.steps, a.seed, a.far)
        print(f"gate {g:.2f} (click reach {model.cfg.click_reach:g}): Dice per step {r['dice_per_step']}  "
              f"ASSD (mm) {r['assd_per_step']}  "
              f"misunderstanding {r['misunderstanding_per_step']}")
        for row in r["per_case"]:
            e = row["errors"]
            print(f"    {row['case_id']}: Dice {np.round(row['dice'], 4).tolist()}")
            print(f"        false positives {[x['fp'] for x in e]}, of them > {a.far:g} mm outside {[x['far_fp'] for x in e]}")
            print(f"        false negatives {[x['fn'] for x in e]}, of them > {a.far:g} mm inside {[x['deep_fn'] for x in e]}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"model": a.model, "data": a.data, "steps": a.steps, "seed": a.seed, "far_mm": a.far,
                       "click_reach": model.cfg.click_reach, "gates": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
