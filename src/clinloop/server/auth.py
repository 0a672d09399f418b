"""Who is asking: bearer tokens and the ``X-Clinloop-User`` header.

* no token configured: anyone on the socket; the user is ``X-Clinloop-User``
  (default ``"local"``);
* ``token="T"``: every ``/api`` request needs ``Authorization: Bearer T``; the
  user is ``X-Clinloop-User`` or ``"local"``;
* ``tokens={"T1": "alice", ...}``: the bearer token names the user (the
  header is ignored).

User names match ``[A-Za-z0-9._@-]{1,64}``. Routes take the user with the
``User`` dependency: ``def route(user: User): ...``.
"""
from __future__ import annotations

import hmac
import re
from typing import Annotated

from fastapi import Depends, Header, Request

from clinloop.server.errors import fail

USER_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


class Auth:
    """Token check (``token`` xor ``tokens``; neither: open) -> the user's name."""

    def __init__(self, token: str | None = None, tokens: dict[str, str] | None = None) -> None:
        if tokens is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in tokens.items()):
            raise ValueError("tokens must map token strings to user names")
        bad = [u for u in (tokens or {}).values() if not USER_NAME.match(u)]
        if bad:
            raise ValueError(f"user names must be 1-64 characters of letters, digits, . _ @ -; got {bad[0]!r}")
        self.token, self.tokens = token, dict(tokens) if tokens else None

    @property
    def enabled(self) -> bool:
        return bool(self.token or self.tokens)

    def user(self, authorization: str | None, user_header: str | None) -> str:
        """The user's name, or a 401 (bad/missing token) / 400 (bad user name)."""
        auth = authorization or ""
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if self.tokens:
            if bearer is None or bearer not in self.tokens:
                fail(401, "missing or unknown bearer token (Authorization: Bearer <token>)")
            return self.tokens[bearer]
        if self.token is not None:
            if bearer is None or not hmac.compare_digest(bearer.encode(), self.token.encode()):
                fail(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        u = user_header or "local"
        if not USER_NAME.match(u):
            fail(400, "X-Clinloop-User must be 1-64 characters of letters, digits, . _ @ -")
        return u


def current_user(request: Request, x_clinloop_user: Annotated[str | None, Header(
        description="the user's name when no per-user tokens are configured (default 'local'); "
                    "1-64 characters of letters, digits, . _ @ - (400 otherwise; empty = 'local')",
        json_schema_extra={"pattern": "^([A-Za-z0-9._@-]{1,64})?$"})] = None) -> str:
    """FastAPI dependency: the requesting user (see the module docstring)."""
    return request.app.state.ctx.auth.user(request.headers.get("authorization"), x_clinloop_user)


User = Annotated[str, Depends(current_user)]
