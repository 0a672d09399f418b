"""What every route needs: the server's configuration (:class:`Limits`) and
its parts (:class:`Context`, stored as ``app.state.ctx``; routes take it with
the ``Ctx`` dependency)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request


@dataclass
class Limits:
    """What the server accepts and how much it keeps in memory."""

    max_upload_bytes: int = 256 * 1024 * 1024
    max_voxels: int = 64 * 1024 * 1024  # per image, all channels
    min_side: int = 8  # pixels per spatial axis (smaller is not an image a clinician segments)
    max_side: int = 8192
    live_sessions: int = 64  # sessions kept in memory; others are rebuilt by replay on demand (never one in use)
    model_workers: int = 1  # model computations at once (the rest wait); see ModelGate (`clinloop serve` uses 2)
    queue_limit: int | None = 64  # requests waiting for a model worker before 503 (None: unbounded)
    queue_timeout: float | None = 60.0  # seconds a request may wait for a model worker before 503 (None: forever)
    body_timeout: float | None = 30.0  # seconds without a byte of a started request body before 408 (None: wait)


def served_name(model: Any) -> str:
    """The name a served model goes by (session rows, profiles, ``GET /api/info``, ``POST /api/sessions``
    ``model``): its folder's name for a loaded model ("spa-general", "spa-lidc": two SPA models), else
    its ``name`` (the method, for a model built in code)."""
    folder = getattr(model, "folder", None)
    return Path(folder).name if folder else str(model.name)


@dataclass
class Context:
    """The server's parts, wired by :func:`clinloop.server.app.create_app`.

    ``model``: the default interactive model; ``driven``: what its sessions run
    (``volume.lift(model)``); ``served``: every model a new session may choose,
    by name, as ``(model, driven)`` (the default first; :meth:`serving`); ``store``: durable state; ``worklist``;
    ``gate``: the model queue; ``live``: the live-session cache; ``auth``;
    ``tmp_root``: scratch folder for uploads."""

    model: Any
    driven: Any
    store: Any
    worklist: Any
    limits: Limits
    gate: Any
    live: Any
    auth: Any
    tmp_root: Path
    extra: dict[str, Any] = field(default_factory=dict)
    served: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return served_name(self.model)

    def serving(self, name: str | None) -> tuple[Any, Any]:
        """``(model, driven)`` of the served model ``name`` (``None``: the default);
        ``KeyError`` naming the served models otherwise. A method's name ("spa": what session rows held
        before models were named by their folder) finds the one served model of that method."""
        if name is None or name == self.model_name:
            return self.model, self.driven
        if name in self.served:
            return self.served[name]
        by_method = [v for v in self.served.values() if str(v[0].name) == name]
        if len(by_method) == 1:
            return by_method[0]
        raise KeyError(f"this server runs no model {name!r}; it runs {', '.join(self.served) or self.model_name}")


def get_ctx(request: Request) -> Context:
    return request.app.state.ctx


Ctx = Annotated[Context, Depends(get_ctx)]
