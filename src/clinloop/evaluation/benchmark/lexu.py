"""LEXU (lexu.txt Tables 2–3, §4.2 quality control, §4.3 example difficulty) for the
shipped LEXU models, through the LEXU protocol (``clinloop.evaluation.lexu_protocol``).

* ``lexu-riga-cup``: ``lexu-riga-cup`` on RIGA BinRushed2 cup, its held-out images
  (``data.json`` test cases; 14); the paper's RIGA cup rows (DE, LE, LEXU) beside it.
* ``lexu-lidc``: ``lexu-lidc`` on its held-out LIDC patients (the paper has no LIDC
  row).

Spearman (SR) and distance correlation (DC) are correlations over images: their
intervals bootstrap the statistic over patients; soft Dice, NCC, NLL and GED are
per-image means. Sizes: ``--quick`` 5 images, 2 for the difficulty test; default
LIDC 300 images / RIGA all 14, difficulty 40 / 14 (est. ~3 min); ``--full`` every held-out
LIDC slice (1,869). Not here yet (no model for them is shipped): the β sweep of
Table 3, the deep / layer ensembles, QUBIQ and Drishti-GS1 (each needs training).
"""
from __future__ import annotations

import json

from clinloop.evaluation.benchmark.base import Context, Stage
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
NOT_YET = ("not implemented yet: the β sweep (lexu.txt Table 3: β = 0/3/5/10 need one trained model each), the DE / LE "
           "baselines, QUBIQ and Drishti-GS1 rows (no shipped model)")


def _stage(model: str):
    def compute(ctx: Context) -> dict:
        from clinloop.data import load_dataset
        from clinloop.evaluation.lexu_protocol import LexuProtocolOptions, run_protocol
        from clinloop.metrics import distance_correlation, spearman

        folder, extra = DATASETS[model]
        data = ctx.data_root / folder
        if not data.exists():
            raise FileNotFoundError(f"{data}: needed by stage {model}")
        raw = ctx.raw_dir(model)
        limit = ctx.size(5, 300 if folder == "lidc" else None, None)
        opts = LexuProtocolOptions(method="lexu", data=str(data), model=model, limit=limit, seed=ctx.seed,
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
    return compute


def stages(ctx: Context) -> list[Stage]:
    return [Stage(m, _stage(m), {"model": m, "limit": ctx.size(5, 300 if d == "lidc" else None, None),
                                 "difficulty": ctx.size(2, 40, 40), **o}) for m, (d, o) in DATASETS.items()]


def section(ctx: Context, recs: dict[str, dict]) -> str:
    from clinloop.evaluation.benchmark.report import sizes_line, table

    rows = []
    for m in DATASETS:
        r = recs.get(m, {}).get("result")
        if r:
            c = r["ci"]
            rows.append([f"LEXU `{m}` (ours)", r["data"], fmt_ci(c["spearman"]), fmt_ci(c["distance_correlation"]),
                         fmt_ci(c["ncc"]), fmt_ci(c["soft_dice"]), fmt_ci(c["nll"]),
                         f"{fmt(r['qc_d_auc'])} ({r['qc_poor']} poor)", n_label(c["soft_dice"])])
    rows += [[f"{n} (**published**)", "RIGA cup", sr, dc, ncc, d, nll, "—", "RIGA test"]
             for n, sr, dc, ncc, d, nll in PUBLISHED_RIGA_CUP]
    text = [f"## {TITLE}\n",
            table(["method", "data", "SR ↑", "DC ↑", "NCC ↑", "soft Dice ↑", "NLL ↓", "QC d-AUC ↓", "images"], rows),
            "\nWhat differs: the paper trains a ResNet50-encoder LEXU for 200 epochs on a GPU (three runs) and "
            "reports RIGA disc/cup and HECKTOR; ours are small CNNs trained on a CPU (`lexu-riga-cup`: 96², "
            "100 epochs, one seeded 33/14 split of the 47 BinRushed2 photos; `lexu-lidc`: 64², 15 epochs). SR "
            "and DC intervals bootstrap the correlation over patients; the others are per-image means. "
            f"{NOT_YET[0].upper() + NOT_YET[1:]}.\n"]
    for m in DATASETS:
        for kind in ("qc", "difficulty"):
            p = ctx.out / "raw" / m / f"results.{kind}.png"
            if m in recs and p.is_file():
                text.append(f"![{m} {kind}](raw/{m}/results.{kind}.png)\n")
    text.append(sizes_line(recs))
    return "\n".join(text)
