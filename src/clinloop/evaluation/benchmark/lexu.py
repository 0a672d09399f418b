"""LEXU (lexu.txt Tables 2–3, §4.2 quality control, §4.3 example difficulty) for the
shipped LEXU models, through the LEXU protocol (``clinloop.evaluation.lexu_protocol``).

* ``lexu-riga-cup``: ``lexu-riga-cup`` on RIGA BinRushed2 cup, its held-out images
  (``data.json`` test cases; 14); the paper's RIGA cup rows (DE, LE, LEXU) beside it.
* ``lexu-lidc``: ``lexu-lidc`` on its held-out LIDC patients (the paper has no LIDC
  row).

Spearman (SR) and distance correlation (DC) are correlations over images: their
intervals bootstrap the statistic over patients; soft Dice, NCC, NLL and GED are
per-image means. Sizes: ``--quick`` 5 images, 2 for the difficulty test; default
LIDC 300 images / RIGA all 14, difficulty 40 / 14 (est. ~3 min, plus ~100 s per β model); ``--full`` every held-out
LIDC slice (1,869).
* ``lexu-riga-cup-beta-<β>`` (lexu.txt Table 3, the heatmap-loss weight β on RIGA): for
  β = 0, 3 and 10 a model is trained with the shipped
  ``lexu-riga-cup`` command but that β (96², 100 epochs, batch 4, lr 2e-3, seed 0; ~100 s
  each on 1 thread; ``--quick``: 2 epochs) into ``out/models/<stage>/`` and evaluated as
  ``lexu-riga-cup`` is; β = 5 is the shipped model itself (the same command). Training
  resumes, and a finished model there is reused, also by ``--force`` (delete it to retrain).

* Rows no shipped model covers, each trained the same way (the ``lexu-riga-cup``
  recipe: CNN, 96², 100 epochs, batch 4, lr 2e-3, seed 0, 1 thread; ``--quick``: 2
  epochs) into ``out/models/<stage>/`` and evaluated by the same protocol
  (:data:`TRAINED`): the paper's baselines on RIGA cup, ``ensemble-riga-cup`` (DE, 5
  nets; ~8 min) and ``layer-ensemble-riga-cup`` (LE); Drishti-GS1 cup on its official
  50 / 51 split, ``lexu-drishti-cup`` and ``unet-drishti-cup`` (~4 min each; its
  four "raters" are the nested agreement thresholds, so GED there is not against
  the experts); QUBIQ brain growth (27 / 12 cases), ``lexu-qubiq`` and ``unet-qubiq``;
  and ``unet-lidc``, the plain U-Net trained by the shipped ``lexu-lidc``'s recipe (without its augmentation flags)
  (64², 1,200 training slices, batch 8, lr 1e-3, 30 epochs, ~13 min; ``--quick``: 2 epochs
  on 64 slices), so that LEXU's LIDC row has a U-Net of equal budget on the same split,
  and ``ensemble-lidc``, a deep ensemble (5 nets) by the same command (~35 min); the
  ``spa`` suite scores both against its simulated users' targets
  (:func:`trained_model`: whichever suite comes first trains them).
* ``lexu-riga-cup-cv`` (:mod:`~clinloop.evaluation.benchmark.lexu_cv`): RIGA cup
  cross-validated, LEXU and the U-Net in 4 folds of all 47 photos.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from clinloop.evaluation.benchmark import lexu_cv
from clinloop.evaluation.benchmark.base import Context, Stage, folder_lock
from clinloop.evaluation.benchmark.stats import (
    bootstrap_ci,
    bootstrap_statistic,
    fmt,
    fmt_ci,
    n_label,
)

TITLE = "LEXU: uncertainty–disagreement correlation and segmentation (lexu.txt Table 2)"
# lexu.txt Table 2, RIGA, cup columns (SR, DC, NCC, Dice, NLL; NLL is one column for disc and cup)
PUBLISHED_RIGA_CUP = (("DE (deep ensemble, 5 nets)", "0.349", "0.399", "0.607", "0.874", "0.219"),
                      ("LE (layer ensemble)", "-0.517", "0.516", "0.473", "0.869", "0.174"),
                      ("LEXU", "0.689", "0.651", "0.735", "0.856", "0.163"))
DATASETS = {"lexu-riga-cup": ("riga_binrushed2", {"structure": "cup"}), "lexu-lidc": ("lidc", {})}
# lexu.txt Table 3 (RIGA; SR disc, SR cup, DC disc, DC cup, Dice disc, Dice cup, NLL) per β
PUBLISHED_BETA = {0.0: ("-0.594", "-0.524", "0.572", "0.526", "0.974", "0.874", "0.173"),
                  3.0: ("0.690", "0.707", "0.665", "0.657", "0.973", "0.854", "0.166"),
                  5.0: ("0.712", "0.673", "0.680", "0.643", "0.971", "0.855", "0.163"),
                  10.0: ("0.661", "0.606", "0.680", "0.634", "0.965", "0.818", "0.161")}
BETAS = (0.0, 3.0, 10.0)  # β = 5: the shipped lexu-riga-cup, trained by the same command


@dataclass(frozen=True)
class Trained:
    """A model a table needs and no shipped model covers: ``method`` trained on ``folder``
    (reader options ``reader``) by the ``lexu-riga-cup`` recipe plus ``train`` options."""

    label: str
    method: str
    folder: str
    reader: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    epochs: int = 100  # default and --full (--quick: 2)


def beta_stage_name(beta: float) -> str:
    return f"lexu-riga-cup-beta-{beta:g}"


_CUP = {"structure": "cup"}
# the shipped lexu-lidc's command, without its augmentation flags
LIDC_RECIPE = {"size": 64, "batch_size": 8, "lr": 1e-3, "max_cases": 1200}
TRAINED: dict[str, Trained] = {
    **{beta_stage_name(b): Trained(f"lexu-riga-cup, β = {b:g}", "lexu", "riga_binrushed2", _CUP, {"beta": b})
       for b in BETAS},
    "ensemble-riga-cup": Trained("DE (deep ensemble, 5 nets)", "ensemble", "riga_binrushed2", _CUP),
    "layer-ensemble-riga-cup": Trained("LE (layer ensemble)", "layer-ensemble", "riga_binrushed2", _CUP),
    "lexu-drishti-cup": Trained("LEXU", "lexu", "drishti_gs1", _CUP, {"official_split": True}),
    "unet-drishti-cup": Trained("U-Net (p(1−p))", "unet", "drishti_gs1", _CUP, {"official_split": True}),
    "lexu-qubiq": Trained("LEXU", "lexu", "qubiq_brain_growth"),
    "unet-qubiq": Trained("U-Net (p(1−p))", "unet", "qubiq_brain_growth"),
    # the plain U-Net beside the shipped lexu-lidc, trained by its command (64², 1,200 training
    # slices of the same patient split, 30 epochs): lexu-lidc's soft Dice against a U-Net of equal budget
    "unet-lidc": Trained("U-Net (p(1−p))", "unet", "lidc", {}, LIDC_RECIPE, epochs=30),
    # a deep ensemble by the same command: lexu.txt Table 2's DE row on LIDC, and spa.txt Table 1's
    # "Ensemble UNet" row (the spa suite scores it against the simulated users' targets)
    "ensemble-lidc": Trained("DE (deep ensemble, 5 nets)", "ensemble", "lidc", {}, LIDC_RECIPE, epochs=30),
}
DATA_LABEL = {"lidc": "lidc", "riga_binrushed2": "RIGA cup", "drishti_gs1": "Drishti-GS1 cup",
              "qubiq_brain_growth": "QUBIQ brain growth"}


def _evaluate(ctx: Context, name: str, model: str, folder: str, extra: dict, method: str = "lexu") -> dict:
    """The LEXU protocol of ``model`` on ``folder`` into the raw folder of stage ``name``,
    with the patient-bootstrap intervals of the report."""
    from clinloop.data import load_dataset
    from clinloop.evaluation.lexu_protocol import LexuProtocolOptions, run_protocol
    from clinloop.metrics import distance_correlation, spearman

    data = ctx.data_root / folder
    if not data.exists():
        raise FileNotFoundError(f"{data}: needed by stage {name}")
    raw = ctx.raw_dir(name)
    limit = ctx.size(5, 300 if folder == "lidc" else None, None)
    opts = LexuProtocolOptions(method=method, data=str(data), model=model, limit=limit, seed=ctx.seed,
                               difficulty_cases=ctx.size(2, 40, 40), out=str(raw / "results.json"), **extra)
    res = run_protocol(opts, verbose=False)
    qc = json.loads((raw / "results.qc.json").read_text())
    ds = load_dataset(data, **extra)
    patient = dict(zip(ds.case_ids, ds.patient_ids))
    cases = [{**c, "patient_id": patient.get(c["case_id"], c["case_id"])} for c in qc["cases"]]
    pats = [c["patient_id"] for c in cases]
    cols = {"x": [c["model_sum"] for c in cases], "y": [c["rater_sum"] for c in cases]}
    ci = {k: bootstrap_ci([c[k] for c in cases], pats, seed=ctx.seed) for k in ("soft_dice", "ncc", "nll", "ged")}
    ci["spearman"] = bootstrap_statistic(cols, lambda x, y: spearman(x, y), pats, seed=ctx.seed)
    ci["distance_correlation"] = bootstrap_statistic(cols, lambda x, y: distance_correlation(x, y), pats,
                                                     seed=ctx.seed)
    return {"model": model, "data": folder, "n_cases": res["n_cases"], "protocol": res, "ci": ci,
            "qc_d_auc": qc["d_auc"], "qc_poor": qc["n_poor"], "qc_threshold": qc["threshold"], "cases": cases}


def _stage(model: str):
    def compute(ctx: Context) -> dict:
        folder, extra = DATASETS[model]
        return _evaluate(ctx, model, model, folder, extra)
    return compute


def trained_model(ctx: Context, name: str) -> Path:
    """The folder of :data:`TRAINED` model ``name``, trained first when it is not there (resumable;
    stages of other suites that use it take turns on a lock beside the folder)."""
    from clinloop.training.lexu import LexuTrainOptions, train_model

    t = TRAINED[name]
    epochs = ctx.size(2, t.epochs, t.epochs)
    # out/models/, not raw/: the committed report keeps figures, not weights (.gitignore)
    model_dir = ctx.out / "models" / name / f"{epochs}-epochs"  # a quick run's model is never reused
    kw = {"size": 96, "batch_size": 4, "lr": 2e-3, "alpha": 1.0, "beta": 5.0, "seed": 0,
          "held_out_fraction": 0.3, **t.train}
    if ctx.mode == "quick" and kw.get("max_cases"):
        kw["max_cases"] = min(kw["max_cases"], 64)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(model_dir.parent / f"{model_dir.name}.lock"):
        train_model(LexuTrainOptions(method=t.method, data=str(ctx.data_root / t.folder), out=str(model_dir),
                                     epochs=epochs, threads=ctx.options.threads, resume=True, **t.reader, **kw))
    return model_dir


def model_folder(ctx: Context, name: str) -> Path:
    """A shipped model's folder, or a :data:`TRAINED` one's (trained first when missing)."""
    from clinloop.models.registry import resolve_model_dir

    return trained_model(ctx, name) if name in TRAINED else Path(resolve_model_dir(name))


def _trained_stage(name: str):
    def compute(ctx: Context) -> dict:
        import time

        t = TRAINED[name]
        t0 = time.perf_counter()
        model_dir = trained_model(ctx, name)
        seconds = time.perf_counter() - t0
        rec = _evaluate(ctx, name, str(model_dir), t.folder, t.reader, method=t.method)
        extra = {"beta": t.train["beta"]} if "beta" in t.train else {}
        return {**rec, "model": t.label, "method": t.method, **extra, "train_seconds": round(seconds, 1)}
    return compute


def stages(ctx: Context) -> list[Stage]:
    out = [Stage(m, _stage(m), {"model": m, "limit": ctx.size(5, 300 if d == "lidc" else None, None),
                                "difficulty": ctx.size(2, 40, 40), **o}) for m, (d, o) in DATASETS.items()]
    for name, t in TRAINED.items():
        conf = ({"beta": t.train["beta"]} if name.startswith("lexu-riga-cup-beta") else
                {"method": t.method, "data": t.folder, **t.reader, **t.train})  # (the β stages' config as before)
        out.append(Stage(name, _trained_stage(name), {**conf, "epochs": ctx.size(2, t.epochs, t.epochs),
                                                      "difficulty": ctx.size(2, 40, 40)}))
    return out + lexu_cv.stages(ctx)


def section(ctx: Context, recs: dict[str, dict]) -> str:
    from clinloop.evaluation.benchmark.report import sizes_line, table

    def row(label: str, r: dict, data: str) -> list:
        c = r["ci"]
        return [label, data, fmt_ci(c["spearman"]), fmt_ci(c["distance_correlation"]), fmt_ci(c["ncc"]),
                fmt_ci(c["soft_dice"]), fmt_ci(c["nll"]), f"{fmt(r['qc_d_auc'])} ({r['qc_poor']} poor)",
                n_label(c["soft_dice"])]

    rows = [row(f"LEXU `{m}` (ours)", recs[m]["result"], recs[m]["result"]["data"])
            for m in DATASETS if recs.get(m, {}).get("result")]
    others = [n for n in TRAINED if not n.startswith("lexu-riga-cup-beta") and recs.get(n, {}).get("result")]
    rows += [row(f"{TRAINED[n].label} `{n}` (ours)", recs[n]["result"], DATA_LABEL[TRAINED[n].folder])
             for n in others]
    rows += [[f"{n} (**published**)", "RIGA cup", sr, dc, ncc, d, nll, "—", "RIGA test"]
             for n, sr, dc, ncc, d, nll in PUBLISHED_RIGA_CUP]
    text = [f"## {TITLE}\n",
            table(["method", "data", "SR ↑", "DC ↑", "NCC ↑", "soft Dice ↑", "NLL ↓", "QC d-AUC ↓", "images"], rows),
            "\nWhat differs: the paper trains a ResNet50-encoder LEXU for 200 epochs on a GPU (three runs) and "
            "reports RIGA disc/cup and HECKTOR; ours are small CNNs trained on a CPU (`lexu-riga-cup`: 96², "
            "100 epochs, one seeded 33/14 split of the 47 BinRushed2 photos; `lexu-lidc`: 64², 30 epochs; the "
            "rows marked by a stage name are trained by this suite with `lexu-riga-cup`'s recipe: RIGA cup on "
            "the same split, Drishti-GS1 cup on its official 50 / 51 split, QUBIQ brain growth 27 / 12 cases; "
            "`unet-lidc` and `ensemble-lidc` with `lexu-lidc`'s recipe on its split: 64², 1,200 slices, 30 "
            "epochs, no augmentation). "
            "SR and DC intervals bootstrap the correlation over patients (a resample repeats patients, which "
            "adds distance correlation, so DC's interval sits high and can exclude its own estimate); the others "
            "are per-image means. "
            "Drishti-GS1 gives only how many of its 4 experts marked each pixel, so its raters are the nested "
            "thresholds (count ≥ 1 … 4): exact for the soft label, the variance and the image-level disagreement "
            "(SR, DC, NCC, soft Dice), not for anything per expert.\n"]
    text.append(_beta_table(recs))
    text.append(lexu_cv.section(recs))
    for m in [*DATASETS, *(n for n in others if TRAINED[n].method == "lexu")]:
        for kind in ("qc", "difficulty"):
            p = ctx.out / "raw" / m / f"results.{kind}.png"
            if m in recs and p.is_file():
                text.append(f"![{m} {kind}](raw/{m}/results.{kind}.png)\n")
    text.append(sizes_line(recs))
    return "\n".join(text)


def _beta_table(recs: dict[str, dict]) -> str:
    """lexu.txt Table 3: ours on RIGA cup per β (5: the shipped model) beside the paper's cup columns."""
    from clinloop.evaluation.benchmark.report import table

    ours = {b: recs.get(beta_stage_name(b), {}).get("result") for b in BETAS}
    ours[5.0] = recs.get("lexu-riga-cup", {}).get("result")
    rows = []
    for b in sorted(PUBLISHED_BETA):
        r = ours.get(b)
        if r:
            c = r["ci"]
            rows.append([f"β = {b:g} (ours)", fmt_ci(c["spearman"]), fmt_ci(c["distance_correlation"]),
                         fmt_ci(c["soft_dice"]), fmt_ci(c["nll"]), fmt_ci(c["ncc"]), n_label(c["soft_dice"])])
        p = PUBLISHED_BETA[b]
        rows.append([f"β = {b:g} (**published**)", p[1], p[3], p[5], p[6], "—", "RIGA test"])
    if not any(ours.values()):
        return ""
    return ("\n### lexu.txt Table 3: the heatmap-loss weight β, RIGA cup\n\n"
            + table(["β", "SR ↑", "DC ↑", "soft Dice ↑", "NLL ↓", "NCC ↑", "images"], rows)
            + "\n\nOurs: one model per β, trained by `lexu-riga-cup`'s command with only β changed (β = 5 is "
              "the shipped model), one seed, the 14 held-out photos; the published cup columns are means of three "
              "GPU runs (ResNet50 encoder, 200 epochs; NLL is the paper's one column for disc and cup).\n")
