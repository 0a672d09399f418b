"""The experts beside you: the case's rater masks, their agreement, and the
Dice of the current proposal to each rater (:func:`clinloop.server.viewing.raters_view`)."""
from __future__ import annotations

from fastapi import APIRouter, Request

from clinloop.server.auth import User
from clinloop.server.context import Ctx
from clinloop.server.routes.sessions import SliceQuery
from clinloop.server.routes.viewer import slice_of
from clinloop.server.schemas import RatersOut, errors
from clinloop.server.sessions import using
from clinloop.server.viewing import raters_view

router = APIRouter()


@router.get("/api/sessions/{sid}/raters", response_model=None,
            responses={200: {"model": RatersOut}, **errors(404, 409, 422, 503)})
def get_raters(sid: str, request: Request, ctx: Ctx, user: User, z: SliceQuery = None):
    """Each rater's contour on slice ``z`` and Dice to the current proposal, and the
    agreement heatmap (fraction of raters per pixel); ``n_raters: 0`` for uploads."""
    with using(ctx, request, sid, user) as lv:
        return {"session_id": sid, **raters_view(ctx, lv, slice_of(lv, z))}
