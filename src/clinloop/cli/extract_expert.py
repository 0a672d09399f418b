"""``clinloop extract-expert --general G --specialist S --structure NAME [--rank 8] --out DIR``: the
general SPA model with S as NAME's expert (:func:`clinloop.training.spa_experts.extract_expert`)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from clinloop.cli._options import add_options
    from clinloop.training.spa_experts import ExtractExpertConfig

    p = sub.add_parser("extract-expert", help="add a specialist SPA model to a general one as a structure's expert",
                       description="Write the general SPA model with the specialist's weights as a low-rank "
                                   "change for one structure (clinloop.models.spa.experts); nothing is trained.")
    add_options(p, ExtractExpertConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from clinloop.cli._options import parse_into
    from clinloop.training.spa_experts import ExtractExpertConfig, extract_expert

    cfg = parse_into(ExtractExpertConfig, args)
    data = extract_expert(cfg)
    e = data["expert"]
    print(f"extract-expert: {cfg.general} + {cfg.specialist} for {cfg.structure!r} at rank {cfg.rank} "
          f"({e['numbers']:,} numbers, {e['delta_energy_kept']:.1%} of the change kept) -> {cfg.out}")
    return 0
