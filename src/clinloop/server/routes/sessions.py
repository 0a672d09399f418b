"""Open, list and read sessions."""
from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from clinloop.server import encoding
from clinloop.server.auth import User
from clinloop.server.context import Ctx
from clinloop.server.errors import fail
from clinloop.server.schemas import (INT31, POST_ERRORS, WRITE_ERRORS, CaseRequest, ImageOut, ProposalOut, SessionOut,
                                     SessionsOut, errors)
from clinloop.server.sessions import answer, describe, open_session, progress_board, served, status_of, using
from clinloop.server.uploads import form_bool, form_seed, form_structure, read_upload

router = APIRouter()
SliceQuery = Annotated[int | None, Query(ge=0, lt=INT31, description="slice (3-D images; default: the middle / last acted on)")]

_NEW_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary", "description": "an image: " + "png, jpg, nii(.gz), dcm, npy"},
        "case_id": {"type": "string", "minLength": 1, "maxLength": 512, "description": "a worklist case instead of a file"},
        "seed": {"type": "integer", "minimum": 0, "maximum": INT31 - 1},
        "use_profile": {"type": "boolean"},
        "profile_any_structure": {"type": "boolean", "description": "also apply a profile learnt on another structure"},
        "model": {"type": "string", "minLength": 1, "maxLength": 128, "description": "a served model's name"},
        "structure": {"type": "string", "maxLength": 128, "description": "what the upload shows (e.g. nodule): "
                      "a model's own structure (GET /api/info: models[].structures) is decoded with what it "
                      "learnt for it; also matches preference profiles by structure"}},
        "anyOf": [{"required": ["file"]}, {"required": ["case_id"]}]}},
    "application/json": {"schema": CaseRequest.model_json_schema()}}}}


@router.post("/api/sessions", response_model=None, openapi_extra=_NEW_BODY,
             responses={200: {"model": SessionOut}, **errors(*POST_ERRORS, 404, 415, *WRITE_ERRORS)})
async def new_session(request: Request, ctx: Ctx, user: User):
    """Open a session on an uploaded image (multipart ``file``) or a worklist case
    (form field or JSON ``case_id``); optional ``seed`` (0 <= seed < 2**31), ``use_profile`` and
    ``model`` (a served model's name, ``GET /api/info``: ``models``; default: the server's); an upload
    may name its ``structure`` (a worklist case has its own)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()  # the media type alone
    seed, use_profile, case_id, upload, model, structure = 0, True, None, None, None, None
    lim = ctx.limits
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=1, max_fields=8)
        except Exception as e:  # noqa: BLE001 - malformed multipart bodies
            fail(400, f"malformed multipart body ({e})")
        f = form.get("file")
        if f is not None and not isinstance(f, str):
            upload = (await f.read(lim.max_upload_bytes + 1), f.filename or "")
            if len(upload[0]) > lim.max_upload_bytes:
                fail(413, f"upload exceeds the limit of {lim.max_upload_bytes} bytes")
        elif f is not None:
            fail(400, "'file' must be a file part, not a text field")
        case_id, model = form.get("case_id") or None, form.get("model") or None
        for name, value in (("case_id", case_id), ("model", model)):
            if value is not None and not isinstance(value, str):
                fail(400, f"'{name}' must be a text field")
        if "seed" in form:
            seed = form_seed(form.get("seed"))
        use_profile = form_bool(form.get("use_profile"), "use_profile", True)
        if use_profile and form_bool(form.get("profile_any_structure"), "profile_any_structure", False):
            use_profile = "any"  # a profile learnt on another structure may start this upload too
        structure = form_structure(form.get("structure"))
    elif ctype == "application/json":
        try:
            raw = await request.body()
        except ClientDisconnect:  # stalled or gone mid-body: the guard answers 408 and logs it once
            fail(400, "the request body did not arrive")
        try:
            body = CaseRequest.model_validate_json(raw)
        except Exception as e:  # noqa: BLE001 - pydantic ValidationError / bad JSON
            fail(422, f"expected JSON {{case_id, [seed], [use_profile], [profile_any_structure], [model]}} "
                      f"({(str(e).splitlines() or [type(e).__name__])[0]}; {_first_error(e)})")
        case_id, seed, use_profile, model = body.case_id, body.seed, body.use_profile, body.model
        if use_profile and body.profile_any_structure:
            use_profile = "any"  # a profile learnt on another structure may start this case too
    else:
        fail(415, "send multipart/form-data with a 'file' (or 'case_id'), or JSON {case_id}")
    if upload is None and case_id is None:
        fail(400, "no image: send a 'file' upload or a 'case_id' from GET /api/cases")
    if structure and upload is None:
        fail(400, "'structure' names what an upload shows; a worklist case has its own")
    served(ctx, model)  # an unknown model: 400 before the image is read
    if upload is not None:
        img, meta, suffix = await run_in_threadpool(read_upload, *upload, lim, ctx.tmp_root)
        if structure:
            meta["structure"] = structure
        return await run_in_threadpool(open_session, ctx, request, user, img, meta, None, seed, use_profile,
                                       upload[0], suffix, model)
    if ctx.worklist.dataset is None or case_id not in ctx.worklist.index:
        fail(404, f"no case {case_id!r} in the worklist")
    img, meta = await run_in_threadpool(ctx.worklist.load, case_id)
    return await run_in_threadpool(open_session, ctx, request, user, img, meta, case_id, seed, use_profile,
                                   model=model)


def _first_error(e: Exception) -> str:
    try:
        d = e.errors()[0]  # type: ignore[attr-defined]
        return f"{'.'.join(map(str, d['loc'])) or 'body'}: {d['msg']}"
    except Exception:  # noqa: BLE001 - not a pydantic error (bad JSON)
        return "not valid JSON"


@router.get("/api/sessions", response_model=None, responses={200: {"model": SessionsOut}, **errors(422)})
def list_sessions(ctx: Ctx, user: User):
    """Your sessions, most recently changed first."""
    return {"sessions": ctx.store.sessions(user)}


@router.get("/api/sessions/{sid}", response_model=None,
            responses={200: {"model": SessionOut}, **errors(404, 409, 422, 503)})
def get_session(sid: str, request: Request, ctx: Ctx, user: User):
    """The session's shape, status, history and exports."""
    with using(ctx, request, sid, user) as lv:
        return describe(ctx, sid, lv)


@router.get("/api/sessions/{sid}/image", response_model=None,
            responses={200: {"model": ImageOut}, **errors(404, 409, 422, 503)})
def get_image(sid: str, request: Request, ctx: Ctx, user: User, z: SliceQuery = None):
    """One slice of the image (grey: raw float32, base64; colour: PNG)."""
    with using(ctx, request, sid, user) as lv:
        if lv.image.ndim == 4:
            d = lv.image.shape[1]
            z = d // 2 if z is None else z
            if not 0 <= z < d:
                fail(422, f"slice z={z} is outside the volume (0 .. {d - 1})")
        elif z not in (None, 0):
            fail(400, "this image is 2-D: no slices")
        if lv.window is None:  # one default window for the whole volume, computed once
            lv.window = tuple(float(v) for v in np.percentile(lv.image[0], [0.5, 99.5]))
        return encoding.encode_image_slice(lv.image, z, window=lv.window)


@router.get("/api/sessions/{sid}/proposal", response_model=None,
            responses={200: {"model": ProposalOut}, **errors(404, 409, 422, 503)})
def get_proposal(sid: str, request: Request, ctx: Ctx, user: User, z: SliceQuery = None):
    """The current proposal's overlays (on slice ``z`` for volumes)."""
    with using(ctx, request, sid, user) as lv:
        s = lv.session
        if z is not None and len(s.spatial_shape) == 3 and not 0 <= z < s.spatial_shape[0]:
            fail(422, f"slice z={z} is outside the volume (0 .. {s.spatial_shape[0] - 1})")
        if s.proposal is not None and len(s.spatial_shape) == 3:
            z = lv.z if z is None else z
            return {"session_id": sid, "status": status_of(s), **encoding.encode_proposal(s.proposal, z)}
        return answer(sid, lv, s.proposal)


@router.get("/api/sessions/{sid}/progress", response_model=None, responses=errors(404, 422, 503))
def get_progress(sid: str, ctx: Ctx, user: User,
                 since: Annotated[int | None, Query(ge=0, lt=INT31, description="also send the masks of the slices "
                                                    "finished from the since-th on (0: all)")] = None):
    """The slices finished by the session's running (or last) volume step: ``running``,
    ``done`` (slices finished), ``total`` (slices along the propagation axis, an upper
    bound), ``axis``, ``slice_areas`` (mask pixels per slice so far) and ``run`` (changes
    with every step). With ``since=N``: ``slices``, the masks of the slices finished from
    the N-th on, in the order they finished (``axis``, ``index``, ``area``, ``mask``: an
    overlay PNG as the proposal's), so a page draws the 3-D result slice by slice while it
    grows. Answered from memory, without the session's lock, so a page polls it while its
    click runs (one click on a volume follows the structure slice by slice)."""
    if ctx.store.session(sid, user) is None:
        fail(404, f"no session {sid!r}")
    out = {"session_id": sid, **progress_board(ctx).get(sid, since)}
    if since is not None:
        out["slices"] = [{"axis": a, "index": i, "area": int(np.count_nonzero(m)), "mask": encoding.mask_png(m)}
                         for a, i, m in out["slices"]]
    return out
