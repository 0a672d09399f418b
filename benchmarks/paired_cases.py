"""Paired difference of two evaluation runs on the same cases, with a bootstrap interval.

    .venv/bin/python benchmarks/paired_cases.py A_cases.csv B_cases.csv [--columns dice_1,dice_3]
        [--group patient_id] [--n-boot 2000] [--seed 0] [--out paired.json]

A and B are the per-case CSVs that ``clinloop evaluate ... --out X.json`` writes beside its
JSON (``X_cases.csv``; spa, clicks, spa-3d protocols). Cases are matched on ``case_id`` (and
``seed`` where both files have it); a case in only one file is left out and counted. For
each column the script prints the mean of A − B over the matched cases and its 95 %
percentile bootstrap interval (:func:`clinloop.evaluation.benchmark.stats.bootstrap_ci`):
cases are resampled one by one, or whole groups with ``--group`` (e.g. ``patient_id``: the
slices of one patient are correlated).

docs/methods/spa.md quotes it for "tail − embedding" (the optimisation of SPA's training
path) and for the continuations' Dice@1 against ``spa-lidc``.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from _results import write_json  # noqa: E402  (benchmarks/ is the script's folder)


def read_rows(path: str | Path) -> list[dict[str, str]]:
    p = Path(path)
    if not p.is_file():
        sys.exit(f"{p}: no such file (the per-case CSV that `clinloop evaluate --out X.json` writes as X_cases.csv)")
    with p.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "case_id" not in rows[0]:
        sys.exit(f"{p}: no per-case rows with a case_id column")
    return rows


def paired(a_rows: list[dict], b_rows: list[dict], columns: list[str], group: str | None = None,
           n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean A − B per column over the cases both runs hold, with its bootstrap interval."""
    from clinloop.evaluation.benchmark.stats import bootstrap_ci

    by_seed = "seed" in a_rows[0] and "seed" in b_rows[0]
    key = (lambda r: (r["case_id"], r["seed"])) if by_seed else (lambda r: r["case_id"])
    b = {key(r): r for r in b_rows}
    matched = [(r, b[key(r)]) for r in a_rows if key(r) in b]
    out = {"n_a": len(a_rows), "n_b": len(b_rows), "n_matched": len(matched), "group": group, "columns": {}}
    for c in columns:
        if c not in a_rows[0] or c not in b_rows[0]:
            raise ValueError(f"column {c!r} is not in both files (A has {', '.join(a_rows[0])})")
        d = [float(ra[c]) - float(rb[c]) for ra, rb in matched]
        groups = [ra[group] for ra, _ in matched] if group else None
        out["columns"][c] = bootstrap_ci(d, groups, n_boot=n_boot, seed=seed)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="per-case CSV of run A")
    ap.add_argument("b", help="per-case CSV of run B")
    ap.add_argument("--columns", default="dice_1", help="comma-separated columns (default dice_1)")
    ap.add_argument("--group", default=None, help="resample whole groups of this column (e.g. patient_id)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the figures as JSON")
    a = ap.parse_args(argv)
    try:
        res = paired(read_rows(a.a), read_rows(a.b), [c for c in a.columns.split(",") if c], a.group, a.n_boot, a.seed)
    except ValueError as e:
        sys.exit(str(e))
    print(f"A = {a.a}, B = {a.b}: {res['n_matched']} cases in both (A {res['n_a']}, B {res['n_b']}); "
          f"resampled by {a.group or 'case'}")
    for c, ci in res["columns"].items():
        lo, hi = ci["lo"], ci["hi"]
        interval = f"({lo:+.3f} … {hi:+.3f})" if lo is not None else "(no interval)"
        print(f"  {c}: A − B {ci['mean']:+.3f} {interval}")
    write_json(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
