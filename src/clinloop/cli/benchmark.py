"""``clinloop benchmark --suite {ambiguity,spa,speed,lexu,mecca,meduhip,all} --data-root ../shared/data
--out report/ [--quick|--full] [--force STAGE]``.

The flags are the fields of :class:`clinloop.evaluation.benchmark.BenchmarkOptions`,
exactly like :func:`clinloop.api.benchmark`. Prints which stages were computed and which
reused; a suite that is not implemented yet exits with status 2 and says so.
"""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from clinloop.cli._options import add_options
    from clinloop.evaluation.benchmark.runner import BenchmarkOptions

    p = sub.add_parser(
        "benchmark",
        help="the papers' headline tables and the LIDC ambiguity table, beside the published rows",
        description="Compute the benchmark suites into a resumable report folder (README.md, one JSON per "
                    "stage, PNG figures). See docs/benchmark.md for the suites and their sizes.",
    )
    add_options(p, BenchmarkOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from clinloop.cli._options import parse_into
    from clinloop.evaluation.benchmark.runner import BenchmarkOptions, run_benchmark

    res = run_benchmark(parse_into(BenchmarkOptions, args), verbose=True)
    print(f"computed: {', '.join(res['computed']) or '-'}; reused: {', '.join(res['reused']) or '-'}")
    print(f"report: {res['out']}/README.md")
    return 0
