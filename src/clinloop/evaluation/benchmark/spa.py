"""SPA's Table 1 (Dice after 1 and 3 iterations) and the clicks-to-threshold table
(spa.txt Fig. 4 / meduhip.txt Table 3: NoC, max 6 iterations, failure = 10, and the
failure rate) for the interactive methods the project ships, through the spa
protocol (``clinloop.evaluation.spa_protocol``, a ``PreferredRaterUser`` per case).

Methods: ``spa`` (``spa-lidc``), ``meduhip`` (``meduhip-lidc``),
``click-litemedsam`` (``click-litemedsam-lidc``), ``box-litemedsam`` (pretrained
LiteMedSAM, tight box then clicks) on LIDC; ``spa-general`` on the other datasets of
its training mix (:mod:`~clinloop.evaluation.benchmark.spa_datasets`, stages
``spa-general-<source>``).
Cases: SPA's held-out patients, non-empty majority. Sizes: ``--quick`` 3 slices;
default one middle slice per nodule (97 slices, 6 iterations, est. ~25 min for the four
methods on one core); ``--full`` every slice of those patients (512). Stages:
``spa-<method>``, and the non-interactive rows (one prediction against the same users'
targets): ``spa-lexu`` (the shipped LEXU), ``spa-unet`` (U-Net on the raters' majority
vote) and ``spa-ensemble`` (deep ensemble of 5), the last two the ``lexu`` suite's
``unet-lidc`` / ``ensemble-lidc`` (trained by whichever suite needs them first).
"""
from __future__ import annotations

from clinloop.evaluation.benchmark import spa_datasets
from clinloop.evaluation.benchmark.base import Context, Stage
from clinloop.evaluation.benchmark.cases import read_cases
from clinloop.evaluation.benchmark.published import (
    MEDUHIP_TABLE3_LIDC_NOC70,
    SPA_FIG4_LIDC_NOC75,
    SPA_TABLE1_LIDC,
    SPA_TABLE1_NOTE,
)
from clinloop.evaluation.benchmark.stats import bootstrap_ci, fmt, fmt_ci, n_label

TITLE = "SPA Table 1 (Dice after 1 and 3 iterations) and clicks to a Dice threshold"
METHODS = {"spa": "spa-lidc", "meduhip": "meduhip-lidc", "click-litemedsam": "click-litemedsam-lidc",
           "box-litemedsam": "pretrained LiteMedSAM"}
ITERATIONS = 6
LEXU_MODEL = "lexu-lidc"  # the non-interactive rows (5-head CNN, 64²) ...
# ... and the U-Net (majority vote) and deep ensemble trained by its command (the lexu suite's stages)
NONINTERACTIVE = {"lexu": LEXU_MODEL, "unet": "unet-lidc", "ensemble": "ensemble-lidc"}
NONINTERACTIVE_LABEL = {"lexu": "lexu", "unet": "U-Net (majority vote)", "ensemble": "deep ensemble (5 U-Nets)"}


def _stage(method: str):
    def compute(ctx: Context) -> dict:
        from clinloop.evaluation.benchmark.cases import lidc_dir
        from clinloop.evaluation.spa_protocol import (
            FAIL_VALUE,
            THRESHOLDS,
            SPAProtocolOptions,
            run_protocol,
        )

        raw = ctx.raw_dir(f"spa-{method}")
        opts = SPAProtocolOptions(method=method, data=str(lidc_dir(ctx.data_root)), split="val",
                                  per_nodule=ctx.size(1, 1, None), limit=ctx.size(3, None, None),
                                  iterations=ITERATIONS, seed=ctx.seed, out=str(raw / "results.json"))
        res = run_protocol(opts, verbose=False)
        cases = read_cases(raw / "results_cases.csv")
        pats = [c["patient_id"] for c in cases]
        ci = {f"dice_{k}": bootstrap_ci([c[f"dice_{k}"] for c in cases], pats, seed=ctx.seed)
              for k in range(1, ITERATIONS + 1)}
        for t in THRESHOLDS:
            ci[f"noc_{t}"] = bootstrap_ci([c[f"noc_{t}"] for c in cases], pats, seed=ctx.seed)
            ci[f"fail_{t}"] = bootstrap_ci([float(c[f"noc_{t}"] == FAIL_VALUE) for c in cases], pats, seed=ctx.seed)
        return {"method": method, "model": METHODS[method], "n_cases": res["n_cases"], "protocol": res,
                "ci": ci, "cases": cases}
    return compute


def _noninteractive(method: str):
    """A stage scoring one non-interactive model (Dice@1 = Dice@3: one prediction, thresholded at
    0.5) against the same simulated users' targets as the spa protocol (same cases and seeds),
    minus the slices it was trained on: ``lexu`` (the shipped ``lexu-lidc``) and, trained by the
    ``lexu`` suite's recipe for ``lexu-lidc`` (:data:`NONINTERACTIVE`), ``unet`` and ``ensemble``."""
    def compute(ctx: Context) -> dict:
        from clinloop.evaluation.benchmark.lexu import model_folder

        name = NONINTERACTIVE[method]
        return {**_score_noninteractive(ctx, str(model_folder(ctx, name))), "method": method, "model": name}
    return compute


def _score_noninteractive(ctx: Context, folder: str) -> dict:
    from clinloop.data import load_dataset
    from clinloop.evaluation.benchmark.cases import heldout_lidc, lexu_train_cases, lidc_dir
    from clinloop.interaction.users import PreferredRaterUser, dice
    from clinloop.models.lexu.model import load_lexu

    ds = load_dataset(lidc_dir(ctx.data_root))
    pred = load_lexu(folder)
    trained = lexu_train_cases(folder)
    cases = []
    for pos, i in enumerate(heldout_lidc(ds, per_nodule=ctx.size(1, 1, None), limit=ctx.size(3, None, None))):
        s = ds[i]
        target = PreferredRaterUser.from_raters(s.masks, seed=ctx.seed + pos, rater_valid=s.rater_valid).target
        if ds.case_ids[i] in trained or not target.any():
            continue
        prob = pred.predict(s.image)[0]
        cases.append({"case_id": ds.case_ids[i], "patient_id": s.patient_id, "dice_1": float(dice(prob > 0.5, target))})
    ci = bootstrap_ci([c["dice_1"] for c in cases], [c["patient_id"] for c in cases], seed=ctx.seed)
    return {"n_cases": len(cases), "ci": {"dice_1": ci, "dice_3": ci}, "cases": cases}


def stages(ctx: Context) -> list[Stage]:
    cfg = {"data": "lidc", "split": "val", "per_nodule": ctx.size(1, 1, None), "limit": ctx.size(3, None, None),
           "iterations": ITERATIONS}
    return ([Stage(f"spa-{m}", _stage(m), {**cfg, "model": METHODS[m]}) for m in METHODS]
            + [Stage(f"spa-{m}", _noninteractive(m), {**cfg, "model": name}
                     | ({} if m == "lexu" else {"epochs": ctx.size(2, 30, 30)}))
               for m, name in NONINTERACTIVE.items()]
            + spa_datasets.stages(ctx))


def _ours(recs: dict[str, dict]) -> list[tuple[str, dict]]:
    return [(m, recs[f"spa-{m}"]["result"]) for m in METHODS if f"spa-{m}" in recs]


def section(ctx: Context, recs: dict[str, dict]) -> str:
    from clinloop.evaluation.benchmark.report import sizes_line, table

    ours = _ours(recs)
    rows = [[f"{m} (`{r['model']}`, ours)", fmt_ci(r["ci"]["dice_1"]), fmt_ci(r["ci"]["dice_3"]), n_label(r["ci"]["dice_1"])]
            for m, r in ours]
    for m, label in NONINTERACTIVE_LABEL.items():
        lx = recs.get(f"spa-{m}", {}).get("result")
        if lx:
            rows.append([f"{label} (`{lx['model']}`, non-interactive: one prediction, ours)",
                         fmt_ci(lx["ci"]["dice_1"]), "—", n_label(lx["ci"]["dice_1"])])
    rows += [[f"{name} [{cat}] (**published**)", f"{float(d1) / 100:.4f}", "—" if d3 is None else f"{float(d3) / 100:.4f}",
              "3,019"] for name, cat, d1, d3 in SPA_TABLE1_LIDC]
    text = [f"## {TITLE}\n", "### Dice after 1 and 3 iterations (spa.txt Table 1, LIDC column)\n",
            table(["method", "Dice@1", "Dice@3", "cases"], rows),
            f"\nWhat differs: {SPA_TABLE1_NOTE} Ours: `lidc_crops_dev.npz` (40 % of the patients), SPA's held-out "
            "patients, one simulated user per case whose target fuses a seeded random subset of the raters; our "
            "backbone is LiteMedSAM (TinyViT, 256²) fine-tuned on a CPU budget, box-litemedsam is the pretrained "
            "model with a tight box first; the LEXU row is the shipped 5-head CNN (64², its own 70/30 patient split: "
            "the slices it was trained on are left out), the U-Net (trained on the raters' majority vote) and the "
            "deep ensemble (5 such U-Nets) are trained by its command on the same split (the lexu suite's "
            "`unet-lidc` and `ensemble-lidc`, 30 epochs), all scored against the same users' targets. Published Dice "
            "is in % in the paper, shown here as a fraction.\n"]
    from clinloop.evaluation.spa_protocol import THRESHOLDS

    nrows = [[f"{m} (ours)"] + [fmt_ci(r["ci"][f"noc_{t}"], 2) for t in THRESHOLDS]
             + [fmt(r["ci"][f"fail_{t}"]["mean"], 2) for t in ("0.8", "0.9")] for m, r in ours]
    nrows += [[f"{n} (**published**, meduhip.txt Table 3)", v, "—", "—", "—", "—", "—", "—"]
              for n, v in MEDUHIP_TABLE3_LIDC_NOC70]
    nrows.append([f"{SPA_FIG4_LIDC_NOC75[0]} (**published**, spa.txt §4.3.2 text on Fig. 4)", "—",
                  SPA_FIG4_LIDC_NOC75[1], "—", "—", "—", "—", "—"])
    text += ["### Iterations to reach a Dice threshold (max 6, failure = 10) and failure rate\n",
             table(["method"] + [f"NoC@{t}" for t in THRESHOLDS] + ["fail@0.8", "fail@0.9"], nrows),
             "\nWhat differs: as above; the papers' NoC figures for LIDC are NoC@0.70 (MedUHIP Table 3) and "
             "the 0.75 figure in SPA's text; Fig. 4's other bars and the failure rates are only in the figure "
             "and the appendix (not in our copy).\n"]
    text += [spa_datasets.section(ctx, recs), sizes_line(recs)]
    return "\n".join(text)


def figures(ctx: Context, recs: dict[str, dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clinloop.evaluation.benchmark.report import save_figure

    ours = _ours(recs)
    if not ours:
        return []
    fig, ax = plt.subplots(figsize=(5, 3.4))
    its = list(range(1, ITERATIONS + 1))
    for m, r in ours:
        c = [r["ci"][f"dice_{k}"] for k in its]
        ax.plot(its, [x["mean"] for x in c], marker="o", label=m)
        if all(x["lo"] is not None for x in c):
            ax.fill_between(its, [x["lo"] for x in c], [x["hi"] for x in c], alpha=0.15)
    ax.set_xlabel("iteration")
    ax.set_ylabel("Dice (95 % CI)")
    ax.set_title("LIDC, held-out patients", fontsize=9)
    ax.legend(fontsize=8)
    return [save_figure(fig, ctx.out / "spa_dice_per_iteration.png")]
