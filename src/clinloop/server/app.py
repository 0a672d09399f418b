"""The clinician's workstation: a FastAPI app over :class:`~clinloop.interaction.session.Session`.

``create_app(model, state_dir=..., data=...)`` returns the app; ``clinloop
serve`` runs it with uvicorn. The page at ``/`` (``static/``) is a thin client
of the JSON API below; OpenAPI is at ``/docs`` and ``/openapi.json``.

Users
-----
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
``seed``, ``use_profile``) -> ``{session_id, shape, ...}``; ``GET
/api/sessions``; ``GET /api/sessions/{id}``; ``GET /api/sessions/{id}/image?z=``;
``GET /api/sessions/{id}/proposal?z=``; ``POST .../click`` ``{x, y, [z],
positive}``; ``POST .../choose`` ``{candidate}``; ``POST .../hint``
``{points: [{x, y, [z], positive}]}``; ``POST .../undo``; ``POST .../accept``;
``GET .../mask?format=nii.gz|png|dcm`` (bytes); ``GET /api/profile``.

Errors: bad input of any kind answers 4xx ``{"detail": "..."}`` and is logged;
unknown failures answer 500 with the same shape (also logged) — the server
keeps running. Timing: every response carries ``Server-Timing: model;dur=..,
queue;dur=.., total;dur=..`` (ms; queue = waiting for a model worker, see
:class:`ModelGate`) and the ``clinloop.server`` logger records them, so server
overhead (total - model - queue) is measurable per request.
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StrictBool, StrictInt
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from clinloop.interaction.session import Session

log = logging.getLogger("clinloop.server")
STATIC_DIR = Path(__file__).resolve().parent / "static"
_USER = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
UPLOAD_SUFFIXES = (".png", ".jpg", ".jpeg", ".nii", ".nii.gz", ".dcm", ".npy")


class Click(BaseModel):
    """A click in input pixels: ``x`` = column, ``y`` = row, ``z`` = slice (3-D only)."""

    x: Annotated[float, Field(strict=True)]
    y: Annotated[float, Field(strict=True)]
    z: Annotated[float | None, Field(strict=True)] = None
    positive: StrictBool = True

class Choose(BaseModel):
    candidate: StrictInt

class Hint(BaseModel):
    points: list[Click] = Field(min_length=1, max_length=256)

class CaseRequest(BaseModel):
    case_id: str = Field(min_length=1, max_length=512)
    seed: StrictInt = 0
    use_profile: StrictBool = True


@dataclass
class Limits:
    max_upload_bytes: int = 256 * 1024 * 1024
    max_voxels: int = 64 * 1024 * 1024  # per image, all channels
    min_side: int = 8  # pixels per spatial axis (smaller is not an image a clinician segments)
    max_side: int = 8192
    live_sessions: int = 32  # sessions kept in memory; others are rebuilt by replay on demand
    model_workers: int = 1  # model computations at once (the rest wait); see ModelGate (`clinloop serve` uses 2)


@dataclass
class Worklist:
    """Cases from ``--data`` (lazy dataset), optionally ranked by LEXU."""

    dataset: Any = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    ranked_by: str | None = None


def build_worklist(data: str | Path | None, data_format: str | None = None, lexu: Any = None,
                   limit: int | None = None, options: dict[str, Any] | None = None) -> Worklist:
    """Load ``data`` (any supported layout) and, with a LEXU predictor (or its
    model folder), rank the cases by predicted disagreement (highest first)."""
    if data is None:
        return Worklist()
    from clinloop.data import load_dataset

    ds = load_dataset(data, format=data_format, **(options or {}))
    n = len(ds) if limit is None else min(len(ds), int(limit))
    rows = [{"case_id": str(ds.case_ids[i]), "patient_id": str(ds.patient_ids[i]), "index": i} for i in range(n)]
    ranked_by = None
    if lexu is not None:
        from clinloop.evaluation.triage import rank_cases

        if isinstance(lexu, (str, Path)):
            from clinloop.models.lexu.model import load_lexu
            from clinloop.models.registry import resolve_model_dir

            lexu = load_lexu(resolve_model_dir(lexu))
        ranked = rank_cases(lexu, [ds[i] for i in range(n)])
        by_id = {r["case_id"]: r for r in rows}
        rows = [{**by_id[str(r["case_id"])], "rank": r["rank"],
                 "predicted_disagreement": r["predicted_disagreement"]} for r in ranked]
        ranked_by = "lexu"
    index: dict[str, int] = {}
    for r in rows:
        index.setdefault(r["case_id"], r["index"])
    return Worklist(ds, rows, index, ranked_by)


def _user_image(image: np.ndarray) -> np.ndarray:
    """Stored channels-first image -> what ``Session`` expects ((H,W), (H,W,3), (D,H,W))."""
    if image.ndim == 3:
        if image.shape[0] == 1:
            return image[0]
        if image.shape[0] == 2:  # e.g. grey + alpha-like channels: average to grey
            return image.mean(axis=0)
        return np.moveaxis(image[:3], 0, -1)  # RGB (extra channels dropped)
    if image.shape[0] != 1:
        raise ValueError(f"multi-channel volumes are not supported (shape {image.shape}); send one channel")
    return image[0]


class ModelGate:
    """At most ``workers`` model computations at once; the others wait their turn.

    Every request runs in the ASGI thread pool (up to 40 threads). Without a gate,
    16 clinicians' steps ran together on 2 cores, each with torch's own threads:
    the cores thrashed and every step took ~13x its idle time. With the gate a
    step waits in line (reported as ``queue`` in the ``Server-Timing`` header)
    and then runs at full speed. Use ``with gate(request):``."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"model_workers must be >= 1, got {workers}")
        self._sem = threading.Semaphore(workers)

    @contextlib.contextmanager
    def __call__(self, request: Any):
        t0 = time.perf_counter()
        with self._sem:
            t1 = time.perf_counter()
            request.state.queue_seconds = getattr(request.state, "queue_seconds", 0.0) + (t1 - t0)
            try:
                yield
            finally:
                request.state.model_seconds = getattr(request.state, "model_seconds", 0.0) + (time.perf_counter() - t1)


class Live:
    """An in-memory session, its lock and its stored facts."""

    def __init__(self, session: Session, row: dict[str, Any], image: np.ndarray, meta: dict[str, Any]):
        self.session, self.row, self.image, self.meta = session, row, image, meta
        self.lock = threading.Lock()
        self.z = 0  # last slice acted on (3-D)


def create_app(model: Any, *, state_dir: str | Path, data: str | Path | None = None, data_format: str | None = None,
               data_options: dict[str, Any] | None = None, token: str | None = None,
               tokens: dict[str, str] | None = None, lexu: Any = None, case_limit: int | None = None,
               limits: Limits | None = None, worklist: Worklist | None = None):
    """Build the FastAPI app.

    Args:
        model: an ``InteractiveModel`` or a model folder / shipped name for
            :func:`clinloop.load_model`.
        state_dir: folder for the SQLite database and stored arrays.
        data: dataset path for the worklist (any supported layout), optional.
        token / tokens: bearer-token authentication (see the module docstring).
        lexu: LEXU predictor or model folder: rank the worklist.
    """
    from clinloop.server import encoding, export
    from clinloop.server.store import Store
    from clinloop.server.volume import lift

    if isinstance(model, (str, Path)):
        from clinloop.models.registry import load_model

        model = load_model(model)
    limits = limits or Limits()
    store = Store(state_dir)
    gate = ModelGate(limits.model_workers)
    wl = worklist if worklist is not None else build_worklist(data, data_format, lexu, case_limit, data_options)
    driven = lift(model)
    model_name = str(model.name)
    export.warm_up()
    live: OrderedDict[str, Live] = OrderedDict()
    live_lock = threading.Lock()
    open_locks: dict[str, threading.Lock] = {}
    tmp_root = store.dir / "tmp"
    tmp_root.mkdir(exist_ok=True)

    app = FastAPI(title="clinloop workstation", version="0.1.0",
                  description="Interactive, uncertainty-aware segmentation (SPA / MECCA / LEXU). See clinloop.server.app.")
    app.state.store, app.state.model, app.state.worklist, app.state.limits = store, model, wl, limits

    # ------------------------------------------------------------ plumbing
    def fail(status: int, msg: str):
        raise HTTPException(status_code=status, detail=msg)

    def err(request: Request, status: int, detail: Any) -> JSONResponse:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, status, detail)
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        return err(request, e.status_code, e.detail)

    @app.exception_handler(RequestValidationError)
    async def _valid(request: Request, e: RequestValidationError):
        msgs = [f"{'.'.join(str(x) for x in d.get('loc', ()) if x != 'body') or 'body'}: {d.get('msg')}"
                for d in e.errors()]
        return err(request, 422, "; ".join(msgs) or "invalid request")

    @app.exception_handler(ValueError)
    async def _value(request: Request, e: ValueError):
        return err(request, 400, str(e))

    @app.exception_handler(Exception)
    async def _any(request: Request, e: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(e).__name__}); see the server log"}, status_code=500)

    @app.middleware("http")
    async def _timing(request: Request, call_next):
        t0 = time.perf_counter()
        request.state.model_seconds = request.state.queue_seconds = 0.0
        if request.url.path.startswith("/api/") and request.method == "POST":
            origin = request.headers.get("origin")
            if origin and origin != "null" and origin.split("://", 1)[-1] != request.headers.get("host", ""):
                # another web page driving this API from the user's browser (CSRF): refuse
                return err(request, 403, f"cross-origin request from {origin} refused")
            cl = request.headers.get("content-length")
            if request.headers.get("transfer-encoding", "").lower() == "chunked" and cl is None:
                return err(request, 411, "send a Content-Length (chunked uploads are not accepted)")
            try:
                n = int(cl) if cl is not None else 0
            except ValueError:
                return err(request, 400, "bad Content-Length header")
            if n > limits.max_upload_bytes:
                return err(request, 413, f"request body of {n} bytes exceeds the limit of {limits.max_upload_bytes} bytes")
        try:
            response = await call_next(request)
        except Exception as e:  # noqa: BLE001 - never let a request take the server down
            log.exception("%s %s failed", request.method, request.url.path)
            response = JSONResponse({"detail": f"internal error ({type(e).__name__}); see the server log"},
                                    status_code=500)
        total = time.perf_counter() - t0
        ms = float(getattr(request.state, "model_seconds", 0.0))
        qs = float(getattr(request.state, "queue_seconds", 0.0))
        response.headers["Server-Timing"] = (f"model;dur={ms * 1000:.1f}, queue;dur={qs * 1000:.1f}, "
                                             f"total;dur={total * 1000:.1f}")
        if request.url.path.startswith("/api/"):
            log.info("%s %s %d total=%.1fms model=%.1fms queue=%.1fms overhead=%.1fms", request.method,
                     request.url.path, response.status_code, total * 1000, ms * 1000, qs * 1000,
                     (total - ms - qs) * 1000)
        return response

    def user_of(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if tokens:
            if bearer is None or bearer not in tokens:
                fail(401, "missing or unknown bearer token (Authorization: Bearer <token>)")
            return tokens[bearer]
        if token is not None:
            import hmac

            if bearer is None or not hmac.compare_digest(bearer.encode(), token.encode()):
                fail(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        u = request.headers.get("x-clinloop-user", "local") or "local"
        if not _USER.match(u):
            fail(400, "X-Clinloop-User must be 1-64 characters of letters, digits, . _ @ -")
        return u

    # ------------------------------------------------------------ sessions
    def start_session(img: np.ndarray, seed: int, profile: dict | None) -> tuple[Session, dict | None]:
        try:
            return Session(driven, _user_image(img), seed=seed, profile=profile), profile
        except ValueError:
            if profile is None:
                raise
            log.warning("stored profile does not fit model %s; starting without it", model_name)
            return Session(driven, _user_image(img), seed=seed, profile=None), None

    def get_live(request: Request, sid: str) -> Live:
        user = user_of(request)
        with live_lock:
            lv = live.get(sid)
            if lv is not None and lv.row["owner"] == user:
                live.move_to_end(sid)
                return lv
            lk = open_locks.setdefault(sid, threading.Lock())
        with lk:  # one rebuild per session at a time
            with live_lock:
                lv = live.get(sid)
            if lv is not None:
                if lv.row["owner"] != user:
                    fail(404, f"no session {sid!r}")
                return lv
            row = store.session(sid, user)
            if row is None:
                fail(404, f"no session {sid!r}")
            if row["model"] != model_name:  # replaying with another model would not give back the same proposals
                fail(409, f"session {sid!r} was made with model {row['model']!r}; this server runs {model_name!r}")
            img, meta = store.image(row["image_sha"])
            with gate(request):
                s = Session.replay(driven, _user_image(img), row["history"], seed=row["seed"], profile=row["profile"])
            log.info("session %s rebuilt from %d stored actions", sid, len(row["history"]))
            lv = Live(s, row, img, meta)
            remember(sid, lv)
            return lv

    def remember(sid: str, lv: Live) -> None:
        with live_lock:
            live[sid] = lv
            live.move_to_end(sid)
            while len(live) > limits.live_sessions:
                old, _ = live.popitem(last=False)
                open_locks.pop(old, None)

    def status_of(s: Session) -> str:
        return "accepted" if s.accepted is not None else "open"

    def describe(sid: str, lv: Live) -> dict[str, Any]:
        s = lv.session
        return {"session_id": sid, "shape": list(s.spatial_shape), "ndim": len(s.spatial_shape),
                "channels": int(lv.image.shape[0]), "case_id": lv.row.get("case_id"), "model": model_name,
                "status": status_of(s), "iteration": s.iteration, "history": s.history,
                "modality": lv.meta.get("modality", ""), "format": lv.meta.get("format", ""),
                "spacing": lv.meta.get("spacing"), "has_proposal": s.proposal is not None,
                "exports": ["nii.gz"] + (["png"] if len(s.spatial_shape) == 2 else [])
                + (["dcm"] if lv.meta.get("format") == "dicom" and lv.meta.get("source_suffix") else []),
                "profile_applied": lv.row.get("profile") is not None}

    def answer(sid: str, lv: Live, p, z: int | None = None) -> dict[str, Any]:
        s = lv.session
        if p is None:
            return {"session_id": sid, "status": status_of(s), "iteration": s.iteration, "proposal": None}
        if len(s.spatial_shape) == 3:
            z = int(p.extra.get("z", z if z is not None else lv.z))
            lv.z = z
        out = encoding.encode_proposal(p, z)
        return {"session_id": sid, "status": status_of(s), **out}

    def check_image(img: np.ndarray, where: str) -> None:
        sp = img.shape[1:]
        if img.ndim not in (3, 4):
            fail(422, f"{where}: image must be 2-D or 3-D, got spatial shape {sp}")
        if img.size > limits.max_voxels:
            fail(413, f"{where}: image of {img.size} values exceeds the limit of {limits.max_voxels}")
        if min(sp[-2:]) < limits.min_side or max(sp) > limits.max_side:  # a volume may have few slices
            fail(422, f"{where}: image size {sp} is outside {limits.min_side}..{limits.max_side} pixels per axis")
        if img.ndim == 4 and img.shape[0] != 1:
            fail(422, f"{where}: multi-channel volumes are not supported (shape {img.shape})")

    def precheck(path: Path, suffix: str) -> None:
        """Refuse images whose *header* already claims too many voxels (before decoding)."""
        try:
            if suffix in (".png", ".jpg", ".jpeg"):
                from PIL import Image

                with Image.open(path) as im:
                    n = im.size[0] * im.size[1] * max(len(im.getbands()), 1)
            elif suffix in (".nii", ".nii.gz"):
                import nibabel as nib

                n = int(np.prod(nib.load(str(path)).shape))
            elif suffix == ".npy":
                with open(path, "rb") as f:
                    v = np.lib.format.read_magic(f)
                    shape = (np.lib.format.read_array_header_1_0 if v == (1, 0) else np.lib.format.read_array_header_2_0)(f)[0]
                n = int(np.prod(shape))
            else:
                import pydicom

                ds = pydicom.dcmread(str(path), stop_before_pixels=True)
                n = int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0) * int(ds.get("NumberOfFrames", 1) or 1) \
                    * int(ds.get("SamplesPerPixel", 1) or 1)
        except Exception as e:  # noqa: BLE001 - any header failure is corrupt input
            fail(400, f"cannot read the uploaded {suffix} file ({type(e).__name__}: {e})")
        if n > limits.max_voxels:
            fail(413, f"uploaded image of {n} values exceeds the limit of {limits.max_voxels}")

    def read_upload(data: bytes, filename: str) -> tuple[np.ndarray, dict[str, Any], str]:
        from clinloop.data.io import file_suffix, read_image

        suffix = file_suffix(filename or "")
        if suffix not in UPLOAD_SUFFIXES:
            if len(data) >= 132 and data[128:132] == b"DICM":
                suffix = ".dcm"
            elif data[:8] == b"\x89PNG\r\n\x1a\n":
                suffix = ".png"
            elif data[:3] == b"\xff\xd8\xff":
                suffix = ".jpg"
            else:
                fail(415, f"unsupported upload {filename!r}; send one of {', '.join(UPLOAD_SUFFIXES)}")
        if not data:
            fail(400, "the uploaded file is empty")
        with tempfile.TemporaryDirectory(dir=tmp_root) as d:
            path = Path(d) / f"upload{suffix}"  # fixed name: the client's filename never becomes a path
            path.write_bytes(data)
            shown = Path(filename or "upload").name[:200] or "upload"
            try:
                precheck(path, suffix)
                img, spacing, affine, meta = read_image(path)
            except HTTPException as e:  # never show server paths in messages
                raise HTTPException(e.status_code, str(e.detail).replace(str(path), shown)) from None
            except ValueError as e:
                fail(400, str(e).replace(str(path), shown))
        meta.pop("path", None)
        meta.update(spacing=list(spacing), affine=None if affine is None else np.asarray(affine).tolist(),
                    source="upload", filename=Path(filename or "").name[:200])
        return img, meta, suffix

    def open_session(request: Request, user: str, img: np.ndarray, meta: dict[str, Any], case_id: str | None, seed: int,
                     use_profile: bool, source: bytes | None = None,
                     suffix: str | None = None) -> tuple[dict[str, Any], float]:
        check_image(img, case_id or "upload")
        if img.ndim == 4 and 3 not in driven.spatial_ndims:
            fail(422, f"model {model_name} cannot segment volumes")
        profile = store.profile(user, model_name) if use_profile else None
        with gate(request):
            t1 = time.perf_counter()
            s, used = start_session(img, seed, profile)
        dt = time.perf_counter() - t1
        sha, meta = store.put_image(img, meta, source if meta.get("format") == "dicom" else None, suffix)
        sid = store.new_session(user, sha, case_id, model_name, seed, used)
        row = store.session(sid, user)
        lv = Live(s, row, img, meta)
        remember(sid, lv)
        out = describe(sid, lv)
        out["start_seconds"] = round(dt, 4)
        return out, dt

    # --------------------------------------------------------------- routes
    def point_of(lv: Live, c: Click) -> tuple[float, ...]:
        nd = len(lv.session.spatial_shape)
        if nd == 2:
            if c.z is not None:
                fail(400, "this image is 2-D: send {x, y} without z")
            return (c.x, c.y)
        if c.z is None:
            fail(400, "this image is 3-D: send {x, y, z} (z = slice index)")
        return (c.x, c.y, c.z)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/info")
    def info(request: Request):
        user = user_of(request)
        return {"user": user, "model": model_name, "spatial_ndims": list(getattr(model, "spatial_ndims", (2,))),
                "cases": len(wl.rows), "ranked_by": wl.ranked_by, "auth": bool(token or tokens),
                "has_profile": store.profile(user, model_name) is not None,
                "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_voxels": limits.max_voxels},
                "upload_types": list(UPLOAD_SUFFIXES)}

    @app.get("/api/cases")
    def cases(request: Request):
        user_of(request)
        return {"ranked_by": wl.ranked_by, "cases": wl.rows}

    @app.post("/api/sessions")
    async def new_session(request: Request):
        user = user_of(request)
        ctype = request.headers.get("content-type", "")
        seed, use_profile, case_id, upload = 0, True, None, None
        if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            try:
                form = await request.form(max_files=1, max_fields=8)
            except Exception as e:  # noqa: BLE001 - malformed multipart bodies
                fail(400, f"malformed multipart body ({e})")
            f = form.get("file")
            if f is not None and not isinstance(f, str):
                upload = (await f.read(limits.max_upload_bytes + 1), f.filename or "")
                if len(upload[0]) > limits.max_upload_bytes:
                    fail(413, f"upload exceeds the limit of {limits.max_upload_bytes} bytes")
            elif f is not None:
                fail(400, "'file' must be a file part, not a text field")
            case_id = form.get("case_id") or None
            try:
                seed = int(form.get("seed", 0))
            except (TypeError, ValueError):
                fail(422, "seed must be an integer")
            use_profile = str(form.get("use_profile", "true")).lower() not in ("0", "false", "no", "off")
        elif ctype.startswith("application/json"):
            try:
                body = CaseRequest.model_validate_json(await request.body())
            except Exception as e:  # noqa: BLE001 - pydantic ValidationError / bad JSON
                fail(422, f"expected JSON {{case_id, [seed], [use_profile]}} ({str(e).splitlines()[0]})")
            case_id, seed, use_profile = body.case_id, body.seed, body.use_profile
        else:
            fail(415, "send multipart/form-data with a 'file' (or 'case_id'), or JSON {case_id}")
        if upload is None and case_id is None:
            fail(400, "no image: send a 'file' upload or a 'case_id' from GET /api/cases")
        if upload is not None:
            img, meta, suffix = await run_in_threadpool(read_upload, *upload)
            out, dt = await run_in_threadpool(open_session, request, user, img, meta, None, seed, use_profile, upload[0], suffix)
        else:
            if wl.dataset is None or case_id not in wl.index:
                fail(404, f"no case {case_id!r} in the worklist")
            i = wl.index[case_id]

            def load_case():
                s = wl.dataset[i]
                meta = {"format": s.provenance.get("format", getattr(wl.dataset, "format", "")),
                        "modality": str(s.provenance.get("modality", "")), "spacing": list(map(float, s.spacing)),
                        "affine": None if s.affine is None else np.asarray(s.affine).tolist(),
                        "source": "case", "case_id": case_id}
                return s.image, meta

            img, meta = await run_in_threadpool(load_case)
            out, dt = await run_in_threadpool(open_session, request, user, img, meta, case_id, seed, use_profile)
        return out

    @app.get("/api/sessions")
    def list_sessions(request: Request):
        return {"sessions": store.sessions(user_of(request))}

    @app.get("/api/sessions/{sid}")
    def get_session(sid: str, request: Request):
        lv = get_live(request, sid)
        return describe(sid, lv)

    @app.get("/api/sessions/{sid}/image")
    def get_image(sid: str, request: Request, z: int | None = Query(None)):
        lv = get_live(request, sid)
        if lv.image.ndim == 4:
            d = lv.image.shape[1]
            z = d // 2 if z is None else z
            if not 0 <= z < d:
                fail(400, f"slice z={z} is outside the volume (0 .. {d - 1})")
        elif z not in (None, 0):
            fail(400, "this image is 2-D: no slices")
        if not hasattr(lv, "window"):  # one default window for the whole volume, computed once
            lv.window = tuple(float(v) for v in np.percentile(lv.image[0], [0.5, 99.5]))
        return encoding.encode_image_slice(lv.image, z, window=lv.window)

    @app.get("/api/sessions/{sid}/proposal")
    def get_proposal(sid: str, request: Request, z: int | None = Query(None)):
        lv = get_live(request, sid)
        s = lv.session
        if s.proposal is not None and len(s.spatial_shape) == 3:
            if z is None:
                z = lv.z
            if not 0 <= z < s.spatial_shape[0]:
                fail(400, f"slice z={z} is outside the volume (0 .. {s.spatial_shape[0] - 1})")
            return {"session_id": sid, "status": status_of(s), **encoding.encode_proposal(s.proposal, z)}
        return answer(sid, lv, s.proposal)

    def act(sid: str, request: Request, fn) -> dict[str, Any]:
        lv = get_live(request, sid)
        with lv.lock:
            with gate(request):
                p = fn(lv)
            store.save_history(sid, lv.session.history, status_of(lv.session))
            return answer(sid, lv, p)

    @app.post("/api/sessions/{sid}/click")
    def click(sid: str, body: Click, request: Request):
        def do(lv: Live):
            pt = point_of(lv, body)
            if len(pt) == 3:  # answer on the clicked slice (native 3-D models set no extra["z"])
                lv.z = int(np.clip(round(pt[2]), 0, lv.session.spatial_shape[0] - 1))
            return lv.session.click(pt, body.positive)

        return act(sid, request, do)

    @app.post("/api/sessions/{sid}/choose")
    def choose(sid: str, body: Choose, request: Request):
        return act(sid, request, lambda lv: lv.session.choose(body.candidate))

    @app.post("/api/sessions/{sid}/hint")
    def hint(sid: str, body: Hint, request: Request):
        return act(sid, request, lambda lv: lv.session.hint([(point_of(lv, c), c.positive) for c in body.points]))

    @app.post("/api/sessions/{sid}/undo")
    def undo(sid: str, request: Request):
        return act(sid, request, lambda lv: lv.session.undo())

    @app.post("/api/sessions/{sid}/accept")
    def accept(sid: str, request: Request):
        user = user_of(request)
        lv = get_live(request, sid)
        with lv.lock:
            mask = lv.session.accept()
            n = store.accept(sid, user, mask, lv.session.history)
            try:  # the preference profile travels to this user's next image
                store.save_profile(user, model_name, lv.session.profile())
            except (ValueError, TypeError) as e:
                log.warning("profile of session %s not saved: %s", sid, e)
            return {"session_id": sid, "status": "accepted", "accepted": n, "area": int(mask.sum()),
                    "iteration": lv.session.iteration}

    @app.get("/api/sessions/{sid}/mask")
    def get_mask(sid: str, request: Request, format: str = Query("nii.gz")):
        user = user_of(request)
        lv = get_live(request, sid)
        if format not in export.FORMATS:
            fail(400, f"unknown mask format {format!r}; choose one of {', '.join(export.FORMATS)}")
        mask = store.accepted_mask(sid, user)
        if mask is None:
            fail(409, "this session has no accepted mask yet: POST .../accept first")
        src = store.source_path(lv.row["image_sha"], lv.meta)
        try:
            data = export.mask_bytes(mask, format, lv.meta, src)
        except export.ExportError as e:
            fail(422, str(e))
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(lv.row.get("case_id") or sid))[:80]
        return Response(data, media_type=export.FORMATS[format],
                        headers={"Content-Disposition": f'attachment; filename="{stem}_mask.{format}"'})

    @app.get("/api/profile")
    def get_profile(request: Request):
        user = user_of(request)
        return {"user": user, "model": model_name, "profile": store.profile(user, model_name)}

    return app
