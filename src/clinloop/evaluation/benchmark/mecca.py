"""MECCA (mecca.txt Table 1: Dice and ASSD per method; Fig. 6: Dice per interaction
step) for the shipped 2-D LIDC models, through the MECCA protocol
(``clinloop.evaluation.mecca_protocol``, ``--mode evaluate --per-case``): a
simulated user clicks wrongly predicted boundary points before each of 5 steps.

Methods: ``mecca`` (``mecca-lidc``), ``mecca-no-confidence``, ``interactive-cnn``
(both ``*-lidc``) and the non-interactive ``unet`` (``mecca-unet-lidc``), on the
patients none of them was trained on, majority-vote target. Sizes: ``--quick`` 3
slices; default 200 slices (est. ~25 min on one core); ``--full`` every held-back slice. Stages:
``mecca-<method>``. Not here yet: BraTS and the atrium (no shipped 3-D
BraTS/atrium model), the semi-supervised Table 2 and Table 3 (they train; run
``clinloop evaluate --protocol mecca --mode semisup``).
"""
from __future__ import annotations

from clinloop.evaluation.benchmark.base import Context, Stage
from clinloop.evaluation.benchmark.stats import bootstrap_ci, fmt, fmt_ci, n_label

TITLE = "MECCA: Dice and ASSD per interaction step (mecca.txt Table 1, Fig. 6), LIDC 2-D"
METHODS = {"mecca": "mecca-lidc", "mecca-no-confidence": "mecca-no-confidence-lidc",
           "interactive-cnn": "interactive-cnn-lidc", "unet": "mecca-unet-lidc"}
STEPS = 5
# mecca.txt Table 1 (Dice %, ASSD pixels; 3-D data): BraTS2015 and MM-WHS (the atrium's task) columns
PUBLISHED = (("U-Net", "84.66±11.25", "6.17±4.69", "80.96±1.65", "3.72±0.39"),
             ("InterCNN", "88.26±7.07", "1.81±2.09", "87.85±1.15", "0.80±0.15"),
             ("MECCA", "90.29±5.07", "1.50±0.33", "90.39±5.89", "0.80±0.01"))


def _stage(method: str):
    def compute(ctx: Context) -> dict:
        from clinloop.evaluation.benchmark.cases import lidc_dir
        from clinloop.evaluation.mecca_protocol import (
            MECCAProtocolOptions,
            run_protocol,
        )

        opts = MECCAProtocolOptions(method=method, data=str(lidc_dir(ctx.data_root)), model=METHODS[method],
                                    limit=ctx.size(3, 200, None), seed=ctx.seed, steps=STEPS, per_case=True, ndim=2)
        res = run_protocol(opts, verbose=False)
        cases = res.pop("per_case")
        pats = [str(c["case_id"]).split("/")[0] for c in cases]
        ci = {f"dice_{k + 1}": bootstrap_ci([c["dice"][k] for c in cases], pats, seed=ctx.seed) for k in range(STEPS)}
        return {"method": method, "model": METHODS[method], "n_cases": res["n_cases"], "protocol": res, "ci": ci,
                "cases": cases}
    return compute


def stages(ctx: Context) -> list[Stage]:
    return [Stage(f"mecca-{m}", _stage(m), {"model": d, "limit": ctx.size(3, 200, None), "steps": STEPS})
            for m, d in METHODS.items()]


def section(ctx: Context, recs: dict[str, dict]) -> str:
    from clinloop.evaluation.benchmark.report import sizes_line, table

    rows = []
    for m in METHODS:
        r = recs.get(f"mecca-{m}", {}).get("result")
        if r:
            p = r["protocol"]
            rows.append([f"{m} (`{r['model']}`, ours)", fmt_ci(r["ci"]["dice_1"]), fmt_ci(r["ci"][f"dice_{STEPS}"]),
                         fmt(p["assd_per_step"][-1], 2), fmt(p["misunderstanding_per_step"][-1], 1),
                         fmt(float(sum(p["seconds_per_step"]) / len(p["seconds_per_step"])), 3),
                         n_label(r["ci"]["dice_1"])])
    text = [f"## {TITLE}\n",
            table(["method", "Dice after step 1", f"Dice after step {STEPS}", f"ASSD after step {STEPS} (mm)",
                   f"misunderstood agents, step {STEPS}", "s / step", "slices"], rows),
            "\nPublished (mecca.txt Table 1, 3-D volumes; Dice %, ASSD in pixels, mean ± sd; not our data):\n",
            table(["method", "BraTS2015 Dice", "BraTS2015 ASSD", "MM-WHS Dice", "MM-WHS ASSD"],
                  [[f"{n} (**published**)", *v] for n, *v in PUBLISHED]),
            "\nWhat differs: the paper evaluates 3-D volumes (BraTS, MM-WHS, spleen, liver) after its own "
            "number of steps with GPU-trained A3C agents; ours are the shipped 2-D LIDC slice models (CPU budget), "
            "no LIDC row exists in the paper, ASSD uses the slice spacing (a step with an empty prediction gets "
            "the image diagonal). Dice intervals: patient bootstrap; ASSD: mean only.\n"]
    text.append(sizes_line(recs))
    return "\n".join(text)


def figures(ctx: Context, recs: dict[str, dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clinloop.evaluation.benchmark.report import save_figure

    ours = [(m, recs[f"mecca-{m}"]["result"]) for m in METHODS if f"mecca-{m}" in recs]
    if not ours:
        return []
    fig, ax = plt.subplots(figsize=(5, 3.4))
    steps = list(range(1, STEPS + 1))
    for m, r in ours:
        ax.plot(steps, [r["ci"][f"dice_{k}"]["mean"] for k in steps], marker="o", label=m)
    ax.set_xlabel("interaction step")
    ax.set_ylabel("Dice")
    ax.set_title("Dice per step (mecca.txt Fig. 6 analogue), LIDC 2-D", fontsize=9)
    ax.legend(fontsize=8)
    return [save_figure(fig, ctx.out / "mecca_dice_per_step.png")]
