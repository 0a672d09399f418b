"""Error answers: every failure is ``{"detail": "<plain message>"}`` with a
4xx (bad input), 503 (busy, with ``Retry-After``) or 500 (logged).

A :class:`~clinloop.server.store.StoreError` answers its own ``http_status``
(its handler is more specific than the ``ValueError`` -> 400 one, which it
subclasses): 409 a stale session copy, 503 a busy (``Retry-After``), read-only
or damaged database, 507 a full disk, 500 a missing array file. The client's
message names "the state folder" instead of the server's path; the log keeps
the full message for the operator."""
from __future__ import annotations

import logging
from typing import Any, NoReturn

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from clinloop.server.db import StoreBusyError, StoreError
from clinloop.server.live import Busy

log = logging.getLogger("clinloop.server")


def fail(status: int, msg: str) -> NoReturn:
    """Answer ``status`` with ``{"detail": msg}``."""
    raise HTTPException(status_code=status, detail=msg)


def client_gone(request: Request) -> bool:
    """True when the client disconnected (or stalled) before sending its whole body."""
    st = request.scope.get("state") or {}
    return bool(st.get("client_gone") or st.get("body_timeout"))


def error_response(request: Request, status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    if not client_gone(request):  # the guard logs those once, as what they are
        log.warning("%s %s -> %d: %s", request.method, request.url.path, status, detail)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def validation_message(e: RequestValidationError) -> str:
    """pydantic's error list as one plain sentence: ``"x: Input should be a finite number; ..."``."""
    msgs = [f"{'.'.join(str(x) for x in d.get('loc', ()) if x != 'body') or 'body'}: {d.get('msg')}"
            for d in e.errors()]
    return "; ".join(msgs) or "invalid request"


STORE_RETRY_AFTER = 2  # seconds: a busy database is usually free again after one busy timeout


def store_error_response(request: Request, e: StoreError) -> JSONResponse:
    """``e.http_status`` with ``{"detail"}``; the server's paths are not sent."""
    status = int(getattr(e, "http_status", 503))
    msg = str(e)
    if status >= 500:
        log.error("%s %s -> %d: %s", request.method, request.url.path, status, msg)
    store = getattr(getattr(request.app.state, "ctx", None), "store", None)
    root = str(getattr(store, "dir", "") or "")
    detail = msg.replace(root, "<state folder>") if root else msg
    headers = {"Retry-After": str(STORE_RETRY_AFTER)} if isinstance(e, StoreBusyError) else None
    return error_response(request, status, detail, headers)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every HTTP method some route of ``app`` answers at ``path``."""
    methods: set[str] = set()
    for r in app.routes:
        rx, ms = getattr(r, "path_regex", None), getattr(r, "methods", None)
        if rx is not None and ms and rx.match(path):
            methods.update(ms)
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into ``{"detail"}`` answers."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        headers = getattr(e, "headers", None)
        if e.status_code == 405:  # Allow: every method of the path, not only the first route's
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(app, request.url.path))}
        return error_response(request, e.status_code, e.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _valid(request: Request, e: RequestValidationError):
        return error_response(request, 422, validation_message(e))

    @app.exception_handler(ValueError)
    async def _value(request: Request, e: ValueError):
        return error_response(request, 400, str(e))

    @app.exception_handler(StoreError)  # before ValueError: the most specific class in the MRO wins
    async def _store(request: Request, e: StoreError):
        return store_error_response(request, e)

    @app.exception_handler(Busy)
    async def _busy(request: Request, e: Busy):
        return error_response(request, 503, str(e), {"Retry-After": str(e.retry_after)})
