"""Triage worklist: rank cases by predicted expert disagreement (LEXU's
image-level uncertainty, ``Σ Ĥ``) so a clinician reviews the most ambiguous
case first.

:func:`rank_cases` runs a predictor on every case; :func:`write_worklist`
writes the ranked rows atomically as CSV (or JSON). Where rater masks exist,
each row also carries the real rater disagreement (``Σ H`` at the model's
resolution and the mean pairwise Dice between raters) and
:func:`ranking_spearman` measures how well the ranking follows it.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

COLUMNS = ("rank", "case_id", "patient_id", "predicted_disagreement", "rater_disagreement", "rater_pairwise_dice", "n_raters")


def rank_cases(predictor, samples) -> list[dict]:
    """Rows sorted by predicted disagreement, highest first (rank 1); ties keep
    dataset order. ``rater_*`` are empty where a case has fewer than one /
    two valid raters."""
    from clinloop import metrics
    from clinloop.data import fusion
    rows = []
    for s in samples:
        r = predictor.run_batch(predictor.prepare([s.image]))
        valid = np.asarray(s.rater_valid, dtype=bool) if s.n_raters else np.zeros(0, bool)
        row = {"case_id": s.case_id, "patient_id": s.patient_id,
               "predicted_disagreement": float(r["image_uncertainty"][0]),
               "rater_disagreement": "", "rater_pairwise_dice": "", "n_raters": int(valid.sum())}
        if valid.any():
            m = predictor.prepare_masks(s.masks).numpy().astype(bool)
            row["rater_disagreement"] = float(fusion.rater_variance(m, valid).sum())
            if valid.sum() >= 2:
                row["rater_pairwise_dice"] = metrics.pairwise_dice(s.masks[valid])
        rows.append(row)
    order = sorted(range(len(rows)), key=lambda i: -rows[i]["predicted_disagreement"])
    return [{"rank": k + 1, **rows[i]} for k, i in enumerate(order)]


def ranking_spearman(rows: list[dict]) -> float:
    """Spearman ρ between predicted and real rater disagreement over the rows
    that have raters (nan when fewer than two)."""
    from clinloop import metrics

    have = [r for r in rows if r["rater_disagreement"] != ""]
    if len(have) < 2:
        return float("nan")
    return metrics.spearman([r["predicted_disagreement"] for r in have], [r["rater_disagreement"] for r in have])


def write_worklist(rows: list[dict], path: str | Path, fmt: str = "csv") -> None:
    """Write the worklist atomically as ``csv`` (header :data:`COLUMNS`) or ``json``."""
    from clinloop.atomic import atomic_write_text

    if fmt == "json":
        atomic_write_text(path, json.dumps(rows, indent=1) + "\n")
        return
    if fmt != "csv":
        raise ValueError(f"unknown worklist format {fmt!r}; choose csv or json")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in COLUMNS})
    atomic_write_text(path, buf.getvalue())
