"""The benchmark's shared types: the options (``clinloop benchmark`` flags), a stage, the
run context, the suite registry and the "not implemented yet" error. Suites and the
runner import this module; it imports neither."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinloop.config_options import check_bounds, opt

SUITES = ("ambiguity", "spa", "speed", "lexu", "mecca", "meduhip")  # report order
SUITE_CHOICES = SUITES + ("all",)
MODES = ("quick", "default", "full")


class NotImplementedSuite(ValueError):
    """A suite (or table) this build cannot produce: ``not implemented yet: ...``."""


@dataclass(kw_only=True)
class BenchmarkOptions:
    """``clinloop benchmark`` (and :func:`clinloop.api.benchmark`). Sizes per suite: the
    suite module's docstring (``quick`` a few cases per table, ``full`` larger)."""

    suite: str = opt("all", choices=SUITE_CHOICES, help="which tables to compute")
    data_root: str = opt("../shared/data", help="folder holding lidc/, qubiq_brain_growth/, ... (the shared data)")
    out: str = opt("report", help="report folder: README.md, one JSON per stage, PNG figures")
    quick: bool = opt(False, help="a few cases per table (a smoke run; minutes, not hours)")
    full: bool = opt(False, help="larger sizes than the default (see each suite)")
    force: list = opt(default_factory=list, action="append", metavar="STAGE",
                      help="recompute this stage (or every stage of this suite) even if its JSON exists; repeatable")
    seed: int = opt(0, help="seed of the case draws, the samples and the bootstrap")
    threads: int | None = opt(1, help="torch CPU threads (1: reproducible and light)", type=int, at_least=1)
    jobs: int = opt(2, help="stages computed at once, each in its own process with --threads threads (2: both "
                            "cores of a 2-core machine at --threads 1); 1: one after another in this process. "
                            "The figures do not depend on it")

    def __post_init__(self) -> None:
        check_bounds(self)

    @property
    def mode(self) -> str:
        if self.quick and self.full:
            raise ValueError("--quick and --full exclude each other")
        return "quick" if self.quick else "full" if self.full else "default"


@dataclass
class Stage:
    """One resumable unit: ``compute(ctx) -> dict`` (JSON-serialisable), stored as
    ``<name>.json``; reused while ``config`` is unchanged."""

    name: str
    compute: Callable[[Context], dict]
    config: dict = field(default_factory=dict)


@dataclass
class Context:
    options: BenchmarkOptions
    data_root: Path
    out: Path
    mode: str
    seed: int
    verbose: bool = False
    log: list[str] = field(default_factory=list)

    def size(self, quick: Any, default: Any, full: Any) -> Any:
        """The value for this run's mode."""
        return {"quick": quick, "default": default, "full": full}[self.mode]

    def raw_dir(self, stage: str) -> Path:
        """A folder for a stage's own files (protocol outputs): ``out/raw/<stage>/``."""
        d = self.out / "raw" / stage
        d.mkdir(parents=True, exist_ok=True)
        return d


def suite_module(name: str):
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose from {', '.join(SUITE_CHOICES)}")
    return importlib.import_module(f"clinloop.evaluation.benchmark.{name}")


class folder_lock:
    """An exclusive ``flock`` on ``path`` for the ``with`` block (no-op where ``fcntl`` is missing):
    stages in parallel workers (``--jobs``) that train the same model folder take turns."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.fh = open(self.path, "a")
        try:
            import fcntl

            fcntl.flock(self.fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        return self

    def __exit__(self, *exc):
        self.fh.close()  # closing releases the lock
        return False
