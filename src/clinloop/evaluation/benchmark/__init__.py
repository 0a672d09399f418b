"""``clinloop benchmark``: the papers' headline tables and the LIDC ambiguity table,
side by side with the published rows, in one resumable report.

    from clinloop.evaluation.benchmark import BenchmarkOptions, run_benchmark
    run_benchmark(BenchmarkOptions(suite="ambiguity", out="report", quick=True))

One module per suite (``ambiguity``, ``spa``, ``speed``, ``lexu``, ``mecca``,
``meduhip``; each docstring states its default sizes), the stage runner
(``runner``), the report writer (``report``), the one bootstrap (``stats``) and the
published rows (``published``). See docs/benchmark.md.
"""
from __future__ import annotations

from clinloop.evaluation.benchmark.runner import (  # noqa: F401
    SUITES,
    BenchmarkOptions,
    NotImplementedSuite,
    Stage,
    run_benchmark,
)
