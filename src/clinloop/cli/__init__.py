"""``clinloop`` command line: a thin layer over the library.

Each sub-command lives in its own module exposing ``add_parser(subparsers)``;
heavy imports happen inside the command functions so ``clinloop --help`` is fast.
Bad input (``ValueError`` and its subclasses, missing files, a file where a folder
should be) becomes a one-line ``clinloop: error: ...`` message and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from clinloop import __version__

# sub-command name -> module providing add_parser(subparsers)
COMMANDS = {
    "data": "clinloop.cli.data",
    "train": "clinloop.cli.train",
    "evaluate": "clinloop.cli.evaluate",
    "predict": "clinloop.cli.predict",
    "demo": "clinloop.cli.demo",
    "triage": "clinloop.cli.triage",
    "serve": "clinloop.cli.serve",
    "state": "clinloop.cli.state",
    "benchmark": "clinloop.cli.benchmark",
    "interpolate": "clinloop.cli.interpolate",
    "extract-expert": "clinloop.cli.extract_expert",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clinloop",
        description="Uncertainty-aware, clinician-in-the-loop medical image segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"clinloop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # command not built yet
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        rc = args.func(args, extra) if getattr(args, "accepts_extra", False) else args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
            PermissionError) as e:
        print(f"clinloop: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clinloop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `clinloop data info ... | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
