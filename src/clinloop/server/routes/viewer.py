"""What the viewer draws besides the proposal (:mod:`clinloop.server.viewing`)."""
from __future__ import annotations

from fastapi import APIRouter, Request

from clinloop.server.auth import User
from clinloop.server.context import Ctx
from clinloop.server.errors import fail
from clinloop.server.routes.sessions import SliceQuery
from clinloop.server.schemas import ViewOut, errors
from clinloop.server.sessions import using
from clinloop.server.viewing import view_state

router = APIRouter()


def slice_of(lv, z: int | None) -> int | None:
    """``z`` checked against the session's volume (default: the last slice acted on); ``None`` in 2-D."""
    shape = lv.session.spatial_shape
    if len(shape) == 2:
        if z not in (None, 0):
            fail(400, "this image is 2-D: no slices")
        return None
    z = lv.z if z is None else z
    if not 0 <= z < shape[0]:
        fail(422, f"slice z={z} is outside the volume (0 .. {shape[0] - 1})")
    return z


@router.get("/api/sessions/{sid}/view", response_model=None,
            responses={200: {"model": ViewOut}, **errors(404, 409, 422, 503)})
def get_view(sid: str, request: Request, ctx: Ctx, user: User, z: SliceQuery = None):
    """The image's intensity range (and whether it is CT in HU), the click markers,
    and the proposal's area, crop box and per-slice areas on slice ``z``."""
    with using(ctx, request, sid, user) as lv:
        return {"session_id": sid, **view_state(lv, slice_of(lv, z))}
