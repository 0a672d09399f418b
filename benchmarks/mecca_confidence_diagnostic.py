"""What a MECCA model's action-confidence network C(s, a) says on nodule and background
voxels at the first step (p = 0.5, no hints): the diagnosis of the collapsed 3-D MECCA.

    .venv/bin/python benchmarks/mecca_confidence_diagnostic.py [--model mecca-lidc3d] [--cases 8] [--out diag.json]
    .venv/bin/python benchmarks/mecca_confidence_diagnostic.py --model runs/mecca3/mecca-lidc3d   # an unbalanced model
    .venv/bin/python benchmarks/mecca_confidence_diagnostic.py --quick                            # 1 case

README ("The earlier collapse and its cause"): trained with an unweighted mean over voxels,
C learned that *lowering* is the aligned action on every voxel (on nodule voxels 0.87-0.96
for the three "lower" actions, 0.03-0.13 for the "raise" ones); with ``--balance-confidence``
(the shipped 3-D models) "raise" ≈ 0.87 and "lower" 0.12-0.38 on nodule voxels. Those
earlier models are not shipped: train one with the 3-D command of the model README without
``--balance-confidence`` (``--iterations 500`` or ``800``) and pass its folder.

Cases: the first ``--cases`` volumes (slices for a 2-D model) with a non-empty label of the
model's *tuning* patients (``data.json`` "val_patients": settings are diagnosed there, never on
held-back patients), prepared as in training (crop to the model's size, fused label). Prints,
per action a in A = (-0.4, -0.2, -0.1, +0.1, +0.2, +0.4), the mean C(s, a) over nodule and
over background voxels, and the share of nodule / background voxels on which the greedy policy
picks each action; writes them as JSON with ``--out``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _results import write_json  # noqa: E402  (benchmarks/ is the script's folder)


def tuning_cases(model, data: str, n: int, fusion: str = "majority"):
    """Up to ``n`` prepared ``(image (C, *s), label (*s) bool, case_id)`` of the tuning patients."""
    from clinloop.data import load_dataset
    from clinloop.training.mecca import prepare

    pats = set(model.data.get("val_patients", []))
    if not pats:
        raise ValueError("the model's data.json names no tuning patients ('val_patients')")
    opts = {"volumes": True} if model.cfg.ndim == 3 and "lidc" in str(data).lower() else {}
    ds = load_dataset(data, **opts)
    out = []
    for i in range(len(ds)):
        if len(out) >= n:
            break
        if ds.patient_ids[i] not in pats:
            continue
        s = ds[i]
        if s.spatial_ndim != model.cfg.ndim or not s.rater_valid.any():
            continue
        x, y = prepare(s, fusion, model.cfg.size, model.data.get("seed", 0))
        if y.any():
            out.append((x, y, s.case_id))
    if not out:
        raise ValueError(f"{data}: no {model.cfg.ndim}-D case of the model's tuning patients has a non-empty label")
    return out


def diagnose(model, cases) -> dict:
    import torch

    from clinloop.models.mecca.environment import ACTIONS, initial_probability, make_state

    if not model.cfg.is_rl:
        raise ValueError(f"{model.cfg.method} has no action-confidence network (only mecca and mecca-no-confidence do)")
    conf, pol = model.nets["confidence"], model.nets["policy"]
    sums = {k: np.zeros(len(ACTIONS)) for k in ("c_nodule", "c_background", "pick_nodule", "pick_background")}
    counts = {"nodule": 0, "background": 0}
    with torch.no_grad():
        for x, y, _ in cases:
            img = torch.from_numpy(np.asarray(x, np.float32))[None]
            p = initial_probability(img.shape)
            s = make_state(img, p, torch.zeros_like(p))
            c = torch.sigmoid(conf(s))[0].numpy()  # (|A|, *spatial)
            pick = pol.greedy(s)[0, 0].numpy()
            for name, m in (("nodule", y), ("background", ~y)):
                sums[f"c_{name}"] += c[:, m].sum(1)
                sums[f"pick_{name}"] += np.bincount(pick[m].ravel(), minlength=len(ACTIONS))
                counts[name] += int(m.sum())
    return {"actions": list(ACTIONS), "n_cases": len(cases), "voxels": counts,
            **{k: (v / max(counts[k.split("_")[1]], 1)).round(4).tolist() for k, v in sums.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mecca-lidc3d", help="model folder or shipped name (default: %(default)s)")
    p.add_argument("--data", default="../shared/data/lidc/lidc_crops_dev.npz", help="dataset (default: %(default)s)")
    p.add_argument("--cases", type=int, default=8, help="tuning-subset cases (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--quick", action="store_true", help="one case")
    a = p.parse_args(argv)
    import torch

    from clinloop.models.registry import load_model, resolve_model_dir

    torch.set_num_threads(a.threads)
    t0 = time.time()
    folder = resolve_model_dir(a.model)
    model = load_model(folder)
    cases = tuning_cases(model, a.data, 1 if a.quick else a.cases)
    print(f"{model.cfg.method} ({folder.name}): {len(cases)} tuning cases ({time.time() - t0:.0f} s)", flush=True)
    r = diagnose(model, cases)
    r["model"] = str(a.model)
    print(f"{'action':>7} | C nodule | C background | policy on nodule | policy on background")
    for k, act in enumerate(r["actions"]):
        print(f"{act:+7.1f} | {r['c_nodule'][k]:8.3f} | {r['c_background'][k]:12.3f} | "
              f"{r['pick_nodule'][k]:16.3f} | {r['pick_background'][k]:.3f}")
    print(f"voxels: {r['voxels']}")
    write_json(a.out, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
