"""The LIDC ambiguity table of the probabilistic-segmentation literature (Prob. U-Net,
PHiSeg, MoSE, CCDM, ...): GED with 16 and 100 samples (:func:`clinloop.metrics.ged`)
and the Hungarian-matched IoU with 32 samples (:func:`clinloop.metrics.hm_iou`)
against the 4 radiologists, plus HM-IoU with 16 samples (MoSE reports only that one).
Published rows: CCDM's Table 1, LIDCv1 columns (``published.AMBIGUITY_PUBLISHED``).

Sample sets:

* SPA / MedUHIP (``spa-lidc``, ``meduhip-lidc``): the sampled masks y_n of GenMask
  (spa.txt Alg. 1, y_n = Decoder(e_{x_n}, e_u), z_n ~ p_θ) **after one click** at
  the centre of the raters' majority mask (``largest_error_click``): the first
  iteration's p_θ, 100 latents drawn with a seeded generator; GED₁₆ / HM-IoU₃₂
  use the first 16 / 32 of them. The click gives these models information the
  automatic models of the published rows never get.
* LEXU (``lexu-lidc``): its 5 heads are its whole sample set, so it gets GED and
  HM-IoU over 5 samples (a separate table, not GED₁₆/₁₀₀), at its 64² resolution
  (raters resized the protocol's way); the deep ensemble (``ensemble-lidc``, 5 U-Nets
  by ``lexu-lidc``'s command, the ``lexu`` suite's) likewise over its 5 members.

Cases (``clinloop.evaluation.benchmark.cases``): SPA's held-out LIDC patients,
non-empty rater majority, minus the slices ``lexu-lidc`` was trained on. Sizes:
``--quick`` 3 slices; default one middle slice per nodule (67 slices, est. ~12 min on
one core); ``--full`` every such slice (371). Stages: ``ambiguity-spa``,
``ambiguity-meduhip``, ``ambiguity-lexu``, ``ambiguity-ensemble``.
"""
from __future__ import annotations

import numpy as np

from clinloop.evaluation.benchmark.base import Context, Stage
from clinloop.evaluation.benchmark.published import (
    AMBIGUITY_PUBLISHED,
    AMBIGUITY_SOURCE,
)
from clinloop.evaluation.benchmark.stats import bootstrap_ci, fmt_ci, n_label

TITLE = "LIDC ambiguity: GED₁₆, GED₁₀₀, HM-IoU₃₂ (and HM-IoU₁₆) against the 4 radiologists"
N_SAMPLES = 100
SPA_MODELS = {"spa": "spa-lidc", "meduhip": "meduhip-lidc"}
LEXU_MODEL = "lexu-lidc"
# K-sample sets: LEXU's heads, and a deep ensemble's members (5 U-Nets by lexu-lidc's recipe: the
# lexu suite's ensemble-lidc, trained by whichever suite needs it first)
K_MODELS = {"lexu": LEXU_MODEL, "ensemble": "ensemble-lidc"}
K_SET = {"lexu": "heads", "ensemble": "members"}


def _cases(ctx: Context):
    from clinloop.data import load_dataset
    from clinloop.evaluation.benchmark.cases import (
        heldout_lidc,
        lexu_train_cases,
        lidc_dir,
    )

    ds = load_dataset(lidc_dir(ctx.data_root))
    idx = heldout_lidc(ds, per_nodule=ctx.size(1, 1, None), limit=ctx.size(3, None, None),
                       exclude=lexu_train_cases(LEXU_MODEL))
    return ds, idx


def spa_samples(model, image: np.ndarray, target: np.ndarray, n: int, seed: int,
                structure: str | None = "nodule") -> np.ndarray:
    """GenMask's N binary samples ``(n, H, W)`` after one click at the centre of ``target (H, W)``.

    ``model``: an ``SPAModel`` (SPA, MedUHIP, ablations). The click goes through the
    model's own first step (which fits p_θ from it); the samples are then drawn from
    that p_θ with ``torch.Generator().manual_seed(seed)`` and mapped to the input
    frame as the model's proposals are (logits > 0 after ``postprocess_logits``). ``structure``: the
    case's (LIDC: "nodule"), whose token and decoder adapters a model that learnt it decodes with, as
    its sessions do."""
    import torch

    from clinloop.interaction.session import as_channels_first
    from clinloop.interaction.users import largest_error_click
    from clinloop.models.litemedsam.preprocess import postprocess_logits

    state = model.start(as_channels_first(image, (2,)), seed=seed, structure=structure)
    (pt, pos) = largest_error_click(target, None)
    state.click(pt, pos)
    net = model.net
    with torch.inference_mode(), net.structure_scope(state.structure_id):
        pts = (torch.tensor([state.points], dtype=torch.float32), torch.tensor([state.labels], dtype=torch.long))
        sparse, dense = net.encode_interaction(pts, None, None, state.structure_id)
        g = torch.Generator().manual_seed(int(seed))
        logits, _, _ = net.gen_mask(state.e_x, sparse, dense, state.gmm, n, g)
        return (postprocess_logits(logits, state.info) > 0).numpy()


def _spa_stage(method: str):
    def compute(ctx: Context) -> dict:
        from tqdm.auto import tqdm

        from clinloop.data.fusion import majority_vote
        from clinloop.metrics import ged, hm_iou
        from clinloop.models import registry

        ds, idx = _cases(ctx)
        model = registry.load_model(registry.resolve_model_dir(SPA_MODELS[method]))
        rows = []
        for pos, i in enumerate(tqdm(idx, desc=f"ambiguity {method}", leave=False, disable=not ctx.verbose)):
            s = ds[i]
            raters = s.masks[s.rater_valid].astype(bool)
            ys = spa_samples(model, s.image[0], majority_vote(s.masks, s.rater_valid), N_SAMPLES, ctx.seed + pos)
            rows.append({"case_id": ds.case_ids[i], "patient_id": s.patient_id,
                         "ged16": ged(ys[:16], raters), "ged100": ged(ys, raters), "hm_iou32": hm_iou(ys[:32], raters),
                         "hm_iou16": hm_iou(ys[:16], raters)})
        return {"method": method, "model": SPA_MODELS[method], "n_cases": len(rows), "cases": rows,
                **_summary(rows, ("ged16", "ged100", "hm_iou32", "hm_iou16"), ctx.seed)}
    return compute


def _k_stage(method: str):
    """LEXU's heads or the deep ensemble's members as the sample set (K of them)."""
    def compute(ctx: Context) -> dict:
        from clinloop.evaluation.benchmark.lexu import model_folder

        return {**_k_samples(ctx, model_folder(ctx, K_MODELS[method])), "method": method, "model": K_MODELS[method]}
    return compute


def _k_samples(ctx: Context, folder) -> dict:
    from clinloop.metrics import ged, hm_iou
    from clinloop.models.lexu.model import load_lexu

    ds, idx = _cases(ctx)
    pred = load_lexu(folder)
    rows = []
    for i in idx:
        s = ds[i]
        r = pred.run_batch(pred.prepare([s.image]))
        heads = r["samples"][0].numpy() > 0.5  # (K, size, size): the K heads
        raters = pred.prepare_masks(s.masks).numpy().astype(bool)[np.asarray(s.rater_valid, bool)]
        rows.append({"case_id": ds.case_ids[i], "patient_id": s.patient_id, "k": int(heads.shape[0]),
                     "ged_k": ged(heads, raters), "hm_iou_k": hm_iou(heads, raters)})
    return {"n_cases": len(rows), "resolution": int(pred.cfg.size), "cases": rows,
            **_summary(rows, ("ged_k", "hm_iou_k"), ctx.seed)}


def _summary(rows: list[dict], keys, seed: int) -> dict:
    pats = [r["patient_id"] for r in rows]
    return {"ci": {k: bootstrap_ci([r[k] for r in rows], pats, seed=seed) for k in keys}}


def stages(ctx: Context) -> list[Stage]:
    cfg = {"cases": "SPA val patients, non-empty majority, minus lexu-lidc training slices",
           "per_nodule": ctx.size(1, 1, None), "limit": ctx.size(3, None, None), "samples": N_SAMPLES}
    out = [Stage(f"ambiguity-{m}", _spa_stage(m), {**cfg, "model": SPA_MODELS[m]}) for m in SPA_MODELS]
    out.append(Stage("ambiguity-lexu", _k_stage("lexu"), {**cfg, "model": LEXU_MODEL}))
    out.append(Stage("ambiguity-ensemble", _k_stage("ensemble"),
                     {**cfg, "model": K_MODELS["ensemble"], "epochs": ctx.size(2, 30, 30)}))
    return out


def section(ctx: Context, recs: dict[str, dict]) -> str:
    from clinloop.evaluation.benchmark.report import sizes_line, table

    rows = []
    for m in SPA_MODELS:
        r = recs.get(f"ambiguity-{m}", {}).get("result")
        if r:
            c = r["ci"]
            h16 = fmt_ci(c["hm_iou16"]) if "hm_iou16" in c else "—"
            rows.append([f"{m} (`{r['model']}`, ours)", "100 sampled masks y_n after 1 click", fmt_ci(c["ged16"]),
                         fmt_ci(c["ged100"]), fmt_ci(c["hm_iou32"]), h16, n_label(c["ged100"])])
    notes = []
    for name, g16, g100, h32, h16, note in AMBIGUITY_PUBLISHED:
        rows.append([f"{name} (**published**, CCDM Tab. 1)", "automatic, no click",
                     *(v or "—" for v in (g16, g100, h32, h16)), "LIDCv1 test split"])
        notes.append(f"- {name}: {note}.\n")
    heads = ["method", "sample set", "GED₁₆ ↓", "GED₁₀₀ ↓", "HM-IoU₃₂ ↑", "HM-IoU₁₆ ↑", "cases"]
    text = [f"## {TITLE}\n", table(heads, rows),
            "\nPublished rows: mean ± sd as printed in CCDM's Table 1 (Zbinden et al., ICCV 2023), LIDCv1 "
            "columns; — where that table has no figure. Where each figure comes from:\n\n" + "".join(notes)]
    ks = [(m, recs[f"ambiguity-{m}"]["result"]) for m in K_MODELS if recs.get(f"ambiguity-{m}", {}).get("result")]
    if ks:
        k = ks[0][1]["cases"][0]["k"] if ks[0][1]["cases"] else "K"
        text.append(f"\nLEXU's heads and the deep ensemble's members are their whole sample sets (K = {k}), so they "
                    f"are scored over those {k} (GED_{k}, HM-IoU_{k}), at {ks[0][1]['resolution']}² with the raters "
                    "resized to it — not comparable with the 16/100/32-sample columns:\n\n")
        text.append(table(["method", "sample set", f"GED_{k} ↓", f"HM-IoU_{k} ↑", "cases"],
                          [[f"{m} (`{r['model']}`, ours)", f"{r['cases'][0]['k'] if r['cases'] else k} {K_SET[m]}",
                            fmt_ci(r["ci"]["ged_k"]), fmt_ci(r["ci"]["hm_iou_k"]), n_label(r["ci"]["ged_k"])]
                           for m, r in ks]))
    text.append(f"\nWhat differs: {AMBIGUITY_SOURCE} Ours: `lidc_crops_dev.npz` (128² LIDC nodule crops of another "
                "release, a random 40 % of its patients; see the data README), SPA's held-out patients, slices with a "
                "non-empty rater majority only (no paper says its test split removes such slices), models trained "
                "on a CPU budget; SPA/MedUHIP get one click at the centre of the raters' majority before "
                "sampling. The deep ensemble is 5 U-Nets trained on the raters' majority vote by `lexu-lidc`'s "
                "recipe (64², 1,200 slices, 30 epochs, no augmentation) "
                "(the lexu suite's `ensemble-lidc`). GED: d = 1 − IoU, d(empty, empty) = 0, within-set pairs i = j "
                "included (`clinloop.metrics.ged`); HM-IoU: sets replicated to lcm(N, 4), empty/empty IoU 1 "
                "(`clinloop.metrics.hm_iou`). 95 % CIs: patient bootstrap.\n")
    text.append(sizes_line(recs))
    return "\n".join(text)


def figures(ctx: Context, recs: dict[str, dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clinloop.evaluation.benchmark.report import save_figure

    data = [(m, recs[f"ambiguity-{m}"]["result"]) for m in SPA_MODELS if f"ambiguity-{m}" in recs]
    if not data:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, key, lab in ((axes[0], "ged100", "GED₁₀₀ per case (lower is better)"),
                         (axes[1], "hm_iou32", "HM-IoU₃₂ per case (higher is better)")):
        ax.boxplot([[c[key] for c in r["cases"]] for _, r in data], tick_labels=[m for m, _ in data])
        ax.set_title(lab, fontsize=9)
    return [save_figure(fig, ctx.out / "ambiguity.png")]
