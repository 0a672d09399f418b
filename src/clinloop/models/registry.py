"""Model folders and shipped models.

A *model folder* holds everything needed to rebuild a model (nnU-Net style):
``config.json`` (the resolved dataclass config, with a ``"method"`` key),
``weights.pt`` (state dict) and optionally ``data.json`` (what it was trained
on: dataset, split, normalisation) and ``metrics.json``. ``load_model`` reads
``config.json`` and hands the folder to the loader registered for its method.

Shipped models live in ``clinloop/assets/models/<name>/``; ``load_model()``
with no argument returns the default (the SPA model trained on LIDC).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from clinloop.paths import ASSETS_DIR

SHIPPED_DIR = ASSETS_DIR / "models"
DEFAULT_MODEL = "spa-general"

# method name (config.json "method") -> "module:callable" taking the folder Path
LOADERS: dict[str, str] = {
    "spa": "clinloop.models.spa.model:load_spa",
    "meduhip": "clinloop.models.spa.model:load_spa",
    "spa-random-gmm": "clinloop.models.spa.model:load_spa",
    "spa-mean-variance": "clinloop.models.spa.model:load_spa",
    "spa-weights": "clinloop.models.spa.model:load_spa",
    "click-litemedsam": "clinloop.models.baselines.litemedsam_interactive:load_click_litemedsam",
    "box-litemedsam": "clinloop.models.baselines.litemedsam_interactive:load_box_litemedsam",
    "lexu": "clinloop.models.lexu.model:load_lexu",
    "unet": "clinloop.models.lexu.model:load_lexu",
    "ensemble": "clinloop.models.lexu.model:load_lexu",
    "layer-ensemble": "clinloop.models.lexu.model:load_lexu",
    "mc-dropout": "clinloop.models.lexu.model:load_lexu",
    "mecca": "clinloop.models.mecca.model:load_mecca",
    "mecca-no-confidence": "clinloop.models.mecca.model:load_mecca",
    "interactive-cnn": "clinloop.models.mecca.model:load_mecca",
    "mecca-unet": "clinloop.models.mecca.model:load_mecca",
}


def shipped_models() -> list[str]:
    """Names of the models that ship inside the package."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "config.json").is_file())


def resolve_model_dir(name_or_dir: str | Path | None = None) -> Path:
    """A model folder from a path or a shipped model's name."""
    if name_or_dir is None:
        name_or_dir = DEFAULT_MODEL
    p = Path(name_or_dir)
    if (p / "config.json").is_file():
        return p
    if (SHIPPED_DIR / str(name_or_dir) / "config.json").is_file():
        return SHIPPED_DIR / str(name_or_dir)
    if p.exists():
        raise ValueError(f"{p}: not a model folder (no config.json)")
    raise ValueError(
        f"no model folder or shipped model named {str(name_or_dir)!r}; shipped: {', '.join(shipped_models()) or 'none'}"
    )


def read_config(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read model config ({e})") from e
    if "method" not in cfg:
        raise ValueError(f"{path}: model config has no 'method' key")
    return cfg


def family(method: str) -> str:
    """The method package a config.json ``method`` belongs to: "spa", "lexu", "mecca" or "baselines"."""
    if method not in LOADERS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(sorted(LOADERS))}")
    return LOADERS[method].split(":")[0].split(".")[2]


def require_family(name_or_dir: str | Path, wanted: str, who: str) -> Path:
    """The model folder of ``name_or_dir`` when its method belongs to the package ``wanted``
    (see :func:`family`); otherwise a ``ValueError`` such as "triage needs a LEXU model; spa-lidc
    is a spa model" (``who``: what needs it), before any weights or config fields are read."""
    d = resolve_model_dir(name_or_dir)
    method = read_config(d)["method"]
    try:
        got = family(method)
    except ValueError as e:
        raise ValueError(f"{d}/config.json: {e}") from None
    if got != wanted:
        kind = method if got == method else f"{method} ({got.upper()} family)"
        raise ValueError(f"{who} needs a {wanted.upper()} model; {name_or_dir} is a {kind} model")
    return d


def load_model(name_or_dir: str | Path | None = None, **kwargs):
    """Rebuild a model from a folder or a shipped model's name (default: ``spa-general``)."""
    d = resolve_model_dir(name_or_dir)
    method = read_config(d)["method"]
    if method not in LOADERS:
        raise ValueError(f"{d}: unknown method {method!r} in config.json")
    mod, fn = LOADERS[method].split(":")
    model = getattr(importlib.import_module(mod), fn)(d, **kwargs)
    if getattr(model, "folder", None) is None:
        model.folder = Path(d)  # where it came from: the server names a model by its folder ("spa-general")
    return model
