"""``clinloop data info|convert``: inspect a dataset, convert it to the canonical layout.

Thin wrappers over :func:`clinloop.data.load_dataset`,
:func:`clinloop.data.stats.dataset_stats` and
:func:`clinloop.data.readers.canonical.write_canonical`.
"""
from __future__ import annotations

import argparse
import json
import sys


def parse_option(text: str) -> tuple[str, object]:
    """``"key=value"`` -> ``(key, value)`` with light coercion: ``true/false``
    (also yes/no, on/off) -> bool, ``none``/``null`` -> None, integers -> int,
    other numbers -> float, anything else stays a string."""
    if "=" not in text:
        raise ValueError(f"--option {text!r}: expected key=value")
    key, value = text.split("=", 1)
    key = key.strip().replace("-", "_")
    if not key.isidentifier():
        raise ValueError(f"--option {text!r}: {key!r} is not a valid option name")
    low = value.strip().lower()
    if low in ("true", "yes", "on"):
        return key, True
    if low in ("false", "no", "off"):
        return key, False
    if low in ("none", "null"):
        return key, None
    for conv in (int, float):
        try:
            return key, conv(value)
        except ValueError:
            pass
    return key, value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default=None, help="layout (default: auto-detect); see `clinloop data formats`")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="reader option, repeatable (e.g. structure=cup, volumes=true, task=1)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N cases")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="inspect and convert datasets",
                       description="Inspect multi-rater datasets and convert them to the canonical layout.")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True

    info = dsub.add_parser("info", help="summary statistics of a dataset",
                           description="Read every case and print a summary (shapes, raters, inter-rater Dice, ...).")
    info.add_argument("path", help="dataset folder or file")
    _add_common(info)
    info.add_argument("--json", action="store_true", help="print the statistics as JSON")
    info.set_defaults(func=run_info)

    conv = dsub.add_parser("convert", help="convert a dataset to the canonical folder layout",
                           description="Write SRC (any supported layout) as a canonical folder DST "
                                       "(all-or-nothing; DST must not exist).")
    conv.add_argument("src")
    conv.add_argument("dst")
    _add_common(conv)
    conv.add_argument("--mask-format", choices=["png", "nii.gz", "nii", "npy"], default=None,
                      help="rater mask files (default: png in 2-D, nii.gz in 3-D)")
    conv.add_argument("--image-format", choices=["png", "jpg", "npy", "nii", "nii.gz"], default=None,
                      help="image files (default: lossless per case: png / nii.gz / npy)")
    conv.set_defaults(func=run_convert)

    fmts = dsub.add_parser("formats", help="list the dataset layouts clinloop reads")
    fmts.set_defaults(func=run_formats)


def _open(path: str, args: argparse.Namespace):
    from clinloop.data import load_dataset

    options = dict(parse_option(o) for o in args.option)
    ds = load_dataset(path, format=args.format, **options)
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        ds = ds.subset(range(min(args.limit, len(ds)))) if args.limit < len(ds) else ds
    return ds


def run_info(args: argparse.Namespace) -> int:
    from clinloop.data import load_dataset
    from clinloop.data.stats import dataset_stats, format_stats

    options = dict(parse_option(o) for o in args.option)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    ds = load_dataset(args.path, format=args.format, **options)
    st = dataset_stats(ds, limit=args.limit, progress=False if args.quiet else None)
    print(json.dumps(st, indent=1) if args.json else format_stats(st))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from clinloop.data.readers.canonical import write_canonical

    ds = _open(args.src, args)
    progress = sys.stderr.isatty() and not args.quiet
    write_canonical(ds, args.dst, mask_format=args.mask_format, image_format=args.image_format, progress=progress)
    print(f"wrote {len(ds)} cases ({ds.format} -> canonical) to {args.dst}")
    return 0


def run_formats(args: argparse.Namespace) -> int:
    from clinloop.data.registry import READERS, available_formats

    for name in available_formats():
        print(f"{name:<10} {READERS[name].description}")
    return 0
