"""The OpenAPI document is the contract: schemathesis (a property-based API
fuzzer) runs against a live server and finds no failure — no 5xx, every
status documented with its body schema, error bodies as documented
(``{"detail": str}``), undocumented methods answered 405 with the right
``Allow``, schema-violating input refused.

Two runs: one with random session ids (the 404 paths), one bound to a real
open session (the model steps). ``positive_data_acceptance`` (schema-valid
input must be accepted) also expects 400/409/413/415/422 for two kinds of
operation whose validity no schema can express: opening a session on an
uploaded file (its bytes must decode to an image of at least 8 pixels a side)
and the steps of a real session (a click must lie inside the image; choose
needs a click first; accept closes the session).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("schemathesis")
httpx = pytest.importorskip("httpx")

from _toy_server import Toy, live_server, png_bytes  # noqa: E402

STATEFUL = ["2xx", "400", "401", "403", "404", "409", "413", "415", "422", "503"]


def _st(url: str, config: str | None, tmp_path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "schemathesis.cli"]
    if config is not None:
        cfg = tmp_path / "schemathesis.toml"
        cfg.write_text(config)
        cmd += ["--config-file", str(cfg)]
    cmd += ["run", f"{url}/openapi.json", "--max-examples", "8", "--seed", "1", "--no-color"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_schemathesis_finds_no_failure(tmp_path):
    from clinloop.server.app import create_app

    (tmp_path / "case.png").write_bytes(png_bytes(np.full((32, 32), 9, np.uint8)))
    app = create_app(Toy(), state_dir=tmp_path / "state", data=tmp_path / "case.png", allowed_hosts=["127.0.0.1"])
    with live_server(app) as (url, _):
        statuses = ", ".join(f'"{s}"' for s in STATEFUL)
        r = _st(url, f'[[operations]]\ninclude-path = "/api/sessions"\ninclude-method = "POST"\n'
                     f'checks.positive_data_acceptance.expected-statuses = [{statuses}]\n', tmp_path)
        assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
        sid = httpx.post(f"{url}/api/sessions", data={"case_id": "case"}).json()["session_id"]
        r2 = _st(url, f'[parameters]\n"path.sid" = "{sid}"\n\n[[operations]]\ninclude-path-regex = "^/api/sessions"\n'
                      f'checks.positive_data_acceptance.expected-statuses = [{statuses}]\n', tmp_path)
        assert r2.returncode == 0, r2.stdout[-6000:] + r2.stderr[-2000:]
        history = app.state.store.session(sid, "local")["history"]
    assert " passed" in r.stdout and " passed" in r2.stdout
    assert history, "the bound run never reached the model"
