"""``clinloop triage --model MODEL_DIR --data PATH --out worklist.csv``: rank
cases by predicted expert disagreement (most ambiguous first)."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("triage", help="rank cases by predicted expert disagreement (LEXU)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lexu-riga-cup", help="LEXU model folder or shipped name (default: lexu-riga-cup)")
    p.add_argument("--data", required=True, help="dataset path (any supported layout)")
    p.add_argument("--out", required=True, help="worklist file to write (CSV, or JSON with --out-format json)")
    p.add_argument("--format", default=None, help="override dataset layout auto-detection")
    p.add_argument("--out-format", choices=["csv", "json"], default=None, help="default: from --out's suffix")
    p.add_argument("--structure", default=None, help="RIGA structure (cup/disc); default: the model's")
    p.add_argument("--task", type=int, default=None, help="QUBIQ task number")
    p.add_argument("--split", choices=["all", "test"], default="all",
                   help="all cases (default) or only the model's held-out cases")
    p.add_argument("--limit", type=int, default=None, help="rank at most this many cases (>= 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from clinloop.data import detect_format, load_dataset, reader_accepts
    from clinloop.evaluation.lexu_protocol import select_cases
    from clinloop.evaluation.triage import rank_cases, ranking_spearman, write_worklist
    from clinloop.models.lexu.model import load_lexu
    from clinloop.models.registry import read_config, require_family

    import torch

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; triage writes a file "
                         f"(e.g. --out {Path(args.out) / 'worklist.csv'})")
    torch.manual_seed(0)  # MC-dropout models: the same worklist every run
    model_dir = require_family(args.model, "lexu", "triage")
    method = read_config(model_dir)["method"]
    predictor = load_lexu(model_dir)
    opts = {}
    structure = args.structure or predictor.cfg.structure
    if structure and reader_accepts(args.format or detect_format(args.data), "structure"):
        opts["structure"] = structure
    if args.task is not None:
        opts["task"] = args.task
    ds = load_dataset(args.data, format=args.format, **opts)
    idx = select_cases(ds, model_dir, args.split)
    if args.limit is not None:
        idx = idx[: args.limit]
    rows = rank_cases(predictor, [ds[i] for i in idx])
    fmt = args.out_format or ("json" if str(args.out).endswith(".json") else "csv")
    write_worklist(rows, Path(args.out), fmt)
    rho = ranking_spearman(rows)
    print(f"{len(rows)} cases ranked by {method} predicted disagreement -> {args.out}; "
          f"Spearman vs rater disagreement {rho:.3f}", file=sys.stderr)
    return 0
