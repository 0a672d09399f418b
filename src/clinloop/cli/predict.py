"""``clinloop predict --data PATH --out DIR [--model M] [--workers N] [--shard i/n] [--prompts CSV]``.

Flags are the fields of :class:`clinloop.inference.predict.PredictOptions`; the
command is :func:`clinloop.predict`. Prints a one-line summary; bad cases are
listed on stderr and in ``predictions.csv`` and do not stop the run. Exit status 0
when some case was segmented (or none was left to do), 1 when every case this run
attempted failed (e.g. an interactive model without ``--prompts``), 2 for bad input
(including a rerun into an ``--out`` made by another model, prompts or seed: ``run.json``).
"""
from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    from clinloop.cli._options import add_options
    from clinloop.inference.predict import PredictOptions

    p = sub.add_parser("predict", help="segment a whole collection (masks, probability and uncertainty maps, CSV)",
                       description="Segment every case of a dataset; resumable, parallel (--workers), "
                                   "shardable (--shard i/n).")
    add_options(p, PredictOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from clinloop.cli._options import parse_into
    from clinloop.inference.predict import PredictOptions, predict

    s = predict(parse_into(PredictOptions, args))
    print(f"predict: {s['ok']} done, {s['skipped']} already finished, {len(s['errors'])} errors "
          f"(shard {s['shard']}: {s['shard_cases']} of {s['cases']} cases) -> {s['csv']}")
    if s["errors"] and not s["ok"]:  # cases were attempted and none succeeded
        print(f"predict: every one of the {len(s['errors'])} case(s) attempted failed", file=sys.stderr)
        return 1
    return 0
