"""``clinloop evaluate --method M --protocol P --data PATH --out results.json [protocol flags]``.

The flags are the fields of the protocol's options dataclass
(:func:`clinloop.api.protocol_options_class`), exactly like :func:`clinloop.evaluate`.
MECCA's comparisons run here too: ``--mode compare`` / ``--mode semisup`` (formerly
``python -m clinloop.evaluation.mecca_protocol compare|semisup``); ``--train-args``
passes ``clinloop train --method mecca`` flags to the semi-supervised runs.
"""
from __future__ import annotations

import argparse
import shlex

from clinloop.cli._methods import PROTOCOLS, load


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="run a paper's evaluation protocol",
        description="Evaluate a method under a protocol. Protocol flags: `clinloop evaluate --protocol P --method M --help`.",
        add_help=False,
    )
    p.add_argument("--method", metavar="M", help="the method to evaluate (required; the protocol's methods below)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), metavar="P",
                   help=f"the protocol (required): {', '.join(sorted(PROTOCOLS))}")
    p.add_argument("-h", "--help", action="store_true", help="this help; with --protocol P --method M: P's flags")
    p.set_defaults(func=run, accepts_extra=True, command_parser=p)


def protocol_parser(protocol: str, method: str) -> argparse.ArgumentParser:
    from clinloop.cli._options import add_options

    mod = load(PROTOCOLS, protocol, "protocol")
    parser = argparse.ArgumentParser(prog=f"clinloop evaluate --protocol {protocol} --method {method}")
    add_options(parser, mod.OPTIONS, skip=("method", "protocol"))
    if protocol == "mecca":
        parser.add_argument("--train-args", default="",
                            help="semisup: `clinloop train --method mecca` flags for every run, as one string")
    return parser


def parse_options(protocol: str, method: str, argv: list[str]):
    """``argv`` (the flags after ``--protocol P --method M``) -> the protocol's options dataclass."""
    from clinloop.api import check_protocol_method
    from clinloop.cli._options import parse_into

    mod = load(PROTOCOLS, protocol, "protocol")
    check_protocol_method(mod, protocol, method)
    ns = protocol_parser(protocol, method).parse_args(argv)
    fixed = {"method": method, "protocol": protocol}
    if protocol == "mecca":
        fixed["train_options"] = _train_options(getattr(ns, "train_args", ""))
    return parse_into(mod.OPTIONS, ns, **fixed)


def _train_options(train_args: str) -> dict:
    """``--train-args "--size 48 --width 12"`` -> ``{"size": 48, "width": 12}`` (flags given only)."""
    if not train_args:
        return {}
    import dataclasses

    from clinloop.cli._options import add_options
    from clinloop.training.mecca import MECCATrainOptions

    parser = argparse.ArgumentParser(prog="--train-args")
    add_options(parser, MECCATrainOptions, skip=("method", "data", "out"))  # set by the semisup runs
    unset = object()  # not a string: argparse leaves it alone, so only the given flags remain
    parser.set_defaults(**{f.name: unset for f in dataclasses.fields(MECCATrainOptions)})
    return {k: v for k, v in vars(parser.parse_args(shlex.split(train_args))).items() if v is not unset}


def methods_text(sep: str = "\n  ") -> str:
    """Each protocol with the methods it evaluates (``sep`` between protocols)."""
    return sep.join(f"--protocol {p}: --method {', '.join(load(PROTOCOLS, p, 'protocol').METHODS)}"
                    for p in sorted(PROTOCOLS))


def run(args: argparse.Namespace, extra: list[str]) -> int:
    if args.protocol is None or args.method is None:
        if args.help:  # `clinloop evaluate --help`: this command's flags, the protocols and their methods
            args.command_parser.print_help()
            print(f"\nmethods of each protocol:\n  {methods_text()}")
            return 0
        missing = [f for f, v in (("--protocol", args.protocol), ("--method", args.method)) if v is None]
        raise ValueError(f"evaluate: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required; "
                         f"choose from {methods_text('; ')}")
    mod = load(PROTOCOLS, args.protocol, "protocol")
    if args.help:
        from clinloop.api import check_protocol_method

        check_protocol_method(mod, args.protocol, args.method)
        protocol_parser(args.protocol, args.method).print_help()
        return 0
    opts = parse_options(args.protocol, args.method, extra)
    mod.run_protocol(opts, verbose=True)
    return 0
