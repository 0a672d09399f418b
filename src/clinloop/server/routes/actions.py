"""Model steps (click, choose, hint, undo), accept, and the accepted mask's export."""
from __future__ import annotations

import logging
import re

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from clinloop.server import export
from clinloop.server.auth import User
from clinloop.server.context import Ctx
from clinloop.server.errors import fail
from clinloop.server.live import Live
from clinloop.server.schemas import POST_ERRORS, AcceptOut, Choose, Click, Hint, ProposalOut, errors
from clinloop.server.sessions import act, point_of, using
from clinloop.server.viewing import save_structure_profile

log = logging.getLogger("clinloop.server")
router = APIRouter()
_STEP = {200: {"model": ProposalOut}, **errors(*POST_ERRORS, 404, 409, 503)}


@router.post("/api/sessions/{sid}/click", response_model=None, responses=_STEP)
def click(sid: str, body: Click, request: Request, ctx: Ctx, user: User):
    """A click at ``(x, y)`` (2-D) or ``(x, y, z)`` (3-D); ``positive`` = on the structure."""
    def do(lv: Live):
        pt = point_of(lv, body)
        if len(pt) == 3:  # answer on the clicked slice (native 3-D models set no extra["z"])
            lv.z = int(pt[2])
        return lv.session.click(pt, body.positive)

    return act(ctx, request, sid, user, do)


@router.post("/api/sessions/{sid}/choose", response_model=None, responses=_STEP)
def choose(sid: str, body: Choose, request: Request, ctx: Ctx, user: User):
    """Pick candidate ``k`` of the last proposal (SPA)."""
    return act(ctx, request, sid, user, lambda lv: lv.session.choose(body.candidate))


@router.post("/api/sessions/{sid}/hint", response_model=None, responses=_STEP)
def hint(sid: str, body: Hint, request: Request, ctx: Ctx, user: User):
    """Several clicks at once (MECCA's hint map; on one slice for volumes)."""
    return act(ctx, request, sid, user, lambda lv: lv.session.hint([(point_of(lv, c), c.positive) for c in body.points]))


@router.post("/api/sessions/{sid}/undo", response_model=None, responses=_STEP)
def undo(sid: str, request: Request, ctx: Ctx, user: User):
    """Take back the last action (an accept too: the session reopens)."""
    return act(ctx, request, sid, user, lambda lv: lv.session.undo())


@router.post("/api/sessions/{sid}/accept", response_model=None,
             responses={200: {"model": AcceptOut}, **errors(*POST_ERRORS, 404, 409, 503)})
def accept(sid: str, request: Request, ctx: Ctx, user: User):
    """Accept the current proposal: its mask is stored (and exported by ``GET .../mask``)."""
    with using(ctx, request, sid, user) as lv:
        if not ctx.store.history_is(sid, lv.saved):
            ctx.live.drop(sid)
            fail(409, "this session was changed elsewhere since it was loaded; reload it and accept again")
        mask = lv.session.accept()
        try:
            n = ctx.store.accept(sid, user, mask, lv.session.history)
        except BaseException:
            ctx.live.drop(sid)  # the in-memory copy is accepted, the store is not: rebuild on next use
            raise
        lv.saved = [dict(h) for h in lv.session.history]
        try:  # the preference profile travels to this user's next image
            ctx.store.save_profile(user, ctx.model_name, lv.session.profile())
            save_structure_profile(ctx, user, lv, lv.session.profile())  # per (user, structure): viewing.profile_for
        except (ValueError, TypeError) as e:
            log.warning("profile of session %s not saved: %s", sid, e)
        return {"session_id": sid, "status": "accepted", "accepted": n, "area": int(mask.sum()),
                "iteration": lv.session.iteration}


_MASK_OK = {"description": "the accepted mask as a file (attachment)", "content": {
    t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(set(export.FORMATS.values()))}}


@router.get("/api/sessions/{sid}/mask", response_model=None, response_class=Response,
            responses={200: _MASK_OK, **errors(404, 409, 422, 503)})
def get_mask(sid: str, request: Request, ctx: Ctx, user: User,
             format: str = Query("nii.gz", description="one of " + ", ".join(export.FORMATS))):
    """The latest accepted mask (409 before the first accept, and while the
    session is reopened by an undo after accept)."""
    with using(ctx, request, sid, user) as lv:
        if format not in export.FORMATS:
            fail(400, f"unknown mask format {format!r}; choose one of {', '.join(export.FORMATS)}")
        mask = ctx.store.accepted_mask(sid, user)
        if mask is None:
            fail(409, "this session has no accepted mask yet: POST .../accept first")
        if lv.session.accepted is None:
            fail(409, "this session was reopened (undo after accept): its earlier accepted mask is kept but no "
                      "longer current; accept again to export")
        src = ctx.store.source_path(lv.row["image_sha"], lv.meta)
        meta, case_id = lv.meta, lv.row.get("case_id")
    try:
        data = export.mask_bytes(mask, format, meta, src)
    except export.ExportError as e:
        fail(422, str(e))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(case_id or sid))[:80]
    return Response(data, media_type=export.FORMATS[format],
                    headers={"Content-Disposition": f'attachment; filename="{stem}_mask.{format}"'})
