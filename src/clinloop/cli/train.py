"""``clinloop train --method M --data PATH --out MODEL_DIR [method flags]``."""
from __future__ import annotations

import argparse

from clinloop.cli._methods import TRAINERS, load


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (SPA, LEXU, MECCA and their baselines)",
        description="Train a model. Method-specific flags: `clinloop train --method M --help`.",
        add_help=False,
    )
    p.add_argument("--method", required=True, choices=sorted(TRAINERS))
    p.add_argument("-h", "--help", action="store_true")
    p.set_defaults(func=run, accepts_extra=True)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    mod = load(TRAINERS, args.method, "method")
    parser = argparse.ArgumentParser(prog=f"clinloop train --method {args.method}")
    parser.add_argument("--data", required=True, help="dataset path (any supported layout)")
    parser.add_argument("--format", default=None, help="override layout auto-detection")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--device", default="cpu")
    mod.add_train_arguments(parser)
    if args.help:
        parser.print_help()
        return 0
    margs = parser.parse_args(extra)
    margs.method = args.method
    return mod.run_train(margs)
