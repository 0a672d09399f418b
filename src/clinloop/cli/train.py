"""``clinloop train --method M --data PATH --out MODEL_DIR [method flags]``.

The flags are the fields of the method's options dataclass
(:func:`clinloop.api.train_options_class`); parsing fills it and hands it to the
trainer, exactly like :func:`clinloop.train`.

``--nproc N`` (with ``--nnodes K --rdzv-endpoint HOST:PORT [--node-rank I]`` for
several machines) re-runs the same command under ``torchrun``: N data-parallel
processes per node (:mod:`clinloop.training.distributed`).
"""
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
    p.add_argument("--method", choices=sorted(TRAINERS), metavar="M",
                   help=f"the method to train (required): {', '.join(sorted(TRAINERS))}")
    p.add_argument("-h", "--help", action="store_true", help="this help; with --method M: M's own flags")
    p.add_argument("--nproc", type=int, default=None, help="data-parallel processes per node (launches torchrun)")
    p.add_argument("--nnodes", type=int, default=1, help="machines (with --nproc and --rdzv-endpoint)")
    p.add_argument("--rdzv-endpoint", default=None, help="HOST:PORT of the rendezvous, the same on every node")
    p.add_argument("--node-rank", type=int, default=None, help="this machine's rank (optional with c10d rendezvous)")
    p.set_defaults(func=run, accepts_extra=True, command_parser=p)


def method_parser(method: str) -> argparse.ArgumentParser:
    """The parser of ``clinloop train --method M``'s own flags."""
    from clinloop.cli._options import add_options

    mod = load(TRAINERS, method, "method")
    parser = argparse.ArgumentParser(prog=f"clinloop train --method {method}")
    add_options(parser, mod.OPTIONS, skip=("method",))
    return parser


def parse_options(method: str, argv: list[str]):
    """``argv`` (the flags after ``--method M``) -> the method's options dataclass."""
    from clinloop.cli._options import parse_into

    mod = load(TRAINERS, method, "method")
    return parse_into(mod.OPTIONS, method_parser(method).parse_args(argv), method=method)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    if args.method is None:
        if args.help:  # `clinloop train --help`: this command's flags and the methods
            args.command_parser.print_help()
            return 0
        raise ValueError(f"train: --method is required; choose from {', '.join(sorted(TRAINERS))}")
    if args.help:
        method_parser(args.method).print_help()
        return 0
    opts = parse_options(args.method, extra)  # checks the flags before launching anything
    if args.nproc is not None or args.nnodes > 1:
        import os

        if "WORLD_SIZE" in os.environ:
            raise ValueError("--nproc: already running under torchrun; drop --nproc")
        from clinloop.training.distributed import launch

        return launch(["train", "--method", args.method, *extra], args.nproc or 1, args.nnodes,
                      args.rdzv_endpoint, args.node_rank)
    load(TRAINERS, args.method, "method").train_model(opts)
    return 0
