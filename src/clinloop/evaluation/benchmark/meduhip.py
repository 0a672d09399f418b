"""MedUHIP's Table 1 (meduhip.txt §4.3.1): Dice after three interactions when the
target fuses 1 … R raters, for the three simulated click strategies (``random``,
``clinician-disagreement``, ``last-wrong``, on ``click-litemedsam-lidc``) and for
MedUHIP / SPA (``meduhip-lidc``, ``spa-lidc``: one click, then candidate choices by
a user who prefers the fused target).

Per held-out LIDC slice and size k = 1…4 the target is
``clinloop.data.fusion.random_subset_fusion(..., n_raters=k, require_nonempty=True)``
(the majority of k raters who drew something; seeded); a slice with fewer than k
such raters has no entry in column k. Every method sees the same targets. The paper
reports REFUGE2 with 7 raters; LIDC has 4. Sizes: ``--quick`` 2 slices; default 40
(one per held-out nodule, est. ~15 min on one core); ``--full`` 97. Stage:
``meduhip-table1``.

The suite also holds the other multi-rater preference tables of the SPA line of work:
spa.txt Table 2, per-rater alignment (:mod:`~clinloop.evaluation.benchmark.spa_alignment`,
stages ``alignment-<model>``), and preference transfer across images
(:mod:`~clinloop.evaluation.benchmark.spa_transfer`, stages ``transfer-<model>``), each
and leave-one-rater-out (:mod:`~clinloop.evaluation.benchmark.spa_loro`, stages
``loro-all``, ``loro-without-<r>``; trains five small models) and spa.txt Table 3, the
preference-distribution ablation at equal budget with several training seeds
(:mod:`~clinloop.evaluation.benchmark.spa_ablation`, stages ``ablation-<variant>-seed-<s>``;
trains four variants per seed), each module's docstring with its protocol and sizes.
"""
from __future__ import annotations

import numpy as np

from clinloop.evaluation.benchmark.base import Context, Stage
from clinloop.evaluation.benchmark.stats import bootstrap_ci, fmt_ci

TITLE = "MedUHIP Table 1: Dice after 3 interactions by number of fused raters, LIDC"
ROWS = (("Random Select", "click-litemedsam", "random"),
        ("Clinician Disagreement", "click-litemedsam", "clinician-disagreement"),
        ("Last Wrong", "click-litemedsam", "last-wrong"),
        ("MedUHIP", "meduhip", None), ("SPA", "spa", None))
ITERATIONS = 3
N_RATERS = (1, 2, 3, 4)
# meduhip.txt Table 1 (REFUGE2, 7 raters; Dice %), columns 1..7 and Ave
PUBLISHED = (("Random Select", "67.59 71.46 77.29 78.80 82.59 80.41 84.57 79.17"),
             ("Clinician Disagreement", "66.48 71.26 77.76 81.18 84.44 83.21 85.34 80.96"),
             ("Last Wrong", "66.96 73.30 78.84 83.31 86.05 85.72 88.70 82.96"),
             ("MedUHIP", "74.50 79.00 83.52 85.13 87.08 88.10 87.70 85.29"))


def dice_after(model, strategy: str | None, image: np.ndarray, masks: np.ndarray, target: np.ndarray,
               seed: int, iterations: int = ITERATIONS) -> float:
    """Dice to ``target (H, W)`` after ``iterations`` interactions: a click at the target's
    centre, then clicks by ``strategy`` (``clinloop.interaction.users.CLICK_STRATEGIES``) or,
    with ``strategy=None``, the candidates a ``PreferredRaterUser`` for ``target`` picks
    (:func:`clinloop.evaluation.benchmark.spa_alignment.follow_user`, stopping when it accepts)."""
    from clinloop.evaluation.benchmark.spa_alignment import follow_user
    from clinloop.interaction.session import Session
    from clinloop.interaction.users import CLICK_STRATEGIES, dice, largest_error_click

    if strategy is None:
        props, _ = follow_user(model, image, target, seed=seed, iterations=iterations)
        return float(dice(props[-1], target))
    session = Session(model, image, seed=seed)
    rng = np.random.default_rng(seed)
    p = session.click(*largest_error_click(target, None))
    for _ in range(1, iterations):
        c = CLICK_STRATEGIES[strategy](target, p.mask, rng, masks)
        if c is None:
            break
        p = session.click(c[0], c[1])
    return float(dice(p.mask, target))


def _compute(ctx: Context) -> dict:
    from tqdm.auto import tqdm

    from clinloop.data import load_dataset
    from clinloop.data.fusion import random_subset_fusion
    from clinloop.evaluation.benchmark.cases import heldout_lidc, lidc_dir
    from clinloop.evaluation.spa_protocol import load_method

    ds = load_dataset(lidc_dir(ctx.data_root))
    idx = heldout_lidc(ds, per_nodule=1, limit=ctx.size(2, 40, None))
    models = {m: load_method(m, None) for m in {r[1] for r in ROWS}}
    cases = []
    for pos, i in enumerate(tqdm(idx, desc="meduhip table 1", leave=False, disable=not ctx.verbose)):
        s = ds[i]
        row = {"case_id": ds.case_ids[i], "patient_id": s.patient_id}
        for k in N_RATERS:
            seed = ctx.seed + 10 * pos + k
            fused, chosen = random_subset_fusion(s.masks, seed=seed, rater_valid=s.rater_valid, require_nonempty=True,
                                                 n_raters=k)
            if len(chosen) != k or not fused.any():
                continue
            for name, method, strategy in ROWS:
                row[f"{name}|{k}"] = dice_after(models[method], strategy, s.image[0], s.masks, fused, seed)
        cases.append(row)
    pats = [c["patient_id"] for c in cases]
    ci = {}
    for name, _, _ in ROWS:
        for k in N_RATERS:
            vals = [c.get(f"{name}|{k}", np.nan) for c in cases]
            ci[f"{name}|{k}"] = bootstrap_ci(vals, pats, seed=ctx.seed)
        ave = [np.nanmean([c[f"{name}|{k}"] for k in N_RATERS if f"{name}|{k}" in c] or [np.nan]) for c in cases]
        ci[f"{name}|ave"] = bootstrap_ci(ave, pats, seed=ctx.seed)
    return {"n_cases": len(cases), "iterations": ITERATIONS, "ci": ci, "cases": cases}


def stages(ctx: Context) -> list[Stage]:
    from clinloop.evaluation.benchmark import spa_ablation, spa_alignment, spa_loro, spa_transfer

    return ([Stage("meduhip-table1", _compute, {"limit": ctx.size(2, 40, None), "iterations": ITERATIONS,
                                                 "models": ["click-litemedsam-lidc", "meduhip-lidc", "spa-lidc"]})]
            + spa_alignment.stages(ctx) + spa_transfer.stages(ctx) + spa_loro.stages(ctx)
            + spa_ablation.stages(ctx))


def section(ctx: Context, recs: dict[str, dict]) -> str:
    """MedUHIP Table 1, spa.txt Table 2 (alignment), preference transfer, leave-one-rater-out, the
    Table 3 ablation, the stage sizes."""
    from clinloop.evaluation.benchmark import spa_ablation, spa_alignment, spa_loro, spa_transfer
    from clinloop.evaluation.benchmark.report import sizes_line

    return "\n".join([_table1(recs), spa_alignment.section(ctx, recs), spa_transfer.section(ctx, recs),
                       spa_loro.section(ctx, recs), spa_ablation.section(ctx, recs), sizes_line(recs)])


def _table1(recs: dict[str, dict]) -> str:
    from clinloop.evaluation.benchmark.report import table

    r = recs.get("meduhip-table1", {}).get("result")
    text = [f"## {TITLE}\n"]
    if r:
        rows = [[f"{name} (ours)"] + [fmt_ci(r["ci"][f"{name}|{k}"]) for k in N_RATERS] + [fmt_ci(r["ci"][f"{name}|ave"])]
                for name, _, _ in ROWS]
        ns = [r["ci"][f"SPA|{k}"]["n"] for k in N_RATERS]
        rows.append(["slices per column"] + [str(n) for n in ns] + [str(r["n_cases"])])
        text.append(table(["strategy / method"] + [f"{k} rater{'s' if k > 1 else ''}" for k in N_RATERS] + ["Ave"],
                          rows))
    text += ["\nPublished (meduhip.txt Table 1, REFUGE2 optic cup, 7 raters, Dice %):\n",
             table(["strategy / method", "1", "2", "3", "4", "5", "6", "7", "Ave"],
                   [[f"{n} (**published**)", *v.split()] for n, v in PUBLISHED]),
             "\nWhat differs: REFUGE2 (7 raters) in the paper, LIDC (4 raters) here, so only columns 1–4 exist; "
             "Table 1 does not name the click-prompted model the three strategies drive; ours drive "
             "`click-litemedsam-lidc` (LiteMedSAM fine-tuned for clicks on a CPU budget); every method's first "
             "interaction is one click at the target's centre. Means are over the slices that have k raters who "
             "drew something; — marks an empty column.\n"]
    return "\n".join(text)


def figures(ctx: Context, recs: dict[str, dict]) -> list[str]:
    from clinloop.evaluation.benchmark import spa_ablation

    return spa_ablation.figure(ctx, recs)
