"""Paired summaries of a MECCA ``compare`` run that ``compare`` itself does not print:
misunderstanding summed over all steps and over the last two steps, and the share of cases
on which the first method is better, each with a patient-bootstrap 95 % interval.

    # the run (README "3-D, LIDC nodule volumes"; writes per-case rows for every seed)
    clinloop evaluate --protocol mecca --mode compare --method mecca --data ../shared/data/lidc/lidc_crops_dev.npz --ndim 3 \\
        --methods mecca,mecca-no-confidence,interactive-cnn --seeds 0,1,2 --steps 5 --out compare-3d.json
    # the figures ("sum over steps" column; "−510 (−661 … −366)", "+233 (+129 … +340)", "higher on 86 %")
    .venv/bin/python benchmarks/mecca_compare_summary.py compare-3d.json [--out summary.json]
    # smoke run: a 2-case, 2-step compare of two shipped 3-D models, then this summary
    .venv/bin/python benchmarks/mecca_compare_summary.py --quick --out /tmp/summary.json

Per case, a quantity is first averaged over the seeds that drew the case, then the paired
difference (first method − other) is bootstrapped over whole patients
(``clinloop.evaluation.mecca_protocol.paired_bootstrap``, 2000 replicates, seed 0), as
``compare`` does for its last-step figures. The patient of a case is the part of its id
before the first "/" (LIDC: ``LIDC-IDRI-0003/n3`` -> ``LIDC-IDRI-0003``); ``--data`` reads
the real mapping from the dataset instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _results import write_json  # noqa: E402  (benchmarks/ is the script's folder)


def per_case(runs: list[dict]) -> dict[str, dict[str, list]]:
    """case id -> {"dice": [per seed: list per step], "misunderstanding": [...]}."""
    out: dict[str, dict[str, list]] = {}
    for r in runs:
        if "per_case" not in r:
            raise ValueError("the compare result has no per-case rows (it must come from mecca_protocol compare)")
        for c in r["per_case"]:
            d = out.setdefault(c["case_id"], {"dice": [], "misunderstanding": []})
            d["dice"].append(c["dice"])
            d["misunderstanding"].append(c["misunderstanding"])
    return out


def summarise(res: dict, groups: dict[str, str] | None = None, n_boot: int = 2000) -> dict:
    from clinloop.evaluation.mecca_protocol import paired_bootstrap

    methods = res["methods"]
    ref = methods[0]
    cases = {m: per_case(res["runs"][m]) for m in methods}
    steps = res["steps"]
    quantities = {
        f"dice@{steps}": lambda c: np.mean([d[-1] for d in c["dice"]]),
        "misunderstanding_sum_over_steps": lambda c: np.mean([sum(m) for m in c["misunderstanding"]]),
        f"misunderstanding@{steps}": lambda c: np.mean([m[-1] for m in c["misunderstanding"]]),
        f"misunderstanding@{steps - 1}+{steps}": lambda c: np.mean([sum(m[-2:]) for m in c["misunderstanding"]]),
    }
    out: dict = {"methods": methods, "steps": steps, "seeds": res.get("seeds"), "means": {}, "paired": {}}
    for m in methods:
        out["means"][m] = {q: round(float(np.mean([f(c) for c in cases[m].values()])), 4) for q, f in quantities.items()}
    for m in methods[1:]:
        common = [c for c in cases[ref] if c in cases[m]]
        g = groups if groups is not None else {c: c.split("/")[0] for c in common}
        out["paired"][f"{ref} - {m}"] = {
            q: paired_bootstrap({c: [float(f(cases[ref][c]) - f(cases[m][c]))] for c in common}, n_boot=n_boot, groups=g)
            for q, f in quantities.items()}
    return out


def print_summary(s: dict) -> None:
    print("mean per case (over seeds):")
    for m, v in s["means"].items():
        print(f"  {m}: " + ", ".join(f"{k} {x:g}" for k, x in v.items()))
    for pair, qs in s["paired"].items():
        print(f"{pair} (patient bootstrap 95 % CI):")
        for q, r in qs.items():
            p = 3 if q.startswith("dice") else 0
            print(f"  {q}: {r['mean']:+.{p}f} ({r['ci95'][0]:+.{p}f} … {r['ci95'][1]:+.{p}f}); first higher on "
                  f"{r['fraction_positive']:.0%}, lower on {r['fraction_negative']:.0%} of {r['n_cases']} cases, "
                  f"{r['n_clusters']} patients")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("compare_json", nargs="?", help="the --out file of `mecca_protocol compare`")
    p.add_argument("--data", default=None, help="dataset of the run, to map cases to patients (default: id prefix)")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--out", default=None, help="write the summary as JSON here")
    p.add_argument("--quick", action="store_true",
                   help="run a tiny compare first (2 cases, 2 steps, seed 0, shipped 3-D models on ../shared/data/lidc)")
    a = p.parse_args(argv)
    if a.quick:
        from clinloop.evaluation.mecca_protocol import compare

        print("quick: compare mecca vs interactive-cnn on 2 LIDC volumes, 2 steps", flush=True)
        res = compare("../shared/data/lidc/lidc_crops_dev.npz", ["mecca", "interactive-cnn"], [0], limit=2, steps=2, ndim=3)
    elif a.compare_json:
        res = json.loads(Path(a.compare_json).read_text())
    else:
        p.error("give the compare JSON or --quick")
    groups = None
    if a.data:
        from clinloop.data import load_dataset

        opts = {"volumes": True} if res.get("ndim") == 3 else {}
        ds = load_dataset(a.data, **opts)
        groups = dict(zip(ds.case_ids, ds.patient_ids))
    s = summarise(res, groups, a.n_boot)
    print_summary(s)
    write_json(a.out, s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
