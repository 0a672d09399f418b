"""The ASGI layer in front of every route (pure ASGI, no per-request task):

* **trusted hosts**: the ``Host`` header must name the bound address or an
  added name (``allowed_hosts``; ``"*"`` allows any) — a DNS-rebinding page
  cannot read the API through the user's browser; 400 otherwise;
* **cross-origin writes**: a state-changing request (not GET/HEAD/OPTIONS)
  whose ``Origin`` is ``null`` or another site is refused with 403 (CSRF);
* **body limits** on ``/api/`` POSTs: 411 for a chunked body without length,
  413 beyond ``Limits.max_upload_bytes``;
* **body read timeout**: a request body that stalls for ``body_timeout``
  seconds (e.g. shorter than its ``Content-Length``) is answered 408 and the
  connection closed; a client that disconnects mid-body is logged as such
  (no 500);
* **timing**: ``Server-Timing: model;dur=.., queue;dur=.., total;dur=..`` (ms)
  on every answer, logged per ``/api/`` request; unexpected exceptions
  answer 500 ``{"detail"}`` and are logged — the server keeps running.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Iterable

log = logging.getLogger("clinloop.server")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def host_name(value: str) -> str:
    """``"Example.org:8000"`` -> ``"example.org"``; ``"[::1]:80"`` -> ``"::1"``."""
    v = value.strip().lower()
    if v.startswith("["):
        return v[1:v.find("]")] if "]" in v else v
    return v.rsplit(":", 1)[0] if v.count(":") == 1 else v


def bound_hosts(host: str, extra: Iterable[str] = ()) -> list[str]:
    """Names a server bound to ``host`` answers to: loopback names for a loopback
    bind; the machine's names and addresses too for a wildcard bind; plus ``extra``."""
    import socket

    names = {host_name(host)}
    if names & {"127.0.0.1", "localhost", "::1"} or host in ("0.0.0.0", "::", ""):
        names.update(LOOPBACK_NAMES)
    if host in ("0.0.0.0", "::", ""):
        for n in {socket.gethostname(), socket.getfqdn()}:
            names.add(n.lower())
            try:
                names.update(str(a[4][0]).lower() for a in socket.getaddrinfo(n, None))
            except OSError:
                pass
    names.update(host_name(e) for e in extra)
    return sorted(names)


async def send_json(send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware; see the module docstring. ``limits`` is read per request
    (``max_upload_bytes``, ``body_timeout``); ``allowed_hosts=None`` skips the
    Host check (an app embedded in another server)."""

    def __init__(self, app, limits: Any, allowed_hosts: Iterable[str] | None = None,
                 trusted_origins: Iterable[str] = ()) -> None:
        self.app, self.limits = app, limits
        hosts = None if allowed_hosts is None else {host_name(h) for h in allowed_hosts}
        self.any_host = hosts is None or "*" in hosts
        self.hosts = hosts or set()
        self.origins = {host_name(h) for h in trusted_origins}

    def _refusal(self, scope, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.any_host and host_name(host) not in self.hosts:
            return 400, (f"Host {host[:100]!r} is not served here; a reverse proxy's name is added with "
                         "`clinloop serve --allowed-host NAME`")
        method = scope["method"]
        if method not in SAFE_METHODS:
            origin = headers.get(b"origin")
            if origin is not None:
                o = origin.decode("latin-1")
                net = o.split("://", 1)[-1]
                if o == "null" or (net != host and host_name(net) not in self.origins):
                    return 403, f"cross-origin request from {o[:100]} refused"
        if scope["path"].startswith("/api/") and method == "POST":
            cl = headers.get(b"content-length")
            if cl is None and headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                return 411, "send a Content-Length (chunked uploads are not accepted)"
            try:
                n = int(cl) if cl is not None else 0
            except ValueError:
                return 400, "bad Content-Length header"
            if n > self.limits.max_upload_bytes:
                return 413, f"request body of {n} bytes exceeds the limit of {self.limits.max_upload_bytes} bytes"
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        headers = dict(scope["headers"])
        path, method = scope["path"], scope["method"]
        state = scope["state"] = {**scope.get("state", {}), "model_seconds": 0.0, "queue_seconds": 0.0}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            log.warning("%s %s -> %d: %s", method, path, *refusal)
            return await send_json(send, *refusal)
        timeout = self.limits.body_timeout
        expected = headers.get(b"content-length", b"?").decode("latin-1")
        got, body_done = [0], [method in SAFE_METHODS and b"content-length" not in headers]

        async def recv():
            if body_done[0]:
                return await receive()
            try:
                msg = await (asyncio.wait_for(receive(), timeout) if timeout else receive())
            except asyncio.TimeoutError:
                state["body_timeout"] = True
                log.warning("%s %s: request body stalled for %g s after %d of %s bytes; answering 408",
                            method, path, timeout, got[0], expected)
                return {"type": "http.disconnect"}
            if msg["type"] == "http.request":
                got[0] += len(msg.get("body", b""))
                body_done[0] = not msg.get("more_body", False)
            elif msg["type"] == "http.disconnect" and not body_done[0]:
                state["client_gone"] = True
                log.info("%s %s: client disconnected after %d of %s body bytes; request dropped",
                         method, path, got[0], expected)
            return msg

        started = [False]

        async def send_timed(msg):
            if msg["type"] == "http.response.start":
                if state.get("body_timeout"):
                    started[0] = "replaced"
                    return await send_json(send, 408, f"request body not received within {timeout:g} s",
                                           {"Connection": "close"})
                started[0] = True
                total = time.perf_counter() - t0
                ms, qs = float(state.get("model_seconds", 0.0)), float(state.get("queue_seconds", 0.0))
                msg = {**msg, "headers": [*msg.get("headers", []), (b"server-timing", (
                    f"model;dur={ms * 1000:.1f}, queue;dur={qs * 1000:.1f}, total;dur={total * 1000:.1f}").encode())]}
                if path.startswith("/api/"):
                    log.info("%s %s %d total=%.1fms model=%.1fms queue=%.1fms overhead=%.1fms", method, path,
                             msg["status"], total * 1000, ms * 1000, qs * 1000, (total - ms - qs) * 1000)
            elif started[0] == "replaced":
                return None
            return await send(msg)

        try:
            await self.app(scope, recv, send_timed)
        except Exception as e:  # noqa: BLE001 - never let a request take the server down
            if state.get("client_gone"):
                return None
            log.exception("%s %s failed", method, path)
            if not started[0]:
                await send_timed({"type": "http.response.start", "status": 500,
                                  "headers": [(b"content-type", b"application/json")]})
                await send_timed({"type": "http.response.body", "body": json.dumps(
                    {"detail": f"internal error ({type(e).__name__}); see the server log"}).encode()})
