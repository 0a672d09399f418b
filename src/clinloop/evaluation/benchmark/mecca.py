"""MECCA (mecca.txt Table 1: Dice and ASSD per method; Fig. 6: Dice per interaction
step) for the shipped 2-D LIDC models, through the MECCA protocol
(``clinloop.evaluation.mecca_protocol``, ``--mode evaluate --per-case``): a
simulated user clicks wrongly predicted boundary points before each of 5 steps.

Methods: ``mecca`` (``mecca-lidc``), ``mecca-no-confidence``, ``interactive-cnn``
(both ``*-lidc``) and the non-interactive ``unet`` (``mecca-unet-lidc``), on the
patients none of them was trained on, majority-vote target. Sizes: ``--quick`` 3
slices; default 200 slices (est. ~25 min on one core); ``--full`` every held-back slice. Stages:
``mecca-<method>``.

Volumes, the paper's own tasks (stages ``mecca-<task>-<method>``): BraTS 2018 FLAIR
whole tumour (``brats2018_flair/``) and the left atrium (``left_atrium/``), whole
held-back volumes scored at full resolution, for every ``<method>-<task>`` model
that is shipped (``pnet`` is the P-Net without hints). Sizes: ``--quick`` one
volume; default and ``--full`` every held-back volume (2 BraTS, 6 atrium).
The semi-supervised Table 2 on BraTS (stages ``mecca-semisup-brats-<f>`` and their
``-labelled-only`` controls; trains one model per labelled count):
:mod:`~clinloop.evaluation.benchmark.mecca_semisup`.
"""
from __future__ import annotations

from clinloop.evaluation.benchmark.base import Context, Stage
from clinloop.evaluation.benchmark.mecca_record import record as _record
from clinloop.evaluation.benchmark.stats import fmt, fmt_ci, n_label

TITLE = "MECCA: Dice and ASSD per interaction step (mecca.txt Table 1, Fig. 6), LIDC 2-D"
METHODS = {"mecca": "mecca-lidc", "mecca-no-confidence": "mecca-no-confidence-lidc",
           "interactive-cnn": "interactive-cnn-lidc", "unet": "mecca-unet-lidc"}
STEPS = 5
VOLUME_TASKS = {"brats": "brats2018_flair", "atrium": "left_atrium"}
VOLUME_METHODS = ("mecca", "mecca-no-confidence", "interactive-cnn", "pnet")
# mecca.txt Table 1 (Dice %, ASSD pixels; 3-D data): BraTS2015 and MM-WHS (the atrium's task) columns
PUBLISHED = (("U-Net", "84.66±11.25", "6.17±4.69", "80.96±1.65", "3.72±0.39"),
             ("InterCNN", "88.26±7.07", "1.81±2.09", "87.85±1.15", "0.80±0.15"),
             ("MECCA", "90.29±5.07", "1.50±0.33", "90.39±5.89", "0.80±0.01"))


def _stage(method: str):
    def compute(ctx: Context) -> dict:
        from clinloop.evaluation.benchmark.cases import lidc_dir
        from clinloop.evaluation.mecca_protocol import MECCAProtocolOptions

        opts = MECCAProtocolOptions(method=method, data=str(lidc_dir(ctx.data_root)), model=METHODS[method],
                                    limit=ctx.size(3, 200, None), seed=ctx.seed, steps=STEPS, per_case=True, ndim=2)
        return _record(ctx, opts, lambda case: case.split("/")[0])
    return compute


def _volume_stage(task: str, method: str):
    def compute(ctx: Context) -> dict:
        from clinloop.evaluation.mecca_protocol import MECCAProtocolOptions

        data = ctx.data_root / VOLUME_TASKS[task]
        if not data.exists():
            raise FileNotFoundError(f"{data}: the {task} volumes are not under --data-root {ctx.data_root}")
        opts = MECCAProtocolOptions(method=method, data=str(data), model=f"{method}-{task}",
                                    limit=ctx.size(1, None, None), seed=ctx.seed, steps=STEPS, per_case=True)
        return _record(ctx, opts, lambda case: case)  # one volume per patient
    return compute


def volume_models() -> list[tuple[str, str]]:
    """``(task, method)`` of every shipped ``<method>-<task>`` volume model."""
    from clinloop.models.registry import shipped_models

    have = set(shipped_models())
    return [(t, m) for t in VOLUME_TASKS for m in VOLUME_METHODS if f"{m}-{t}" in have]


def stages(ctx: Context) -> list[Stage]:
    out = [Stage(f"mecca-{m}", _stage(m), {"model": d, "limit": ctx.size(3, 200, None), "steps": STEPS})
           for m, d in METHODS.items()]
    out += [Stage(f"mecca-{t}-{m}", _volume_stage(t, m), {"model": f"{m}-{t}", "limit": ctx.size(1, None, None),
                                                          "steps": STEPS})
            for t, m in volume_models()]
    from clinloop.evaluation.benchmark import mecca_semisup
    from clinloop.models.registry import shipped_models

    return out + (mecca_semisup.stages(ctx) if "pnet-brats" in shipped_models() else [])  # its p^(0)


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
            table(["method", "Dice after step 1", f"Dice after step {STEPS}", f"ASSD after step {STEPS} (px)",
                   f"misunderstood agents, step {STEPS}", "s / step", "slices"], rows),
            "\nPublished (mecca.txt Table 1, 3-D volumes; Dice %, ASSD in pixels, mean ± sd; not our data):\n",
            table(["method", "BraTS2015 Dice", "BraTS2015 ASSD", "MM-WHS Dice", "MM-WHS ASSD"],
                  [[f"{n} (**published**)", *v] for n, *v in PUBLISHED]),
            "\nWhat differs: the paper evaluates 3-D volumes (BraTS, MM-WHS, spleen, liver) after its own "
            "number of steps with GPU-trained A3C agents; ours are the shipped 2-D LIDC slice models (CPU budget), "
            "no LIDC row exists in the paper, ASSD is in pixels (the LIDC crops store no spacing; a step with an "
            "empty prediction gets the image diagonal). Dice intervals: patient bootstrap; ASSD: mean only.\n"]
    for task in VOLUME_TASKS:
        vrows, reach = [], set()
        for m in VOLUME_METHODS:
            r = recs.get(f"mecca-{task}-{m}", {}).get("result")
            if r:
                p = r["protocol"]
                reach |= {float(p["click_reach"])} if p.get("click_reach") else set()
                vrows.append([f"{m} (`{r['model']}`, ours)", *(fmt_ci(r["ci"][f"dice_{k}"]) for k in (1, 3, STEPS)),
                              fmt(p["assd_per_step"][-1], 2), fmt(p["misunderstanding_per_step"][-1], 0),
                              fmt(float(sum(p["seconds_per_step"]) / len(p["seconds_per_step"])), 3),
                              str(r["n_cases"])])
        if vrows:
            text += [f"\n### {task}: held-back volumes, full resolution\n",
                     table(["method", "Dice step 1", "Dice step 3", f"Dice step {STEPS}", f"ASSD step {STEPS} (mm)",
                            f"misunderstood agents, step {STEPS}", "s / step", "volumes"], vrows),
                     "\nWhat differs: 7 BraTS 2018 volumes (5 trained on) and 30 atrium LGE-MRI volumes (24 "
                     "trained on) instead of the paper's 234 BraTS2015 and 20 MM-WHS volumes; the networks work "
                     "on a grid 4× (BraTS) or 3× (atrium) coarser than the image, width 16, CPU-length training "
                     "(docs/methods/mecca.md). Intervals: bootstrap over the held-back volumes."
                     + (f" Click reach {', '.join(f'{x:g}' for x in sorted(reach))}: the interactive models move only "
                        "agents within that many working-grid voxels of a click (MECCAConfig.click_reach, inference "
                        "only, not in the paper; docs/methods/mecca.md)." if reach else "")
                     + (" The atrium's `pnet-atrium` is a U-Net with instance norm since stop 44 "
                        "(MECCAConfig.pnet_arch, not the paper's dilated P-Net; with its flip average and largest connected "
                        "component, clinloop.models.mecca.pnet_inference). MECCA and its ablation start from its "
                        "probability, trained from the earlier dilated P-Net and fine-tuned alike on this start; "
                        "interactive-cnn starts from its mask, swapped in after training "
                        "(clinloop.training.mecca_swap.swap_pnet)."
                        if task == "atrium" else "") + "\n"]
    from clinloop.evaluation.benchmark import mecca_semisup

    text += [t for t in (mecca_semisup.section(ctx, recs),) if t] + [sizes_line(recs)]
    return "\n".join(text)


def _dice_plot(ctx: Context, results: list[tuple[str, dict]], title: str, ylabel: str, name: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clinloop.evaluation.benchmark.report import save_figure

    fig, ax = plt.subplots(figsize=(5, 3.4))
    steps = list(range(1, STEPS + 1))
    for m, r in results:
        ax.plot(steps, [r["ci"][f"dice_{k}"]["mean"] for k in steps], marker="o", label=m)
    ax.set_xlabel("interaction step")
    ax.set_ylabel(ylabel)
    ax.set_title(f"Dice per step (mecca.txt Fig. 6 analogue), {title}", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, ctx.out / name)


def figures(ctx: Context, recs: dict[str, dict]) -> list[str]:
    files = []
    ours = [(m, recs[f"mecca-{m}"]["result"]) for m in METHODS if f"mecca-{m}" in recs]
    if ours:
        files.append(_dice_plot(ctx, ours, "LIDC 2-D", "Dice", "mecca_dice_per_step.png"))
    for task in VOLUME_TASKS:
        vol = [(m, recs[f"mecca-{task}-{m}"]["result"]) for m in VOLUME_METHODS if f"mecca-{task}-{m}" in recs]
        if vol:
            files.append(_dice_plot(ctx, vol, f"{task} volumes", "Dice (full resolution)",
                                    f"mecca_dice_per_step_{task}.png"))
    return files
