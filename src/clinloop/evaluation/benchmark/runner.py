"""``clinloop benchmark``: resumable stages, one JSON each, and the report built from them.

A suite module (``ambiguity``, ``spa``, ``speed``, ...) exposes ``TITLE``,
``stages(ctx) -> list[Stage]``, ``section(ctx, results) -> str`` (its Markdown, from
the stages' JSON) and ``figures(ctx, results) -> list[str]`` (PNG names written
under ``ctx.out``). A stage's JSON ``out/<stage>.json`` holds ``{"stage", "suite",
"config", "seconds", "result"}``; a later run reuses it when its ``config`` (sizes,
seed, model) equals the current one, so an interrupted run resumes at the first
unfinished stage and a finished one is not recomputed; ``force`` names stages (or
whole suites) to redo. ``out/README.md`` is rebuilt at the end of every run from
all stage files present, so suites run one at a time accumulate in one report.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from clinloop.evaluation.benchmark.base import (  # noqa: F401  (re-exported)
    MODES,
    SUITE_CHOICES,
    SUITES,
    BenchmarkOptions,
    Context,
    NotImplementedSuite,
    Stage,
    suite_module,
)


def stage_path(out: Path, name: str) -> Path:
    return out / f"{name}.json"


def load_stage(out: Path, name: str) -> dict | None:
    p = stage_path(out, name)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a damaged file is recomputed


def _jsonable(config: dict) -> dict:
    return json.loads(json.dumps(config))


def run_stage(ctx: Context, suite: str, st: Stage, force: bool) -> tuple[dict, bool]:
    """The stage's stored record, computing it if missing, stale or forced. Returns (record, computed)."""
    from clinloop.atomic import atomic_write_text

    config = _jsonable({**st.config, "mode": ctx.mode, "seed": ctx.seed})
    old = load_stage(ctx.out, st.name)
    if old is not None and not force and old.get("config") == config:
        return old, False
    t0 = time.perf_counter()
    result = st.compute(ctx)
    rec = {"stage": st.name, "suite": suite, "config": config, "seconds": round(time.perf_counter() - t0, 2),
           "result": result}
    atomic_write_text(stage_path(ctx.out, st.name), json.dumps(rec, indent=1, allow_nan=True) + "\n")
    return rec, True


def _check_force(force: list[str], known: dict[str, list[str]]) -> set[str]:
    stages = {s for ss in known.values() for s in ss}
    out: set[str] = set()
    for f in force:
        if f in known:
            out |= set(known[f])
        elif f in stages:
            out.add(f)
        else:
            raise ValueError(f"--force {f!r}: no such stage in this run; stages: {', '.join(sorted(stages))} "
                             f"(or a suite: {', '.join(known)})")
    return out


def run_benchmark(options: BenchmarkOptions, verbose: bool = False) -> dict[str, Any]:
    """Run the selected suites' stages into ``options.out`` and rebuild its README.

    Returns ``{"out", "mode", "computed": [stages], "reused": [stages], "suites": {suite: [stages]},
    "not_implemented": {suite: reason}}``. A suite that is not implemented raises
    :class:`NotImplementedSuite` (``not implemented yet: ...``) when asked for alone;
    with ``suite="all"`` the others run, the README says what is missing, and the
    error is raised at the end (so the exit status is not 0)."""
    import torch
    from tqdm.auto import tqdm

    from clinloop.evaluation.benchmark.report import write_report

    mode = options.mode
    root = Path(options.data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"--data-root {root}: no such folder (it holds lidc/, qubiq_brain_growth/, ...)")
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(options, root, out, mode, int(options.seed), verbose)
    if options.threads:
        torch.set_num_threads(int(options.threads))
    names = list(SUITES) if options.suite == "all" else [options.suite]
    plan: dict[str, list[Stage]] = {}
    missing: dict[str, str] = {}
    for name in names:
        mod = suite_module(name)
        try:
            plan[name] = mod.stages(ctx)
        except NotImplementedSuite as e:
            if options.suite != "all":
                raise
            missing[name] = str(e)
    forced = _check_force(list(options.force or []), {k: [s.name for s in v] for k, v in plan.items()})
    computed, reused = [], []
    todo = [(suite, st) for suite, sts in plan.items() for st in sts]
    bar = tqdm(todo, desc="benchmark", unit="stage", disable=not verbose)
    for suite, st in bar:
        bar.set_postfix_str(st.name)
        _, did = run_stage(ctx, suite, st, st.name in forced)
        (computed if did else reused).append(st.name)
    bar.close()
    write_report(ctx, missing)
    res = {"out": str(out), "mode": mode, "computed": computed, "reused": reused,
           "suites": {k: [s.name for s in v] for k, v in plan.items()}, "not_implemented": missing}
    if missing:
        raise NotImplementedSuite("; ".join(missing.values()) + f" (the other suites' report is in {out / 'README.md'})")
    return res
