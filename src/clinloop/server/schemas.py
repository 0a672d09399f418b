"""Request and response models of the REST API (the OpenAPI contract).

Requests are validated at the boundary: coordinates are finite numbers, slice
indices and seeds are integers ``0 <= v < 2**31``; the routes then check that a
point lies inside its image (422 otherwise). Response models document the JSON
each route answers (``extra`` keys allowed, nothing is filtered); every error
is :class:`ErrorBody` — ``detail`` is always one plain string.
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

INT31 = 2 ** 31


def _integral(v: Any) -> Any:
    """JSON integers, and numbers with no fractional part (``3.0``: an integer in
    JSON Schema); not booleans, strings, NaN or ``1.5``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("must be an integer")
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"must be an integer, got {v}")
        return int(v)
    return v


Coordinate = Annotated[float, Field(strict=True, allow_inf_nan=False,
                                    description="pixels (origin at the centre of the first pixel); finite")]
Integer31 = Annotated[int, Field(ge=0, lt=INT31), BeforeValidator(_integral)]
Slice = Annotated[Integer31, Field(description="slice index (3-D images only)")]
Seed = Annotated[Integer31, Field(description="random seed, 0 <= seed < 2**31")]


class Click(BaseModel):
    """A click in input pixels: ``x`` = column, ``y`` = row, ``z`` = slice (3-D only)."""

    x: Coordinate
    y: Coordinate
    z: Slice | None = None
    positive: StrictBool = True


class Box(BaseModel):
    """A box as the first interaction, inclusive input-pixel corners: ``x0 < x1`` (columns),
    ``y0 < y1`` (rows), inside the image; ``z`` = its slice (3-D only)."""

    x0: Coordinate
    y0: Coordinate
    x1: Coordinate
    y1: Coordinate
    z: Slice | None = None


class Choose(BaseModel):
    candidate: Annotated[Integer31, Field(description="0-based candidate index")]


class Hint(BaseModel):
    points: list[Click] = Field(min_length=1, max_length=256)


class CaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422 naming it, not silently dropped

    case_id: str = Field(min_length=1, max_length=512)
    seed: Seed = 0
    use_profile: StrictBool = True
    profile_any_structure: StrictBool = Field(False, description="also apply a profile learnt on another structure")
    model: str | None = Field(None, min_length=1, max_length=128,
                              description="a served model's name (GET /api/info: models); default: the server's")


class ErrorBody(BaseModel):
    """Every error answer: one plain-language message."""

    detail: str


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class InfoOut(_Open):
    user: str
    model: str
    models: list[dict[str, Any]] | None = Field(None, description="every served model: name, spatial_ndims, "
                                                "structures (POST /api/sessions takes one as model)")
    spatial_ndims: list[int]
    cases: int
    ranked_by: str | None
    auth: bool
    has_profile: bool
    limits: dict[str, Any]
    upload_types: list[str]


class CasesOut(_Open):
    ranked_by: str | None
    cases: list[dict[str, Any]]


class SessionOut(_Open):
    session_id: str
    shape: list[int]
    ndim: int
    channels: int
    case_id: str | None
    model: str
    status: str
    iteration: int
    history: list[dict[str, Any]]
    modality: str
    format: str
    spacing: list[float] | None
    has_proposal: bool
    exports: list[str]
    profile_applied: bool
    structure: str | None = None
    start_seconds: float | None = None


class SessionsOut(_Open):
    sessions: list[dict[str, Any]]


class CandidateOut(_Open):
    index: int
    diff: str
    added: int
    removed: int
    area: int


class ProposalOut(_Open):
    """A proposal's overlays (base64 PNGs) or ``proposal: null`` when there is none yet."""

    session_id: str
    status: str
    iteration: int
    proposal: None = None
    seconds: float | None = None
    z: int | None = None
    area: int | None = None
    mask: str | None = None
    uncertainty: str | None = None
    uncertainty_max: float | None = None
    candidates: list[CandidateOut] | None = None
    advice: list[dict[str, Any]] | None = None
    confidence: str | None = Field(None, description="MECCA's action-confidence map C(s, a) on slice z: a palette "
                                   "PNG, index 0 = no agent acted, index i >= 1 = confidence (i - 1) / 31; only "
                                   "when the model has one")
    confidence_range: list[float] | None = Field(None, description="min and max confidence on slice z")
    roi: list[list[int]] | None = Field(None, description="the region of interest a MECCA session runs on: "
                                        "[first, stop] per array axis ((z,) y, x)")


class ImageOut(_Open):
    kind: str
    width: int
    height: int
    data: str | None = None
    lo: float | None = None
    hi: float | None = None
    min: float | None = None
    max: float | None = None
    png: str | None = None


class AcceptOut(_Open):
    """``accepted``: the store's row number of this accept (over all sessions);
    ``version``: this session's accepted-mask version (1, 2, ... one per accept)."""

    session_id: str
    status: str
    accepted: int
    version: int
    area: int
    iteration: int


class ViewOut(_Open):
    """What the viewer draws besides the proposal (``GET .../view``)."""

    session_id: str
    intensity: dict[str, Any]
    clicks: list[dict[str, Any]]
    z: int | None = None
    slice_area: int | None = None
    bbox: list[int] | None = None
    slice_areas: list[int] | None = None


class RatersOut(_Open):
    """The case's raters beside the proposal (``GET .../raters``)."""

    session_id: str
    n_raters: int
    raters: list[dict[str, Any]]
    agreement: str | None = None
    z: int | None = None


class MaskVersionOut(_Open):
    """One accepted version of a session's mask (the audit trail): who accepted it,
    when (``created``: seconds since the epoch; ``time``: ISO 8601, UTC), with which
    model, its area in pixels/voxels and how many actions produced it (``null`` when
    unknown: versions migrated from an older database)."""

    version: int
    user: str
    created: float
    time: str
    model: str | None
    area: int
    actions: int | None


class MaskVersionsOut(_Open):
    """Every accepted version, oldest first; ``latest``: the version ``GET .../mask``
    returns (``null`` before the first accept); ``reopened``: an undo after the latest
    accept reopened the session, so ``GET .../mask`` answers 409 until it is accepted again."""

    session_id: str
    latest: int | None
    reopened: bool
    versions: list[MaskVersionOut]


class ProfileOut(_Open):
    user: str
    model: str
    profile: dict[str, Any] | None


_WHY = {
    400: "bad request (malformed input, an action the session cannot take now, bad X-Clinloop-User or Host)",
    401: "missing or wrong bearer token",
    403: "cross-origin request refused",
    404: "no such session or case (another user's session answers 404 too)",
    408: "the request body did not arrive in time",
    409: "conflict: no accepted mask (or the session was reopened), another model, or a stale session copy "
         "(changed elsewhere meanwhile: reload and repeat)",
    411: "chunked body without Content-Length",
    413: "body or image too large",
    415: "unsupported content or file type",
    422: "a field is missing, of the wrong type or out of range",
    503: "the model queue is full (retry after the Retry-After header's seconds), or the database is busy "
         "(Retry-After), read-only or damaged (the message says what the operator must do)",
    507: "the server's disk is full: nothing was stored",
}
_RETRY = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses (plus 400 and 401, which every API route can answer)."""
    out: dict[int | str, dict[str, Any]] = {}
    for c in sorted({400, 401, *codes}):
        out[c] = {"model": ErrorBody, "description": _WHY[c]}
        if c == 503:
            out[c]["headers"] = _RETRY
    return out


POST_ERRORS = (403, 408, 411, 413, 422)  # what the guard can answer for any POST
WRITE_ERRORS = (503, 507)  # what a store write can answer (clinloop.server.store.StoreError.http_status)
