"""The interactive volume models with and without a click reach (docs/methods/mecca.md,
"Clicks that act where they are given").

    python benchmarks/mecca_click_reach.py --task brats --radii 0,3,4,5,8 --out reach-brats.json

For each model (default: the shipped ``mecca-``, ``mecca-no-confidence-`` and
``interactive-cnn-<task>``) and each radius R (working-grid voxels; 0 = the paper's update,
every agent acts) the ``mecca`` protocol runs on the task's held-back volumes with the
model's ``click_reach`` set to R (:func:`clinloop.evaluation.mecca_cases.evaluate_model`:
whole volumes at full resolution, the model's clicks per step, ``--steps`` steps, seed 0),
so the model's own R reproduces ``clinloop evaluate --protocol mecca`` to the digit.
Printed per model and R: Dice after each step and the misunderstanding count at the last.
"""
from __future__ import annotations

import argparse
import json

DATA = {"brats": "brats2018_flair", "atrium": "left_atrium"}
METHODS = ("mecca", "mecca-no-confidence", "interactive-cnn")


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(DATA), required=True)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--radii", default="0,3,4,5,8", help="comma-separated click reaches (working-grid voxels)")
    p.add_argument("--model", action="append", default=[], metavar="METHOD=DIR",
                   help="a model folder instead of the shipped one (repeatable)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of " + ", ".join(METHODS))
    p.add_argument("--limit", type=int, default=None, help="the first N held-back volumes only")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="also write the results to this JSON file")
    a = p.parse_args(argv)

    import torch

    from clinloop.evaluation.mecca_cases import evaluate_model

    torch.set_num_threads(a.threads)
    folders = {m: f"{m}-{a.task}" for m in a.methods.split(",")}
    for kv in a.model:
        if "=" not in kv:
            p.error(f"--model wants METHOD=DIR, got {kv!r}")
        method, folder = kv.split("=", 1)
        folders[method] = folder
    data = f"{a.data_root}/{DATA[a.task]}"
    rows = []
    for method, folder in folders.items():
        for r in (float(x) for x in a.radii.split(",")):
            res = evaluate_model(method, data, folder, steps=a.steps, seed=a.seed, limit=a.limit, click_reach=r)
            rows.append({"method": method, "model": folder, "click_reach": r, "n_cases": res["n_cases"],
                         "dice_per_step": res["dice_per_step"], "assd_per_step": res["assd_per_step"],
                         "misunderstanding_per_step": res["misunderstanding_per_step"]})
            dice = " ".join(f"{d:.3f}" for d in res["dice_per_step"])
            print(f"{folder:32s} R={r:<4g} Dice {dice}  misunderstanding@{a.steps} "
                  f"{res['misunderstanding_per_step'][-1]:.0f}  ({res['n_cases']} volumes)", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"task": a.task, "steps": a.steps, "seed": a.seed, "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
