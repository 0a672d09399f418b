"""Where things live: the shared development data (optional), caches, assets."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"


def shared_data_dir() -> Path | None:
    """The multi-rater development datasets (``../shared/data`` beside the
    checkout), or ``None`` when absent. ``CLINLOOP_SHARED_DATA`` overrides.
    Nothing in the embedded default may depend on this folder."""
    env = os.environ.get("CLINLOOP_SHARED_DATA")
    candidates = [Path(env)] if env else []
    repo = PACKAGE_DIR.parents[1]  # src/clinloop -> repo root (editable install)
    candidates += [repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def cache_dir() -> Path:
    """Cache for derived data (image embeddings, ...). ``CLINLOOP_CACHE`` overrides;
    default ``~/.cache/clinloop``."""
    d = Path(os.environ.get("CLINLOOP_CACHE", Path.home() / ".cache" / "clinloop"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def output_folder(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as a folder to write into, created with its parents; a ``ValueError`` naming ``flag`` when it
    (or a folder above it) is an existing file, instead of a ``FileExistsError`` from ``mkdir``."""
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists() and not q.is_dir():
            what = "exists and is not a folder" if q == p else f"{q} is a file, not a folder"
            raise ValueError(f"{flag} {p}: {what}; choose another {flag}")
    p.mkdir(parents=True, exist_ok=True)
    return p
