"""SPA experiments behind the README's SPA figures: literal vs optimised path, the Table-3
variants at equal budgets, and paired case-bootstrap differences between two protocol runs.

    # "Literal vs optimised path, trained on the same data" (both paths, 80 images, seed 0;
    # --seeds 0,1 adds the tail seed-1 row, --tail-steps 600 the 600-image row)
    cpujob .venv/bin/python benchmarks/spa_experiments.py literal-vs-tail --out runs/spa8 [--seeds 0,1] [--tail-steps 600]
    # "Six-iteration training and the Table-3 variants, equal budgets" (warm start from spa-lidc, 480 s each)
    cpujob .venv/bin/python benchmarks/spa_experiments.py variants --out runs/spa6
    # paired Dice differences (B - A) of two `clinloop evaluate --protocol spa` runs on the same cases
    .venv/bin/python benchmarks/spa_experiments.py compare A/results_cases.csv B/results_cases.csv [--iterations 1,6]
    # smoke run of either experiment (a few images and cases, minutes on a CPU)
    .venv/bin/python benchmarks/spa_experiments.py literal-vs-tail --out /tmp/spa8 --quick

Every training and evaluation goes through the ``clinloop`` command line (``clinloop train
--method ...``, ``clinloop evaluate --protocol spa ...``) with the flags quoted in the README;
each model folder gets ``results.json`` / ``results_cases.csv`` from the protocol. The
experiment prints the table (Dice@1/2/3/6, NoC@0.8, fail@0.8, NoC@0.9, candidates' pairwise
Dice, s/iteration, training seconds) and the paired case-bootstrap 95 % intervals, and writes
everything to ``OUT/summary.json``. Steps already done (a folder with ``results.json``) are
skipped, so an interrupted run can be restarted with the same command.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

VARIANTS = ("spa", "meduhip", "spa-random-gmm", "spa-mean-variance", "spa-weights")
COMMON = ["--train-samples", "8", "--per-nodule", "1", "--lr", "1e-4", "--lr-new", "1e-3",
          "--wta-weight", "1.0", "--wta-relax", "0.05"]


def _cli(argv: list[str]) -> None:
    from clinloop.cli import main

    print("$ clinloop " + " ".join(argv), flush=True)
    rc = main(argv)
    if rc:
        raise SystemExit(f"clinloop {argv[0]} failed with exit status {rc}")


def _evaluate(model: str, method: str, out: Path, a: argparse.Namespace) -> dict:
    res = out / "results.json"
    if not res.is_file():
        _cli(["evaluate", "--protocol", "spa", "--method", method, "--model", model, "--data", a.data,
              "--split", "val", "--per-nodule", "1", "--limit", str(a.limit), "--iterations", str(a.iterations),
              "--seed", "0", "--threads", str(a.threads), "--out", str(res)])
    return json.loads(res.read_text())


def _train(method: str, out: Path, extra: list[str], a: argparse.Namespace) -> Path:
    model = out / "model"
    if not (model / "weights.pt").is_file():
        _cli(["train", "--method", method, "--data", a.data, "--out", str(model), "--max-cases", str(a.max_cases),
              "--threads", str(a.threads), *COMMON, *extra])
    return model


def read_cases(path: str | Path) -> dict[str, dict[str, str]]:
    """Per-case rows of a spa protocol run (``results_cases.csv``), keyed by case id."""
    with open(path, newline="") as f:
        return {r["case_id"]: r for r in csv.DictReader(f)}


def paired_differences(a_csv, b_csv, iterations=(1,), n_boot: int = 2000, seed: int = 0) -> dict:
    """B - A per case on the cases both runs scored: mean and case-bootstrap 95 % interval of
    Dice@k for each k in ``iterations``."""
    from clinloop.evaluation.mecca_protocol import paired_bootstrap

    ra, rb = read_cases(a_csv), read_cases(b_csv)
    common = [c for c in ra if c in rb]
    if not common:
        raise ValueError(f"{a_csv} and {b_csv} share no case id")
    out = {}
    for k in iterations:
        col = f"dice_{k}"
        if col not in next(iter(ra.values())) or col not in next(iter(rb.values())):
            raise ValueError(f"{col} is missing in {a_csv} or {b_csv} (run with --iterations >= {k})")
        diffs = {c: [float(rb[c][col]) - float(ra[c][col])] for c in common}
        out[f"dice@{k}"] = paired_bootstrap(diffs, n_boot=n_boot, seed=seed)
    return out


def _row(name: str, res: dict, model: Path | None) -> dict:
    d = res["dice_per_iteration"]
    row = {"name": name, "n_cases": res["n_cases"], **{f"dice@{k}": round(d[k - 1], 3) for k in (1, 2, 3, 6) if k <= len(d)},
           "noc@0.8": res["noc"]["0.8"], "fail@0.8": res["failure_rate"]["0.8"], "noc@0.9": res["noc"]["0.9"],
           "candidate_pairwise_dice": res.get("candidate_pairwise_dice"),
           "s/iteration": round(res["seconds_per_iteration"], 3), "accepted_at": res.get("accepted_at")}
    if model is not None and (model / "data.json").is_file():
        info = json.loads((model / "data.json").read_text())
        row["train_seconds"] = info.get("seconds_train")
        row["train_steps"] = info.get("steps")
    return row


def _print_table(rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join("" if r.get(k) is None else str(r.get(k)) for k in keys) + " |")


def _print_diffs(label: str, diffs: dict) -> None:
    for k, r in diffs.items():
        print(f"{label}: {k} {r['mean']:+.3f} ({r['ci95'][0]:+.3f} … {r['ci95'][1]:+.3f}), n = {r['n_cases']}")


def literal_vs_tail(a: argparse.Namespace) -> dict:
    out = Path(a.out)
    rows, runs = [], {}
    seeds = [int(s) for s in a.seeds.split(",")]
    plan = [("embedding", 0, a.steps)] + [("tail", s, a.steps) for s in seeds]
    if a.tail_steps:
        plan.append(("tail", 0, a.tail_steps))
    for path, seed, steps in plan:
        name = f"{path}-seed{seed}-{steps}"
        print(f"== {name}", flush=True)
        t0 = time.time()
        model = _train("spa", out / name, ["--path", path, "--seed", str(seed), "--split-seed", "0", "--steps", str(steps),
                                           "--user-iterations", "3"], a)
        res = _evaluate(str(model), "spa", out / name, a)
        runs[name] = out / name / "results_cases.csv"
        rows.append(_row(name, res, model))
        print(f"   done in {time.time() - t0:.0f} s", flush=True)
    diffs = {}
    for s in seeds:
        key = f"tail-seed{s}-{a.steps} - embedding-seed0-{a.steps}"
        diffs[key] = paired_differences(runs[f"embedding-seed0-{a.steps}"], runs[f"tail-seed{s}-{a.steps}"],
                                        iterations=[k for k in (1, 6) if k <= a.iterations])
    _print_table(rows)
    for k, v in diffs.items():
        _print_diffs(k, v)
    return {"experiment": "literal-vs-tail", "rows": rows, "paired": diffs}


def variants(a: argparse.Namespace) -> dict:
    out = Path(a.out)
    print("== spa-lidc (shipped, the init)", flush=True)
    base = _evaluate("spa-lidc", "spa", out / "spa-lidc", a)
    rows, diffs = [_row("spa-lidc (shipped)", base, None)], {}
    for m in a.methods.split(","):
        print(f"== {m} (from spa-lidc)", flush=True)
        model = _train(m, out / m, ["--init", "spa-lidc", "--seed", "0", "--steps", str(a.steps),
                                    "--user-iterations", "6", "--time-budget", str(a.budget)], a)
        res = _evaluate(str(model), m, out / m, a)
        rows.append(_row(f"{m} (from spa-lidc)", res, model))
        diffs[f"{m} - spa-lidc"] = paired_differences(out / "spa-lidc" / "results_cases.csv", out / m / "results_cases.csv")
    _print_table(rows)
    for k, v in diffs.items():
        _print_diffs(k, v)
    return {"experiment": "variants", "rows": rows, "paired": diffs}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="experiment", required=True)

    def common(q, steps, limit=25):
        q.add_argument("--data", default="../shared/data/lidc", help="LIDC folder (default: %(default)s)")
        q.add_argument("--out", required=True, help="folder for the models, results and summary.json")
        q.add_argument("--steps", type=int, default=steps, help="training images per model (default: %(default)s)")
        q.add_argument("--max-cases", type=int, default=400, help="training slices to draw from")
        q.add_argument("--limit", type=int, default=limit, help="validation slices evaluated (default: %(default)s)")
        q.add_argument("--iterations", type=int, default=6, help="user iterations per evaluated case")
        q.add_argument("--threads", type=int, default=1)
        q.add_argument("--quick", action="store_true", help="smoke run: 2 training images, 4 slices, 2 cases, 2 iterations")

    q = sub.add_parser("literal-vs-tail", help="both conditioning paths trained on the same images")
    common(q, 80)
    q.add_argument("--seeds", default="0", help="tail-path seeds (the README: 0,1)")
    q.add_argument("--tail-steps", type=int, default=None, help="an extra tail run with this many images (README: 600)")
    q = sub.add_parser("variants", help="Table-3 variants warm-started from spa-lidc at equal time budgets")
    common(q, 5000)
    q.add_argument("--methods", default=",".join(VARIANTS))
    q.add_argument("--budget", type=float, default=480.0, help="training seconds per variant (default: %(default)s)")
    q = sub.add_parser("compare", help="paired case-bootstrap differences B - A of two protocol runs")
    q.add_argument("a", help="results_cases.csv of run A")
    q.add_argument("b", help="results_cases.csv of run B")
    q.add_argument("--iterations", default="1,6", help="Dice@k to compare (default: %(default)s)")
    q.add_argument("--n-boot", type=int, default=2000)
    q.add_argument("--out", default=None, help="write the differences as JSON here")
    a = p.parse_args(argv)
    if getattr(a, "quick", False):
        a.steps, a.max_cases, a.limit, a.iterations = 2, 4, 2, 2
        if a.experiment == "variants":
            a.budget = min(a.budget, 30.0)
            a.methods = "spa"
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.experiment == "compare":
        diffs = paired_differences(a.a, a.b, [int(k) for k in a.iterations.split(",")], n_boot=a.n_boot)
        _print_diffs("B - A", diffs)
        if a.out:
            Path(a.out).write_text(json.dumps(diffs, indent=2) + "\n")
        return 0
    summary = literal_vs_tail(a) if a.experiment == "literal-vs-tail" else variants(a)
    summary["argv"] = sys.argv[1:] if argv is None else list(argv)
    out = Path(a.out) / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
