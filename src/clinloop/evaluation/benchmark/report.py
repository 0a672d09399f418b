"""The report: ``README.md`` (Markdown tables) rebuilt from every stage JSON in the
report folder, and the Markdown / matplotlib helpers the suites share."""
from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HEADER = """# clinloop benchmark report

Written by `clinloop benchmark` from the stage files beside it (`*.json`: the raw
figures, per case where a table shows a mean; `raw/`: the protocols' own outputs;
`*.png`: figures). Our rows carry 95 % percentile bootstrap intervals over
patients (cluster bootstrap, 2000 draws, seeded); rows marked **published** are
copied from the papers as printed (never recomputed), and each table says what
differs between the two. Timings depend on the machine and its load.
"""


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; cells are ``str()``-ed, ``|`` escaped."""
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def stage_records(out: Path) -> dict[str, dict[str, dict]]:
    """suite -> {stage name -> record} for every stage JSON in ``out``."""
    found: dict[str, dict[str, dict]] = {}
    for p in sorted(Path(out).glob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and {"stage", "suite", "result"} <= set(rec):
            found.setdefault(rec["suite"], {})[rec["stage"]] = rec
    return found


def machine() -> str:
    import torch

    load = ", load average %.1f" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return (f"{platform.machine()} CPU, {os.cpu_count()} cores{load}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")


def write_report(ctx, missing: dict[str, str]) -> Path:
    """Rebuild ``ctx.out/README.md`` (atomically) from the stage files; figures beside it."""
    from clinloop.atomic import atomic_write_text
    from clinloop.evaluation.benchmark.base import SUITES, suite_module

    recs = stage_records(ctx.out)
    parts = [HEADER, f"Last run: `--suite {ctx.options.suite}` ({ctx.mode} sizes, seed {ctx.seed}) on {machine()}.\n"]
    for name in SUITES:
        if name in missing:
            parts.append(f"## {name}\n\n**{missing[name]}**\n")
            continue
        if name not in recs:
            continue
        mod = suite_module(name)
        pngs = mod.figures(ctx, recs[name]) if hasattr(mod, "figures") else []
        parts.append(mod.section(ctx, recs[name]))
        parts += [f"![{p}]({p})\n" for p in pngs]
    path = Path(ctx.out) / "README.md"
    atomic_write_text(path, "\n".join(parts))
    return path


def save_figure(fig, path: Path) -> str:
    """Write a matplotlib figure atomically; returns its file name."""
    from clinloop.atomic import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return Path(path).name


def sizes_line(records: dict[str, dict]) -> str:
    """``stage: mode sizes (n cases), s seconds`` for each record."""
    bits = []
    for name, rec in sorted(records.items()):
        n = rec["result"].get("n_cases")
        bits.append(f"`{name}` {rec['config'].get('mode')}" + (f", {n} cases" if n is not None else "")
                    + f", {rec.get('seconds', 0):.0f} s")
    return "Stages: " + "; ".join(bits) + ".\n"
