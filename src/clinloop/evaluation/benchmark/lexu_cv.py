"""lexu.txt Table 2 on RIGA cup, cross-validated (part of the ``lexu`` suite): stage
``lexu-riga-cup-cv``. The 47 BinRushed2 photos in 4 folds (fold seed 0,
:func:`clinloop.evaluation.lexu_cv.kfold_cases`), so each photo is held out exactly once;
per fold LEXU and the plain U-Net are trained by ``lexu-riga-cup``'s recipe (CNN, 96²,
100 epochs, batch 4, lr 2e-3, β = 5, seed 0; ``--quick``: 2 epochs) into
``out/models/lexu-riga-cup-cv/`` (resumable, per fold) and evaluated by the LEXU
protocol's per-image code. Reported: Spearman and distance correlation over the 47
pooled out-of-fold photos (intervals: bootstrap over photos), their per-fold Spearman,
and the per-image means of NCC, soft Dice and NLL. ~8 trainings of ~100-150 s on 1 thread.
"""
from __future__ import annotations

from clinloop.evaluation.benchmark.base import Context, Stage
from clinloop.evaluation.benchmark.stats import bootstrap_ci, bootstrap_statistic, fmt_ci, n_label

NAME = "lexu-riga-cup-cv"
METHODS = ("lexu", "unet")
FOLDS, FOLD_SEED = 4, 0


def _compute(ctx: Context) -> dict:
    import json

    from clinloop.data import load_dataset
    from clinloop.evaluation.lexu_cv import kfold_cases, run_fold, summarise
    from clinloop.metrics import distance_correlation, spearman
    from clinloop.models.lexu.config import LexuConfig

    epochs = ctx.size(2, 100, 100)
    ds = load_dataset(ctx.data_root / "riga_binrushed2", format="riga", structure="cup")
    folds = kfold_cases(len(ds), FOLDS, FOLD_SEED)
    out = ctx.out / "models" / NAME / f"{epochs}-epochs"
    out.mkdir(parents=True, exist_ok=True)
    (out / "folds.json").write_text(json.dumps([[ds.case_ids[i] for i in f] for f in folds]) + "\n")
    template = LexuConfig(size=96, epochs=epochs, batch_size=4, lr=2e-3, beta=5.0, seed=0, structure="cup")
    result = {"folds": FOLDS, "fold_seed": FOLD_SEED, "epochs": epochs, "methods": {}}
    for method in METHODS:
        done = [run_fold(template, method, f, folds, ds, out) for f in range(FOLDS)]
        rows = [{"case_id": r["case_id"], "fold": d["fold"], "model_sum": r["model_sum"], "rater_sum": r["rater_sum"],
                 **{k: r[k] for k in ("ncc", "soft_dice", "nll")}} for d in done for r in d["rows"]]
        cases = [r["case_id"] for r in rows]  # RIGA: one photo per patient
        cols = {"x": [r["model_sum"] for r in rows], "y": [r["rater_sum"] for r in rows]}
        ci = {k: bootstrap_ci([r[k] for r in rows], cases, seed=ctx.seed) for k in ("ncc", "soft_dice", "nll")}
        ci["spearman"] = bootstrap_statistic(cols, lambda x, y: spearman(x, y), cases, seed=ctx.seed)
        ci["distance_correlation"] = bootstrap_statistic(cols, lambda x, y: distance_correlation(x, y), cases,
                                                         seed=ctx.seed)
        s = summarise(done)
        result["methods"][method] = {"ci": ci, "spearman_folds": s["spearman_folds"],
                                     "train_seconds": s["train_seconds"], "cases": rows}
    return result


def stages(ctx: Context) -> list[Stage]:
    return [Stage(NAME, _compute, {"data": "riga_binrushed2", "structure": "cup", "methods": list(METHODS),
                                   "folds": FOLDS, "fold_seed": FOLD_SEED, "epochs": ctx.size(2, 100, 100)})]


def section(recs: dict[str, dict]) -> str:
    from clinloop.evaluation.benchmark.report import table

    r = recs.get(NAME, {}).get("result")
    if not r:
        return ""
    rows = []
    for m, v in r["methods"].items():
        c = v["ci"]
        rows.append([m, fmt_ci(c["spearman"]), " / ".join(f"{x:.2f}" for x in v["spearman_folds"]),
                     fmt_ci(c["distance_correlation"]), fmt_ci(c["ncc"]), fmt_ci(c["soft_dice"]), fmt_ci(c["nll"]),
                     n_label(c["soft_dice"])])
    return ("\n### RIGA cup, cross-validated (every photo held out once)\n\n"
            + table(["method", "SR ↑ (pooled)", "SR per fold", "DC ↑ (pooled)", "NCC ↑", "soft Dice ↑", "NLL ↓",
                     "images"], rows)
            + f"\n\n{r['folds']} folds of the 47 BinRushed2 photos (fold seed {r['fold_seed']}), each method trained "
              f"per fold by `lexu-riga-cup`'s recipe ({r['epochs']} epochs); SR and DC over the pooled out-of-fold "
              "photos (each fold's model has its own uncertainty scale, which pooling mixes: hence the per-fold SR), "
              "intervals by bootstrap over photos. The paper's figures are on RIGA's test set (three GPU runs).\n")
