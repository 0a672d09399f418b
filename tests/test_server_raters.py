"""The viewer's server side: the experts' masks beside the proposal (Dice to
each rater, agreement), the view state (markers, slice strip, crop box,
intensity), the worklist's names and status, and profiles per structure.
Toy model (:mod:`_toy_server`), tiny hand-countable cases (:mod:`_viewer_fixtures`)."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from _toy_server import Toy  # noqa: E402
from _viewer_fixtures import dataset, disc  # noqa: E402


@pytest.fixture()
def client(tmp_path):
    from fastapi.testclient import TestClient

    from clinloop.server.app import create_app
    from clinloop.server.worklist import worklist_from_dataset

    app = create_app(Toy(), state_dir=tmp_path / "state", worklist=worklist_from_dataset(dataset()))
    with TestClient(app) as c:
        yield c, app


def _indices(b64: str) -> np.ndarray:
    from PIL import Image

    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert im.mode == "P"
    return np.asarray(im)


def _open(c, case, user="local"):
    r = c.post("/api/sessions", json={"case_id": case}, headers={"X-Clinloop-User": user})
    assert r.status_code == 200, r.text
    return r.json()["session_id"]


def test_raters_dice_and_agreement_2d(client):
    from clinloop.metrics import dice

    c, _ = client
    sid = _open(c, "c1")
    before = c.get(f"/api/sessions/{sid}/raters").json()
    assert before["n_raters"] == 3 and [r["dice"] for r in before["raters"]] == [None, None, None]
    c.post(f"/api/sessions/{sid}/click", json={"x": 16, "y": 16, "positive": True})
    d = c.get(f"/api/sessions/{sid}/raters").json()
    assert [r["id"] for r in d["raters"]] == ["A", "B", "C"]
    # by hand: the 49-pixel disc vs A (the same disc), B (empty), C (rows 16..31: 512 px, 29 shared)
    got = [r["dice"] for r in d["raters"]]
    assert got == pytest.approx([1.0, 0.0, 58 / 561], abs=1e-4)
    half = np.zeros((32, 32), bool)
    half[16:] = True
    assert got[2] == pytest.approx(dice(disc(), half), abs=1e-4)
    agree = _indices(d["agreement"])  # 32 levels of the fraction of raters
    assert agree[16, 16] == round(2 / 3 * 31) and agree[20, 0] == round(1 / 3 * 31) and agree[0, 0] == 0
    from PIL import Image

    alpha = np.asarray(Image.open(io.BytesIO(base64.b64decode(d["raters"][0]["contour"]))).convert("RGBA"))[..., 3]
    assert alpha[16, 12] == 255 and alpha[16, 16] == 0 and alpha[16, 11] == 0  # outline only, no fill


def test_raters_volume_slice_and_view(client):
    c, _ = client
    sid = _open(c, "v1")
    c.post(f"/api/sessions/{sid}/click", json={"x": 16, "y": 16, "z": 3, "positive": True})
    d = c.get(f"/api/sessions/{sid}/raters?z=3").json()
    # rater 0 marks the disc on slices 2 and 3 (98 px), rater 1 on slice 3 only
    assert [r["dice"] for r in d["raters"]] == pytest.approx([98 / 147, 1.0], abs=1e-4)
    assert [r["dice_slice"] for r in d["raters"]] == pytest.approx([1.0, 1.0])
    assert _indices(c.get(f"/api/sessions/{sid}/raters?z=2").json()["agreement"])[16, 16] == round(0.5 * 31)
    v = c.get(f"/api/sessions/{sid}/view?z=3").json()
    assert v["slice_areas"] == [0, 0, 0, 49, 0, 0] and v["slice_area"] == 49
    assert v["bbox"] == [11, 11, 21, 21]  # the toy's largest candidate: radius 5 around (16, 16)
    assert v["clicks"] == [{"n": 1, "x": 16.0, "y": 16.0, "z": 3, "positive": True}]
    assert c.get(f"/api/sessions/{sid}/view?z=2").json()["slice_area"] == 0
    assert c.get(f"/api/sessions/{sid}/view?z=9").status_code == 422  # out of range
    it = v["intensity"]
    assert it["kind"] == "grey" and it["modality"] == "MR" and it["hu"] is False
    assert it["min"] >= 40 and it["max"] <= 210 and it["p1"] < it["p99"]


def test_upload_has_no_raters_and_markers_follow_undo(client):
    from _toy_server import IMAGE

    c, _ = client
    sid = c.post("/api/sessions", files={"file": ("x.png", IMAGE, "image/png")}).json()["session_id"]
    assert c.get(f"/api/sessions/{sid}/raters").json() == {"session_id": sid, "n_raters": 0, "raters": [],
                                                           "agreement": None, "z": None}
    c.post(f"/api/sessions/{sid}/click", json={"x": 5, "y": 6})
    c.post(f"/api/sessions/{sid}/click", json={"x": 9, "y": 9, "positive": False})
    marks = c.get(f"/api/sessions/{sid}/view").json()["clicks"]
    assert [(m["n"], m["positive"]) for m in marks] == [(1, True), (2, False)]
    c.post(f"/api/sessions/{sid}/undo")
    assert len(c.get(f"/api/sessions/{sid}/view").json()["clicks"]) == 1
    assert c.get(f"/api/sessions/{sid}/view?z=1").status_code == 400  # 2-D: no slices


def test_worklist_names_status_and_resume(client):
    c, _ = client
    rows = {r["case_id"]: r for r in c.get("/api/cases").json()["cases"]}
    assert rows["c1"]["name"] == "P-001 (c1)" and rows["c1"]["structure"] == "disc"
    assert rows["v1"]["structure"] == "disc" and rows["c2"]["structure"] == "ring"
    assert {r["status"] for r in rows.values()} == {"new"}
    sid = _open(c, "c1", "alice")
    c.post(f"/api/sessions/{sid}/click", json={"x": 16, "y": 16}, headers={"X-Clinloop-User": "alice"})
    a = {r["case_id"]: r for r in c.get("/api/cases", headers={"X-Clinloop-User": "alice"}).json()["cases"]}
    b = {r["case_id"]: r for r in c.get("/api/cases", headers={"X-Clinloop-User": "bob"}).json()["cases"]}
    assert (a["c1"]["status"], a["c1"]["by"], a["c1"]["my_session"]) == ("in progress", ["alice"], sid)
    assert (b["c1"]["status"], b["c1"]["by"], b["c1"]["my_session"]) == ("in progress", ["alice"], None)
    assert c.post(f"/api/sessions/{sid}/accept", headers={"X-Clinloop-User": "alice"}).status_code == 200
    b = {r["case_id"]: r for r in c.get("/api/cases", headers={"X-Clinloop-User": "bob"}).json()["cases"]}
    assert (b["c1"]["status"], b["c1"]["by"], b["c2"]["status"]) == ("accepted", ["alice"], "new")


def test_profiles_stay_with_their_structure(client):
    c, app = client
    sid = _open(c, "c1")  # structure "disc"
    c.post(f"/api/sessions/{sid}/click", json={"x": 16, "y": 16})
    c.post(f"/api/sessions/{sid}/accept")
    assert app.state.store.profile("local", "toy::disc") == {"r": 4}
    same = c.post("/api/sessions", json={"case_id": "v1"}).json()  # also "disc"
    other = c.post("/api/sessions", json={"case_id": "c2"}).json()  # "ring": learnt elsewhere
    chosen = c.post("/api/sessions", json={"case_id": "c2", "profile_any_structure": True}).json()
    assert (same["profile_applied"], other["profile_applied"], chosen["profile_applied"]) == (True, False, True)


def test_intensity_knows_ct_in_hounsfield_units():
    from types import SimpleNamespace

    from clinloop.server.viewing import intensity

    hu = np.full((1, 4, 50, 50), 40.0, np.float32)
    hu[0, :, :10] = -1000.0  # air: 20 % of the voxels
    hu[0, 0, 0, 0] = 1500.0
    ct = intensity(SimpleNamespace(image=hu, meta={"modality": "CT"}))
    assert ct["hu"] is True and (ct["min"], ct["max"], ct["p1"], ct["p99"]) == (-1000.0, 1500.0, -1000.0, 40.0)
    crop = intensity(SimpleNamespace(image=np.clip(hu + 1000, 0, 255) / 4, meta={"modality": "CT"}))
    assert crop["hu"] is False  # LIDC-like 0..255 crop: percentile windows, no HU presets
    mr = intensity(SimpleNamespace(image=hu, meta={"modality": "MR"}))
    assert mr["hu"] is False
    assert intensity(SimpleNamespace(image=hu, meta={}))["hu"] is True  # modality not stated, but air in HU
    rgb = intensity(SimpleNamespace(image=np.zeros((3, 8, 8), np.float32), meta={}))
    assert rgb == {"kind": "rgb", "modality": "", "hu": False}
