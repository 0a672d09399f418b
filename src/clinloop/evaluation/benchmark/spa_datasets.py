"""spa.txt Table 1 beyond LIDC: the general SPA model (``spa-general``) on every other
dataset of its training mix (:data:`clinloop.training.spa_mix.GENERAL`), on the patients
it held back, through the protocols' own code (part of the ``spa`` suite).

* 2-D sources (QUBIQ brain growth, RIGA disc and cup, BU-BIL, ISIC): the spa protocol
  (:mod:`clinloop.evaluation.spa_protocol`, as ``clinloop evaluate --protocol spa``) on the ``val`` split of the source's seeded
  patient split (the held-out share ``spa-general`` was trained with), the click and 2
  candidate choices; ``--quick`` 3 cases, default up to 25 (8–18 are held back), ``--full`` all.
* 3-D sources (BraTS 2018 FLAIR, the left atrium): the spa-3d protocol (one click inside
  the target's largest axial slice, propagated through the volume and refined along the other
  two axes, then 2 choices) on
  the volumes ``spa-general`` did not train on (its ``data.json``), without the
  slice-by-slice baseline; ``--quick`` 1 volume, default and ``--full`` all.

Stages ``spa-general-<source>``; Dice@1 = after the first click, Dice@3 = after two
choices more, with patient bootstrap intervals. Published: spa.txt Table 1's REFUGE2
(optic cup, beside our RIGA cup) and BrainGrowth (beside our QUBIQ brain growth) columns.

Baselines on the same cases (:data:`BASELINES`, stages ``<name>-<source>``): ``spa-lidc``
(SPA trained on LIDC only) on every source, and the pretrained LiteMedSAM with a tight box
first (``box-litemedsam``, the spa protocol's box baseline) on the 2-D sources; on volumes
the cases are ``spa-general``'s held-back ones (``held_back_of``).
"""
from __future__ import annotations

from clinloop.evaluation.benchmark.base import Context, Stage
from clinloop.evaluation.benchmark.stats import bootstrap_ci, fmt_ci, n_label

MODEL = "spa-general"
VOLUME_SOURCES = ("brats", "left_atrium")
# (stage prefix, method, model or None for the method's default, 2-D sources only)
BASELINES = (("spa-lidc", "spa", "spa-lidc", False), ("box-litemedsam", "box-litemedsam", None, True))
# spa.txt Table 1, SPA's row (Dice %, 1-Iter / 3-Iter) in the column of the same task
PUBLISHED = {"riga_cup": ("REFUGE2 (optic cup, 7 raters)", 83.47, 85.42),
             "qubiq_brain_growth": ("BrainGrowth (QUBIQ, 7 raters)", 88.14, 88.18)}


def sources():
    from clinloop.training.spa_mix import GENERAL

    return [s for s in GENERAL if s.name != "lidc"]


def _options(ctx: Context, src) -> dict:
    if src.name in VOLUME_SOURCES:
        # the on-disk embedding cache changes only the seconds (the protocol's float16 embeddings are exact)
        return {"limit": ctx.size(1, None, None), "iterations": 2, "no_baseline": True, "embedding_cache": True}
    opts = {"split": "val", "held_out_fraction": src.held_out, "per_nodule": src.per_group,
            "limit": ctx.size(3, 25, None), "iterations": 3}
    if "structure" in src.options:
        opts["structure"] = src.options["structure"]
    return opts


def _stage(src, prefix: str = MODEL, method: str = "spa", model: str | None = MODEL):
    def compute(ctx: Context) -> dict:
        from clinloop.evaluation import spa3d_protocol, spa_protocol
        from clinloop.evaluation.benchmark.cases import read_cases

        raw = ctx.raw_dir(f"{prefix}-{src.name}")
        volume = src.name in VOLUME_SOURCES
        protocol, mod = ("spa-3d", spa3d_protocol) if volume else ("spa", spa_protocol)
        extra = {"held_back_of": MODEL} if volume and model != MODEL else {}  # spa-general's held-back volumes
        opts = mod.OPTIONS(method=method, protocol=protocol, data=str(ctx.data_root / src.folder), model=model,
                           seed=ctx.seed, threads=ctx.options.threads, out=str(raw / "results.json"),
                           **_options(ctx, src), **extra)
        res = mod.run_protocol(opts, verbose=False)
        cases = [{k: c[k] for k in ("case_id", "patient_id", "dice_1", "dice_3")}
                 for c in read_cases(raw / "results_cases.csv")]
        pats = [c["patient_id"] for c in cases]
        ci = {k: bootstrap_ci([c[k] for c in cases], pats, seed=ctx.seed) for k in ("dice_1", "dice_3")}
        return {"source": src.name, "protocol": protocol, "model": model or method, "n_cases": res["n_cases"],
                "dice_per_iteration": res["dice_per_iteration"], "ci": ci, "cases": cases}
    return compute


def stages(ctx: Context) -> list[Stage]:
    out = [Stage(f"spa-general-{s.name}", _stage(s), {"data": s.folder, "model": MODEL, **_options(ctx, s)})
           for s in sources()]
    for prefix, method, model, flat_only in BASELINES:
        out += [Stage(f"{prefix}-{s.name}", _stage(s, prefix, method, model),
                      {"data": s.folder, "method": method, "model": model or "pretrained LiteMedSAM",
                       "cases_of": MODEL, **_options(ctx, s)})
                for s in sources() if not (flat_only and s.name in VOLUME_SOURCES)]
    return out


def section(ctx: Context, recs: dict[str, dict]) -> str:
    from clinloop.evaluation.benchmark.report import table

    rows = []
    for s in sources():
        r = recs.get(f"spa-general-{s.name}", {}).get("result")
        if not r:
            continue
        pub = PUBLISHED.get(s.name)
        rows.append([f"{s.name} ({r['protocol']})", fmt_ci(r["ci"]["dice_1"]), fmt_ci(r["ci"]["dice_3"]),
                     n_label(r["ci"]["dice_1"]),
                     "—" if pub is None else f"{pub[0]}: {pub[1] / 100:.4f} / {pub[2] / 100:.4f}"])
    if not rows:
        return ""
    return "\n".join([
        f"### Other datasets: `{MODEL}` (spa.txt Table 1, further columns)\n",
        table(["dataset (protocol)", "Dice@1", "Dice@3", "cases", "SPA, **published**, Dice@1 / @3"], rows),
        f"\nWhat differs: one general model (`{MODEL}`, LiteMedSAM fine-tuned on a CPU budget on all these "
        "datasets at once) instead of one model per dataset; RIGA's 6 raters stand beside REFUGE2's 7, and the "
        "paper's BrainGrowth split is QUBIQ's (5 test cases); 2-D rows: the held-back patients of each dataset, "
        "Dice@3 after two candidate choices; 3-D rows (BraTS, the atrium): one click inside the target's "
        "largest slice propagated through the volume and refined along the two other axes "
        "(`clinloop.models.spa.orthogonal`, not in the paper), then 2 choices, 3-D Dice (the paper has no 3-D "
        "column). "
        "Intervals: patient bootstrap.\n", _baselines(recs)])


def _baselines(recs: dict[str, dict]) -> str:
    """The same cases for ``spa-general`` and the :data:`BASELINES`: Dice@1 / Dice@3 (means)."""
    from clinloop.evaluation.benchmark.report import table

    names = [MODEL] + [b[0] for b in BASELINES]
    rows = []
    for s in sources():
        got = [recs.get(f"{n}-{s.name}", {}).get("result") for n in names]
        if not any(got[1:]):
            continue
        rows.append([s.name] + ["—" if r is None else
                                f"{r['ci']['dice_1']['mean']:.3f} / {r['ci']['dice_3']['mean']:.3f}" for r in got])
    if not rows:
        return ""
    return "\n".join([
        "#### The same cases, other methods (Dice@1 / Dice@3, means)\n",
        table(["dataset"] + [f"`{n}`" for n in names], rows),
        "\n`spa-lidc`: SPA trained on LIDC slices only; `box-litemedsam`: the pretrained LiteMedSAM prompted with "
        "the target's tight box, then corrective clicks (the spa protocol's box baseline; 2-D only). Same cases, "
        "users and seeds as the rows above (on volumes, `spa-general`'s held-back ones). RIGA disc: the "
        "protocol's click at the target's centre lands inside the cup on every held-back photo, and the SPA "
        "models answer with the cup; from a tight box `spa-general` reaches 0.951 there "
        "(`benchmarks/measure_box_first.py --nested cup`, docs/methods/spa.md).\n"])
