"""k-fold cross-validated LEXU protocol (RIGA cup: lexu.txt's headline is the image-level
Spearman there, and over the 14 photos of one 33 / 14 split it has a standard error of
about 0.25, so every photo is held out exactly once instead).

* split rule, the same for every method: the cases (RIGA: one photo per patient) are
  permuted with ``fold_seed`` and dealt round-robin into ``k`` folds
  (:func:`kfold_cases`); each fold's model trains on the other folds;
* each method trains per fold with the same config (:func:`run_fold`, through
  :func:`clinloop.training.lexu.train`), then its held-out photos go through the ``lexu``
  protocol's per-image evaluation (:func:`clinloop.evaluation.lexu_protocol.evaluate_cases`);
* :func:`summarise`: Spearman and distance correlation between the model's and the
  raters' per-image summed variance over the pooled out-of-fold predictions (each
  fold's model has its own scale of uncertainty: pooling mixes them, so the per-fold
  Spearman is given too), and the per-image means of NCC, soft Dice, Dice, NLL, GED.

Used by ``benchmarks/lexu_riga_cv.py`` and the ``lexu`` suite's ``lexu-riga-cup-cv``.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from clinloop.models.lexu.config import LexuConfig


def kfold_cases(n: int, k: int, seed: int) -> list[list[int]]:
    """Indices ``0..n-1`` permuted with ``seed`` and dealt round-robin into ``k`` folds
    (sizes differ by at most one)."""
    if not 2 <= k <= n:
        raise ValueError(f"folds must be in 2..{n}, got {k}")
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(int(i) for i in order[f::k]) for f in range(k)]


def run_fold(template: LexuConfig, method: str, fold: int, folds: list[list[int]], ds, out: Path) -> dict:
    """Train ``method`` (``template`` with that method) on every fold but ``fold``, evaluate
    the held-out one; writes and returns ``out/<method>/fold<k>.json`` (a finished fold is
    read back, not retrained; an interrupted one resumes from its checkpoint)."""
    from clinloop.atomic import atomic_write_text
    from clinloop.evaluation.lexu_protocol import evaluate_cases
    from clinloop.models.lexu.model import LexuPredictor
    from clinloop.training.lexu import stack_samples, train

    path = out / method / f"fold{fold}.json"
    if path.is_file():
        return json.loads(path.read_text())
    cfg = replace(template, method=method, dropout=template.dropout if method == "mc-dropout" else 0.0)
    test = folds[fold]
    train_idx = [i for f, idx in enumerate(folds) if f != fold for i in idx]
    work = out / method / f"fold{fold}"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    x, m, v, _ = stack_samples([ds[i] for i in train_idx], cfg.size, cfg.in_channels, cfg.normalisation, cfg.crop)
    net, history = train(cfg, x, m, v, work, resume=True, progress=False)
    seconds = time.time() - t0
    samples = [s for s in (ds[i] for i in test) if s.n_raters and s.rater_valid.any()]
    ev = evaluate_cases(LexuPredictor(cfg, net), samples)
    res = {
        "method": method, "fold": fold, "config": json.loads(cfg.to_json()),
        "train_cases": [ds.case_ids[i] for i in train_idx], "test_cases": [s.case_id for s in samples],
        "train_seconds": round(seconds, 1), "final_loss": history[-1]["loss"] if history else None,
        "seconds_per_image": float(np.median(ev["times"])), "rows": ev["rows"],
    }
    atomic_write_text(path, json.dumps(res, indent=1) + "\n")
    (work / "checkpoint.pt").unlink(missing_ok=True)
    return res


def summarise(done: list[dict]) -> dict:
    """One method's finished folds (:func:`run_fold` results) -> the pooled figures (module docstring)."""
    from clinloop import metrics

    rows = [r for d in done for r in d["rows"]]
    ms, rs = [r["model_sum"] for r in rows], [r["rater_sum"] for r in rows]
    per = [metrics.spearman([r["model_sum"] for r in d["rows"]], [r["rater_sum"] for r in d["rows"]]) for d in done]
    return {
        "folds_done": len(done), "n_cases": len(rows),
        "spearman_pooled": metrics.spearman(ms, rs),
        "spearman_folds": per, "spearman_fold_mean": float(np.mean(per)),
        "spearman_fold_sd": float(np.std(per, ddof=1)) if len(per) > 1 else float("nan"),
        "distance_correlation_pooled": metrics.distance_correlation(ms, rs),
        **{key: float(np.mean([r[key] for r in rows])) for key in ("ncc", "soft_dice", "dice", "nll", "ged")},
        "train_seconds": float(sum(d["train_seconds"] for d in done)),
        "seconds_per_image": float(np.median([d["seconds_per_image"] for d in done])),
        "config": done[0]["config"],
    }
