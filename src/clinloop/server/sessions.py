"""Session logic shared by the routes: open a session, use one (pinned,
locked, rebuilt by replay when evicted), act on it with a history write that
names the store revision its copy was built from, and describe it as JSON."""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Callable, Iterator

import numpy as np

from clinloop.interaction.session import Session
from clinloop.server import encoding
from clinloop.server.context import Context, served_name
from clinloop.server.db import StaleSessionError
from clinloop.server.errors import fail
from clinloop.server.live import Busy, Live, user_image
from clinloop.server.uploads import check_image

log = logging.getLogger("clinloop.server")


def status_of(s: Session) -> str:
    return "accepted" if s.accepted is not None else "open"


def model_of(ctx: Context, lv: Live) -> str:
    """The name of the model a session was made with (its stored row)."""
    return str(lv.row.get("model") or ctx.model_name)


def describe(ctx: Context, sid: str, lv: Live) -> dict[str, Any]:
    """``GET /api/sessions/{sid}``'s answer."""
    s = lv.session
    return {"session_id": sid, "shape": list(s.spatial_shape), "ndim": len(s.spatial_shape),
            "channels": int(lv.image.shape[0]), "case_id": lv.row.get("case_id"), "model": model_of(ctx, lv),
            "status": status_of(s), "iteration": s.iteration, "history": s.history,
            "modality": lv.meta.get("modality", ""), "format": lv.meta.get("format", ""),
            "spacing": lv.meta.get("spacing"), "has_proposal": s.proposal is not None,
            "exports": ["nii.gz"] + (["png"] if len(s.spatial_shape) == 2 else [])
            + (["dcm"] if lv.meta.get("format") == "dicom" and lv.meta.get("source_suffix") else []),
            "profile_applied": lv.row.get("profile") is not None, "structure": lv.meta.get("structure") or None}


def answer(sid: str, lv: Live, p, z: int | None = None) -> dict[str, Any]:
    """A proposal (or ``proposal: null``) as the JSON the UI draws."""
    s = lv.session
    if p is None:
        return {"session_id": sid, "status": status_of(s), "iteration": s.iteration, "proposal": None}
    if len(s.spatial_shape) == 3:
        z = int(p.extra.get("z", z if z is not None else lv.z))
        lv.z = z
    return {"session_id": sid, "status": status_of(s), **encoding.encode_proposal(p, z)}


def _vcfg(ctx: Context, img: np.ndarray, meta: dict[str, Any], model: Any = None):
    """The volume config of a native 3-D session (``None`` for 2-D images and slice-wise models)."""
    from clinloop.server.volume import volume_config

    return volume_config(model if model is not None else ctx.model, meta, ctx.limits) if img.ndim == 4 else None


def served(ctx: Context, name: str | None) -> tuple[Any, Any]:
    """``(model, driven)`` of the served model ``name`` (``None``: the default); 400 otherwise."""
    try:
        return ctx.serving(name)
    except KeyError as e:
        fail(400, str(e.args[0]))


def start_session(ctx: Context, img: np.ndarray, seed: int, profile: dict | None,
                  meta: dict[str, Any] | None = None, model: str | None = None) -> tuple[Session, dict | None]:
    """A new ``Session`` of the served model ``model`` (default: the server's); a stored
    profile that does not fit the model is dropped (logged)."""
    inner, driven = served(ctx, model)
    vc = _vcfg(ctx, img, meta or {}, inner)
    structure = (meta or {}).get("structure") or None  # (a model's structure token, if it has one)
    try:
        return Session(driven, user_image(img), seed=seed, profile=profile, volume_config=vc,
                       structure=structure), profile
    except ValueError:
        if profile is None:
            raise
        log.warning("stored profile does not fit model %s; starting without it", inner.name)
        return Session(driven, user_image(img), seed=seed, profile=None, volume_config=vc, structure=structure), None


def open_session(ctx: Context, request: Any, user: str, img: np.ndarray, meta: dict[str, Any], case_id: str | None,
                 seed: int, use_profile: bool | str, source: bytes | None = None, suffix: str | None = None,
                 model: str | None = None) -> dict[str, Any]:
    """Check the image, start the session of model ``model`` (a served name; default: the
    server's) in the model queue, store and cache it."""
    check_image(img, case_id or "upload", ctx.limits, too_large=413 if case_id is None else 422)
    inner, driven = served(ctx, model)
    name = served_name(inner)
    if img.ndim == 4 and 3 not in driven.spatial_ndims:
        fail(422, f"model {name} cannot segment volumes")
    if img.ndim == 3 and 2 not in driven.spatial_ndims:
        fail(422, f"model {name} segments volumes only; choose another model for this 2-D image")
    from clinloop.server.viewing import profile_for

    profile = profile_for(ctx, user, meta, use_profile, name)
    with ctx.gate(request):
        t1 = time.perf_counter()
        s, used = start_session(ctx, img, seed, profile, meta, name)
    dt = time.perf_counter() - t1
    sha, meta = ctx.store.put_image(img, meta, source if meta.get("format") == "dicom" else None, suffix)
    sid = ctx.store.new_session(user, sha, case_id, name, seed, used)
    lv = Live(s, ctx.store.session(sid, user), img, meta)
    ctx.live.add(sid, lv)
    out = describe(ctx, sid, lv)
    out["start_seconds"] = round(dt, 4)
    return out


def rebuild(ctx: Context, request: Any, sid: str, user: str) -> Live:
    """The session rebuilt from the store by replay (404 unknown/foreign, 409 another model)."""
    row = ctx.store.session(sid, user)
    if row is None:
        fail(404, f"no session {sid!r}")
    try:  # replaying with another model would not give back the same proposals
        inner, driven = ctx.serving(row["model"])
    except KeyError:
        fail(409, f"session {sid!r} was made with model {row['model']!r}; this server runs "
                  f"{', '.join(map(repr, ctx.served)) or repr(ctx.model_name)}")
    img, meta = ctx.store.image(row["image_sha"])
    with ctx.gate(request):
        s = Session.replay(driven, user_image(img), row["history"], seed=row["seed"], profile=row["profile"],
                           volume_config=_vcfg(ctx, img, meta, inner), structure=(meta or {}).get("structure") or None)
    log.info("session %s rebuilt from %d stored actions", sid, len(row["history"]))
    return Live(s, row, img, meta)


@contextlib.contextmanager
def using(ctx: Context, request: Any, sid: str, user: str) -> Iterator[Live]:
    """The live session ``sid`` of ``user``, pinned and locked for this request."""
    from fastapi import HTTPException

    with ctx.live.use(sid, user, lambda: rebuild(ctx, request, sid, user),
                      lambda: HTTPException(404, f"no session {sid!r}")) as lv:
        yield lv


STALE = "this session was changed elsewhere since it was loaded; reload it and repeat the action"


def store_write(ctx: Context, sid: str, write: Callable[[], Any], stale: str = STALE) -> Any:
    """Run ``write()`` (a store write naming this copy's ``rev``) for the session in use.

    Any failure drops the in-memory copy — it now holds an action the store does
    not (a stale copy, a read-only or full disk, a damaged file), so the next
    request rebuilds the session from what *is* stored. A stale copy answers 409
    ``stale``; other store errors keep their own status (see :mod:`.errors`)."""
    try:
        return write()
    except StaleSessionError:
        ctx.live.drop(sid)
        fail(409, stale)
    except BaseException:
        ctx.live.drop(sid)
        raise


def progress_board(ctx: Context):
    """The server's :class:`~clinloop.server.volume.ProgressBoard` (one per app)."""
    from clinloop.server.volume import ProgressBoard

    board = ctx.extra.get("progress")
    if board is None:
        board = ctx.extra.setdefault("progress", ProgressBoard())
    return board


@contextlib.contextmanager
def tracking(ctx: Context, sid: str, lv: Live) -> Iterator[None]:
    """Report the slices of a native 3-D step to the progress board while it runs."""
    s = lv.session
    if len(s.spatial_shape) != 3 or not hasattr(s.model, "start_volume"):
        yield
        return
    board = progress_board(ctx)
    s.progress = board.begin(sid, s.spatial_shape)
    try:
        yield
    finally:
        s.progress = None
        board.end(sid)


def act(ctx: Context, request: Any, sid: str, user: str, fn: Callable[[Live], Any]) -> dict[str, Any]:
    """Run ``fn(live)`` (a model step) on the session and store its history —
    only if the stored revision is still the one this copy was built from
    (409 and a fresh rebuild otherwise; a failed write drops the copy too).
    A native 3-D step reports its slices to :func:`progress_board` as they finish."""
    from fastapi import HTTPException

    with using(ctx, request, sid, user) as lv:
        try:
            with ctx.gate(request), tracking(ctx, sid, lv):
                p = fn(lv)
        except (ValueError, HTTPException, Busy):
            raise  # refused before the state changed
        except Exception:
            ctx.live.drop(sid)  # the model failed mid-step: rebuild from the store next time
            raise
        s = lv.session
        rev = store_write(ctx, sid, lambda: ctx.store.save_history(sid, s.history, status_of(s), expected_rev=lv.rev))
        if rev is None:  # the row is gone (deleted from the database by hand)
            ctx.live.drop(sid)
            fail(404, f"no session {sid!r}")
        lv.rev = rev
        return answer(sid, lv, p)


def point_of(lv: Live, c: Any) -> tuple[float, ...]:
    """A request's click as a point of this session's image: 400 for the wrong
    number of coordinates, 422 for a point outside the image."""
    shape = lv.session.spatial_shape
    if len(shape) == 2:
        if c.z is not None:
            fail(400, "this image is 2-D: send {x, y} without z")
        pt = (c.x, c.y)
    else:
        if c.z is None:
            fail(400, "this image is 3-D: send {x, y, z} (z = slice index)")
        if not 0 <= c.z < shape[0]:
            fail(422, f"z={c.z} is not a slice of this volume (0 .. {shape[0] - 1})")
        pt = (c.x, c.y, float(c.z))
    for name, v, n in zip("xy", pt, shape[::-1]):
        if not -0.5 <= v <= n - 0.5:
            fail(422, f"{name}={v:g} is outside the image (valid range -0.5 .. {n - 0.5:g})")
    return pt
