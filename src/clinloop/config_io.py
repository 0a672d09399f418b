"""One way to save and load a config dataclass as JSON.

Every model config (``SPAConfig``, ``LexuConfig``, ``MECCAConfig``,
``ClickLiteMedSAMConfig``) goes through these functions:

* :func:`config_to_dict` — ``dataclasses.asdict`` (tuples become JSON lists);
* :func:`save_config` — pretty JSON with a trailing newline, written atomically
  (a temporary file renamed over the target, so a crash never leaves half a file);
* :func:`config_from_dict` / :func:`load_config` — the reverse. A key that is not
  a field of the class is an error naming the key and the file (no silent drop).
  Keys that older versions wrote under another name are mapped by the class's
  ``LEGACY_KEYS`` (``{old name: new name}``; ``None`` = a key with no meaning any
  more, dropped on purpose), so every rename is written down in one place.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def config_to_dict(cfg) -> dict[str, Any]:
    """The dataclass ``cfg`` as a JSON-ready dict (field order kept)."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | Path) -> Path:
    """Write ``cfg`` as JSON to ``path`` atomically; returns the path."""
    from clinloop.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, json.dumps(config_to_dict(cfg), indent=2) + "\n")
    return path


def config_from_dict(cls: type[T], d: dict[str, Any], source: str | Path = "config") -> T:
    """``cls(**d)`` after mapping ``cls.LEGACY_KEYS``; unknown keys -> ``ValueError``
    naming the key(s) and ``source`` (a file name, for the message)."""
    if not isinstance(d, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(d).__name__}")
    legacy: dict[str, str | None] = getattr(cls, "LEGACY_KEYS", {}) or {}
    known = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k in legacy and k not in known:
            new = legacy[k]
            if new is None:
                continue  # documented as obsolete in cls.LEGACY_KEYS
            if new in d:
                raise ValueError(f"{source}: both {k!r} and its new name {new!r} are given")
            k = new
        out[k] = v
    unknown = sorted(set(out) - known)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))} for {cls.__name__} "
                         f"(known: {', '.join(sorted(known))})")
    try:
        return cls(**out)
    except TypeError as e:  # e.g. a missing required field
        raise ValueError(f"{source}: {e}") from None


def load_config(cls: type[T], path: str | Path) -> T:
    """Read ``path`` (JSON) into ``cls``; unreadable JSON or unknown keys -> ``ValueError``."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read {cls.__name__} ({e})") from e
    return config_from_dict(cls, d, path)
