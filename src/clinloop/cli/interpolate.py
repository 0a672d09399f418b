"""``clinloop interpolate --model-a A --model-b B [--alpha 0.5] --out DIR``: the SPA model
(1 − α) A + α B in weight space (:func:`clinloop.training.spa_soup.interpolate`)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from clinloop.cli._options import add_options
    from clinloop.training.spa_soup import InterpolateConfig

    p = sub.add_parser("interpolate", help="average two SPA models in weight space (B fine-tuned from A)",
                       description="Write the SPA model (1 - alpha) A + alpha B, every trainable tensor; "
                                   "B's config and patient split are kept.")
    add_options(p, InterpolateConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from clinloop.cli._options import parse_into
    from clinloop.training.spa_soup import InterpolateConfig, interpolate

    cfg = parse_into(InterpolateConfig, args)
    interpolate(cfg)
    print(f"interpolate: (1 - {cfg.alpha:g}) x {cfg.model_a} + {cfg.alpha:g} x {cfg.model_b} -> {cfg.out}")
    return 0
