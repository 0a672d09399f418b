"""MECCA's comparisons: the semi-supervised table (§5.3, Table 2) and the
robustness comparison of several methods over seeds with a paired bootstrap
(``clinloop evaluate --protocol mecca --mode semisup|compare``; see
:mod:`clinloop.evaluation.mecca_protocol`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from clinloop.evaluation.mecca_cases import (METHODS, _load, data_ndim, evaluate_cases, evaluate_model, iter_cases,
                                             open_dataset, task_of)


# ---------------------------------------------------------------- semi-supervised table
def semisupervised_table(data: str, out_dir: str, fractions=(0.125, 0.25, 0.5, 1.0), iterations: int = 200,
                         max_minutes: float = 10.0, limit: int = 100, steps: int = 5, seed: int = 0,
                         train_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Table 2 / Table 3 of mecca.txt at our scale: train MECCA with each labeled
    fraction (the rest unlabeled, Eq. 6), evaluate each with this protocol; writes
    ``semisupervised.json`` and ``semisupervised.png`` into ``out_dir``. ``train_options``:
    further :class:`~clinloop.training.mecca.MECCATrainOptions` fields for every run
    (e.g. ``{"size": 48, "width": 12}``)."""
    from clinloop.atomic import atomic_write_text
    from clinloop.config_options import make_options
    from clinloop.training.mecca import MECCATrainOptions, train_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for f in fractions:
        mdir = out / f"mecca-labeled-{f:g}"
        if not (mdir / "config.json").is_file():
            train_model(make_options(MECCATrainOptions, "semisup train_options", **{
                **(train_options or {}), "method": "mecca", "data": data, "out": str(mdir), "seed": seed,
                "labeled_fraction": f, "iterations": iterations, "max_minutes": max_minutes}))
        if not (mdir / "results.json").is_file():  # fractions may be trained/evaluated by parallel calls
            res = evaluate_model("mecca", data, str(mdir), limit=limit, seed=seed, steps=steps)
            atomic_write_text(mdir / "results.json", json.dumps(res, indent=2) + "\n")
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
    task = None if label else task_of(data, fmt)
    loaded = {m: _load(m, models.get(m), ndim, task) for m in methods}
    ds = open_dataset(data, fmt, ndim, label)
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for seed in seeds:
        for m in methods:
            model, d = loaded[m]
            size = model.cfg.size if model.cfg.zoom == 1 and model.cfg.norm == "image" else 0  # volumes: whole
            cases = iter_cases(ds, model, fusion, size, limit, seed, hold_back=not all_patients)
            r = evaluate_cases(model, cases, steps, seed, per_case=True)
            r.update({"seed": seed, "model": str(d)})
            runs[m].append(r)
    ref = methods[0]
    patient = dict(zip(ds.case_ids, ds.patient_ids))  # cluster bootstrap over patients
    paired = {}
    for m in methods[1:]:
        diffs: dict[str, list[float]] = {}
        mis: dict[str, list[float]] = {}
        mis_sum: dict[str, list[float]] = {}
        for ra, rb in zip(runs[ref], runs[m]):
            b = {c["case_id"]: c for c in rb["per_case"]}
            for c in ra["per_case"]:
                if c["case_id"] in b:
                    o = b[c["case_id"]]
                    diffs.setdefault(c["case_id"], []).append(c["dice"][-1] - o["dice"][-1])
                    mis.setdefault(c["case_id"], []).append(float(c["misunderstanding"][-1] - o["misunderstanding"][-1]))
                    mis_sum.setdefault(c["case_id"], []).append(
                        float(np.sum(c["misunderstanding"]) - np.sum(o["misunderstanding"])))
        paired[f"{ref} - {m}"] = {"dice_last_step": paired_bootstrap(diffs, groups=patient),
                                  "misunderstanding_last_step": paired_bootstrap(mis, groups=patient),
                                  "misunderstanding_all_steps": paired_bootstrap(mis_sum, groups=patient)}
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
                     f"{mu['mean']:+.1f} (95 % CI {mu['ci95'][0]:+.1f} .. {mu['ci95'][1]:+.1f})"
                     + (f", summed over the {res['steps']} steps {ma['mean']:+.1f} (95 % CI {ma['ci95'][0]:+.1f} .. "
                        f"{ma['ci95'][1]:+.1f})" if (ma := v.get("misunderstanding_all_steps")) else ""))
    return "\n".join(lines)


def plot_compare(res: dict[str, Any], path) -> None:
    """mecca.txt Fig. 6 (left) for a :func:`compare` result: Dice and ASSD after each
    interaction step per method (mean over seeds, error bars: sd over seeds) → PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    steps = np.arange(1, res["steps"] + 1)
    for m in res["methods"]:
        s = res["summary"][m]
        for ax, key in zip(axes, ("dice_per_step", "assd_per_step")):
            ax.errorbar(steps, s[key]["mean"], yerr=s[key]["sd"], marker="o", capsize=3, label=m)
    axes[0].set_ylabel("Dice")
    axes[1].set_ylabel("ASSD")
    for ax in axes:
        ax.set_xlabel("interaction step")
        ax.set_xticks(steps)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"MECCA protocol, held-back cases of {Path(str(res['data'])).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
