"""Model steps (click, choose, hint, undo), accept, and the accepted masks
(latest or any version, and the list of versions)."""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from clinloop.server import export
from clinloop.server.auth import User
from clinloop.server.context import Ctx
from clinloop.server.errors import fail
from clinloop.server.live import Live
from clinloop.server.schemas import (INT31, POST_ERRORS, WRITE_ERRORS, AcceptOut, Box, Choose, Click, Hint,
                                     MaskVersionsOut, ProposalOut, errors)
from clinloop.server.sessions import act, model_of, point_of, store_write, using
from clinloop.server.viewing import save_structure_profile

log = logging.getLogger("clinloop.server")
router = APIRouter()
_STEP = {200: {"model": ProposalOut}, **errors(*POST_ERRORS, 404, 409, *WRITE_ERRORS)}


@router.post("/api/sessions/{sid}/click", response_model=None, responses=_STEP)
def click(sid: str, body: Click, request: Request, ctx: Ctx, user: User):
    """A click at ``(x, y)`` (2-D) or ``(x, y, z)`` (3-D); ``positive`` = on the structure."""
    def do(lv: Live):
        pt = point_of(lv, body)
        if len(pt) == 3:  # answer on the clicked slice (native 3-D models set no extra["z"])
            lv.z = int(pt[2])
        return lv.session.click(pt, body.positive)

    return act(ctx, request, sid, user, do)


@router.post("/api/sessions/{sid}/box", response_model=None, responses=_STEP)
def box(sid: str, body: Box, request: Request, ctx: Ctx, user: User):
    """A box ``{x0, y0, x1, y1}`` (2-D) or ``{x0, y0, x1, y1, z}`` (on slice z of a volume) as the
    **first** interaction (SPA/MedUHIP, LiteMedSAM): inclusive corners, ``x0 < x1``, ``y0 < y1``,
    inside the image (422 otherwise). After the first interaction a box is refused (400: click to
    correct, or undo)."""
    def do(lv: Live):
        shape = lv.session.spatial_shape
        for name, v, n in zip(("x0", "y0", "x1", "y1"), (body.x0, body.y0, body.x1, body.y1), shape[::-1][:2] * 2):
            if not -0.5 <= v <= n - 0.5:
                fail(422, f"box {name}={v:g} is outside the image (valid range -0.5 .. {n - 0.5:g})")
        if not (body.x0 < body.x1 and body.y0 < body.y1):
            fail(422, f"the box is empty: need x0 < x1 and y0 < y1 (got x0={body.x0:g}, y0={body.y0:g}, "
                      f"x1={body.x1:g}, y1={body.y1:g})")
        z = point_of(lv, Click(x=body.x0, y=body.y0, z=body.z))[2:]  # 400/422 for z as for a click
        if z:
            lv.z = int(z[0])
        return lv.session.box((body.x0, body.y0, body.x1, body.y1, *z))

    return act(ctx, request, sid, user, do)


@router.post("/api/sessions/{sid}/choose", response_model=None, responses=_STEP)
def choose(sid: str, body: Choose, request: Request, ctx: Ctx, user: User):
    """Pick candidate ``k`` of the last proposal (SPA)."""
    return act(ctx, request, sid, user, lambda lv: lv.session.choose(body.candidate))


@router.post("/api/sessions/{sid}/hint", response_model=None, responses=_STEP)
def hint(sid: str, body: Hint, request: Request, ctx: Ctx, user: User):
    """Several clicks at once (MECCA's hint map). A native 3-D model takes points on any
    slices and answers on the last point's slice; a slice-wise model needs them on one slice."""
    def do(lv: Live):
        pts = [(point_of(lv, c), c.positive) for c in body.points]
        if pts and len(pts[-1][0]) == 3:  # answer on the last hinted slice (native 3-D models set no extra["z"])
            lv.z = int(pts[-1][0][2])
        return lv.session.hint(pts)

    return act(ctx, request, sid, user, do)


@router.post("/api/sessions/{sid}/undo", response_model=None, responses=_STEP)
def undo(sid: str, request: Request, ctx: Ctx, user: User):
    """Take back the last action (an accept too: the session reopens)."""
    return act(ctx, request, sid, user, lambda lv: lv.session.undo())


@router.post("/api/sessions/{sid}/accept", response_model=None,
             responses={200: {"model": AcceptOut}, **errors(*POST_ERRORS, 404, 409, *WRITE_ERRORS)})
def accept(sid: str, request: Request, ctx: Ctx, user: User):
    """Accept the current proposal: a new accepted version of the session's mask is
    stored (its file and its record: who, when, which model, the actions that
    produced it; earlier versions stay) and exported by ``GET .../mask``."""
    with using(ctx, request, sid, user) as lv:
        mask = lv.session.accept()
        history = lv.session.history
        n = store_write(ctx, sid, lambda: ctx.store.accept(sid, user, mask, history, expected_rev=lv.rev),
                        "this session was changed elsewhere since it was loaded; reload it and accept again")
        lv.rev += 1  # the accept checked the stored revision and advanced it by one, in one transaction
        latest = ctx.store.latest_accepted(sid, user)
        try:  # the preference profile travels to this user's next image
            ctx.store.save_profile(user, model_of(ctx, lv), lv.session.profile())
            save_structure_profile(ctx, user, lv, lv.session.profile())  # per (user, structure): viewing.profile_for
        except (ValueError, TypeError) as e:
            log.warning("profile of session %s not saved: %s", sid, e)
        return {"session_id": sid, "status": "accepted", "accepted": n, "version": latest["version"],
                "area": int(mask.sum()), "iteration": lv.session.iteration}


MASK_VERSION_HEADER = "X-Clinloop-Mask-Version"
_MASK_OK = {"description": "the accepted mask as a file (attachment)", "content": {
    t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(set(export.FORMATS.values()))},
    "headers": {MASK_VERSION_HEADER: {"description": "the accepted version this file is", "schema": {"type": "integer"}}}}


def _stored_session(ctx, sid: str, user: str) -> dict:
    row = ctx.store.session(sid, user)
    if row is None:
        fail(404, f"no session {sid!r}")
    return row


@router.get("/api/sessions/{sid}/mask", response_model=None, response_class=Response,
            responses={200: _MASK_OK, **errors(404, 409, 422, 503)})
def get_mask(sid: str, ctx: Ctx, user: User,
             format: str = Query("nii.gz", description="one of " + ", ".join(export.FORMATS)),
             version: int | None = Query(None, ge=1, lt=INT31, description="an earlier accepted version "
                                         "(default: the latest; see GET .../mask/versions)")):
    """The latest accepted mask, or accepted ``version`` N; the header
    ``X-Clinloop-Mask-Version`` names the version sent. Without ``version``: 409
    before the first accept, and while the session is reopened (an undo after its
    accept: the latest accepted mask is kept but is no longer the session's
    result). An explicit ``version`` is always served (the audit trail)."""
    row = _stored_session(ctx, sid, user)  # read from the store: no replay, no wait for the session's lock
    if format not in export.FORMATS:
        fail(400, f"unknown mask format {format!r}; choose one of {', '.join(export.FORMATS)}")
    if version is None:
        latest = ctx.store.latest_accepted(sid, user)
        if latest is None:
            fail(409, "this session has no accepted mask yet: POST .../accept first")
        if latest["reopened"]:
            fail(409, f"this session was reopened (undo after accept): its accepted version {latest['version']} "
                      "is kept but no longer current; accept again to export, or ask for it with ?version="
                      f"{latest['version']}")
        version = int(latest["version"])
    mask = ctx.store.accepted_mask(sid, user, version=version)
    if mask is None:
        fail(404, f"session {sid!r} has no accepted version {version} (GET .../mask/versions lists them)")
    meta = ctx.store.image_meta(row["image_sha"])
    try:
        data = export.mask_bytes(mask, format, meta, ctx.store.source_path(row["image_sha"], meta))
    except export.ExportError as e:
        fail(422, str(e))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(row.get("case_id") or sid))[:80]
    return Response(data, media_type=export.FORMATS[format],
                    headers={"Content-Disposition": f'attachment; filename="{stem}_mask.{format}"',
                             MASK_VERSION_HEADER: str(version)})


@router.get("/api/sessions/{sid}/mask/versions", response_model=None,
            responses={200: {"model": MaskVersionsOut}, **errors(404, 422, 503)})
def mask_versions(sid: str, ctx: Ctx, user: User):
    """Every accepted version of the session's mask, oldest first (who, when, which
    model, area, number of actions): the audit trail. ``GET .../mask?version=N``
    downloads one."""
    _stored_session(ctx, sid, user)
    versions = ctx.store.accepted_versions(sid, user)
    latest = ctx.store.latest_accepted(sid, user)
    return {"session_id": sid, "latest": latest["version"] if latest else None,
            "reopened": bool(latest and latest["reopened"]),
            "versions": [{"version": v["version"], "user": v["owner"], "created": v["created"],
                          "time": datetime.fromtimestamp(v["created"], timezone.utc).isoformat(timespec="seconds"),
                          "model": v["model"], "area": v["area"],
                          "actions": len(v["history"]) if v["history"] is not None else None} for v in versions]}
