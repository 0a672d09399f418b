"""POST /api/sessions/{id}/box (issue 17): a box as the first interaction over REST, its 422s, and
its refusal after the first step; the real app and the shared real model (tests/test_server.py)."""
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from test_server import n_candidates, png_bytes, server, test_image  # noqa: E402,F401  (fixture re-used)


def _open(c) -> str:
    r = c.post("/api/sessions", files={"file": ("slice.png", png_bytes(test_image()), "image/png")})
    assert r.status_code == 200, r.text
    return r.json()["session_id"]


def test_box_route_segments_the_disc_and_records_the_box(server):
    import numpy as np

    from test_server import decode_png

    c, _, _ = server
    sid = _open(c)
    r = c.post(f"/api/sessions/{sid}/box", json={"x0": 30, "y0": 36, "x1": 58, "y1": 64})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["iteration"] == 1 and len(body["candidates"]) == n_candidates()
    mask = decode_png(body["mask"])[..., 3] > 0
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 50) ** 2 + (xx - 44) ** 2 < 14 ** 2
    assert 2 * (mask & disc).sum() / (mask.sum() + disc.sum()) > 0.8
    h = c.get(f"/api/sessions/{sid}").json()["history"]
    assert h == [{"action": "box", "box": [30.0, 36.0, 58.0, 64.0]}]
    listed = {r["session_id"]: r for r in c.get("/api/sessions").json()["sessions"]}
    assert listed[sid]["iteration"] == 1  # the worklist counts the box as a step
    # a second box: refused in plain words, nothing recorded
    r = c.post(f"/api/sessions/{sid}/box", json={"x0": 1, "y0": 1, "x1": 20, "y1": 20})
    assert r.status_code == 400 and "first interaction" in r.json()["detail"]
    assert len(c.get(f"/api/sessions/{sid}").json()["history"]) == 1


@pytest.mark.parametrize("body, status, words", [
    ({"x0": 40, "y0": 10, "x1": 20, "y1": 30}, 422, "x0 < x1"),
    ({"x0": 10, "y0": 10, "x1": 20, "y1": 10}, 422, "y0 < y1"),
    ({"x0": 10, "y0": 10, "x1": 96, "y1": 30}, 422, "x1=96 is outside"),
    ({"x0": -3, "y0": 10, "x1": 20, "y1": 30}, 422, "x0=-3 is outside"),
    ({"x0": 10, "y0": 10, "x1": 20}, 422, "y1"),
    ({"x0": 10, "y0": "a", "x1": 20, "y1": 30}, 422, "y0"),
    ({"x0": 10, "y0": 10, "x1": 20, "y1": 30, "z": 0}, 400, "2-D"),
])
def test_bad_boxes_get_a_plain_message(server, body, status, words):
    c, _, _ = server
    sid = _open(c)
    r = c.post(f"/api/sessions/{sid}/box", json=body)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str) and words in r.json()["detail"]
    assert c.get(f"/api/sessions/{sid}").json()["history"] == []


def test_box_route_is_in_the_openapi_contract(server):
    c, _, _ = server
    op = c.get("/openapi.json").json()["paths"]["/api/sessions/{sid}/box"]["post"]
    assert {"200", "400", "404", "422"} <= set(op["responses"])
