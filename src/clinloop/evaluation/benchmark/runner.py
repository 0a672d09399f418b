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

With ``jobs`` > 1 the stages to compute run in that many worker processes (spawned; each
rebuilds the suite's plan and computes one stage by name, ``threads`` torch threads each),
in plan order; the stages of a suite marked ``ALONE`` (``speed``: it times things) run
afterwards, one at a time, in this process. A stage is independent of the others' results
(its seeds are its own), so the figures are those of ``jobs=1``; stages that share a
trained model take turns on a lock beside its folder (:class:`~.base.folder_lock`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from clinloop.atomic import file_sha256
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


def model_fingerprints(config: dict) -> dict[str, str]:
    """``{name: sha256[:12] of weights.pt}`` for each shipped model named by ``config["model"]`` /
    ``config["models"]``: part of a stage's stored config, so that shipping new weights under an
    old name makes the stages that used the old ones stale (until 2026-12-04 the name alone was
    compared, and the report kept stage-1 ``spa-general`` rows after stage 2 had shipped)."""
    from clinloop.models.registry import SHIPPED_DIR

    names = []
    for key in ("model", "models"):
        v = config.get(key)
        names += [v] if isinstance(v, str) else [x for x in (v or []) if isinstance(x, str)]
    out = {}
    for name in names:
        w = SHIPPED_DIR / name / "weights.pt"
        if w.is_file():
            out[name] = file_sha256(w)[:12]
    return out


def stage_config(ctx: Context, st: Stage) -> dict:
    """What a stored stage must match to be reused: the stage's config, mode, seed and the
    fingerprints of the shipped models it names."""
    config = {**st.config, "mode": ctx.mode, "seed": ctx.seed}
    fp = model_fingerprints(config)
    return _jsonable({**config, **({"model_sha": fp} if fp else {})})


def _reusable(ctx: Context, st: Stage, force: bool) -> tuple[dict, dict | None]:
    """``(config, stored record)``: the record when it may be reused (present, same config, not
    forced), else None. The one staleness rule of :func:`run_stage` and the parallel plan."""
    config = stage_config(ctx, st)
    old = None if force else load_stage(ctx.out, st.name)
    return config, (old if old is not None and old.get("config") == config else None)


def run_stage(ctx: Context, suite: str, st: Stage, force: bool) -> tuple[dict, bool]:
    """The stage's stored record, computing it if missing, stale or forced. Returns (record, computed)."""
    from clinloop.atomic import atomic_write_text

    config, old = _reusable(ctx, st, force)
    if old is not None:
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


def _worker_stage(options: BenchmarkOptions, suite: str, name: str) -> str:
    """A worker process: rebuild ``suite``'s plan and compute its stage ``name`` (forced: the
    parent has decided that it is due)."""
    import torch

    if options.threads:
        torch.set_num_threads(int(options.threads))
    out = Path(options.out)
    ctx = Context(options, Path(options.data_root), out, options.mode, int(options.seed), False)
    st = next(s for s in suite_module(suite).stages(ctx) if s.name == name)
    run_stage(ctx, suite, st, True)
    return name


def _run_parallel(options: BenchmarkOptions, due: list[tuple[str, Stage]], verbose: bool) -> None:
    """Compute the ``due`` stages in ``options.jobs`` spawned processes (plan order); the first
    failure cancels what has not started and is raised."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    from tqdm.auto import tqdm

    bar = tqdm(total=len(due), desc=f"benchmark ({options.jobs} jobs)", unit="stage", disable=not verbose)
    with ProcessPoolExecutor(max_workers=min(int(options.jobs), len(due)), mp_context=mp.get_context("spawn")) as ex:
        pending = {ex.submit(_worker_stage, options, suite, st.name) for suite, st in due}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None:
                    for p in pending:
                        p.cancel()
                    raise f.exception()
                bar.update(1)
                bar.set_postfix_str(f.result())
    bar.close()


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
    from clinloop.paths import output_folder

    mode = options.mode
    root = Path(options.data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"--data-root {root}: no such folder (it holds lidc/, qubiq_brain_growth/, ...)")
    out = output_folder(options.out)  # a clear error when --out is a file
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
    if int(options.jobs) < 1:
        raise ValueError(f"--jobs must be at least 1, got {options.jobs}")
    todo = [(suite, st) for suite, sts in plan.items() for st in sts]
    due = [(suite, st) for suite, st in todo if _reusable(ctx, st, st.name in forced)[1] is None]
    # suites whose stages time things (ALONE, the speed suite) run one at a time after the others
    alone = [(suite, st) for suite, st in due if getattr(suite_module(suite), "ALONE", False)]
    shared = [x for x in due if x not in alone]
    if int(options.jobs) > 1 and len(shared) > 1:
        _run_parallel(options, shared, verbose)
        shared = []
    if shared or alone:
        bar = tqdm(shared + alone, desc="benchmark", unit="stage", disable=not verbose)
        for suite, st in bar:
            bar.set_postfix_str(st.name)
            run_stage(ctx, suite, st, True)
        bar.close()
    computed = [st.name for _, st in due]  # (in plan order, however they ran)
    reused = [st.name for _, st in todo if st.name not in set(computed)]
    write_report(ctx, missing)
    res = {"out": str(out), "mode": mode, "computed": computed, "reused": reused,
           "suites": {k: [s.name for s in v] for k, v in plan.items()}, "not_implemented": missing}
    if missing:
        raise NotImplementedSuite("; ".join(missing.values()) + f" (the other suites' report is in {out / 'README.md'})")
    return res
