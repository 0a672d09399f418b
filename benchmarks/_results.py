"""Shared by the benchmark scripts: write a run's figures as JSON (atomically)."""
from __future__ import annotations

import json
from pathlib import Path

from clinloop.atomic import atomic_write_text


def write_json(out: str | Path | None, result: dict) -> None:
    """Write ``result`` to ``out`` (indented JSON) and say so; nothing when ``out`` is empty."""
    if not out:
        return
    atomic_write_text(Path(out), json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
