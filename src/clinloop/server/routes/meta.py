"""The page, server info, the worklist and the user's profile."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from clinloop.server.auth import User
from clinloop.server.context import Ctx
from clinloop.server.schemas import CasesOut, InfoOut, ProfileOut, errors
from clinloop.server.static_files import STATIC_DIR
from clinloop.server.uploads import UPLOAD_SUFFIXES
from clinloop.server.viewing import stored_profile

router = APIRouter()


@router.get("/", include_in_schema=False)
def index():
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/api/info", response_model=None, responses={200: {"model": InfoOut}, **errors(422)})
def info(ctx: Ctx, user: User):
    """Who you are, the model (the default) and ``models`` (every served one: ``name``, the
    ``spatial_ndims`` its sessions take and the ``structures`` it has learnt its own weights for), the
    worklist size and the upload limits."""
    from clinloop.interaction.session import model_structures

    lim = ctx.limits
    return {"user": user, "model": ctx.model_name, "spatial_ndims": list(ctx.driven.spatial_ndims),
            "models": [{"name": n, "spatial_ndims": list(d.spatial_ndims), "structures": model_structures(m)}
                       for n, (m, d) in ctx.served.items()],
            "cases": len(ctx.worklist.rows), "ranked_by": ctx.worklist.ranked_by, "auth": ctx.auth.enabled,
            "has_profile": stored_profile(ctx, user, ctx.model_name) is not None,
            "limits": {"max_upload_bytes": lim.max_upload_bytes, "max_voxels": lim.max_voxels},
            "upload_types": list(UPLOAD_SUFFIXES),
            "live": {**ctx.live.stats(), "queue_waiting": ctx.gate.waiting, "busy_refusals": ctx.gate.refused}}


@router.get("/api/cases", response_model=None, responses={200: {"model": CasesOut}, **errors(422)})
def cases(ctx: Ctx, user: User):
    """The worklist (ranked by LEXU's predicted disagreement when a LEXU model is given), with each
    case's name, structure and status (new / in progress / accepted, ``by`` whom; ``my_session``)."""
    from clinloop.server.viewing import case_rows

    return {"ranked_by": ctx.worklist.ranked_by, "cases": case_rows(ctx, user)}


@router.get("/api/profile", response_model=None, responses={200: {"model": ProfileOut}, **errors(422)})
def get_profile(ctx: Ctx, user: User):
    """Your stored preference profile for this model (``null`` before your first accept)."""
    return {"user": user, "model": ctx.model_name, "profile": stored_profile(ctx, user, ctx.model_name)}
