"""The MECCA evaluation protocol (mecca.txt §5.1–5.3).

``clinloop evaluate --method {mecca,mecca-no-confidence,interactive-cnn,unet} --protocol mecca
--data PATH --steps 5 [--limit N] [--seed S] [--model DIR] [--fusion majority] --out results.json``

For each held-back case (patients the model was *not* trained on, read from its
``data.json``; cases whose fused label is empty are skipped, there is nothing to
click on), a simulated user starts from ``p^(0) = 0.5`` and, before each of the
``--steps`` refinement steps, clicks up to ``hint_points`` wrongly predicted
boundary points of the current prediction (§5.1: "randomly selecting the wrong
segmentation points on the edges with the ground truth"). After every step we
score Dice and ASSD (physical units via the sample's spacing; a step whose
prediction is empty gets the image diagonal as its ASSD instead of ∞, so means
stay finite) and count *interactive misunderstanding* events (Definition 1:
agents whose probability moved against their label, see
:func:`clinloop.models.mecca.environment.misunderstanding`).

``results.json`` keys: ``method``, ``protocol``, ``n_cases``, ``dice_per_step``,
``assd_per_step``, ``seconds_per_step`` (model time of one step, mean over
cases), ``misunderstanding_per_step`` (mean count per case) and ``flips_per_step``
(mean count per case of agents whose thresholded prediction turned from correct
to wrong at that step; not in the paper, a stricter companion of Definition 1
that a CNN's small sigmoid drifts on the correct side do not inflate).

``unet`` is the non-interactive CNN (model folders with method
``mecca-unet``). Without ``--model`` the shipped model of the method is used:
for 2-D data the LIDC-slice models (``SHIPPED``), for 3-D data the LIDC
nodule-volume models (``SHIPPED_3D``). The data's dimensionality is ``--ndim``
or, when not given, that of its first case (LIDC reads as 2-D slices unless
``--ndim 3``, which stacks each nodule's slices into a volume). ``--per-case``
adds ``per_case`` (case id, Dice and misunderstanding count per step) for
paired comparisons.

Robustness comparison (:func:`compare`, ``python -m clinloop.evaluation.mecca_protocol
compare --data PATH --methods mecca,mecca-no-confidence,interactive-cnn --seeds 0,1,2
--limit N [--ndim 3] --out compare.json``): every method on the same held-back cases
per seed (the seed draws the case subset and the clicks), mean ± sample standard
deviation over seeds of each step's Dice, ASSD and misunderstanding count, and a
paired bootstrap 95 % interval of the Dice difference after the last step between
the first method and each other one (patients resampled: a case's difference is its
mean over the seeds that drew it, and all cases of a drawn patient count).

The semi-supervised table (§5.3, Table 2) is produced by
:func:`semisupervised_table` (``python -m clinloop.evaluation.mecca_protocol
semisup --data PATH --out DIR``): MECCA trained with 1/8, 1/4, 1/2 and 1/1 of
the training cases labeled, each evaluated with this protocol; JSON + figure.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("mecca", "mecca-no-confidence", "interactive-cnn", "unet")
MODEL_METHOD = {"mecca": "mecca", "mecca-no-confidence": "mecca-no-confidence",
                "interactive-cnn": "interactive-cnn", "unet": "mecca-unet"}
SHIPPED = {"mecca": "mecca-lidc", "mecca-no-confidence": "mecca-no-confidence-lidc",
           "interactive-cnn": "interactive-cnn-lidc", "unet": "mecca-unet-lidc"}
SHIPPED_3D = {"mecca": "mecca-lidc3d", "mecca-no-confidence": "mecca-no-confidence-lidc3d",
              "interactive-cnn": "interactive-cnn-lidc3d"}
RESULT_KEYS = ("method", "protocol", "n_cases", "dice_per_step", "assd_per_step", "seconds_per_step",
               "misunderstanding_per_step", "flips_per_step")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=5, help="refinement steps (interactions) per case")
    p.add_argument("--fusion", default="majority", help="rater fusion giving the target (clinloop.data.fusion)")
    p.add_argument("--size", type=int, default=None,
                   help="crop size around the label (default: the model's training size; 0 = whole image)")
    p.add_argument("--hint-points", type=int, default=None, help="clicks per step (default: the model's)")
    p.add_argument("--label", default=None,
                   help="a mask file for a single image/volume given as --data (e.g. the BraTS sample's label)")
    p.add_argument("--all-patients", action="store_true",
                   help="do not hold back: also evaluate patients the model was trained on")
    p.add_argument("--ndim", type=int, choices=(2, 3), default=None,
                   help="2-D slices or 3-D volumes (default: the model's, else the data's first case; "
                        "LIDC is read as nodule volumes with --ndim 3)")
    p.add_argument("--per-case", action="store_true", help="also write per-case Dice and misunderstanding counts")


def shipped_name(method: str, ndim: int) -> str:
    """The shipped model folder name of ``method`` for ``ndim``-D data."""
    table = SHIPPED if ndim == 2 else SHIPPED_3D
    if method not in table:
        raise ValueError(f"no shipped {ndim}-D model for {method!r} (shipped: {', '.join(sorted(table))}); "
                         f"pass --model DIR (train one with `clinloop train --method {MODEL_METHOD[method]} "
                         f"--ndim {ndim} ...`)")
    return table[method]


def _load(method: str, model_dir: str | None, ndim: int = 2):
    from clinloop.models.mecca.model import load_mecca
    from clinloop.models.registry import resolve_model_dir

    if model_dir is None:
        name = shipped_name(method, ndim)
        try:
            d = resolve_model_dir(name)
        except ValueError as e:
            raise ValueError(f"no shipped model for {method!r} ({name}); pass --model DIR "
                             f"(train one with `clinloop train --method {MODEL_METHOD[method]} ...`)") from e
    else:
        d = resolve_model_dir(model_dir)
    model = load_mecca(d)
    if model.cfg.method != MODEL_METHOD[method]:
        raise ValueError(f"{d}: holds a {model.cfg.method!r} model, not {MODEL_METHOD[method]!r} (--method {method})")
    if model_dir is not None and model.cfg.ndim != ndim:
        raise ValueError(f"{d}: holds a {model.cfg.ndim}-D model but the data are {ndim}-D (--ndim)")
    return model, d


def evaluate_cases(model, cases, steps: int, seed: int, hint_points: int | None = None,
                   per_case: bool = False) -> dict[str, Any]:
    """Score ``cases`` = iterable of ``(image (C,*s), label (*s) bool, spacing[, case_id])``;
    ``per_case`` adds ``per_case``: one ``{case_id, dice, misunderstanding}`` per case."""
    from clinloop.metrics import assd, dice
    from clinloop.models.mecca.model import simulate

    rng = np.random.default_rng(seed)
    D, A, S, M, F, ids = [], [], [], [], [], []
    for k, case in enumerate(cases):
        image, label, spacing = case[:3]
        ids.append(str(case[3]) if len(case) > 3 else str(k))
        out = simulate(model, image, label, steps, rng, hint_points)
        diag = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(label.shape, spacing))))
        d_row, a_row = [], []
        for prob in out["probabilities"]:
            m = prob > 0.5
            d_row.append(dice(m, label))
            a = assd(m, label, spacing)
            a_row.append(a if math.isfinite(a) else diag)
        D.append(d_row)
        A.append(a_row)
        S.append(out["seconds"])
        M.append(out["misunderstanding"])
        F.append(out["flips"])
    n = len(D)
    mean = (lambda x: np.asarray(x, dtype=np.float64).mean(0).round(4).tolist()) if n else (lambda x: [])
    out = {"n_cases": n, "dice_per_step": mean(D), "assd_per_step": mean(A), "seconds_per_step": mean(S),
           "misunderstanding_per_step": mean(M), "flips_per_step": mean(F)}
    if per_case:
        out["per_case"] = [{"case_id": i, "dice": [round(float(v), 4) for v in d], "misunderstanding": [int(v) for v in m],
                            "flips": [int(v) for v in f]} for i, d, m, f in zip(ids, D, M, F)]
    return out


def iter_cases(dataset, model, fusion: str, size: int | None, limit: int | None, seed: int, hold_back: bool = True):
    """Held-back, non-empty cases of ``dataset`` prepared like training (crop + fusion)."""
    from clinloop.training.mecca import prepare

    train_patients = set(model.data.get("train_patients", [])) if hold_back else set()
    order = np.random.default_rng(seed).permutation(len(dataset))
    n = 0
    for i in order:
        if limit is not None and n >= limit:
            return
        if dataset.patient_ids[int(i)] in train_patients:
            continue
        s = dataset[int(i)]
        if s.spatial_ndim != model.cfg.ndim or not s.rater_valid.any():
            continue
        x, y = prepare(s, fusion, size or None, seed)
        if not y.any():
            continue
        n += 1
        yield x, y, tuple(s.spacing), s.case_id


def open_dataset(path, fmt: str | None, ndim: int, label: str | None = None):
    """The dataset to evaluate: any layout (LIDC as nodule volumes for 3-D models), or
    one image/volume file plus ``label`` (a mask file read with ``clinloop.data.io.read_mask``)."""
    from dataclasses import replace

    from clinloop.data import ListDataset, detect_format, load_dataset

    if label is not None:
        from clinloop.data.io import read_mask

        s = load_dataset(path, format=fmt or "single")[0]
        m = read_mask(label, like_shape=s.spatial_shape)
        s = replace(s, masks=np.asarray(m, bool)[None], rater_valid=np.ones(1, bool), rater_ids=["label"])
        return ListDataset([s], name=str(path))
    name = fmt or detect_format(path)
    opts = {"volumes": True} if (name == "lidc" and ndim == 3) else {}
    return load_dataset(path, format=name, **opts)


def data_ndim(path, fmt: str | None, label: str | None = None) -> int:
    """Spatial dimensionality of the data's first case as read by default (LIDC: 2-D slices)."""
    ds = open_dataset(path, fmt, 2, label)
    if len(ds) == 0:
        raise ValueError(f"{path}: no cases")
    return int(ds[0].spatial_ndim)


def run(args) -> int:
    from clinloop.atomic import atomic_write_text

    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    label = getattr(args, "label", None)
    ndim = getattr(args, "ndim", None)
    if ndim is None:
        if args.model is not None:
            from clinloop.models.mecca.config import MECCAConfig
            from clinloop.models.registry import resolve_model_dir

            ndim = MECCAConfig.load(resolve_model_dir(args.model) / "config.json").ndim
        else:
            ndim = data_ndim(args.data, args.format, label)
    model, _ = _load(args.method, args.model, ndim)
    ds = open_dataset(args.data, args.format, ndim, label)
    size = model.cfg.size if args.size is None else args.size
    cases = iter_cases(ds, model, args.fusion, size, args.limit, args.seed, hold_back=not args.all_patients)
    res = evaluate_cases(model, cases, args.steps, args.seed, args.hint_points, getattr(args, "per_case", False))
    if res["n_cases"] == 0:
        raise ValueError(f"{args.data}: no held-back {model.cfg.ndim}-D case with a non-empty {args.fusion} label")
    out = {"method": args.method, "protocol": "mecca", **res}
    out = {k: out[k] for k in RESULT_KEYS + ("per_case",) if k in out}
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))
    return 0


# ---------------------------------------------------------------- semi-supervised table
def semisupervised_table(data: str, out_dir: str, fractions=(0.125, 0.25, 0.5, 1.0), iterations: int = 200,
                         max_minutes: float = 10.0, limit: int = 100, steps: int = 5, seed: int = 0,
                         extra_train_args: list[str] | None = None) -> dict[str, Any]:
    """Table 2 / Table 3 of mecca.txt at our scale: train MECCA with each labeled
    fraction (the rest unlabeled, Eq. 6), evaluate each with this protocol; writes
    ``semisupervised.json`` and ``semisupervised.png`` into ``out_dir``."""
    from clinloop.atomic import atomic_write_text
    from clinloop.cli.train import run as train_run

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for f in fractions:
        mdir = out / f"mecca-labeled-{f:g}"
        if not (mdir / "config.json").is_file():
            ns = argparse.Namespace(method="mecca", help=False)
            train_run(ns, ["--data", data, "--out", str(mdir), "--seed", str(seed), "--labeled-fraction", str(f),
                           "--iterations", str(iterations), "--max-minutes", str(max_minutes),
                           *(extra_train_args or [])])
        ev = argparse.Namespace(method="mecca", protocol="mecca", data=data, format=None, model=str(mdir),
                                limit=limit, seed=seed, out=str(mdir / "results.json"), steps=steps,
                                fusion="majority", size=None, hint_points=None, all_patients=False, label=None)
        if not (mdir / "results.json").is_file():  # fractions may be trained/evaluated by parallel calls
            run(ev)
        res = json.loads((mdir / "results.json").read_text())
        rows.append({"labeled_fraction": f, **{k: res[k] for k in ("n_cases", "dice_per_step", "assd_per_step",
                                                                 "misunderstanding_per_step")}})
    table = {"protocol": "mecca", "method": "mecca", "steps": steps, "rows": rows}
    atomic_write_text(out / "semisupervised.json", json.dumps(table, indent=2) + "\n")
    plot_semisupervised(table, out / "semisupervised.png")
    return table


# ---------------------------------------------------------------- robustness comparison
def paired_bootstrap(diffs_by_case: dict[str, list[float]], n_boot: int = 2000, seed: int = 0,
                     groups: dict[str, str] | None = None) -> dict[str, Any]:
    """Mean paired difference and its percentile bootstrap 95 % interval. A case drawn
    under several seeds contributes the mean of its differences (repeated cases are not
    independent). With ``groups`` (case id → patient) whole patients are resampled
    (cluster bootstrap: slices or nodules of one patient are correlated), otherwise cases."""
    keys = list(diffs_by_case)
    per_case = np.array([np.mean(diffs_by_case[k]) for k in keys], dtype=np.float64)
    if per_case.size == 0:
        return {"n_cases": 0, "mean": None, "ci95": None, "fraction_positive": None}
    rng = np.random.default_rng(seed)
    if groups is None:
        boots = per_case[rng.integers(0, per_case.size, size=(n_boot, per_case.size))].mean(1)
        n_groups = int(per_case.size)
    else:
        g = np.array([groups.get(k, k) for k in keys])
        uniq, inv = np.unique(g, return_inverse=True)
        sums = np.bincount(inv, weights=per_case, minlength=uniq.size)
        counts = np.bincount(inv, minlength=uniq.size).astype(np.float64)
        pick = rng.integers(0, uniq.size, size=(n_boot, uniq.size))
        boots = sums[pick].sum(1) / counts[pick].sum(1)
        n_groups = int(uniq.size)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"n_cases": int(per_case.size), "n_clusters": n_groups, "mean": round(float(per_case.mean()), 4),
            "ci95": [round(float(lo), 4), round(float(hi), 4)],
            "fraction_positive": round(float((per_case > 0).mean()), 4),
            "fraction_negative": round(float((per_case < 0).mean()), 4)}


def summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation over runs (seeds) of each per-step list."""
    out: dict[str, Any] = {"n_runs": len(runs), "n_cases": [r["n_cases"] for r in runs]}
    for key in ("dice_per_step", "assd_per_step", "misunderstanding_per_step", "flips_per_step", "seconds_per_step"):
        a = np.asarray([r[key] for r in runs], dtype=np.float64)
        out[key] = {"mean": a.mean(0).round(4).tolist(),
                    "sd": (a.std(0, ddof=1) if len(runs) > 1 else np.zeros(a.shape[1])).round(4).tolist()}
    return out


def compare(data: str, methods, seeds, limit: int | None, steps: int = 5, ndim: int | None = None,
            models: dict[str, str] | None = None, fmt: str | None = None, fusion: str = "majority",
            label: str | None = None, all_patients: bool = False) -> dict[str, Any]:
    """Every method on the same held-back cases for each seed; see the module docstring.

    ``models`` maps a method to a model folder (default: the shipped one for ``ndim``)."""
    methods = list(methods)
    if len(methods) < 1:
        raise ValueError("compare needs at least one method")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    models = dict(models or {})
    if ndim is None:
        ndim = data_ndim(data, fmt, label)
    loaded = {m: _load(m, models.get(m), ndim) for m in methods}
    ds = open_dataset(data, fmt, ndim, label)
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for seed in seeds:
        for m in methods:
            model, d = loaded[m]
            cases = iter_cases(ds, model, fusion, model.cfg.size, limit, seed, hold_back=not all_patients)
            r = evaluate_cases(model, cases, steps, seed, per_case=True)
            r.update({"seed": seed, "model": str(d)})
            runs[m].append(r)
    ref = methods[0]
    patient = dict(zip(ds.case_ids, ds.patient_ids))  # cluster bootstrap over patients
    paired = {}
    for m in methods[1:]:
        diffs: dict[str, list[float]] = {}
        mis: dict[str, list[float]] = {}
        for ra, rb in zip(runs[ref], runs[m]):
            b = {c["case_id"]: c for c in rb["per_case"]}
            for c in ra["per_case"]:
                if c["case_id"] in b:
                    diffs.setdefault(c["case_id"], []).append(c["dice"][-1] - b[c["case_id"]]["dice"][-1])
                    mis.setdefault(c["case_id"], []).append(
                        float(c["misunderstanding"][-1] - b[c["case_id"]]["misunderstanding"][-1]))
        paired[f"{ref} - {m}"] = {"dice_last_step": paired_bootstrap(diffs, groups=patient),
                                  "misunderstanding_last_step": paired_bootstrap(mis, groups=patient)}
    return {"protocol": "mecca", "data": str(data), "ndim": ndim, "steps": steps, "seeds": list(seeds),
            "limit": limit, "methods": methods,
            "models": {m: str(loaded[m][1]) for m in methods},
            "summary": {m: summarise_runs(runs[m]) for m in methods}, "paired": paired,
            "runs": {m: [{k: v for k, v in r.items()} for r in runs[m]] for m in methods}}


def compare_table(res: dict[str, Any]) -> str:
    """Markdown table of a :func:`compare` result (mean ± sd over seeds)."""
    last = res["steps"] - 1
    rows = ["| method | Dice step 1 | Dice step %d | ASSD step %d | misunderstanding step %d | harmful flips step %d | s/step |"
            % ((res["steps"],) * 4), "|---|---|---|---|---|---|---|"]
    for m in res["methods"]:
        s = res["summary"][m]
        f = lambda key, i, p=3: f"{s[key]['mean'][i]:.{p}f} ± {s[key]['sd'][i]:.{p}f}"
        rows.append(f"| {m} | {f('dice_per_step', 0)} | {f('dice_per_step', last)} | {f('assd_per_step', last, 2)} | "
                    f"{f('misunderstanding_per_step', last, 1)} | {f('flips_per_step', last, 1)} | {s['seconds_per_step']['mean'][last]:.3f} |")
    lines = ["\n".join(rows), ""]
    for k, v in res["paired"].items():
        d, mu = v["dice_last_step"], v["misunderstanding_last_step"]
        lines.append(f"- {k}: Dice@{res['steps']} difference {d['mean']:+.4f} (95 % CI {d['ci95'][0]:+.4f} .. "
                     f"{d['ci95'][1]:+.4f}, {d['n_cases']} cases of {d['n_clusters']} patients, first better on {d['fraction_positive']:.0%}, "
                     f"worse on {d['fraction_negative']:.0%}); misunderstanding@{res['steps']} difference "
                     f"{mu['mean']:+.1f} (95 % CI {mu['ci95'][0]:+.1f} .. {mu['ci95'][1]:+.1f})")
    return "\n".join(lines)


def plot_semisupervised(table: dict[str, Any], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in table["rows"]:
        d = r["dice_per_step"]
        ax.plot(range(1, len(d) + 1), d, marker="o", label=f"{r['labeled_fraction']:g} labeled")
    ax.set_xlabel("interaction step")
    ax.set_ylabel("Dice")
    ax.set_title("MECCA, semi-supervised (held-back cases)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m clinloop.evaluation.mecca_protocol")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("semisup", help="semi-supervised table (1/8, 1/4, 1/2, 1/1 labeled)")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--iterations", type=int, default=200)
    s.add_argument("--max-minutes", type=float, default=10.0)
    s.add_argument("--limit", type=int, default=100)
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fractions", default="0.125,0.25,0.5,1")
    c = sub.add_parser("compare", help="methods on the same held-back cases over several seeds, paired bootstrap")
    c.add_argument("--data", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--methods", default="mecca,mecca-no-confidence,interactive-cnn",
                   help="comma-separated; the first is compared pairwise with each other")
    c.add_argument("--seeds", default="0,1,2")
    c.add_argument("--limit", type=int, default=None, help="held-back cases per seed (default all)")
    c.add_argument("--steps", type=int, default=5)
    c.add_argument("--ndim", type=int, choices=(2, 3), default=None)
    c.add_argument("--format", default=None)
    c.add_argument("--fusion", default="majority")
    c.add_argument("--label", default=None)
    c.add_argument("--model", action="append", default=[], metavar="METHOD=DIR",
                   help="model folder for a method (default: the shipped one); repeatable")
    c.add_argument("--threads", type=int, default=1)
    a, extra = p.parse_known_args(argv)
    if a.cmd == "compare":
        import torch

        from clinloop.atomic import atomic_write_text

        torch.set_num_threads(max(1, a.threads))
        models = dict(kv.split("=", 1) for kv in a.model)
        res = compare(a.data, a.methods.split(","), [int(x) for x in a.seeds.split(",")], a.limit, a.steps,
                      a.ndim, models, a.format, a.fusion, a.label)
        res["command"] = "python -m clinloop.evaluation.mecca_protocol " + " ".join(argv if argv is not None else sys.argv[1:])
        atomic_write_text(a.out, json.dumps(res, indent=2) + "\n")
        print(compare_table(res))
        return 0
    fr = tuple(float(x) for x in a.fractions.split(","))
    t = semisupervised_table(a.data, a.out, fr, a.iterations, a.max_minutes, a.limit, a.steps, a.seed, extra)
    print(json.dumps(t, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
