"""``clinloop evaluate --method M --protocol P --data PATH --out results.json``."""
from __future__ import annotations

import argparse

from clinloop.cli._methods import PROTOCOLS, load


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="run a paper's evaluation protocol",
        description="Evaluate a method under a protocol. Protocol flags: `clinloop evaluate --protocol P --method M --help`.",
        add_help=False,
    )
    p.add_argument("--method", required=True)
    p.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    p.add_argument("-h", "--help", action="store_true")
    p.set_defaults(func=run, accepts_extra=True)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    mod = load(PROTOCOLS, args.protocol, "protocol")
    if args.method not in mod.METHODS:
        raise ValueError(
            f"protocol {args.protocol!r} evaluates methods {', '.join(mod.METHODS)}; got {args.method!r}"
        )
    parser = argparse.ArgumentParser(prog=f"clinloop evaluate --protocol {args.protocol} --method {args.method}")
    parser.add_argument("--data", required=True)
    parser.add_argument("--format", default=None)
    parser.add_argument("--model", default=None, help="model folder; default: the shipped model for the method")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    mod.add_arguments(parser)
    if args.help:
        parser.print_help()
        return 0
    margs = parser.parse_args(extra)
    margs.method, margs.protocol = args.method, args.protocol
    return mod.run(margs)
