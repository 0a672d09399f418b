"""The workstation with the shipped 3-D MECCA model (``mecca-lidc3d``) on a small
synthetic volume: the session runs on a 32³ region around the first click, hint
clicks on any slice refine the 3-D mask (an include and an exclude at the same
voxel end on its two sides), undo is exact, the advice regions carry the slices
they span, and the optional ``confidence`` layer decodes to MECCA's C(s, a). A server
with several models lets each new session choose one (``model``)."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest

pytest.importorskip("fastapi")

from clinloop.data.registry import ListDataset  # noqa: E402
from clinloop.data.sample import MultiRaterSample  # noqa: E402

D, H, W = 12, 48, 48
U = {"X-Clinloop-User": "ana"}
FIRST = (26.0, 22.0, 6)  # (x, y, z): the nodule's centre
HINT = (26.0, 30.0, 6)  # just below the nodule on slice 6: outside the label, p = 0.4 after the first click


def nodule_case() -> MultiRaterSample:
    """A bright ellipsoid (radii 4, 7, 7 voxels) in noise, 0..255 like the LIDC crops."""
    zz, yy, xx = np.mgrid[:D, :H, :W]
    inside = ((zz - 6) / 4.0) ** 2 + ((yy - 22) / 7.0) ** 2 + ((xx - 26) / 7.0) ** 2 <= 1
    img = (30 + 20 * np.random.default_rng(1).random((1, D, H, W)) + 150 * inside[None]).astype(np.float32)
    return MultiRaterSample(img, inside[None], case_id="nod", structure="nodule")


@pytest.fixture(scope="module")
def mecca3d():
    from clinloop.models.registry import load_model

    return load_model("mecca-lidc3d")


def flat_case() -> MultiRaterSample:
    """A 2-D image (for the volumes-only check)."""
    img = np.random.default_rng(2).random((1, 40, 40)).astype(np.float32)
    return MultiRaterSample(img, np.zeros((1, 40, 40), bool), case_id="flat", structure="nodule")


def _client(tmp_path, model, models=()):
    from fastapi.testclient import TestClient

    from clinloop.server.app import create_app
    from clinloop.server.worklist import worklist_from_dataset

    return TestClient(create_app(model, state_dir=tmp_path / "state", models=models,
                                 worklist=worklist_from_dataset(ListDataset([nodule_case(), flat_case()],
                                                                            name="mecca3d"))))


def _png(b64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def _post(c, path, body=None):
    r = c.post(path, json=body if body is not None else {}, headers=U)
    assert r.status_code == 200, r.text
    return r.json()


def _hint(c, sid, pt, positive):
    x, y, z = pt
    return _post(c, f"/api/sessions/{sid}/hint", {"points": [{"x": x, "y": y, "z": z, "positive": positive}]})


def test_hints_refine_the_3d_mask_with_advice_and_confidence(tmp_path, mecca3d):
    from clinloop.interaction.session import Session
    from clinloop.server.encoding import confidence_index

    c = _client(tmp_path, mecca3d)
    sid = _post(c, "/api/sessions", {"case_id": "nod"})["session_id"]
    x, y, z = FIRST
    first = _post(c, f"/api/sessions/{sid}/click", {"x": x, "y": y, "z": z, "positive": True})
    # the session runs on the 32³ region around the first click: all of the 12 slices, 32 rows and columns
    assert first["roi"] == [[0, 12], [6, 38], [10, 42]]
    assert first["z"] == 6 and first["area"] > 0 and (_png(first["mask"]) > 0)[22, 26]
    areas = c.get(f"/api/sessions/{sid}/view?z=6", headers=U).json()["slice_areas"]
    assert sum(a > 0 for a in areas) >= 3  # one click, a 3-D mask over several slices

    # an include and an exclude hint at the same voxel (from the same state) end on its two sides
    inc = _hint(c, sid, HINT, True)
    m_inc = _png(inc["mask"]) > 0
    assert inc["z"] == 6 and inc["iteration"] == 2 and m_inc[30, 26]
    undone = _post(c, f"/api/sessions/{sid}/undo")
    assert undone["area"] == first["area"] and undone["mask"] == first["mask"]  # undo replays exactly
    exc = _hint(c, sid, HINT, False)
    m_exc = _png(exc["mask"]) > 0
    assert not m_exc[30, 26] and exc["area"] < inc["area"] and m_exc.sum() < m_inc.sum()
    assert exc["area"] != first["area"]  # the hint changed the 3-D mask

    # the mask is updated on every slice: another slice's answer is the new 3-D mask there
    s = Session(mecca3d, nodule_case())
    s.click(FIRST, True)
    ref = s.hint([(HINT, False)])
    for k in (3, 6, 8):
        got = _png(c.get(f"/api/sessions/{sid}/proposal?z={k}", headers=U).json()["mask"]) > 0
        np.testing.assert_array_equal(got, ref.mask[k])

    # advice: MECCA's least confident supervoxels, with their voxels on this slice and the slices they span
    assert 1 <= len(exc["advice"]) <= 5
    for a, r in zip(exc["advice"], ref.advice):
        zs = np.flatnonzero(r.any(axis=(1, 2)))
        assert a["area"] == int(r.sum()) and a["slices"] == [int(zs[0]), int(zs[-1])]
        assert a["slice_area"] == int(r[6].sum())
        np.testing.assert_array_equal(_png(a["mask"]) > 0, r[6])  # palette indices: 0 outside the region

    # confidence: C(s, a) of slice 6, index 1 + rint(31 c) inside the region, 0 (no agent) outside
    idx = _png(exc["confidence"])
    assert idx.shape == (H, W) and idx.dtype == np.uint8
    np.testing.assert_array_equal(idx, confidence_index(ref.confidence[6]))
    assert (idx[:, :10] == 0).all() and (idx[:6] == 0).all() and (idx[6:38, 10:42] >= 1).all()
    vals = (idx[6:38, 10:42].astype(np.float32) - 1) / 31
    assert 0 <= vals.min() < 0.5 < vals.max() <= 1  # a spread of confidences, on the 0..1 scale
    lo, hi = exc["confidence_range"]
    assert lo == pytest.approx(np.nanmin(ref.confidence[6]), abs=1e-4)
    assert hi == pytest.approx(np.nanmax(ref.confidence[6]), abs=1e-4)
    # uncertainty stays what it was: 1 - C(s, a) (0 outside the region)
    np.testing.assert_allclose(ref.uncertainty[6, 6:38, 10:42], 1 - ref.confidence[6, 6:38, 10:42], atol=1e-6)


def test_confidence_only_when_the_model_has_one(tmp_path):
    """The CNN baselines have no action confidence: no ``confidence`` key; the other keys are unchanged."""
    from clinloop.models.registry import load_model

    c = _client(tmp_path, load_model("interactive-cnn-lidc3d"))
    sid = _post(c, "/api/sessions", {"case_id": "nod"})["session_id"]
    x, y, z = FIRST
    p = _post(c, f"/api/sessions/{sid}/click", {"x": x, "y": y, "z": z, "positive": True})
    assert "confidence" not in p and "confidence_range" not in p
    assert {"mask", "uncertainty", "uncertainty_max", "advice", "candidates", "area", "z", "roi"} <= set(p)


def test_a_session_chooses_among_the_served_models(tmp_path, mecca3d):
    """``create_app(model, models=[...])`` (``clinloop serve --model A --model B``): ``GET /api/info``
    lists them, ``POST /api/sessions`` takes ``model``, a session keeps its model across an eviction
    (rebuilt by replay with it), and its profile is stored under it."""
    from clinloop.models.registry import load_model
    from clinloop.server.app import create_app

    cnn = load_model("interactive-cnn-lidc3d")
    c = _client(tmp_path, cnn, models=[mecca3d])
    info = c.get("/api/info", headers=U).json()
    assert info["model"] == "interactive-cnn-lidc3d"  # served models go by their folder's name
    assert info["models"] == [{"name": "interactive-cnn-lidc3d", "spatial_ndims": [3], "structures": []},
                              {"name": "mecca-lidc3d", "spatial_ndims": [3], "structures": []}]
    x, y, z = FIRST
    click = {"x": x, "y": y, "z": z, "positive": True}
    sid_m = _post(c, "/api/sessions", {"case_id": "nod", "model": "mecca-lidc3d"})
    sid_d = _post(c, "/api/sessions", {"case_id": "nod"})
    assert (sid_m["model"], sid_d["model"]) == ("mecca-lidc3d", "interactive-cnn-lidc3d")
    # a method's name (what session rows held before) finds the one served model of that method
    assert _post(c, "/api/sessions", {"case_id": "nod", "model": "mecca"})["model"] == "mecca-lidc3d"
    pm = _post(c, f"/api/sessions/{sid_m['session_id']}/click", click)
    pd = _post(c, f"/api/sessions/{sid_d['session_id']}/click", click)
    assert "confidence" in pm and "confidence" not in pd and pm["mask"] != pd["mask"]
    # evicted from memory: rebuilt by replay with its own model, the same proposal
    app = c.app
    app.state.ctx.live.drop(sid_m["session_id"])
    again = c.get(f"/api/sessions/{sid_m['session_id']}/proposal?z=6", headers=U).json()
    assert again["mask"] == pm["mask"] and again["confidence"] == pm["confidence"]
    assert c.get(f"/api/sessions/{sid_m['session_id']}", headers=U).json()["model"] == "mecca-lidc3d"
    _post(c, f"/api/sessions/{sid_m['session_id']}/accept")
    assert app.state.store.profile("ana", "mecca-lidc3d") == {}
    # an unknown model is a 400 naming the served ones; a volumes-only model refuses a 2-D image
    r = c.post("/api/sessions", json={"case_id": "nod", "model": "spa"}, headers=U)
    assert r.status_code == 400 and "interactive-cnn-lidc3d, mecca-lidc3d" in r.json()["detail"]
    r = c.post("/api/sessions", json={"case_id": "flat", "model": "mecca"}, headers=U)
    assert r.status_code == 422 and "volumes only" in r.json()["detail"]
    with pytest.raises(ValueError, match="two served models are named 'mecca-lidc3d'"):
        create_app(mecca3d, state_dir=tmp_path / "s2", models=[load_model("mecca-lidc3d")])
