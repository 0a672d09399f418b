"""The clinician's workstation: a FastAPI app over :class:`~clinloop.interaction.session.Session`.

``create_app(model, state_dir=..., data=...)`` returns the app; ``clinloop
serve`` runs it with uvicorn. The page at ``/`` (``static/``) is a thin client
of the JSON API below; OpenAPI is at ``/docs`` and ``/openapi.json``.

Users (:mod:`.auth`)
--------------------
* no token configured: anyone on the (loopback) socket; the user is the
  ``X-Clinloop-User`` header, default ``"local"``;
* ``token="T"`` (``--token``): every ``/api`` request needs
  ``Authorization: Bearer T``; the user is ``X-Clinloop-User`` or ``"local"``;
* ``tokens={"T1": "alice", ...}`` (``--tokens-file``, JSON): the bearer token
  names the user (the header is ignored).

Every session row records its owner; another user's session id answers 404
(not 403), so ids do not leak. User names match ``[A-Za-z0-9._@-]{1,64}``.

Endpoints (all JSON unless noted)
---------------------------------
``GET /api/info``; ``GET /api/cases`` (the worklist; ranked by LEXU's predicted
disagreement when a LEXU model is given); ``POST /api/sessions`` (multipart
``file`` and/or form field ``case_id``, or JSON ``{"case_id"}``; optional
``seed``, ``use_profile``, ``model``: one of the served models) -> ``{session_id, shape, ...}``; ``GET
/api/sessions``; ``GET /api/sessions/{id}``; ``GET /api/sessions/{id}/image?z=``;
``GET /api/sessions/{id}/proposal?z=``; ``POST .../click`` ``{x, y, [z],
positive}``; ``POST .../choose`` ``{candidate}``; ``POST .../hint``
``{points: [{x, y, [z], positive}]}``; ``POST .../undo``; ``POST .../accept``;
``GET .../mask?format=nii.gz|png|dcm[&version=N]`` (bytes: the latest accepted
version, named by the ``X-Clinloop-Mask-Version`` header; 409 before the first
accept and while an undo after accept has reopened the session);
``GET .../mask/versions`` (every accepted version: who, when, model);
``GET /api/profile``; ``GET .../view?z=`` and ``GET .../raters?z=`` (the viewer's
intensity range, click markers and slice strip; the experts' masks and the Dice
to each, :mod:`.viewing`).

Numbers are checked at the boundary (422, plain message): seeds ``0 <= seed <
2**31``, coordinates finite and inside the image, ``z`` an integer slice of
the volume. Requests on one session run one at a time, also across cache
evictions (:mod:`.live`); a history write or an accept from a copy built from
an older store revision than the stored one answers 409 and drops that copy
(``Store.save_history`` / ``Store.accept`` with ``expected_rev``), as does any
failed write (the next request rebuilds from what is stored).

Errors: bad input of any kind answers 4xx ``{"detail": "..."}`` and is logged;
unknown failures answer 500 with the same shape (also logged) — the server
keeps running; a full model queue answers 503 with ``Retry-After``; a store
failure answers its ``http_status`` (503 busy/read-only/damaged database, 507
disk full; :mod:`.errors`). Timing:
every response carries ``Server-Timing: model;dur=.., queue;dur=..,
total;dur=..`` (ms; queue = waiting for a model worker, see
:class:`~clinloop.server.live.ModelGate`) and the ``clinloop.server`` logger
records them, so server overhead (total - model - queue) is measurable per
request.

Parts
-----
:mod:`.guard` (ASGI: trusted hosts, cross-origin writes, body limits and
timeouts, timing), :mod:`.auth` (users), :mod:`.uploads` (upload checks),
:mod:`.worklist`, :mod:`.live` (live-session cache, per-session locks, model
queue), :mod:`.sessions` (session logic), :mod:`.schemas` (the OpenAPI
contract), :mod:`.errors`, and one router per area in :mod:`.routes`.
``create_app`` only wires them.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterable

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from clinloop.server.auth import Auth
from clinloop.server.context import Context, Limits, served_name
from clinloop.server.live import Busy, Live, LiveCache, ModelGate
from clinloop.server.schemas import CaseRequest, Choose, Click, Hint
from clinloop.server.static_files import STATIC_DIR
from clinloop.server.uploads import UPLOAD_SUFFIXES
from clinloop.server.worklist import Worklist, build_worklist

__all__ = ["create_app", "Limits", "ModelGate", "Busy", "Live", "LiveCache", "Worklist", "build_worklist",
           "Click", "Choose", "Hint", "CaseRequest", "STATIC_DIR", "UPLOAD_SUFFIXES"]


def create_app(model: Any, *, state_dir: str | Path, data: str | Path | None = None, data_format: str | None = None,
               data_options: dict[str, Any] | None = None, token: str | None = None,
               tokens: dict[str, str] | None = None, lexu: Any = None, case_limit: int | None = None,
               limits: Limits | None = None, worklist: Worklist | None = None,
               allowed_hosts: Iterable[str] | None = None, trusted_origins: Iterable[str] = (),
               models: Iterable[Any] = ()) -> FastAPI:
    """Build the FastAPI app.

    Args:
        model: an ``InteractiveModel`` or a model folder / shipped name for
            :func:`clinloop.load_model`.
        state_dir: folder for the SQLite database and stored arrays.
        data: dataset path for the worklist (any supported layout), optional.
        token / tokens: bearer-token authentication (see the module docstring).
        lexu: LEXU predictor or model folder: rank the worklist.
        limits: sizes, cache and queue bounds, body timeout (:class:`Limits`).
        allowed_hosts: names the ``Host`` header may carry (``"*"``: any;
            ``None``: no check — ``clinloop serve`` always passes the bound
            address and its ``--allowed-host`` names).
        trusted_origins: host names of other origins allowed to POST (a
            reverse proxy's public name).
        models: more models (instances or folders / shipped names) a new
            session may choose by name (``POST /api/sessions`` ``model``);
            ``model`` is the default. Names must differ.
    """
    from clinloop.models.registry import load_model
    from clinloop.server import errors, export
    from clinloop.server.guard import Guard
    from clinloop.server.routes import ROUTERS
    from clinloop.server.store import Store
    from clinloop.server.volume import lift

    loaded = [load_model(m) if isinstance(m, (str, Path)) else m for m in (model, *models)]
    model = loaded[0]
    served: dict[str, tuple[Any, Any]] = {}
    for m in loaded:
        if served_name(m) in served:
            raise ValueError(f"two served models are named {served_name(m)!r}: serve one of them (session rows "
                             "name their model by this name: its folder's)")
        served[served_name(m)] = (m, lift(m))
    limits = limits or Limits()
    store = Store(state_dir)
    tmp_root = store.dir / "tmp"
    tmp_root.mkdir(exist_ok=True)
    ctx = Context(model=model, driven=served[served_name(model)][1], served=served, store=store,
                  worklist=worklist if worklist is not None else build_worklist(data, data_format, lexu, case_limit,
                                                                                data_options),
                  limits=limits, gate=ModelGate(limits.model_workers, limits.queue_limit, limits.queue_timeout),
                  live=LiveCache(limits.live_sessions, lock_timeout=limits.queue_timeout),
                  auth=Auth(token, tokens), tmp_root=tmp_root)
    export.warm_up()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        store.close()  # on shutdown (SIGTERM, Ctrl+C): the last connection closes and SQLite merges its WAL

    app = FastAPI(title="clinloop workstation", version="0.1.0", lifespan=lifespan,
                  description="Interactive, uncertainty-aware segmentation (SPA / MECCA / LEXU). See clinloop.server.app.")
    app.state.ctx = ctx
    app.state.store, app.state.model, app.state.worklist, app.state.limits = store, model, ctx.worklist, limits
    errors.install(app)
    app.add_middleware(Guard, limits=limits, allowed_hosts=allowed_hosts, trusted_origins=trusted_origins)
    for r in ROUTERS:
        app.include_router(r)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
