"""k-fold cross-validated LEXU protocol on RIGA (all 47 BinRushed2 photos).

    cpujob .venv/bin/python benchmarks/lexu_riga_cv.py --out runs/lexu2/cv [--structure cup]
        [--methods lexu,unet,ensemble,layer-ensemble,mc-dropout] [--folds 4] [--fold-seed 0]
        [--encoder cnn] [--size 96] [--crop 0.5625] [--epochs 60] [--only-folds 0,1] [--summary]

Why: with the 33 / 14 by-case split the image-level Spearman over 14 photos
has a standard error of about 0.25, so a single split cannot tell methods
apart. Here every photo is held out exactly once:

* split rule (the same for every method): cases (= patients; RIGA has no
  patient ids) are permuted with ``--fold-seed`` and dealt round-robin into
  ``--folds`` folds; each fold's model is trained on the other folds;
* each method is trained per fold with the same backbone, resolution, crop,
  schedule and training seed (``clinloop.training.lexu.train``), then its
  held-out photos go through the ``lexu`` protocol's per-image evaluation
  (``clinloop.evaluation.lexu_protocol.evaluate_cases``);
* reported per method: ``spearman_pooled`` — Spearman between the model's and
  the raters' per-image summed variance over the pooled out-of-fold
  predictions of all photos (caveat: every fold's model has its own scale of
  uncertainty, pooling mixes them); ``spearman_folds`` and their mean / sd
  (each over ~47/k photos); pooled distance correlation; mean NCC, soft Dice,
  Dice, NLL, GED; training seconds.

Per (method, fold) results go to ``OUT/<method>/fold<k>.json`` (a finished
pair is skipped on a rerun, so runs can be split with ``--only-folds`` and
resumed); ``OUT/summary.json`` and a markdown table are written by
``--summary`` (and at the end of every run).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clinloop.evaluation.lexu_cv import kfold_cases, run_fold, summarise
from clinloop.models.lexu.config import DEFAULT_WIDTHS, METHODS, TINYVIT_SIZE, LexuConfig


def template(args) -> LexuConfig:
    """The per-fold training config from the command line (the method is set per run)."""
    return LexuConfig(
        widths=DEFAULT_WIDTHS[args.encoder] if args.widths is None else args.widths,
        encoder=args.encoder, beta=args.beta, size=args.size, crop=args.crop, structure=args.structure,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        normalisation="minmax" if args.encoder == "tinyvit" else "zscore",
    )


def table(summary: dict) -> str:
    lines = ["| method | folds | n | Spearman pooled | per-fold Spearman | mean ± sd | dCor pooled | NCC | soft Dice | GED | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, s in summary.items():
        folds = " / ".join(f"{v:.2f}" for v in s["spearman_folds"])
        lines.append(f"| {m} | {s['folds_done']} | {s['n_cases']} | {s['spearman_pooled']:.3f} | {folds} | "
                     f"{s['spearman_fold_mean']:.2f} ± {s['spearman_fold_sd']:.2f} | {s['distance_correlation_pooled']:.3f} | "
                     f"{s['ncc']:.3f} | {s['soft_dice']:.3f} | {s['ged']:.3f} | {s['train_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="RIGA npz folder (default: ../shared/data/riga_binrushed2)")
    ap.add_argument("--structure", default="cup", choices=["cup", "disc"])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--fold-seed", type=int, default=0)
    ap.add_argument("--only-folds", default=None, help="comma-separated fold numbers to run (default: all)")
    ap.add_argument("--encoder", default="cnn", choices=["cnn", "tinyvit"])
    ap.add_argument("--widths", default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--crop", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--beta", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--summary", action="store_true", help="only (re)write the summary of finished folds")
    a = ap.parse_args(argv)
    import torch

    from clinloop.data import load_dataset
    from clinloop.paths import shared_data_dir

    torch.set_num_threads(a.threads)
    if a.widths is not None:
        a.widths = [int(w) for w in a.widths.split(",")]
    if a.size is None:
        a.size = TINYVIT_SIZE if a.encoder == "tinyvit" else 96
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = a.data or str(shared_data_dir() / "riga_binrushed2")
    ds = load_dataset(data, format="riga", structure=a.structure)
    folds = kfold_cases(len(ds), a.folds, a.fold_seed)
    (out / "folds.json").write_text(json.dumps({"fold_seed": a.fold_seed, "folds": [[ds.case_ids[i] for i in f] for f in folds]}, indent=1) + "\n")
    if not a.summary:
        todo = range(a.folds) if a.only_folds is None else [int(f) for f in a.only_folds.split(",")]
        for fold in todo:
            for method in methods:
                r = run_fold(template(a), method, fold, folds, ds, out)  # a finished fold is read back
                from clinloop import metrics

                sp = metrics.spearman([x["model_sum"] for x in r["rows"]], [x["rater_sum"] for x in r["rows"]])
                print(f"{method} fold {fold}: Spearman {sp:.3f} over {len(r['rows'])}, train {r['train_seconds']:.0f} s",
                      file=sys.stderr, flush=True)
    summary = {}
    for m in METHODS:
        done = [json.loads(p.read_text()) for p in (out / m / f"fold{f}.json" for f in range(a.folds)) if p.is_file()]
        if done:
            summary[m] = summarise(done)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
