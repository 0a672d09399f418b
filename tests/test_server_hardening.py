"""The workstation under load and attack (issue 18): no acknowledged action
lost under eviction, a bounded model queue, cross-site refusals, range checks
at the boundary, stalled and abandoned bodies, and a reopened session's mask."""
from __future__ import annotations

import json
import logging
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from _toy_server import IMAGE, Toy, live_server, png_bytes  # noqa: E402


def _app(tmp_path, model=None, **limits):
    from clinloop.server.app import Limits, create_app

    return create_app(model or Toy(), state_dir=tmp_path, limits=Limits(**limits))


def _open(c, **data) -> str:
    r = c.post("/api/sessions", files={"file": ("a.png", IMAGE, "image/png")}, data=data)
    assert r.status_code == 200, r.text
    return r.json()["session_id"]


def test_two_clients_one_session_under_eviction_lose_no_acknowledged_action(tmp_path):
    """Cache of ONE session, two clients clicking the same session while a third
    opens others (evicting it between requests): every 200 is a stored action,
    and no two answers carry the same iteration."""
    app = _app(tmp_path, Toy(delay=0.003), live_sessions=1, model_workers=2)
    with live_server(app) as (url, _):
        with httpx.Client(base_url=url, timeout=60) as c0:
            sid = _open(c0)
        acked, errors = [], []

        def clicker(i):
            with httpx.Client(base_url=url, timeout=60) as c:
                for k in range(25):
                    r = c.post(f"/api/sessions/{sid}/click", json={"x": 10 + i, "y": 12 + k % 5})
                    (acked if r.status_code == 200 else errors).append(r.json().get("iteration", r.text))

        def churn():
            with httpx.Client(base_url=url, timeout=60) as c:
                for _ in range(15):
                    other = _open(c)
                    c.post(f"/api/sessions/{other}/click", json={"x": 3, "y": 3})

        ts = [threading.Thread(target=clicker, args=(i,)) for i in range(2)] + [threading.Thread(target=churn)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        stored = app.state.store.session(sid, "local")["history"]
        stats = app.state.ctx.live.stats()
    assert errors == []
    assert len(acked) == 50 and sum(h["action"] == "click" for h in stored) == 50
    assert sorted(acked) == list(range(1, 51))  # every iteration number answered exactly once
    assert stats["rebuilds"] >= 1  # the session really was evicted and rebuilt in between


def test_stale_copy_cannot_overwrite_the_stored_history(tmp_path):
    """Two servers on one state folder (a stale in-memory copy): the second
    write is refused with 409, and the next request rebuilds and goes on."""
    from fastapi.testclient import TestClient

    a, b = TestClient(_app(tmp_path)), TestClient(_app(tmp_path))
    sid = _open(a)
    assert b.get(f"/api/sessions/{sid}").status_code == 200  # b caches the empty session
    assert a.post(f"/api/sessions/{sid}/click", json={"x": 5, "y": 5}).json()["iteration"] == 1
    r = b.post(f"/api/sessions/{sid}/click", json={"x": 9, "y": 9})
    assert r.status_code == 409 and "changed elsewhere" in r.json()["detail"]
    assert [h["point"] for h in a.app.state.store.session(sid, "local")["history"]] == [[5.0, 5.0]]
    r = b.post(f"/api/sessions/{sid}/click", json={"x": 9, "y": 9})  # rebuilt from the store
    assert r.status_code == 200 and r.json()["iteration"] == 2
    assert a.post(f"/api/sessions/{sid}/accept").status_code == 409  # now a's copy is the stale one


def test_full_model_queue_answers_503_with_retry_after(tmp_path):
    app = _app(tmp_path, Toy(delay=0.6), model_workers=1, queue_limit=0)
    with live_server(app) as (url, _):
        with httpx.Client(base_url=url, timeout=60) as c:
            s1, s2 = _open(c), _open(c)
        out = {}

        def go(sid):
            with httpx.Client(base_url=url, timeout=60) as c:
                out[sid] = c.post(f"/api/sessions/{sid}/click", json={"x": 5, "y": 5})

        ts = [threading.Thread(target=go, args=(s,)) for s in (s1, s2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    codes = sorted(r.status_code for r in out.values())
    assert codes == [200, 503]
    busy = next(r for r in out.values() if r.status_code == 503)
    assert int(busy.headers["retry-after"]) >= 1 and "busy" in busy.json()["detail"]
    assert app.state.ctx.gate.refused == 1


def test_cross_origin_and_host_checks(tmp_path):
    from fastapi.testclient import TestClient

    from clinloop.server.app import create_app

    app = create_app(Toy(), state_dir=tmp_path, allowed_hosts=["127.0.0.1", "localhost"],
                     trusted_origins=["ws.clinic.example"])
    c = TestClient(app, base_url="http://127.0.0.1:8000")
    for origin in ("null", "http://evil.example", "http://127.0.0.1:8000.evil.example"):
        r = c.post("/api/sessions", json={"case_id": "x"}, headers={"Origin": origin})
        assert r.status_code == 403 and "cross-origin" in r.json()["detail"], origin
    assert c.post("/api/sessions", json={"case_id": "x"}, headers={"Origin": "http://127.0.0.1:8000"}).status_code == 404
    assert c.post("/api/sessions", json={"case_id": "x"},
                  headers={"Origin": "https://ws.clinic.example"}).status_code == 404  # the proxy's public name
    assert c.get("/api/info", headers={"Origin": "null"}).status_code == 200  # reads are not state-changing
    r = c.get("/api/info", headers={"Host": "rebound.evil.example"})  # DNS rebinding
    assert r.status_code == 400 and "Host" in r.json()["detail"]
    assert c.get("/", headers={"Host": "rebound.evil.example"}).status_code == 400
    assert c.get("/api/info", headers={"Host": "localhost:8000"}).status_code == 200
    anyhost = TestClient(create_app(Toy(), state_dir=tmp_path / "b", allowed_hosts=["*"]))
    assert anyhost.get("/api/info").status_code == 200


def test_numbers_are_checked_at_the_boundary(tmp_path):
    from fastapi.testclient import TestClient

    from clinloop.server.app import create_app

    nii = tmp_path / "vol.npy"
    np.save(nii, np.random.default_rng(0).random((4, 32, 32)).astype(np.float32))
    c = TestClient(create_app(Toy(), state_dir=tmp_path / "s"))
    for seed in (2 ** 64, 2 ** 62, 2 ** 31, -1):
        r = c.post("/api/sessions", json={"case_id": "x", "seed": seed})
        assert r.status_code == 422 and "seed" in r.json()["detail"], (seed, r.text)
        r = c.post("/api/sessions", files={"file": ("a.png", IMAGE, "image/png")}, data={"seed": str(seed)})
        assert r.status_code == 422 and "seed" in r.json()["detail"], (seed, r.text)
    assert c.post("/api/sessions", files={"file": ("a.png", IMAGE, "image/png")},
                  data={"seed": str(2 ** 31 - 1)}).status_code == 200
    sid = c.post("/api/sessions", files={"file": ("v.npy", nii.read_bytes(), "application/octet-stream")}).json()["session_id"]
    post = lambda raw: c.post(f"/api/sessions/{sid}/click", content=raw,  # noqa: E731
                              headers={"content-type": "application/json"})
    for raw, word in [(b'{"x": 3, "y": 4, "z": NaN}', "z"), (b'{"x": 3, "y": 4, "z": 1.5}', "z"),
                      (b'{"x": 3, "y": 4, "z": 4}', "z=4"), (b'{"x": 3, "y": 4, "z": -1}', "z"),
                      (b'{"x": Infinity, "y": 4, "z": 1}', "x"), (b'{"x": 3, "y": 40, "z": 1}', "y=40"),
                      (b'{"x": 1e308, "y": 4, "z": 1}', "x"), (b'{"x": 3, "y": 4, "z": 18446744073709551616}', "z")]:
        r = post(raw)
        assert r.status_code == 422, (raw, r.text)
        assert isinstance(r.json()["detail"], str) and word in r.json()["detail"], (raw, r.json())
    assert post(b'{"x": 3, "y": 4, "z": 3}').json()["z"] == 3
    assert c.post(f"/api/sessions/{sid}/choose", json={"candidate": -1}).status_code == 422
    assert c.get(f"/api/sessions/{sid}/image", params={"z": -1}).status_code == 422
    assert c.get(f"/api/sessions/{sid}/image", params={"z": 2 ** 64}).status_code == 422


def _raw(port: int, head: bytes, body: bytes, close: bool = False, wait: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(head + body)
        if close:
            return b""
        data = b""
        t0 = time.time()
        while time.time() - t0 < wait:
            chunk = s.recv(65536)
            if not chunk:  # the server closed the connection
                return data
            data += chunk
        raise AssertionError(f"connection still open after {wait} s: {data[:200]!r}")


def test_stalled_body_gets_408_and_a_closed_connection_and_abandoned_body_is_no_500(tmp_path, caplog):
    app = _app(tmp_path, body_timeout=0.5)
    with live_server(app) as (url, port):
        with httpx.Client(base_url=url) as c:
            sid = _open(c)
        head = (f"POST /api/sessions/{sid}/click HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
        t0 = time.time()
        reply = _raw(port, head, b'{"x": 1,')  # 8 of 100 bytes, then silence
        assert time.time() - t0 < 8
        assert reply.startswith(b"HTTP/1.1 408") and b"not received within 0.5 s" in reply
        with caplog.at_level(logging.INFO):  # a new session's JSON body stalls too: 408, nothing logged as an error
            opening = head.replace(f"/api/sessions/{sid}/click".encode(), b"/api/sessions")
            assert _raw(port, opening, b'{"case_id"').startswith(b"HTTP/1.1 408")
        with caplog.at_level(logging.INFO, logger="clinloop.server"):
            _raw(port, head, b'{"x": 1,', close=True)  # the client goes away mid-body
            time.sleep(0.3)
            with httpx.Client(base_url=url) as c:
                assert c.post(f"/api/sessions/{sid}/click", json={"x": 5, "y": 5}).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert any("client disconnected" in r.getMessage() for r in caplog.records)


def test_mask_of_a_reopened_session_answers_409(tmp_path):
    from fastapi.testclient import TestClient

    c = TestClient(_app(tmp_path))
    sid = _open(c)
    c.post(f"/api/sessions/{sid}/click", json={"x": 10, "y": 10})
    assert c.post(f"/api/sessions/{sid}/accept").status_code == 200
    first = c.get(f"/api/sessions/{sid}/mask", params={"format": "png"})
    assert first.status_code == 200
    assert c.post(f"/api/sessions/{sid}/undo").json()["status"] == "open"
    r = c.get(f"/api/sessions/{sid}/mask", params={"format": "png"})
    assert r.status_code == 409 and "reopened" in r.json()["detail"]
    c.post(f"/api/sessions/{sid}/click", json={"x": 20, "y": 20})
    assert c.post(f"/api/sessions/{sid}/accept").json()["accepted"] == 2
    again = c.get(f"/api/sessions/{sid}/mask", params={"format": "png"})
    assert again.status_code == 200 and again.content != first.content  # the latest accepted version


def test_serve_flags(tmp_path, monkeypatch, capsys):
    import uvicorn

    from clinloop.cli import build_parser, main

    a = build_parser().parse_args(["serve", "--allowed-host", "a.example", "--allowed-host", "b.example",
                                   "--cache-size", "5"])
    assert a.allowed_host == ["a.example", "b.example"] and a.cache_size == 5 and a.queue_limit == 64
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({f"t{i}": f"user{i}" for i in range(20)}))
    assert main(["serve", "--state-dir", str(tmp_path / "s"), "--data", str(_png_file(tmp_path)), "--tokens-file",
                 str(tokens), "--allowed-host", "ws.example", "--queue-limit", "3"]) == 0
    ctx = started["app"].state.ctx
    assert ctx.live.capacity == 80 and ctx.gate.queue_limit == 3  # 4 per user of the tokens file
    assert main(["serve", "--state-dir", str(tmp_path / "s"), "--cache-size", "0"]) != 0
    assert "--cache-size must be >= 1" in capsys.readouterr().err


def _png_file(tmp_path):
    p = tmp_path / "img.png"
    p.write_bytes(png_bytes(np.full((16, 16), 9, np.uint8)))
    return p


def test_shutdown_closes_the_store_and_merges_its_wal(tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(_app(tmp_path)) as c:
        sid = _open(c)
        c.post(f"/api/sessions/{sid}/click", json={"x": 10, "y": 10})
        assert (tmp_path / "clinloop.sqlite3-wal").is_file()  # WAL mode, rows written
    assert not (tmp_path / "clinloop.sqlite3-wal").exists()  # the lifespan's close merged and removed it


def test_unexpected_model_error_is_a_logged_500_and_the_server_goes_on(tmp_path, caplog):
    from fastapi.testclient import TestClient

    class Broken(Toy):
        def start(self, image, *, seed=0, profile=None):
            st = super().start(image, seed=seed, profile=profile)
            st.choose = lambda k: (_ for _ in ()).throw(RuntimeError("boom"))
            return st

    c = TestClient(_app(tmp_path, Broken()))
    sid = _open(c)
    assert c.post(f"/api/sessions/{sid}/click", json={"x": 10, "y": 10}).status_code == 200
    with caplog.at_level(logging.ERROR, logger="clinloop.server"):
        r = c.post(f"/api/sessions/{sid}/choose", json={"candidate": 0})
    assert r.status_code == 500 and r.json()["detail"].startswith("internal error (RuntimeError)")
    assert "server-timing" in r.headers and any("failed" in rec.getMessage() for rec in caplog.records)
    assert c.post(f"/api/sessions/{sid}/click", json={"x": 12, "y": 10}).json()["iteration"] == 2


def test_volume_with_the_largest_seed_clicks(tmp_path):
    """The largest accepted seed still gives every slice a valid seed (issue 18:
    a 3-D upload with seed 2**62 opened, then every click failed)."""
    from fastapi.testclient import TestClient

    from clinloop.server.app import create_app
    from test_server import _npy, shared_model, test_image

    c = TestClient(create_app(shared_model(), state_dir=tmp_path))
    vol = np.stack([test_image()] * 2).astype(np.float32)
    r = c.post("/api/sessions", files={"file": ("v.npy", _npy(vol), "application/octet-stream")},
               data={"seed": str(2 ** 31 - 1)})
    assert r.status_code == 200, r.text
    p = c.post(f"/api/sessions/{r.json()['session_id']}/click", json={"x": 44, "y": 50, "z": 1})
    assert p.status_code == 200 and p.json()["z"] == 1 and p.json()["area"] > 0


def test_mask_versions_list_version_query_and_header(tmp_path):
    """Every accept is a version (who, model, actions); GET /mask names the one it
    sends, serves an explicit ?version= also while reopened, and 404s a missing one."""
    from fastapi.testclient import TestClient

    c = TestClient(_app(tmp_path))
    sid = _open(c)
    assert c.get(f"/api/sessions/{sid}/mask/versions").json() == {"session_id": sid, "latest": None,
                                                                   "reopened": False, "versions": []}
    c.post(f"/api/sessions/{sid}/click", json={"x": 10, "y": 10})
    a1 = c.post(f"/api/sessions/{sid}/accept").json()
    assert a1["version"] == 1 and a1["area"] == 49  # Toy: radius 3 + 1 = 4, a disc of 9+14+14+10+2 = 49 pixels
    v1 = c.get(f"/api/sessions/{sid}/mask", params={"format": "png"})
    assert v1.headers["x-clinloop-mask-version"] == "1"
    c.post(f"/api/sessions/{sid}/undo")
    listing = c.get(f"/api/sessions/{sid}/mask/versions").json()
    assert listing["latest"] == 1 and listing["reopened"] is True
    r = c.get(f"/api/sessions/{sid}/mask", params={"format": "png"})
    assert r.status_code == 409 and "reopened" in r.json()["detail"] and "?version=1" in r.json()["detail"]
    old = c.get(f"/api/sessions/{sid}/mask", params={"format": "png", "version": 1})
    assert old.status_code == 200 and old.content == v1.content  # the audit trail stays readable
    c.post(f"/api/sessions/{sid}/click", json={"x": 20, "y": 20})  # radius 5: 11+18+18+18+14+2 = 81 pixels
    a2 = c.post(f"/api/sessions/{sid}/accept").json()
    assert (a2["version"], a2["area"]) == (2, 81)
    vs = c.get(f"/api/sessions/{sid}/mask/versions").json()
    assert vs["latest"] == 2 and vs["reopened"] is False
    assert [(v["version"], v["user"], v["model"], v["area"], v["actions"]) for v in vs["versions"]] == [
        (1, "local", "toy", 49, 2), (2, "local", "toy", 81, 3)]  # click, accept / click, click, accept
    assert vs["versions"][0]["time"].endswith("+00:00")
    assert c.get(f"/api/sessions/{sid}/mask").headers["x-clinloop-mask-version"] == "2"
    assert c.get(f"/api/sessions/{sid}/mask", params={"version": 3}).status_code == 404
    assert c.get(f"/api/sessions/{sid}/mask", params={"version": 0}).status_code == 422
    assert c.get(f"/api/sessions/{sid}/mask/versions", headers={"X-Clinloop-User": "bo"}).status_code == 404
    stored = c.app.state.store.accepted_versions(sid, "local")
    assert [h["action"] for h in stored[1]["history"]] == ["click", "click", "accept"]  # the undo took one back


@pytest.mark.parametrize("error,status", [("StoreReadOnlyError", 503), ("StoreBusyError", 503),
                                          ("StoreFullError", 507), ("StaleSessionError", 409)])
def test_failed_history_write_answers_its_status_and_drops_the_copy(tmp_path, monkeypatch, error, status):
    """A store failure answers its http_status (not the ValueError 400), with no
    server path in the message; the in-memory copy that holds the unstored action
    is dropped, so the session goes on from what is stored."""
    from fastapi.testclient import TestClient

    from clinloop.server import store as storemod

    c = TestClient(_app(tmp_path))
    app, sid = c.app, _open(c)
    assert c.post(f"/api/sessions/{sid}/click", json={"x": 10, "y": 10}).json()["iteration"] == 1
    st = app.state.store

    def refuse(*a, **k):
        raise getattr(storemod, error)(f"{st.db_path}: cannot save the session history (simulated)")

    monkeypatch.setattr(st, "save_history", refuse)
    r = c.post(f"/api/sessions/{sid}/click", json={"x": 20, "y": 20})
    assert r.status_code == status, r.text
    assert str(tmp_path) not in r.json()["detail"]
    assert (r.headers.get("retry-after") is not None) == (error == "StoreBusyError")
    assert app.state.ctx.live.cached(sid) is None  # the copy with the unstored click is gone
    monkeypatch.undo()
    again = c.get(f"/api/sessions/{sid}").json()  # rebuilt from the store: the refused click never happened
    assert again["iteration"] == 1 and len(st.session(sid, "local")["history"]) == 1


def test_failed_accept_write_drops_the_accepted_copy(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from clinloop.server.store import StoreReadOnlyError

    c = TestClient(_app(tmp_path))
    app, sid = c.app, _open(c)
    c.post(f"/api/sessions/{sid}/click", json={"x": 10, "y": 10})

    def refuse(*a, **k):
        raise StoreReadOnlyError("read-only (simulated)")

    monkeypatch.setattr(app.state.store, "accept", refuse)
    assert c.post(f"/api/sessions/{sid}/accept").status_code == 503
    monkeypatch.undo()
    assert c.get(f"/api/sessions/{sid}").json()["status"] == "open"  # not accepted in memory either
    assert c.post(f"/api/sessions/{sid}/accept").json()["version"] == 1


def test_openapi_documents_store_statuses_and_mask_versions(tmp_path):
    from fastapi.testclient import TestClient

    doc = TestClient(_app(tmp_path)).get("/openapi.json").json()["paths"]
    for path in ("/api/sessions", "/api/sessions/{sid}/click", "/api/sessions/{sid}/undo",
                 "/api/sessions/{sid}/accept"):
        codes = doc[path]["post"]["responses"]
        assert {"503", "507"} <= set(codes), path
        assert "Retry-After" in codes["503"]["headers"]
    mask = doc["/api/sessions/{sid}/mask"]["get"]
    assert "X-Clinloop-Mask-Version" in mask["responses"]["200"]["headers"]
    assert any(p["name"] == "version" for p in mask["parameters"])
    vs = doc["/api/sessions/{sid}/mask/versions"]["get"]["responses"]
    assert {"200", "404"} <= set(vs)
